//! The CA held open by one process: the engine thread, the operations it runs,
//! and the control socket through which the command line reaches it.
//!
//! - [`ops`]: every operation is a type tied to the type of its answer
//!   ([`Operation`]); a caller gets what it asked for, checked by the compiler.
//! - [`Service`] owns the CA, its store (and the store's lock) and one
//!   [`Issuer`] on a thread of its own (the issuer is not `Send`). Callers — the
//!   ACME server's tasks, the control socket's connections — queue an operation
//!   ([`Service::call`]) and wait for its answer.
//! - **Group commit**: the engine takes every job waiting in its queue at once
//!   and runs all the issue jobs among them through ONE
//!   [`Issuer::issue_all`]: one store transaction and one flush for all of
//!   them. A caller is answered only after that flush: no certificate is handed
//!   out before its record is durable.
//! - [`Backend`] is how a command reaches the CA: the local store (no server
//!   running), or the server's control socket ([`client`]). Both run the same
//!   operations: one code path per command. What travels on the socket is
//!   [`protocol`]'s own types, converted at the edge.

pub mod client;
pub mod ops;
pub mod protocol;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::backup::BackupSummary;
use crate::batch::{BatchOptions, EntryOutcome, Manifest, Summary};
use crate::ca::{Ca, CaId, CaKind, PassphraseSource};
use crate::crl::Reason;
use crate::error::{Error, Result};
use crate::issue::{IssuanceRequest, Issued, Issuer, RunOptions};
use crate::store::acme::EabKey;
use crate::store::{AuditEntry, AuditReport, CheckReport, ListFilter, Record, Store};

pub use client::{socket_path, Client};
pub use ops::{
    BatchReport, CrlTarget, Operation, PageRequest, Paged, Part, ServiceStats, Shown, SignedCrl,
    PAGE_BUDGET,
};
pub use protocol::{Remote, WireError};

use ops::{Cx, Job, JobKind, Reply};

/// Most issue jobs committed together (one transaction, one flush).
pub const MAX_GROUP: usize = crate::issue::DEFAULT_CHUNK;

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

/// The engine's counters, as it counts them.
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
    revocations: tokio::sync::watch::Receiver<u64>,
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
        let (revoked_tx, revocations) = tokio::sync::watch::channel(0u64);
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
                engine_loop(&ca, &store, &issuer, &rx, &c, &revoked_tx);
                let _ = store.flush();
            })
            .map_err(|e| Error::State(format!("cannot start the engine thread: {e}")))?;
        let extra = ready_rx.recv().map_err(|_| engine_gone())??;
        Ok((
            Service {
                jobs: tx,
                counters,
                revocations,
            },
            Engine(thread),
            extra,
        ))
    }

    /// Queue an operation for the engine; the receiver gets its answer.
    pub fn submit<O: Operation>(&self, op: O) -> Result<oneshot::Receiver<Result<O::Answer>>> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(op.into_job(reply))
            .map_err(|_| engine_gone())?;
        Ok(rx)
    }

    /// Run an operation (from async code).
    pub async fn call<O: Operation>(&self, op: O) -> Result<O::Answer> {
        self.submit(op)?.await.map_err(|_| engine_gone())?
    }

    /// Run an operation, blocking this thread until it is answered.
    pub fn call_blocking<O: Operation>(&self, op: O) -> Result<O::Answer> {
        self.submit(op)?
            .blocking_recv()
            .map_err(|_| engine_gone())?
    }

    /// Issue one certificate (group-committed with the other jobs waiting).
    pub async fn issue(&self, req: IssuanceRequest) -> Result<Issued> {
        self.call(ops::Issue(req)).await
    }

    /// The engine's counters.
    pub fn stats(&self) -> ServiceStats {
        self.counters.snapshot()
    }

    /// How many certificates the engine has revoked since it started, whatever
    /// operation revoked them (the socket's `revoke`, ACME's revokeCert, ...):
    /// changed once each revoking job's revocations are durable, so a CRL
    /// publisher waiting on it sees every revocation.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.clone()
    }
}

/// The engine: take every job waiting, run the others in order, then the issue
/// jobs together (one `issue_all`: one transaction, one flush). A job that holds
/// the engine for long ([`Operation::HOLDS_ENGINE`]) ends what is taken at
/// once, so no job taken with it waits behind it.
fn engine_loop(
    ca: &Ca,
    store: &Store,
    issuer: &Issuer<'_>,
    rx: &std::sync::mpsc::Receiver<Job>,
    counters: &Counters,
    revoked: &tokio::sync::watch::Sender<u64>,
) {
    let engine = EngineRefs {
        ca,
        store,
        issuer,
        rx,
        counters,
        revoked,
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
        while waiting.len() < MAX_GROUP && !waiting.last().is_some_and(Job::holds_engine) {
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
    revoked: &'a tokio::sync::watch::Sender<u64>,
}

impl EngineRefs<'_, '_> {
    /// Tell the watchers of [`Service::revocations`] when the store counts
    /// more revocations than they saw (an atomic read when nothing changed).
    fn note_revocations(&self) {
        let n = self.store.revocations();
        self.revoked.send_if_modified(|seen| {
            let changed = *seen != n;
            *seen = n;
            changed
        });
    }
}

/// Run jobs taken together: the others in order, the issues as one group (a
/// job that holds the engine, a batch first, lets the issues taken before it
/// go).
fn run_jobs(e: &EngineRefs<'_, '_>, waiting: Vec<Job>, held: &mut VecDeque<Job>) {
    let mut group: Vec<(IssuanceRequest, Reply<Issued>)> = Vec::new();
    for Job(job) in waiting {
        match job {
            JobKind::Issue(req, reply) => group.push((*req, reply)),
            JobKind::Run { holds_engine, run } => {
                if holds_engine && !group.is_empty() {
                    issue_group(e.issuer, std::mem::take(&mut group), e.counters);
                }
                // A batch gives way to the jobs that come in meanwhile.
                let mut turn = || give_way(e, held);
                // Servers read the clock per request.
                let now = OffsetDateTime::now_utc();
                run(&mut Cx::engine(
                    e.ca, e.store, e.issuer, e.counters, &mut turn, now,
                ));
                e.note_revocations();
            }
        }
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
            Ok(j) if j.holds_engine() => held.push_back(j),
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
    group: Vec<(IssuanceRequest, Reply<Issued>)>,
    counters: &Counters,
) {
    let started = std::time::Instant::now();
    let n = group.len();
    let (reqs, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    let mut replies: Vec<Option<Reply<Issued>>> = replies.into_iter().map(Some).collect();
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
            let _ = reply.send(r);
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
    /// The CRLs published after the last operation that revoked.
    published: std::sync::Mutex<Option<Result<crate::crl::Published>>>,
    /// Publication held back until a command's many operations end
    /// ([`Backend::publishing_once`]).
    hold: std::sync::atomic::AtomicBool,
}

impl Local {
    /// Run `f` on the CA opened here; when it revoked anything (whatever the
    /// operation), publish every CA's CRL once the revocations are durable
    /// (they are when the store's revoke returns), so that `revoke` without a
    /// server leaves current CRLs in `crl/`. A failed publication does not
    /// undo a revocation: [`Backend::take_publication`] tells it.
    fn run<T>(&self, now: OffsetDateTime, f: impl FnOnce(&mut Cx<'_>) -> Result<T>) -> Result<T> {
        let out = f(&mut Cx::local(&self.ca, &self.store, now));
        if !self.hold.load(std::sync::atomic::Ordering::Relaxed) {
            self.publish_pending(now);
        }
        out
    }

    /// Publish every CA's CRL when this handle revoked something no CRL
    /// lists yet (an operation that published them itself, `crl`, leaves
    /// nothing pending).
    fn publish_pending(&self, now: OffsetDateTime) {
        if self.store.unpublished_revocations() {
            let published = crate::crl::publish_all(
                &self.ca,
                &self.store,
                crate::crl::DEFAULT_NEXT_UPDATE,
                now,
            );
            if let Ok(mut slot) = self.published.lock() {
                *slot = Some(published);
            }
        }
    }
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
            (Some(store), _) => Ok(Backend::Local(Box::new(Local {
                ca,
                store,
                published: std::sync::Mutex::new(None),
                hold: std::sync::atomic::AtomicBool::new(false),
            }))),
            (None, Some(client)) => Ok(Backend::Remote(client)),
            (None, None) => Err(Error::State(
                "the store's open gave up without a server to go to".into(),
            )),
        }
    }

    /// `ca roll`: roll a CA here, holding the store. Refused (exit 3) while a
    /// server holds the CA (its control socket answers): the server keeps the
    /// signing CAs it loaded, so it is stopped, the CA rolled, and the server
    /// started again.
    pub fn roll(
        ca_dir: &Path,
        lock_timeout: Duration,
        passphrase: PassphraseSource,
        kind: crate::ca::CaKind,
        opts: &crate::ca::RollOptions,
        now: OffsetDateTime,
    ) -> Result<crate::ca::Rolled> {
        let busy = || {
            Error::State(format!(
                "a running `mtlsca serve` holds this CA (its control socket answers): stop it, run `mtlsca ca roll {}`, then start it again",
                kind.as_str()
            ))
        };
        match Backend::open(ca_dir, lock_timeout, passphrase)? {
            Backend::Remote(_) => Err(busy()),
            Backend::Local(l) => crate::ca::roll(&l.ca, &l.store, kind, opts, now),
        }
    }

    /// Whether operations go through a running server.
    pub fn is_remote(&self) -> bool {
        matches!(self, Backend::Remote(_))
    }

    /// The CRLs published here after the last operation that revoked a
    /// certificate (each with its file), or why they could not be: `None`
    /// when nothing was revoked here since the last call, and always through
    /// a server (whose own publisher signs them within seconds).
    pub fn take_publication(&self) -> Option<Result<crate::crl::Published>> {
        match self {
            Backend::Local(l) => l.published.lock().ok().and_then(|mut s| s.take()),
            Backend::Remote(_) => None,
        }
    }

    /// Run `f`, a command's many operations, publishing the CRLs once after
    /// them (when they revoked anything) instead of after each: `renew --all
    /// --revoke-old` retires one certificate per operation.
    pub fn publishing_once<T>(
        &self,
        now: OffsetDateTime,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let Backend::Local(l) = self else {
            return f();
        };
        l.hold.store(true, std::sync::atomic::Ordering::Relaxed);
        let out = f();
        l.hold.store(false, std::sync::atomic::Ordering::Relaxed);
        l.publish_pending(now);
        out
    }

    /// Run an operation: locally at `now`; through the server at the server's
    /// time (a server reads the clock per request).
    pub fn call<O: Remote>(&self, op: O, now: OffsetDateTime) -> Result<O::Answer> {
        match self {
            Backend::Remote(c) => c.call(op),
            Backend::Local(l) => l.run(now, |cx| op.run(cx)),
        }
    }

    /// Issue one certificate.
    pub fn issue(&self, req: IssuanceRequest, now: OffsetDateTime) -> Result<Issued> {
        self.call(ops::Issue(req), now)
    }

    /// A long read: at once locally (`whole`); through a server in parts of
    /// [`PAGE_BUDGET`], one engine job each, so that issuing (ACME's too) goes
    /// on between them: at a million records a `list` in one job held every
    /// other request for seconds. The parts come as a stream on one connection
    /// (the server asks for the next part while it writes this one).
    fn read_in_parts<W: Operation<Answer = Vec<P::Item>>, P: Remote + Paged>(
        &self,
        now: OffsetDateTime,
        whole: W,
        first: P,
    ) -> Result<Vec<P::Item>> {
        match self {
            Backend::Local(l) => l.run(now, |cx| whole.run(cx)),
            Backend::Remote(c) => {
                let mut out = Vec::new();
                c.call_parts(first, &mut |part| out.extend(part.items))?;
                Ok(out)
            }
        }
    }

    /// The records matching `filter`.
    pub fn list(&self, filter: ListFilter, now: OffsetDateTime) -> Result<Vec<Record>> {
        self.read_in_parts(
            now,
            ops::List {
                filter: filter.clone(),
            },
            ops::ListPart {
                filter,
                page: PageRequest::default(),
            },
        )
    }

    /// One certificate, as `show` shows it.
    pub fn show(&self, query: &str, now: OffsetDateTime) -> Result<Shown> {
        let query = query.to_string();
        self.call(ops::Show { query }, now)
    }

    /// Revoke the certificate `query` names.
    pub fn revoke(&self, query: &str, reason: Reason, now: OffsetDateTime) -> Result<Record> {
        let query = query.to_string();
        self.call(ops::Revoke { query, reason }, now)
    }

    /// Revoke what `query` names: one certificate, or every unexpired,
    /// unrevoked certificate of a request id's lineage ([`ops::RevokeLineage`]).
    pub fn revoke_lineage(
        &self,
        query: &str,
        reason: Reason,
        now: OffsetDateTime,
    ) -> Result<ops::RevokedLineage> {
        let query = query.to_string();
        self.call(ops::RevokeLineage { query, reason }, now)
    }

    /// Retire the certificate `serial` a renewal replaced: revoked as
    /// superseded now, or after `grace` ([`ops::Retire`]).
    pub fn retire(
        &self,
        serial: &str,
        grace: Option<time::Duration>,
        now: OffsetDateTime,
    ) -> Result<ops::Retirement> {
        let serial = serial.to_string();
        self.call(ops::Retire { serial, grace }, now)
    }

    /// Apply the retirements due by now ([`ops::ApplyRetirements`]): how many.
    pub fn apply_retirements(&self, now: OffsetDateTime) -> Result<u64> {
        self.call(ops::ApplyRetirements, now)
    }

    /// The pending retirements ([`ops::Retiring`]).
    pub fn retiring(&self, now: OffsetDateTime) -> Result<Vec<crate::store::PendingRetirement>> {
        self.call(ops::Retiring, now)
    }

    /// The audit log from `since`.
    pub fn audit(
        &self,
        since: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Vec<AuditEntry>> {
        self.read_in_parts(
            now,
            ops::Audit { since },
            ops::AuditPart {
                since,
                page: PageRequest::default(),
            },
        )
    }

    /// Verify the audit log's hash chain.
    pub fn verify_audit(&self, now: OffsetDateTime) -> Result<AuditReport> {
        self.call(ops::AuditVerify, now)
    }

    /// Check the store: every record, index and the audit chain.
    pub fn check_store(&self, now: OffsetDateTime) -> Result<CheckReport> {
        self.call(ops::StoreCheck, now)
    }

    /// Move expired certificates into the archive (`store tidy`); through the
    /// server while one holds the store. Here (no server), the live store is
    /// then rebuilt compactly ([`Store::compact`]); a server keeps its files
    /// open, so through it the files shrink at a later tidy without it.
    pub fn tidy(
        self,
        opts: crate::store::TidyOptions,
        now: OffsetDateTime,
    ) -> Result<(crate::store::TidyReport, Option<crate::store::Compacted>)> {
        let report = self.call(ops::Tidy(opts), now)?;
        let Backend::Local(local) = self else {
            return Ok((report, None));
        };
        if opts.dry_run || (report.moved == 0 && report.audit_entries_moved == 0) {
            return Ok((report, None));
        }
        let Local { ca, store, .. } = *local;
        drop(ca);
        Ok((report, store.compact()?))
    }

    /// Back the CA up into the new directory `dir` (made absolute, and shown
    /// again as given, when it goes through the server).
    pub fn backup(&self, dir: &Path, now: OffsetDateTime) -> Result<BackupSummary> {
        let dir = dir.to_path_buf();
        self.call(ops::Backup { dir }, now)
    }

    /// Sign CRLs.
    pub fn crl(
        &self,
        issuer: Option<CaKind>,
        target: CrlTarget,
        next_update: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<SignedCrl>> {
        let op = ops::SignCrls {
            issuer,
            generation: None,
            target,
            next_update,
        };
        self.call(op, now)
    }

    /// Sign the CRL of one generation of a CA (`crl --issuer device-1`).
    pub fn crl_of(
        &self,
        issuer: CaId,
        target: CrlTarget,
        next_update: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<SignedCrl>> {
        let op = ops::SignCrls {
            issuer: Some(issuer.kind),
            generation: Some(issuer.generation),
            target,
            next_update,
        };
        self.call(op, now)
    }

    /// A new EAB key for ACME accounts of `profile`.
    pub fn eab_create(&self, profile: &str, now: OffsetDateTime) -> Result<EabKey> {
        let profile = profile.to_string();
        self.call(ops::EabCreate { profile }, now)
    }

    /// The EAB keys.
    pub fn eab_list(&self, now: OffsetDateTime) -> Result<Vec<EabKey>> {
        self.call(ops::EabList, now)
    }

    /// Revoke the EAB key `kid`.
    pub fn eab_revoke(&self, kid: &str, now: OffsetDateTime) -> Result<EabKey> {
        let kid = kid.to_string();
        self.call(ops::EabRevoke { kid }, now)
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
            Backend::Local(l) => l.run(now, |_| {
                crate::batch::run(&l.ca, &l.store, manifest, name, opts, now, report, None)
            }),
            Backend::Remote(c) => {
                let b = c.call(ops::Batch {
                    manifest: text.to_string(),
                    name: name.to_string(),
                    opts: opts.clone(),
                })?;
                for e in &b.entries {
                    report(e);
                }
                b.outcome
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
                let found = self.call(
                    ops::Lookup {
                        query: query.clone(),
                    },
                    OffsetDateTime::UNIX_EPOCH,
                );
                // A lookup also matches fingerprints and request ids: only
                // the record of this serial counts.
                found
                    .ok()
                    .flatten()
                    .filter(|r| r.serial.eq_ignore_ascii_case(&query))
            })?;
        crate::store::revocation::revocation_of(&rec, cert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{KeySource, Output};
    use crate::policy::RequestedContent;
    use crate::rules::Origin;

    /// Issue jobs waiting together are committed as one group: one
    /// `issue_all`, every caller answered, every certificate recorded; the
    /// other jobs taken with them are answered in turn, each with its own type.
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
            tx.send(ops::Issue(req).into_job(reply)).unwrap();
            answers.push(r);
        }
        let (reply, mut lookup) = oneshot::channel();
        tx.send(
            ops::Lookup {
                query: "00ff".into(),
            }
            .into_job(reply),
        )
        .unwrap();
        drop(tx);
        let counters = Counters::default();
        let (revoked, _) = tokio::sync::watch::channel(0);
        engine_loop(&ca, &store, &issuer, &rx, &counters, &revoked);
        let stats = counters.snapshot();
        assert_eq!(stats.groups, 1, "{stats:?}");
        assert_eq!(stats.issue_jobs, 20);
        for (i, mut r) in answers.into_iter().enumerate() {
            let x = r.try_recv().unwrap().unwrap();
            assert_eq!(x.record.request_id.as_deref(), Some(&*format!("r{i}")));
            assert!(store.find(&x.record.serial).unwrap().is_some());
            assert!(dir.path().join(format!("h{i}.pem")).is_file());
        }
        // Taken with the issues, answered before their group was committed.
        assert_eq!(lookup.try_recv().unwrap().unwrap(), None);
        assert_eq!(store.count(), 20);
    }

    fn device_request(dir: &Path, name: &str) -> IssuanceRequest {
        IssuanceRequest {
            profile: "device".into(),
            content: RequestedContent {
                dns: vec![format!("{name}.corp.internal")],
                ..Default::default()
            },
            key: KeySource::Generate(None),
            request_id: None,
            output: Output::Prefix(dir.join(name)),
            origin: Origin::Arguments,
            replaces: None,
        }
    }

    /// The engine tells its watchers of every revocation once it is durable,
    /// and of nothing else.
    #[test]
    fn the_engine_signals_revocations() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let issuer = Issuer::new(&ca, &store).unwrap();
        let a = issuer.issue(&device_request(dir.path(), "a"), now).unwrap();
        let (revoked, mut watching) = tokio::sync::watch::channel(0);
        let counters = Counters::default();
        let run = |op: Job| {
            let (tx, rx) = std::sync::mpsc::channel();
            tx.send(op).unwrap();
            drop(tx);
            engine_loop(&ca, &store, &issuer, &rx, &counters, &revoked);
        };
        let (reply, _lookup) = oneshot::channel();
        run(ops::Lookup {
            query: a.record.serial.clone(),
        }
        .into_job(reply));
        assert!(!watching.has_changed().unwrap());
        let (reply, mut answer) = oneshot::channel();
        run(ops::RevokeExact {
            sha256: a.record.sha256.clone(),
            reason: Reason::KeyCompromise,
        }
        .into_job(reply));
        answer.try_recv().unwrap().unwrap();
        assert!(watching.has_changed().unwrap());
        assert_eq!(*watching.borrow_and_update(), 1);
        // Refused (already revoked): nothing new.
        let (reply, mut answer) = oneshot::channel();
        run(ops::Revoke {
            query: a.record.serial.clone(),
            reason: Reason::KeyCompromise,
        }
        .into_job(reply));
        assert!(answer.try_recv().unwrap().is_err());
        assert!(!watching.has_changed().unwrap());
    }

    /// Without a server, an operation that revoked publishes every CRL after
    /// the revocation, and says what it published; others publish nothing.
    #[test]
    fn a_local_revocation_publishes_the_crls() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let ca_dir = ca.dir.clone();
        drop(store);
        let backend = Backend::open(
            &ca_dir,
            Duration::from_secs(5),
            PassphraseSource::Environment("MTLSCA_TEST_UNSET".into()),
        )
        .unwrap();
        let a = backend.issue(device_request(dir.path(), "a"), now).unwrap();
        assert!(backend.take_publication().is_none());
        backend.show(&a.record.serial, now).unwrap();
        assert!(backend.take_publication().is_none());
        backend
            .revoke(&a.record.serial, Reason::Superseded, now)
            .unwrap();
        let published = backend.take_publication().unwrap().unwrap();
        let device = published
            .iter()
            .find(|(c, _)| c.issuer == CaKind::Device)
            .unwrap();
        assert_eq!(device.0.revoked, 1);
        let pem = std::fs::read(&device.1).unwrap();
        let der = pem::parse(&pem).unwrap().into_contents();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        let listed: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| crate::hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(listed, vec![a.record.serial.clone()]);
        assert!(backend.take_publication().is_none(), "taken once");
    }
}
