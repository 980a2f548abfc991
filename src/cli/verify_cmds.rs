//! `inspect`, `verify cert`, `verify pair`: arguments, loading the inputs, and
//! rendering verdicts as text or JSON. The decisions are in `verify` and
//! `inspect`; a failed verification is exit 1 with its reasons, unreadable input
//! exit 2.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;

use super::{render, Ctx, Outcome};
use crate::error::{Error, Result};
use crate::inspect::{self, joined, Inspection};
use crate::role::{CertClass, Connection, Eku, Role};
use crate::verify::{
    self, load, CertVerdict, HandshakeKeys, PairParty, PairRequest, PairVerdict, PeerName, Purpose,
    RevocationSource, Trust, Usage, VerifyOptions,
};

/// How long the loopback handshake may take, end to end.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Certificates (PEM with one or many, or DER), or directories of them
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Descend into the subdirectories of directories
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Exit 1 when a certificate is of one of these classes (for CI)
    #[arg(long, value_enum, value_delimiter = ',', value_name = "CLASS,...")]
    pub fail_on: Vec<FailOn>,
}

/// The classes `inspect --fail-on` can fail on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// serverAuth and clientAuth, or anyExtendedKeyUsage
    Ambiguous,
    /// No EKU extension, or no TLS EKU in it (emailProtection only, ...)
    NoEku,
    /// A CA certificate
    Ca,
    /// A device (serverAuth)
    Device,
    /// An entity (clientAuth)
    Entity,
    /// Expired or not yet valid
    Expired,
}

impl FailOn {
    fn hits(self, i: &Inspection, now: OffsetDateTime) -> bool {
        let f = &i.facts;
        match self {
            FailOn::Ambiguous => f.role == CertClass::Ambiguous,
            FailOn::NoEku => f.role == CertClass::NoEku,
            FailOn::Ca => f.role == CertClass::Ca,
            FailOn::Device => f.role == CertClass::Device,
            FailOn::Entity => f.role == CertClass::Entity,
            FailOn::Expired => {
                f.not_after.is_some_and(|t| now > t) || f.not_before.is_some_and(|t| now < t)
            }
        }
    }
}

/// The class as the text output names it: `no-eku` only when there is no EKU
/// extension; an EKU without a TLS purpose is named by what it holds.
fn class_label(class: CertClass, ekus: &[inspect::KeyPurpose]) -> String {
    if class == CertClass::NoEku && !ekus.is_empty() {
        format!("no TLS EKU ({})", joined(ekus, "+"))
    } else {
        class.to_string()
    }
}

/// The files of a directory, sorted; with `recursive`, those of its
/// subdirectories too (symbolic links to directories are not followed).
fn dir_files(path: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::input(format!("directory {}", path.display()), e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        let is_link = p
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        if p.is_file() {
            out.push(p);
        } else if recursive && p.is_dir() && !is_link {
            dir_files(&p, true, out)?;
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum VerifyCmd {
    /// Check one certificate: its chain, its role (EKU) and its name
    Cert(VerifyCertArgs),
    /// Check two certificates as the initiator and the responder of one connection
    Pair(VerifyPairArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Device,
    Entity,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PurposeArg {
    Server,
    Client,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExpectArg {
    ServerToServer,
    ClientToServer,
    ServerToClient,
    EndToEnd,
}

impl ExpectArg {
    fn connection(self) -> Connection {
        match self {
            ExpectArg::ServerToServer => Connection::ServerToServer,
            ExpectArg::ClientToServer => Connection::ClientToServer,
            ExpectArg::ServerToClient => Connection::ServerToClient,
            ExpectArg::EndToEnd => Connection::EndToEnd,
        }
    }
}

/// What the chains are validated against.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Trust anchors (root certificates); without it, the CA in --ca-dir
    #[arg(long, value_name = "ROOT.pem")]
    pub trust: Vec<PathBuf>,
    /// Intermediate certificates that may be used to build the path
    #[arg(long, value_name = "CHAIN.pem")]
    pub untrusted: Vec<PathBuf>,
    /// CRLs to check revocation against
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Validate at this time (RFC 3339) instead of now
    #[arg(long, value_name = "RFC3339", value_parser = parse_at)]
    pub at: Option<OffsetDateTime>,
    /// Findings (issuer-side profile rules, trust anchors included) fail the
    /// verdict too: for linting a PKI you own
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct VerifyCertArgs {
    /// The certificate; further certificates in the file are intermediates
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The draft: the EKU must be exactly the role's (default: the role the certificate claims)
    #[arg(long, value_enum, conflicts_with = "purpose")]
    pub role: Option<RoleArg>,
    /// Classic RFC 5280: the purpose's EKU is required only if an EKU is present
    #[arg(long, value_enum)]
    pub purpose: Option<PurposeArg>,
    /// A name the certificate must be valid for (DNS name, IP address, email or URI)
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyPairArgs {
    /// The initiator's certificate (the TLS client); a chain file works too
    #[arg(long, value_name = "A.pem")]
    pub initiator: PathBuf,
    /// The responder's certificate (the TLS server); a chain file works too
    #[arg(long, value_name = "B.pem")]
    pub responder: PathBuf,
    /// The connection the pair must be
    #[arg(long, value_enum)]
    pub expect: Option<ExpectArg>,
    /// A name the initiator's certificate must be valid for
    #[arg(long, value_name = "NAME")]
    pub initiator_name: Option<String>,
    /// A name the responder's certificate must be valid for
    #[arg(long, value_name = "NAME")]
    pub responder_name: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Also run a real TLS 1.3 handshake between the two over loopback
    #[arg(long)]
    pub handshake: bool,
    /// The initiator's private key (default: A.key beside A.pem)
    #[arg(long, value_name = "FILE")]
    pub initiator_key: Option<PathBuf>,
    /// The responder's private key (default: B.key beside B.pem)
    #[arg(long, value_name = "FILE")]
    pub responder_key: Option<PathBuf>,
}

fn parse_at(s: &str) -> std::result::Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time such as 2027-02-25T12:00:00Z ({e})"))
}

// ---------------------------------------------------------------- inspect

/// `inspect FILE...`: classify and lint certificates; needs no CA.
pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<Outcome> {
    let mut all: Vec<Inspection> = Vec::new();
    for path in &a.files {
        if path.is_dir() {
            let mut entries = Vec::new();
            dir_files(path, a.recursive, &mut entries)?;
            for p in entries {
                match inspect_file(&p, ctx.now) {
                    Ok(v) => all.extend(v),
                    // In a directory, keys and other files are passed over, said on stderr.
                    Err(e) if !ctx.global.quiet => eprintln!("note: skipped {}: {e}", p.display()),
                    Err(_) => {}
                }
            }
        } else {
            all.extend(inspect_file(path, ctx.now)?);
        }
    }
    let failed: Vec<&Inspection> = all
        .iter()
        .filter(|i| a.fail_on.iter().any(|c| c.hits(i, ctx.now)))
        .collect();
    let outcome = if failed.is_empty() {
        Outcome::Done
    } else {
        Outcome::No
    };
    if ctx.global.json {
        render::print_json(&serde_json::to_value(&all).unwrap_or_default());
        return Ok(outcome);
    }
    for (n, i) in all.iter().enumerate() {
        if n > 0 {
            ctx.say("");
        }
        ctx.say(inspection_text(i));
    }
    if !failed.is_empty() {
        ctx.say(format!(
            "\n{} of {} certificates are of a class given to --fail-on",
            failed.len(),
            all.len()
        ));
    }
    Ok(outcome)
}

fn inspect_file(path: &Path, now: OffsetDateTime) -> Result<Vec<Inspection>> {
    let certs = load::certs(path, "certificate")?;
    let file = path.display().to_string();
    certs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            inspect::inspect_der(&file, i, c.as_ref(), now)
                .map_err(|e| Error::input(format!("certificate {file}"), e))
        })
        .collect()
}

fn inspection_text(i: &Inspection) -> String {
    let f = &i.facts;
    let which = if i.index > 0 {
        format!(" (certificate {})", i.index + 1)
    } else {
        String::new()
    };
    let mut out = format!("{}{which}: {}\n", i.file, class_label(f.role, f.purposes()));
    let ekus = if f.has_eku() {
        joined(f.purposes(), ", ")
    } else {
        "(no EKU extension)".into()
    };
    let rows = [
        ("EKU", ekus),
        (
            "names",
            if f.names.is_empty() {
                "(none)".into()
            } else {
                joined(&f.names, ", ")
            },
        ),
        ("subject", f.subject.clone()),
        ("issuer", f.issuer.clone()),
        (
            "validity",
            format!("{} to {}", time_text(f.not_before), time_text(f.not_after)),
        ),
        ("key", f.key.to_string()),
        ("serial", f.serial_hex()),
    ];
    for (k, v) in rows {
        out.push_str(&format!("  {k:<9} {v}\n"));
    }
    out.push_str("  findings:");
    for finding in &i.findings {
        out.push_str(&format!("\n    - {finding}"));
    }
    out
}

/// A time as RFC 3339, empty when unreadable.
fn time_text(t: Option<OffsetDateTime>) -> String {
    t.map(crate::timefmt::rfc3339).unwrap_or_default()
}

// ---------------------------------------------------------------- trust

/// Anchors, intermediates, CRLs, and the store when the CA is the anchor.
struct Loaded {
    anchors: Vec<CertificateDer<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    /// The CA's records (through the running server when one holds them).
    store: Option<crate::service::Backend>,
}

impl Loaded {
    fn revocation(&self) -> Vec<&dyn RevocationSource> {
        self.store
            .iter()
            .map(|s| s as &dyn RevocationSource)
            .collect()
    }

    fn trust(&self, own: &[CertificateDer<'static>]) -> Trust<'_> {
        let mut intermediates = own.to_vec();
        intermediates.extend(self.intermediates.iter().cloned());
        Trust {
            anchors: self.anchors.clone(),
            intermediates,
            crls: self.crls.clone(),
            revocation: self.revocation(),
        }
    }
}

fn load_trust(ctx: &Ctx, a: &TrustArgs) -> Result<Loaded> {
    let mut l = Loaded {
        anchors: vec![],
        intermediates: vec![],
        crls: vec![],
        store: None,
    };
    if a.trust.is_empty() {
        // Every generation of the CA: each root as an anchor, each issuing CA
        // and link certificate as an intermediate.
        let t = ctx.open_ca()?.trust_material()?;
        l.anchors
            .extend(t.anchors.into_iter().map(CertificateDer::from));
        l.intermediates
            .extend(t.intermediates.into_iter().map(CertificateDer::from));
        l.store = Some(ctx.backend()?);
    }
    for p in &a.trust {
        l.anchors.extend(load::certs(p, "trust anchor")?);
    }
    for p in &a.untrusted {
        l.intermediates.extend(load::certs(p, "intermediate")?);
    }
    for p in &a.crl {
        l.crls.extend(load::crls(p)?);
    }
    Ok(l)
}

// ---------------------------------------------------------------- verify

/// `verify cert` and `verify pair`: exit 1 with reasons when not valid.
pub fn verify(ctx: &Ctx, cmd: VerifyCmd) -> Result<Outcome> {
    match cmd {
        VerifyCmd::Cert(a) => verify_cert(ctx, a),
        VerifyCmd::Pair(a) => verify_pair(ctx, a),
    }
}

fn usage_of(a: &VerifyCertArgs, leaf: &CertificateDer<'_>) -> Usage {
    match (a.role, a.purpose) {
        (Some(RoleArg::Device), _) => Usage::Role(Role::Device),
        (Some(RoleArg::Entity), _) => Usage::Role(Role::Entity),
        (None, Some(PurposeArg::Server)) => Usage::Purpose(Purpose::Server),
        (None, Some(PurposeArg::Client)) => Usage::Purpose(Purpose::Client),
        // The draft, with the role the certificate claims.
        (None, None) => {
            let facts = inspect::parse_der(leaf.as_ref())
                .ok()
                .map(|c| inspect::CertFacts::of(&c));
            let role = match facts.as_ref().map(|f| f.role) {
                Some(CertClass::Entity) => Role::Entity,
                Some(CertClass::Ambiguous | CertClass::NoEku | CertClass::Ca)
                    if facts.as_ref().is_some_and(|f| {
                        f.has_purpose(Eku::ClientAuth) && !f.has_purpose(Eku::ServerAuth)
                    }) =>
                {
                    Role::Entity
                }
                _ => Role::Device,
            };
            Usage::Role(role)
        }
    }
}

fn verify_cert(ctx: &Ctx, a: VerifyCertArgs) -> Result<Outcome> {
    let mut certs = load::certs(&a.file, "certificate")?;
    let loaded = load_trust(ctx, &a.trust)?;
    let leaf = certs.remove(0);
    let trust = loaded.trust(&certs);
    let opts = VerifyOptions {
        usage: usage_of(&a, &leaf),
        name: a.name.as_deref().map(PeerName::parse),
        at: a.trust.at.unwrap_or(ctx.now),
    };
    let mut v = verify::verify_cert(&leaf, &trust, &opts);
    if a.trust.strict {
        v = v.strict();
    }
    if ctx.global.json {
        render::print_json(&serde_json::to_value(&v).unwrap_or_default());
    } else {
        ctx.say(cert_text(&a.file, &v));
    }
    Ok(if v.valid { Outcome::Done } else { Outcome::No })
}

fn cert_text(file: &Path, v: &CertVerdict) -> String {
    let role = v
        .role
        .map_or("unreadable".to_string(), |r| class_label(r, &v.ekus));
    let verdict = if v.valid { "VALID" } else { "INVALID" };
    let mut out = format!("{}: {verdict} ({role})\n", file.display());
    let rows = [
        ("subject", v.subject.clone()),
        (
            "names",
            if v.names.is_empty() {
                "(none)".into()
            } else {
                joined(&v.names, ", ")
            },
        ),
        (
            "EKU",
            if v.ekus.is_empty() {
                "(none)".into()
            } else {
                joined(&v.ekus, ", ")
            },
        ),
        ("expires", time_text(v.not_after)),
        (
            "chain",
            if v.chain.is_empty() {
                "(no valid path)".into()
            } else {
                v.chain.join(" <- ")
            },
        ),
    ];
    for (k, val) in rows {
        out.push_str(&format!("  {k:<8} {val}\n"));
    }
    for r in &v.reasons {
        out.push_str(&format!("  - {r}\n"));
    }
    out.push_str(&findings_text(&v.findings, "  "));
    out.trim_end().to_string()
}

/// The findings of a verdict, one a line, after a `findings:` heading; empty
/// when there are none.
fn findings_text(findings: &[verify::Finding], indent: &str) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let mut out = format!("{indent}findings (issuer-side; --strict makes them fail):\n");
    for f in findings {
        out.push_str(&format!(
            "{indent}  - {} [{}, {}]\n",
            f.message, f.code, f.severity
        ));
    }
    out
}

fn verify_pair(ctx: &Ctx, a: VerifyPairArgs) -> Result<Outcome> {
    let v = pair_verdict(ctx, &a)?;
    if ctx.global.json {
        render::print_json(&serde_json::to_value(&v).unwrap_or_default());
    } else {
        ctx.say(pair_text(&a.initiator, &a.responder, &v));
    }
    Ok(if v.valid { Outcome::Done } else { Outcome::No })
}

/// The verdict on a pair (with its handshake when asked), as `verify pair` computes
/// it: the files are loaded here, the decision is [`verify::check_pair`]'s.
fn pair_verdict(ctx: &Ctx, a: &VerifyPairArgs) -> Result<PairVerdict> {
    let i_chain = load::certs(&a.initiator, "initiator certificate")?;
    let r_chain = load::certs(&a.responder, "responder certificate")?;
    let loaded = load_trust(ctx, &a.trust)?;
    // Keys are read before anything is judged: a missing key is bad usage.
    let handshake = if a.handshake {
        Some(HandshakeKeys {
            initiator: handshake_key(&a.initiator, a.initiator_key.as_deref(), "initiator")?,
            responder: handshake_key(&a.responder, a.responder_key.as_deref(), "responder")?,
            timeout: HANDSHAKE_TIMEOUT,
        })
    } else {
        None
    };
    let req = PairRequest {
        initiator: PairParty {
            chain: i_chain,
            name: a.initiator_name.as_deref().map(PeerName::parse),
        },
        responder: PairParty {
            chain: r_chain,
            name: a.responder_name.as_deref().map(PeerName::parse),
        },
        anchors: loaded.anchors.clone(),
        intermediates: loaded.intermediates.clone(),
        crls: loaded.crls.clone(),
        revocation: loaded.revocation(),
        expect: a.expect.map(ExpectArg::connection),
        at: a.trust.at.unwrap_or(ctx.now),
        handshake,
    };
    let v = verify::check_pair(req);
    Ok(if a.trust.strict { v.strict() } else { v })
}

fn handshake_key(
    cert: &Path,
    given: Option<&Path>,
    side: &str,
) -> Result<rustls_pki_types::PrivateKeyDer<'static>> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => load::key_beside(cert).unwrap_or_default(),
    };
    if given.is_none() && !path.is_file() {
        return Err(Error::Usage(format!(
            "--handshake needs the {side}'s private key: {} does not exist (pass --{side}-key)",
            path.display()
        )));
    }
    load::private_key(&path, &format!("{side} key"))
}

/// The text of a pair verdict: a table of both ends, the connection, the
/// handshake, the verdict and its reasons.
pub(super) fn pair_text(initiator: &Path, responder: &Path, v: &PairVerdict) -> String {
    let side = |s: &verify::SideVerdict| {
        vec![
            s.role
                .map_or("unreadable".to_string(), |r| class_label(r, &s.ekus)),
            s.subject.clone(),
            if s.names.is_empty() {
                "(none)".into()
            } else {
                joined(&s.names, ", ")
            },
            if s.ekus.is_empty() {
                "(none)".into()
            } else {
                joined(&s.ekus, ", ")
            },
            time_text(s.not_after),
            if s.chain_valid {
                "valid".into()
            } else {
                "INVALID".into()
            },
        ]
    };
    let (i, r) = (side(&v.initiator), side(&v.responder));
    let labels = ["role", "subject", "names", "EKU", "expires", "chain"];
    let mut rows = vec![vec![
        "file".to_string(),
        initiator.display().to_string(),
        responder.display().to_string(),
    ]];
    for (n, l) in labels.iter().enumerate() {
        rows.push(vec![l.to_string(), i[n].clone(), r[n].clone()]);
    }
    let mut out = render::table(&["", "initiator", "responder"], &rows);
    out.push_str(&format!("\nconnection: {}", v.connection));
    if let Some(h) = &v.handshake {
        let proto = match (&h.protocol, &h.cipher_suite) {
            (Some(p), Some(c)) => format!("{p}, {c}: "),
            _ => String::new(),
        };
        out.push_str(&format!("\nhandshake: {proto}{}", h.outcome));
    }
    out.push_str(&format!(
        "\nverdict: {}",
        if v.valid { "VALID" } else { "INVALID" }
    ));
    for reason in &v.reasons {
        out.push_str(&format!("\n  - {reason}"));
    }
    let findings = findings_text(&v.findings, "");
    if !findings.is_empty() {
        out.push('\n');
        out.push_str(findings.trim_end());
    }
    out
}
