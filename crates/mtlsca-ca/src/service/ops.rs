//! The operations on the CA, each a type tied to the type of its answer
//! ([`Operation::Answer`]): a caller gets exactly what it asked for, checked by
//! the compiler, and no operation can be left without its answer. Each one
//! says how it runs ([`Operation::run`]) on an open CA: locally (no server) or
//! on the engine thread of [`super::Service`], the one code path of every
//! front end. These are in-process types; what travels on the control socket
//! is the protocol's own types (`service::protocol`), converted at the edge.

use std::path::PathBuf;

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::backup::BackupSummary;
use crate::batch::{BatchOptions, EntryOutcome, Manifest, Summary};
use crate::ca::{Ca, CaKind};
use crate::crl::{self, Reason};
use crate::error::{Error, Result};
use crate::issue::{IssuanceRequest, Issued, Issuer, KeySource, Output};
use crate::policy::RequestedContent;
use crate::rules::Origin;
use crate::store::acme::EabKey;
use crate::store::{AuditEntry, AuditReport, CheckReport, ListFilter, Record, Store};

use super::Counters;

mod rotation;
pub use rotation::{ApplyRetirements, Retire, Retirement, Retiring, RevokeLineage, RevokedLineage};

/// Records or audit entries read through a server at most this many at a time
/// (one engine job each, a few milliseconds at a million records): other
/// requests are answered between the parts of a long `list` or `audit`.
pub const PAGE_BUDGET: usize = 2_000;

/// Where the answer of a queued operation goes.
pub type Reply<T> = oneshot::Sender<Result<T>>;

/// An operation on the CA, and what it answers.
pub trait Operation: Send + Sized + 'static {
    /// What it answers.
    type Answer: Send + 'static;

    /// Whether it holds the engine for long (a batch, a store check, an audit
    /// verification, a backup, a whole `list` or `audit` at once): it ends
    /// what the engine takes at once, and while a batch gives way to other
    /// jobs, these wait until it is done.
    const HOLDS_ENGINE: bool = false;

    /// Run it on an open CA.
    fn run(self, cx: &mut Cx<'_>) -> Result<Self::Answer>;

    /// The engine's job for it, answered on `reply` (issuing overrides this:
    /// issue jobs waiting together are committed as one group).
    fn into_job(self, reply: Reply<Self::Answer>) -> Job {
        Job(JobKind::Run {
            holds_engine: Self::HOLDS_ENGINE,
            run: Box::new(move |cx: &mut Cx<'_>| {
                let _ = reply.send(self.run(cx));
            }),
        })
    }
}

/// An operation queued for the engine, with where its answer goes.
pub struct Job(pub(super) JobKind);

/// What the engine does with a job.
pub(super) enum JobKind {
    /// Issue: group-committed with the other issues taken with it.
    Issue(Box<IssuanceRequest>, Reply<Issued>),
    /// Anything else: run in turn.
    Run {
        holds_engine: bool,
        run: Box<dyn FnOnce(&mut Cx<'_>) + Send>,
    },
}

impl Job {
    /// [`Operation::HOLDS_ENGINE`] of its operation.
    pub(super) fn holds_engine(&self) -> bool {
        match &self.0 {
            JobKind::Issue(..) => false,
            JobKind::Run { holds_engine, .. } => *holds_engine,
        }
    }
}

/// The issuer of a context: the engine's, or one made when first needed.
enum IssuerRef<'a> {
    Held(&'a Issuer<'a>),
    Lazy(std::cell::OnceCell<Issuer<'a>>),
}

/// What an operation runs with: the CA, its store, the time, and on the engine
/// thread its issuer, counters and the batch's turn for other jobs.
pub struct Cx<'a> {
    ca: &'a Ca,
    store: &'a Store,
    now: OffsetDateTime,
    issuer: IssuerRef<'a>,
    counters: Option<&'a Counters>,
    give_way: Option<&'a mut dyn FnMut()>,
}

impl<'a> Cx<'a> {
    /// The CA opened in this process, at `now`.
    pub(super) fn local(ca: &'a Ca, store: &'a Store, now: OffsetDateTime) -> Cx<'a> {
        Cx {
            ca,
            store,
            now,
            issuer: IssuerRef::Lazy(std::cell::OnceCell::new()),
            counters: None,
            give_way: None,
        }
    }

    /// The engine thread's CA, at `now`.
    pub(super) fn engine(
        ca: &'a Ca,
        store: &'a Store,
        issuer: &'a Issuer<'a>,
        counters: &'a Counters,
        give_way: &'a mut dyn FnMut(),
        now: OffsetDateTime,
    ) -> Cx<'a> {
        Cx {
            ca,
            store,
            now,
            issuer: IssuerRef::Held(issuer),
            counters: Some(counters),
            give_way: Some(give_way),
        }
    }

    fn issuer(&self) -> Result<&Issuer<'a>> {
        match &self.issuer {
            IssuerRef::Held(i) => Ok(i),
            IssuerRef::Lazy(cell) => {
                if cell.get().is_none() {
                    let _ = cell.set(Issuer::new(self.ca, self.store)?);
                }
                cell.get()
                    .ok_or_else(|| Error::State("the issuer could not be kept".into()))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The operations
// ---------------------------------------------------------------------------

/// Check a request as far as possible without signing (ACME newOrder).
#[derive(Debug, Clone)]
pub struct Check {
    /// The profile.
    pub profile: String,
    /// What is asked for.
    pub content: RequestedContent,
}

impl Operation for Check {
    type Answer = ();

    fn run(self, cx: &mut Cx<'_>) -> Result<()> {
        let req = IssuanceRequest {
            profile: self.profile,
            content: self.content,
            key: KeySource::Generate(None),
            request_id: None,
            output: Output::None,
            origin: Origin::Manifest,
            replaces: None,
        };
        // Read per request, locally too (as before the operations had types).
        let now = OffsetDateTime::now_utc();
        cx.issuer()?.check_request(&req, now)
    }
}

/// Issue one certificate (on the engine: group-committed with the others waiting).
#[derive(Debug, Clone)]
pub struct Issue(pub IssuanceRequest);

impl Operation for Issue {
    type Answer = Issued;

    fn run(self, cx: &mut Cx<'_>) -> Result<Issued> {
        cx.issuer()?.issue(&self.0, cx.now)
    }

    fn into_job(self, reply: Reply<Issued>) -> Job {
        Job(JobKind::Issue(Box::new(self.0), reply))
    }
}

/// The record a serial, fingerprint or request id names (none if unknown).
#[derive(Debug, Clone)]
pub struct Lookup {
    /// Serial, SHA-256 or request id.
    pub query: String,
}

impl Operation for Lookup {
    type Answer = Option<Record>;

    fn run(self, cx: &mut Cx<'_>) -> Result<Option<Record>> {
        cx.store.find(&self.query)
    }
}

/// The records matching a filter, all at once (`list` without a server).
#[derive(Debug, Clone)]
pub struct List {
    /// The filter.
    pub filter: ListFilter,
}

impl Operation for List {
    type Answer = Vec<Record>;
    const HOLDS_ENGINE: bool = true;

    fn run(self, cx: &mut Cx<'_>) -> Result<Vec<Record>> {
        cx.store.list(&self.filter, cx.now)
    }
}

/// Where a read in parts resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The previous part's cursor (`None`: the first part).
    pub after: Option<Vec<u8>>,
    /// The time the first part was read at, so that every part filters alike.
    pub at: Option<OffsetDateTime>,
    /// Every part on the one connection, one frame each, instead of one part
    /// per request (how a server answers; the engine reads one part either way).
    pub stream: bool,
}

/// One part of a long read, with where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Part<T> {
    /// What matched in this part.
    pub items: Vec<T>,
    /// The next part's cursor; `None`: this was the last.
    pub next: Option<Vec<u8>>,
    /// The time the read filters at (the first part's).
    pub at: OffsetDateTime,
}

impl<T> Part<T> {
    fn of(page: crate::store::Page<T>, at: OffsetDateTime) -> Part<T> {
        Part {
            items: page.items,
            next: page.next,
            at,
        }
    }
}

/// A read in parts: each part one engine job, the next asked for with the
/// previous part's cursor.
pub trait Paged: Operation<Answer = Part<Self::Item>> + Clone {
    /// What a part holds.
    type Item: Send + 'static;

    /// Where this part starts.
    fn page(&self) -> &PageRequest;

    /// The same read from another part.
    fn with_page(self, page: PageRequest) -> Self;

    /// The read of the part after `part`, if one follows.
    fn after(&self, part: &Part<Self::Item>) -> Option<Self> {
        let after = part.next.clone()?;
        let stream = self.page().stream;
        Some(self.clone().with_page(PageRequest {
            after: Some(after),
            at: Some(part.at),
            stream,
        }))
    }
}

/// Part of the records matching a filter (`list` through a server).
#[derive(Debug, Clone)]
pub struct ListPart {
    /// The filter.
    pub filter: ListFilter,
    /// Which part.
    pub page: PageRequest,
}

impl Operation for ListPart {
    type Answer = Part<Record>;

    fn run(self, cx: &mut Cx<'_>) -> Result<Part<Record>> {
        let at = self.page.at.unwrap_or(cx.now);
        let page = cx
            .store
            .list_page(&self.filter, at, self.page.after.as_deref(), PAGE_BUDGET)?;
        Ok(Part::of(page, at))
    }
}

impl Paged for ListPart {
    type Item = Record;

    fn page(&self) -> &PageRequest {
        &self.page
    }

    fn with_page(self, page: PageRequest) -> ListPart {
        ListPart { page, ..self }
    }
}

/// What `show` shows.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The record.
    pub record: Record,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its audit entries.
    pub audit: Vec<AuditEntry>,
    /// The serial of the certificate that renewed it, if any.
    pub renewed_by: Option<String>,
    /// Whether it is in the archive (`store tidy`) rather than the hot store.
    pub archived: bool,
}

/// One certificate, its PEM, its audit entries and its renewal (`show`).
#[derive(Debug, Clone)]
pub struct Show {
    /// Serial, prefix, SHA-256, request id or certificate file (absolute).
    pub query: String,
}

impl Operation for Show {
    type Answer = Shown;

    fn run(self, cx: &mut Cx<'_>) -> Result<Shown> {
        let store = cx.store;
        let record = crate::lookup::resolve(store, &self.query)?;
        let der = store
            .der(&record)?
            .ok_or_else(|| Error::Store(format!("record {} has no certificate", record.serial)))?;
        let audit = store.audit_of(&record.serial)?;
        let renewed_by = store
            .by_request_id(&crate::issue::renewal_request_id(&record.serial))?
            .map(|r| r.serial);
        let archived = store.is_archived(&record)?;
        Ok(Shown {
            record,
            der,
            audit,
            renewed_by,
            archived,
        })
    }
}

/// Revoke the certificate a query names (`revoke`).
#[derive(Debug, Clone)]
pub struct Revoke {
    /// Serial, prefix, SHA-256, request id or certificate file (absolute).
    pub query: String,
    /// The RFC 5280 reason.
    pub reason: Reason,
}

impl Operation for Revoke {
    type Answer = Record;

    fn run(self, cx: &mut Cx<'_>) -> Result<Record> {
        cx.store.apply_due_retirements(cx.now)?;
        let named = crate::lookup::resolve(cx.store, &self.query)?;
        crl::revoke(cx.store, &named.serial, self.reason, cx.now)
    }
}

/// Revoke exactly the certificate with this fingerprint (ACME revokeCert).
#[derive(Debug, Clone)]
pub struct RevokeExact {
    /// SHA-256 of the certificate, lowercase hex.
    pub sha256: String,
    /// The RFC 5280 reason.
    pub reason: Reason,
}

impl Operation for RevokeExact {
    type Answer = Record;

    fn run(self, cx: &mut Cx<'_>) -> Result<Record> {
        match cx.store.find(&self.sha256)? {
            Some(rec) if rec.sha256 == self.sha256 => {
                crl::revoke(cx.store, &rec.serial, self.reason, cx.now)
            }
            _ => Err(Error::refused("this CA did not issue the certificate")),
        }
    }
}

/// The audit log, all at once (`audit` without a server).
#[derive(Debug, Clone)]
pub struct Audit {
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
}

impl Operation for Audit {
    type Answer = Vec<AuditEntry>;
    const HOLDS_ENGINE: bool = true;

    fn run(self, cx: &mut Cx<'_>) -> Result<Vec<AuditEntry>> {
        cx.store.audit(self.since)
    }
}

/// Part of the audit log (`audit` through a server).
#[derive(Debug, Clone)]
pub struct AuditPart {
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Which part.
    pub page: PageRequest,
}

impl Operation for AuditPart {
    type Answer = Part<AuditEntry>;

    fn run(self, cx: &mut Cx<'_>) -> Result<Part<AuditEntry>> {
        let page = cx
            .store
            .audit_page(self.since, self.page.after.as_deref(), PAGE_BUDGET)?;
        Ok(Part::of(page, self.page.at.unwrap_or(cx.now)))
    }
}

impl Paged for AuditPart {
    type Item = AuditEntry;

    fn page(&self) -> &PageRequest {
        &self.page
    }

    fn with_page(self, page: PageRequest) -> AuditPart {
        AuditPart { page, ..self }
    }
}

/// Where `crl --issuer X` puts the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlTarget {
    /// `<ca-dir>/crl/<issuer>.crl`.
    Published,
    /// Returned only (standard output).
    Returned,
    /// This file.
    File(PathBuf),
}

/// One CRL signed by `crl`, and the file it was written to.
#[derive(Debug, Clone)]
pub struct SignedCrl {
    /// The CRL.
    pub crl: crl::Crl,
    /// Its file (none when returned only).
    pub file: Option<PathBuf>,
}

/// Sign and publish CRLs (`crl`).
#[derive(Debug, Clone)]
pub struct SignCrls {
    /// One CA's CRL, else all three.
    pub issuer: Option<CaKind>,
    /// Which generation of `issuer` (`None`: the current one).
    pub generation: Option<u32>,
    /// Where a single CRL goes.
    pub target: CrlTarget,
    /// nextUpdate − thisUpdate.
    pub next_update: time::Duration,
}

impl Operation for SignCrls {
    type Answer = Vec<SignedCrl>;

    fn run(self, cx: &mut Cx<'_>) -> Result<Vec<SignedCrl>> {
        let (ca, store, now, next_update) = (cx.ca, cx.store, cx.now, self.next_update);
        if self.issuer.is_some() {
            // `publish_all` runs it itself.
            crl::before_publish(ca, store, now)?;
        }
        Ok(match (self.issuer, self.target) {
            (None, CrlTarget::Published) => crl::publish_all(ca, store, next_update, now)?
                .into_iter()
                .map(|(crl, p)| SignedCrl { crl, file: Some(p) })
                .collect(),
            (None, _) => {
                return Err(Error::Usage(
                    "a CRL to standard output or a file needs --issuer".into(),
                ))
            }
            (Some(kind), target) => {
                let id = match self.generation {
                    None => ca.current(kind),
                    Some(g) if (1..=ca.current(kind).generation).contains(&g) => {
                        crate::ca::CaId::new(kind, g)
                    }
                    Some(g) => {
                        return Err(Error::Usage(format!(
                            "there is no {} CA of generation {g} (the current one is {})",
                            kind.as_str(),
                            ca.current(kind)
                        )))
                    }
                };
                if let CrlTarget::Returned = target {
                    return Ok(vec![SignedCrl {
                        crl: crl::build_of(ca, store, id, next_update, now)?,
                        file: None,
                    }]);
                }
                let path = match target {
                    CrlTarget::File(p) => p,
                    _ => crl::published_path_of(ca, id),
                };
                let crl = crl::publish_of(ca, store, id, next_update, now, &path)?;
                vec![SignedCrl {
                    crl,
                    file: Some(path),
                }]
            }
        })
    }
}

/// What a batch reports: every entry, then how it ended.
#[derive(Debug)]
pub struct BatchReport {
    /// The entries, in manifest order.
    pub entries: Vec<EntryOutcome>,
    /// The counts, or the error that stopped the batch.
    pub outcome: Result<Summary>,
}

/// Issue a manifest (`batch`); on the engine, it gives way to the jobs that
/// come in meanwhile between its slices ([`crate::batch::run`]).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The manifest's text (checked by the client, parsed again here).
    pub manifest: String,
    /// How the manifest is named in messages.
    pub name: String,
    /// Where the files go (absolute) and how the batch runs.
    pub opts: BatchOptions,
}

impl Operation for Batch {
    type Answer = BatchReport;
    const HOLDS_ENGINE: bool = true;

    fn run(self, cx: &mut Cx<'_>) -> Result<BatchReport> {
        let parsed = Manifest::parse(&self.manifest, &self.name)?;
        let give_way: Option<&mut dyn FnMut()> = match &mut cx.give_way {
            Some(g) => Some(&mut **g),
            None => None,
        };
        let mut entries = Vec::new();
        let outcome = crate::batch::run(
            cx.ca,
            cx.store,
            &parsed,
            &self.name,
            &self.opts,
            cx.now,
            &mut |o| entries.push(o.clone()),
            give_way,
        );
        Ok(BatchReport { entries, outcome })
    }
}

/// The engine's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Issue groups committed (each one `issue_all`: one transaction, one flush).
    pub groups: u64,
    /// Issue jobs run in those groups.
    pub issue_jobs: u64,
    /// The largest group.
    pub largest_group: u64,
    /// Engine time spent in groups (signing, files, the transaction and its
    /// flush), microseconds: the service time the socket's and ACME's callers
    /// wait for, without their own process or request parsing.
    pub group_micros: u64,
    /// The longest group, microseconds.
    pub longest_group_micros: u64,
    /// Times a batch gave way to jobs that came in while it ran.
    pub batch_turns: u64,
}

/// The engine's counters (zero without a server).
#[derive(Debug, Clone, Copy, Default)]
pub struct Status;

impl Operation for Status {
    type Answer = ServiceStats;

    fn run(self, cx: &mut Cx<'_>) -> Result<ServiceStats> {
        Ok(cx.counters.map(Counters::snapshot).unwrap_or_default())
    }
}

/// A new external account binding key for ACME (`acme eab create`).
#[derive(Debug, Clone)]
pub struct EabCreate {
    /// The profile the bound account's certificates come from.
    pub profile: String,
}

impl Operation for EabCreate {
    type Answer = EabKey;

    fn run(self, cx: &mut Cx<'_>) -> Result<EabKey> {
        crate::eab_keys::create(cx.ca, cx.store, &self.profile, cx.now)
    }
}

/// The EAB keys (`acme eab list`; the caller drops the HMAC keys).
#[derive(Debug, Clone, Copy, Default)]
pub struct EabList;

impl Operation for EabList {
    type Answer = Vec<EabKey>;

    fn run(self, cx: &mut Cx<'_>) -> Result<Vec<EabKey>> {
        crate::eab_keys::list(cx.store)
    }
}

/// Revoke an EAB key (`acme eab revoke`).
#[derive(Debug, Clone)]
pub struct EabRevoke {
    /// Its key id.
    pub kid: String,
}

impl Operation for EabRevoke {
    type Answer = EabKey;

    fn run(self, cx: &mut Cx<'_>) -> Result<EabKey> {
        crate::eab_keys::revoke(cx.store, &self.kid, cx.now)
    }
}

/// Verify the audit log's hash chain (`audit --verify`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditVerify;

impl Operation for AuditVerify {
    type Answer = AuditReport;
    const HOLDS_ENGINE: bool = true;

    fn run(self, cx: &mut Cx<'_>) -> Result<AuditReport> {
        cx.store.verify_audit()
    }
}

/// Verify every record, index and the audit chain (`store check`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreCheck;

impl Operation for StoreCheck {
    type Answer = CheckReport;
    const HOLDS_ENGINE: bool = true;

    fn run(self, cx: &mut Cx<'_>) -> Result<CheckReport> {
        cx.store.check()
    }
}

/// Move expired certificates into the archive (`store tidy`).
#[derive(Debug, Clone, Copy)]
pub struct Tidy(pub crate::store::TidyOptions);

impl Operation for Tidy {
    type Answer = crate::store::TidyReport;
    const HOLDS_ENGINE: bool = true;

    fn run(self, cx: &mut Cx<'_>) -> Result<crate::store::TidyReport> {
        cx.store.tidy(&self.0, cx.now, &mut test_stop)
    }
}

/// Tests kill a tidy at a point of its move: `MTLSCA_TEST_TIDY_ABORT` set to
/// `archive-flushed` or `chunk-removed` aborts the process there, as a kill
/// would (no destructor runs, nothing more is flushed).
fn test_stop(stage: crate::store::TidyStage) {
    let name = match stage {
        crate::store::TidyStage::ArchiveFlushed => "archive-flushed",
        crate::store::TidyStage::ChunkRemoved => "chunk-removed",
    };
    if std::env::var_os("MTLSCA_TEST_TIDY_ABORT").is_some_and(|v| v == name) {
        std::process::abort();
    }
}

/// Back the CA up into a new directory (`backup`).
#[derive(Debug, Clone)]
pub struct Backup {
    /// The new directory (absolute through a server).
    pub dir: PathBuf,
}

impl Operation for Backup {
    type Answer = BackupSummary;
    const HOLDS_ENGINE: bool = true;

    fn run(self, cx: &mut Cx<'_>) -> Result<BackupSummary> {
        // The store stays open (the engine holds it) until the copy is complete.
        crate::backup::backup(cx.ca, cx.store, &self.dir, cx.now)
    }
}
