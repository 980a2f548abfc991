//! The control socket's protocol, version [`VERSION`]: one request and its
//! answer per connection (a streamed read: one answer frame per part), each a
//! frame ([`frame`]) holding a JSON document.
//!
//! ```text
//! request:  {"v": 2, "op": Request}
//! answer:   {"v": 2, "result": {"Ok": <the operation's answer>} | {"Err": WireError}}
//! ```
//!
//! What travels is this module's own types ([`Request`], [`data`], [`WireError`]),
//! never the engine's or the store's: each operation that may be sent
//! ([`Remote`]) says what its request and answer are on the wire, and the
//! conversions at the edge take every type apart field by field. The answer
//! carries no tag of its own: its type is the request's ([`Remote::Wire`]), so
//! an answer of the wrong shape is an unreadable answer, never another
//! operation's. A peer of another version is told so before anything else of
//! its message is read.
//!
//! Version history: 1 sent the engine's and the store's own serde forms
//! (`IssuanceRequest`, `store::Record`, ...) and a tagged `Answer`; 2 has the
//! protocol's own types and typed answers.

pub mod data;
pub mod error;
pub mod frame;
pub mod rotation;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use error::{Malformed, WireError, WireRefusal, WireRefusals};
pub use frame::{MAX_REQUEST, MAX_RESPONSE};

use data::Conv;

use crate::backup::BackupSummary;
use crate::issue::{IssuanceRequest, Issued, Output};
use crate::service::ops::{self, Operation, Paged};
use crate::store::acme::EabKey;
use crate::store::{AuditReport, CheckReport, Record};

/// The protocol version spoken; a peer speaking another is refused.
pub const VERSION: u32 = 2;

/// An operation as it travels (the first frame of a connection, in its
/// envelope). Every variant is one [`Remote`] operation ([`Request::dispatch`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Issue one certificate ([`ops::Issue`]).
    Issue(Box<data::IssueRequest>),
    /// The record a query names ([`ops::Lookup`]).
    Lookup {
        /// Serial, SHA-256 or request id.
        query: String,
    },
    /// Part of the records matching a filter ([`ops::ListPart`]).
    ListPart {
        /// The filter.
        filter: data::ListFilter,
        /// Which part (with `stream`: every part from there on).
        page: data::Page,
    },
    /// One certificate as `show` shows it ([`ops::Show`]).
    Show {
        /// Serial, prefix, SHA-256, request id or certificate file (absolute).
        query: String,
    },
    /// Revoke the certificate a query names ([`ops::Revoke`]).
    Revoke {
        /// Serial, prefix, SHA-256, request id or certificate file (absolute).
        query: String,
        /// The RFC 5280 reason.
        reason: data::CrlReason,
    },
    /// Part of the audit log ([`ops::AuditPart`]).
    AuditPart {
        /// Only entries at or after this time.
        #[serde(with = "time::serde::rfc3339::option")]
        since: Option<OffsetDateTime>,
        /// Which part (with `stream`: every part from there on).
        page: data::Page,
    },
    /// Sign CRLs ([`ops::SignCrls`]).
    Crl {
        /// One CA's CRL, else all three.
        issuer: Option<data::CaKind>,
        /// Which generation of `issuer` (absent: the current one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u32>,
        /// Where a single CRL goes.
        target: data::CrlTarget,
        /// nextUpdate − thisUpdate.
        next_update: data::Span,
    },
    /// Issue a manifest ([`ops::Batch`]).
    Batch {
        /// The manifest's text.
        manifest: String,
        /// How the manifest is named in messages.
        name: String,
        /// Where the files go (absolute) and how the batch runs.
        opts: data::BatchOptions,
    },
    /// The engine's counters ([`ops::Status`]).
    Status,
    /// A new EAB key ([`ops::EabCreate`]).
    EabCreate {
        /// The profile of the account it binds.
        profile: String,
    },
    /// The EAB keys ([`ops::EabList`]).
    EabList,
    /// Revoke an EAB key ([`ops::EabRevoke`]).
    EabRevoke {
        /// Its key id.
        kid: String,
    },
    /// Verify the audit chain ([`ops::AuditVerify`]).
    AuditVerify,
    /// Check the store ([`ops::StoreCheck`]).
    StoreCheck,
    /// Move expired certificates into the archive ([`ops::Tidy`]).
    Tidy(data::TidyOptions),
    /// Back the CA up ([`ops::Backup`]).
    Backup {
        /// The new directory (absolute).
        dir: PathBuf,
    },
    /// Retire a certificate a renewal replaced ([`ops::Retire`]).
    Retire {
        /// Its serial.
        serial: String,
        /// How long it stays valid.
        grace: Option<data::Span>,
    },
    /// The pending retirements ([`ops::Retiring`]).
    Retiring,
    /// Apply the retirements due by now ([`ops::ApplyRetirements`]).
    ApplyRetirements,
    /// Revoke a certificate, or a request id's lineage ([`ops::RevokeLineage`]).
    RevokeLineage {
        /// Serial, prefix, SHA-256, request id or certificate file (absolute).
        query: String,
        /// The RFC 5280 reason.
        reason: data::CrlReason,
    },
}

/// An operation a client may send to a server: its request and its answer on
/// the wire, and how its paths travel (a client resolves relative paths
/// against its own directory; the server accepts absolute paths only).
pub trait Remote: Operation {
    /// The answer as it travels.
    type Wire: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The request as it travels (fails only for what cannot leave the
    /// process: a checked CSR).
    fn to_request(self) -> Conv<Request>;

    /// The answer as it travels.
    fn answer_out(answer: Self::Answer) -> Self::Wire;

    /// The answer from its wire form.
    fn answer_in(wire: Self::Wire) -> Self::Answer;

    /// Make the operation's relative paths absolute against `cwd`; whether a
    /// path the answer shows again was relative (then given back relative by
    /// [`Remote::relativize`]).
    fn absolutize(&mut self, _cwd: &Path) -> bool {
        false
    }

    /// Show the answer's paths relative to `cwd`, as the command was given them.
    fn relativize(_answer: &mut Self::Answer, _cwd: &Path) {}
}

/// What a server does with a request, by its operation's type: answer it once
/// ([`Dispatch::one`]) or stream its parts ([`Dispatch::parts`]).
pub trait Dispatch {
    /// What handling a request gives.
    type Out;

    /// Run `op` and answer it.
    fn one<O: Remote>(self, op: O) -> Self::Out;

    /// Run `op` and every part after it, one answer frame each.
    fn parts<O: Remote + Paged>(self, op: O) -> Self::Out;
}

impl Request {
    /// The typed operation of this request, handed to `d`: the one place where
    /// a request becomes an operation (the compiler holds it to every
    /// variant). Refuses paths a client never sends: relative ones (the
    /// server would resolve them against its own directory, which nobody
    /// meant) and ones holding a NUL byte.
    pub fn dispatch<D: Dispatch>(self, d: D) -> Conv<D::Out> {
        Ok(match self {
            Request::Issue(r) => {
                let req = IssuanceRequest::try_from(*r)?;
                if let Output::Prefix(p) | Output::File(p) | Output::Replace(p) = &req.output {
                    absolute("the output", p)?;
                }
                d.one(ops::Issue(req))
            }
            Request::Lookup { query } => d.one(ops::Lookup { query }),
            Request::ListPart { filter, page } => {
                let op = ops::ListPart {
                    filter: filter.into(),
                    page: page.into(),
                };
                if op.page.stream {
                    d.parts(op)
                } else {
                    d.one(op)
                }
            }
            Request::Show { query } => {
                named(&query)?;
                d.one(ops::Show { query })
            }
            Request::Revoke { query, reason } => {
                named(&query)?;
                d.one(ops::Revoke {
                    query,
                    reason: reason.into(),
                })
            }
            Request::AuditPart { since, page } => {
                let op = ops::AuditPart {
                    since,
                    page: page.into(),
                };
                if op.page.stream {
                    d.parts(op)
                } else {
                    d.one(op)
                }
            }
            Request::Crl {
                issuer,
                generation,
                target,
                next_update,
            } => {
                if let data::CrlTarget::File(p) = &target {
                    absolute("the CRL file", p)?;
                }
                d.one(ops::SignCrls {
                    issuer: issuer.map(Into::into),
                    generation,
                    target: target.into(),
                    next_update: next_update.into(),
                })
            }
            Request::Batch {
                manifest,
                name,
                opts,
            } => {
                absolute("the output directory", &opts.out_dir)?;
                d.one(ops::Batch {
                    manifest,
                    name,
                    opts: opts.into(),
                })
            }
            Request::Status => d.one(ops::Status),
            Request::EabCreate { profile } => d.one(ops::EabCreate { profile }),
            Request::EabList => d.one(ops::EabList),
            Request::EabRevoke { kid } => d.one(ops::EabRevoke { kid }),
            Request::AuditVerify => d.one(ops::AuditVerify),
            Request::StoreCheck => d.one(ops::StoreCheck),
            Request::Tidy(opts) => d.one(ops::Tidy(opts.into())),
            Request::Backup { dir } => {
                absolute("the backup directory", &dir)?;
                d.one(ops::Backup { dir })
            }
            Request::Retire { serial, grace } => d.one(ops::Retire {
                serial,
                grace: grace.map(Into::into),
            }),
            Request::Retiring => d.one(ops::Retiring),
            Request::ApplyRetirements => d.one(ops::ApplyRetirements),
            Request::RevokeLineage { query, reason } => {
                named(&query)?;
                d.one(ops::RevokeLineage {
                    query,
                    reason: reason.into(),
                })
            }
        })
    }
}

/// A path a request holds: absolute, without NUL bytes.
fn absolute(what: &str, p: &Path) -> Conv<()> {
    if p.as_os_str().as_encoded_bytes().contains(&0) {
        Err(Malformed(format!("{what} holds a NUL byte")))
    } else if !p.is_absolute() {
        Err(Malformed(format!(
            "{what} `{}` is relative (a client sends absolute paths)",
            crate::names::printable(&p.to_string_lossy())
        )))
    } else {
        Ok(())
    }
}

/// A certificate named by a query (perhaps a file): no NUL byte.
fn named(query: &str) -> Conv<()> {
    if query.contains('\0') {
        Err(Malformed("the certificate named holds a NUL byte".into()))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct RequestOut<'a> {
    v: u32,
    op: &'a Request,
}

#[derive(Deserialize)]
struct RequestIn {
    v: u32,
    /// Left as JSON until the version is known.
    op: serde_json::Value,
}

#[derive(Serialize)]
struct AnswerOut<'a, W> {
    v: u32,
    result: &'a Result<W, WireError>,
}

/// An answer whose version was read before.
#[derive(Deserialize)]
struct AnswerIn<W> {
    result: Result<W, WireError>,
}

/// The version of a message, read before anything else of it.
#[derive(Deserialize)]
struct Versioned {
    v: u32,
}

/// The frame body of a request.
pub fn encode_request(req: &Request) -> Result<Vec<u8>, Malformed> {
    serde_json::to_vec(&RequestOut {
        v: VERSION,
        op: req,
    })
    .map_err(|e| Malformed(format!("cannot encode the request: {e}")))
}

/// Why a request is refused: the server log's problem, and the message answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// `bad-request` or `protocol-version`.
    pub problem: &'static str,
    /// What the client is told.
    pub message: String,
}

/// The request in a frame body: of this version, and a known operation.
pub fn decode_request(body: &[u8]) -> Result<Request, BadRequest> {
    let bad = |e: &dyn std::fmt::Display| BadRequest {
        problem: "bad-request",
        message: format!("a bad request: {e}"),
    };
    let req: RequestIn = serde_json::from_slice(body).map_err(|e| bad(&e))?;
    if req.v != VERSION {
        return Err(BadRequest {
            problem: "protocol-version",
            message: format!(
                "the client speaks control protocol {}, this server {VERSION}: run the same mtlsca version",
                req.v
            ),
        });
    }
    serde_json::from_value(req.op).map_err(|e| bad(&e))
}

/// The refusal of a request whose operation cannot be run as sent.
pub fn malformed_request(e: &Malformed) -> BadRequest {
    BadRequest {
        problem: "bad-request",
        message: format!("a bad request: {e}"),
    }
}

/// The frame body of an answer.
pub fn encode_answer<W: Serialize>(result: &Result<W, WireError>) -> Result<Vec<u8>, Malformed> {
    serde_json::to_vec(&AnswerOut { v: VERSION, result })
        .map_err(|e| Malformed(format!("cannot encode the answer: {e}")))
}

/// An answer that cannot be read as the one asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadAnswer {
    /// The server speaks another version of the protocol.
    Version(u32),
    /// Not the answer asked for, or not JSON.
    Unreadable(String),
}

impl std::fmt::Display for BadAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadAnswer::Version(v) => write!(
                f,
                "the server speaks control protocol {v}, this client {VERSION}: run the same mtlsca version"
            ),
            BadAnswer::Unreadable(e) => write!(f, "a bad answer: {e}"),
        }
    }
}

/// The answer in a frame body, read as `W` once its version is this one's.
pub fn decode_answer<W: DeserializeOwned>(body: &[u8]) -> Result<Result<W, WireError>, BadAnswer> {
    let unreadable = |e: serde_json::Error| BadAnswer::Unreadable(e.to_string());
    let Versioned { v } = serde_json::from_slice(body).map_err(unreadable)?;
    if v != VERSION {
        return Err(BadAnswer::Version(v));
    }
    let answer: AnswerIn<W> = serde_json::from_slice(body).map_err(unreadable)?;
    Ok(answer.result)
}

// ---------------------------------------------------------------------------
// The operations that travel
// ---------------------------------------------------------------------------

/// Make a relative path absolute against `cwd`; whether it was relative. `-`
/// is a name like any other here: standard input and output never reach the
/// server as paths.
fn make_absolute(p: &mut PathBuf, cwd: &Path) -> bool {
    if p.is_relative() {
        *p = cwd.join(&*p);
        true
    } else {
        false
    }
}

/// A query that names a certificate file, made absolute.
fn absolute_query(query: &mut String, cwd: &Path) {
    if crate::lookup::looks_like_file(query) && Path::new(query.as_str()).is_relative() {
        *query = cwd.join(&*query).display().to_string();
    }
}

fn relative(p: &mut PathBuf, cwd: &Path) {
    if let Ok(r) = p.strip_prefix(cwd) {
        *p = r.to_path_buf();
    }
}

impl Remote for ops::Issue {
    type Wire = data::Issued;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Issue(Box::new(self.0.try_into()?)))
    }

    fn answer_out(answer: Issued) -> data::Issued {
        answer.into()
    }

    fn answer_in(wire: data::Issued) -> Issued {
        wire.into()
    }

    fn absolutize(&mut self, cwd: &Path) -> bool {
        match &mut self.0.output {
            Output::Prefix(p) | Output::File(p) | Output::Replace(p) => make_absolute(p, cwd),
            Output::None => false,
        }
    }

    fn relativize(answer: &mut Issued, cwd: &Path) {
        answer.files.iter_mut().for_each(|p| relative(p, cwd));
        answer.written.iter_mut().for_each(|p| relative(p, cwd));
    }
}

impl Remote for ops::Lookup {
    type Wire = Option<data::Record>;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Lookup { query: self.query })
    }

    fn answer_out(answer: Option<Record>) -> Option<data::Record> {
        answer.map(Into::into)
    }

    fn answer_in(wire: Option<data::Record>) -> Option<Record> {
        wire.map(Into::into)
    }
}

impl Remote for ops::ListPart {
    type Wire = data::Part<data::Record>;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::ListPart {
            filter: self.filter.into(),
            page: self.page.into(),
        })
    }

    fn answer_out(answer: ops::Part<Record>) -> data::Part<data::Record> {
        data::Part::from_part(answer)
    }

    fn answer_in(wire: data::Part<data::Record>) -> ops::Part<Record> {
        wire.into_part()
    }
}

impl Remote for ops::Show {
    type Wire = data::Shown;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Show { query: self.query })
    }

    fn answer_out(answer: ops::Shown) -> data::Shown {
        answer.into()
    }

    fn answer_in(wire: data::Shown) -> ops::Shown {
        wire.into()
    }

    fn absolutize(&mut self, cwd: &Path) -> bool {
        absolute_query(&mut self.query, cwd);
        false
    }
}

impl Remote for ops::Revoke {
    type Wire = data::Record;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Revoke {
            query: self.query,
            reason: self.reason.into(),
        })
    }

    fn answer_out(answer: Record) -> data::Record {
        answer.into()
    }

    fn answer_in(wire: data::Record) -> Record {
        wire.into()
    }

    fn absolutize(&mut self, cwd: &Path) -> bool {
        absolute_query(&mut self.query, cwd);
        false
    }
}

impl Remote for ops::AuditPart {
    type Wire = data::Part<data::AuditEntry>;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::AuditPart {
            since: self.since,
            page: self.page.into(),
        })
    }

    fn answer_out(answer: ops::Part<crate::store::AuditEntry>) -> data::Part<data::AuditEntry> {
        data::Part::from_part(answer)
    }

    fn answer_in(wire: data::Part<data::AuditEntry>) -> ops::Part<crate::store::AuditEntry> {
        wire.into_part()
    }
}

impl Remote for ops::SignCrls {
    type Wire = Vec<data::SignedCrl>;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Crl {
            issuer: self.issuer.map(Into::into),
            generation: self.generation,
            target: self.target.into(),
            next_update: self.next_update.into(),
        })
    }

    fn answer_out(answer: Vec<ops::SignedCrl>) -> Vec<data::SignedCrl> {
        answer.into_iter().map(Into::into).collect()
    }

    fn answer_in(wire: Vec<data::SignedCrl>) -> Vec<ops::SignedCrl> {
        wire.into_iter().map(Into::into).collect()
    }

    fn absolutize(&mut self, cwd: &Path) -> bool {
        if let ops::CrlTarget::File(p) = &mut self.target {
            make_absolute(p, cwd);
        }
        false
    }
}

impl Remote for ops::Batch {
    type Wire = data::BatchReport;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Batch {
            manifest: self.manifest,
            name: self.name,
            opts: self.opts.into(),
        })
    }

    fn answer_out(answer: ops::BatchReport) -> data::BatchReport {
        answer.into()
    }

    fn answer_in(wire: data::BatchReport) -> ops::BatchReport {
        wire.into()
    }

    fn absolutize(&mut self, cwd: &Path) -> bool {
        make_absolute(&mut self.opts.out_dir, cwd);
        false
    }
}

impl Remote for ops::Status {
    type Wire = data::ServiceStats;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Status)
    }

    fn answer_out(answer: ops::ServiceStats) -> data::ServiceStats {
        answer.into()
    }

    fn answer_in(wire: data::ServiceStats) -> ops::ServiceStats {
        wire.into()
    }
}

impl Remote for ops::EabCreate {
    type Wire = data::EabKey;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::EabCreate {
            profile: self.profile,
        })
    }

    fn answer_out(answer: EabKey) -> data::EabKey {
        answer.into()
    }

    fn answer_in(wire: data::EabKey) -> EabKey {
        wire.into()
    }
}

impl Remote for ops::EabList {
    type Wire = Vec<data::EabKey>;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::EabList)
    }

    fn answer_out(answer: Vec<EabKey>) -> Vec<data::EabKey> {
        answer.into_iter().map(Into::into).collect()
    }

    fn answer_in(wire: Vec<data::EabKey>) -> Vec<EabKey> {
        wire.into_iter().map(Into::into).collect()
    }
}

impl Remote for ops::EabRevoke {
    type Wire = data::EabKey;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::EabRevoke { kid: self.kid })
    }

    fn answer_out(answer: EabKey) -> data::EabKey {
        answer.into()
    }

    fn answer_in(wire: data::EabKey) -> EabKey {
        wire.into()
    }
}

impl Remote for ops::AuditVerify {
    type Wire = data::AuditReport;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::AuditVerify)
    }

    fn answer_out(answer: AuditReport) -> data::AuditReport {
        answer.into()
    }

    fn answer_in(wire: data::AuditReport) -> AuditReport {
        wire.into()
    }
}

impl Remote for ops::Tidy {
    type Wire = data::TidyReport;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Tidy(self.0.into()))
    }

    fn answer_out(answer: crate::store::TidyReport) -> data::TidyReport {
        answer.into()
    }

    fn answer_in(wire: data::TidyReport) -> crate::store::TidyReport {
        wire.into()
    }
}

impl Remote for ops::StoreCheck {
    type Wire = data::CheckReport;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::StoreCheck)
    }

    fn answer_out(answer: CheckReport) -> data::CheckReport {
        answer.into()
    }

    fn answer_in(wire: data::CheckReport) -> CheckReport {
        wire.into()
    }
}

impl Remote for ops::Backup {
    type Wire = data::BackupSummary;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Backup { dir: self.dir })
    }

    fn answer_out(answer: BackupSummary) -> data::BackupSummary {
        answer.into()
    }

    fn answer_in(wire: data::BackupSummary) -> BackupSummary {
        wire.into()
    }

    fn absolutize(&mut self, cwd: &Path) -> bool {
        make_absolute(&mut self.dir, cwd)
    }

    fn relativize(answer: &mut BackupSummary, cwd: &Path) {
        relative(&mut answer.dir, cwd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::CaKind;
    use crate::issue::KeySource;
    use crate::policy::RequestedContent;
    use crate::rules::Origin;
    use crate::service::ops::{CrlTarget, PageRequest};
    use crate::store::ListFilter;

    /// The dispatcher that says which operation a request became.
    struct TypeName;

    impl Dispatch for TypeName {
        type Out = (&'static str, bool);

        fn one<O: Remote>(self, _: O) -> (&'static str, bool) {
            (std::any::type_name::<O>(), false)
        }

        fn parts<O: Remote + Paged>(self, _: O) -> (&'static str, bool) {
            (std::any::type_name::<O>(), true)
        }
    }

    /// `op` travels as a request that reads back the same and becomes an
    /// operation of its own type again (so that its answer is read as the
    /// answer the client asked for).
    fn pairs<O: Remote + std::fmt::Debug>(op: O, streams: bool) {
        let shown = format!("{op:?}");
        let request = op.to_request().unwrap();
        let body = encode_request(&request).unwrap();
        let back = decode_request(&body).unwrap();
        assert_eq!(back, request, "{shown}");
        assert_eq!(
            back.dispatch(TypeName).unwrap(),
            (std::any::type_name::<O>(), streams),
            "{shown}"
        );
    }

    fn issue_request() -> IssuanceRequest {
        IssuanceRequest {
            profile: "device".into(),
            content: RequestedContent {
                dns: vec!["a.test".into()],
                validity: Some("30d".into()),
                ..Default::default()
            },
            key: KeySource::Generate(Some(crate::key::KeyType::Ed25519)),
            request_id: Some("renewal-of:0a".into()),
            output: Output::Prefix("/out/a".into()),
            origin: Origin::Manifest,
            replaces: Some("0a".into()),
        }
    }

    /// Every operation a client sends becomes the same operation on the
    /// server: the pairing of requests and answers holds for each.
    #[test]
    fn every_request_becomes_its_own_operation() {
        let streamed = PageRequest {
            stream: true,
            ..PageRequest::default()
        };
        pairs(ops::Issue(issue_request()), false);
        pairs(
            ops::Issue(IssuanceRequest {
                key: KeySource::Csr(b"-----BEGIN CERTIFICATE REQUEST-----".to_vec()),
                ..issue_request()
            }),
            false,
        );
        pairs(ops::Lookup { query: "ab".into() }, false);
        pairs(
            ops::ListPart {
                filter: ListFilter {
                    role: Some(crate::role::Role::Entity),
                    status: Some(crate::store::Status::Revoked),
                    profile: Some("p".into()),
                    expiring_within: Some(time::Duration::new(86_400, 5)),
                    name: Some("*.test".into()),
                    include_archived: true,
                },
                page: PageRequest::default(),
            },
            false,
        );
        pairs(
            ops::ListPart {
                filter: ListFilter::default(),
                page: streamed.clone(),
            },
            true,
        );
        pairs(
            ops::Show {
                query: "/c.pem".into(),
            },
            false,
        );
        pairs(
            ops::Revoke {
                query: "ab".into(),
                reason: crate::crl::Reason::KeyCompromise,
            },
            false,
        );
        pairs(
            ops::AuditPart {
                since: Some(OffsetDateTime::UNIX_EPOCH),
                page: PageRequest {
                    after: Some(vec![1, 2]),
                    at: Some(OffsetDateTime::UNIX_EPOCH),
                    stream: false,
                },
            },
            false,
        );
        pairs(
            ops::AuditPart {
                since: None,
                page: streamed,
            },
            true,
        );
        for target in [
            CrlTarget::Published,
            CrlTarget::Returned,
            CrlTarget::File("/c.crl".into()),
        ] {
            pairs(
                ops::SignCrls {
                    issuer: Some(CaKind::Entity),
                    generation: Some(2),
                    target,
                    next_update: time::Duration::days(7),
                },
                false,
            );
        }
        pairs(
            ops::Retire {
                serial: "0a".into(),
                grace: Some(time::Duration::hours(1)),
            },
            false,
        );
        pairs(ops::Retiring, false);
        pairs(ops::ApplyRetirements, false);
        pairs(
            ops::RevokeLineage {
                query: "host-07".into(),
                reason: crate::crl::Reason::Superseded,
            },
            false,
        );
        pairs(
            ops::Batch {
                manifest: "[[certificate]]".into(),
                name: "m.toml".into(),
                opts: crate::batch::BatchOptions {
                    renew_within: Some(time::Duration::days(3)),
                    ..crate::batch::BatchOptions::new("/out".into())
                },
            },
            false,
        );
        pairs(ops::Status, false);
        pairs(
            ops::EabCreate {
                profile: "device".into(),
            },
            false,
        );
        pairs(ops::EabList, false);
        pairs(ops::EabRevoke { kid: "k".into() }, false);
        pairs(ops::AuditVerify, false);
        pairs(ops::StoreCheck, false);
        pairs(
            ops::Tidy(crate::store::TidyOptions {
                expired_before: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
                dry_run: true,
            }),
            false,
        );
        pairs(ops::Backup { dir: "/b".into() }, false);
    }

    /// A request reads back as the engine's request it was made of.
    #[test]
    fn an_issuance_request_reads_back_whole() {
        let Request::Issue(wire) = ops::Issue(issue_request()).to_request().unwrap() else {
            panic!("not an issue");
        };
        assert_eq!(IssuanceRequest::try_from(*wire).unwrap(), issue_request());
        let mut odd = data::IssueRequest::try_from(issue_request()).unwrap();
        odd.origin = "telepathy".into();
        assert_eq!(
            IssuanceRequest::try_from(odd).unwrap_err().to_string(),
            "unknown origin `telepathy`"
        );
    }

    fn record() -> Record {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        Record {
            schema: crate::store::SCHEMA_VERSION,
            serial: "0a".into(),
            issuer: "device".into(),
            issuer_key_id: "ff".into(),
            role: crate::role::Role::Device,
            profile: "device".into(),
            subject: "CN=a.test".into(),
            names: vec!["DNS:a.test".into()],
            not_before: t,
            not_after: t + time::Duration::days(90),
            sha256: "00".repeat(32),
            status: crate::store::Status::Revoked,
            revocation: Some(crate::store::Revocation {
                at: t,
                reason: "keyCompromise".into(),
            }),
            request_id: Some("r".into()),
            issued_at: t,
            key_file: Some("/out/a.key".into()),
            replaces: Some("09".into()),
        }
    }

    /// The wire form is the protocol's: pinned here, so that a change to it is
    /// seen (and the version bumped), whatever the store's records look like.
    #[test]
    fn the_wire_form_of_a_record_and_a_request_is_pinned() {
        let answer: Result<Option<data::Record>, WireError> =
            Ok(<ops::Lookup as Remote>::answer_out(Some(record())));
        let body: serde_json::Value =
            serde_json::from_slice(&encode_answer(&answer).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"v": 2, "result": {"Ok": {
                "serial": "0a", "issuer": "device", "issuer_key_id": "ff",
                "role": "device", "profile": "device", "subject": "CN=a.test",
                "names": ["DNS:a.test"],
                "not_before": "2023-11-14T22:13:20Z",
                "not_after": "2024-02-12T22:13:20Z",
                "sha256": "00".repeat(32), "status": "revoked",
                "revocation": {"at": "2023-11-14T22:13:20Z", "reason": "keyCompromise"},
                "request_id": "r", "issued_at": "2023-11-14T22:13:20Z",
                "key_file": "/out/a.key", "replaces": "09",
            }}})
        );
        let back: Option<data::Record> = decode_answer(&serde_json::to_vec(&body).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(<ops::Lookup as Remote>::answer_in(back), Some(record()));

        let request = ops::Issue(issue_request()).to_request().unwrap();
        let body: serde_json::Value =
            serde_json::from_slice(&encode_request(&request).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"v": 2, "op": {"Issue": {
                "profile": "device",
                "content": {
                    "dns": ["a.test"], "ip": [], "uri": [], "email": [],
                    "cn": null, "org": null, "country": null, "validity": "30d",
                    "requested_ekus": null, "requests_ca": false,
                    "unsupported_names": [], "unknown_critical": [],
                },
                "key": {"generate": {"key_type": "ed25519"}},
                "request_id": "renewal-of:0a",
                "output": {"prefix": "/out/a"},
                "origin": "manifest",
                "replaces": "0a",
            }}})
        );
    }

    /// Answers come back as what was answered: the engine's types, through
    /// the protocol's and JSON.
    #[test]
    fn answers_read_back_as_answered() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let through = |w: &data::Shown| -> data::Shown {
            serde_json::from_slice(&serde_json::to_vec(w).unwrap()).unwrap()
        };
        let shown = ops::Shown {
            record: record(),
            der: vec![0x30, 0],
            audit: vec![crate::store::AuditEntry {
                seq: 3,
                at: t,
                action: "issue".into(),
                serial: Some("0a".into()),
                request_id: None,
                detail: "d".into(),
                prev: "00".into(),
            }],
            renewed_by: Some("0b".into()),
            archived: true,
        };
        let wire = <ops::Show as Remote>::answer_out(shown.clone());
        let back = <ops::Show as Remote>::answer_in(through(&wire));
        assert_eq!(back.record, shown.record);
        assert_eq!(back.der, shown.der);
        assert_eq!(back.audit, shown.audit);
        assert_eq!(back.renewed_by, shown.renewed_by);
        assert_eq!(back.archived, shown.archived);

        // A batch stopped by an error: the entries, and the error with its kind.
        let report = ops::BatchReport {
            entries: vec![crate::batch::EntryOutcome {
                id: "e1".into(),
                status: crate::batch::EntryStatus::Refused,
                serial: None,
                reasons: vec![crate::batch::Reason {
                    rule: Some("no-identity".into()),
                    field: Some("dns".into()),
                    message: "m".into(),
                }],
                files: vec![],
                not_after: Some(t),
                rotation: crate::batch::Rotation {
                    replaces: Some("0a".into()),
                    retires_at: Some(t),
                    capped: Some((90 * 86_400, 60 * 86_400)),
                },
            }],
            outcome: Err(crate::error::Error::Store("disk".into())),
        };
        let wire: data::BatchReport = serde_json::from_slice(
            &serde_json::to_vec(&<ops::Batch as Remote>::answer_out(report)).unwrap(),
        )
        .unwrap();
        let back = <ops::Batch as Remote>::answer_in(wire);
        assert_eq!(
            back.entries[0].reasons[0].rule.as_deref(),
            Some("no-identity")
        );
        assert_eq!(back.entries[0].status, crate::batch::EntryStatus::Refused);
        assert_eq!(back.entries[0].rotation.replaces.as_deref(), Some("0a"));
        assert_eq!(back.entries[0].rotation.retires_at, Some(t));
        assert_eq!(
            back.entries[0].rotation.capped,
            Some((90 * 86_400, 60 * 86_400))
        );
        let e = back.outcome.unwrap_err();
        assert_eq!((e.kind(), e.to_string()), ("store", "store: disk".into()));
    }

    /// A peer of another version is told so before the rest of its message is
    /// read: a request of version 1 is not parsed as an operation, an answer
    /// of version 1 not as an answer.
    #[test]
    fn another_version_is_said_not_misread() {
        // What a client of version 1 sent for `list` and for `issue`.
        for v1 in [
            r#"{"v":1,"op":{"List":{"filter":{"role":null,"status":null,"profile":null,"expiring_within":null,"name":null},"page":{"after":null,"at":null,"stream":true}}}}"#,
            r#"{"v":1,"op":{"Issue":{"profile":"device","content":{},"key":{"Generate":null},"request_id":null,"output":"None","origin":"Arguments"}}}"#,
            r#"{"v":1,"op":"Status"}"#,
        ] {
            let refused = decode_request(v1.as_bytes()).unwrap_err();
            assert_eq!(refused.problem, "protocol-version");
            assert_eq!(
                refused.message,
                "the client speaks control protocol 1, this server 2: run the same mtlsca version"
            );
        }
        // What a server of version 1 answered; and of a version to come.
        for (answer, v) in [
            (r#"{"v":1,"result":{"Ok":{"Records":[]}}}"#, 1),
            (r#"{"v":1,"result":{"Ok":"Done"}}"#, 1),
            (r#"{"v":3,"result":{"Ok":null}}"#, 3),
        ] {
            let e = decode_answer::<Option<data::Record>>(answer.as_bytes()).unwrap_err();
            assert_eq!(e, BadAnswer::Version(v));
            assert_eq!(
                e.to_string(),
                format!("the server speaks control protocol {v}, this client 2: run the same mtlsca version")
            );
        }
        // This version, but not the answer asked for: unreadable, not another answer.
        let e = decode_answer::<data::ServiceStats>(br#"{"v":2,"result":{"Ok":[]}}"#).unwrap_err();
        assert!(matches!(e, BadAnswer::Unreadable(_)), "{e:?}");
        let ok = decode_answer::<Option<data::Record>>(br#"{"v":2,"result":{"Ok":null}}"#);
        assert_eq!(ok, Ok(Ok(None)));
    }

    /// A request's paths are absolute and free of NUL bytes.
    #[test]
    fn requests_with_relative_paths_are_malformed() {
        let backup = |dir: &str| Request::Backup { dir: dir.into() };
        assert_eq!(
            backup("b").dispatch(TypeName).unwrap_err().to_string(),
            "the backup directory `b` is relative (a client sends absolute paths)"
        );
        assert_eq!(
            backup("/b\0").dispatch(TypeName).unwrap_err().to_string(),
            "the backup directory holds a NUL byte"
        );
        assert!(backup("/b/../c").dispatch(TypeName).is_ok());
    }
}
