//! `ca roll` and `ca status`: CA generations, and the rollover warnings that
//! `list` and `store check` print.

use clap::{Args, Subcommand};
use serde_json::json;

use super::render::{date, print_json, rfc3339};
use super::{Ctx, Outcome};
use crate::ca::{CaKind, RollOptions};
use crate::error::{Error, Result};
use crate::profile::Validity;
use crate::store::{ListFilter, Status};

#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Make a new generation of a CA: new key and certificate; it signs from now on, the old one stays valid for what it signed
    Roll(RollArgs),
    /// Show every generation of every CA: validity, days left, rollover window, certificates still valid under it
    Status,
    /// Install the issuing CA certificates an external root signed (after init --external-root)
    Install(super::ext_cmds::InstallArgs),
}

#[derive(Debug, Args)]
pub struct RollArgs {
    /// Which CA: device or entity (an issuing CA), or root (a new root with the same name,
    /// link certificates both ways, and new device and entity CAs under it)
    #[arg(value_parser = ["root", "device", "entity"])]
    pub kind: String,
    /// Validity of the new CA certificate (default as init: 20y for a root, 10y
    /// for an issuing CA, never past its root); with `root`, the new root's
    /// (its new issuing CAs get 10y)
    #[arg(long, value_name = "SPAN")]
    pub validity: Option<String>,
}

pub fn ca(ctx: &Ctx, c: CaCmd) -> Result<Outcome> {
    match c {
        CaCmd::Roll(a) => roll(ctx, a),
        CaCmd::Status => status(ctx),
        CaCmd::Install(a) => super::ext_cmds::install(ctx, a),
    }
}

fn roll(ctx: &Ctx, a: RollArgs) -> Result<Outcome> {
    let kind =
        CaKind::parse(&a.kind).ok_or_else(|| Error::Usage(format!("unknown CA `{}`", a.kind)))?;
    let validity = a
        .validity
        .as_deref()
        .map(|v| Validity::parse(v).map_err(|m| Error::Usage(format!("--validity {m}"))))
        .transpose()?;
    let rolled = crate::service::Backend::roll(
        &ctx.global.ca_dir,
        ctx.global.lock_timeout,
        ctx.passphrase_source(),
        kind,
        &RollOptions { validity },
        ctx.now,
    )?;
    for p in &rolled.shared_crl_urls {
        eprintln!(
            "warning: profile `{p}`'s crl_url does not end in `<kind>.crl`, so the old and the new {} CA share it: leaves of both point at one CRL, which lists only one CA's revocations (give each generation its own URL, see docs/operations.md, \"CA rollover\")",
            kind.as_str()
        );
    }
    let gen_json = |g: &crate::ca::CaGeneration| {
        json!({
            "name": g.id.name(),
            "subject": g.subject,
            "key_id": crate::hex::encode(&g.key_id),
            "not_before": rfc3339(g.not_before),
            "not_after": rfc3339(g.not_after),
            "certificate": ctx.global.ca_dir.join(g.id.cert_file()),
        })
    };
    if ctx.global.json {
        print_json(&json!({
            "rolled": kind.as_str(),
            "old": rolled.old.iter().map(gen_json).collect::<Vec<_>>(),
            "new": rolled.new.iter().map(gen_json).collect::<Vec<_>>(),
            "links": rolled.links,
            "shared_crl_url_profiles": rolled.shared_crl_urls,
        }));
    } else {
        for (o, n) in rolled.old.iter().zip(&rolled.new) {
            ctx.say(format!(
                "rolled {} -> {}: {} (valid until {}), signs from now on; {} stays valid until {} for what it signed",
                o.id,
                n.id,
                ctx.global.ca_dir.join(n.id.cert_file()).display(),
                date(n.not_after),
                o.id,
                date(o.not_after)
            ));
        }
        for l in &rolled.links {
            ctx.say(format!("  link certificate: {}", l.display()));
        }
        ctx.say(format!(
            "  relying parties: give them {} again (it holds every generation)",
            ctx.global.ca_dir.join(crate::ca::BUNDLE_FILE).display()
        ));
        ctx.say("  publish the new CRLs: mtlsca crl");
    }
    Ok(Outcome::Done)
}

fn status(ctx: &Ctx) -> Result<Outcome> {
    let backend = ctx.backend()?;
    let ca = ctx.open_ca()?;
    let generations = ca.generations()?;
    let valid = backend.list(
        ListFilter {
            status: Some(Status::Valid),
            ..ListFilter::default()
        },
        ctx.now,
    )?;
    let mut rows = Vec::new();
    for g in &generations {
        let kid = crate::hex::encode(&g.key_id);
        let count = valid
            .iter()
            .filter(|r| r.issuer_key_id.eq_ignore_ascii_case(&kid))
            .count();
        let window = ca.rollover_window(g.id.kind)?;
        let days_left = (g.not_after - ctx.now).whole_days();
        let state = if g.not_after <= ctx.now {
            "expired"
        } else if g.current {
            "current"
        } else {
            "retired"
        };
        rows.push((g, kid, count, window, days_left, state));
    }
    if ctx.global.json {
        print_json(&json!(rows
            .iter()
            .map(|(g, kid, count, window, days_left, state)| json!({
                "name": g.id.name(),
                "kind": g.id.kind.as_str(),
                "generation": g.id.generation,
                "subject": g.subject,
                "key_id": kid,
                "not_before": rfc3339(g.not_before),
                "not_after": rfc3339(g.not_after),
                "state": state,
                "current": g.current,
                "days_left": days_left,
                "rollover_window": window.to_string(),
                "rollover_due": g.current && (g.not_after - ctx.now) < window.duration(),
                "valid_certificates": count,
            }))
            .collect::<Vec<_>>()));
    } else if !ctx.global.quiet {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(g, kid, count, window, days_left, state)| {
                vec![
                    g.id.name(),
                    state.to_string(),
                    date(g.not_after),
                    days_left.to_string(),
                    window.to_string(),
                    count.to_string(),
                    kid.clone(),
                    g.subject.clone(),
                ]
            })
            .collect();
        outln!(
            "{}",
            super::render::table(
                &[
                    "NAME",
                    "STATE",
                    "NOT AFTER",
                    "DAYS LEFT",
                    "WINDOW",
                    "VALID CERTS",
                    "KEY ID",
                    "SUBJECT"
                ],
                &table
            )
        );
    }
    warn_rollover(ctx, &ca);
    Ok(Outcome::Done)
}

/// The rollover warnings of the current CAs at `ctx.now` (none when the CA
/// cannot be read: the command's own error says why).
pub fn rollover_warnings(ctx: &Ctx) -> Vec<String> {
    ctx.open_ca()
        .and_then(|ca| ca.rollover_due(ctx.now))
        .map(|due| due.iter().map(|d| d.message()).collect())
        .unwrap_or_default()
}

/// Print each rollover warning on stderr (`warning: ...`), unless `--quiet`.
pub fn print_rollover_warnings(ctx: &Ctx, warnings: &[String]) {
    if !ctx.global.quiet {
        for w in warnings {
            eprintln!("warning: {w}");
        }
    }
}

fn warn_rollover(ctx: &Ctx, ca: &crate::ca::Ca) {
    let w: Vec<String> = ca
        .rollover_due(ctx.now)
        .map(|due| due.iter().map(|d| d.message()).collect())
        .unwrap_or_default();
    print_rollover_warnings(ctx, &w);
}
