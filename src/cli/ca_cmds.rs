//! The CA commands: init, profile, issue, sign, list, show, quickstart.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::render::{self, date, print_json, record_json, rfc3339};
use super::verify_cmds;
use super::{Ctx, Outcome};
use crate::ca::{self, InitOptions};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::issue::{IssuanceRequest, Issued, KeySource, Output};
use crate::key::KeyType;
use crate::policy::RequestedContent;
use crate::profile::{self, Profile, Validity};
use crate::role::Role;
use crate::store::{ListFilter, Status, Store};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The CA's name (organizationName of its certificates)
    #[arg(long, default_value = "mtlsca")]
    pub name: String,
    /// Key type of the three CA keys
    #[arg(long, default_value = "ecdsa-p256", value_parser = parse_key_type)]
    pub key_type: KeyType,
    /// Name constraint: only DNS names in DOMAIN (repeatable)
    #[arg(long, value_name = "DOMAIN")]
    pub permit_dns: Vec<String>,
    /// Name constraint: only IP addresses in CIDR (repeatable)
    #[arg(long, value_name = "CIDR")]
    pub permit_ip: Vec<String>,
    /// Name constraint: only URIs whose host is HOST, or any host under DOMAIN
    /// when given as .DOMAIN (repeatable; without it, --permit-dns also holds
    /// URI hosts to its domains)
    #[arg(long, value_name = "HOST|.DOMAIN")]
    pub permit_uri: Vec<String>,
    /// Encrypt the CA keys (PKCS#8 PBES2) under the passphrase from
    /// --passphrase-file or $MTLSCA_PASSPHRASE; every signing command then needs it
    #[arg(long)]
    pub encrypt: bool,
    /// Make the issuing CAs subordinate to this external root (its certificate;
    /// its key stays with its owner): writes their keys and CSRs, and waits for
    /// `mtlsca ca install`
    #[arg(long, value_name = "ROOT.pem")]
    pub external_root: Option<PathBuf>,
}

/// The file `init` writes with the root and both issuing CAs.
pub use crate::ca::BUNDLE_FILE;

fn parse_key_type(s: &str) -> std::result::Result<KeyType, String> {
    KeyType::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// List the CA's profiles (the built-in ones when there is no CA)
    List,
    /// Print a profile with every default spelled out
    Show { name: String },
    /// Check a profile file, for instance one you edited
    Check { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Profile name (device, workload, person, organization, or the CA's own)
    pub profile: String,
    /// DNS name (repeatable)
    #[arg(long)]
    pub dns: Vec<String>,
    /// IP address (repeatable)
    #[arg(long)]
    pub ip: Vec<String>,
    /// URI, e.g. spiffe://corp.internal/web (repeatable)
    #[arg(long)]
    pub uri: Vec<String>,
    /// Email address (repeatable)
    #[arg(long)]
    pub email: Vec<String>,
    /// Names as one list, as other tools spell them: dns:NAME,ip:ADDR,uri:URI,email:ADDR
    #[arg(long, value_name = "KIND:NAME,...", value_delimiter = ',')]
    pub san: Vec<String>,
    /// Subject common name
    #[arg(long)]
    pub cn: Option<String>,
    /// Subject organizationName
    #[arg(long)]
    pub org: Option<String>,
    /// Subject countryName (two letters)
    #[arg(long)]
    pub country: Option<String>,
    /// Validity: a number and a unit s, m, h, d, w or y, e.g. 90d, 24h, 2w
    /// (default: the profile's)
    #[arg(long, value_name = "SPAN")]
    pub validity: Option<String>,
    /// Until when: an RFC 3339 time (2027-01-31T00:00:00Z) or a span like --validity
    #[arg(long, value_name = "TIME|SPAN", conflicts_with = "validity")]
    pub not_after: Option<String>,
    /// Key type (default: the profile's)
    #[arg(long, value_parser = parse_key_type)]
    pub key_type: Option<KeyType>,
    /// Output prefix: PREFIX.key, PREFIX.pem, PREFIX.chain.pem (default: from the first name)
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Idempotency key: a repeated call returns the certificate issued for it
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Profile name
    pub profile: String,
    /// The CSR (PEM or DER); - reads standard input
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,
    /// Where to write the certificate PEM (the chain goes beside it, as NAME.chain.pem); - (the default) is standard output
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Validity: a number and a unit s, m, h, d, w or y, e.g. 90d (default: the profile's)
    #[arg(long, value_name = "SPAN")]
    pub validity: Option<String>,
    /// Until when: an RFC 3339 time (2027-01-31T00:00:00Z) or a span like --validity
    #[arg(long, value_name = "TIME|SPAN", conflicts_with = "validity")]
    pub not_after: Option<String>,
    /// Idempotency key: the same id with the same CSR returns the certificate
    /// issued for it; with another CSR it is refused
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_parser = ["device", "entity"])]
    pub role: Option<String>,
    #[arg(long, value_parser = ["valid", "revoked", "expired"])]
    pub status: Option<String>,
    /// Only certificates whose notAfter falls within this span from now, e.g. 30d
    #[arg(long, value_name = "SPAN")]
    pub expiring_within: Option<String>,
    /// Names or subject matching this glob (* and ?) or substring
    #[arg(long, value_name = "PATTERN")]
    pub name: Option<String>,
    /// Only certificates of this profile
    #[arg(long)]
    pub profile: Option<String>,
    /// Archived certificates too (moved out by `store tidy`); default: the
    /// store's live part only
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The certificate: serial (any case, colons allowed), a unique serial prefix of
    /// 8+ hex digits, SHA-256 fingerprint, request id, or the certificate file
    #[arg(value_name = "CERT")]
    pub id: String,
    /// Print the certificate PEM instead of the record
    #[arg(long)]
    pub pem: bool,
}

// `mtlsca renew`: what to renew, where the files go, and whether the old
// certificate is revoked. (A doc comment here would replace the command's
// summary in `--help`: see `super::Deferred`.)
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The certificate to renew: serial, unique serial prefix (8+ hex digits),
    /// SHA-256, request id, or the certificate file
    #[arg(
        value_name = "CERT",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub cert: Option<String>,
    /// Renew every current, valid certificate due within --within, in place
    /// (certificates signed from CSRs are skipped and listed)
    #[arg(long, requires = "within", conflicts_with = "out")]
    pub all: bool,
    /// With --all: renew those with less than SPAN left (e.g. 30d), the window
    /// capped at 2/3 of each certificate's lifetime
    #[arg(long, value_name = "SPAN", requires = "all")]
    pub within: Option<String>,
    /// With --all: only this profile's certificates
    #[arg(long, requires = "all")]
    pub profile: Option<String>,
    /// With --all: only certificates whose names or subject match this glob
    /// (* and ?) or substring
    #[arg(long, value_name = "PATTERN", requires = "all")]
    pub name: Option<String>,
    /// With --all: list what is due; renew, write and record nothing
    #[arg(long, requires = "all")]
    pub dry_run: bool,
    /// Write PREFIX.key, PREFIX.pem, PREFIX.chain.pem (new names, never
    /// overwritten); default: replace the old certificate's files, keeping each
    /// as NAME.prev
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
    /// Revoke the old certificate (reason superseded) once the new one is issued
    #[arg(long)]
    pub revoke_old: bool,
    /// With --revoke-old: revoke the old certificate only after SPAN (e.g. 1h,
    /// 7d), so that it keeps working while the new one is rolled out
    #[arg(long, value_name = "SPAN", requires = "revoke_old")]
    pub grace: Option<String>,
    /// Validity of the new certificate, e.g. 90d, 24h, 2w (default: the profile's)
    #[arg(long, value_name = "SPAN")]
    pub validity: Option<String>,
    /// Until when: an RFC 3339 time or a span like --validity
    #[arg(long, value_name = "TIME|SPAN", conflicts_with = "validity")]
    pub not_after: Option<String>,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Directory for the demo CA and certificates (default: ./mtlsca-quickstart, or the next free -N)
    pub dir: Option<PathBuf>,
}

pub fn init(ctx: &Ctx, a: InitArgs) -> Result<Outcome> {
    let dir = &ctx.global.ca_dir;
    let passphrase = if a.encrypt {
        match ca::read_passphrase(&ctx.given_passphrase_source())? {
            Some(p) => Some(p),
            None if super::prompt::can_prompt() => {
                let answer = zeroize::Zeroizing::new(super::prompt::new_secret(
                    "passphrase for the new CA keys",
                )?);
                Some(crate::keypair::Passphrase::new(
                    answer.as_bytes().to_vec(),
                    "the terminal",
                )?)
            }
            None => {
                return Err(Error::Usage(format!(
                    "init --encrypt needs a passphrase: set ${} or pass --passphrase-file FILE",
                    super::PASSPHRASE_ENV
                )))
            }
        }
    } else {
        None
    };
    let opts = InitOptions {
        name: a.name,
        key_type: a.key_type,
        permit_dns: a.permit_dns,
        permit_ip: a.permit_ip,
        permit_uri: a.permit_uri,
    };
    if let Some(root) = &a.external_root {
        return super::ext_cmds::init_external(ctx, root, &opts, passphrase.as_ref());
    }
    let ca = ca::init_protected(dir, &opts, passphrase.as_ref(), ctx.now)?;
    let store = Store::open(dir, ctx.global.lock_timeout)?;
    store.flush()?;
    // Current CRLs in crl/ from the first moment (the CA's keys are at hand).
    let ca = match &passphrase {
        Some(p) => ca.with_passphrase(p.clone()),
        None => ca,
    };
    let crls = crate::crl::publish_all(&ca, &store, crate::crl::DEFAULT_NEXT_UPDATE, ctx.now);
    drop(store);
    let bundle = dir.join(BUNDLE_FILE);
    let constraints: Vec<String> = ca
        .config
        .constraints()?
        .iter()
        .map(crate::names::Pattern::as_text)
        .collect();
    if ctx.global.json {
        let mut v = json!({
            "ca_dir": dir,
            "name": ca.config.name,
            "key_type": ca.config.key_type.as_str(),
            "root": dir.join("root.pem"),
            "device_ca": dir.join("device-ca.pem"),
            "entity_ca": dir.join("entity-ca.pem"),
            "ca_bundle": bundle,
            "profiles": ca.profile_names()?,
            "permit_dns": ca.config.permit_dns,
            "permit_ip": ca.config.permit_ip,
            "permit_uri": ca.config.permit_uri,
            "name_constraints": constraints,
            "encrypted_keys": ca.config.encrypted_keys,
        });
        let published = super::lifecycle_cmds::report_publication(ctx, Some(crls), false);
        if let Some(o) = v.as_object_mut() {
            o.extend(published);
        }
        print_json(&v);
    } else {
        ctx.say(format!(
            "created CA `{}` in {}",
            ca.config.name,
            dir.display()
        ));
        ctx.say(format!(
            "  root CA           {}",
            dir.join("root.pem").display()
        ));
        ctx.say(format!(
            "  device issuing CA {}  (EKU serverAuth)",
            dir.join("device-ca.pem").display()
        ));
        ctx.say(format!(
            "  entity issuing CA {}  (EKU clientAuth)",
            dir.join("entity-ca.pem").display()
        ));
        ctx.say(format!(
            "  CA bundle         {}  (root + both issuing CAs)",
            bundle.display()
        ));
        ctx.say(format!(
            "  profiles          {}",
            ca.profile_names()?.join(", ")
        ));
        if !constraints.is_empty() {
            ctx.say(format!("  name constraints  {}", constraints.join(", ")));
        }
        if ca.config.encrypted_keys {
            ctx.say(format!(
                "  CA keys           {} (encrypted, PKCS#8 PBES2)",
                dir.join("private").display()
            ));
        }
        super::lifecycle_cmds::report_publication(ctx, Some(crls), false);
        ctx.say(format!(
            "relying parties trust {} (the anchor; or {} where one CA file is wanted); \
             certificates are presented with their PREFIX.chain.pem",
            dir.join("root.pem").display(),
            bundle.display()
        ));
    }
    Ok(Outcome::Done)
}

pub fn profile(ctx: &Ctx, c: ProfileCmd) -> Result<Outcome> {
    match c {
        ProfileCmd::List => {
            // One invalid file does not hide the others: it is listed with its error.
            let mut broken: Vec<(String, String, Error)> = Vec::new();
            let profiles: Vec<(Profile, String)> = match ctx.open_ca() {
                Ok(ca) => {
                    let mut ok = Vec::new();
                    for n in ca.profile_names()? {
                        let src = ca.profile_path(&n).display().to_string();
                        match ca.profile(&n) {
                            Ok(p) => ok.push((p, src)),
                            Err(e) => broken.push((n, src, e)),
                        }
                    }
                    ok
                }
                Err(Error::State(_)) => profile::BUILTIN
                    .iter()
                    .filter_map(|(n, _)| profile::builtin(n))
                    .map(|p| (p, "built-in".to_string()))
                    .collect(),
                Err(e) => return Err(e),
            };
            if ctx.global.json {
                print_json(&json!(profiles
                    .iter()
                    .map(|(p, src)| json!({
                        "name": p.name, "role": p.role, "kind": p.kind,
                        "extended_key_usage": p.extended_key_usage,
                        "default_validity": p.default_validity, "max_validity": p.max_validity,
                        "description": p.description, "source": src, "valid": true,
                    }))
                    .chain(broken.iter().map(|(n, src, e)| json!({
                        "name": n, "source": src, "valid": false, "error": e.to_string(),
                    })))
                    .collect::<Vec<_>>()));
            } else if !ctx.global.quiet {
                let rows: Vec<Vec<String>> = profiles
                    .iter()
                    .map(|(p, _)| {
                        vec![
                            p.name.clone(),
                            p.role_label(),
                            p.extended_key_usage
                                .iter()
                                .map(|e| e.display_name())
                                .collect::<Vec<_>>()
                                .join("+"),
                            format!("{} / {}", p.default_validity, p.max_validity),
                            p.description.clone(),
                        ]
                    })
                    .chain(broken.iter().map(|(n, _, e)| {
                        vec![
                            n.clone(),
                            "INVALID".into(),
                            "-".into(),
                            "-".into(),
                            e.to_string(),
                        ]
                    }))
                    .collect();
                outln!(
                    "{}",
                    render::table(
                        &["PROFILE", "ROLE", "EKU", "VALIDITY", "DESCRIPTION"],
                        &rows
                    )
                );
            }
            Ok(Outcome::Done)
        }
        ProfileCmd::Show { name } => {
            let name = profile_name(ctx, name);
            let p = match ctx.open_ca() {
                Ok(ca) => ca
                    .profile(&name)
                    .map_err(|e| with_profile_hint(ctx, &name, e))?,
                Err(Error::State(_)) => profile::builtin(&name).ok_or_else(|| {
                    let tip = super::hints::profile_suggestion(&name, &[])
                        .map(|t| format!("; {t}"))
                        .unwrap_or_default();
                    Error::Usage(format!(
                        "no built-in profile `{}` (and no CA to look in){tip}",
                        crate::names::printable(&name)
                    ))
                })?,
                Err(e) => return Err(e),
            };
            if ctx.global.json {
                print_json(&serde_json::to_value(&p).unwrap_or_default());
            } else {
                out!("{}", p.to_toml());
            }
            Ok(Outcome::Done)
        }
        ProfileCmd::Check { file } => {
            // A file that cannot be read is bad input (exit 2); one that reads but
            // is not a valid profile, by syntax or by rule, is the answer "no" (exit 1).
            let text = crate::fsutil::read_bounded_text(&file, 64 * 1024, "profile")?;
            let p = Profile::parse(&text, &file.display().to_string()).map_err(|e| match e {
                Error::Invalid(r) => Error::Refused(r),
                e => e,
            })?;
            if ctx.global.json {
                print_json(&json!({"file": file, "valid": true, "name": p.name, "role": p.role}));
            } else {
                ctx.say(format!(
                    "{}: ok ({} profile `{}`)",
                    file.display(),
                    p.role_label(),
                    p.name
                ));
            }
            Ok(Outcome::Done)
        }
    }
}

/// A file prefix from the first name of a request: `web-01.corp.internal`, `alice@corp.example`.
fn default_prefix(c: &RequestedContent) -> PathBuf {
    use crate::role::NameKind;
    // The name as the certificate will carry it (a DNS name in lower case).
    let normalized = |kind: NameKind, v: &String| {
        crate::names::SanName::parse(kind, v)
            .map(|n| n.value())
            .unwrap_or_else(|_| v.clone())
    };
    let first = c
        .dns
        .first()
        .map(|d| normalized(NameKind::Dns, d))
        .or(c.ip.first().map(|i| normalized(NameKind::Ip, i)))
        .or(c.email.first().map(|e| normalized(NameKind::Email, e)))
        .or(c.cn.clone())
        .or(c.org.clone())
        // A URI names the file after its last path segment (spiffe://corp/ns/web → web).
        .or_else(|| {
            c.uri.first().map(|u| {
                u.trim_end_matches('/')
                    .rsplit(['/', ':'])
                    .next()
                    .unwrap_or(u)
                    .to_string()
            })
        })
        .unwrap_or_else(|| "certificate".into());
    let clean: String = first
        .replace("*.", "wildcard.")
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || "._@-".contains(ch) {
                ch
            } else {
                '-'
            }
        })
        .collect();
    PathBuf::from(
        clean
            .trim_matches(['-', '.'])
            .chars()
            .take(100)
            .collect::<String>(),
    )
}

/// The validity a request asks for: `--validity SPAN`, or `--not-after` as a span
/// or an RFC 3339 time (turned into the span from now, to the second).
fn validity_arg(
    validity: Option<String>,
    not_after: Option<String>,
    ctx: &Ctx,
) -> Result<Option<String>> {
    let Some(t) = not_after else {
        return Ok(validity);
    };
    if t.trim().starts_with(|c: char| c.is_ascii_digit()) && Validity::parse(&t).is_ok() {
        return Ok(Some(t));
    }
    let at = time::OffsetDateTime::parse(t.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            Error::Usage(format!(
                "--not-after `{}` is neither an RFC 3339 time (2027-01-31T00:00:00Z) nor a span (90d, 24h, 2w)",
                crate::names::printable(&t)
            ))
        })?;
    let start = ctx.now.replace_nanosecond(0).unwrap_or(ctx.now);
    let secs = (at - start).whole_seconds();
    if secs <= 0 {
        return Err(Error::Usage(format!(
            "--not-after `{}` is not in the future (now is {})",
            crate::names::printable(&t),
            render::rfc3339(ctx.now)
        )));
    }
    Ok(Some(format!("{secs}s")))
}

pub fn issue(ctx: &Ctx, mut a: IssueArgs) -> Result<Outcome> {
    for item in std::mem::take(&mut a.san) {
        let (kind, value) = item.split_once(':').unwrap_or(("", &item));
        let list = match kind.to_ascii_lowercase().as_str() {
            "dns" => &mut a.dns,
            "ip" => &mut a.ip,
            "uri" => &mut a.uri,
            "email" => &mut a.email,
            _ => {
                return Err(Error::Usage(format!(
                    "--san `{}`: expected KIND:NAME with KIND dns, ip, uri or email (e.g. --san dns:web.example,ip:10.0.0.1)",
                    crate::names::printable(&item)
                )))
            }
        };
        list.push(value.to_string());
    }
    let content = RequestedContent {
        dns: a.dns,
        ip: a.ip,
        uri: a.uri,
        email: a.email,
        cn: a.cn,
        org: a.org,
        country: a.country,
        validity: validity_arg(a.validity, a.not_after, ctx)?,
        ..Default::default()
    };
    let prefix = a.out.unwrap_or_else(|| default_prefix(&content));
    let req = IssuanceRequest {
        profile: profile_name(ctx, a.profile),
        content,
        key: KeySource::Generate(a.key_type),
        request_id: a.request_id,
        output: Output::Prefix(prefix),
        origin: crate::rules::Origin::Arguments,
        replaces: None,
    };
    let issued = run_issue(ctx, &req)?;
    report_issued(ctx, &issued);
    Ok(Outcome::Done)
}

fn run_issue(ctx: &Ctx, req: &IssuanceRequest) -> Result<Issued> {
    // `renewal-of:` ids are the engine's (rule `request-id-reserved`), for
    // every front end.
    ctx.backend()?
        .issue(req.clone(), ctx.now)
        .map_err(|e| with_profile_hint(ctx, &req.profile, e))
}

/// The profile a name on the command line stands for: the CA's profile of that
/// name, else the one another spelling names (`organisation` is the profile
/// `organization`, unless the CA has a profile `organisation` of its own).
pub fn profile_name(ctx: &Ctx, name: String) -> String {
    let Some(canonical) = super::hints::profile_spelling(&name) else {
        return name;
    };
    match ctx.open_ca() {
        Ok(ca) if ca.profile_path(&name).exists() => name,
        _ => canonical.to_string(),
    }
}

/// An unknown profile `name` with the profile that was probably meant (what
/// other tools call a server's certificate is `device`, a typo, ...); any other
/// error unchanged. Still bad input, exit 2.
pub fn with_profile_hint(ctx: &Ctx, name: &str, e: Error) -> Error {
    let shown = crate::names::printable(name);
    match e {
        Error::Invalid(mut r) if r.has(crate::rules::Rule::ProfileUnknown) => {
            let known = ctx
                .open_ca()
                .and_then(|ca| ca.profile_names())
                .unwrap_or_default();
            if let Some(tip) = super::hints::profile_suggestion(name, &known) {
                for x in r.reasons.iter_mut().filter(|x| {
                    x.rule == crate::rules::Rule::ProfileUnknown
                        && x.value.as_deref() == Some(shown.as_str())
                }) {
                    x.detail = format!("{}; {tip}", x.detail);
                }
            }
            Error::Invalid(r)
        }
        other => other,
    }
}

pub fn issued_json(i: &Issued, ctx: &Ctx) -> serde_json::Value {
    let mut v = record_json(&i.record, ctx.now);
    v["files"] = json!(i.files);
    v["written"] = json!(i.written);
    v["status"] = json!(i.status.as_str());
    v
}

fn report_issued(ctx: &Ctx, i: &Issued) {
    if ctx.global.json {
        print_json(&issued_json(i, ctx));
        return;
    }
    let r = &i.record;
    let renewal = r.replaces.is_some();
    let verb = match i.status {
        crate::issue::IssueStatus::Issued if renewal => "renewed: issued",
        crate::issue::IssueStatus::Exists if renewal => "already renewed:",
        crate::issue::IssueStatus::Exists => "already issued for this request id:",
        _ => "issued",
    };
    ctx.say(format!(
        "{verb} {} certificate {} (profile {}), valid until {}",
        r.role,
        r.serial,
        r.profile,
        crate::timefmt::human_time(r.not_after)
    ));
    ctx.say(format!(
        "  subject  {}",
        if r.subject.is_empty() {
            "(empty)"
        } else {
            &r.subject
        }
    ));
    ctx.say(format!("  names    {}", r.names.join(", ")));
    for f in &i.files {
        if i.written.contains(f) {
            ctx.say(format!("  wrote    {}", f.display()));
        } else {
            ctx.say(format!("  exists   {}", f.display()));
        }
    }
    if i.status == crate::issue::IssueStatus::Exists {
        if let Some(k) = &r.key_file {
            if !i
                .files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "key"))
            {
                ctx.say(format!(
                    "  note     no key file here: a private key is never stored; this certificate's key was written to {k}"
                ));
            }
        }
    }
}

/// Renew a certificate through the engine: same profile, names and subject, a
/// new key; optionally revoke the old one as superseded.
pub fn renew(ctx: &Ctx, a: RenewArgs) -> Result<Outcome> {
    let grace = a
        .grace
        .as_deref()
        .map(|s| span_arg("--grace", s))
        .transpose()?;
    if a.all {
        return renew_all(ctx, a, grace);
    }
    let cert = a.cert.clone().unwrap_or_default();
    // One code path, local or through the running server: look the old
    // certificate up, issue its renewal, retire the old one if asked.
    let backend = ctx.backend()?;
    let crate::service::Shown {
        record: old, der, ..
    } = backend.show(&cert, ctx.now)?;
    let output = match a.out {
        Some(p) => crate::renew::RenewOutput::Prefix(p),
        None => crate::renew::RenewOutput::InPlace,
    };
    let req = crate::renew::request(
        &old,
        &der,
        output,
        validity_arg(a.validity, a.not_after, ctx)?,
        crate::rules::Origin::Arguments,
    )?;
    let issued = backend.issue(req, ctx.now)?;
    let retired = if a.revoke_old && old.status != Status::Revoked {
        Some(backend.retire(&old.serial, grace, ctx.now)?)
    } else {
        None
    };
    let revoked = retired.as_ref().is_some_and(|r| r.revoked);
    let retiring_at = retired.as_ref().and_then(|r| r.due);
    if ctx.global.json {
        let mut v = issued_json(&issued, ctx);
        v["replaces"] = json!(old.serial);
        v["old_revoked"] = json!(revoked || old.status == Status::Revoked);
        if revoked {
            let published = super::lifecycle_cmds::report_publication(
                ctx,
                backend.take_publication(),
                backend.is_remote(),
            );
            if let Some(o) = v.as_object_mut() {
                o.extend(published);
            }
        }
        v["old_retiring_at"] = json!(retiring_at.map(rfc3339));
        print_json(&v);
        return Ok(Outcome::Done);
    }
    report_issued(ctx, &issued);
    ctx.say(format!("  replaces {}", old.serial));
    let kept: Vec<String> = issued
        .written
        .iter()
        .map(|f| crate::issue::prev_name(f))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !kept.is_empty() {
        ctx.say(format!("  kept     {}", kept.join(", ")));
    }
    if revoked {
        ctx.say(format!("  revoked  {} (superseded)", old.serial));
        super::lifecycle_cmds::report_publication(
            ctx,
            backend.take_publication(),
            backend.is_remote(),
        );
    }
    if let Some(at) = retiring_at {
        ctx.say(format!(
            "  retiring {} at {} (revoked as superseded then)",
            old.serial,
            rfc3339(at)
        ));
    }
    Ok(Outcome::Done)
}

/// A span argument (`--grace`, `--within`).
fn span_arg(flag: &str, s: &str) -> Result<time::Duration> {
    Validity::parse(s)
        .map(|v| v.duration())
        .map_err(|m| Error::Usage(format!("{flag} {m}")))
}

/// `renew --all`: every current, valid certificate that is due, in place.
fn renew_all(ctx: &Ctx, a: RenewArgs, grace: Option<time::Duration>) -> Result<Outcome> {
    use crate::rotate::{RenewAllOptions, RenewAllStatus};
    let within = span_arg("--within", a.within.as_deref().unwrap_or_default())?;
    let opts = RenewAllOptions {
        within,
        profile: a.profile.map(|p| profile_name(ctx, p)),
        name: a.name,
        validity: validity_arg(a.validity, a.not_after, ctx)?,
        revoke_old: a.revoke_old,
        grace,
        dry_run: a.dry_run,
    };
    let backend = ctx.backend()?;
    let json = ctx.global.json;
    let summary = backend.publishing_once(ctx.now, || {
        crate::rotate::renew_all(&backend, &opts, ctx.now, &mut |e| {
            let name = e
                .old
                .names
                .first()
                .cloned()
                .unwrap_or_else(|| e.old.subject.clone());
            if json {
                super::render::start_json_lines();
                let line = json!({
                    "serial": e.old.serial,
                    "status": e.status.as_str(),
                    "profile": e.old.profile,
                    "name": name,
                    "not_after": rfc3339(e.old.not_after),
                    "new_serial": e.new.as_ref().map(|n| n.serial.clone()),
                    "new_not_after": e.new.as_ref().map(|n| rfc3339(n.not_after)),
                    "files": e.files,
                    "retires_at": e.retires_at.map(rfc3339),
                    "reason": e.reason,
                });
                outln!("{}", serde_json::to_string(&line).unwrap_or_default());
                return;
            }
            let line = match e.status {
                RenewAllStatus::Renewed => format!(
                    "renewed {} {} ({}): new {} until {}{}",
                    e.old.serial,
                    name,
                    e.old.profile,
                    e.new.as_ref().map_or("-", |n| n.serial.as_str()),
                    date(e.new.as_ref().map_or(e.old.not_after, |n| n.not_after)),
                    match e.retires_at {
                        Some(at) if at > ctx.now => format!(", old retiring at {}", rfc3339(at)),
                        Some(_) => ", old revoked (superseded)".into(),
                        None => String::new(),
                    }
                ),
                RenewAllStatus::Due => format!(
                    "due {} {} ({}), expires {}",
                    e.old.serial,
                    name,
                    e.old.profile,
                    date(e.old.not_after)
                ),
                _ => format!(
                    "{} {} {} ({}): {}",
                    e.status.as_str(),
                    e.old.serial,
                    name,
                    e.old.profile,
                    e.reason.as_deref().unwrap_or("")
                ),
            };
            ctx.say(render::safe(&line));
        })
    })?;
    if !ctx.global.quiet {
        for note in summary.caps.lines(within) {
            eprintln!("note: {note}");
        }
    }
    ctx.say(format!(
        "renew --all: {} current certificate(s) considered: {} {}, {} skipped, {} refused{}",
        summary.considered,
        summary.renewed,
        if opts.dry_run {
            "due (dry run: nothing renewed)"
        } else {
            "renewed"
        },
        summary.skipped,
        summary.refused,
        ""
    ));
    super::lifecycle_cmds::report_publication(ctx, backend.take_publication(), backend.is_remote());
    Ok(if summary.refused > 0 {
        Outcome::No
    } else {
        Outcome::Done
    })
}

pub fn sign(ctx: &Ctx, a: SignArgs) -> Result<Outcome> {
    let csr = fsutil::read_bounded(&a.csr, fsutil::MAX_INPUT, "CSR")?;
    let to_stdout = a.out.as_deref().is_none_or(|p| p == Path::new("-"));
    let output = match &a.out {
        Some(p) if p != Path::new("-") => Output::File(p.clone()),
        _ => Output::None,
    };
    let req = IssuanceRequest {
        profile: profile_name(ctx, a.profile),
        content: RequestedContent {
            validity: validity_arg(a.validity, a.not_after, ctx)?,
            ..Default::default()
        },
        key: KeySource::Csr(csr),
        request_id: a.request_id,
        output,
        origin: crate::rules::Origin::Arguments,
        replaces: None,
    };
    let csr_name = if a.csr == Path::new("-") {
        "<stdin>".to_string()
    } else {
        a.csr.display().to_string()
    };
    let issued = run_issue(ctx, &req).map_err(|e| match e {
        // Name the file an unreadable CSR came from.
        Error::Invalid(r) if r.has(crate::rules::Rule::CsrUnreadable) && r.context.is_none() => {
            Error::Invalid(r.context(csr_name.clone()))
        }
        other => other,
    })?;
    if to_stdout {
        if ctx.global.json {
            let mut v = issued_json(&issued, ctx);
            v["pem"] = json!(issued.cert_pem);
            print_json(&v);
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(issued.cert_pem.as_bytes())
                .map_err(|e| Error::io("<stdout>", e))?;
        }
    } else {
        report_issued(ctx, &issued);
    }
    Ok(Outcome::Done)
}

pub fn list(ctx: &Ctx, a: ListArgs) -> Result<Outcome> {
    let filter = ListFilter {
        role: a.role.as_deref().and_then(Role::parse),
        status: a.status.as_deref().and_then(Status::parse),
        profile: a.profile.map(|p| profile_name(ctx, p)),
        expiring_within: a
            .expiring_within
            .as_deref()
            .map(|s| {
                Validity::parse(s)
                    .map(|v| v.duration())
                    .map_err(|m| Error::Usage(format!("--expiring-within {m}")))
            })
            .transpose()?,
        name: a.name,
        include_archived: a.all,
    };
    let backend = ctx.backend()?;
    // Pending retirements are shown (a read: nothing is applied here).
    let retiring: std::collections::HashMap<String, time::OffsetDateTime> = backend
        .retiring(ctx.now)?
        .into_iter()
        .map(|p| (p.serial, p.due))
        .collect();
    let records = backend.list(filter, ctx.now)?;
    let retiring = |r: &crate::store::Record| {
        retiring
            .get(&r.serial)
            .filter(|_| r.status != Status::Revoked)
    };
    // On stderr only (under --json too): `list --json` prints an array.
    let warnings = super::rollover_cmds::rollover_warnings(ctx);
    super::rollover_cmds::print_rollover_warnings(ctx, &warnings);
    if ctx.global.json {
        print_json(&json!(records
            .iter()
            .map(|r| {
                let mut v = record_json(r, ctx.now);
                if let Some(at) = retiring(r) {
                    v["retiring_at"] = json!(rfc3339(*at));
                }
                v
            })
            .collect::<Vec<_>>()));
    } else if !ctx.global.quiet {
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                vec![
                    r.serial.clone(),
                    r.role.to_string(),
                    r.profile.clone(),
                    match retiring(r) {
                        Some(at) => format!(
                            "{}, retiring at {}",
                            r.status_at(ctx.now).as_str(),
                            rfc3339(*at)
                        ),
                        None => r.status_at(ctx.now).as_str().to_string(),
                    },
                    date(r.not_after),
                    r.names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| r.subject.clone()),
                ]
            })
            .collect();
        outln!(
            "{}",
            render::table(
                &["SERIAL", "ROLE", "PROFILE", "STATUS", "NOT AFTER", "NAME"],
                &rows
            )
        );
        outln!("{} certificate(s)", records.len());
    }
    Ok(Outcome::Done)
}

pub fn show(ctx: &Ctx, a: ShowArgs) -> Result<Outcome> {
    let backend = ctx.backend()?;
    // A pending retirement is shown (a read: nothing is applied here).
    let pending = backend.retiring(ctx.now)?;
    let crate::service::Shown {
        record: rec,
        der,
        audit,
        renewed_by,
        archived,
    } = backend.show(&a.id, ctx.now)?;
    // A certificate revoked meanwhile by other means is not retiring any more
    // (its entry goes when it falls due).
    let retiring_at = pending
        .iter()
        .find(|p| p.serial == rec.serial && rec.status != Status::Revoked)
        .map(|p| p.due);
    let pem = crate::issue::pem_cert(&der);
    if a.pem {
        out!("{pem}");
        return Ok(Outcome::Done);
    }
    if ctx.global.json {
        let mut v = record_json(&rec, ctx.now);
        v["replaces"] = json!(rec.replaces);
        v["renewed_by"] = json!(renewed_by);
        v["retiring_at"] = json!(retiring_at.map(rfc3339));
        v["archived"] = json!(archived);
        v["pem"] = json!(pem);
        v["key_file"] = json!(rec.key_file);
        v["audit"] = json!(audit
            .iter()
            .map(|e| json!({"at": rfc3339(e.at), "action": e.action, "detail": e.detail}))
            .collect::<Vec<_>>());
        print_json(&v);
    } else if !ctx.global.quiet {
        let rows = [
            ("serial", rec.serial.clone()),
            ("role", rec.role.to_string()),
            ("profile", rec.profile.clone()),
            ("status", rec.status_at(ctx.now).as_str().to_string()),
            ("subject", rec.subject.clone()),
            ("names", rec.names.join(", ")),
            ("not before", rfc3339(rec.not_before)),
            ("not after", rfc3339(rec.not_after)),
            ("issuer", format!("{} CA", rec.issuer)),
            ("sha256", rec.sha256.clone()),
            (
                "request id",
                rec.request_id.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "key file",
                rec.key_file.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "replaces",
                rec.replaces.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "renewed by",
                renewed_by.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "archived",
                if archived {
                    "yes (moved out of the live store by `store tidy`)".into()
                } else {
                    "no".into()
                },
            ),
        ];
        for (k, v) in rows {
            outln!("{k:<11} {}", render::safe(&v));
        }
        if let Some(at) = retiring_at {
            outln!(
                "{:<11} retiring at {} (revoked as superseded then)",
                "retiring",
                rfc3339(at)
            );
        }
        if let Some(r) = &rec.revocation {
            outln!(
                "{:<11} {} ({})",
                "revoked",
                rfc3339(r.at),
                render::safe(&r.reason)
            );
        }
        for e in audit {
            outln!(
                "{:<11} {} {} {}",
                "audit",
                rfc3339(e.at),
                render::safe(&e.action),
                render::safe(&e.detail)
            );
        }
    }
    Ok(Outcome::Done)
}

pub fn quickstart(ctx: &Ctx, a: QuickstartArgs) -> Result<Outcome> {
    let dir = match a.dir {
        Some(d) => d,
        None => (1..)
            .map(|n| {
                PathBuf::from(if n == 1 {
                    "mtlsca-quickstart".to_string()
                } else {
                    format!("mtlsca-quickstart-{n}")
                })
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| PathBuf::from("mtlsca-quickstart")),
    };
    let q = crate::quickstart::run(&dir, ctx.global.lock_timeout, ctx.now, &mut |e| {
        use crate::quickstart::Event;
        match e {
            Event::Step { n, text } => ctx.say(format!("\n[{n}] {text}")),
            Event::CaCreated { ca_dir } => ctx.say(format!(
                "    root CA {}, device CA (serverAuth), entity CA (clientAuth)",
                ca_dir.join("root.pem").display()
            )),
            Event::Issued(out) => ctx.say(format!(
                "    serial {}  valid until {}  files {}",
                out.record.serial,
                date(out.record.not_after),
                out.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            Event::Pair {
                initiator,
                responder,
                verdict,
            } => {
                for line in verify_cmds::pair_text(initiator, responder, verdict).lines() {
                    ctx.say(format!("    {line}"));
                }
            }
            _ => {}
        }
    })?;
    let all_valid = q.valid();
    if ctx.global.json {
        print_json(&json!({
            "dir": q.dir,
            "ca_dir": q.ca_dir,
            "certificates": q.issued.iter().map(|i| issued_json(i, ctx)).collect::<Vec<_>>(),
            "pairs": q.pairs,
            "valid": all_valid,
        }));
    }
    ctx.say(format!(
        "\n{}: everything is in {}\n  try: mtlsca --ca-dir {} list\n       mtlsca inspect {}",
        if all_valid {
            "done"
        } else {
            "done, but a pair did not verify"
        },
        dir.display(),
        q.ca_dir.display(),
        dir.join("web.pem").display()
    ));
    Ok(if all_valid {
        Outcome::Done
    } else {
        Outcome::No
    })
}
