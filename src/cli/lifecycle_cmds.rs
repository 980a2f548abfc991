//! The lifecycle commands: batch.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::{Ctx, Outcome};
use crate::batch::{self, BatchOptions, EntryStatus, Manifest};
use crate::ca::Ca;
use crate::error::Result;
use crate::fsutil;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The manifest (TOML, [[certificate]] tables); - reads standard input
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// Where <id>.key, <id>.pem and <id>.chain.pem are written
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
}

fn is_stdio(p: &Path) -> bool {
    p == Path::new("-")
}

fn display_name(p: &Path) -> String {
    if is_stdio(p) {
        "<stdin>".into()
    } else {
        p.display().to_string()
    }
}

/// One JSON line of `batch --json`, fields in the documented order.
#[derive(serde::Serialize)]
struct EntryLine<'a> {
    id: &'a str,
    status: &'a str,
    serial: Option<&'a str>,
    reasons: &'a [String],
}

pub fn batch(ctx: &Ctx, a: BatchArgs) -> Result<Outcome> {
    let name = display_name(&a.manifest);
    let manifest = {
        let text = fsutil::read_bounded_text(&a.manifest, batch::MAX_MANIFEST, "manifest")?;
        Manifest::parse(&text, &name)?
    };
    let ca = Ca::open(&ctx.global.ca_dir)?;
    let store = Store::open(&ctx.global.ca_dir, ctx.global.lock_timeout)?;
    let total = manifest.certificate.len() as u64;
    let bar =
        (!ctx.global.quiet && !ctx.global.json && std::io::stderr().is_terminal()).then(|| {
            let style = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} certificates  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            indicatif::ProgressBar::new(total).with_style(style)
        });
    let mut out = std::io::stdout().lock();
    let json = ctx.global.json;
    let quiet = ctx.global.quiet;
    let opts = BatchOptions::new(a.out_dir.clone());
    // A closed standard output (`| head`) must not stop issuance half-way:
    // write errors of the report are ignored.
    let result = batch::run(&ca, &store, &manifest, &name, &opts, ctx.now, &mut |o| {
        if json {
            let line = EntryLine {
                id: &o.id,
                status: o.status.as_str(),
                serial: o.serial.as_deref(),
                reasons: &o.reasons,
            };
            let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
        } else if !quiet && o.status == EntryStatus::Refused {
            let msg = format!("refused {}: {}", o.id, o.reasons.join("; "));
            match &bar {
                Some(b) => b.suspend(|| {
                    let _ = writeln!(out, "{msg}");
                }),
                None => {
                    let _ = writeln!(out, "{msg}");
                }
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let _ = out.flush();
    drop(out);
    let summary = result?;
    ctx.say(format!(
        "batch {name}: {} entries: {} issued, {} already issued, {} refused (files in {})",
        summary.total,
        summary.issued,
        summary.exists,
        summary.refused,
        a.out_dir.display()
    ));
    Ok(if summary.refused > 0 {
        Outcome::No
    } else {
        Outcome::Done
    })
}
