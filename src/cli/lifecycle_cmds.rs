//! The lifecycle commands: batch, revoke, crl, export, audit, completions, man.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::render::{date, print_json, record_json, rfc3339};
use super::{Ctx, Outcome};
use crate::batch::{self, BatchOptions, EntryStatus, Manifest};
use crate::ca::{CaId, CaKind};
use crate::crl::{self, Reason};
use crate::error::{Error, Result};
use crate::export::{self, Format, KeyInput, P12Options};
use crate::fsutil;
use crate::profile::Validity;
use crate::service::CrlTarget;

/// Largest password file read.
const MAX_PASSWORD_FILE: u64 = 4096;
/// Largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// Where a PKCS#12 password comes from when no file is given.
pub const P12_PASSWORD_ENV: &str = "MTLSCA_P12_PASSWORD";

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// The manifest (TOML, [[certificate]] tables); - reads standard input
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// Where <id>.key, <id>.pem and <id>.chain.pem are written
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// Renew every entry whose certificate expires within SPAN (e.g. 7d): a new
    /// key and certificate in its files, the old ones kept as NAME.prev
    #[arg(long, value_name = "SPAN")]
    pub renew_within: Option<String>,
    /// With --renew-within: revoke each certificate renewed (reason superseded)
    #[arg(long, requires = "renew_within")]
    pub revoke_old: bool,
    /// With --revoke-old: revoke the old certificates only after SPAN (e.g. 1h, 7d)
    #[arg(long, value_name = "SPAN", requires = "revoke_old")]
    pub grace: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The certificate: serial (any case, colons allowed), a unique serial prefix of
    /// 8+ hex digits, SHA-256 fingerprint, request id, or the certificate file
    #[arg(value_name = "CERT")]
    pub serial: String,
    /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
    /// superseded, cessationOfOperation, privilegeWithdrawn, aACompromise
    #[arg(long, default_value = "unspecified")]
    pub reason: String,
}

/// `crl --issuer`: a CA kind or a generation's name.
fn issuer_name(s: &str) -> std::result::Result<String, String> {
    CaId::parse_arg(s).map(|_| s.to_string()).ok_or_else(|| {
        "expected root, device, entity, or a generation such as device-2".to_string()
    })
}

#[derive(Debug, Args)]
pub struct CrlArgs {
    /// Only this CA's CRL: root, device or entity (the current generation), or
    /// one generation such as device-1 or device-2 (default: every generation
    /// that has not expired, into <ca-dir>/crl/NAME.crl)
    #[arg(long, value_name = "CA", value_parser = issuer_name)]
    pub issuer: Option<String>,
    /// Where to write the CRL (PEM); - is standard output (needs --issuer;
    /// default <ca-dir>/crl/<issuer>.crl)
    #[arg(long, value_name = "FILE", requires = "issuer")]
    pub out: Option<PathBuf>,
    /// How long until the next update, e.g. 7d, 24h
    #[arg(long, value_name = "SPAN", default_value = "7d")]
    pub next_update: String,
    /// Replace an existing --out file (by default an existing file is never replaced)
    #[arg(long, requires = "out")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The certificate: serial (any case, colons allowed), a unique serial prefix of
    /// 8+ hex digits, SHA-256 fingerprint, request id, or the certificate file
    #[arg(value_name = "CERT")]
    pub serial: String,
    /// pem (leaf), der (leaf), chain (leaf + issuing CA), p12 (key + leaf + CAs)
    #[arg(long, value_parser = ["pem", "der", "chain", "p12"])]
    pub format: String,
    /// Where to write; - (the default) is standard output
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// p12: the private key (PKCS#8 PEM or DER; default: the key file written at issuance); - reads standard input
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// p12: a file whose first line is the PKCS#12 password (else
    /// $MTLSCA_P12_PASSWORD, else asked twice on the terminal); - reads standard input
    #[arg(long, value_name = "FILE", alias = "password-file")]
    pub p12_password_file: Option<PathBuf>,
    /// p12: 3DES and SHA-1 for old Java and Windows importers (default AES-256 + PBKDF2)
    #[arg(long)]
    pub legacy: bool,
    /// Replace an existing --out file (by default an existing file is never replaced)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write mtlsca.1 and one page per command, nested ones included, here
    /// (default: mtlsca.1 on standard output)
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
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
    reasons: &'a [batch::Reason],
    #[serde(skip_serializing_if = "Option::is_none")]
    not_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replaces: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retires_at: Option<String>,
}

pub fn batch(ctx: &Ctx, a: BatchArgs) -> Result<Outcome> {
    let name = display_name(&a.manifest);
    let text = fsutil::read_bounded_text(&a.manifest, batch::MAX_MANIFEST, "manifest")?;
    let manifest = Manifest::parse(&text, &name)?;
    let backend = ctx.backend()?;
    let total = manifest.certificate.len() as u64;
    let bar =
        (!ctx.global.quiet && !ctx.global.json && std::io::stderr().is_terminal()).then(|| {
            let style = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} certificates  {rate}  ETA {eta}",
            )
            .map(|st| st.with_key("rate", super::render::progress_rate))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            indicatif::ProgressBar::new(total).with_style(style)
        });
    let mut out = std::io::stdout().lock();
    let json = ctx.global.json;
    let quiet = ctx.global.quiet;
    let mut opts = BatchOptions::new(a.out_dir.clone());
    opts.renew_within = a
        .renew_within
        .as_deref()
        .map(|s| {
            Validity::parse(s)
                .map(|v| v.duration())
                .map_err(|m| Error::Usage(format!("--renew-within {m}")))
        })
        .transpose()?;
    opts.revoke_old = a.revoke_old;
    opts.grace = a
        .grace
        .as_deref()
        .map(|s| {
            Validity::parse(s)
                .map(|v| v.duration())
                .map_err(|m| Error::Usage(format!("--grace {m}")))
        })
        .transpose()?;
    let mut caps = crate::renew::WindowCaps::default();
    let mut retiring = 0usize;
    let now = ctx.now;
    // A closed standard output (`| head`) must not stop issuance half-way:
    // write errors of the report are ignored.
    let result = backend.batch(&text, &manifest, &name, &opts, ctx.now, &mut |o| {
        if let Some((lifetime, window)) = o.rotation.capped {
            caps.by_lifetime.entry(lifetime).or_insert((0, window)).0 += 1;
        }
        if o.rotation.retires_at.is_some_and(|at| at > now) {
            retiring += 1;
        }
        if json {
            let line = EntryLine {
                id: &o.id,
                status: o.status.as_str(),
                serial: o.serial.as_deref(),
                reasons: &o.reasons,
                not_after: o.not_after.map(rfc3339),
                replaces: o.rotation.replaces.as_deref(),
                retires_at: o.rotation.retires_at.map(rfc3339),
            };
            let _ = writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
            super::render::start_json_lines();
        } else if !quiet && o.status == EntryStatus::Refused {
            let msg = format!(
                "refused {}: {}",
                o.id,
                o.reasons
                    .iter()
                    .map(|r| r.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
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
    if let Some(within) = opts.renew_within {
        if !ctx.global.quiet {
            for note in caps.lines(within) {
                eprintln!("note: {note}");
            }
        }
    }
    report_publication(ctx, backend.take_publication(), backend.is_remote());
    if retiring > 0 {
        ctx.say(format!(
            "{retiring} replaced certificate(s) retiring after the grace period (revoked as superseded then)"
        ));
    }
    ctx.say(format!(
        "batch {name}: {} entries: {} issued, {}{} already issued, {} refused (files in {})",
        summary.total,
        summary.issued,
        if opts.renew_within.is_some() {
            format!("{} renewed, ", summary.renewed)
        } else {
            String::new()
        },
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

/// What became of the CRLs after a command revoked (or created a CA): the
/// files published here, a warning on stderr when they could not be (the
/// revocation stands; `mtlsca crl` publishes them), or the running server's
/// publisher doing it. Text lines are printed; the JSON fields are returned
/// (`crl_publication`: published, failed or server; `crls`; `crl_error`).
pub(super) fn report_publication(
    ctx: &Ctx,
    published: Option<Result<crl::Published>>,
    remote: bool,
) -> serde_json::Map<String, serde_json::Value> {
    let mut v = serde_json::Map::new();
    match published {
        Some(Ok(crls)) => {
            v.insert("crl_publication".into(), json!("published"));
            v.insert(
                "crls".into(),
                json!(crls
                    .iter()
                    .map(|(c, p)| crl_json(c, Some(p)))
                    .collect::<Vec<_>>()),
            );
            let files: Vec<String> = crls
                .iter()
                .map(|(c, p)| format!("{} (number {})", p.display(), c.number))
                .collect();
            ctx.say(format!("  CRLs published: {}", files.join(", ")));
        }
        Some(Err(e)) => {
            v.insert("crl_publication".into(), json!("failed"));
            v.insert("crl_error".into(), json!(e.to_string()));
            // Said under --quiet and --json too: relying parties do not see
            // the revocation until a CRL is published.
            let _ = writeln!(
                std::io::stderr().lock(),
                "warning: the CRLs were not published: {e}\n  \
                 the revocation is recorded and stands; publish the CRLs with: mtlsca crl"
            );
        }
        None if remote => {
            v.insert("crl_publication".into(), json!("server"));
            ctx.say("  the running server publishes the CRLs within seconds");
        }
        None => {}
    }
    v
}

pub fn revoke(ctx: &Ctx, a: RevokeArgs) -> Result<Outcome> {
    let reason = Reason::parse(&a.reason)?;
    let backend = ctx.backend()?;
    // A request id stands for its lineage: every unexpired certificate
    // recorded under it and its renewals (a serial, one certificate).
    let lineage = backend.revoke_lineage(&a.serial, reason, ctx.now)?;
    if let Some(id) = &lineage.request_id {
        if ctx.global.json {
            let mut v = json!({
                "request_id": id,
                "reason": reason.as_str(),
                "revoked": lineage
                    .revoked
                    .iter()
                    .map(|r| record_json(r, ctx.now))
                    .collect::<Vec<_>>(),
            });
            let published =
                report_publication(ctx, backend.take_publication(), backend.is_remote());
            if let Some(o) = v.as_object_mut() {
                o.extend(published);
            }
            print_json(&v);
        } else {
            for rec in &lineage.revoked {
                ctx.say(format!(
                    "revoked {} certificate {} ({}), reason {reason}",
                    rec.role,
                    rec.serial,
                    rec.names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| rec.subject.clone()),
                ));
            }
            ctx.say(format!(
                "  {} certificate(s) recorded under request id `{}` and its renewals",
                lineage.revoked.len(),
                crate::names::printable(id)
            ));
            report_publication(ctx, backend.take_publication(), backend.is_remote());
        }
        return Ok(Outcome::Done);
    }
    let Some(rec) = lineage.revoked.into_iter().next() else {
        return Err(Error::State("revoke answered without a certificate".into()));
    };
    if ctx.global.json {
        let mut v = record_json(&rec, ctx.now);
        let published = report_publication(ctx, backend.take_publication(), backend.is_remote());
        if let Some(o) = v.as_object_mut() {
            o.extend(published);
        }
        print_json(&v);
    } else {
        ctx.say(format!(
            "revoked {} certificate {} ({}), reason {reason}",
            rec.role,
            rec.serial,
            rec.names
                .first()
                .cloned()
                .unwrap_or_else(|| rec.subject.clone()),
        ));
        report_publication(ctx, backend.take_publication(), backend.is_remote());
    }
    Ok(Outcome::Done)
}

fn crl_json(c: &crl::Crl, file: Option<&Path>) -> serde_json::Value {
    json!({
        "issuer": c.name(),
        "number": c.number,
        "revoked": c.revoked,
        "this_update": rfc3339(c.this_update),
        "next_update": rfc3339(c.next_update),
        "file": file,
    })
}

pub fn crl(ctx: &Ctx, a: CrlArgs) -> Result<Outcome> {
    let next_update = Validity::parse(&a.next_update)
        .map_err(|m| Error::Usage(format!("--next-update {m}")))?
        .duration();
    // As `export --out`: a file in an existing directory, never one that
    // exists unless --force, checked before anything is signed (no CRL number
    // used). The CRL is then written to `.FILE.tmp` and renamed into place.
    if let Some(out) = a.out.as_deref().filter(|p| !is_stdio(p)) {
        fsutil::check_output(out, a.force)?;
    }
    let backend = ctx.backend()?;
    // Where `<ca-dir>/crl/<issuer>.crl` is, as this command names the CA directory
    // (the server may name it otherwise).
    let published = |c: &crl::Crl| {
        ctx.global
            .ca_dir
            .join("crl")
            .join(format!("{}.crl", c.name()))
    };
    let say_crl = |c: &crl::Crl, to: &str| {
        ctx.say(format!(
            "{} CRL number {}: {} revoked, next update {} -> {to}",
            c.name(),
            c.number,
            c.revoked,
            date(c.next_update)
        ))
    };
    let Some(issuer) = a.issuer.as_deref() else {
        let all = backend.crl(None, CrlTarget::Published, next_update, ctx.now)?;
        if ctx.global.json {
            print_json(&json!(all
                .iter()
                .map(|s| crl_json(&s.crl, Some(&published(&s.crl))))
                .collect::<Vec<_>>()));
        } else {
            for s in &all {
                say_crl(&s.crl, &published(&s.crl).display().to_string());
            }
        }
        return Ok(Outcome::Done);
    };
    // `device`: the current generation; `device-1`, `device-2`: that one.
    let generation = if CaKind::parse(issuer).is_some() {
        None
    } else {
        Some(CaId::parse_arg(issuer).ok_or_else(|| {
            Error::Usage(format!(
                "unknown issuer `{}` (root, device, entity, or a generation such as device-2)",
                crate::names::printable(issuer)
            ))
        })?)
    };
    let sign = |target: CrlTarget| match generation {
        Some(id) => backend.crl_of(id, target, next_update, ctx.now),
        None => backend.crl(CaKind::parse(issuer), target, next_update, ctx.now),
    };
    match a.out.as_deref() {
        Some(p) if is_stdio(p) => {
            let c = one_crl(sign(CrlTarget::Returned)?)?;
            if ctx.global.json {
                let mut v = crl_json(&c, None);
                v["pem"] = json!(c.pem);
                print_json(&v);
            } else {
                std::io::stdout()
                    .lock()
                    .write_all(c.pem.as_bytes())
                    .map_err(|e| Error::io("<stdout>", e))?;
            }
        }
        out => {
            let target = match out {
                Some(p) => CrlTarget::File(p.to_path_buf()),
                None => CrlTarget::Published,
            };
            let c = one_crl(sign(target)?)?;
            let path = out.map(Path::to_path_buf).unwrap_or_else(|| published(&c));
            if ctx.global.json {
                print_json(&crl_json(&c, Some(&path)));
            } else {
                say_crl(&c, &path.display().to_string());
            }
        }
    }
    Ok(Outcome::Done)
}

/// The one CRL of `crl --issuer X`.
fn one_crl(signed: Vec<crate::service::SignedCrl>) -> Result<crl::Crl> {
    signed
        .into_iter()
        .next()
        .map(|s| s.crl)
        .ok_or_else(|| Error::State("no CRL was signed".into()))
}

/// The PKCS#12 password: the first line of `--p12-password-file`, else the
/// environment, else asked twice on the terminal.
fn p12_password(file: Option<&Path>) -> Result<String> {
    if let Some(f) = file {
        let text = fsutil::read_bounded_text(f, MAX_PASSWORD_FILE, "password file")?;
        let line = text.lines().next().unwrap_or("").to_string();
        return Ok(line);
    }
    match std::env::var(P12_PASSWORD_ENV) {
        Ok(p) => Ok(p),
        Err(_) if super::prompt::can_prompt() => super::prompt::new_secret("PKCS#12 password"),
        Err(_) => Err(Error::Usage(format!(
            "a PKCS#12 export needs a password: --p12-password-file FILE, ${P12_PASSWORD_ENV}, or run it on a terminal to be asked"
        ))),
    }
}

pub fn export(ctx: &Ctx, a: ExportArgs) -> Result<Outcome> {
    let format = Format::parse(&a.format)?;
    if format != Format::P12 && (a.key.is_some() || a.p12_password_file.is_some() || a.legacy) {
        return Err(Error::Usage(
            "--key, --p12-password-file and --legacy apply to --format p12 only".into(),
        ));
    }
    let to_stdout = a.out.as_deref().is_none_or(is_stdio);
    if let Some(out) = a.out.as_deref().filter(|p| !is_stdio(p)) {
        fsutil::check_output(out, a.force)?;
    }
    if to_stdout && format.is_binary() && std::io::stdout().is_terminal() {
        return Err(Error::Usage(format!(
            "refusing to write {} (binary) to a terminal; use --out FILE or a pipe",
            a.format
        )));
    }
    let p12 = if format == Format::P12 {
        let stdin_users = [a.key.as_deref(), a.p12_password_file.as_deref()]
            .iter()
            .filter(|p| p.is_some_and(is_stdio))
            .count();
        if stdin_users > 1 {
            return Err(Error::Usage(
                "--key and --p12-password-file cannot both read standard input".into(),
            ));
        }
        let password = p12_password(a.p12_password_file.as_deref())?;
        let key = match &a.key {
            Some(p) => KeyInput::Given {
                bytes: fsutil::read_bounded(p, MAX_KEY_FILE, "key")?,
                what: format!("key {}", display_name(p)),
            },
            None => KeyInput::Recorded,
        };
        Some(P12Options {
            key,
            password,
            legacy: a.legacy,
        })
    } else {
        None
    };
    // The certificate comes from the store (or the running server); the CA
    // certificates and the key file are read here, as in a local run.
    let ca = ctx.open_ca()?;
    let shown = ctx.backend()?.show(&a.serial, ctx.now)?;
    let exported = export::export_record(&ca, shown.record, shown.der, format, p12.as_ref())?;
    if to_stdout {
        std::io::stdout()
            .lock()
            .write_all(&exported.bytes)
            .and_then(|()| std::io::stdout().lock().flush())
            .map_err(|e| Error::io("<stdout>", e))?;
        return Ok(Outcome::Done);
    }
    let path = a.out.as_deref().unwrap_or(Path::new("-"));
    let mode = if format == Format::P12 { 0o600 } else { 0o644 };
    if a.force {
        fsutil::write_atomic(path, &exported.bytes, mode)?;
    } else {
        fsutil::write_new_atomic(path, &exported.bytes, mode)?;
    }
    if ctx.global.json {
        print_json(&json!({
            "serial": exported.record.serial,
            "format": a.format,
            "file": path,
        }));
    } else {
        ctx.say(format!(
            "wrote {} ({} of certificate {})",
            path.display(),
            a.format,
            exported.record.serial
        ));
    }
    Ok(Outcome::Done)
}

pub fn audit(ctx: &Ctx, a: AuditArgs) -> Result<Outcome> {
    let since = a
        .since
        .as_deref()
        .map(|s| {
            time::OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                Error::Usage(format!(
                    "--since `{}` is not an RFC 3339 time such as 2026-01-31T00:00:00Z",
                    crate::names::printable(s)
                ))
            })
        })
        .transpose()?;
    let entries = ctx.backend()?.audit(since, ctx.now)?;
    if ctx.global.json {
        print_json(&json!(entries
            .iter()
            .map(|e| json!({
                "seq": e.seq,
                "at": rfc3339(e.at),
                "action": e.action,
                "serial": e.serial,
                "request_id": e.request_id,
                "detail": e.detail,
                "prev": e.prev,
            }))
            .collect::<Vec<_>>()));
    } else if !ctx.global.quiet {
        let mut out = std::io::stdout().lock();
        for e in &entries {
            let _ = writeln!(
                out,
                "{:>6}  {}  {:<7} {:<32}  {}",
                e.seq,
                rfc3339(e.at),
                super::render::safe(&e.action),
                super::render::safe(e.serial.as_deref().unwrap_or("-")),
                super::render::safe(&e.detail)
            );
        }
    }
    Ok(Outcome::Done)
}

pub fn completions(a: CompletionsArgs) -> Result<Outcome> {
    let buf = super::help::completions(a.shell);
    std::io::stdout()
        .lock()
        .write_all(&buf)
        .map_err(|e| Error::io("<stdout>", e))?;
    Ok(Outcome::Done)
}

pub fn man(ctx: &Ctx, a: ManArgs) -> Result<Outcome> {
    let pages = super::help::man_pages()
        .map_err(|e| Error::State(format!("cannot render the man pages: {e}")))?;
    let Some(dir) = a.out_dir else {
        let page = pages.first().map(|(_, p)| p.as_slice()).unwrap_or_default();
        std::io::stdout()
            .lock()
            .write_all(page)
            .map_err(|e| Error::io("<stdout>", e))?;
        return Ok(Outcome::Done);
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    for (name, page) in &pages {
        fsutil::write_atomic(&dir.join(name), page, 0o644)?;
    }
    fsutil::sync_dir(&dir)?;
    if ctx.global.json {
        print_json(&json!(pages
            .iter()
            .map(|(n, _)| dir.join(n))
            .collect::<Vec<_>>()));
    } else {
        ctx.say(format!(
            "wrote {} man pages to {}",
            pages.len(),
            dir.display()
        ));
    }
    Ok(Outcome::Done)
}
