//! The issuance pipeline, one path for `issue`, `sign` and `batch`:
//!
//! ```text
//! request → profile → policy → serial → sign → self-check → record → files
//! ```
//!
//! # Exactly once, with files
//!
//! Nothing leaves the CA unrecorded, and a crash at any point leaves either no
//! certificate or a recorded one whose files can be completed:
//!
//! 1. the key and certificate are written to temporary siblings of their final
//!    names (`.NAME.partial`, key mode 0600) and fsynced;
//! 2. the certificate is recorded in the store (one transaction: record, indexes,
//!    audit entry) and the store is flushed;
//! 3. the temporary files are linked to their final names (never replacing an
//!    existing file) and the directory is fsynced.
//!
//! Before step 1 of a request, `recover` looks at leftovers of an interrupted run
//! for the same output: temporary files whose certificate is recorded are
//! completed (step 3); temporary files whose certificate is not recorded are
//! removed (the crash came before step 2, so nothing was issued).
//!
//! sled 0.34's `flush` writes its log with `sync_file_range`-style syncing that does
//! not promise the file's metadata is durable; `Store::flush` is followed by an
//! `fsync` of the store's directory and log through the OS (see `store`), and the
//! files appear only after both.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::prelude::FromDer;

use crate::ca::{self, Ca, CaKind, SigningCa};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::key::{self, KeyType, PublicKeyKind};
use crate::names::SanName;
use crate::policy::{self, Approved, Origin, RequestedContent};
use crate::profile::Profile;
use crate::role::{Eku, Role};
use crate::store::{hex_encode, Record, Recorded, Status, Store, SCHEMA_VERSION};

/// Largest accepted request id.
const MAX_REQUEST_ID: usize = 256;

/// Where the key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Generate one (the profile's key type unless given).
    Generate(Option<KeyType>),
    /// A CSR (PEM or DER), whose signature and requests are checked.
    Csr(Vec<u8>),
}

/// One request for a certificate.
#[derive(Debug, Clone)]
pub struct IssuanceRequest {
    pub profile: String,
    pub content: RequestedContent,
    pub key: KeySource,
    pub request_id: Option<String>,
    pub output: Output,
}

/// Where the results go.
#[derive(Debug, Clone)]
pub enum Output {
    /// `PREFIX.key` (generated keys only), `PREFIX.pem`, `PREFIX.chain.pem`.
    Prefix(PathBuf),
    /// One PEM file with the leaf (for `sign --out FILE`).
    File(PathBuf),
    /// Nothing written; the caller prints the PEM.
    None,
}

/// Whether this call issued the certificate or found it issued before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueStatus {
    Issued,
    Exists,
}

impl IssueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Issued => "issued",
            IssueStatus::Exists => "exists",
        }
    }
}

/// The result of the pipeline.
#[derive(Debug, Clone)]
pub struct Issued {
    pub status: IssueStatus,
    pub record: Record,
    pub cert_pem: String,
    pub chain_pem: String,
    pub files: Vec<PathBuf>,
}

/// The final file names of an output.
#[derive(Debug, Clone)]
pub struct Files {
    key: Option<PathBuf>,
    cert: PathBuf,
    chain: Option<PathBuf>,
}

impl Files {
    pub fn of(output: &Output, with_key: bool) -> Option<Files> {
        match output {
            Output::Prefix(p) => {
                let s = p.as_os_str().to_string_lossy();
                Some(Files {
                    key: with_key.then(|| PathBuf::from(format!("{s}.key"))),
                    cert: PathBuf::from(format!("{s}.pem")),
                    chain: Some(PathBuf::from(format!("{s}.chain.pem"))),
                })
            }
            Output::File(f) => Some(Files {
                key: None,
                cert: f.clone(),
                chain: None,
            }),
            Output::None => None,
        }
    }

    fn all(&self) -> Vec<&PathBuf> {
        self.key
            .iter()
            .chain([&self.cert])
            .chain(self.chain.iter())
            .collect()
    }

    /// The first final name that is already taken, if any.
    pub fn existing_file(&self) -> Option<&PathBuf> {
        self.all().into_iter().find(|p| p.exists())
    }

    /// fsync the directory the files are linked in.
    pub fn sync_dir(&self) -> Result<()> {
        match self.cert.parent() {
            Some(dir) => fsutil::sync_dir(dir),
            None => Ok(()),
        }
    }
}

fn partial(p: &Path) -> PathBuf {
    fsutil::temp_sibling(p, "partial")
}

/// A CSR after its signature and key were checked.
#[derive(Debug, Clone)]
pub struct CsrIntake {
    pub spki_der: Vec<u8>,
    pub key: PublicKeyKind,
    pub content: RequestedContent,
}

/// Parse a CSR (PEM or DER), verify its signature, check its key and read what it
/// requests. Unreadable input is exit 2; a readable CSR that asks for something
/// wrong is refused later by policy (exit 1).
pub fn read_csr(bytes: &[u8]) -> Result<CsrIntake> {
    let der = if bytes.starts_with(b"-----BEGIN") || bytes.trim_ascii_start().starts_with(b"-----")
    {
        let text =
            std::str::from_utf8(bytes).map_err(|_| Error::input("CSR", "not valid PEM text"))?;
        let p = pem::parse(text).map_err(|e| Error::input("CSR", format!("bad PEM: {e}")))?;
        if p.tag() != "CERTIFICATE REQUEST" && p.tag() != "NEW CERTIFICATE REQUEST" {
            return Err(Error::input(
                "CSR",
                format!("PEM block is `{}`, not `CERTIFICATE REQUEST`", p.tag()),
            ));
        }
        p.into_contents()
    } else {
        bytes.to_vec()
    };
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| Error::input("CSR", format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::input("CSR", "trailing bytes after the request"));
    }
    let info = &csr.certification_request_info;
    // Key strength first: ring cannot even verify signatures of weak RSA keys, and
    // "weak key" is the answer the requester needs.
    let key = key::check_public_key(&info.subject_pki)?;
    csr.verify_signature().map_err(|_| {
        Error::input(
            "CSR",
            "its signature does not verify (tampered, or signed by another key)",
        )
    })?;
    let mut content = RequestedContent::default();
    for attr in info.subject.iter_attributes() {
        let value = attr
            .as_str()
            .map(String::from)
            .map_err(|_| Error::input("CSR", "a subject attribute is not a readable string"));
        let oid = attr.attr_type().to_id_string();
        match oid.as_str() {
            "2.5.4.3" => content.cn = Some(value?),
            "2.5.4.10" => content.org = Some(value?),
            "2.5.4.6" => content.country = Some(value?),
            // Other subject attributes are not copied: the subject is built from
            // the profile's rules only.
            _ => {}
        }
    }
    for attr in info.iter_attributes() {
        if let ParsedCriAttribute::ExtensionRequest(req) = attr.parsed_attribute() {
            for ext in &req.extensions {
                read_requested_extension(ext, &mut content)?;
            }
        }
    }
    Ok(CsrIntake {
        spki_der: info.subject_pki.raw.to_vec(),
        key,
        content,
    })
}

fn read_requested_extension(ext: &X509Extension<'_>, c: &mut RequestedContent) -> Result<()> {
    match ext.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(san) => {
            for gn in &san.general_names {
                match gn {
                    GeneralName::DNSName(d) => c.dns.push(d.to_string()),
                    GeneralName::RFC822Name(e) => c.email.push(e.to_string()),
                    GeneralName::URI(u) => c.uri.push(u.to_string()),
                    GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                        Some(ip) => c.ip.push(ip.to_string()),
                        None => c.unsupported_names.push("malformed IP".into()),
                    },
                    GeneralName::OtherName(oid, _)
                        if oid.to_id_string() == "1.3.6.1.4.1.311.20.2.3" =>
                    {
                        c.unsupported_names.push("UPN (userPrincipalName)".into())
                    }
                    GeneralName::OtherName(oid, _) => {
                        c.unsupported_names.push(format!("otherName {oid}"))
                    }
                    GeneralName::DirectoryName(_) => {
                        c.unsupported_names.push("directoryName".into())
                    }
                    GeneralName::RegisteredID(_) => c.unsupported_names.push("registeredID".into()),
                    _ => c.unsupported_names.push("unsupported GeneralName".into()),
                }
            }
        }
        ParsedExtension::ExtendedKeyUsage(eku) => {
            c.requested_ekus = Some(crate::inspect::eku_oid_list(eku));
        }
        ParsedExtension::BasicConstraints(bc) => {
            if bc.ca {
                c.requests_ca = true;
            }
        }
        // Key usage and key identifiers are decided by mtlsca, whatever is asked.
        ParsedExtension::KeyUsage(_) | ParsedExtension::SubjectKeyIdentifier(_) => {}
        ParsedExtension::ParseError { error } => {
            return Err(Error::input(
                "CSR",
                format!("requested extension {} is malformed: {error}", ext.oid),
            ))
        }
        _ => {
            if ext.critical {
                c.unknown_critical.push(ext.oid.to_id_string());
            }
        }
    }
    Ok(())
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// A CA opened for issuing: configuration, profiles on demand, signing CAs loaded
/// once (batch reuses it for every entry).
pub struct Issuer<'a> {
    pub ca: &'a Ca,
    pub store: &'a Store,
    root_der: Vec<u8>,
    /// Set once rustls-webpki has validated a full path (leaf → issuing CA → root)
    /// for each issuing CA in this process; see `self_check`.
    chain_validated: [std::sync::OnceLock<()>; 2],
    signing: std::cell::RefCell<Vec<std::rc::Rc<SigningCa>>>,
    constraints: Vec<crate::names::Pattern>,
}

/// What signing needs, shared by the threads of a batch: the issuing CA, the root
/// (for the self-check), the CA's name constraints and the time.
#[derive(Clone, Copy)]
pub struct SignContext<'s> {
    pub signing: &'s SigningCa,
    pub root_der: &'s [u8],
    /// Whether a full path through `signing` was validated in this process.
    pub chain_validated: &'s std::sync::OnceLock<()>,
    pub constraints: &'s [crate::names::Pattern],
    pub now: OffsetDateTime,
}

/// A certificate signed and self-checked but not yet recorded, with the files it
/// will be written to. Producing one has no side effect, so batch prepares many
/// in parallel; `write_partials`, `Store::record_issued` (or `record_chunk`) and
/// `link` then run the protocol of the module doc.
pub struct Prepared {
    pub record: Record,
    pub der: Vec<u8>,
    pub issuer_key_id: Vec<u8>,
    pub cert_pem: String,
    pub chain_pem: String,
    key_pem: Option<String>,
    files: Option<Files>,
}

/// How temporary files reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync each file as it is written (one request).
    EachFile,
    /// Write only; the caller makes a whole chunk durable at once (`sync_fs`)
    /// before recording it.
    Deferred,
}

impl Prepared {
    /// Step 1: the key and certificate under temporary names.
    pub fn write_partials(&self, durability: Durability) -> Result<()> {
        match &self.files {
            Some(f) => write_partials(
                f,
                self.key_pem.as_deref(),
                &self.cert_pem,
                &self.chain_pem,
                durability,
            ),
            None => Ok(()),
        }
    }

    /// Undo step 1 (the certificate was not recorded).
    pub fn discard_partials(&self) {
        if let Some(f) = &self.files {
            remove_partials(f);
        }
    }

    /// Step 3, after the record is durable: the final names (the caller syncs the
    /// directory, once per batch chunk or per request).
    pub fn link(self) -> Result<Issued> {
        let files = match &self.files {
            Some(f) => link_partials(f)?,
            None => Vec::new(),
        };
        Ok(Issued {
            status: IssueStatus::Issued,
            record: self.record,
            cert_pem: self.cert_pem,
            chain_pem: self.chain_pem,
            files,
        })
    }
}

/// Make everything written on the file system that holds `dir` durable: one
/// `syncfs` for a whole chunk of temporary files instead of an fsync per file.
pub fn sync_fs(dir: &Path) -> Result<()> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let f = std::fs::File::open(d).map_err(|e| Error::io(d, e))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::fs::syncfs(&f).map_err(|e| Error::io(d, e.into()))?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // No syncfs: the directory's files one by one.
        for entry in std::fs::read_dir(d).map_err(|e| Error::io(d, e))? {
            let p = entry.map_err(|e| Error::io(d, e))?.path();
            if p.is_file() {
                std::fs::File::open(&p)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(&p, e))?;
            }
        }
        f.sync_all().map_err(|e| Error::io(d, e))?;
    }
    Ok(())
}

/// Step 0 of the pipeline, without side effects: key (generated, or from a CSR
/// whose signature and key were checked), policy, serial, signature, self-check,
/// the record. `files` are the final names the certificate will get.
pub fn prepare(
    cx: &SignContext<'_>,
    profile: &Profile,
    req: &IssuanceRequest,
    files: Option<Files>,
) -> Result<Prepared> {
    let (content, key_kind, spki, new_key) = match &req.key {
        KeySource::Generate(kt) => {
            let kt = kt.unwrap_or(profile.key);
            let k = key::generate(kt)?;
            (
                std::borrow::Cow::Borrowed(&req.content),
                public_kind(kt),
                PublicKeySource::Generated,
                Some(k),
            )
        }
        KeySource::Csr(bytes) => {
            let csr = read_csr(bytes)?;
            let mut content = csr.content;
            // Validity is the signer's choice, not the requester's.
            content.validity = req.content.validity.clone();
            let spki = rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der)
                .map_err(|e| Error::refused(format!("unsupported public key in the CSR: {e}")))?;
            (
                std::borrow::Cow::Owned(content),
                csr.key,
                PublicKeySource::Csr(spki, csr.spki_der),
                None,
            )
        }
    };
    let origin = match req.key {
        KeySource::Generate(_) => Origin::Arguments,
        KeySource::Csr(_) => Origin::Csr,
    };
    let signing = cx.signing;
    let approved = policy::check(
        profile,
        cx.constraints,
        &content,
        key_kind,
        signing.not_after,
        origin,
        cx.now,
    )?;

    let expected_spki = match (&spki, &new_key) {
        (PublicKeySource::Csr(_, raw), _) => raw.clone(),
        (_, Some(k)) => rcgen::PublicKeyData::subject_public_key_info(k),
        _ => unreachable!("a generated source always has a key"),
    };
    let serial = ca::random_serial()?;
    let mut params = leaf_params(&approved, &serial)?;
    params.key_identifier_method =
        rcgen::KeyIdMethod::PreSpecified(key::key_identifier(&expected_spki));
    let cert = match (&spki, &new_key) {
        (PublicKeySource::Generated, Some(k)) => params.signed_by(k, &signing.issuer),
        (PublicKeySource::Csr(s, _), _) => params.signed_by(s, &signing.issuer),
        _ => unreachable!("a generated source always has a key"),
    }
    .map_err(|e| Error::State(format!("signing failed: {e}")))?;
    let der = cert.der().to_vec();
    self_check(&der, &expected_spki, &approved, cx)?;

    let cert_pem = pem_cert(&der);
    let chain_pem = format!("{cert_pem}{}", signing.cert_pem);
    let sha = ring::digest::digest(&ring::digest::SHA256, &der);
    let key_file = files
        .as_ref()
        .and_then(|f| f.key.as_ref())
        .map(|k| absolute(k).display().to_string());
    let record = Record {
        schema: SCHEMA_VERSION,
        serial: hex_encode(&serial),
        issuer: signing.kind.as_str().into(),
        issuer_key_id: hex_encode(&signing.key_id),
        role: profile.role,
        profile: profile.name.clone(),
        subject: approved.subject.to_text(),
        names: approved.names.iter().map(|n| n.to_string()).collect(),
        not_before: approved.not_before,
        not_after: approved.not_after,
        sha256: hex_encode(sha.as_ref()),
        status: Status::Valid,
        revocation: None,
        request_id: req.request_id.clone(),
        issued_at: cx.now,
        key_file,
    };
    Ok(Prepared {
        record,
        der,
        issuer_key_id: signing.key_id.clone(),
        cert_pem,
        chain_pem,
        key_pem: new_key.as_ref().map(key::pkcs8_pem),
        files,
    })
}

fn public_kind(kt: KeyType) -> PublicKeyKind {
    match kt {
        KeyType::EcdsaP256 => PublicKeyKind::EcdsaP256,
        KeyType::EcdsaP384 => PublicKeyKind::EcdsaP384,
        KeyType::Ed25519 => PublicKeyKind::Ed25519,
    }
}

impl<'a> Issuer<'a> {
    pub fn new(ca: &'a Ca, store: &'a Store) -> Result<Issuer<'a>> {
        Ok(Issuer {
            ca,
            store,
            root_der: ca.cert_der(CaKind::Root)?,
            chain_validated: Default::default(),
            signing: Default::default(),
            constraints: ca.config.constraints()?,
        })
    }

    /// An issuing CA, loaded and unlocked once per `Issuer`.
    pub fn signing_ca(&self, kind: CaKind) -> Result<std::rc::Rc<SigningCa>> {
        if let Some(s) = self.signing.borrow().iter().find(|s| s.kind == kind) {
            return Ok(s.clone());
        }
        let s = std::rc::Rc::new(self.ca.signing_ca(kind)?);
        self.signing.borrow_mut().push(s.clone());
        Ok(s)
    }

    /// The context `prepare` signs with, for a loaded issuing CA.
    pub fn sign_context<'s>(
        &'s self,
        signing: &'s SigningCa,
        now: OffsetDateTime,
    ) -> SignContext<'s> {
        let chain_validated = match signing.kind {
            CaKind::Entity => &self.chain_validated[1],
            _ => &self.chain_validated[0],
        };
        SignContext {
            signing,
            root_der: &self.root_der,
            chain_validated,
            constraints: &self.constraints,
            now,
        }
    }

    /// Run the pipeline for one request.
    pub fn issue(&self, req: &IssuanceRequest, now: OffsetDateTime) -> Result<Issued> {
        if let Some(id) = &req.request_id {
            check_request_id(id)?;
        }
        let profile = self.ca.profile(&req.profile)?;
        let with_key = matches!(req.key, KeySource::Generate(_));
        let files = Files::of(&req.output, with_key);
        if let Some(f) = &files {
            self.recover(f)?;
        }

        // A request id already used: return what was issued for it.
        if let Some(id) = &req.request_id {
            if let Some(rec) = self.store.by_request_id(id)? {
                return self.existing(rec, &profile, files.as_ref());
            }
        }
        if let Some(f) = &files {
            if let Some(p) = f.existing_file() {
                return Err(Error::Usage(format!(
                    "{} already exists; refusing to overwrite it (choose another --out)",
                    p.display()
                )));
            }
        }

        let signing = self.signing_ca(CaKind::for_role(profile.role))?;
        let cx = self.sign_context(&signing, now);
        // Serial, sign, self-check, record; a serial collision signs again.
        for _ in 0..8 {
            let prepared = prepare(&cx, &profile, req, files.clone())?;
            // 1. temporary files
            prepared.write_partials(Durability::EachFile)?;
            // 2. record + flush
            let recorded = self
                .store
                .record_issued(
                    &prepared.record,
                    &prepared.der,
                    &prepared.issuer_key_id,
                    now,
                )
                .and_then(|r| {
                    if matches!(r, Recorded::New) {
                        self.store.flush()?;
                    }
                    Ok(r)
                });
            match recorded {
                Ok(Recorded::New) => {}
                Ok(Recorded::SerialTaken) => {
                    prepared.discard_partials();
                    continue;
                }
                Ok(Recorded::RequestExists(rec)) => {
                    prepared.discard_partials();
                    return self.existing(*rec, &profile, files.as_ref());
                }
                Err(e) => {
                    prepared.discard_partials();
                    return Err(e);
                }
            }
            // 3. final names
            let issued = prepared.link()?;
            if let Some(f) = &files {
                f.sync_dir()?;
            }
            return Ok(issued);
        }
        Err(Error::State(
            "eight random serials in a row were taken: the random number generator is broken"
                .into(),
        ))
    }

    /// A certificate issued earlier for the same request id: complete or rewrite its
    /// certificate files (its key is never stored, so a lost key stays lost).
    pub fn existing(
        &self,
        rec: Record,
        profile: &Profile,
        files: Option<&Files>,
    ) -> Result<Issued> {
        if rec.profile != profile.name {
            return Err(Error::Usage(format!(
                "request id `{}` was used for a `{}` certificate (serial {}), not `{}`",
                rec.request_id.as_deref().unwrap_or(""),
                rec.profile,
                rec.serial,
                profile.name
            )));
        }
        let der = self
            .store
            .der(&rec)?
            .ok_or_else(|| Error::Store(format!("record {} has no certificate", rec.serial)))?;
        let cert_pem = pem_cert(&der);
        let issuer = CaKind::parse(&rec.issuer).unwrap_or(CaKind::for_role(rec.role));
        let chain_pem = format!("{cert_pem}{}", self.ca.cert_pem(issuer)?);
        let mut written = Vec::new();
        if let Some(f) = files {
            for (path, text) in [
                (&f.cert, &cert_pem),
                (f.chain.as_ref().unwrap_or(&f.cert), &chain_pem),
            ] {
                if !path.exists() {
                    fsutil::write_atomic(path, text.as_bytes(), 0o644)?;
                }
                if !written.contains(path) {
                    written.push(path.clone());
                }
            }
            if let Some(k) = &f.key {
                if k.exists() {
                    written.insert(0, k.clone());
                }
            }
        }
        Ok(Issued {
            status: IssueStatus::Exists,
            record: rec,
            cert_pem,
            chain_pem,
            files: written,
        })
    }

    /// Complete or clean up what an interrupted run left for these files.
    pub fn recover(&self, f: &Files) -> Result<()> {
        let cert_tmp = partial(&f.cert);
        if !cert_tmp.exists() {
            // Stray partials without a certificate partial: the crash came before
            // step 1 ended (the certificate's partial is written last and linked last).
            remove_partials(f);
            return Ok(());
        }
        // A leftover is at most a certificate chain; anything larger is not ours.
        let recorded = fsutil::read_bounded(&cert_tmp, fsutil::MAX_INPUT, "temporary file")
            .ok()
            .and_then(|b| pem::parse(b).ok())
            .map(|p| ring::digest::digest(&ring::digest::SHA256, p.contents()))
            .map(|d| self.store.find(&hex_encode(d.as_ref())))
            .transpose()?
            .flatten();
        match recorded {
            Some(_) => {
                link_partials(f)?;
                f.sync_dir()?;
            }
            None => remove_partials(f),
        }
        Ok(())
    }
}

enum PublicKeySource {
    Generated,
    Csr(rcgen::SubjectPublicKeyInfo, Vec<u8>),
}

pub fn check_request_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID || id.chars().any(|c| c.is_control()) {
        return Err(Error::Usage(format!(
            "request id `{}` must be 1-{MAX_REQUEST_ID} characters without control characters",
            crate::names::printable(id)
        )));
    }
    Ok(())
}

fn write_partials(
    f: &Files,
    key_pem: Option<&str>,
    cert_pem: &str,
    chain_pem: &str,
    durability: Durability,
) -> Result<()> {
    let mut items: Vec<(&PathBuf, &str, u32)> = Vec::new();
    if let (Some(k), Some(pem)) = (&f.key, key_pem) {
        items.push((k, pem, 0o600));
    }
    if let Some(c) = &f.chain {
        items.push((c, chain_pem, 0o644));
    }
    // The certificate last: its presence means all partials are complete.
    items.push((&f.cert, cert_pem, 0o644));
    for (path, text, mode) in items {
        let tmp = partial(path);
        let write = || match durability {
            Durability::EachFile => fsutil::write_new(&tmp, text.as_bytes(), mode),
            Durability::Deferred => write_new_unsynced(&tmp, text.as_bytes(), mode),
        };
        // A leftover of an interrupted run is replaced (removed only when found:
        // one syscall less per file in the common case).
        let written = match write() {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
                write()
            }
            other => other,
        };
        if let Err(e) = written {
            remove_partials(f);
            return Err(e);
        }
    }
    // The partials' names must be durable before the record is, so that after a
    // power loss a recorded certificate still finds its key (a Deferred chunk gets
    // this from the caller's `sync_fs`).
    if durability == Durability::EachFile {
        if let Err(e) = f.sync_dir() {
            remove_partials(f);
            return Err(e);
        }
    }
    Ok(())
}

/// Create `path` (which must not exist) with `mode` and write it, leaving the
/// fsync to a later `sync_fs` of the whole chunk.
fn write_new_unsynced(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path).map_err(|e| Error::io(path, e))?;
    file.write_all(data).map_err(|e| Error::io(path, e))
}

fn remove_partials(f: &Files) {
    for p in f.all() {
        let _ = std::fs::remove_file(partial(p));
    }
}

/// Link every partial to its final name (never replacing a file); returns the
/// final names. The certificate goes last: while its partial exists, `recover`
/// knows the output is unfinished. The directory still needs an fsync
/// (`Files::sync_dir`).
fn link_partials(f: &Files) -> Result<Vec<PathBuf>> {
    let mut order = f.all();
    order.retain(|p| **p != f.cert);
    order.push(&f.cert);
    for p in order {
        let tmp = partial(p);
        match fsutil::rename_no_replace(&tmp, p) {
            Ok(()) => {}
            // Nothing to link (e.g. no key for a CSR, or completed before).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !tmp.exists() => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Usage(format!(
                    "{} already exists; refusing to overwrite it",
                    p.display()
                )))
            }
            Err(e) => return Err(Error::io(p, e)),
        }
    }
    Ok(f.all().into_iter().cloned().collect())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn pem_cert(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// The rcgen parameters of a leaf: explicit DN (never rcgen's default), our serial,
/// AKI, basicConstraints CA:FALSE, key usage, the role's EKU, SANs.
fn leaf_params(a: &Approved, serial: &[u8]) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(c) = &a.subject.country {
        // X.520 countryName is a PrintableString (policy checked: two ASCII letters).
        let printable = c
            .as_str()
            .try_into()
            .map_err(|e| Error::refused(format!("country `{c}` cannot be encoded: {e}")))?;
        dn.push(
            DnType::CountryName,
            rcgen::DnValue::PrintableString(printable),
        );
    }
    if let Some(o) = &a.subject.org {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    if let Some(cn) = &a.subject.cn {
        dn.push(DnType::CommonName, cn.as_str());
    }
    p.distinguished_name = dn;
    p.serial_number = Some(SerialNumber::from_slice(serial));
    p.not_before = a.not_before;
    p.not_after = a.not_after;
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if a.key_encipherment {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = a
        .ekus
        .iter()
        .map(|e| match e {
            Eku::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Eku::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            Eku::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
            Eku::Any => ExtendedKeyUsagePurpose::Any,
        })
        .collect();
    p.subject_alt_names = a
        .names
        .iter()
        .map(|n| {
            Ok(match n {
                SanName::Dns(d) => SanType::DnsName(d.clone().try_into()?),
                SanName::Ip(ip) => SanType::IpAddress(*ip),
                SanName::Uri(u) => SanType::URI(u.clone().try_into()?),
                SanName::Email(e) => SanType::Rfc822Name(e.clone().try_into()?),
            })
        })
        .collect::<std::result::Result<_, rcgen::Error>>()
        .map_err(|e| Error::refused(format!("a name cannot be encoded: {e}")))?;
    Ok(p)
}

/// Read the certificate back and check it says exactly what policy approved and
/// that its signature verifies under the issuing CA's key: nothing leaves that
/// another verifier would reject.
///
/// The full path (leaf → issuing CA → root, EKU, validity) is validated with
/// rustls-webpki for the first certificate of each issuing CA in a process. Later
/// ones differ from it only in what this function compares field by field, so they
/// need one signature verification, not webpki's two (the issuing CA's own
/// signature by the root does not change): ECDSA verification costs about three
/// signatures, and it dominates batch issuance.
fn self_check(der: &[u8], expected_spki: &[u8], a: &Approved, cx: &SignContext<'_>) -> Result<()> {
    let fail = |m: String| Error::State(format!("self-check failed, nothing was issued: {m}"));
    let (_, x) = X509Certificate::from_der(der).map_err(|e| fail(e.to_string()))?;
    if x.public_key().raw != expected_spki {
        return Err(fail("the public key differs from the requested one".into()));
    }
    let ekus: Vec<String> = x
        .extended_key_usage()
        .ok()
        .flatten()
        .map(|e| crate::inspect::eku_oid_list(e.value))
        .unwrap_or_default();
    let want: Vec<String> = a.ekus.iter().map(|e| e.oid().to_string()).collect();
    if ekus != want {
        return Err(fail(format!("EKU is {ekus:?}, policy approved {want:?}")));
    }
    if x.is_ca() {
        return Err(fail("the leaf says CA:TRUE".into()));
    }
    let names: Vec<SanName> = x
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(d) => Some(SanName::Dns(d.to_string())),
                    GeneralName::RFC822Name(e) => Some(SanName::Email(e.to_string())),
                    GeneralName::URI(u) => Some(SanName::Uri(u.to_string())),
                    GeneralName::IPAddress(b) => ip_from_bytes(b).map(SanName::Ip),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names != a.names {
        return Err(fail(format!(
            "names are {names:?}, policy approved {:?}",
            a.names
        )));
    }
    if cx.chain_validated.get().is_none() {
        validate_path(der, a.role, cx).map_err(fail)?;
        let _ = cx.chain_validated.set(());
        return Ok(());
    }
    let (_, issuer_key) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&cx.signing.spki_der)
        .map_err(|e| fail(format!("issuing CA key: {e}")))?;
    x.verify_signature(Some(&issuer_key))
        .map_err(|e| fail(format!("the signature does not verify: {e}")))
}

/// Full path validation with rustls-webpki: leaf → issuing CA → root, the role's
/// EKU required along the path, validity at `cx.now`.
fn validate_path(der: &[u8], role: Role, cx: &SignContext<'_>) -> std::result::Result<(), String> {
    let eku_oid = match role {
        // DER contents of id-kp-serverAuth / id-kp-clientAuth.
        Role::Device => webpki::KeyUsage::required(&[0x2b, 6, 1, 5, 5, 7, 3, 1]),
        Role::Entity => webpki::KeyUsage::required(&[0x2b, 6, 1, 5, 5, 7, 3, 2]),
    };
    let der_cert = rustls_pki_types::CertificateDer::from(der);
    let ee = webpki::EndEntityCert::try_from(&der_cert).map_err(|e| format!("{e:?}"))?;
    let root = rustls_pki_types::CertificateDer::from(cx.root_der);
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|e| format!("{e:?}"))?;
    let inter = rustls_pki_types::CertificateDer::from(cx.signing.cert_der.as_slice());
    let t = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        cx.now.unix_timestamp().max(0) as u64,
    ));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[inter],
        t,
        eku_oid,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("rustls-webpki rejects the chain: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::InitOptions;

    /// The self-check refuses a certificate whose signature does not verify, both
    /// on the first certificate (full webpki path) and on later ones (one
    /// signature verification against the issuing CA).
    #[test]
    fn self_check_catches_a_bad_signature() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let opts = InitOptions {
            name: "T".into(),
            key_type: KeyType::EcdsaP256,
            permit_dns: vec![],
            permit_ip: vec![],
            permit_uri: vec![],
        };
        let ca = crate::ca::init(&dir.path().join("ca"), &opts, now).unwrap();
        let store = Store::open(&ca.dir, std::time::Duration::from_secs(1)).unwrap();
        let issuer = Issuer::new(&ca, &store).unwrap();
        let signing = issuer.signing_ca(CaKind::Device).unwrap();
        let cx = issuer.sign_context(&signing, now);
        let profile = ca.profile("device").unwrap();
        let req = IssuanceRequest {
            profile: "device".into(),
            content: RequestedContent {
                dns: vec!["a.test".into()],
                ..Default::default()
            },
            key: KeySource::Generate(None),
            request_id: None,
            output: Output::None,
        };
        let approved = policy::check(
            &profile,
            &[],
            &req.content,
            PublicKeyKind::EcdsaP256,
            signing.not_after,
            Origin::Arguments,
            now,
        )
        .unwrap();
        let p = prepare(&cx, &profile, &req, None).unwrap();
        let (_, x) = X509Certificate::from_der(&p.der).unwrap();
        let spki = x.public_key().raw.to_vec();
        assert!(
            cx.chain_validated.get().is_some(),
            "first certificate validated the path"
        );
        self_check(&p.der, &spki, &approved, &cx).unwrap();
        // Flip a bit in the signature value (the last bytes of the DER).
        let mut bad = p.der.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        let err = self_check(&bad, &spki, &approved, &cx).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        let fresh = std::sync::OnceLock::new();
        let cx_first = SignContext {
            chain_validated: &fresh,
            ..cx
        };
        let err = self_check(&bad, &spki, &approved, &cx_first).unwrap_err();
        assert!(err.to_string().contains("rustls-webpki"), "{err}");
    }
}
