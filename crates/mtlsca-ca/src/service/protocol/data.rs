//! The wire form of everything an operation sends or answers: plain serde
//! types of the protocol's own, converted at the edge from and to the types
//! the engine and the store use. A store record, an issuance request or batch
//! options may change shape (a field renamed, the sled layout moved) without
//! changing what travels, and the reverse: every conversion takes its source
//! apart field by field, so a field added on either side is a compile error
//! here until someone decides what it is on the wire.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::{Malformed, WireError};
use crate::backup;
use crate::batch;
use crate::ca::CaKind as CaKindIn;
use crate::crl;
use crate::issue;
use crate::key::KeyType as KeyTypeIn;
use crate::policy::RequestedContent;
use crate::role::Role as RoleIn;
use crate::rules::Origin;
use crate::service::ops::{self, ServiceStats as ServiceStatsIn};
use crate::store;

/// A conversion that can fail on what was received.
pub type Conv<T> = std::result::Result<T, Malformed>;

// ---------------------------------------------------------------------------
// Small vocabularies
// ---------------------------------------------------------------------------

/// A certificate's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// serverAuth.
    Device,
    /// clientAuth.
    Entity,
}

impl From<RoleIn> for Role {
    fn from(r: RoleIn) -> Role {
        match r {
            RoleIn::Device => Role::Device,
            RoleIn::Entity => Role::Entity,
        }
    }
}

impl From<Role> for RoleIn {
    fn from(r: Role) -> RoleIn {
        match r {
            Role::Device => RoleIn::Device,
            Role::Entity => RoleIn::Entity,
        }
    }
}

/// A certificate's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Issued and standing.
    Valid,
    /// Revoked.
    Revoked,
    /// Past its notAfter.
    Expired,
}

impl From<store::Status> for Status {
    fn from(s: store::Status) -> Status {
        match s {
            store::Status::Valid => Status::Valid,
            store::Status::Revoked => Status::Revoked,
            store::Status::Expired => Status::Expired,
        }
    }
}

impl From<Status> for store::Status {
    fn from(s: Status) -> store::Status {
        match s {
            Status::Valid => store::Status::Valid,
            Status::Revoked => store::Status::Revoked,
            Status::Expired => store::Status::Expired,
        }
    }
}

/// One CA of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaKind {
    /// The root.
    Root,
    /// The device issuing CA.
    Device,
    /// The entity issuing CA.
    Entity,
}

impl From<CaKindIn> for CaKind {
    fn from(k: CaKindIn) -> CaKind {
        match k {
            CaKindIn::Root => CaKind::Root,
            CaKindIn::Device => CaKind::Device,
            CaKindIn::Entity => CaKind::Entity,
        }
    }
}

impl From<CaKind> for CaKindIn {
    fn from(k: CaKind) -> CaKindIn {
        match k {
            CaKind::Root => CaKindIn::Root,
            CaKind::Device => CaKindIn::Device,
            CaKind::Entity => CaKindIn::Entity,
        }
    }
}

/// A key type the engine generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// ECDSA P-256.
    EcdsaP256,
    /// ECDSA P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl From<KeyTypeIn> for KeyType {
    fn from(k: KeyTypeIn) -> KeyType {
        match k {
            KeyTypeIn::EcdsaP256 => KeyType::EcdsaP256,
            KeyTypeIn::EcdsaP384 => KeyType::EcdsaP384,
            KeyTypeIn::Ed25519 => KeyType::Ed25519,
        }
    }
}

impl From<KeyType> for KeyTypeIn {
    fn from(k: KeyType) -> KeyTypeIn {
        match k {
            KeyType::EcdsaP256 => KeyTypeIn::EcdsaP256,
            KeyType::EcdsaP384 => KeyTypeIn::EcdsaP384,
            KeyType::Ed25519 => KeyTypeIn::Ed25519,
        }
    }
}

/// An RFC 5280 revocation reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrlReason {
    /// unspecified.
    Unspecified,
    /// keyCompromise.
    KeyCompromise,
    /// cACompromise.
    CaCompromise,
    /// affiliationChanged.
    AffiliationChanged,
    /// superseded.
    Superseded,
    /// cessationOfOperation.
    CessationOfOperation,
    /// privilegeWithdrawn.
    PrivilegeWithdrawn,
    /// aACompromise.
    AaCompromise,
}

impl From<crl::Reason> for CrlReason {
    fn from(r: crl::Reason) -> CrlReason {
        match r {
            crl::Reason::Unspecified => CrlReason::Unspecified,
            crl::Reason::KeyCompromise => CrlReason::KeyCompromise,
            crl::Reason::CaCompromise => CrlReason::CaCompromise,
            crl::Reason::AffiliationChanged => CrlReason::AffiliationChanged,
            crl::Reason::Superseded => CrlReason::Superseded,
            crl::Reason::CessationOfOperation => CrlReason::CessationOfOperation,
            crl::Reason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
            crl::Reason::AaCompromise => CrlReason::AaCompromise,
        }
    }
}

impl From<CrlReason> for crl::Reason {
    fn from(r: CrlReason) -> crl::Reason {
        match r {
            CrlReason::Unspecified => crl::Reason::Unspecified,
            CrlReason::KeyCompromise => crl::Reason::KeyCompromise,
            CrlReason::CaCompromise => crl::Reason::CaCompromise,
            CrlReason::AffiliationChanged => crl::Reason::AffiliationChanged,
            CrlReason::Superseded => crl::Reason::Superseded,
            CrlReason::CessationOfOperation => crl::Reason::CessationOfOperation,
            CrlReason::PrivilegeWithdrawn => crl::Reason::PrivilegeWithdrawn,
            CrlReason::AaCompromise => crl::Reason::AaCompromise,
        }
    }
}

/// A span of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// Whole seconds.
    pub secs: i64,
    /// And nanoseconds (the sign of `secs`).
    pub nanos: i32,
}

impl From<time::Duration> for Span {
    fn from(d: time::Duration) -> Span {
        Span {
            secs: d.whole_seconds(),
            nanos: d.subsec_nanoseconds(),
        }
    }
}

impl From<Span> for time::Duration {
    fn from(s: Span) -> time::Duration {
        time::Duration::new(s.secs, s.nanos)
    }
}

// ---------------------------------------------------------------------------
// Records and the audit log
// ---------------------------------------------------------------------------

/// What the CA keeps about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Lowercase hex.
    pub serial: String,
    /// `device`, `entity` or `root`.
    pub issuer: String,
    /// The issuing CA's key identifier, hex.
    pub issuer_key_id: String,
    /// The role.
    pub role: Role,
    /// The profile.
    pub profile: String,
    /// The subject DN as text.
    pub subject: String,
    /// subjectAltNames (`DNS:x`, ...).
    pub names: Vec<String>,
    /// notBefore.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER, lowercase hex.
    pub sha256: String,
    /// As stored (`valid` or `revoked`).
    pub status: Status,
    /// When and why it was revoked.
    pub revocation: Option<Revocation>,
    /// Its request id.
    pub request_id: Option<String>,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// Where its key was written.
    pub key_file: Option<String>,
    /// The serial it renewed.
    pub replaces: Option<String>,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The RFC 5280 reason name.
    pub reason: String,
}

impl From<store::Record> for Record {
    fn from(r: store::Record) -> Record {
        // The stored schema version is the store's business.
        let store::Record {
            schema: _,
            serial,
            issuer,
            issuer_key_id,
            role,
            profile,
            subject,
            names,
            not_before,
            not_after,
            sha256,
            status,
            revocation,
            request_id,
            issued_at,
            key_file,
            replaces,
        } = r;
        Record {
            serial,
            issuer,
            issuer_key_id,
            role: role.into(),
            profile,
            subject,
            names,
            not_before,
            not_after,
            sha256,
            status: status.into(),
            revocation: revocation
                .map(|store::Revocation { at, reason }| Revocation { at, reason }),
            request_id,
            issued_at,
            key_file,
            replaces,
        }
    }
}

impl From<Record> for store::Record {
    fn from(r: Record) -> store::Record {
        let Record {
            serial,
            issuer,
            issuer_key_id,
            role,
            profile,
            subject,
            names,
            not_before,
            not_after,
            sha256,
            status,
            revocation,
            request_id,
            issued_at,
            key_file,
            replaces,
        } = r;
        store::Record {
            schema: store::SCHEMA_VERSION,
            serial,
            issuer,
            issuer_key_id,
            role: role.into(),
            profile,
            subject,
            names,
            not_before,
            not_after,
            sha256,
            status: status.into(),
            revocation: revocation
                .map(|Revocation { at, reason }| store::Revocation { at, reason }),
            request_id,
            issued_at,
            key_file,
            replaces,
        }
    }
}

/// An entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its position.
    pub seq: u64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `issue`, `revoke`, `crl`, ...
    pub action: String,
    /// The certificate concerned.
    pub serial: Option<String>,
    /// Its request id.
    pub request_id: Option<String>,
    /// What else is worth knowing.
    pub detail: String,
    /// SHA-256 of the previous entry, hex.
    pub prev: String,
}

impl From<store::AuditEntry> for AuditEntry {
    fn from(e: store::AuditEntry) -> AuditEntry {
        let store::AuditEntry {
            seq,
            at,
            action,
            serial,
            request_id,
            detail,
            prev,
        } = e;
        AuditEntry {
            seq,
            at,
            action,
            serial,
            request_id,
            detail,
            prev,
        }
    }
}

impl From<AuditEntry> for store::AuditEntry {
    fn from(e: AuditEntry) -> store::AuditEntry {
        let AuditEntry {
            seq,
            at,
            action,
            serial,
            request_id,
            detail,
            prev,
        } = e;
        store::AuditEntry {
            seq,
            at,
            action,
            serial,
            request_id,
            detail,
            prev,
        }
    }
}

/// The filters of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFilter {
    /// Only this role.
    pub role: Option<Role>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only this profile.
    pub profile: Option<String>,
    /// Expiring within this span.
    pub expiring_within: Option<Span>,
    /// A glob over names and subject.
    pub name: Option<String>,
    /// Archived certificates too (`list --all`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_archived: bool,
}

impl From<store::ListFilter> for ListFilter {
    fn from(f: store::ListFilter) -> ListFilter {
        let store::ListFilter {
            role,
            status,
            profile,
            expiring_within,
            name,
            include_archived,
        } = f;
        ListFilter {
            role: role.map(Role::from),
            status: status.map(Status::from),
            profile,
            expiring_within: expiring_within.map(Span::from),
            name,
            include_archived,
        }
    }
}

impl From<ListFilter> for store::ListFilter {
    fn from(f: ListFilter) -> store::ListFilter {
        let ListFilter {
            role,
            status,
            profile,
            expiring_within,
            name,
            include_archived,
        } = f;
        store::ListFilter {
            role: role.map(RoleIn::from),
            status: status.map(store::Status::from),
            profile,
            expiring_within: expiring_within.map(time::Duration::from),
            name,
            include_archived,
        }
    }
}

/// Where a read in parts resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The previous part's cursor (opaque; `None`: the first part).
    pub after: Option<Vec<u8>>,
    /// The time the first part was read at.
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    /// Every part on this connection, one frame each.
    pub stream: bool,
}

impl From<ops::PageRequest> for Page {
    fn from(p: ops::PageRequest) -> Page {
        let ops::PageRequest { after, at, stream } = p;
        Page { after, at, stream }
    }
}

impl From<Page> for ops::PageRequest {
    fn from(p: Page) -> ops::PageRequest {
        let Page { after, at, stream } = p;
        ops::PageRequest { after, at, stream }
    }
}

/// One part of a long read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part<T> {
    /// What matched in this part.
    pub items: Vec<T>,
    /// The next part's cursor; `None`: the last part.
    pub next: Option<Vec<u8>>,
    /// The time the read filters at.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl<T> Part<T> {
    /// A part of internal items, its items in their wire form.
    pub fn from_part<I>(p: ops::Part<I>) -> Part<T>
    where
        T: From<I>,
    {
        let ops::Part { items, next, at } = p;
        Part {
            items: items.into_iter().map(T::from).collect(),
            next,
            at,
        }
    }

    /// The part with its items in their internal form.
    pub fn into_part<I>(self) -> ops::Part<I>
    where
        I: From<T>,
    {
        let Part { items, next, at } = self;
        ops::Part {
            items: items.into_iter().map(I::from).collect(),
            next,
            at,
        }
    }
}

/// What `show` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// The record.
    pub record: Record,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its audit entries.
    pub audit: Vec<AuditEntry>,
    /// The serial of its renewal.
    pub renewed_by: Option<String>,
    /// In the archive (`store tidy`).
    #[serde(default)]
    pub archived: bool,
}

impl From<ops::Shown> for Shown {
    fn from(s: ops::Shown) -> Shown {
        let ops::Shown {
            record,
            der,
            audit,
            renewed_by,
            archived,
        } = s;
        Shown {
            record: record.into(),
            der,
            audit: audit.into_iter().map(AuditEntry::from).collect(),
            renewed_by,
            archived,
        }
    }
}

impl From<Shown> for ops::Shown {
    fn from(s: Shown) -> ops::Shown {
        let Shown {
            record,
            der,
            audit,
            renewed_by,
            archived,
        } = s;
        ops::Shown {
            record: record.into(),
            der,
            audit: audit.into_iter().map(store::AuditEntry::from).collect(),
            renewed_by,
            archived,
        }
    }
}

// ---------------------------------------------------------------------------
// Issuing
// ---------------------------------------------------------------------------

/// What a requester asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// DNS names.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ip: Vec<String>,
    /// URIs.
    pub uri: Vec<String>,
    /// Email addresses.
    pub email: Vec<String>,
    /// Common name.
    pub cn: Option<String>,
    /// organizationName.
    pub org: Option<String>,
    /// countryName.
    pub country: Option<String>,
    /// Requested validity (`90d`).
    pub validity: Option<String>,
    /// EKU OIDs a CSR requests.
    pub requested_ekus: Option<Vec<String>>,
    /// A CSR asks to be a CA.
    pub requests_ca: bool,
    /// Names of kinds never issued.
    pub unsupported_names: Vec<String>,
    /// Unknown critical extensions.
    pub unknown_critical: Vec<String>,
}

impl From<RequestedContent> for Content {
    fn from(c: RequestedContent) -> Content {
        let RequestedContent {
            dns,
            ip,
            uri,
            email,
            cn,
            org,
            country,
            validity,
            requested_ekus,
            requests_ca,
            unsupported_names,
            unknown_critical,
        } = c;
        Content {
            dns,
            ip,
            uri,
            email,
            cn,
            org,
            country,
            validity,
            requested_ekus,
            requests_ca,
            unsupported_names,
            unknown_critical,
        }
    }
}

impl From<Content> for RequestedContent {
    fn from(c: Content) -> RequestedContent {
        let Content {
            dns,
            ip,
            uri,
            email,
            cn,
            org,
            country,
            validity,
            requested_ekus,
            requests_ca,
            unsupported_names,
            unknown_critical,
        } = c;
        RequestedContent {
            dns,
            ip,
            uri,
            email,
            cn,
            org,
            country,
            validity,
            requested_ekus,
            requests_ca,
            unsupported_names,
            unknown_critical,
        }
    }
}

/// Where the key comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Key {
    /// Generated by the engine (the profile's type unless given).
    Generate {
        /// The key type.
        key_type: Option<KeyType>,
    },
    /// A CSR, PEM or DER, read by the client.
    Csr {
        /// Its bytes.
        csr: Vec<u8>,
    },
}

/// Where the files go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// `PREFIX.key`, `PREFIX.pem`, `PREFIX.chain.pem`.
    Prefix(PathBuf),
    /// One PEM file, its chain beside it.
    File(PathBuf),
    /// Like `prefix`, replacing the files (each kept as `NAME.prev`).
    Replace(PathBuf),
    /// No file.
    None,
}

impl Output {
    /// Its path, if it has one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Output::Prefix(p) | Output::File(p) | Output::Replace(p) => Some(p),
            Output::None => None,
        }
    }
}

impl From<issue::Output> for Output {
    fn from(o: issue::Output) -> Output {
        match o {
            issue::Output::Prefix(p) => Output::Prefix(p),
            issue::Output::File(p) => Output::File(p),
            issue::Output::Replace(p) => Output::Replace(p),
            issue::Output::None => Output::None,
        }
    }
}

impl From<Output> for issue::Output {
    fn from(o: Output) -> issue::Output {
        match o {
            Output::Prefix(p) => issue::Output::Prefix(p),
            Output::File(p) => issue::Output::File(p),
            Output::Replace(p) => issue::Output::Replace(p),
            Output::None => issue::Output::None,
        }
    }
}

/// One request for a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest {
    /// The profile.
    pub profile: String,
    /// What is asked for.
    pub content: Content,
    /// Where the key comes from.
    pub key: Key,
    /// The request id.
    pub request_id: Option<String>,
    /// Where the files go (absolute).
    pub output: Output,
    /// How the request was made ([`Origin::as_str`]).
    pub origin: String,
    /// The serial this request renews.
    pub replaces: Option<String>,
}

impl TryFrom<issue::IssuanceRequest> for IssueRequest {
    type Error = Malformed;

    /// Fails for a checked CSR: it is in-process only.
    fn try_from(r: issue::IssuanceRequest) -> Conv<IssueRequest> {
        let issue::IssuanceRequest {
            profile,
            content,
            key,
            request_id,
            output,
            origin,
            replaces,
        } = r;
        let key = match key {
            issue::KeySource::Generate(t) => Key::Generate {
                key_type: t.map(KeyType::from),
            },
            issue::KeySource::Csr(csr) => Key::Csr { csr },
            issue::KeySource::CheckedCsr(_) => {
                return Err(Malformed(
                    "a checked CSR is in-process only: it is not sent to a server".into(),
                ))
            }
        };
        Ok(IssueRequest {
            profile,
            content: content.into(),
            key,
            request_id,
            output: output.into(),
            origin: origin.as_str().to_string(),
            replaces,
        })
    }
}

impl TryFrom<IssueRequest> for issue::IssuanceRequest {
    type Error = Malformed;

    fn try_from(r: IssueRequest) -> Conv<issue::IssuanceRequest> {
        let IssueRequest {
            profile,
            content,
            key,
            request_id,
            output,
            origin,
            replaces,
        } = r;
        Ok(issue::IssuanceRequest {
            profile,
            content: content.into(),
            key: match key {
                Key::Generate { key_type } => {
                    issue::KeySource::Generate(key_type.map(KeyTypeIn::from))
                }
                Key::Csr { csr } => issue::KeySource::Csr(csr),
            },
            request_id,
            output: output.into(),
            origin: Origin::parse(&origin)
                .ok_or_else(|| Malformed(format!("unknown origin `{origin}`")))?,
            replaces,
        })
    }
}

/// Issued now, or found issued before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueStatus {
    /// Issued by this call.
    Issued,
    /// Issued before under the same request id.
    Exists,
}

/// What the engine produced for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// Issued now, or found issued before.
    pub status: IssueStatus,
    /// The record.
    pub record: Record,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate and its issuing CA, PEM.
    pub chain_pem: String,
    /// Its files.
    pub files: Vec<PathBuf>,
    /// The files this call wrote.
    pub written: Vec<PathBuf>,
}

impl From<issue::Issued> for Issued {
    fn from(i: issue::Issued) -> Issued {
        let issue::Issued {
            status,
            record,
            cert_pem,
            chain_pem,
            files,
            written,
        } = i;
        Issued {
            status: match status {
                issue::IssueStatus::Issued => IssueStatus::Issued,
                issue::IssueStatus::Exists => IssueStatus::Exists,
            },
            record: record.into(),
            cert_pem,
            chain_pem,
            files,
            written,
        }
    }
}

impl From<Issued> for issue::Issued {
    fn from(i: Issued) -> issue::Issued {
        let Issued {
            status,
            record,
            cert_pem,
            chain_pem,
            files,
            written,
        } = i;
        issue::Issued {
            status: match status {
                IssueStatus::Issued => issue::IssueStatus::Issued,
                IssueStatus::Exists => issue::IssueStatus::Exists,
            },
            record: record.into(),
            cert_pem,
            chain_pem,
            files,
            written,
        }
    }
}

// ---------------------------------------------------------------------------
// CRLs
// ---------------------------------------------------------------------------

/// Where `crl --issuer X` puts the CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrlTarget {
    /// `<ca-dir>/crl/<issuer>.crl`.
    Published,
    /// Returned only.
    Returned,
    /// This file (absolute).
    File(PathBuf),
}

impl From<ops::CrlTarget> for CrlTarget {
    fn from(t: ops::CrlTarget) -> CrlTarget {
        match t {
            ops::CrlTarget::Published => CrlTarget::Published,
            ops::CrlTarget::Returned => CrlTarget::Returned,
            ops::CrlTarget::File(p) => CrlTarget::File(p),
        }
    }
}

impl From<CrlTarget> for ops::CrlTarget {
    fn from(t: CrlTarget) -> ops::CrlTarget {
        match t {
            CrlTarget::Published => ops::CrlTarget::Published,
            CrlTarget::Returned => ops::CrlTarget::Returned,
            CrlTarget::File(p) => ops::CrlTarget::File(p),
        }
    }
}

fn first_generation() -> u32 {
    1
}

/// A signed CRL, and the file it was written to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCrl {
    /// The CA that signed it.
    pub issuer: CaKind,
    /// Which generation of it (absent: 1).
    #[serde(default = "first_generation")]
    pub generation: u32,
    /// Its CRL number.
    pub number: u64,
    /// How many certificates it lists.
    pub revoked: usize,
    /// thisUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub next_update: OffsetDateTime,
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
    /// Its file (none when returned only).
    pub file: Option<PathBuf>,
}

impl From<ops::SignedCrl> for SignedCrl {
    fn from(s: ops::SignedCrl) -> SignedCrl {
        let ops::SignedCrl { crl, file } = s;
        let crl::Crl {
            issuer,
            generation,
            number,
            revoked,
            this_update,
            next_update,
            der,
            pem,
        } = crl;
        SignedCrl {
            issuer: issuer.into(),
            generation,
            number,
            revoked,
            this_update,
            next_update,
            der,
            pem,
            file,
        }
    }
}

impl From<SignedCrl> for ops::SignedCrl {
    fn from(s: SignedCrl) -> ops::SignedCrl {
        let SignedCrl {
            issuer,
            generation,
            number,
            revoked,
            this_update,
            next_update,
            der,
            pem,
            file,
        } = s;
        ops::SignedCrl {
            crl: crl::Crl {
                issuer: issuer.into(),
                generation,
                number,
                revoked,
                this_update,
                next_update,
                der,
                pem,
            },
            file,
        }
    }
}

// ---------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------

/// Where and how a batch runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOptions {
    /// The directory the files go to (absolute).
    pub out_dir: PathBuf,
    /// Entries per transaction.
    pub chunk: usize,
    /// Signing threads.
    pub threads: usize,
    /// Renew the entries expiring within this span.
    pub renew_within: Option<Span>,
    /// Retire the certificates renewed.
    #[serde(default)]
    pub revoke_old: bool,
    /// After this grace period.
    #[serde(default)]
    pub grace: Option<Span>,
}

impl From<batch::BatchOptions> for BatchOptions {
    fn from(o: batch::BatchOptions) -> BatchOptions {
        let batch::BatchOptions {
            out_dir,
            chunk,
            threads,
            renew_within,
            revoke_old,
            grace,
        } = o;
        BatchOptions {
            out_dir,
            chunk,
            threads,
            renew_within: renew_within.map(Span::from),
            revoke_old,
            grace: grace.map(Span::from),
        }
    }
}

impl From<BatchOptions> for batch::BatchOptions {
    fn from(o: BatchOptions) -> batch::BatchOptions {
        let BatchOptions {
            out_dir,
            chunk,
            threads,
            renew_within,
            revoke_old,
            grace,
        } = o;
        batch::BatchOptions {
            out_dir,
            chunk,
            threads,
            renew_within: renew_within.map(time::Duration::from),
            revoke_old,
            grace: grace.map(time::Duration::from),
        }
    }
}

/// What happened to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryStatus {
    /// Issued.
    Issued,
    /// Issued before.
    Exists,
    /// Renewed.
    Renewed,
    /// Refused.
    Refused,
}

/// One reason an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryReason {
    /// The rule's code.
    pub rule: Option<String>,
    /// The manifest key concerned.
    pub field: Option<String>,
    /// The sentence.
    pub message: String,
}

/// The report of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryOutcome {
    /// The entry's id.
    pub id: String,
    /// What happened.
    pub status: EntryStatus,
    /// The certificate's serial.
    pub serial: Option<String>,
    /// Why it was refused.
    pub reasons: Vec<EntryReason>,
    /// The files written.
    pub files: Vec<PathBuf>,
    /// The certificate's notAfter.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// What its renewal replaced and retired.
    #[serde(default)]
    pub rotation: EntryRotation,
}

impl From<batch::EntryOutcome> for EntryOutcome {
    fn from(e: batch::EntryOutcome) -> EntryOutcome {
        let batch::EntryOutcome {
            id,
            status,
            serial,
            reasons,
            files,
            not_after,
            rotation,
        } = e;
        EntryOutcome {
            id,
            status: match status {
                batch::EntryStatus::Issued => EntryStatus::Issued,
                batch::EntryStatus::Exists => EntryStatus::Exists,
                batch::EntryStatus::Renewed => EntryStatus::Renewed,
                batch::EntryStatus::Refused => EntryStatus::Refused,
            },
            serial,
            reasons: reasons
                .into_iter()
                .map(
                    |batch::Reason {
                         rule,
                         field,
                         message,
                     }| EntryReason {
                        rule: rule.map(|r| r.into_owned()),
                        field,
                        message,
                    },
                )
                .collect(),
            files,
            not_after,
            rotation: rotation.into(),
        }
    }
}

impl From<EntryOutcome> for batch::EntryOutcome {
    fn from(e: EntryOutcome) -> batch::EntryOutcome {
        let EntryOutcome {
            id,
            status,
            serial,
            reasons,
            files,
            not_after,
            rotation,
        } = e;
        batch::EntryOutcome {
            id,
            status: match status {
                EntryStatus::Issued => batch::EntryStatus::Issued,
                EntryStatus::Exists => batch::EntryStatus::Exists,
                EntryStatus::Renewed => batch::EntryStatus::Renewed,
                EntryStatus::Refused => batch::EntryStatus::Refused,
            },
            serial,
            reasons: reasons
                .into_iter()
                .map(
                    |EntryReason {
                         rule,
                         field,
                         message,
                     }| batch::Reason {
                        rule: rule.map(std::borrow::Cow::Owned),
                        field,
                        message,
                    },
                )
                .collect(),
            files,
            not_after,
            rotation: rotation.into(),
        }
    }
}

/// [`crate::batch::Rotation`] as it travels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRotation {
    /// The serial the renewal replaced.
    pub replaces: Option<String>,
    /// When that certificate is revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retires_at: Option<OffsetDateTime>,
    /// The lifetime and the window applied, seconds, when capped.
    pub capped: Option<(i64, i64)>,
}

impl From<crate::batch::Rotation> for EntryRotation {
    fn from(r: crate::batch::Rotation) -> EntryRotation {
        let crate::batch::Rotation {
            replaces,
            retires_at,
            capped,
        } = r;
        EntryRotation {
            replaces,
            retires_at,
            capped,
        }
    }
}

impl From<EntryRotation> for crate::batch::Rotation {
    fn from(r: EntryRotation) -> crate::batch::Rotation {
        let EntryRotation {
            replaces,
            retires_at,
            capped,
        } = r;
        crate::batch::Rotation {
            replaces,
            retires_at,
            capped,
        }
    }
}

/// The counts of a finished batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Entries.
    pub total: usize,
    /// Issued now.
    pub issued: usize,
    /// Found issued before.
    pub exists: usize,
    /// Refused.
    pub refused: usize,
    /// Renewed.
    pub renewed: usize,
}

impl From<batch::Summary> for Summary {
    fn from(s: batch::Summary) -> Summary {
        let batch::Summary {
            total,
            issued,
            exists,
            refused,
            renewed,
        } = s;
        Summary {
            total,
            issued,
            exists,
            refused,
            renewed,
        }
    }
}

impl From<Summary> for batch::Summary {
    fn from(s: Summary) -> batch::Summary {
        let Summary {
            total,
            issued,
            exists,
            refused,
            renewed,
        } = s;
        batch::Summary {
            total,
            issued,
            exists,
            refused,
            renewed,
        }
    }
}

/// A batch's report: every entry, then how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReport {
    /// The entries, in manifest order.
    pub entries: Vec<EntryOutcome>,
    /// The counts, or the error that stopped the batch.
    pub outcome: Result<Summary, WireError>,
}

impl From<ops::BatchReport> for BatchReport {
    fn from(b: ops::BatchReport) -> BatchReport {
        let ops::BatchReport { entries, outcome } = b;
        BatchReport {
            entries: entries.into_iter().map(EntryOutcome::from).collect(),
            outcome: outcome.map(Summary::from).map_err(|e| WireError::from(&e)),
        }
    }
}

impl From<BatchReport> for ops::BatchReport {
    fn from(b: BatchReport) -> ops::BatchReport {
        let BatchReport { entries, outcome } = b;
        ops::BatchReport {
            entries: entries.into_iter().map(batch::EntryOutcome::from).collect(),
            outcome: outcome
                .map(batch::Summary::from)
                .map_err(WireError::into_error),
        }
    }
}

// ---------------------------------------------------------------------------
// The engine, EAB keys, checks and backups
// ---------------------------------------------------------------------------

/// The engine's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// Issue groups committed.
    pub groups: u64,
    /// Issue jobs in those groups.
    pub issue_jobs: u64,
    /// The largest group.
    pub largest_group: u64,
    /// Engine time in groups, microseconds.
    pub group_micros: u64,
    /// The longest group, microseconds.
    pub longest_group_micros: u64,
    /// Times a batch gave way.
    pub batch_turns: u64,
}

impl From<ServiceStatsIn> for ServiceStats {
    fn from(s: ServiceStatsIn) -> ServiceStats {
        let ServiceStatsIn {
            groups,
            issue_jobs,
            largest_group,
            group_micros,
            longest_group_micros,
            batch_turns,
        } = s;
        ServiceStats {
            groups,
            issue_jobs,
            largest_group,
            group_micros,
            longest_group_micros,
            batch_turns,
        }
    }
}

impl From<ServiceStats> for ServiceStatsIn {
    fn from(s: ServiceStats) -> ServiceStatsIn {
        let ServiceStats {
            groups,
            issue_jobs,
            largest_group,
            group_micros,
            longest_group_micros,
            batch_turns,
        } = s;
        ServiceStatsIn {
            groups,
            issue_jobs,
            largest_group,
            group_micros,
            longest_group_micros,
            batch_turns,
        }
    }
}

/// An external account binding key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EabKey {
    /// Its key id.
    pub kid: String,
    /// The HMAC key, base64url (empty once used or revoked).
    pub hmac_key: String,
    /// The profile of the account it binds.
    pub profile: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The account it bound.
    pub account: Option<String>,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked: Option<OffsetDateTime>,
}

impl From<store::acme::EabKey> for EabKey {
    fn from(k: store::acme::EabKey) -> EabKey {
        let store::acme::EabKey {
            kid,
            hmac_key,
            profile,
            created,
            account,
            revoked,
        } = k;
        EabKey {
            kid,
            hmac_key,
            profile,
            created,
            account,
            revoked,
        }
    }
}

impl From<EabKey> for store::acme::EabKey {
    fn from(k: EabKey) -> store::acme::EabKey {
        let EabKey {
            kid,
            hmac_key,
            profile,
            created,
            account,
            revoked,
        } = k;
        store::acme::EabKey {
            kid,
            hmac_key,
            profile,
            created,
            account,
            revoked,
        }
    }
}

/// One problem a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// What is damaged.
    pub item: String,
    /// What is wrong with it.
    pub problem: String,
}

fn damage_out(d: Vec<store::Damage>) -> Vec<Damage> {
    d.into_iter()
        .map(|store::Damage { item, problem }| Damage { item, problem })
        .collect()
}

fn damage_in(d: Vec<Damage>) -> Vec<store::Damage> {
    d.into_iter()
        .map(|Damage { item, problem }| store::Damage { item, problem })
        .collect()
}

/// The audit chain's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Entries in the log.
    pub entries: usize,
    /// Its head.
    pub head: Option<String>,
    /// Every break in the chain.
    pub damage: Vec<Damage>,
}

impl From<store::AuditReport> for AuditReport {
    fn from(r: store::AuditReport) -> AuditReport {
        let store::AuditReport {
            entries,
            head,
            damage,
        } = r;
        AuditReport {
            entries,
            head,
            damage: damage_out(damage),
        }
    }
}

impl From<AuditReport> for store::AuditReport {
    fn from(r: AuditReport) -> store::AuditReport {
        let AuditReport {
            entries,
            head,
            damage,
        } = r;
        store::AuditReport {
            entries,
            head,
            damage: damage_in(damage),
        }
    }
}

/// What to tidy (`store tidy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TidyOptions {
    /// Certificates whose notAfter is before this move.
    #[serde(with = "time::serde::rfc3339")]
    pub expired_before: OffsetDateTime,
    /// Report, move nothing.
    pub dry_run: bool,
}

impl From<store::TidyOptions> for TidyOptions {
    fn from(o: store::TidyOptions) -> TidyOptions {
        let store::TidyOptions {
            expired_before,
            dry_run,
        } = o;
        TidyOptions {
            expired_before,
            dry_run,
        }
    }
}

impl From<TidyOptions> for store::TidyOptions {
    fn from(o: TidyOptions) -> store::TidyOptions {
        let TidyOptions {
            expired_before,
            dry_run,
        } = o;
        store::TidyOptions {
            expired_before,
            dry_run,
        }
    }
}

/// What `store tidy` moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TidyReport {
    /// Nothing was moved.
    pub dry_run: bool,
    /// Certificates moved.
    pub moved: usize,
    /// Of those, revoked.
    pub moved_revoked: usize,
    /// Expired revoked certificates waiting for a CRL.
    pub waiting_for_crl: usize,
    /// Audit entries moved.
    pub audit_entries_moved: usize,
    /// First serial moved.
    pub first_serial: Option<String>,
    /// Last serial moved.
    pub last_serial: Option<String>,
    /// SHA-256 over the moved serials.
    pub digest: Option<String>,
    /// Hot records afterwards.
    pub hot_records: usize,
    /// Archived records afterwards.
    pub archived_records: usize,
}

impl From<store::TidyReport> for TidyReport {
    fn from(r: store::TidyReport) -> TidyReport {
        let store::TidyReport {
            dry_run,
            moved,
            moved_revoked,
            waiting_for_crl,
            audit_entries_moved,
            first_serial,
            last_serial,
            digest,
            hot_records,
            archived_records,
        } = r;
        TidyReport {
            dry_run,
            moved,
            moved_revoked,
            waiting_for_crl,
            audit_entries_moved,
            first_serial,
            last_serial,
            digest,
            hot_records,
            archived_records,
        }
    }
}

impl From<TidyReport> for store::TidyReport {
    fn from(r: TidyReport) -> store::TidyReport {
        let TidyReport {
            dry_run,
            moved,
            moved_revoked,
            waiting_for_crl,
            audit_entries_moved,
            first_serial,
            last_serial,
            digest,
            hot_records,
            archived_records,
        } = r;
        store::TidyReport {
            dry_run,
            moved,
            moved_revoked,
            waiting_for_crl,
            audit_entries_moved,
            first_serial,
            last_serial,
            digest,
            hot_records,
            archived_records,
        }
    }
}

/// The store's check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Records read.
    pub records: usize,
    /// Certificates read.
    pub certificates: usize,
    /// Audit entries.
    pub audit_entries: usize,
    /// The audit log's head.
    pub audit_head: Option<String>,
    /// Every problem found.
    pub damage: Vec<Damage>,
    /// Records in the archive.
    #[serde(default)]
    pub archived_records: usize,
}

impl From<store::CheckReport> for CheckReport {
    fn from(r: store::CheckReport) -> CheckReport {
        let store::CheckReport {
            records,
            certificates,
            audit_entries,
            audit_head,
            damage,
            archived_records,
        } = r;
        CheckReport {
            records,
            certificates,
            audit_entries,
            audit_head,
            damage: damage_out(damage),
            archived_records,
        }
    }
}

impl From<CheckReport> for store::CheckReport {
    fn from(r: CheckReport) -> store::CheckReport {
        let CheckReport {
            records,
            certificates,
            audit_entries,
            audit_head,
            damage,
            archived_records,
        } = r;
        store::CheckReport {
            records,
            certificates,
            audit_entries,
            audit_head,
            damage: damage_in(damage),
            archived_records,
        }
    }
}

/// What `backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// The backup's directory.
    pub dir: PathBuf,
    /// Its manifest's format (`mtlsca-backup`).
    pub format: String,
    /// Its manifest's version.
    pub version: u32,
    /// When it was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The CA's name.
    pub ca_name: String,
    /// Whether its CA keys are encrypted.
    pub encrypted_keys: bool,
    /// Relative path → SHA-256 of every file.
    pub files: BTreeMap<String, String>,
    /// Records the store held.
    pub records: usize,
    /// Audit entries the store held.
    pub audit_entries: usize,
    /// The audit log's head.
    pub audit_head: Option<String>,
    /// Records the archive held.
    #[serde(default)]
    pub archived_records: usize,
}

impl From<backup::BackupSummary> for BackupSummary {
    fn from(b: backup::BackupSummary) -> BackupSummary {
        let backup::BackupSummary { dir, manifest } = b;
        let backup::Manifest {
            format,
            version,
            created,
            ca_name,
            encrypted_keys,
            files,
            records,
            audit_entries,
            audit_head,
            archived_records,
        } = manifest;
        BackupSummary {
            dir,
            format,
            version,
            created,
            ca_name,
            encrypted_keys,
            files,
            records,
            audit_entries,
            audit_head,
            archived_records,
        }
    }
}

impl From<BackupSummary> for backup::BackupSummary {
    fn from(b: BackupSummary) -> backup::BackupSummary {
        let BackupSummary {
            dir,
            format,
            version,
            created,
            ca_name,
            encrypted_keys,
            files,
            records,
            audit_entries,
            audit_head,
            archived_records,
        } = b;
        backup::BackupSummary {
            dir,
            manifest: backup::Manifest {
                format,
                version,
                created,
                ca_name,
                encrypted_keys,
                files,
                records,
                audit_entries,
                audit_head,
                archived_records,
            },
        }
    }
}
