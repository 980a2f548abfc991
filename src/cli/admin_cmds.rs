//! Administration: `store check`, `audit --verify`, `backup DIR`, `restore DIR`.
//!
//! Restore is its own command (not `init --restore`): it takes nothing of what
//! `init` decides (name, key type, constraints), since all of it comes from the
//! backup, and like `init` it refuses a `--ca-dir` that already holds a CA.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::render::print_json;
use super::{Ctx, Outcome};
use crate::backup;
use crate::error::{Error, Result};
use crate::store::Damage;

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Verify every record, every index and the audit log's hash chain (exit 3
    /// naming each damaged item)
    Check,
    /// Move expired certificates (and revoked ones past their last CRL) out of
    /// the live store into the archive, where show, list --all, export and
    /// audit still find them
    Tidy(TidyArgs),
}

#[derive(Debug, Args)]
pub struct TidyArgs {
    /// Report what would move; move nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Keep certificates expired for less than this span, e.g. 30d (default:
    /// every certificate expired before now moves)
    #[arg(long, value_name = "SPAN")]
    pub expired_for: Option<String>,
}

// `audit`: the log as `lifecycle_cmds` prints it, plus `--verify`. (A doc
// comment here would replace the command's summary in `--help`: see
// `super::Deferred`.)
#[derive(Debug, Args)]
pub struct AuditOptions {
    /// Verify the log's hash chain instead of printing it (exit 3 when an entry
    /// was edited, removed or inserted)
    #[arg(long, conflicts_with = "since")]
    pub verify: bool,
    #[command(flatten)]
    pub log: super::lifecycle_cmds::AuditArgs,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A new directory for the backup (must not exist)
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory written by `mtlsca backup`; restored into --ca-dir, which must
    /// not hold a CA
    pub dir: PathBuf,
}

fn damage_lines(damage: &[Damage]) -> Vec<String> {
    damage
        .iter()
        .map(|d| format!("{}: {}", d.item, d.problem))
        .collect()
}

pub fn store(ctx: &Ctx, c: StoreCmd) -> Result<Outcome> {
    match c {
        StoreCmd::Tidy(a) => tidy(ctx, a),
        StoreCmd::Check => {
            // Through the running server when one holds the store.
            let mut r = ctx.backend()?.check_store(ctx.now)?;
            for (path, mode, fix) in crate::ca::loose_modes(&ctx.global.ca_dir) {
                r.damage.push(Damage {
                    item: format!("mode of {}", path.display()),
                    problem: format!(
                        "{mode:o} lets other users in; fix it with `chmod {fix} {}`",
                        path.display()
                    ),
                });
            }
            let rollover = super::rollover_cmds::rollover_warnings(ctx);
            super::rollover_cmds::print_rollover_warnings(ctx, &rollover);
            if ctx.global.json {
                print_json(&json!({
                    "healthy": r.healthy(),
                    "records": r.records,
                    "archived_records": r.archived_records,
                    "certificates": r.certificates,
                    "audit_entries": r.audit_entries,
                    "audit_head": r.audit_head,
                    "damage": r.damage,
                    "rollover": rollover,
                }));
            } else if r.healthy() {
                let archived = if r.archived_records > 0 {
                    format!(" (and {} archived)", r.archived_records)
                } else {
                    String::new()
                };
                ctx.say(format!(
                    "store ok: {} records{archived}, {} certificates, {} audit entries; indexes consistent, audit chain intact",
                    r.records, r.certificates, r.audit_entries
                ));
            } else if !ctx.global.quiet {
                for line in damage_lines(&r.damage) {
                    outln!("damaged  {line}");
                }
            }
            if r.healthy() {
                Ok(Outcome::Done)
            } else {
                Err(Error::Store(format!(
                    "{} problem(s) found in {} records: {}",
                    r.damage.len(),
                    r.records,
                    damage_lines(&r.damage).join("; ")
                )))
            }
        }
    }
}

fn tidy(ctx: &Ctx, a: TidyArgs) -> Result<Outcome> {
    let keep = match a.expired_for.as_deref() {
        None => time::Duration::ZERO,
        Some(s) => crate::profile::Validity::parse(s)
            .map(|v| v.duration())
            .map_err(|m| Error::Usage(format!("--expired-for {m}")))?,
    };
    let opts = crate::store::TidyOptions {
        expired_before: ctx.now - keep,
        dry_run: a.dry_run,
    };
    // Through the running server when one holds the store.
    let (r, compacted) = ctx.backend()?.tidy(opts, ctx.now)?;
    if ctx.global.json {
        let mut v = json!(r);
        v["compacted"] = json!(compacted);
        print_json(&v);
        return Ok(Outcome::Done);
    }
    let verb = if r.dry_run { "would move" } else { "moved" };
    let range = match (&r.first_serial, &r.last_serial) {
        (Some(f), Some(l)) => format!(" (serials {f} .. {l})"),
        _ => String::new(),
    };
    ctx.say(format!(
        "{verb} {} certificate(s) into the archive{range}, {} of them revoked; {} audit entries",
        r.moved, r.moved_revoked, r.audit_entries_moved
    ));
    if r.waiting_for_crl > 0 {
        ctx.say(format!(
            "  kept {} expired revoked certificate(s): their CA has published no CRL since they expired (run `mtlsca crl`, then tidy again)",
            r.waiting_for_crl
        ));
    }
    ctx.say(format!(
        "  live store: {} certificate(s); archive: {} (`show`, `list --all`, `export` and `audit` still reach them)",
        r.hot_records, r.archived_records
    ));
    match compacted {
        Some(c) => ctx.say(format!(
            "  live store's files: {:.1} MiB, {:.1} MiB before",
            c.bytes_after as f64 / 1048576.0,
            c.bytes_before as f64 / 1048576.0
        )),
        None if !r.dry_run && r.moved > 0 => ctx.say(
            "  the live store's files were not rebuilt (a running server holds them): a `store tidy` while no server runs shrinks them",
        ),
        None => {}
    }
    Ok(Outcome::Done)
}

pub fn audit_verify(ctx: &Ctx) -> Result<Outcome> {
    let r = ctx.backend()?.verify_audit(ctx.now)?;
    if ctx.global.json {
        print_json(&json!({
            "intact": r.damage.is_empty(),
            "entries": r.entries,
            "head": r.head,
            "damage": r.damage,
        }));
    } else if r.damage.is_empty() {
        ctx.say(format!(
            "audit log intact: {} entries, head {}",
            r.entries,
            r.head.as_deref().unwrap_or("(empty)")
        ));
    }
    if r.damage.is_empty() {
        Ok(Outcome::Done)
    } else {
        Err(Error::Store(format!(
            "the audit log's hash chain is broken: {}",
            damage_lines(&r.damage).join("; ")
        )))
    }
}

pub fn backup(ctx: &Ctx, a: BackupArgs) -> Result<Outcome> {
    // The store stays open (locked here, or held by the running server) until
    // the copy is complete; through the server, the server writes the backup.
    let b = ctx.backend()?.backup(&a.dir, ctx.now)?;
    if ctx.global.json {
        print_json(&json!({
            "dir": b.dir,
            "records": b.manifest.records,
            "audit_entries": b.manifest.audit_entries,
            "audit_head": b.manifest.audit_head,
            "files": b.manifest.files.keys().collect::<Vec<_>>(),
        }));
    } else {
        ctx.say(format!(
            "backed up CA `{}` to {}: {} files, {} certificate records, {} audit entries",
            b.manifest.ca_name,
            b.dir.display(),
            b.manifest.files.len(),
            b.manifest.records,
            b.manifest.audit_entries
        ));
        if b.manifest.encrypted_keys {
            ctx.say("  CA keys are in the backup as stored (encrypted): keep the passphrase apart");
        } else {
            ctx.say("  CA keys are in the backup unencrypted: protect it like private/");
        }
    }
    Ok(Outcome::Done)
}

pub fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<Outcome> {
    let r = backup::restore(&a.dir, &ctx.global.ca_dir, ctx.global.lock_timeout)?;
    if ctx.global.json {
        print_json(&json!({
            "ca_dir": r.ca_dir,
            "name": r.manifest.ca_name,
            "records": r.manifest.records,
            "audit_entries": r.manifest.audit_entries,
        }));
    } else {
        ctx.say(format!(
            "restored CA `{}` into {}: {} certificate records, {} audit entries, store check passed",
            r.manifest.ca_name,
            r.ca_dir.display(),
            r.manifest.records,
            r.manifest.audit_entries
        ));
    }
    Ok(Outcome::Done)
}
