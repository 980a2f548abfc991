//! The archive: where `store tidy` moves certificates that no longer need to
//! be in the hot store, so the hot store (and the cost of opening it, which
//! every command pays) follows the live certificates.
//!
//! The archive is a second sled database at `<ca-dir>/archive` with the hot
//! store's trees and encodings (it is opened as a [`Store`], so every read of
//! the hot store reads it too). It is opened only when needed: a lookup that
//! missed in the hot store, `list --all`, the audit log, `store check`,
//! `backup`, `tidy`.
//!
//! What moves, for a certificate expired before the cut-off: its record,
//! certificate, SHA-256, expiry and name index entries, its revocation entry
//! and its per-serial audit index. A revoked certificate moves only once its
//! issuer published a CRL with thisUpdate after its notAfter (RFC 5280 §3.3:
//! until then it is still on the CRLs). Its request id stays in the hot store
//! (copied to the archive too), pointing into the archive, so a batch re-run
//! stays idempotent. Audit entries older than the oldest one a hot record
//! still needs move too: the log stays one hash chain, the archive's part then
//! the hot part.
//!
//! The move is crash-safe: everything is copied into the archive and flushed
//! first; then each chunk leaves the hot store in one transaction carrying a
//! `tidy` audit entry; then the hot store is flushed. A kill at any point
//! leaves every certificate reachable (where both hold one, the hot store
//! wins), and a re-run completes the move.

use std::collections::{BTreeSet, HashSet};
use std::iter::Peekable;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;
use time::OffsetDateTime;

use super::{
    append_audit, cat, hex_decode, hex_encode, index_names, store_err, tx_err, unix_be, AuditEntry,
    Record, Status, Store, AUDIT_BY_SERIAL, SCHEMA_KEY, SCHEMA_VERSION,
};
use crate::error::{Error, Result};

/// The archive's directory name under the CA directory.
pub const ARCHIVE_DIR: &str = "archive";
/// Where the time of each issuer's last CRL is kept in `meta` (‖ issuer key id
/// → thisUpdate, u64 BE seconds).
pub(super) const CRL_TIME_PREFIX: &[u8] = b"crl_time/";
/// Certificates removed from the hot store per transaction.
const CHUNK: usize = 2_000;
/// Audit entries removed from the hot store per transaction.
const AUDIT_CHUNK: usize = 10_000;
/// How long to wait for the archive's lock (held only by whoever holds the
/// hot store's, so only a process that just let go of both).
const ARCHIVE_WAIT: Duration = Duration::from_secs(10);

/// What `tidy` should move.
#[derive(Debug, Clone, Copy)]
pub struct TidyOptions {
    /// Certificates whose notAfter is before this move (`now` minus `--expired-for`).
    pub expired_before: OffsetDateTime,
    /// Report what would move, move nothing.
    pub dry_run: bool,
}

/// A point of the move, reported as it is reached (tests stop there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TidyStage {
    /// Everything to move is in the archive and flushed; nothing left the hot store.
    ArchiveFlushed,
    /// One chunk left the hot store (not yet flushed).
    ChunkRemoved,
}

/// What `tidy` moved (or, dry, would move).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TidyReport {
    /// Nothing was moved: this is what would be.
    pub dry_run: bool,
    /// Certificates moved.
    pub moved: usize,
    /// Of those, revoked ones (past their last CRL).
    pub moved_revoked: usize,
    /// Expired revoked certificates kept in the hot store: their issuer has not
    /// published a CRL since they expired (`mtlsca crl`, then tidy again).
    pub waiting_for_crl: usize,
    /// Audit entries moved.
    pub audit_entries_moved: usize,
    /// The first and last serial moved (serial order).
    pub first_serial: Option<String>,
    /// See `first_serial`.
    pub last_serial: Option<String>,
    /// SHA-256 over the moved serials (bytes, serial order), hex.
    pub digest: Option<String>,
    /// Certificates in the hot store afterwards.
    pub hot_records: usize,
    /// Certificates in the archive afterwards.
    pub archived_records: usize,
}

/// The hot store's keys of one certificate that leaves it (computed outside
/// the transaction, which sled may run more than once).
struct LeavingKeys {
    serial: Vec<u8>,
    cert: Vec<u8>,
    sha: Vec<u8>,
    expiry: Vec<u8>,
    names: Vec<Vec<u8>>,
    audit: Vec<Vec<u8>>,
}

/// One certificate to move, read from the hot store.
struct Moving {
    serial: Vec<u8>,
    rec: Record,
}

/// Two key-ordered iterators as one, in key order; where both hold a key, the
/// first (the hot store) wins.
pub(super) struct Merged<A: Iterator, B: Iterator> {
    hot: Peekable<A>,
    archive: Option<Peekable<B>>,
}

type Item = sled::Result<(sled::IVec, sled::IVec)>;

impl<A: Iterator<Item = Item>, B: Iterator<Item = Item>> Iterator for Merged<A, B> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let Some(archive) = self.archive.as_mut() else {
            return self.hot.next();
        };
        let order = match (self.hot.peek(), archive.peek()) {
            (None, None) => return None,
            (Some(Err(_)), _) | (Some(_), None) => return self.hot.next(),
            (_, Some(Err(_))) | (None, Some(_)) => return archive.next(),
            (Some(Ok((h, _))), Some(Ok((a, _)))) => h.cmp(a),
        };
        match order {
            std::cmp::Ordering::Less => self.hot.next(),
            std::cmp::Ordering::Greater => archive.next(),
            std::cmp::Ordering::Equal => {
                archive.next();
                self.hot.next()
            }
        }
    }
}

/// The hot store's entries, and the archive's when there is one, as one ordered read.
pub(super) fn merged<A: Iterator<Item = Item>, B: Iterator<Item = Item>>(
    hot: A,
    archive: Option<B>,
) -> Merged<A, B> {
    Merged {
        hot: hot.peekable(),
        archive: archive.map(Iterator::peekable),
    }
}

fn read_u64(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)
}

impl Store {
    /// Where this store's archive is (`<ca-dir>/archive`).
    pub fn archive_path(&self) -> PathBuf {
        self.path.parent().unwrap_or(&self.path).join(ARCHIVE_DIR)
    }

    /// The archive, opened on first use; `None` when there is none (nothing was
    /// ever tidied: then looked for again at each call, a `stat`), and always
    /// for the archive itself.
    pub fn archive(&self) -> Result<Option<&Store>> {
        if let Some(a) = self.archive.get() {
            return Ok(a.as_deref());
        }
        let path = self.archive_path();
        if !path.join("db").is_file() {
            return Ok(None);
        }
        let _ = self.archive.set(Some(Box::new(open_archive(&path)?)));
        Ok(self.archive.get().and_then(|a| a.as_deref()))
    }

    /// The archive, created when there is none yet.
    fn archive_or_create(&self) -> Result<&Store> {
        if let Some(a) = self.archive()? {
            return Ok(a);
        }
        let path = self.archive_path();
        if !path.is_dir() {
            crate::fsutil::create_dir_mode(&path, 0o700).map_err(|e| Error::io(&path, e))?;
            if let Some(parent) = path.parent() {
                crate::fsutil::sync_dir(parent)?;
            }
        }
        let a = open_archive(&path)?;
        a.flush()?;
        let _ = self.archive.set(Some(Box::new(a)));
        self.archive()?
            .ok_or_else(|| Error::State("the archive could not be kept open".into()))
    }

    /// Load an archive export (`restore`) into a new archive beside this
    /// store; refuses when there already is one.
    pub fn import_archive<R: std::io::BufRead>(&self, input: &mut R) -> Result<()> {
        if self.archive_path().exists() {
            return Err(Error::State(format!(
                "{} already exists; refusing to restore an archive over it",
                self.archive_path().display()
            )));
        }
        self.archive_or_create()?.import(input)?;
        Ok(())
    }

    /// Whether a record is archived (in the archive and not in the hot store).
    pub fn is_archived(&self, rec: &Record) -> Result<bool> {
        let serial = rec.serial_bytes();
        if self.records.contains_key(&serial).map_err(store_err)? {
            return Ok(false);
        }
        Ok(match self.archive()? {
            Some(a) => a.records.contains_key(&serial).map_err(store_err)?,
            None => false,
        })
    }

    /// The record of a serial, from the hot store or else the archive.
    pub fn get_anywhere(&self, serial: &[u8]) -> Result<Option<Record>> {
        if let Some(r) = self.get(serial)? {
            return Ok(Some(r));
        }
        match self.archive()? {
            Some(a) => a.get(serial),
            None => Ok(None),
        }
    }

    /// `find` in the archive (a serial or fingerprint the hot store lacks).
    pub(super) fn archived_find(&self, clean: &str) -> Result<Option<Record>> {
        match self.archive()? {
            Some(a) => a.find(clean),
            None => Ok(None),
        }
    }

    /// `with_serial_prefix` in the archive, adding to `out` up to `limit`.
    pub(super) fn archived_with_serial_prefix(
        &self,
        hex_prefix: &str,
        limit: usize,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        if out.len() >= limit {
            return Ok(());
        }
        let Some(a) = self.archive()? else {
            return Ok(());
        };
        let seen: HashSet<String> = out.iter().map(|r| r.serial.clone()).collect();
        for r in a.with_serial_prefix(hex_prefix, limit)? {
            if out.len() >= limit {
                break;
            }
            if !seen.contains(&r.serial) {
                out.push(r);
            }
        }
        out.sort_by(|x, y| x.serial.cmp(&y.serial));
        Ok(())
    }

    /// The audit trail of an archived serial: its index is in the archive, its
    /// entries in either part of the log.
    pub(super) fn archived_audit_of(
        &self,
        serial: &str,
        bytes: &[u8],
        out: &mut Vec<AuditEntry>,
    ) -> Result<()> {
        let Some(a) = self.archive()? else {
            return Ok(());
        };
        let prefix = cat(&[AUDIT_BY_SERIAL, bytes]);
        for item in a.meta.scan_prefix(&prefix) {
            let (k, _) = item.map_err(store_err)?;
            let seq = &k[prefix.len()..];
            let v = match self.audit.get(seq).map_err(store_err)? {
                Some(v) => Some(v),
                None => a.audit.get(seq).map_err(store_err)?,
            };
            if let Some(v) = v {
                let e: AuditEntry = serde_json::from_slice(&v).map_err(store_err)?;
                if e.serial.as_deref() == Some(serial) {
                    out.push(e);
                }
            }
        }
        Ok(())
    }

    /// When the issuer with this key id last published a CRL (its thisUpdate),
    /// if it ever did. Recorded with each CRL number; for CRLs recorded before
    /// that, read from the audit log's `crl` entries of the issuer's name.
    pub fn last_crl_at(
        &self,
        issuer_key_id: &[u8],
        issuer: &str,
    ) -> Result<Option<OffsetDateTime>> {
        let key = cat(&[CRL_TIME_PREFIX, issuer_key_id]);
        if let Some(v) = self.meta.get(key).map_err(store_err)? {
            if let Some(t) = read_u64(&v) {
                return Ok(OffsetDateTime::from_unix_timestamp(t as i64).ok());
            }
        }
        let want = format!("{issuer} CRL number ");
        let mut last = None;
        for item in self.audit.iter().rev() {
            let (_, v) = item.map_err(store_err)?;
            if let Ok(e) = serde_json::from_slice::<AuditEntry>(&v) {
                if e.action == "crl" && e.detail.starts_with(&want) {
                    last = Some(e.at);
                    break;
                }
            }
        }
        Ok(last)
    }

    /// Move what is expired (see the module doc) into the archive. `stage` is
    /// told each point the move reaches (tests stop the process there).
    pub fn tidy(
        &self,
        opts: &TidyOptions,
        now: OffsetDateTime,
        stage: &mut dyn FnMut(TidyStage),
    ) -> Result<TidyReport> {
        let mut report = TidyReport {
            dry_run: opts.dry_run,
            ..TidyReport::default()
        };
        let moving = self.to_move(opts.expired_before, &mut report)?;
        report.moved = moving.len();
        report.moved_revoked = moving
            .iter()
            .filter(|m| m.rec.status == Status::Revoked)
            .count();
        if let (Some(first), Some(last)) = (moving.first(), moving.last()) {
            report.first_serial = Some(first.rec.serial.clone());
            report.last_serial = Some(last.rec.serial.clone());
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for m in &moving {
                ctx.update(&m.serial);
            }
            report.digest = Some(hex_encode(ctx.finish().as_ref()));
        }
        let moved_serials: HashSet<&[u8]> = moving.iter().map(|m| m.serial.as_slice()).collect();
        let audit_cut = self.audit_cut(&moved_serials)?;
        let audit_moving: Vec<(sled::IVec, sled::IVec)> = self
            .audit
            .range(..audit_cut.to_be_bytes())
            .collect::<sled::Result<_>>()
            .map_err(store_err)?;
        report.audit_entries_moved = audit_moving.len();
        if opts.dry_run || (moving.is_empty() && audit_moving.is_empty()) {
            report.hot_records = self.count() - if opts.dry_run { report.moved } else { 0 };
            report.archived_records = self.archive()?.map_or(0, Store::count)
                + if opts.dry_run { report.moved } else { 0 };
            return Ok(report);
        }

        // 1. Copy into the archive, then make it durable.
        let archive = self.archive_or_create()?;
        self.copy_to(archive, &moving, &audit_moving)?;
        archive.flush()?;
        stage(TidyStage::ArchiveFlushed);

        // 2. Remove from the hot store, a chunk a transaction, each with its audit entry.
        let revoked = self.db.open_tree("revoked").map_err(store_err)?;
        for chunk in moving.chunks(CHUNK) {
            self.remove_chunk(chunk, &revoked, now, &report)?;
            stage(TidyStage::ChunkRemoved);
        }
        for chunk in audit_moving.chunks(AUDIT_CHUNK) {
            let mut batch = sled::Batch::default();
            for (k, _) in chunk {
                batch.remove(k.clone());
            }
            self.audit.apply_batch(batch).map_err(store_err)?;
        }
        if moving.is_empty() {
            // Only audit entries moved: the log still says so.
            self.remove_chunk(&[], &revoked, now, &report)?;
        }
        self.flush()?;
        report.hot_records = self.count();
        report.archived_records = archive.count();
        Ok(report)
    }

    /// The certificates to move, in serial order; counts the revoked ones that
    /// must wait for a CRL.
    fn to_move(&self, before: OffsetDateTime, report: &mut TidyReport) -> Result<Vec<Moving>> {
        let mut crl_at: std::collections::HashMap<(String, String), Option<OffsetDateTime>> =
            std::collections::HashMap::new();
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for item in self.expiry.range(..unix_be(before).to_vec()) {
            let (k, _) = item.map_err(store_err)?;
            if k.len() <= 8 {
                continue;
            }
            let serial = k[8..].to_vec();
            let Some(rec) = self.get(&serial)? else {
                continue; // an index entry `store check` reports
            };
            if rec.not_after >= before || !seen.insert(serial.clone()) {
                continue;
            }
            if rec.status == Status::Revoked {
                let id = (rec.issuer_key_id.clone(), rec.issuer.clone());
                let at = match crl_at.get(&id) {
                    Some(at) => *at,
                    None => {
                        let kid = hex_decode(&rec.issuer_key_id).unwrap_or_default();
                        let at = self.last_crl_at(&kid, &rec.issuer)?;
                        crl_at.insert(id, at);
                        at
                    }
                };
                if at.is_none_or(|at| at <= rec.not_after) {
                    report.waiting_for_crl += 1;
                    continue;
                }
            }
            out.push(Moving { serial, rec });
        }
        out.sort_by(|a, b| a.serial.cmp(&b.serial));
        Ok(out)
    }

    /// The first audit sequence number a record that stays hot still needs
    /// (everything before it may move); the next one to be written when none is.
    fn audit_cut(&self, moving: &HashSet<&[u8]>) -> Result<u64> {
        let mut cut = match self.meta.get(super::AUDIT_HEAD).map_err(store_err)? {
            Some(h) if h.len() == 40 => read_u64(&h[..8]).map_or(0, |s| s + 1),
            _ => 0,
        };
        for item in self.meta.scan_prefix(AUDIT_BY_SERIAL) {
            let (k, _) = item.map_err(store_err)?;
            let rest = &k[AUDIT_BY_SERIAL.len()..];
            if rest.len() < 8 {
                continue;
            }
            let (serial, seq) = rest.split_at(rest.len() - 8);
            if moving.contains(serial) {
                continue;
            }
            if let Some(seq) = read_u64(seq) {
                cut = cut.min(seq);
            }
        }
        Ok(cut)
    }

    /// Write every entry of the moving certificates, and the moving audit
    /// entries, into the archive (the same keys and bytes).
    fn copy_to(
        &self,
        archive: &Store,
        moving: &[Moving],
        audit: &[(sled::IVec, sled::IVec)],
    ) -> Result<()> {
        let revoked = self.db.open_tree("revoked").map_err(store_err)?;
        let a_revoked = archive.db.open_tree("revoked").map_err(store_err)?;
        let e = store_err;
        for m in moving {
            let (rec, serial) = (&m.rec, m.serial.as_slice());
            let kid = hex_decode(&rec.issuer_key_id).unwrap_or_default();
            if let Some(v) = self.records.get(serial).map_err(e)? {
                archive.records.insert(serial, v).map_err(e)?;
            }
            let cert_key = cat(&[&kid, serial]);
            if let Some(v) = self.certs.get(&cert_key).map_err(e)? {
                archive.certs.insert(&cert_key, v).map_err(e)?;
            }
            if let Some(v) = revoked.get(&cert_key).map_err(e)? {
                a_revoked.insert(&cert_key, v).map_err(e)?;
            }
            if let Some(sha) = hex_decode(&rec.sha256) {
                archive.sha256.insert(sha, serial).map_err(e)?;
            }
            archive
                .expiry
                .insert(cat(&[&unix_be(rec.not_after), serial]), &[] as &[u8])
                .map_err(e)?;
            for n in index_names(rec) {
                archive
                    .names
                    .insert(cat(&[n.as_bytes(), &[0], serial]), &[] as &[u8])
                    .map_err(e)?;
            }
            if let Some(id) = &rec.request_id {
                if self.requests.get(id.as_bytes()).map_err(e)?.as_deref() == Some(serial) {
                    archive.requests.insert(id.as_bytes(), serial).map_err(e)?;
                }
            }
            for item in self.meta.scan_prefix(cat(&[AUDIT_BY_SERIAL, serial])) {
                let (k, v) = item.map_err(e)?;
                archive.meta.insert(k, v).map_err(e)?;
            }
        }
        for (k, v) in audit {
            archive.audit.insert(k, v.clone()).map_err(e)?;
        }
        Ok(())
    }

    /// Remove one chunk of moved certificates from the hot store (their request
    /// ids stay), with a `tidy` audit entry, in one transaction.
    fn remove_chunk(
        &self,
        chunk: &[Moving],
        revoked: &sled::Tree,
        now: OffsetDateTime,
        report: &TidyReport,
    ) -> Result<()> {
        let detail = match (chunk.first(), chunk.last()) {
            (Some(first), Some(last)) => {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                for m in chunk {
                    ctx.update(&m.serial);
                }
                format!(
                    "archived {} certificates, serials {}..{}, serials sha256 {}; {} audit entries before the first hot one",
                    chunk.len(),
                    first.rec.serial,
                    last.rec.serial,
                    hex_encode(ctx.finish().as_ref()),
                    report.audit_entries_moved
                )
            }
            _ => format!(
                "archived {} audit entries before the first hot one",
                report.audit_entries_moved
            ),
        };
        let keys: Vec<LeavingKeys> = chunk
            .iter()
            .map(|m| {
                let serial = m.serial.as_slice();
                let kid = hex_decode(&m.rec.issuer_key_id).unwrap_or_default();
                let audit_keys = self
                    .meta
                    .scan_prefix(cat(&[AUDIT_BY_SERIAL, serial]))
                    .keys()
                    .map(|k| k.map(|k| k.to_vec()))
                    .collect::<sled::Result<Vec<_>>>()
                    .map_err(store_err)?;
                Ok(LeavingKeys {
                    serial: m.serial.clone(),
                    cert: cat(&[&kid, serial]),
                    sha: hex_decode(&m.rec.sha256).unwrap_or_default(),
                    expiry: cat(&[&unix_be(m.rec.not_after), serial]),
                    names: index_names(&m.rec)
                        .iter()
                        .map(|n| cat(&[n.as_bytes(), &[0], serial]))
                        .collect(),
                    audit: audit_keys,
                })
            })
            .collect::<Result<_>>()?;
        let trees = (
            &self.records,
            &self.certs,
            &self.sha256,
            &self.expiry,
            &self.names,
            revoked,
            &self.audit,
            &self.meta,
        );
        trees
            .transaction(
                |(records, certs, sha256, expiry, names, revoked, audit, meta)| {
                    for k in &keys {
                        records.remove(k.serial.as_slice())?;
                        certs.remove(k.cert.as_slice())?;
                        revoked.remove(k.cert.as_slice())?;
                        // The fingerprint index only when it names this serial.
                        if sha256.get(k.sha.as_slice())?.as_deref() == Some(k.serial.as_slice()) {
                            sha256.remove(k.sha.as_slice())?;
                        }
                        expiry.remove(k.expiry.as_slice())?;
                        for n in &k.names {
                            names.remove(n.as_slice())?;
                        }
                        for a in &k.audit {
                            meta.remove(a.as_slice())?;
                        }
                    }
                    append_audit(audit, meta, now, "tidy", None, None, &detail)?;
                    Ok::<_, ConflictableTransactionError<Error>>(())
                },
            )
            .map_err(tx_err)
    }
}

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Compacted {
    /// Bytes of the live store's files before.
    pub bytes_before: u64,
    /// Bytes after.
    pub bytes_after: u64,
}

/// Where a compacted copy of the live store is built.
const COMPACT_DIR: &str = "db.compact";

/// The bytes of the files directly in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl Store {
    /// Rebuild the live store with only what it holds now, so its files (and
    /// the cost of opening them, which every command pays) shrink to the live
    /// certificates: sled keeps the space of removed entries and the log of
    /// their removal. Every tree is copied into `<ca-dir>/db.compact` while
    /// this process holds the store's lock, flushed, and the two directories
    /// are exchanged in one `renameat2(RENAME_EXCHANGE)`: a kill before it
    /// leaves the store as it was, a kill after it the compact one (the
    /// leftover copy is removed by the next compaction). Consumes the store:
    /// its handles name the old files. `None` where the file system cannot
    /// exchange two directories (nothing changed then).
    pub fn compact(self) -> Result<Option<Compacted>> {
        let ca_dir = self.path.parent().unwrap_or(&self.path).to_path_buf();
        let new = ca_dir.join(COMPACT_DIR);
        if new.exists() {
            std::fs::remove_dir_all(&new).map_err(|e| Error::io(&new, e))?;
        }
        crate::fsutil::create_dir_mode(&new, 0o700).map_err(|e| Error::io(&new, e))?;
        let bytes_before = dir_bytes(&self.path);
        {
            let fresh = Store::open_sled_waiting(&new, Duration::ZERO)?;
            let _ = fresh.archive.set(None);
            for name in self.db.tree_names() {
                let (from, to) = if name.as_ref() == b"__sled__default" {
                    ((*self.db).clone(), (*fresh.db).clone())
                } else {
                    (
                        self.db.open_tree(&name).map_err(store_err)?,
                        fresh.db.open_tree(&name).map_err(store_err)?,
                    )
                };
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for item in from.iter() {
                    let (k, v) = item.map_err(store_err)?;
                    batch.insert(k, v);
                    n += 1;
                    if n % 10_000 == 0 {
                        to.apply_batch(std::mem::take(&mut batch))
                            .map_err(store_err)?;
                    }
                }
                to.apply_batch(batch).map_err(store_err)?;
            }
            fresh.flush()?;
            fresh.tighten_modes()?;
        }
        #[cfg(target_os = "linux")]
        let exchanged = rustix::fs::renameat_with(
            rustix::fs::CWD,
            &self.path,
            rustix::fs::CWD,
            &new,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .is_ok();
        #[cfg(not(target_os = "linux"))]
        let exchanged = false;
        if !exchanged {
            let _ = std::fs::remove_dir_all(&new);
            return Ok(None);
        }
        crate::fsutil::sync_dir(&ca_dir)?;
        let live = self.path.clone();
        drop(self); // releases the old files' lock
        std::fs::remove_dir_all(&new).map_err(|e| Error::io(&new, e))?;
        crate::fsutil::sync_dir(&ca_dir)?;
        Ok(Some(Compacted {
            bytes_before,
            bytes_after: dir_bytes(&live),
        }))
    }
}

/// Open (and on first use initialise) the archive at `path`.
fn open_archive(path: &std::path::Path) -> Result<Store> {
    let a = Store::open_sled_waiting(path, ARCHIVE_WAIT)?;
    // The archive has no archive of its own.
    let _ = a.archive.set(None);
    match a.meta.get(SCHEMA_KEY).map_err(store_err)? {
        Some(v) if v.as_ref() == SCHEMA_VERSION.to_be_bytes() => {}
        Some(v) => {
            return Err(Error::Store(format!(
                "{}: schema version {:?} is not one this mtlsca reads ({SCHEMA_VERSION})",
                path.display(),
                v.as_ref()
            )))
        }
        None => {
            a.meta
                .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                .map_err(store_err)?;
        }
    }
    a.tighten_modes()?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChunkItem, ListFilter, SCHEMA_VERSION};

    fn ok(k: &[u8], v: &[u8]) -> Item {
        Ok((sled::IVec::from(k), sled::IVec::from(v)))
    }

    /// The merged read is in key order, once per key, the hot store winning.
    #[test]
    fn merged_reads_are_ordered_once_per_key_hot_first() {
        let hot = vec![ok(b"b", b"hot"), ok(b"d", b"hot")];
        let archive = vec![ok(b"a", b"arc"), ok(b"b", b"arc"), ok(b"c", b"arc")];
        let got: Vec<(Vec<u8>, Vec<u8>)> = merged(hot.into_iter(), Some(archive.into_iter()))
            .map(|i| i.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> =
            [("a", "arc"), ("b", "hot"), ("c", "arc"), ("d", "hot")]
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
        assert_eq!(got, want);
        let alone: Vec<_> = merged(
            vec![ok(b"x", b"1")].into_iter(),
            None::<std::vec::IntoIter<Item>>,
        )
        .collect();
        assert_eq!(alone.len(), 1);
    }

    fn record(serial: &str, not_after: OffsetDateTime, now: OffsetDateTime) -> Record {
        Record {
            schema: SCHEMA_VERSION,
            serial: serial.into(),
            issuer: "device".into(),
            issuer_key_id: "01".into(),
            role: crate::role::Role::Device,
            profile: "device".into(),
            subject: String::new(),
            names: vec![format!("DNS:{serial}.test")],
            not_before: not_after - time::Duration::days(1),
            not_after,
            sha256: format!("{}{}", serial, serial),
            status: Status::Valid,
            revocation: None,
            request_id: Some(format!("req-{serial}")),
            issued_at: now,
            key_file: None,
            replaces: None,
        }
    }

    /// Expired certificates move, a revoked one only after a CRL later than
    /// its expiry; what moved is found where it went, the audit chain spans
    /// both parts, and CRLs no longer read it.
    #[test]
    fn tidy_moves_the_expired_and_keeps_them_reachable() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let (_ca, store) = crate::ca::test_ca(dir.path(), now);
        let s = |c: char| c.to_string().repeat(32);
        let (a, b, c) = (s('a'), s('b'), s('c'));
        let past = now - time::Duration::days(2);
        let recs = [
            record(&a, past, now),
            record(&b, now + time::Duration::days(5), now),
            record(&c, past, now),
        ];
        let items: Vec<ChunkItem<'_>> = recs
            .iter()
            .map(|r| ChunkItem {
                record: r,
                der: b"x",
                issuer_key_id: &[1],
            })
            .collect();
        store.record_chunk(&items, past).unwrap();
        let c_bytes = hex_decode(&c).unwrap();
        store.revoke(&c_bytes, "keyCompromise", past).unwrap();
        // A CRL before c expired: c waits.
        store
            .record_crl_number("device", &[1], 1, 1, past - time::Duration::hours(1))
            .unwrap();
        let opts = TidyOptions {
            expired_before: now,
            dry_run: false,
        };
        let r = store.tidy(&opts, now, &mut |_| {}).unwrap();
        assert_eq!((r.moved, r.waiting_for_crl), (1, 1), "{r:?}");
        assert_eq!(r.first_serial.as_deref(), Some(a.as_str()));
        let a_bytes = hex_decode(&a).unwrap();
        assert!(store.get(&a_bytes).unwrap().is_none());
        let found = store.find(&a).unwrap().unwrap();
        assert!(store.is_archived(&found).unwrap());
        assert_eq!(store.der(&found).unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(
            store
                .by_request_id(&format!("req-{a}"))
                .unwrap()
                .unwrap()
                .serial,
            a
        );
        assert_eq!(store.with_serial_prefix("aaaaaaaa", 5).unwrap().len(), 1);
        assert!(!store.audit_of(&a).unwrap().is_empty());
        assert_eq!(store.revoked_by(&[1]).unwrap().len(), 1);

        // A CRL after c expired: c goes, and leaves the CRLs' source.
        store.record_crl_number("device", &[1], 2, 1, now).unwrap();
        let r = store.tidy(&opts, now, &mut |_| {}).unwrap();
        assert_eq!(
            (r.moved, r.moved_revoked, r.waiting_for_crl),
            (1, 1, 0),
            "{r:?}"
        );
        assert!(store.revoked_by(&[1]).unwrap().is_empty());
        assert_eq!(store.count(), 1);
        let all = ListFilter {
            include_archived: true,
            ..Default::default()
        };
        assert_eq!(store.list(&ListFilter::default(), now).unwrap().len(), 1);
        assert_eq!(store.list(&all, now).unwrap().len(), 3);
        let audit = store.verify_audit().unwrap();
        assert!(audit.damage.is_empty(), "{:?}", audit.damage);
        let log = store.audit(None).unwrap();
        assert_eq!(log.len(), audit.entries);
        assert!(log.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        assert!(!store.archive().unwrap().unwrap().audit.is_empty());
        // Nothing more to move.
        assert_eq!(store.tidy(&opts, now, &mut |_| {}).unwrap().moved, 0);
    }
}
