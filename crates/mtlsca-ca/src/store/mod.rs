//! The store: everything mtlsca knows it issued, in sled. This is the only module
//! that names sled.
//!
//! Trees (keys big-endian so ranges sort):
//! - `certs`:    issuer key id (20 bytes) ‖ serial  → certificate DER
//! - `records`:  serial                               → record (JSON)
//! - `sha256`:   SHA-256 of the DER                   → serial
//! - `expiry`:   notAfter (u64 BE seconds) ‖ serial   → ()
//! - `names`:    lowercased name ‖ 0x00 ‖ serial      → ()
//! - `requests`: request id                           → serial
//! - `audit`:    sequence (u64 BE)                    → entry (JSON, hash-chained)
//! - `meta`:     schema version, audit head, counters, and the audit entries of
//!   each serial (`audit/` ‖ serial ‖ sequence → ()), so `show`
//!   reads a certificate's trail without scanning the log
//!
//! Expired certificates leave these trees for the archive (`<ca-dir>/archive`,
//! the same trees and encoding, opened only when needed): see `archive.rs`.
//!
//! One issuance is one transaction over all trees; `flush` makes it durable before
//! any file of the certificate appears under its final name.

use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::role::Role;

pub mod acme;
mod archive;
pub use archive::{Compacted, TidyOptions, TidyReport, TidyStage};
mod integrity;
pub mod revocation;
pub use integrity::{AuditReport, CheckReport, Damage, ExportSummary};
mod lifecycle;
pub use lifecycle::{ChunkItem, RevokeOutcome, RevokedEntry};
mod retire;
pub use retire::{PendingRetirement, Retired, RETIRE_REASON};

/// The record schema this mtlsca writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
const AUDIT_HEAD: &[u8] = b"audit_head";
/// Prefix of the per-serial audit index in `meta`.
const AUDIT_BY_SERIAL: &[u8] = b"audit/";
const SCHEMA_KEY: &[u8] = b"schema";

/// Whether a certificate still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Issued and not revoked (and, as of the time asked about, not expired).
    Valid,
    /// Revoked (final).
    Revoked,
    /// Only ever computed (from notAfter and the time asked about), never stored.
    Expired,
}

impl Status {
    /// `valid`, `revoked` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
        }
    }

    /// The spelling `as_str` gives, back.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "valid" => Some(Status::Valid),
            "revoked" => Some(Status::Revoked),
            "expired" => Some(Status::Expired),
            _ => None,
        }
    }
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(with = "time::serde::rfc3339")]
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// RFC 5280 reason name, e.g. `keyCompromise`.
    pub reason: String,
}

/// What the store keeps about one certificate (never its private key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The record schema version (`SCHEMA_VERSION`).
    pub schema: u32,
    /// Lowercase hex, no separators.
    pub serial: String,
    /// Which CA signed it: `device` or `entity` (the issuing CAs) or `root`.
    pub issuer: String,
    /// The issuing CA's key identifier, hex.
    pub issuer_key_id: String,
    /// The certificate's role.
    pub role: Role,
    /// The profile it was issued from.
    pub profile: String,
    /// The subject DN as text.
    pub subject: String,
    /// subjectAltNames as `DNS:x`, `IP:x`, `URI:x`, `email:x`.
    pub names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    /// notBefore.
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub sha256: String,
    /// `valid` or `revoked` as stored; `expired` is derived at read time.
    pub status: Status,
    /// When and why it was revoked, if it was.
    pub revocation: Option<Revocation>,
    /// The request id it was issued for (`--request-id`, a batch entry's `id`).
    pub request_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    /// When mtlsca recorded it.
    pub issued_at: OffsetDateTime,
    /// Where the private key was written at issuance (none for signed CSRs).
    pub key_file: Option<String>,
    /// The serial of the certificate this one renewed (`mtlsca renew`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

impl Record {
    /// The status as of `now`: revoked wins over expired.
    pub fn status_at(&self, now: OffsetDateTime) -> Status {
        match self.status {
            Status::Revoked => Status::Revoked,
            _ if self.not_after < now => Status::Expired,
            s => s,
        }
    }

    /// The serial as bytes (empty if the stored hex is damaged).
    pub fn serial_bytes(&self) -> Vec<u8> {
        hex_decode(&self.serial).unwrap_or_default()
    }
}

/// An entry of the audit log. Each carries the SHA-256 of the previous entry's
/// bytes, so an edit anywhere breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    /// When the action happened.
    pub at: OffsetDateTime,
    /// `issue`, `revoke`, `crl` or `roll`.
    pub action: String,
    /// The certificate it concerns, if any.
    pub serial: Option<String>,
    /// The request id of that certificate, if any.
    pub request_id: Option<String>,
    /// What else is worth knowing (profile, subject and names; a reason; a CRL number).
    pub detail: String,
    /// Hex SHA-256 of the previous entry as stored (64 zeros for the first).
    pub prev: String,
}

/// The outcome of recording an issuance.
#[derive(Debug)]
#[non_exhaustive]
pub enum Recorded {
    /// Recorded (not yet flushed: call `flush`).
    New,
    /// The request id was already used: the certificate recorded for it.
    RequestExists(Box<Record>),
    /// The serial is already taken for this issuer: sign again with a new one.
    SerialTaken,
}

/// Filters of `list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this role.
    pub role: Option<Role>,
    /// Only this status (as of the time asked about).
    pub status: Option<Status>,
    /// Only this profile.
    pub profile: Option<String>,
    /// Expiring between now and now + this.
    pub expiring_within: Option<time::Duration>,
    /// Glob (`*`, `?`) over names and subject; a plain string matches as a substring.
    pub name: Option<String>,
    /// Archived certificates too (`list --all`); the hot store only otherwise.
    pub include_archived: bool,
}

/// Part of a long read ([`Store::list_page`], [`Store::audit_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// What matched in this part.
    pub items: Vec<T>,
    /// Where the next part starts (an opaque cursor), `None` at the end.
    pub next: Option<Vec<u8>>,
}

/// The open store of one CA: holds sled's lock (no other process opens it) until dropped.
pub struct Store {
    path: std::path::PathBuf,
    db: sled::Db,
    certs: sled::Tree,
    records: sled::Tree,
    sha256: sled::Tree,
    expiry: sled::Tree,
    names: sled::Tree,
    requests: sled::Tree,
    audit: sled::Tree,
    meta: sled::Tree,
    /// Certificates revoked through this handle since it was opened: the
    /// signal that CRLs are due ([`Store::revocations`]).
    revocations: std::sync::atomic::AtomicU64,
    /// How many of those the CRLs published through this handle cover.
    published_upto: std::sync::atomic::AtomicU64,
    /// The archive (`archive.rs`), opened on first use; `Some(None)`: there is none.
    archive: std::sync::OnceLock<Option<Box<Store>>>,
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// `Store::flush` for a sled handle (shared with [`acme::AcmeStore`]).
fn flush_db(db: &sled::Db, path: &Path) -> Result<()> {
    db.flush().map_err(store_err)?;
    let data = path.join("db");
    if data.exists() {
        std::fs::File::open(&data)
            .and_then(|f| f.sync_data())
            .map_err(|e| Error::Store(format!("fsync {}: {e}", data.display())))?;
    }
    crate::fsutil::sync_dir(path)?;
    Ok(())
}

/// An open told never to give up returned without a store (cannot happen).
fn never_gives_up() -> Error {
    Error::State("the store's open gave up by itself".into())
}

/// sled 0.34 refuses a second opener at once with this lock error; we wait instead.
fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}

/// The CA a store belongs to: the key identifier (hex) of each of its three CAs,
/// by name (`root`, `device`, `entity`). Recorded at `init` (and `restore`) and
/// compared at every open, so a store that does not belong to the CA is refused.
pub type CaKeyIds = std::collections::BTreeMap<String, String>;

/// Where the CA's key identifiers are kept in `meta`.
const CA_KEY_IDS: &[u8] = b"ca_key_ids";

/// sled's page cache in a command: it reads a few pages, and a `batch` of
/// 100,000 stays within its memory target (BENCHMARKS.md).
pub const COMMAND_CACHE: u64 = 16 * 1024 * 1024;

/// sled's page cache in `serve`, which holds the store for long: with the
/// command's 16 MiB, ACME's orders and authorizations soon outgrew the cache
/// and every order cost more CPU than the one before (8–9 % more orders/s
/// with this, BENCHMARKS.md). A ceiling, not an allocation.
pub const HELD_CACHE: u64 = 256 * 1024 * 1024;

/// How to get a CA's records back when its store is gone or unusable.
pub const RESTORE_HINT: &str = "bring the CA back from a backup with `mtlsca --ca-dir NEW-DIR restore BACKUP-DIR` (README, \"Failures and recovery\"): mtlsca creates a store only at `init` and `restore`, never in place of a lost one";

impl Store {
    /// Open the existing store under `<ca-dir>/db`, waiting up to `wait` for another
    /// process to release it. The store must exist (only `init` and `restore`
    /// create one, see `create`) and belong to the CA in `ca_dir` (its key
    /// identifiers and schema); anything else is exit 3 naming what is missing.
    /// A snapshot that sled left half-written (a full disk, a kill) is removed
    /// and the store reopened from its log.
    pub fn open(ca_dir: &Path, wait: Duration) -> Result<Store> {
        Store::open_unless(ca_dir, wait, &mut || false)?.ok_or_else(never_gives_up)
    }

    /// `open` for a process that holds the store for long (`serve`'s engine):
    /// sled may cache up to [`HELD_CACHE`] of it instead of [`COMMAND_CACHE`].
    pub fn open_held(ca_dir: &Path, wait: Duration) -> Result<Store> {
        Store::open_at(ca_dir, wait, HELD_CACHE, &mut || false)?.ok_or_else(never_gives_up)
    }

    /// `open`, but while another process holds the lock, ask `give_up` before
    /// each retry: `None` when it said yes (a command that finds `serve`
    /// starting up goes to its socket instead of waiting out the lock).
    pub fn open_unless(
        ca_dir: &Path,
        wait: Duration,
        give_up: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Store>> {
        Store::open_at(ca_dir, wait, COMMAND_CACHE, give_up)
    }

    fn open_at(
        ca_dir: &Path,
        wait: Duration,
        cache: u64,
        give_up: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Store>> {
        let path = ca_dir.join("db");
        check_present(&path)?;
        let Some(store) = Store::open_sled(&path, wait, cache, give_up)? else {
            return Ok(None);
        };
        store.check_schema()?;
        let expected = crate::ca::key_ids(ca_dir)?;
        store.check_owner(&expected)?;
        // sled creates its files (a new snapshot at each open) with the umask's modes.
        store.tighten_modes()?;
        Ok(Some(store))
    }

    /// Create the store of a new CA under `<ca-dir>/db` (`init`, `restore`),
    /// recording the schema and the CA's key identifiers, and flush it. Refuses
    /// a `db` that already exists.
    pub fn create(ca_dir: &Path, owner: &CaKeyIds) -> Result<Store> {
        let path = ca_dir.join("db");
        if path.exists() {
            return Err(Error::State(format!(
                "{} already exists; refusing to create a store over it",
                path.display()
            )));
        }
        crate::fsutil::create_dir_mode(&path, 0o700).map_err(|e| Error::io(&path, e))?;
        let store = Store::open_sled_waiting(&path, Duration::ZERO)?;
        store
            .meta
            .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
            .map_err(store_err)?;
        store.set_owner(owner)?;
        store.flush()?;
        store.tighten_modes()?;
        Ok(store)
    }

    /// Record the CA a store belongs to (`create`, and `restore` after an import).
    pub fn set_owner(&self, owner: &CaKeyIds) -> Result<()> {
        let v = serde_json::to_vec(owner).map_err(store_err)?;
        self.meta.insert(CA_KEY_IDS, v).map_err(store_err)?;
        Ok(())
    }

    /// The CA this store says it belongs to (`None` for a store made before this
    /// was recorded).
    pub fn owner(&self) -> Result<Option<CaKeyIds>> {
        match self.meta.get(CA_KEY_IDS).map_err(store_err)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| Error::Store(format!("damaged CA key identifiers: {e}"))),
        }
    }

    /// Refuse a store that belongs to another CA: every CA generation of the
    /// directory (name and key id) must be one the store knows. The store may
    /// know more: `ca roll` records a new generation in the store before
    /// `ca.toml` names it, so a roll interrupted between the two still opens.
    /// A store from before the key identifiers were recorded is adopted when
    /// its first record was issued by one of this CA's keys (or it holds none).
    pub fn check_owner(&self, expected: &CaKeyIds) -> Result<()> {
        match self.owner()? {
            Some(found) if expected.iter().all(|(k, v)| found.get(k) == Some(v)) => Ok(()),
            Some(found) => {
                let differs: Vec<String> = expected
                    .iter()
                    .filter(|(k, v)| found.get(*k) != Some(*v))
                    .map(|(k, v)| {
                        format!(
                            "{k} CA key id {v} here, {} in the store",
                            found.get(k).map_or("none", String::as_str)
                        )
                    })
                    .collect();
                Err(Error::Store(format!(
                    "{} belongs to another CA ({}); refusing to mix two CAs' records: put this CA's own store back, or {RESTORE_HINT}",
                    self.path.display(),
                    differs.join(", ")
                )))
            }
            None => {
                if let Some(item) = self.records.iter().next() {
                    let (_, v) = item.map_err(store_err)?;
                    let rec = decode_record(&v)?;
                    if !expected.values().any(|k| *k == rec.issuer_key_id) {
                        return Err(Error::Store(format!(
                            "{} holds certificates of another CA (issuer key id {}); {RESTORE_HINT}",
                            self.path.display(),
                            rec.issuer_key_id
                        )));
                    }
                }
                self.set_owner(expected)?;
                self.flush()
            }
        }
    }

    /// Record new CA generations (`ca roll`): their names and key ids join the
    /// store's owner record (a name recorded before by a roll that never
    /// reached `ca.toml` is replaced), with a `roll` audit entry saying
    /// `detail`, in one transaction. Call `flush` afterwards.
    pub fn record_roll(&self, added: &CaKeyIds, detail: &str, now: OffsetDateTime) -> Result<()> {
        let result = (&self.audit, &self.meta).transaction(|(audit, meta)| {
            let mut owner: CaKeyIds = match meta.get(CA_KEY_IDS)? {
                Some(v) => serde_json::from_slice(&v).map_err(|e| {
                    ConflictableTransactionError::Abort(Error::Store(format!(
                        "damaged CA key identifiers: {e}"
                    )))
                })?,
                None => CaKeyIds::new(),
            };
            owner.extend(added.iter().map(|(k, v)| (k.clone(), v.clone())));
            let v = serde_json::to_vec(&owner)
                .map_err(|e| ConflictableTransactionError::Abort(store_err(e)))?;
            meta.insert(CA_KEY_IDS, v)?;
            append_audit(audit, meta, now, "roll", None, None, detail)?;
            Ok(())
        });
        result.map_err(tx_err)
    }

    /// The schema version must be there (a store without it is empty: not one
    /// `init` made) and be one this mtlsca reads.
    fn check_schema(&self) -> Result<()> {
        match self.meta.get(SCHEMA_KEY).map_err(store_err)? {
            Some(v) if v.as_ref() == SCHEMA_VERSION.to_be_bytes() => Ok(()),
            None => Err(Error::Store(format!(
                "{} is empty: it is not the store `init` created (its files were removed or replaced); {RESTORE_HINT}",
                self.path.display()
            ))),
            Some(v) => Err(Error::Store(format!(
                "schema version {:?} is not one this mtlsca reads ({SCHEMA_VERSION})",
                v.as_ref()
            ))),
        }
    }

    /// Directories 0700 and files 0600 under `db/`, whatever the umask.
    fn tighten_modes(&self) -> Result<()> {
        crate::fsutil::set_mode(&self.path, 0o700)?;
        let entries = std::fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.path, e))?;
            let p = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue; // removed meanwhile (an old snapshot)
            };
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if meta.file_type().is_symlink() || meta.permissions().mode() & 0o777 == want {
                    continue;
                }
            }
            crate::fsutil::set_mode(&p, want)?;
        }
        Ok(())
    }

    /// `open_sled` that never gives up before `wait` is over.
    #[doc(hidden)]
    pub fn open_sled_waiting(path: &Path, wait: Duration) -> Result<Store> {
        Store::open_sled(path, wait, COMMAND_CACHE, &mut || false)?.ok_or_else(never_gives_up)
    }

    /// Open sled at `path` (which `open` checked or `create` made), waiting for
    /// another process's lock and recovering from an interrupted snapshot.
    fn open_sled(
        path: &Path,
        wait: Duration,
        cache: u64,
        give_up: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Store>> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        let mut recovered = false;
        let db = loop {
            let cfg = sled::Config::new()
                .path(path)
                // We flush explicitly at the points that must be durable.
                .flush_every_ms(None)
                .cache_capacity(cache);
            let locked = match cfg.open() {
                Ok(db) => break db,
                Err(e) if is_lock_error(&e) => true,
                Err(sled::Error::Corruption { .. }) if !recovered => {
                    match recover_interrupted_snapshot(path)? {
                        Recovery::Removed => {
                            recovered = true;
                            continue;
                        }
                        Recovery::Locked => true,
                        Recovery::Nothing => {
                            return Err(Error::Store(format!(
                                "cannot open {}: sled reports corrupted data, and no half-written snapshot explains it; {RESTORE_HINT}",
                                path.display()
                            )))
                        }
                    }
                }
                Err(e) => {
                    let hint = match &e {
                        sled::Error::Corruption { .. } => format!("; {RESTORE_HINT}"),
                        sled::Error::Io(io) if io.raw_os_error() == Some(28) => {
                            "; the file system is full: free some space and run the command again (nothing recorded is lost)".into()
                        }
                        _ => String::new(),
                    };
                    return Err(Error::Store(format!(
                        "cannot open {}: {e}{hint}",
                        path.display()
                    )));
                }
            };
            debug_assert!(locked);
            if give_up() {
                return Ok(None);
            }
            if start.elapsed() >= wait {
                return Err(Error::Store(format!(
                    "{} is locked by another mtlsca process; gave up after {:.1}s (raise --lock-timeout to wait longer)",
                    path.display(),
                    wait.as_secs_f64()
                )));
            }
            // Random jitter so that waiting processes do not retry in lockstep.
            let jitter = Duration::from_micros(u64::from(random_u16() % 2000));
            std::thread::sleep(pause + jitter);
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        let tree = |name: &str| db.open_tree(name).map_err(store_err);
        Ok(Some(Store {
            certs: tree("certs")?,
            records: tree("records")?,
            sha256: tree("sha256")?,
            expiry: tree("expiry")?,
            names: tree("names")?,
            requests: tree("requests")?,
            audit: tree("audit")?,
            meta: tree("meta")?,
            revocations: std::sync::atomic::AtomicU64::new(0),
            published_upto: std::sync::atomic::AtomicU64::new(0),
            path: path.to_path_buf(),
            db,
            archive: std::sync::OnceLock::new(),
        }))
    }

    /// Make every recorded change durable. sled 0.34's flush syncs its log with
    /// `sync_file_range`, which does not promise that file metadata (size, new
    /// extents) reaches the disk, nor empties the disk's write cache; an
    /// `fdatasync` of the data file and an fsync of the directory afterwards do.
    /// (`fdatasync`, not `fsync`: it carries the size and extents the data needs
    /// but not the modification time, so a flush that did not grow the file
    /// costs a cache flush instead of a journal commit.)
    pub fn flush(&self) -> Result<()> {
        flush_db(&self.db, &self.path)
    }

    /// The trees one issuance writes, in the order `IssueTx::of` expects.
    fn issue_trees(&self) -> IssueTrees<'_> {
        (
            &self.records,
            &self.certs,
            &self.sha256,
            &self.expiry,
            &self.names,
            &self.requests,
            &self.audit,
            &self.meta,
        )
    }

    /// The record of a serial (16 bytes as issued, or any bytes for foreign lookups).
    pub fn get(&self, serial: &[u8]) -> Result<Option<Record>> {
        match self.records.get(serial).map_err(store_err)? {
            None => Ok(None),
            Some(v) => decode_record(&v).map(Some),
        }
    }

    /// The certificate DER of a record.
    pub fn der(&self, rec: &Record) -> Result<Option<Vec<u8>>> {
        let kid = hex_decode(&rec.issuer_key_id).unwrap_or_default();
        let key = cat(&[&kid, &rec.serial_bytes()]);
        match self.certs.get(key).map_err(store_err)? {
            Some(v) => Ok(Some(v.to_vec())),
            None => match self.archive()? {
                Some(a) => a.der(rec),
                None => Ok(None),
            },
        }
    }

    /// Find by serial (any case, colons, leading zeros) or SHA-256 fingerprint.
    pub fn find(&self, query: &str) -> Result<Option<Record>> {
        let clean: String = query
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if clean.is_empty() || !clean.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Usage(format!(
                "`{}` is neither a serial nor a SHA-256 fingerprint (hex expected)",
                crate::names::printable(query)
            )));
        }
        if clean.len() == 64 {
            if let Some(serial) = self
                .sha256
                .get(hex_decode(&clean).unwrap_or_default())
                .map_err(store_err)?
            {
                return self.get_anywhere(&serial);
            }
        }
        match normalize_serial(&clean) {
            Some(bytes) => match self.get(&bytes)? {
                Some(r) => Ok(Some(r)),
                None => self.archived_find(&clean),
            },
            None => self.archived_find(&clean),
        }
    }

    /// Records whose serial (lowercase hex, as printed) starts with `hex_prefix`
    /// (lowercase hex digits), at most `limit` of them, in serial order.
    pub fn with_serial_prefix(&self, hex_prefix: &str, limit: usize) -> Result<Vec<Record>> {
        let whole = &hex_prefix[..hex_prefix.len() - hex_prefix.len() % 2];
        let bytes = hex_decode(whole).unwrap_or_default();
        let mut out = Vec::new();
        for item in self.records.scan_prefix(bytes) {
            let (_, v) = item.map_err(store_err)?;
            let r = decode_record(&v)?;
            if r.serial.starts_with(hex_prefix) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        self.archived_with_serial_prefix(hex_prefix, limit, &mut out)?;
        Ok(out)
    }

    /// The record issued for a request id, if any.
    pub fn by_request_id(&self, id: &str) -> Result<Option<Record>> {
        match self.requests.get(id.as_bytes()).map_err(store_err)? {
            None => Ok(None),
            // The request ids of archived certificates stay here, pointing there.
            Some(serial) => self.get_anywhere(&serial),
        }
    }

    /// How many certificates are recorded.
    pub fn count(&self) -> usize {
        self.records.len()
    }

    /// Records matching `filter`, as of `now`, in notAfter order when listing by
    /// expiry and serial order otherwise.
    pub fn list(&self, filter: &ListFilter, now: OffsetDateTime) -> Result<Vec<Record>> {
        Ok(self.list_page(filter, now, None, usize::MAX)?.items)
    }

    /// One page of [`Store::list`]: the matches among at most `budget` records
    /// read after the cursor `after` (a page's `next`; `None`: from the start).
    /// The budget counts records read, not matches, so a page costs the same
    /// whatever the filter: a server answers other requests between pages.
    pub fn list_page(
        &self,
        filter: &ListFilter,
        now: OffsetDateTime,
        after: Option<&[u8]>,
        budget: usize,
    ) -> Result<Page<Record>> {
        let matcher = filter.name.as_deref().map(NameMatcher::new);
        let keep = |r: &Record| {
            filter.role.is_none_or(|role| r.role == role)
                && filter.status.is_none_or(|s| r.status_at(now) == s)
                && filter.profile.as_deref().is_none_or(|p| r.profile == p)
                && matcher.as_ref().is_none_or(|m| m.matches(r))
        };
        let archive = if filter.include_archived {
            self.archive()?
        } else {
            None
        };
        if let Some(within) = filter.expiring_within {
            // The expiry index: only the range that can match is read.
            let mut end = unix_be(now + within).to_vec();
            end.push(0xff);
            let from = match after {
                Some(k) => Bound::Excluded(k.to_vec()),
                None => Bound::Included(unix_be(now).to_vec()),
            };
            let range = (from, Bound::Excluded(end));
            return page(
                archive::merged(
                    self.expiry.range(range.clone()),
                    archive.map(|a| a.expiry.range(range)),
                ),
                budget,
                |k, _| {
                    let r = match self.get(&k[8..])? {
                        Some(r) => Some(r),
                        None => archive.map(|a| a.get(&k[8..])).transpose()?.flatten(),
                    };
                    Ok(r.filter(|r| keep(r)))
                },
            );
        }
        let from = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.to_vec()));
        let range = (from, Bound::Unbounded::<Vec<u8>>);
        page(
            archive::merged(
                self.records.range::<Vec<u8>, _>(range.clone()),
                archive.map(|a| a.records.range::<Vec<u8>, _>(range)),
            ),
            budget,
            |_, v| Ok(Some(decode_record(v)?).filter(|r| keep(r))),
        )
    }

    /// The audit log, oldest first, from `since` on.
    pub fn audit(&self, since: Option<OffsetDateTime>) -> Result<Vec<AuditEntry>> {
        Ok(self.audit_page(since, None, usize::MAX)?.items)
    }

    /// One page of [`Store::audit`]: the entries from `since` on among at most
    /// `budget` read after the cursor `after` (see [`Store::list_page`]).
    pub fn audit_page(
        &self,
        since: Option<OffsetDateTime>,
        after: Option<&[u8]>,
        budget: usize,
    ) -> Result<Page<AuditEntry>> {
        let from = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.to_vec()));
        let range = (from, Bound::Unbounded::<Vec<u8>>);
        // The log is one chain: the archive's older part, then the hot part.
        page(
            archive::merged(
                self.audit.range::<Vec<u8>, _>(range.clone()),
                self.archive()?.map(|a| a.audit.range::<Vec<u8>, _>(range)),
            ),
            budget,
            |_, v| {
                let e: AuditEntry = serde_json::from_slice(v).map_err(store_err)?;
                Ok(since.is_none_or(|s| e.at >= s).then_some(e))
            },
        )
    }

    /// The audit entries that name one serial.
    pub fn audit_of(&self, serial: &str) -> Result<Vec<AuditEntry>> {
        let Some(bytes) = hex_decode(serial) else {
            return Ok(Vec::new());
        };
        let prefix = cat(&[AUDIT_BY_SERIAL, &bytes]);
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(&prefix) {
            let (k, _) = item.map_err(store_err)?;
            let seq = &k[prefix.len()..];
            if let Some(v) = self.audit.get(seq).map_err(store_err)? {
                let e: AuditEntry = serde_json::from_slice(&v).map_err(store_err)?;
                // Serials are unique per issuer, not globally: keep the exact one.
                if e.serial.as_deref() == Some(serial) {
                    out.push(e);
                }
            }
        }
        if out.is_empty() {
            // An archived certificate's trail is indexed in the archive.
            self.archived_audit_of(serial, &bytes, &mut out)?;
        }
        Ok(out)
    }
}

/// Read at most `budget` entries of `entries`, keeping what `pick` returns; the
/// cursor of the next page is the last key read when the budget ran out.
fn page<T>(
    entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    budget: usize,
    mut pick: impl FnMut(&[u8], &[u8]) -> Result<Option<T>>,
) -> Result<Page<T>> {
    let mut items = Vec::new();
    let mut read = 0;
    for item in entries {
        let (k, v) = item.map_err(store_err)?;
        if let Some(x) = pick(&k, &v)? {
            items.push(x);
        }
        read += 1;
        if read == budget {
            return Ok(Page {
                items,
                next: Some(k.to_vec()),
            });
        }
    }
    Ok(Page { items, next: None })
}

/// A random number for backoff jitter (0 if the OS generator fails: jitter is a nicety).
fn random_u16() -> u16 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

/// Refuse (exit 3) a CA whose store is gone or incomplete, before sled could
/// create an empty one in its place.
fn check_present(path: &Path) -> Result<()> {
    let missing: Vec<&str> = ["conf", "db"]
        .into_iter()
        .filter(|f| {
            std::fs::metadata(path.join(f))
                .map(|m| !m.is_file() || m.len() == 0)
                .unwrap_or(true)
        })
        .collect();
    if !path.is_dir() {
        return Err(Error::Store(format!(
            "this CA has no store: {} is missing (the records of every certificate it issued and revoked); {RESTORE_HINT}",
            path.display()
        )));
    }
    if !missing.is_empty() {
        return Err(Error::Store(format!(
            "this CA's store is incomplete: {} lacks {}; {RESTORE_HINT}",
            path.display(),
            missing.join(" and ")
        )));
    }
    Ok(())
}

/// What `recover_interrupted_snapshot` did.
enum Recovery {
    /// Removed half-written snapshots: open again.
    Removed,
    /// Another process holds the store: wait for it.
    Locked,
    /// Nothing to remove: the corruption is something else.
    Nothing,
}

/// sled 0.34 writes a snapshot to `snap.<lsn>.generating` and renames it when
/// complete; a full disk or a kill in between leaves the partial file, which sled
/// then reads as the newest snapshot and reports as corruption forever. The file
/// never became a snapshot, so removing it loses nothing: sled rebuilds from the
/// previous snapshot and its log. Done only while holding sled's own lock (an
/// `flock` on `db/db`), so a snapshot another process is writing is never touched.
fn recover_interrupted_snapshot(path: &Path) -> Result<Recovery> {
    let generating: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io(path, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("snap.") && n.ends_with(".generating")
            })
        })
        .collect();
    if generating.is_empty() {
        return Ok(Recovery::Nothing);
    }
    let data = path.join("db");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&data)
        .map_err(|e| Error::io(&data, e))?;
    #[cfg(unix)]
    {
        use rustix::fs::{flock, FlockOperation};
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            return Ok(Recovery::Locked);
        }
    }
    for p in &generating {
        std::fs::remove_file(p).map_err(|e| Error::io(p, e))?;
    }
    crate::fsutil::sync_dir(path)?;
    drop(file); // releases the lock
    Ok(Recovery::Removed)
}

type IssueTrees<'a> = (
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
    &'a sled::Tree,
);

type IssueTxTrees = (
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
    TransactionalTree,
);

/// The trees of an issuance inside a transaction, by name.
struct IssueTx<'t> {
    records: &'t TransactionalTree,
    certs: &'t TransactionalTree,
    sha256: &'t TransactionalTree,
    expiry: &'t TransactionalTree,
    names: &'t TransactionalTree,
    requests: &'t TransactionalTree,
    audit: &'t TransactionalTree,
    meta: &'t TransactionalTree,
}

impl<'t> IssueTx<'t> {
    fn of(t: &'t IssueTxTrees) -> IssueTx<'t> {
        IssueTx {
            records: &t.0,
            certs: &t.1,
            sha256: &t.2,
            expiry: &t.3,
            names: &t.4,
            requests: &t.5,
            audit: &t.6,
            meta: &t.7,
        }
    }
}

/// One certificate to record, encoded once outside the transaction (sled may run
/// a transaction's closure more than once).
struct Issuing<'a> {
    rec: &'a Record,
    rec_json: Vec<u8>,
    serial: Vec<u8>,
    sha: Vec<u8>,
    der: &'a [u8],
    issuer_key_id: &'a [u8],
    detail: String,
}

impl<'a> Issuing<'a> {
    fn new(rec: &'a Record, der: &'a [u8], issuer_key_id: &'a [u8]) -> Result<Issuing<'a>> {
        Ok(Issuing {
            rec,
            rec_json: serde_json::to_vec(rec).map_err(store_err)?,
            serial: hex_decode(&rec.serial).ok_or_else(|| store_err("bad serial"))?,
            sha: hex_decode(&rec.sha256).ok_or_else(|| store_err("bad sha256"))?,
            der,
            issuer_key_id,
            detail: match &rec.replaces {
                Some(old) => format!(
                    "{} {} {} renews {old}",
                    rec.profile,
                    rec.subject,
                    rec.names.join(",")
                ),
                None => format!("{} {} {}", rec.profile, rec.subject, rec.names.join(",")),
            },
        })
    }
}

/// The writes of one issuance inside a transaction: record, certificate, indexes
/// and audit entry. `None` when recorded; otherwise why not (nothing written).
fn insert_issued(
    t: &IssueTx<'_>,
    i: &Issuing<'_>,
    now: OffsetDateTime,
) -> TxResult<Option<Recorded>> {
    let (rec, serial) = (i.rec, i.serial.as_slice());
    if let Some(id) = &rec.request_id {
        if let Some(existing) = t.requests.get(id.as_bytes())? {
            let found = t.records.get(&existing)?;
            return Ok(found.map(|r| match serde_json::from_slice::<Record>(&r) {
                Ok(r) => Recorded::RequestExists(Box::new(r)),
                Err(_) => Recorded::SerialTaken,
            }));
        }
    }
    if t.records.get(serial)?.is_some() {
        return Ok(Some(Recorded::SerialTaken));
    }
    t.records.insert(serial, i.rec_json.as_slice())?;
    t.certs.insert(cat(&[i.issuer_key_id, serial]), i.der)?;
    t.sha256.insert(i.sha.as_slice(), serial)?;
    t.expiry
        .insert(cat(&[&unix_be(rec.not_after), serial]), &[] as &[u8])?;
    for n in index_names(rec) {
        t.names
            .insert(cat(&[n.as_bytes(), &[0], serial]), &[] as &[u8])?;
    }
    if let Some(id) = &rec.request_id {
        t.requests.insert(id.as_bytes(), serial)?;
    }
    append_audit(
        t.audit,
        t.meta,
        now,
        "issue",
        Some(&rec.serial),
        rec.request_id.as_deref(),
        &i.detail,
    )?;
    Ok(None)
}

fn decode_record(v: &[u8]) -> Result<Record> {
    serde_json::from_slice(v).map_err(|e| Error::Store(format!("damaged record: {e}")))
}

fn tx_err(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => store_err(e),
    }
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

/// Append one audit entry inside a transaction, chaining it to the head.
fn append_audit(
    audit: &TransactionalTree,
    meta: &TransactionalTree,
    now: OffsetDateTime,
    action: &str,
    serial: Option<&str>,
    request_id: Option<&str>,
    detail: &str,
) -> TxResult<()> {
    let (seq, prev) = match meta.get(AUDIT_HEAD)? {
        Some(h) if h.len() == 40 => {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&h[..8]);
            (u64::from_be_bytes(seq) + 1, hex_encode(&h[8..]))
        }
        _ => (0, "0".repeat(64)),
    };
    let entry = AuditEntry {
        seq,
        at: now,
        action: action.into(),
        serial: serial.map(String::from),
        request_id: request_id.map(String::from),
        detail: detail.into(),
        prev,
    };
    let bytes = serde_json::to_vec(&entry)
        .map_err(|e| ConflictableTransactionError::Abort(store_err(e)))?;
    let hash = ring::digest::digest(&ring::digest::SHA256, &bytes);
    audit.insert(&seq.to_be_bytes(), bytes)?;
    if let Some(serial) = serial.and_then(hex_decode) {
        meta.insert(
            cat(&[AUDIT_BY_SERIAL, &serial, &seq.to_be_bytes()]),
            &[] as &[u8],
        )?;
    }
    meta.insert(AUDIT_HEAD, cat(&[&seq.to_be_bytes(), hash.as_ref()]))?;
    Ok(())
}

/// The names a record is indexed under: SAN values and the subject's CN.
fn index_names(rec: &Record) -> Vec<String> {
    let mut v: Vec<String> = rec.names.iter().map(|n| name_value(n)).collect();
    v.sort();
    v.dedup();
    v
}

/// A record's name without its kind, lowercased: `DNS:Web.Test` → `web.test`.
fn name_value(tagged: &str) -> String {
    tagged
        .split_once(':')
        .map_or(tagged, |(_, v)| v)
        .to_lowercase()
}

/// `--name` matching: glob with `*` and `?` when present, else substring; case-insensitive.
struct NameMatcher {
    pattern: Vec<char>,
    glob: bool,
}

impl NameMatcher {
    fn new(p: &str) -> NameMatcher {
        NameMatcher {
            pattern: p.to_lowercase().chars().collect(),
            glob: p.contains(['*', '?']),
        }
    }

    fn matches(&self, r: &Record) -> bool {
        let values = r
            .names
            .iter()
            .map(|n| name_value(n))
            .chain(std::iter::once(r.subject.to_lowercase()));
        let mut values = values;
        values.any(|v| {
            let chars: Vec<char> = v.chars().collect();
            if self.glob {
                glob(&self.pattern, &chars)
            } else {
                v.contains(&self.pattern.iter().collect::<String>())
            }
        })
    }
}

fn glob(p: &[char], s: &[char]) -> bool {
    // Iterative matcher with backtracking on the last `*`: linear in practice.
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

fn unix_be(t: OffsetDateTime) -> [u8; 8] {
    (t.unix_timestamp().max(0) as u64).to_be_bytes()
}

pub use crate::hex::{decode as hex_decode, encode as hex_encode};

/// A serial as typed by a user (hex, any case, leading zeros) → the 16 bytes mtlsca
/// issues (its serials are 16 bytes with a non-zero first byte), or the minimal
/// encoding when it is not 16 bytes long.
pub fn normalize_serial(hex: &str) -> Option<Vec<u8>> {
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        return None;
    }
    let padded = if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed.to_string()
    };
    hex_decode(&padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_input_is_normalised() {
        assert_eq!(normalize_serial("00ab"), Some(vec![0xab]));
        assert_eq!(normalize_serial("abc"), Some(vec![0x0a, 0xbc]));
        assert_eq!(normalize_serial("000"), None);
    }

    #[test]
    fn globbing() {
        let g = |p: &str, s: &str| {
            glob(
                &p.chars().collect::<Vec<_>>(),
                &s.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("*.corp.internal", "web.corp.internal"));
        assert!(g("web-??", "web-01"));
        assert!(!g("web-??", "web-1"));
        assert!(g("*", ""));
        assert!(!g("a*b", "acd"));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex_encode(&[0, 1, 0xab]), "0001ab");
        assert_eq!(hex_decode("0001ab"), Some(vec![0, 1, 0xab]));
        assert_eq!(hex_decode("0g"), None);
    }

    /// Every part of a read in parts, following the cursors; and how many parts.
    fn read_all<T>(part: &mut dyn FnMut(Option<&[u8]>) -> Page<T>) -> (Vec<T>, usize) {
        let (mut items, mut after, mut parts) = (Vec::new(), None::<Vec<u8>>, 0);
        loop {
            let p = part(after.as_deref());
            items.extend(p.items);
            parts += 1;
            match p.next {
                Some(n) => after = Some(n),
                None => return (items, parts),
            }
        }
    }

    /// Reading in parts of any size gives what one read gives: every record
    /// once, in the same order, for the serial scan, the expiry index and the
    /// audit log alike.
    #[test]
    fn a_read_in_parts_of_any_size_is_the_whole_read() {
        use crate::issue::{IssuanceRequest, Issuer, KeySource, Output, RunOptions};
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let reqs: Vec<IssuanceRequest> = (0..23)
            .map(|i| IssuanceRequest {
                profile: "device".into(),
                content: crate::policy::RequestedContent {
                    dns: vec![format!("h{i}.test")],
                    validity: (i % 3 == 0).then(|| format!("{}d", 5 + i)),
                    ..Default::default()
                },
                key: KeySource::Generate(None),
                request_id: None,
                output: Output::None,
                origin: crate::rules::Origin::Arguments,
                replaces: None,
            })
            .collect();
        Issuer::new(&ca, &store)
            .unwrap()
            .issue_all(&reqs, &RunOptions::batch(), now, &mut |_, r| {
                r.unwrap();
            })
            .unwrap();
        let filters = [
            ListFilter::default(),
            ListFilter {
                expiring_within: Some(time::Duration::days(30)),
                ..Default::default()
            },
            ListFilter {
                name: Some("h1*".into()),
                ..Default::default()
            },
        ];
        for filter in &filters {
            let whole = store.list(filter, now).unwrap();
            assert!(!whole.is_empty());
            for budget in [1, 2, 5, 23, 24, 100] {
                let (parts, pages) = read_all(&mut |after| {
                    let p = store.list_page(filter, now, after, budget).unwrap();
                    assert!(p.items.len() <= budget);
                    p
                });
                assert_eq!(parts, whole, "{filter:?} in parts of {budget}");
                assert!(pages > 1 || budget >= whole.len());
            }
        }
        let whole = store.audit(None).unwrap();
        assert!(whole.len() >= 23);
        let (parts, _) = read_all(&mut |after| store.audit_page(None, after, 4).unwrap());
        assert_eq!(parts.len(), whole.len());
        assert!(parts
            .iter()
            .zip(&whole)
            .all(|(a, b)| a.at == b.at && a.serial == b.serial && a.action == b.action));
    }
}
