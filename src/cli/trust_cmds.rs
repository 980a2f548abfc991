//! `trust install` / `trust uninstall`: the CA's root in this machine's trust
//! stores, for labs (the library's `trust` module does the work).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::render::print_json;
use super::{Ctx, Outcome};
use crate::error::Result;
use crate::trust::{self, Action, Target};

#[derive(Debug, Subcommand)]
pub enum TrustCmd {
    /// Add the CA's root to the system store, NSS databases (Firefox, Chrome) and Java keystores
    Install(TrustArgs),
    /// Remove the CA's root from the stores trust install added it to
    Uninstall(TrustArgs),
}

// Which stores (a doc comment here would replace the command's summary in
// `--help`: see `super::Deferred`). Without any of them: the system store and
// the NSS databases found in $HOME.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The Debian system store (update-ca-certificates; root only)
    #[arg(long)]
    pub system: bool,
    /// The system store of a tree standing in for / (implies --system)
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,
    /// An NSS database directory, as certutil -d sql:DIR takes it (repeatable)
    #[arg(long, value_name = "DIR")]
    pub nss: Vec<PathBuf>,
    /// A Java keystore (created by install when missing)
    #[arg(long, value_name = "KEYSTORE")]
    pub java: Option<PathBuf>,
    /// A file whose first line is the keystore's password (default: changeit, as Java's cacerts)
    #[arg(long, value_name = "FILE", requires = "java")]
    pub java_storepass_file: Option<PathBuf>,
}

/// Largest password file read.
const MAX_PASSWORD_FILE: u64 = 4096;

pub fn trust(ctx: &Ctx, c: TrustCmd) -> Result<Outcome> {
    let (action, a) = match c {
        TrustCmd::Install(a) => (Action::Install, a),
        TrustCmd::Uninstall(a) => (Action::Uninstall, a),
    };
    let ca = ctx.open_ca()?;
    let anchors = trust::trust_anchors(&ca)?;
    let targets = targets(a)?;
    let reports = trust::apply(&anchors, &targets, action);
    let failed = reports.iter().filter(|r| !r.outcome.ok()).count();
    let verb = match action {
        Action::Install => "install",
        Action::Uninstall => "uninstall",
    };
    if ctx.global.json {
        print_json(&json!({
            "action": action,
            "anchors": anchors.iter().map(|a| json!({
                "subject": a.subject,
                "key_id": a.key_id,
                "nickname": a.nickname,
            })).collect::<Vec<_>>(),
            "stores": reports,
            "ok": failed == 0,
        }));
    } else {
        for a in &anchors {
            ctx.say(format!(
                "trust {verb}: root `{}` (key id {}) as {}",
                a.subject, a.key_id, a.nickname
            ));
        }
        if reports.is_empty() {
            ctx.say("  no store to work on (none asked for, none found)");
        }
        for r in &reports {
            let what = match &r.outcome {
                trust::Outcome::Installed => "installed".to_string(),
                trust::Outcome::AlreadyThere => "already there".to_string(),
                trust::Outcome::Removed => "removed".to_string(),
                trust::Outcome::NotThere => "not there".to_string(),
                trust::Outcome::Skipped(why) => format!("skipped: {why}"),
                trust::Outcome::Failed(why) => format!("failed: {why}"),
            };
            ctx.say(format!("  {:<7} {}: {what}", r.store, r.location.display()));
        }
    }
    if failed > 0 {
        eprintln!(
            "error: trust {verb} failed in {failed} of {} stores (see above)",
            reports.len()
        );
        return Ok(Outcome::No);
    }
    Ok(Outcome::Done)
}

/// The stores asked for, else the default ones.
fn targets(a: TrustArgs) -> Result<Vec<Target>> {
    let asked = a.system || a.sysroot.is_some() || !a.nss.is_empty() || a.java.is_some();
    let mut out = Vec::new();
    if !asked {
        out.push(Target::System { sysroot: None });
        let home = std::env::var_os("HOME").map(PathBuf::from);
        for dir in trust::default_nss_dirs(home.as_deref()) {
            out.push(Target::Nss { dir, found: true });
        }
        return Ok(out);
    }
    if a.system || a.sysroot.is_some() {
        out.push(Target::System { sysroot: a.sysroot });
    }
    for dir in a.nss {
        out.push(Target::Nss { dir, found: false });
    }
    if let Some(keystore) = a.java {
        let storepass = match a.java_storepass_file {
            Some(f) => {
                crate::ca::check_secret_file(&f, "keystore password file")?;
                let text =
                    crate::fsutil::read_bounded_text(&f, MAX_PASSWORD_FILE, "password file")?;
                zeroize::Zeroizing::new(text.lines().next().unwrap_or("").to_string())
            }
            None => zeroize::Zeroizing::new("changeit".to_string()),
        };
        out.push(Target::Java {
            keystore,
            storepass,
        });
    }
    Ok(out)
}
