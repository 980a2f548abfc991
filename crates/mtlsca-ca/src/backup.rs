//! Backup and restore of a whole CA.
//!
//! `backup` writes, while holding the store's lock (no other mtlsca process can
//! issue or revoke meanwhile):
//!
//! ```text
//! DIR/MANIFEST.json     format, version, CA name, SHA-256 of every file, store counts
//! DIR/ca.toml, root.pem, device-ca.pem, entity-ca.pem
//! DIR/private/*.key     the CA keys exactly as stored (encrypted ones stay encrypted), 0600
//! DIR/profiles/*.toml   the CA's profiles
//! DIR/crl/*             the latest CRLs, if any
//! DIR/store.jsonl       every tree of the store (see `store::integrity`)
//! ```
//!
//! It is built in a hidden sibling directory and renamed to `DIR` when complete, so
//! a half-written backup never carries the name. The store must pass `check` first.
//!
//! `restore` brings a backup back into a new CA directory: it checks every file's
//! SHA-256 against the manifest before writing anything, imports the store, runs
//! `check` on the result and compares its counts and audit head with the manifest,
//! and writes `ca.toml` (the mark of a complete CA) last. On any failure it removes
//! what it created.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ca::{Ca, CaKind, CONFIG_FILE};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::store::{hex_encode, Store};

/// The manifest's file name inside a backup.
pub const MANIFEST: &str = "MANIFEST.json";
/// The store export's file name inside a backup.
pub const STORE_EXPORT: &str = "store.jsonl";
/// The archive's export (`store tidy`), in the same format, when there is one.
pub const ARCHIVE_EXPORT: &str = "archive.jsonl";
const FORMAT: &str = "mtlsca-backup";
const VERSION: u32 = 1;
/// Largest single file copied into or out of a backup (CRLs of a big CA included).
const MAX_FILE: u64 = 64 * 1024 * 1024;
/// Largest store export restored.
const MAX_EXPORT: u64 = 4 * 1024 * 1024 * 1024;
/// The sub-directories whose regular files travel, and the modes they get back.
const SUBDIRS: [(&str, u32, u32); 3] = [
    ("private", 0o700, 0o600),
    ("profiles", 0o750, 0o644),
    ("crl", 0o750, 0o644),
];

/// `MANIFEST.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `mtlsca-backup`.
    pub format: String,
    /// The backup format version.
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    /// When the backup was taken.
    pub created: OffsetDateTime,
    /// The CA's name (`ca.toml`).
    pub ca_name: String,
    /// Whether the CA keys in the backup are encrypted.
    pub encrypted_keys: bool,
    /// Relative path → SHA-256 (hex) of every file but the manifest.
    pub files: BTreeMap<String, String>,
    /// How many certificate records the store held.
    pub records: usize,
    /// How many audit entries the store held.
    pub audit_entries: usize,
    /// The audit log's head (sequence and hash) at backup time.
    pub audit_head: Option<String>,
    /// Records in the archive (`archive.jsonl`); absent when there is none, so
    /// such a backup reads as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub archived_records: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn sha256_hex(data: &[u8]) -> String {
    hex_encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Read a regular file (never through a symlink), bounded.
fn read_regular(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let meta = fs::symlink_metadata(path).at(path)?;
    if !meta.file_type().is_file() {
        return Err(Error::input(
            format!("{what} {}", path.display()),
            "is not a regular file",
        ));
    }
    if meta.len() > limit {
        return Err(Error::input(
            format!("{what} {}", path.display()),
            format!("larger than {} MiB", limit / (1024 * 1024)),
        ));
    }
    fs::read(path).at(path)
}

/// The files of a CA directory that a backup carries (relative paths, sorted).
fn ca_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = vec![CONFIG_FILE.to_string()];
    out.extend(CaKind::ALL.iter().map(|k| k.cert_file().to_string()));
    // Later CA generations and link certificates (`ca roll`).
    let mut generations = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if crate::ca::is_generation_file(&name) && entry.file_type().at(entry.path())?.is_file() {
            generations.push(name);
        }
    }
    generations.sort();
    out.extend(generations);
    for (sub, _, _) in SUBDIRS {
        let d = dir.join(sub);
        if !d.is_dir() {
            continue;
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&d).at(&d)? {
            let entry = entry.at(&d)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Regular files only; temporaries (dot files) of an interrupted write stay behind.
            if entry.file_type().at(entry.path())?.is_file() && !name.starts_with('.') {
                names.push(format!("{sub}/{name}"));
            }
        }
        names.sort();
        out.extend(names);
    }
    Ok(out)
}

/// Whether a manifest path is one a backup may hold: a known top-level file or a
/// plain file name in one of the sub-directories (no `..`, no hidden names).
fn allowed_path(rel: &str) -> Option<u32> {
    if rel == CONFIG_FILE
        || CaKind::ALL.iter().any(|k| k.cert_file() == rel)
        || crate::ca::is_generation_file(rel)
    {
        return Some(0o644);
    }
    let (sub, name) = rel.split_once('/')?;
    let (_, _, mode) = SUBDIRS.iter().find(|(s, _, _)| *s == sub)?;
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 255;
    plain.then_some(*mode)
}

/// What `backup` wrote.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// Where the backup was written.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Back up the CA in `ca.dir` (whose store `store` is, held open) into `dest`.
pub fn backup(ca: &Ca, store: &Store, dest: &Path, now: OffsetDateTime) -> Result<BackupSummary> {
    if dest.exists() {
        return Err(Error::Usage(format!(
            "{} already exists; a backup goes into a new directory",
            dest.display()
        )));
    }
    let report = store.check()?;
    if !report.healthy() {
        return Err(Error::Store(format!(
            "`store check` finds {} problem(s); nothing was backed up (run `mtlsca store check`)",
            report.damage.len()
        )));
    }
    let tmp = fsutil::temp_sibling(dest, "partial");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    let result = write_backup(ca, store, &tmp, report, now).and_then(|m| {
        fsutil::sync_dir(&tmp)?;
        fs::rename(&tmp, dest).at(dest)?;
        if let Some(parent) = dest.parent() {
            fsutil::sync_dir(parent)?;
        }
        Ok(m)
    });
    match result {
        Ok(manifest) => Ok(BackupSummary {
            dir: dest.to_path_buf(),
            manifest,
        }),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn write_backup(
    ca: &Ca,
    store: &Store,
    tmp: &Path,
    report: crate::store::CheckReport,
    now: OffsetDateTime,
) -> Result<Manifest> {
    // It holds the CA keys: nobody else enters, whatever the umask, not even
    // for a moment (made with its mode, not changed after).
    fsutil::create_dir_all_mode(tmp, 0o700)?;
    for (sub, dir_mode, _) in SUBDIRS {
        let d = tmp.join(sub);
        fsutil::create_dir_mode(&d, dir_mode).at(&d)?;
    }
    let mut files = BTreeMap::new();
    for rel in ca_files(&ca.dir)? {
        let src = ca.dir.join(&rel);
        if !src.exists() && rel.contains('/') {
            continue;
        }
        let data = zeroize::Zeroizing::new(read_regular(&src, MAX_FILE, "CA file").map_err(
            |e| match e {
                Error::Input { what, msg } => Error::State(format!("{what}: {msg}")),
                e => e,
            },
        )?);
        let mode = allowed_path(&rel).unwrap_or(0o600);
        fsutil::write_new(&tmp.join(&rel), &data, mode)?;
        files.insert(rel, sha256_hex(&data));
    }
    let export_path = tmp.join(STORE_EXPORT);
    let mut buf = Vec::new();
    store.export(&mut buf)?;
    fsutil::write_new(&export_path, &buf, 0o600)?;
    files.insert(STORE_EXPORT.to_string(), sha256_hex(&buf));
    if let Some(archive) = store.archive()? {
        let mut buf = Vec::new();
        archive.export(&mut buf)?;
        fsutil::write_new(&tmp.join(ARCHIVE_EXPORT), &buf, 0o600)?;
        files.insert(ARCHIVE_EXPORT.to_string(), sha256_hex(&buf));
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created: now,
        ca_name: ca.config.name.clone(),
        encrypted_keys: ca.config.encrypted_keys,
        files,
        records: report.records,
        audit_entries: report.audit_entries,
        audit_head: report.audit_head,
        archived_records: report.archived_records,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::State(e.to_string()))?;
    fsutil::write_new(&tmp.join(MANIFEST), &text, 0o644)?;
    Ok(manifest)
}

/// A file of a backup: relative path and contents.
pub type BackupFile = (String, Vec<u8>);

/// What `restore` brought back.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    /// The CA directory restored into.
    pub ca_dir: PathBuf,
    /// The manifest of the backup restored.
    pub manifest: Manifest,
}

/// Read and verify a backup's manifest and every file it names; returns the
/// manifest and the files' contents (nothing is written yet).
pub fn read_backup(src: &Path) -> Result<(Manifest, Vec<BackupFile>)> {
    let mpath = src.join(MANIFEST);
    let text = fsutil::read_bounded(&mpath, 1024 * 1024, "backup manifest")?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        Error::input(
            format!("backup manifest {}", mpath.display()),
            e.to_string(),
        )
    })?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(Error::input(
            format!("backup manifest {}", mpath.display()),
            format!(
                "format `{}` version {} is not one this mtlsca restores ({FORMAT} {VERSION})",
                manifest.format, manifest.version
            ),
        ));
    }
    for required in [CONFIG_FILE, STORE_EXPORT]
        .into_iter()
        .chain(CaKind::ALL.iter().map(|k| k.cert_file()))
    {
        if !manifest.files.contains_key(required) {
            return Err(Error::input(
                "backup",
                format!("the manifest does not list {required}"),
            ));
        }
    }
    let mut files = Vec::new();
    for (rel, want) in &manifest.files {
        let export = rel == STORE_EXPORT || rel == ARCHIVE_EXPORT;
        if !export && allowed_path(rel).is_none() {
            return Err(Error::input(
                "backup",
                format!(
                    "the manifest names `{}`, which is not a file of a CA",
                    crate::names::printable(rel)
                ),
            ));
        }
        let limit = if export { MAX_EXPORT } else { MAX_FILE };
        let data = read_regular(&src.join(rel), limit, "backup file")?;
        if sha256_hex(&data) != *want {
            return Err(Error::input(
                format!("backup file {}", src.join(rel).display()),
                "its SHA-256 differs from the manifest's (damaged or edited)",
            ));
        }
        files.push((rel.clone(), data));
    }
    Ok((manifest, files))
}

/// Restore the backup in `src` into `ca_dir`, which must not hold a CA.
pub fn restore(
    src: &Path,
    ca_dir: &Path,
    lock_wait: std::time::Duration,
) -> Result<RestoreSummary> {
    let what_now = "restore into a new directory";
    crate::ca::refuse_existing(ca_dir, what_now)?;
    let (manifest, files) = read_backup(src)?;
    let _ = lock_wait; // the store restored into is new: nobody else holds it
    crate::ca::create_ca_dir(ca_dir, what_now, |staging| {
        write_restore(staging, &manifest, files)
    })?;
    Ok(RestoreSummary {
        ca_dir: ca_dir.to_path_buf(),
        manifest,
    })
}

fn write_restore(ca_dir: &Path, manifest: &Manifest, files: Vec<BackupFile>) -> Result<()> {
    for (sub, mode, _) in SUBDIRS {
        let d = ca_dir.join(sub);
        fsutil::create_dir_mode(&d, mode).at(&d)?;
    }
    let mut config = None;
    let mut export = None;
    let mut archive_export = None;
    for (rel, data) in files {
        if rel == CONFIG_FILE {
            config = Some(data);
        } else if rel == STORE_EXPORT {
            export = Some(data);
        } else if rel == ARCHIVE_EXPORT {
            archive_export = Some(data);
        } else {
            let mode = allowed_path(&rel).unwrap_or(0o600);
            let data = zeroize::Zeroizing::new(data);
            fsutil::write_new(&ca_dir.join(&rel), &data, mode)?;
        }
    }
    let (Some(config), Some(export)) = (config, export) else {
        return Err(Error::input(
            "backup",
            "ca.toml or the store export is missing",
        ));
    };
    // The CA generations the backup's ca.toml names (it is written last).
    let generations = crate::ca::Generations::of_config_text(&String::from_utf8_lossy(&config))
        .map_err(|m| Error::input("backup", format!("{CONFIG_FILE}: {m}")))?;
    if !ca_dir.join(crate::ca::BUNDLE_FILE).exists() {
        crate::ca::write_bundle_of(ca_dir, &generations)?;
    }
    {
        let owner = crate::ca::key_ids_of(ca_dir, &generations)?;
        let store = Store::create(ca_dir, &owner)?;
        store.import(&mut std::io::Cursor::new(export))?;
        if let Some(archive) = archive_export {
            store.import_archive(&mut std::io::Cursor::new(archive))?;
        }
        // A backup that names its CA must name this one (older ones are adopted).
        store.check_owner(&owner)?;
        let report = store.check()?;
        if !report.healthy() {
            return Err(Error::Store(format!(
                "the restored store fails its check: {}",
                report
                    .damage
                    .iter()
                    .map(|d| format!("{}: {}", d.item, d.problem))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        if report.records != manifest.records
            || report.archived_records != manifest.archived_records
            || report.audit_entries != manifest.audit_entries
            || report.audit_head != manifest.audit_head
        {
            return Err(Error::Store(format!(
                "the restored store holds {} records and {} audit entries, the manifest says {} and {}",
                report.records, report.audit_entries, manifest.records, manifest.audit_entries
            )));
        }
    }
    fsutil::write_new(&ca_dir.join(CONFIG_FILE), &config, 0o644)?;
    fsutil::sync_dir(ca_dir)?;
    // The configuration must be one this mtlsca reads.
    Ca::open(ca_dir)?;
    Ok(())
}
