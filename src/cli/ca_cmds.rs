//! The CA commands: init, profile, issue, sign, list, show, quickstart.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::render::{self, date, print_json, record_json, rfc3339};
use super::verify_cmds::{self, ExpectArg, TrustArgs, VerifyPairArgs};
use super::{Ctx, Outcome};
use crate::ca::{self, Ca, InitOptions};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::issue::{IssuanceRequest, Issued, Issuer, KeySource, Output};
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
}

fn parse_key_type(s: &str) -> std::result::Result<KeyType, String> {
    KeyType::parse(s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// List the CA's profiles (the built-ins when there is no CA)
    List,
    /// Print a profile with every default spelled out
    Show { name: String },
    /// Validate a profile file
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
    /// Subject common name
    #[arg(long)]
    pub cn: Option<String>,
    /// Subject organizationName
    #[arg(long)]
    pub org: Option<String>,
    /// Subject countryName (two letters)
    #[arg(long)]
    pub country: Option<String>,
    /// Validity, e.g. 90d, 24h, 1y (default: the profile's)
    #[arg(long)]
    pub validity: Option<String>,
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
    /// Validity, e.g. 90d (default: the profile's)
    #[arg(long)]
    pub validity: Option<String>,
    /// Idempotency key
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
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Serial (hex, any case, colons allowed) or SHA-256 fingerprint
    pub id: String,
    /// Print the certificate PEM instead of the record
    #[arg(long)]
    pub pem: bool,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Directory for the demo CA and certificates (default: ./mtlsca-quickstart, or the next free -N)
    pub dir: Option<PathBuf>,
}

pub fn init(ctx: &Ctx, a: InitArgs) -> Result<Outcome> {
    let dir = &ctx.global.ca_dir;
    let passphrase = if a.encrypt {
        Some(
            ca::read_passphrase(&ctx.passphrase_source())?.ok_or_else(|| {
                Error::Usage(format!(
                    "init --encrypt needs a passphrase: set ${} or pass --passphrase-file FILE",
                    super::PASSPHRASE_ENV
                ))
            })?,
        )
    } else {
        None
    };
    let ca = ca::init_protected(
        dir,
        &InitOptions {
            name: a.name,
            key_type: a.key_type,
            permit_dns: a.permit_dns,
            permit_ip: a.permit_ip,
            permit_uri: a.permit_uri,
        },
        passphrase.as_ref(),
        ctx.now,
    )?;
    let store = Store::open(dir, ctx.global.lock_timeout)?;
    store.flush()?;
    drop(store);
    let constraints: Vec<String> = ca
        .config
        .constraints()?
        .iter()
        .map(crate::names::Pattern::as_text)
        .collect();
    if ctx.global.json {
        print_json(&json!({
            "ca_dir": dir,
            "name": ca.config.name,
            "key_type": ca.config.key_type.as_str(),
            "root": dir.join("root.pem"),
            "device_ca": dir.join("device-ca.pem"),
            "entity_ca": dir.join("entity-ca.pem"),
            "profiles": ca.profile_names()?,
            "permit_dns": ca.config.permit_dns,
            "permit_ip": ca.config.permit_ip,
            "permit_uri": ca.config.permit_uri,
            "name_constraints": constraints,
            "encrypted_keys": ca.config.encrypted_keys,
        }));
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
    }
    Ok(Outcome::Done)
}

pub fn profile(ctx: &Ctx, c: ProfileCmd) -> Result<Outcome> {
    match c {
        ProfileCmd::List => {
            let profiles: Vec<(Profile, String)> = match ctx.open_ca() {
                Ok(ca) => ca
                    .profile_names()?
                    .iter()
                    .map(|n| Ok((ca.profile(n)?, ca.profile_path(n).display().to_string())))
                    .collect::<Result<_>>()?,
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
                        "description": p.description, "source": src,
                    }))
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
                    .collect();
                println!(
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
            let p = match ctx.open_ca() {
                Ok(ca) => ca.profile(&name)?,
                Err(Error::State(_)) => profile::builtin(&name).ok_or_else(|| {
                    Error::Usage(format!(
                        "no built-in profile `{}` (and no CA to look in)",
                        crate::names::printable(&name)
                    ))
                })?,
                Err(e) => return Err(e),
            };
            if ctx.global.json {
                print_json(&serde_json::to_value(&p).unwrap_or_default());
            } else {
                print!("{}", p.to_toml());
            }
            Ok(Outcome::Done)
        }
        ProfileCmd::Check { file } => {
            // The answer to "is this a valid profile?" is no (exit 1), whether a
            // key is unknown or a role rule is broken.
            let p = Profile::load(&file).map_err(|e| match e {
                Error::Invalid(r) => Error::Refused(r),
                other => other,
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
    let first = c
        .dns
        .first()
        .or(c.ip.first())
        .or(c.email.first())
        .or(c.cn.as_ref())
        .or(c.org.as_ref())
        .cloned()
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

pub fn issue(ctx: &Ctx, a: IssueArgs) -> Result<Outcome> {
    let content = RequestedContent {
        dns: a.dns,
        ip: a.ip,
        uri: a.uri,
        email: a.email,
        cn: a.cn,
        org: a.org,
        country: a.country,
        validity: a.validity,
        ..Default::default()
    };
    let prefix = a.out.unwrap_or_else(|| default_prefix(&content));
    let req = IssuanceRequest {
        profile: a.profile,
        content,
        key: KeySource::Generate(a.key_type),
        request_id: a.request_id,
        output: Output::Prefix(prefix),
        origin: crate::rules::Origin::Arguments,
    };
    let issued = run_issue(ctx, &req)?;
    report_issued(ctx, &issued);
    Ok(Outcome::Done)
}

fn run_issue(ctx: &Ctx, req: &IssuanceRequest) -> Result<Issued> {
    let ca = ctx.open_ca()?;
    let store = Store::open(&ctx.global.ca_dir, ctx.global.lock_timeout)?;
    let issuer = Issuer::new(&ca, &store)?;
    issuer.issue(req, ctx.now)
}

pub fn issued_json(i: &Issued, ctx: &Ctx) -> serde_json::Value {
    let mut v = record_json(&i.record, ctx.now);
    v["files"] = json!(i.files);
    v["status"] = json!(i.status.as_str());
    v
}

fn report_issued(ctx: &Ctx, i: &Issued) {
    if ctx.global.json {
        print_json(&issued_json(i, ctx));
        return;
    }
    let r = &i.record;
    let verb = match i.status {
        crate::issue::IssueStatus::Issued => "issued",
        crate::issue::IssueStatus::Exists => "already issued for this request id:",
    };
    ctx.say(format!(
        "{verb} {} certificate {} (profile {}), valid until {}",
        r.role,
        r.serial,
        r.profile,
        date(r.not_after)
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
        ctx.say(format!("  wrote    {}", f.display()));
    }
}

pub fn sign(ctx: &Ctx, a: SignArgs) -> Result<Outcome> {
    let csr = fsutil::read_bounded(&a.csr, fsutil::MAX_INPUT, "CSR")?;
    let to_stdout = a.out.as_deref().is_none_or(|p| p == Path::new("-"));
    let output = match &a.out {
        Some(p) if p != Path::new("-") => Output::File(p.clone()),
        _ => Output::None,
    };
    let req = IssuanceRequest {
        profile: a.profile,
        content: RequestedContent {
            validity: a.validity,
            ..Default::default()
        },
        key: KeySource::Csr(csr),
        request_id: a.request_id,
        output,
        origin: crate::rules::Origin::Arguments,
    };
    let issued = run_issue(ctx, &req)?;
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
        profile: a.profile,
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
    };
    ctx.open_ca()?;
    let store = Store::open(&ctx.global.ca_dir, ctx.global.lock_timeout)?;
    let records = store.list(&filter, ctx.now)?;
    if ctx.global.json {
        print_json(&json!(records
            .iter()
            .map(|r| record_json(r, ctx.now))
            .collect::<Vec<_>>()));
    } else if !ctx.global.quiet {
        let rows: Vec<Vec<String>> = records
            .iter()
            .map(|r| {
                vec![
                    r.serial.clone(),
                    r.role.to_string(),
                    r.profile.clone(),
                    r.status_at(ctx.now).as_str().to_string(),
                    date(r.not_after),
                    r.names
                        .first()
                        .cloned()
                        .unwrap_or_else(|| r.subject.clone()),
                ]
            })
            .collect();
        println!(
            "{}",
            render::table(
                &["SERIAL", "ROLE", "PROFILE", "STATUS", "NOT AFTER", "NAME"],
                &rows
            )
        );
        println!("{} certificate(s)", records.len());
    }
    Ok(Outcome::Done)
}

pub fn show(ctx: &Ctx, a: ShowArgs) -> Result<Outcome> {
    ctx.open_ca()?;
    let store = Store::open(&ctx.global.ca_dir, ctx.global.lock_timeout)?;
    let rec = store.find(&a.id)?.ok_or_else(|| {
        Error::refused(format!(
            "no certificate with serial or fingerprint {}",
            crate::names::printable(&a.id)
        ))
    })?;
    let der = store
        .der(&rec)?
        .ok_or_else(|| Error::Store(format!("record {} has no certificate", rec.serial)))?;
    let pem = crate::issue::pem_cert(&der);
    if a.pem {
        print!("{pem}");
        return Ok(Outcome::Done);
    }
    let audit = store.audit_of(&rec.serial)?;
    if ctx.global.json {
        let mut v = record_json(&rec, ctx.now);
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
        ];
        for (k, v) in rows {
            println!("{k:<11} {v}");
        }
        if let Some(r) = &rec.revocation {
            println!("{:<11} {} ({})", "revoked", rfc3339(r.at), r.reason);
        }
        for e in audit {
            println!(
                "{:<11} {} {} {}",
                "audit",
                rfc3339(e.at),
                e.action,
                e.detail
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
    let ca_dir = dir.join("ca");
    let step = |n: u32, text: &str| ctx.say(format!("\n[{n}] {text}"));
    step(1, &format!("create a CA in {}", ca_dir.display()));
    let sub = Ctx {
        global: super::GlobalArgs {
            ca_dir: ca_dir.clone(),
            ..ctx.global.clone()
        },
        now: ctx.now,
    };
    let quiet = Ctx {
        global: super::GlobalArgs {
            quiet: true,
            json: false,
            ..sub.global.clone()
        },
        now: ctx.now,
    };
    init(
        &quiet,
        InitArgs {
            name: "Quickstart".into(),
            key_type: KeyType::EcdsaP256,
            permit_dns: vec![],
            permit_ip: vec![],
            permit_uri: vec![],
            encrypt: false,
        },
    )?;
    ctx.say(format!(
        "    root CA {}, device CA (serverAuth), entity CA (clientAuth)",
        ca_dir.join("root.pem").display()
    ));

    let ca = Ca::open(&ca_dir)?.with_passphrase_source(ctx.passphrase_source());
    let store = Store::open(&ca_dir, ctx.global.lock_timeout)?;
    let issuer = Issuer::new(&ca, &store)?;
    let mut issued = Vec::new();
    let plans: [(&str, &str, RequestedContent, &str); 3] = [
        (
            "device",
            "web",
            RequestedContent {
                dns: vec!["web.quickstart.internal".into()],
                ip: vec!["127.0.0.1".into()],
                ..Default::default()
            },
            "a device certificate for web.quickstart.internal (serverAuth)",
        ),
        (
            "device",
            "api",
            RequestedContent {
                dns: vec!["api.quickstart.internal".into()],
                ..Default::default()
            },
            "a second device certificate for api.quickstart.internal (serverAuth)",
        ),
        (
            "person",
            "alice",
            RequestedContent {
                cn: Some("Alice Example".into()),
                email: vec!["alice@quickstart.example".into()],
                ..Default::default()
            },
            "a person certificate for Alice Example (clientAuth)",
        ),
    ];
    for (i, (profile, file, content, what)) in plans.into_iter().enumerate() {
        step(2 + i as u32, &format!("issue {what}"));
        let req = IssuanceRequest {
            profile: profile.into(),
            content,
            key: KeySource::Generate(None),
            request_id: Some(format!("quickstart-{file}")),
            output: Output::Prefix(dir.join(file)),
            origin: crate::rules::Origin::Arguments,
        };
        let out = issuer.issue(&req, ctx.now)?;
        ctx.say(format!(
            "    serial {}  files {}",
            out.record.serial,
            out.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        issued.push(out);
    }
    drop(issuer);
    drop(store);

    // Both pairs, through the verifier and a real TLS 1.3 handshake on loopback.
    let pairs = [
        (
            "web",
            "api",
            ExpectArg::ServerToServer,
            "web -> api: two devices, a server-to-server link",
        ),
        (
            "alice",
            "web",
            ExpectArg::ClientToServer,
            "alice -> web: a person to a device, a client-to-server link",
        ),
    ];
    let mut verdicts = Vec::new();
    for (n, (initiator, responder, expect, what)) in pairs.into_iter().enumerate() {
        step(
            5 + n as u32,
            &format!("verify the pair {what}, with a TLS 1.3 handshake"),
        );
        let args = VerifyPairArgs {
            initiator: dir.join(format!("{initiator}.chain.pem")),
            responder: dir.join(format!("{responder}.chain.pem")),
            expect: Some(expect),
            initiator_name: None,
            responder_name: None,
            trust: TrustArgs {
                trust: vec![],
                untrusted: vec![],
                crl: vec![],
                at: None,
                strict: false,
            },
            handshake: true,
            initiator_key: None,
            responder_key: None,
        };
        let verdict = verify_cmds::pair_verdict(&sub, &args)?;
        for line in verify_cmds::pair_text(&args, &verdict).lines() {
            ctx.say(format!("    {line}"));
        }
        verdicts.push(verdict);
    }
    let all_valid = verdicts.iter().all(|v| v.valid);
    if ctx.global.json {
        print_json(&json!({
            "dir": dir,
            "ca_dir": ca_dir,
            "certificates": issued.iter().map(|i| issued_json(i, ctx)).collect::<Vec<_>>(),
            "pairs": verdicts,
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
        ca_dir.display(),
        dir.join("web.pem").display()
    ));
    Ok(if all_valid {
        Outcome::Done
    } else {
        Outcome::No
    })
}
