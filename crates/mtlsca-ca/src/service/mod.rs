//! The CA held open by one process: the engine thread, the operations it runs,
//! and the control socket through which the command line reaches it.
//!
//! - [`Service`] owns the CA, its store (and the store's lock) and one
//!   [`Issuer`] on a thread of its own (the issuer is not `Send`). Callers — the
//!   ACME server's tasks, the control socket's connections — send it an [`Op`]
//!   and wait for the [`Answer`].
//! - **Group commit**: the engine takes every job waiting in its queue at once
//!   and runs all the issue jobs among them through ONE
//!   [`Issuer::issue_all`]: one store transaction and one flush for all of
//!   them. A caller is answered only after that flush: no certificate is handed
//!   out before its record is durable.
//! - [`Backend`] is how a command reaches the CA: the local store (no server
//!   running), or the server's control socket ([`client`]). Both run the same
//!   operations ([`Op`]): one code path per command.

pub mod client;
pub mod wire;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::backup::BackupSummary;
use crate::batch::{BatchOptions, EntryOutcome, Manifest, Summary};
use crate::ca::{Ca, CaKind, PassphraseSource};
use crate::crl::{self, Crl, Reason};
use crate::error::{Error, Result};
use crate::issue::{IssuanceRequest, Issued, Issuer, KeySource, Output, RunOptions};
use crate::policy::RequestedContent;
use crate::rules::Origin;
use crate::store::{AuditEntry, AuditReport, CheckReport, ListFilter, Record, Store};

pub use client::{socket_path, Client};
pub use wire::WireError;

/// Most issue jobs committed together (one transaction, one flush).
pub const MAX_GROUP: usize = crate::issue::DEFAULT_CHUNK;

/// One operation on the CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Op {
    /// Check a request as far as possible without signing (ACME newOrder).
    Check {
        /// The profile.
        profile: String,
        /// What is asked for.
        content: Box<RequestedContent>,
    },
    /// Issue one certificate (group-committed with the others waiting).
    Issue(Box<IssuanceRequest>),
    /// The record a serial, fingerprint or request id names (none if unknown).
    Lookup {
        /// Serial, SHA-256 or request id.
        query: String,
    },
    /// The records matching a filter (`list`).
    List {
        /// The filter.
        filter: ListFilter,
        /// Read in parts ([`Answer::RecordPage`]); `None`: all at once.
        #[serde(default)]
        page: Option<PageRequest>,
    },
    /// One certificate, its PEM, its audit entries and its renewal (`show`).
    Show {
        /// Serial, prefix, SHA-256, request id or certificate file (absolute).
        query: String,
    },
    /// Revoke the certificate a query names (`revoke`).
    Revoke {
        /// Serial, prefix, SHA-256, request id or certificate file (absolute).
        query: String,
        /// The RFC 5280 reason.
        reason: Reason,
    },
    /// Revoke exactly the certificate with this fingerprint (ACME revokeCert).
    RevokeExact {
        /// SHA-256 of the certificate, lowercase hex.
        sha256: String,
        /// The RFC 5280 reason.
        reason: Reason,
    },
    /// The audit log (`audit`).
    Audit {
        /// Only entries at or after this time.
        #[serde(with = "time::serde::rfc3339::option")]
        since: Option<OffsetDateTime>,
        /// Read in parts ([`Answer::AuditPage`]); `None`: all at once.
        #[serde(default)]
        page: Option<PageRequest>,
    },
    /// Sign and publish CRLs (`crl`).
    Crl {
        /// One CA's CRL, else all three.
        issuer: Option<CaKind>,
        /// Where a single CRL goes.
        target: CrlTarget,
        /// nextUpdate − thisUpdate.
        next_update: time::Duration,
    },
    /// Issue a manifest (`batch`).
    Batch {
        /// The manifest's text (checked by the client, parsed again here).
        manifest: String,
        /// How the manifest is named in messages.
        name: String,
        /// Where the files go (absolute) and how the batch runs.
        opts: BatchOptions,
    },
    /// The engine's counters.
    Status,
    /// A new external account binding key for ACME (`acme eab create`).
    EabCreate {
        /// The profile the bound account's certificates come from.
        profile: String,
    },
    /// The EAB keys (`acme eab list`; the caller drops the HMAC keys).
    EabList,
    /// Revoke an EAB key (`acme eab revoke`).
    EabRevoke {
        /// Its key id.
        kid: String,
    },
    /// Verify the audit log's hash chain (`audit --verify`).
    AuditVerify,
    /// Verify every record, index and the audit chain (`store check`).
    StoreCheck,
    /// Back the CA up into a new directory (`backup`).
    Backup {
        /// The new directory (absolute).
        dir: PathBuf,
    },
}

/// Where `crl --issuer X` puts the CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedCrl {
    /// The CRL.
    pub crl: Crl,
    /// Its file (none when returned only).
    pub file: Option<PathBuf>,
}

/// What `show` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shown {
    /// The record.
    pub record: Record,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its audit entries.
    pub audit: Vec<AuditEntry>,
    /// The serial of the certificate that renewed it, if any.
    pub renewed_by: Option<String>,
}

/// Records or audit entries read through a server at most this many at a time
/// (one engine job each, a few milliseconds at a million records): other
/// requests are answered between the parts of a long `list` or `audit`.
pub const PAGE_BUDGET: usize = 2_000;

/// Where a read in parts resumes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PageRequest {
    /// The previous part's cursor (`None`: the first part).
    pub after: Option<Vec<u8>>,
    /// The time the first part was read at, so that every part filters alike.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    /// Every part on the one connection, one frame each, instead of one part
    /// per request ([`Client::run_parts`]).
    #[serde(default)]
    pub stream: bool,
}

/// One part of a long read, with where the next one starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part<T> {
    /// What matched in this part.
    pub items: Vec<T>,
    /// The next part's cursor; `None`: this was the last.
    pub next: Option<Vec<u8>>,
    /// The time the read filters at (the first part's).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl<T> Part<T> {
    fn of(page: crate::store::Page<T>, at: OffsetDateTime) -> Box<Part<T>> {
        Box::new(Part {
            items: page.items,
            next: page.next,
            at,
        })
    }
}

impl Op {
    /// Whether this job holds the engine for long: a batch, a store check, an
    /// audit verification, a backup, a whole `list` or `audit` at once. While
    /// a batch gives way to other jobs, these wait until it is done.
    pub(crate) fn holds_engine(&self) -> bool {
        matches!(
            self,
            Op::Batch { .. }
                | Op::StoreCheck
                | Op::AuditVerify
                | Op::Backup { .. }
                | Op::List { page: None, .. }
                | Op::Audit { page: None, .. }
        )
    }

    /// Whether the server answers this with a stream of parts.
    pub fn streams(&self) -> bool {
        matches!(
            self,
            Op::List { page: Some(p), .. } | Op::Audit { page: Some(p), .. } if p.stream
        )
    }

    /// The request for the part after `answer`, when this is a read in parts
    /// and `answer` says another part follows.
    pub fn continued(&self, answer: &Answer) -> Option<Op> {
        let page = |next: &Option<Vec<u8>>, at: OffsetDateTime, stream: bool| {
            next.clone().map(|after| PageRequest {
                after: Some(after),
                at: Some(at),
                stream,
            })
        };
        match (self, answer) {
            (
                Op::List {
                    filter,
                    page: Some(p),
                },
                Answer::RecordPage(part),
            ) => Some(Op::List {
                filter: filter.clone(),
                page: Some(page(&part.next, part.at, p.stream)?),
            }),
            (
                Op::Audit {
                    since,
                    page: Some(p),
                },
                Answer::AuditPage(part),
            ) => Some(Op::Audit {
                since: *since,
                page: Some(page(&part.next, part.at, p.stream)?),
            }),
            _ => None,
        }
    }
}

/// A long read's answer: all of it, or one part.
enum Read<T> {
    Whole(Vec<T>),
    Part(Box<Part<T>>),
}

/// What a batch run through the server reports: every entry, then how it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchReport {
    /// The entries, in manifest order.
    pub entries: Vec<EntryOutcome>,
    /// The counts, or the error that stopped the batch.
    pub outcome: std::result::Result<Summary, WireError>,
}

/// The engine's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// Issue groups committed (each one `issue_all`: one transaction, one flush).
    pub groups: u64,
    /// Issue jobs run in those groups.
    pub issue_jobs: u64,
    /// The largest group.
    pub largest_group: u64,
    /// Engine time spent in groups (signing, files, the transaction and its
    /// flush), microseconds: the service time the socket's and ACME's callers
    /// wait for, without their own process or request parsing. (Defaults keep
    /// an older server's answer readable.)
    #[serde(default)]
    pub group_micros: u64,
    /// The longest group, microseconds.
    #[serde(default)]
    pub longest_group_micros: u64,
    /// Times a batch gave way to jobs that came in while it ran.
    #[serde(default)]
    pub batch_turns: u64,
}

/// The answer to an [`Op`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Answer {
    /// Done, nothing to report (`Check`).
    Done,
    /// The certificate issued (or found issued under the request id).
    Issued(Box<Issued>),
    /// A record, if one matched (`Lookup`).
    Found(Option<Box<Record>>),
    /// Records (`List`).
    Records(Vec<Record>),
    /// Part of the records (`List` with a page).
    RecordPage(Box<Part<Record>>),
    /// One certificate (`Show`).
    Shown(Box<Shown>),
    /// The revoked certificate's record (`Revoke`, `RevokeExact`).
    Revoked(Box<Record>),
    /// Audit entries (`Audit`).
    Audit(Vec<AuditEntry>),
    /// Part of the audit entries (`Audit` with a page).
    AuditPage(Box<Part<AuditEntry>>),
    /// CRLs signed (`Crl`).
    Crls(Vec<SignedCrl>),
    /// A batch's report (`Batch`).
    Batch(Box<BatchReport>),
    /// The engine's counters (`Status`).
    Status(ServiceStats),
    /// EAB keys (`EabCreate`, `EabRevoke`: the one key; `EabList`: all).
    EabKeys(Vec<crate::store::acme::EabKey>),
    /// The audit chain's verification (`AuditVerify`).
    AuditVerified(AuditReport),
    /// The store's check (`StoreCheck`).
    StoreChecked(Box<CheckReport>),
    /// The backup written (`Backup`).
    BackedUp(Box<BackupSummary>),
}

fn unexpected(what: &str) -> Error {
    Error::State(format!(
        "the CA service answered {what} with something else"
    ))
}

/// A manifest issued, its entries' outcomes collected for the answer;
/// `give_way` as in [`crate::batch::run`].
fn run_batch(
    ca: &Ca,
    store: &Store,
    manifest: &str,
    name: &str,
    opts: &BatchOptions,
    now: OffsetDateTime,
    give_way: Option<&mut dyn FnMut()>,
) -> Result<Answer> {
    let parsed = Manifest::parse(manifest, name)?;
    let mut entries = Vec::new();
    let outcome = crate::batch::run(
        ca,
        store,
        &parsed,
        name,
        opts,
        now,
        &mut |o| entries.push(o.clone()),
        give_way,
    );
    Ok(Answer::Batch(Box::new(BatchReport {
        entries,
        outcome: outcome.map_err(|e| WireError::from(&e)),
    })))
}

/// Run one operation other than issuing on an open CA: the one code path of
/// `list`, `show`, `revoke`, `audit` (and `--verify`), `crl`, `store check`
/// and `backup`, locally or in the service.
fn run_op(ca: &Ca, store: &Store, op: Op, now: OffsetDateTime) -> Result<Answer> {
    match op {
        Op::Lookup { query } => Ok(Answer::Found(store.find(&query)?.map(Box::new))),
        Op::List { filter, page: None } => Ok(Answer::Records(store.list(&filter, now)?)),
        Op::List {
            filter,
            page: Some(p),
        } => {
            let at = p.at.unwrap_or(now);
            let page = store.list_page(&filter, at, p.after.as_deref(), PAGE_BUDGET)?;
            Ok(Answer::RecordPage(Part::of(page, at)))
        }
        Op::Show { query } => {
            let record = crate::lookup::resolve(store, &query)?;
            let der = store.der(&record)?.ok_or_else(|| {
                Error::Store(format!("record {} has no certificate", record.serial))
            })?;
            let audit = store.audit_of(&record.serial)?;
            let renewed_by = store
                .by_request_id(&crate::issue::renewal_request_id(&record.serial))?
                .map(|r| r.serial);
            Ok(Answer::Shown(Box::new(Shown {
                record,
                der,
                audit,
                renewed_by,
            })))
        }
        Op::Revoke { query, reason } => {
            let named = crate::lookup::resolve(store, &query)?;
            let rec = crl::revoke(store, &named.serial, reason, now)?;
            Ok(Answer::Revoked(Box::new(rec)))
        }
        Op::RevokeExact { sha256, reason } => match store.find(&sha256)? {
            Some(rec) if rec.sha256 == sha256 => {
                let rec = crl::revoke(store, &rec.serial, reason, now)?;
                Ok(Answer::Revoked(Box::new(rec)))
            }
            _ => Err(Error::refused("this CA did not issue the certificate")),
        },
        Op::Audit { since, page: None } => Ok(Answer::Audit(store.audit(since)?)),
        Op::Audit {
            since,
            page: Some(p),
        } => {
            let page = store.audit_page(since, p.after.as_deref(), PAGE_BUDGET)?;
            Ok(Answer::AuditPage(Part::of(page, p.at.unwrap_or(now))))
        }
        Op::Crl {
            issuer,
            target,
            next_update,
        } => {
            let signed = match (issuer, target) {
                (None, CrlTarget::Published) => crl::publish_all(ca, store, next_update, now)?
                    .into_iter()
                    .map(|(crl, p)| SignedCrl { crl, file: Some(p) })
                    .collect(),
                (None, _) => {
                    return Err(Error::Usage(
                        "a CRL to standard output or a file needs --issuer".into(),
                    ))
                }
                (Some(kind), CrlTarget::Returned) => vec![SignedCrl {
                    crl: crl::build(ca, store, kind, next_update, now)?,
                    file: None,
                }],
                (Some(kind), target) => {
                    let path = match target {
                        CrlTarget::File(p) => p,
                        _ => crl::published_path(ca, kind),
                    };
                    let crl = crl::publish(ca, store, kind, next_update, now, &path)?;
                    vec![SignedCrl {
                        crl,
                        file: Some(path),
                    }]
                }
            };
            Ok(Answer::Crls(signed))
        }
        Op::Batch {
            manifest,
            name,
            opts,
        } => run_batch(ca, store, &manifest, &name, &opts, now, None),
        Op::Status => Ok(Answer::Status(ServiceStats::default())),
        Op::EabCreate { profile } => Ok(Answer::EabKeys(vec![crate::eab_keys::create(
            ca, store, &profile, now,
        )?])),
        Op::EabList => Ok(Answer::EabKeys(crate::eab_keys::list(store)?)),
        Op::EabRevoke { kid } => Ok(Answer::EabKeys(vec![crate::eab_keys::revoke(
            store, &kid, now,
        )?])),
        Op::AuditVerify => Ok(Answer::AuditVerified(store.verify_audit()?)),
        Op::StoreCheck => Ok(Answer::StoreChecked(Box::new(store.check()?))),
        // The store stays open (the engine holds it) until the copy is complete.
        Op::Backup { dir } => Ok(Answer::BackedUp(Box::new(crate::backup::backup(
            ca, store, &dir, now,
        )?))),
        Op::Check { .. } | Op::Issue(_) => Err(Error::State(
            "issuing goes through the issuer, not run_op".into(),
        )),
    }
}

fn check(issuer: &Issuer<'_>, profile: String, content: RequestedContent) -> Result<Answer> {
    let req = IssuanceRequest {
        profile,
        content,
        key: KeySource::Generate(None),
        request_id: None,
        output: Output::None,
        origin: Origin::Manifest,
        replaces: None,
    };
    let now = OffsetDateTime::now_utc();
    issuer.check_request(&req, now).map(|()| Answer::Done)
}

// ---------------------------------------------------------------------------
// The service: one engine thread
// ---------------------------------------------------------------------------

/// How the service opens the CA.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The CA directory.
    pub ca_dir: PathBuf,
    /// How long to wait for the store's lock at start.
    pub lock_timeout: Duration,
    /// Where the passphrase of encrypted CA keys comes from.
    pub passphrase: PassphraseSource,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Answer>>,
}

#[derive(Default)]
struct Counters {
    groups: AtomicU64,
    issue_jobs: AtomicU64,
    largest_group: AtomicU64,
    group_micros: AtomicU64,
    longest_group_micros: AtomicU64,
    batch_turns: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServiceStats {
        ServiceStats {
            groups: self.groups.load(Ordering::Relaxed),
            issue_jobs: self.issue_jobs.load(Ordering::Relaxed),
            largest_group: self.largest_group.load(Ordering::Relaxed),
            group_micros: self.group_micros.load(Ordering::Relaxed),
            longest_group_micros: self.longest_group_micros.load(Ordering::Relaxed),
            batch_turns: self.batch_turns.load(Ordering::Relaxed),
        }
    }
}

/// A handle on the engine thread. When the last handle is dropped, the engine
/// finishes the jobs queued, flushes and closes the store, and its thread ends
/// (wait for it with [`Engine::join`]).
#[derive(Clone)]
pub struct Service {
    jobs: std::sync::mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

/// The engine thread, to wait for once every [`Service`] handle is dropped.
pub struct Engine(std::thread::JoinHandle<()>);

impl Engine {
    /// Wait until the engine has finished its jobs and closed the store.
    pub fn join(self) {
        let _ = self.0.join();
    }
}

/// The error of a caller whose engine stopped before answering (the server is stopping).
pub fn engine_gone() -> Error {
    Error::State("the issuing engine stopped".into())
}

impl Service {
    /// Open the CA and its store on a thread of their own; fails as the CLI
    /// would (no CA, store locked past `lock_timeout`).
    pub fn start(opts: &ServiceOptions) -> Result<(Service, Engine)> {
        Service::start_with(opts, |_, _| Ok(())).map(|(s, e, ())| (s, e))
    }

    /// [`Service::start`], also returning what `with` makes of the opened CA and
    /// store on the engine thread (a front end's handles on store trees that are
    /// safe to share across threads).
    pub fn start_with<T: Send + 'static>(
        opts: &ServiceOptions,
        with: impl FnOnce(&Ca, &Store) -> Result<T> + Send + 'static,
    ) -> Result<(Service, Engine, T)> {
        // A server already holds this CA: say so at once rather than after the
        // store's lock timeout.
        if let Some(c) = Client::connect(&opts.ca_dir)? {
            return Err(Error::State(format!(
                "`mtlsca serve` already runs on this CA (it answers on {}); stop it (SIGTERM) before starting another",
                c.path().display()
            )));
        }
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<T>>();
        let counters = Arc::new(Counters::default());
        let opts = opts.clone();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("mtlsca-engine".into())
            .spawn(move || {
                let opened = Ca::open(&opts.ca_dir)
                    .map(|ca| ca.with_passphrase_source(opts.passphrase.clone()))
                    .and_then(|ca| Ok((ca, Store::open_held(&opts.ca_dir, opts.lock_timeout)?)));
                let (ca, store) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let made = Issuer::new(&ca, &store).and_then(|i| Ok((i, with(&ca, &store)?)));
                let (issuer, extra) = match made {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(extra));
                engine_loop(&ca, &store, &issuer, &rx, &c);
                let _ = store.flush();
            })
            .map_err(|e| Error::State(format!("cannot start the engine thread: {e}")))?;
        let extra = ready_rx.recv().map_err(|_| engine_gone())??;
        Ok((Service { jobs: tx, counters }, Engine(thread), extra))
    }

    /// Queue an operation for the engine; the receiver gets its answer.
    pub fn submit(&self, op: Op) -> Result<oneshot::Receiver<Result<Answer>>> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .map_err(|_| engine_gone())?;
        Ok(rx)
    }

    /// Run an operation (from async code).
    pub async fn run(&self, op: Op) -> Result<Answer> {
        self.submit(op)?.await.map_err(|_| engine_gone())?
    }

    /// Run an operation, blocking this thread until it is answered.
    pub fn run_blocking(&self, op: Op) -> Result<Answer> {
        self.submit(op)?
            .blocking_recv()
            .map_err(|_| engine_gone())?
    }

    /// Issue one certificate (group-committed with the other jobs waiting).
    pub async fn issue(&self, req: IssuanceRequest) -> Result<Issued> {
        match self.run(Op::Issue(Box::new(req))).await? {
            Answer::Issued(i) => Ok(*i),
            _ => Err(unexpected("an issue")),
        }
    }

    /// The engine's counters.
    pub fn stats(&self) -> ServiceStats {
        self.counters.snapshot()
    }
}

/// The engine: take every job waiting, run the others in order, then the issue
/// jobs together (one `issue_all`: one transaction, one flush). A job that holds
/// the engine for long ([`Op::holds_engine`]) ends what is taken at once, so no
/// job taken with it waits behind it.
fn engine_loop(
    ca: &Ca,
    store: &Store,
    issuer: &Issuer<'_>,
    rx: &std::sync::mpsc::Receiver<Job>,
    counters: &Counters,
) {
    let engine = EngineRefs {
        ca,
        store,
        issuer,
        rx,
        counters,
    };
    // Jobs that hold the engine, come in while a batch gave way: they run after
    // it, before anything newer.
    let mut held: VecDeque<Job> = VecDeque::new();
    loop {
        let first = match held.pop_front() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            },
        };
        let mut waiting = vec![first];
        while waiting.len() < MAX_GROUP && !waiting.last().is_some_and(|j| j.op.holds_engine()) {
            match held.pop_front().map_or_else(|| rx.try_recv().ok(), Some) {
                Some(j) => waiting.push(j),
                None => break,
            }
        }
        run_jobs(&engine, waiting, &mut held);
    }
}

/// What the engine thread works with.
struct EngineRefs<'a, 'c> {
    ca: &'a Ca,
    store: &'a Store,
    issuer: &'a Issuer<'c>,
    rx: &'a std::sync::mpsc::Receiver<Job>,
    counters: &'a Counters,
}

/// Run jobs taken together: the others in order, the issues as one group (a
/// batch first lets the issues taken before it go).
fn run_jobs(e: &EngineRefs<'_, '_>, waiting: Vec<Job>, held: &mut VecDeque<Job>) {
    let mut group: Vec<(IssuanceRequest, oneshot::Sender<Result<Answer>>)> = Vec::new();
    for Job { op, reply } in waiting {
        // Servers read the clock per request.
        let now = OffsetDateTime::now_utc();
        let answer = match op {
            Op::Issue(req) => {
                group.push((*req, reply));
                continue;
            }
            Op::Check { profile, content } => check(e.issuer, profile, *content),
            Op::Status => Ok(Answer::Status(e.counters.snapshot())),
            Op::Batch {
                manifest,
                name,
                opts,
            } => {
                if !group.is_empty() {
                    issue_group(e.issuer, std::mem::take(&mut group), e.counters);
                }
                let mut give_way = || give_way(e, held);
                run_batch(
                    e.ca,
                    e.store,
                    &manifest,
                    &name,
                    &opts,
                    now,
                    Some(&mut give_way),
                )
            }
            op => run_op(e.ca, e.store, op, now),
        };
        let _ = reply.send(answer);
    }
    if !group.is_empty() {
        issue_group(e.issuer, group, e.counters);
    }
}

/// A batch's turn given to the jobs that came in meanwhile: issues (one group
/// commit), lookups, revocations, parts of long reads. A job that would itself
/// hold the engine waits in `held` until the batch is done.
fn give_way(e: &EngineRefs<'_, '_>, held: &mut VecDeque<Job>) {
    let mut waiting = Vec::new();
    while waiting.len() < MAX_GROUP {
        match e.rx.try_recv() {
            Ok(j) if j.op.holds_engine() => held.push_back(j),
            Ok(j) => waiting.push(j),
            Err(_) => break,
        }
    }
    if !waiting.is_empty() {
        e.counters.batch_turns.fetch_add(1, Ordering::Relaxed);
        run_jobs(e, waiting, held);
    }
}

fn issue_group(
    issuer: &Issuer<'_>,
    group: Vec<(IssuanceRequest, oneshot::Sender<Result<Answer>>)>,
    counters: &Counters,
) {
    let started = std::time::Instant::now();
    let n = group.len();
    let (reqs, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    let mut replies: Vec<Option<oneshot::Sender<Result<Answer>>>> =
        replies.into_iter().map(Some).collect();
    let opts = if n == 1 {
        RunOptions::single()
    } else {
        RunOptions {
            chunk: n,
            ..RunOptions::batch()
        }
    };
    let now = OffsetDateTime::now_utc();
    // `issue_all` reports each request after its chunk (here: the whole group)
    // is recorded and flushed.
    let result = issuer.issue_all(&reqs, &opts, now, &mut |i, r| {
        if let Some(reply) = replies.get_mut(i).and_then(Option::take) {
            let _ = reply.send(r.map(|x| Answer::Issued(Box::new(x))));
        }
    });
    counters.groups.fetch_add(1, Ordering::Relaxed);
    counters.issue_jobs.fetch_add(n as u64, Ordering::Relaxed);
    counters
        .largest_group
        .fetch_max(n as u64, Ordering::Relaxed);
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    counters.group_micros.fetch_add(micros, Ordering::Relaxed);
    counters
        .longest_group_micros
        .fetch_max(micros, Ordering::Relaxed);
    if let Err(e) = result {
        // A CA or store failure stopped the run: every caller not yet answered
        // gets it (nothing of theirs was handed out).
        let wire = WireError::from(&e);
        for reply in replies.into_iter().flatten() {
            let _ = reply.send(Err(wire.clone().into_error()));
        }
    }
}

// ---------------------------------------------------------------------------
// Backend: the local store, or the server's socket
// ---------------------------------------------------------------------------

/// The CA opened in this process.
pub struct Local {
    ca: Ca,
    store: Store,
}

/// How a command reaches the CA: the store opened here, or the running server.
#[non_exhaustive]
pub enum Backend {
    /// No server answers on the control socket: the store is opened here.
    Local(Box<Local>),
    /// A server holds the CA: operations go through its control socket.
    Remote(Client),
}

impl Backend {
    /// The server's socket when one answers in `ca_dir`, else the CA and store
    /// opened here (waiting up to `lock_timeout` for the lock).
    pub fn open(
        ca_dir: &Path,
        lock_timeout: Duration,
        passphrase: PassphraseSource,
    ) -> Result<Backend> {
        if let Some(client) = Client::connect(ca_dir)? {
            return Ok(Backend::Remote(client));
        }
        let ca = Ca::open(ca_dir)?.with_passphrase_source(passphrase);
        // A server that is starting holds the lock before its socket exists (it
        // opens the store first): look for the socket while waiting for the lock.
        let mut server = None;
        let store = Store::open_unless(ca_dir, lock_timeout, &mut || {
            server = Client::connect(ca_dir).ok().flatten();
            server.is_some()
        })?;
        match (store, server) {
            (Some(store), _) => Ok(Backend::Local(Box::new(Local { ca, store }))),
            (None, Some(client)) => Ok(Backend::Remote(client)),
            (None, None) => Err(Error::State(
                "the store's open gave up without a server to go to".into(),
            )),
        }
    }

    /// Whether operations go through a running server.
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    /// Run an operation: locally at `now`; through the server at the server's
    /// time (a server reads the clock per request).
    pub fn run(&self, op: Op, now: OffsetDateTime) -> Result<Answer> {
        match self {
            Backend::Remote(c) => c.run(op),
            Backend::Local(l) => match op {
                Op::Issue(req) => {
                    let issuer = Issuer::new(&l.ca, &l.store)?;
                    issuer.issue(&req, now).map(|i| Answer::Issued(Box::new(i)))
                }
                Op::Check { profile, content } => {
                    check(&Issuer::new(&l.ca, &l.store)?, profile, *content)
                }
                op => run_op(&l.ca, &l.store, op, now),
            },
        }
    }

    /// Issue one certificate.
    pub fn issue(&self, req: IssuanceRequest, now: OffsetDateTime) -> Result<Issued> {
        match self.run(Op::Issue(Box::new(req)), now)? {
            Answer::Issued(i) => Ok(*i),
            _ => Err(unexpected("an issue")),
        }
    }

    /// A long read: at once locally; through a server in parts of
    /// [`PAGE_BUDGET`], one engine job each, so that issuing (ACME's too) goes
    /// on between them: at a million records a `list` in one job held every
    /// other request for seconds. The parts come as a stream on one connection
    /// (the server asks for the next part while it writes this one). `take`
    /// picks the answers.
    fn read_in_parts<T>(
        &self,
        now: OffsetDateTime,
        what: &str,
        op: impl Fn(Option<PageRequest>) -> Op,
        take: impl Fn(Answer) -> Option<Read<T>>,
    ) -> Result<Vec<T>> {
        let client = match self {
            Backend::Remote(c) => c,
            Backend::Local(_) => {
                return match take(self.run(op(None), now)?) {
                    Some(Read::Whole(items)) => Ok(items),
                    _ => Err(unexpected(what)),
                }
            }
        };
        let first = op(Some(PageRequest {
            stream: true,
            ..PageRequest::default()
        }));
        let (mut out, mut odd) = (Vec::new(), false);
        client.run_parts(first, &mut |answer| match take(answer) {
            // A server from before reads in parts: all at once.
            Some(Read::Whole(items)) => {
                out.extend(items);
                false
            }
            Some(Read::Part(part)) => {
                out.extend(part.items);
                part.next.is_some()
            }
            None => {
                odd = true;
                false
            }
        })?;
        if odd {
            return Err(unexpected(what));
        }
        Ok(out)
    }

    /// The records matching `filter`.
    pub fn list(&self, filter: ListFilter, now: OffsetDateTime) -> Result<Vec<Record>> {
        self.read_in_parts(
            now,
            "a list",
            |page| Op::List {
                filter: filter.clone(),
                page,
            },
            |a| match a {
                Answer::Records(r) => Some(Read::Whole(r)),
                Answer::RecordPage(p) => Some(Read::Part(p)),
                _ => None,
            },
        )
    }

    /// One certificate, as `show` shows it.
    pub fn show(&self, query: &str, now: OffsetDateTime) -> Result<Shown> {
        let query = query.to_string();
        match self.run(Op::Show { query }, now)? {
            Answer::Shown(s) => Ok(*s),
            _ => Err(unexpected("a show")),
        }
    }

    /// Revoke the certificate `query` names.
    pub fn revoke(&self, query: &str, reason: Reason, now: OffsetDateTime) -> Result<Record> {
        let query = query.to_string();
        match self.run(Op::Revoke { query, reason }, now)? {
            Answer::Revoked(r) => Ok(*r),
            _ => Err(unexpected("a revocation")),
        }
    }

    /// The audit log from `since`.
    pub fn audit(
        &self,
        since: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Vec<AuditEntry>> {
        self.read_in_parts(
            now,
            "an audit",
            |page| Op::Audit { since, page },
            |a| match a {
                Answer::Audit(e) => Some(Read::Whole(e)),
                Answer::AuditPage(p) => Some(Read::Part(p)),
                _ => None,
            },
        )
    }

    /// Verify the audit log's hash chain.
    pub fn verify_audit(&self, now: OffsetDateTime) -> Result<AuditReport> {
        match self.run(Op::AuditVerify, now)? {
            Answer::AuditVerified(r) => Ok(r),
            _ => Err(unexpected("an audit verification")),
        }
    }

    /// Check the store: every record, index and the audit chain.
    pub fn check_store(&self, now: OffsetDateTime) -> Result<CheckReport> {
        match self.run(Op::StoreCheck, now)? {
            Answer::StoreChecked(r) => Ok(*r),
            _ => Err(unexpected("a store check")),
        }
    }

    /// Back the CA up into the new directory `dir` (made absolute, and shown
    /// again as given, when it goes through the server).
    pub fn backup(&self, dir: &Path, now: OffsetDateTime) -> Result<BackupSummary> {
        let op = Op::Backup {
            dir: dir.to_path_buf(),
        };
        match self.run(op, now)? {
            Answer::BackedUp(b) => Ok(*b),
            _ => Err(unexpected("a backup")),
        }
    }

    /// Sign CRLs.
    pub fn crl(
        &self,
        issuer: Option<CaKind>,
        target: CrlTarget,
        next_update: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<SignedCrl>> {
        let op = Op::Crl {
            issuer,
            target,
            next_update,
        };
        match self.run(op, now)? {
            Answer::Crls(c) => Ok(c),
            _ => Err(unexpected("a CRL")),
        }
    }

    /// Issue a manifest, calling `report` for each entry in manifest order
    /// (through the server: once the whole batch is done).
    pub fn batch(
        &self,
        text: &str,
        manifest: &Manifest,
        name: &str,
        opts: &BatchOptions,
        now: OffsetDateTime,
        report: &mut dyn FnMut(&EntryOutcome),
    ) -> Result<Summary> {
        match self {
            Backend::Local(l) => {
                crate::batch::run(&l.ca, &l.store, manifest, name, opts, now, report, None)
            }
            Backend::Remote(c) => {
                let op = Op::Batch {
                    manifest: text.to_string(),
                    name: name.to_string(),
                    opts: opts.clone(),
                };
                match c.run(op)? {
                    Answer::Batch(b) => {
                        for e in &b.entries {
                            report(e);
                        }
                        b.outcome.map_err(WireError::into_error)
                    }
                    _ => Err(unexpected("a batch")),
                }
            }
        }
    }
}

/// The CA's records as a revocation source (`verify` with the CA as anchor):
/// a serial it issued and revoked is revoked, even before a CRL is published.
/// Through the server when one runs; a lookup that fails counts as unknown, as
/// with [`crate::store::revocation::StoreRevocation`].
impl crate::verify::RevocationSource for Backend {
    fn revoked(&self, cert: &crate::verify::CertRef<'_>) -> Option<crate::verify::RevocationInfo> {
        let rec = crate::store::revocation::serial_spellings(cert)
            .iter()
            .find_map(|s| {
                let query = crate::hex::encode(s);
                // Server time or local time does not matter to a lookup.
                match self.run(
                    Op::Lookup {
                        query: query.clone(),
                    },
                    OffsetDateTime::UNIX_EPOCH,
                ) {
                    // A lookup also matches fingerprints and request ids: only
                    // the record of this serial counts.
                    Ok(Answer::Found(Some(r))) if r.serial.eq_ignore_ascii_case(&query) => Some(r),
                    _ => None,
                }
            })?;
        crate::store::revocation::revocation_of(&rec, cert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue jobs waiting together are committed as one group: one
    /// `issue_all`, every caller answered, every certificate recorded.
    #[test]
    fn waiting_issue_jobs_are_one_group() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let issuer = Issuer::new(&ca, &store).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut answers = Vec::new();
        for i in 0..20 {
            let (reply, r) = oneshot::channel();
            let req = IssuanceRequest {
                profile: "device".into(),
                content: RequestedContent {
                    dns: vec![format!("h{i}.corp.internal")],
                    ..Default::default()
                },
                key: KeySource::Generate(None),
                request_id: Some(format!("r{i}")),
                output: Output::Prefix(dir.path().join(format!("h{i}"))),
                origin: Origin::Arguments,
                replaces: None,
            };
            tx.send(Job {
                op: Op::Issue(Box::new(req)),
                reply,
            })
            .unwrap();
            answers.push(r);
        }
        drop(tx);
        let counters = Counters::default();
        engine_loop(&ca, &store, &issuer, &rx, &counters);
        let stats = counters.snapshot();
        assert_eq!(stats.groups, 1, "{stats:?}");
        assert_eq!(stats.issue_jobs, 20);
        for (i, mut r) in answers.into_iter().enumerate() {
            match r.try_recv().unwrap() {
                Ok(Answer::Issued(x)) => {
                    assert_eq!(x.record.request_id.as_deref(), Some(&*format!("r{i}")));
                    assert!(store.find(&x.record.serial).unwrap().is_some());
                    assert!(dir.path().join(format!("h{i}.pem")).is_file());
                }
                other => panic!("request {i}: {other:?}"),
            }
        }
        assert_eq!(store.count(), 20);
    }
}
