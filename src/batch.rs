//! Batch issuance from a TOML manifest (DESIGN.md, `batch`).
//!
//! ```toml
//! [[certificate]]
//! id = "web-01"              # the request id and the file name
//! profile = "device"
//! dns = ["web-01.corp.internal"]
//! ```
//!
//! The whole manifest is read (at most `MAX_MANIFEST` bytes) and validated before
//! anything is issued: unknown keys, duplicate or unsafe ids, unknown profiles
//! and malformed values are bad input (exit 2, nothing issued). An entry that
//! policy refuses is reported `refused` and the others go on.
//!
//! Entries are then issued in chunks of `BatchOptions::chunk` with the exactly
//! once protocol of `issue`, amortised over the chunk:
//!
//! 1. keys are generated, certificates signed and self-checked on every core, and
//!    each writes its files under temporary names (no fsync);
//! 2. one `syncfs` makes all those files durable; the chunk is recorded in ONE
//!    store transaction and the store is flushed once;
//! 3. the files are linked to their final names and the directory is fsynced once.
//!
//! An entry whose request id is recorded is `exists` (missing certificate files
//! are rewritten); temporary files an interrupted run left behind are completed
//! when their certificate was recorded and removed when it was not, so re-running
//! a manifest never issues an entry twice. Memory stays bounded by the manifest
//! plus one chunk.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;

use crate::ca::{Ca, CaKind};
use crate::error::{Error, Result};
use crate::issue::{
    self, Durability, Files, IssuanceRequest, Issuer, KeySource, Output, Prepared, SignContext,
};
use crate::key::{KeyType, PublicKeyKind};
use crate::policy::{self, Origin, RequestedContent};
use crate::profile::Profile;
use crate::store::{ChunkItem, Recorded, Store};

/// Largest manifest read (checked before parsing).
pub const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
/// Entries per store transaction and flush.
pub const DEFAULT_CHUNK: usize = 256;
/// Longest entry id (it is a file name).
const MAX_ID: usize = 128;
/// How many manifest errors are listed before "and N more".
const MAX_LISTED_ERRORS: usize = 20;

/// A manifest: `[[certificate]]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub certificate: Vec<Entry>,
}

/// One `[[certificate]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub profile: String,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub ip: Vec<String>,
    #[serde(default)]
    pub uri: Vec<String>,
    #[serde(default)]
    pub email: Vec<String>,
    pub cn: Option<String>,
    pub org: Option<String>,
    pub country: Option<String>,
    pub validity: Option<String>,
    pub key_type: Option<String>,
}

impl Entry {
    fn content(&self) -> RequestedContent {
        RequestedContent {
            dns: self.dns.clone(),
            ip: self.ip.clone(),
            uri: self.uri.clone(),
            email: self.email.clone(),
            cn: self.cn.clone(),
            org: self.org.clone(),
            country: self.country.clone(),
            validity: self.validity.clone(),
            ..Default::default()
        }
    }
}

impl Manifest {
    /// Parse manifest text; `origin` names it in errors (exit 2).
    ///
    /// A TOML parser holds the whole document as a tree, several times the size
    /// of the text (a 100,000-entry manifest took 250 MB). So each
    /// `[[certificate]]` table is parsed on its own: the header line starts a
    /// table, and a table is complete at the next header. Multi-line strings
    /// could hide a header line, so a manifest that has any is parsed whole.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let whole = |t: &str| {
            toml::from_str::<Manifest>(t).map_err(|e| {
                Error::input(
                    format!("manifest {origin}"),
                    e.to_string().trim_end().to_string(),
                )
            })
        };
        if text.contains("\"\"\"") || text.contains("'''") {
            return whole(text);
        }
        let mut sections: Vec<(usize, &str)> = Vec::new();
        let (mut start, mut start_line, mut offset) = (0usize, 1usize, 0usize);
        for (n, line) in text.split_inclusive('\n').enumerate() {
            if is_certificate_header(line) && offset > start {
                sections.push((start_line, &text[start..offset]));
                start = offset;
                start_line = n + 1;
            }
            offset += line.len();
        }
        sections.push((start_line, &text[start..]));

        let mut manifest = Manifest::default();
        for (i, (line, section)) in sections.into_iter().enumerate() {
            let part = toml::from_str::<Manifest>(section).map_err(|e| {
                Error::input(
                    format!("manifest {origin}"),
                    format!(
                        "in the table that starts at line {line} (lines counted from there): {}",
                        e.to_string().trim_end()
                    ),
                )
            })?;
            if i == 0 && !part.certificate.is_empty() && !is_certificate_header_start(section) {
                // Certificates defined before the first header (an inline array):
                // legal alone, but not mixed with [[certificate]] tables.
                if text.lines().any(is_certificate_header) {
                    return whole(text);
                }
            }
            manifest.certificate.extend(part.certificate);
        }
        Ok(manifest)
    }
}

/// `[[certificate]]` alone on its line (spaces and a comment allowed).
fn is_certificate_header(line: &str) -> bool {
    let l = line.split('#').next().unwrap_or("").trim();
    l.strip_prefix("[[")
        .and_then(|r| r.strip_suffix("]]"))
        .is_some_and(|name| name.trim() == "certificate")
}

/// Whether a section begins with its header (after blank and comment lines).
fn is_certificate_header_start(section: &str) -> bool {
    section
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(is_certificate_header)
}

/// What happened to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    Issued,
    Exists,
    Refused,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Issued => "issued",
            EntryStatus::Exists => "exists",
            EntryStatus::Refused => "refused",
        }
    }
}

/// The report of one entry, in manifest order.
#[derive(Debug, Clone)]
pub struct EntryOutcome {
    pub id: String,
    pub status: EntryStatus,
    pub serial: Option<String>,
    pub reasons: Vec<String>,
    pub files: Vec<PathBuf>,
}

impl EntryOutcome {
    fn refused(id: &str, reasons: Vec<String>) -> EntryOutcome {
        EntryOutcome {
            id: id.to_string(),
            status: EntryStatus::Refused,
            serial: None,
            reasons,
            files: Vec::new(),
        }
    }

    fn from_issued(id: &str, i: issue::Issued) -> EntryOutcome {
        EntryOutcome {
            id: id.to_string(),
            status: match i.status {
                issue::IssueStatus::Issued => EntryStatus::Issued,
                issue::IssueStatus::Exists => EntryStatus::Exists,
            },
            serial: Some(i.record.serial),
            reasons: Vec::new(),
            files: i.files,
        }
    }
}

/// Counts of a finished batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub issued: usize,
    pub exists: usize,
    pub refused: usize,
}

/// Where and how a batch runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub out_dir: PathBuf,
    /// Entries per transaction and flush.
    pub chunk: usize,
    /// Signing threads.
    pub threads: usize,
}

impl BatchOptions {
    pub fn new(out_dir: PathBuf) -> BatchOptions {
        BatchOptions {
            out_dir,
            chunk: DEFAULT_CHUNK,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(16),
        }
    }
}

/// An entry id is a file name in the output directory: letters, digits and
/// `. _ - @ +`, starting with a letter or digit.
pub fn check_id(id: &str) -> std::result::Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-@+".contains(c);
    if id.is_empty() || id.len() > MAX_ID {
        return Err(format!("id must be 1-{MAX_ID} characters"));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) || !id.chars().all(ok_char) {
        return Err(format!(
            "id `{}` must start with a letter or digit and hold only letters, digits and . _ - @ + (it names the files)",
            crate::names::printable(id)
        ));
    }
    Ok(())
}

/// A validated entry, ready for the pipeline.
struct Planned {
    key_type: Option<KeyType>,
    /// Policy's refusal, found while validating.
    refused: Option<Vec<String>>,
}

fn public_kind(kt: KeyType) -> PublicKeyKind {
    match kt {
        KeyType::EcdsaP256 => PublicKeyKind::EcdsaP256,
        KeyType::EcdsaP384 => PublicKeyKind::EcdsaP384,
        KeyType::Ed25519 => PublicKeyKind::Ed25519,
    }
}

/// Issue every entry of `manifest`, calling `report` for each entry in manifest
/// order as soon as its files are final. Errors of the manifest are returned
/// before anything is issued; a CA or store failure stops the batch (what was
/// reported before is durable and complete).
pub fn run(
    ca: &Ca,
    store: &Store,
    manifest: &Manifest,
    manifest_name: &str,
    opts: &BatchOptions,
    now: OffsetDateTime,
    report: &mut dyn FnMut(&EntryOutcome),
) -> Result<Summary> {
    let issuer = Issuer::new(ca, store)?;
    let entries = &manifest.certificate;

    // Everything that can be known before signing: profiles, CAs, ids, values,
    // policy, and request ids recorded for another profile.
    let mut profiles: HashMap<String, Profile> = HashMap::new();
    let mut signing: Vec<(CaKind, std::rc::Rc<crate::ca::SigningCa>)> = Vec::new();
    let constraints = ca.config.constraints()?;
    let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
    let mut errors: Vec<String> = Vec::new();
    let mut plan: Vec<Planned> = Vec::with_capacity(entries.len());
    let mut unknown_profiles: HashSet<&str> = HashSet::new();
    for (n, e) in entries.iter().enumerate() {
        let label = format!(
            "certificate #{} (id `{}`)",
            n + 1,
            crate::names::printable(&e.id)
        );
        let mut planned = Planned {
            key_type: None,
            refused: None,
        };
        if let Err(m) = check_id(&e.id) {
            errors.push(format!("{label}: {m}"));
        } else if !seen.insert(e.id.as_str()) {
            errors.push(format!("{label}: duplicate id"));
        }
        match e.key_type.as_deref().map(KeyType::parse).transpose() {
            Ok(kt) => planned.key_type = kt,
            Err(err) => errors.push(format!("{label}: {err}")),
        }
        if !profiles.contains_key(&e.profile) && !unknown_profiles.contains(e.profile.as_str()) {
            match ca.profile(&e.profile) {
                Ok(p) => {
                    let kind = CaKind::for_role(p.role);
                    if !signing.iter().any(|(k, _)| *k == kind) {
                        signing.push((kind, issuer.signing_ca(kind)?));
                    }
                    profiles.insert(e.profile.clone(), p);
                }
                Err(err @ (Error::Usage(_) | Error::Input { .. })) => {
                    errors.push(format!("{label}: {err}"));
                    unknown_profiles.insert(e.profile.as_str());
                    plan.push(planned);
                    continue;
                }
                Err(err) => return Err(err),
            }
        }
        let Some(profile) = profiles.get(&e.profile) else {
            errors.push(format!("{label}: unknown profile `{}`", e.profile));
            plan.push(planned);
            continue;
        };
        let signer = lookup(&signing, CaKind::for_role(profile.role));
        let kind = public_kind(planned.key_type.unwrap_or(profile.key));
        match policy::check(
            profile,
            &constraints,
            &e.content(),
            kind,
            signer.not_after,
            Origin::Arguments,
            now,
        ) {
            Ok(_) => {}
            Err(Error::Refused(reasons)) => planned.refused = Some(reasons),
            Err(err @ (Error::Usage(_) | Error::Input { .. })) => {
                errors.push(format!("{label}: {err}"))
            }
            Err(err) => return Err(err),
        }
        if check_id(&e.id).is_ok() {
            if let Some(rec) = store.by_request_id(&e.id)? {
                if rec.profile != e.profile {
                    errors.push(format!(
                        "{label}: this id was issued as a `{}` certificate (serial {}), not `{}`",
                        rec.profile, rec.serial, e.profile
                    ));
                }
            }
        }
        plan.push(planned);
    }
    if !errors.is_empty() {
        let more = errors.len().saturating_sub(MAX_LISTED_ERRORS);
        let mut msg = errors
            .iter()
            .take(MAX_LISTED_ERRORS)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n  ");
        if more > 0 {
            msg.push_str(&format!("\n  ... and {more} more"));
        }
        return Err(Error::input(
            format!("manifest {manifest_name}"),
            format!("nothing was issued:\n  {msg}"),
        ));
    }

    let out_dir = std::path::absolute(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let contexts: Vec<(CaKind, SignContext<'_>)> = signing
        .iter()
        .map(|(kind, s)| (*kind, issuer.sign_context(s, now)))
        .collect();
    let job = Job {
        issuer: &issuer,
        store,
        signer: Signer {
            profiles: &profiles,
            contexts: &contexts,
            threads: opts.threads.max(1),
        },
        out_dir: &out_dir,
        now,
    };
    let mut summary = Summary {
        total: entries.len(),
        ..Summary::default()
    };
    let size = opts.chunk.max(1);
    let mut plan_chunks = plan.chunks_mut(size);
    let mut entry_chunks = entries.chunks(size);
    // Two chunks in flight: while chunk k waits for the disk (sync, flush,
    // links), chunk k+1 is signed on the other threads.
    std::thread::scope(|scope| -> Result<()> {
        let signer = &job.signer;
        let mut stage_next = || -> Result<Option<Staged<'_>>> {
            match (entry_chunks.next(), plan_chunks.next()) {
                (Some(e), Some(p)) => job.stage(e, p).map(Some),
                _ => Ok(None),
            }
        };
        let mut in_flight = stage_next()?.map(|st| start(scope, signer, st));
        while let Some((staged, handle)) = in_flight.take() {
            let signed = join(handle);
            let next = match stage_next() {
                Ok(st) => st.map(|st| start(scope, signer, st)),
                Err(e) => {
                    discard(&signed);
                    return Err(e);
                }
            };
            match job.commit(staged, signed) {
                Ok(outcomes) => {
                    for o in &outcomes {
                        match o.status {
                            EntryStatus::Issued => summary.issued += 1,
                            EntryStatus::Exists => summary.exists += 1,
                            EntryStatus::Refused => summary.refused += 1,
                        }
                        report(o);
                    }
                }
                Err(e) => {
                    if let Some((_, h)) = next {
                        discard(&join(h));
                    }
                    return Err(e);
                }
            }
            in_flight = next;
        }
        Ok(())
    })?;
    Ok(summary)
}

/// Start signing a staged chunk on a thread of `scope`.
fn start<'scope, 'env: 'scope, 'e: 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    signer: &'scope Signer<'_>,
    mut staged: Staged<'e>,
) -> (
    Staged<'e>,
    std::thread::ScopedJoinHandle<'scope, Signed<'e>>,
) {
    let pending = std::mem::take(&mut staged.pending);
    (staged, scope.spawn(move || signer.sign(pending)))
}

/// Signed entries of a chunk, each with its result.
type Signed<'e> = Vec<(Work<'e>, Result<Prepared>)>;

fn join<'e>(h: std::thread::ScopedJoinHandle<'_, Signed<'e>>) -> Signed<'e> {
    match h.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Remove the temporary files of signed entries that will not be recorded.
fn discard(signed: &Signed<'_>) {
    for (_, r) in signed {
        if let Ok(p) = r {
            p.discard_partials();
        }
    }
}

/// What the signing threads see: profiles and signing contexts (not the
/// single-threaded `Issuer`, not the store).
struct Signer<'j> {
    profiles: &'j HashMap<String, Profile>,
    contexts: &'j [(CaKind, SignContext<'j>)],
    threads: usize,
}

impl Signer<'_> {
    /// Step 1 for a list of entries: sign on every thread, write the temporary
    /// files (not yet durable).
    fn sign<'e>(&self, pending: Vec<Work<'e>>) -> Signed<'e> {
        par_map(pending, self.threads, |w| {
            let profile = &self.profiles[&w.entry.profile];
            let cx = lookup(self.contexts, CaKind::for_role(profile.role));
            let result = issue::prepare(cx, profile, &w.request, Some(w.files.clone()))
                .and_then(|p| p.write_partials(Durability::Deferred).map(|()| p));
            (w, result)
        })
    }
}

/// What every chunk of one batch shares.
struct Job<'j> {
    issuer: &'j Issuer<'j>,
    store: &'j Store,
    signer: Signer<'j>,
    out_dir: &'j Path,
    now: OffsetDateTime,
}

/// An entry on its way through the pipeline.
struct Work<'e> {
    pos: usize,
    entry: &'e Entry,
    request: IssuanceRequest,
    files: Files,
}

/// A chunk after the checks that need the store: outcomes known so far, and
/// the entries to sign.
struct Staged<'e> {
    outcomes: Vec<Option<EntryOutcome>>,
    pending: Vec<Work<'e>>,
}

impl Job<'_> {
    fn profile(&self, e: &Entry) -> &Profile {
        &self.signer.profiles[&e.profile]
    }

    /// Recover leftovers, find entries issued before, refuse taken file names.
    fn stage<'e>(&self, entries: &'e [Entry], plan: &mut [Planned]) -> Result<Staged<'e>> {
        let mut outcomes: Vec<Option<EntryOutcome>> = vec![None; entries.len()];
        let mut pending: Vec<Work<'e>> = Vec::new();
        for (pos, (e, p)) in entries.iter().zip(plan.iter_mut()).enumerate() {
            if let Some(reasons) = p.refused.take() {
                outcomes[pos] = Some(EntryOutcome::refused(&e.id, reasons));
                continue;
            }
            let output = Output::Prefix(self.out_dir.join(&e.id));
            let files = Files::of(&output, true).expect("a prefix always has files");
            self.issuer.recover(&files)?;
            if let Some(rec) = self.store.by_request_id(&e.id)? {
                let issued = self.issuer.existing(rec, self.profile(e), Some(&files))?;
                outcomes[pos] = Some(EntryOutcome::from_issued(&e.id, issued));
                continue;
            }
            if let Some(taken) = files.existing_file() {
                outcomes[pos] = Some(EntryOutcome::refused(
                    &e.id,
                    vec![format!(
                        "{} already exists and no certificate is recorded for this id; refusing to overwrite it",
                        taken.display()
                    )],
                ));
                continue;
            }
            pending.push(Work {
                pos,
                entry: e,
                request: IssuanceRequest {
                    profile: e.profile.clone(),
                    content: e.content(),
                    key: KeySource::Generate(p.key_type),
                    request_id: Some(e.id.clone()),
                    output,
                },
                files,
            });
        }
        Ok(Staged { outcomes, pending })
    }

    /// Steps 2 and 3 for a signed chunk: one sync of the files, one transaction,
    /// one flush, then the final names and one directory sync. The outcomes in
    /// entry order.
    fn commit<'e>(&self, staged: Staged<'e>, mut signed: Signed<'e>) -> Result<Vec<EntryOutcome>> {
        let mut outcomes = staged.outcomes;
        let mut linkable: Vec<(usize, &Entry, Prepared)> = Vec::new();
        // A serial collision (practically never) signs that entry again.
        for round in 0..8 {
            if signed.is_empty() {
                break;
            }
            if round > 0 {
                signed = self
                    .signer
                    .sign(signed.into_iter().map(|(w, _)| w).collect());
            }
            let mut ready: Vec<(Work<'_>, Prepared)> = Vec::with_capacity(signed.len());
            let mut failure: Option<Error> = None;
            for (w, result) in signed {
                match result {
                    Ok(p) => ready.push((w, p)),
                    Err(Error::Refused(reasons)) => {
                        outcomes[w.pos] = Some(EntryOutcome::refused(&w.entry.id, reasons))
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failure {
                for (_, p) in &ready {
                    p.discard_partials();
                }
                return Err(e);
            }

            let recorded = issue::sync_fs(self.out_dir).and_then(|()| {
                let items: Vec<ChunkItem<'_>> = ready
                    .iter()
                    .map(|(_, p)| ChunkItem {
                        record: &p.record,
                        der: &p.der,
                        issuer_key_id: &p.issuer_key_id,
                    })
                    .collect();
                self.store.record_chunk(&items, self.now)
            });
            let recorded = match recorded {
                Ok(r) => r,
                Err(e) => {
                    for (_, p) in &ready {
                        p.discard_partials();
                    }
                    return Err(e);
                }
            };
            // If the flush fails, the temporary files stay: the next run completes
            // those whose records reached the disk and removes the others.
            self.store.flush()?;

            let mut again: Signed<'e> = Vec::new();
            for ((w, p), r) in ready.into_iter().zip(recorded) {
                match r {
                    Recorded::New => linkable.push((w.pos, w.entry, p)),
                    Recorded::SerialTaken => {
                        p.discard_partials();
                        again.push((w, Err(Error::State("serial taken".into()))));
                    }
                    Recorded::RequestExists(rec) => {
                        p.discard_partials();
                        let issued =
                            self.issuer
                                .existing(*rec, self.profile(w.entry), Some(&w.files))?;
                        outcomes[w.pos] = Some(EntryOutcome::from_issued(&w.entry.id, issued));
                    }
                }
            }
            signed = again;
        }
        if !signed.is_empty() {
            return Err(Error::State(
                "eight random serials in a row were taken: the random number generator is broken"
                    .into(),
            ));
        }

        let linked = par_map(linkable, self.signer.threads, |(pos, e, p)| {
            (pos, e, p.link())
        });
        let mut failure = None;
        for (pos, e, result) in linked {
            match result {
                Ok(issued) => outcomes[pos] = Some(EntryOutcome::from_issued(&e.id, issued)),
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        crate::fsutil::sync_dir(self.out_dir)?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every entry of a chunk has an outcome"))
            .collect())
    }
}

/// The value kept for a CA (a batch loads at most the two issuing CAs).
fn lookup<T>(items: &[(CaKind, T)], kind: CaKind) -> &T {
    &items
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("every profile's CA was loaded while validating")
        .1
}

/// Map `f` over `items` on up to `threads` threads (contiguous slices), keeping order.
fn par_map<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    if threads <= 1 || n <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per = n.div_ceil(threads.min(n));
    let mut slices: Vec<Vec<T>> = Vec::new();
    let mut it = items.into_iter();
    loop {
        let s: Vec<T> = it.by_ref().take(per).collect();
        if s.is_empty() {
            break;
        }
        slices.push(s);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let mut slices = slices.into_iter();
        let first = slices.next().unwrap_or_default();
        let handles: Vec<_> = slices
            .map(|s| scope.spawn(move || s.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = first.into_iter().map(f).collect();
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_file_names() {
        for ok in ["web-01", "alice@corp.example", "a", "svc_1.v2+x"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "../etc",
            "a/b",
            "a b",
            "-x",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifests_refuse_unknown_keys() {
        let e = Manifest::parse(
            "[[certificate]]\nid = \"a\"\nprofile = \"device\"\ndnss = [\"x\"]\n",
            "m.toml",
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("dnss"), "{e}");
        let e = Manifest::parse("[[certificates]]\nid = \"a\"\n", "m.toml").unwrap_err();
        assert!(e.to_string().contains("certificates"), "{e}");
    }

    /// Many small chunks: the overlapped pipeline (chunk k recorded while k+1
    /// is signed) reports every entry once, in order, and records each once.
    #[test]
    fn chunks_overlap_and_stay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = crate::ca::init(
            &dir.path().join("ca"),
            &crate::ca::InitOptions {
                name: "T".into(),
                key_type: KeyType::EcdsaP256,
                permit_dns: vec![],
                permit_ip: vec![],
                permit_uri: vec![],
            },
            now,
        )
        .unwrap();
        let store = Store::open(&ca.dir, std::time::Duration::from_secs(5)).unwrap();
        let manifest = Manifest {
            certificate: (0..30)
                .map(|i| Entry {
                    id: format!("e{i:02}"),
                    profile: "device".into(),
                    dns: vec![format!("e{i:02}.corp.internal")],
                    // One refusal in the middle of a chunk.
                    email: if i == 11 {
                        vec!["x@corp.example".into()]
                    } else {
                        vec![]
                    },
                    ..Entry::default()
                })
                .collect(),
        };
        let opts = BatchOptions {
            out_dir: dir.path().join("out"),
            chunk: 7,
            threads: 2,
        };
        let mut seen = Vec::new();
        let summary = run(&ca, &store, &manifest, "m", &opts, now, &mut |o| {
            seen.push((o.id.clone(), o.status))
        })
        .unwrap();
        assert_eq!(summary.issued, 29);
        assert_eq!(summary.refused, 1);
        let ids: Vec<String> = seen.iter().map(|(id, _)| id.clone()).collect();
        let want: Vec<String> = (0..30).map(|i| format!("e{i:02}")).collect();
        assert_eq!(ids, want);
        assert_eq!(seen[11].1, EntryStatus::Refused);
        assert_eq!(store.count(), 29);
        let files = std::fs::read_dir(dir.path().join("out")).unwrap().count();
        assert_eq!(files, 29 * 3);

        let mut again = Vec::new();
        let summary = run(&ca, &store, &manifest, "m", &opts, now, &mut |o| {
            again.push(o.status)
        })
        .unwrap();
        assert_eq!((summary.issued, summary.exists), (0, 29));
        assert_eq!(store.count(), 29);
    }

    #[test]
    fn manifests_parse_table_by_table_like_a_whole_document() {
        let text = "# fleet\n\n[[certificate]]\nid = \"a\"\nprofile = \"device\"\ndns = [\n  \"a.corp.internal\",\n]\n\n[[ certificate ]] # second\nid = \"b#1\"\nprofile = \"person\"\ncn = \"B # not a comment\"\nemail = [\"b@corp.example\"]\n";
        let split = Manifest::parse(text, "m").unwrap();
        let whole: Manifest = toml::from_str(text).unwrap();
        assert_eq!(split.certificate.len(), 2);
        assert_eq!(format!("{split:?}"), format!("{whole:?}"));
        assert_eq!(
            split.certificate[1].cn.as_deref(),
            Some("B # not a comment")
        );

        // Multi-line strings may hide a header: parsed whole.
        let tricky = "[[certificate]]\nid = \"x\"\nprofile = \"device\"\ncn = \"\"\"\n[[certificate]]\n\"\"\"\n";
        let m = Manifest::parse(tricky, "m").unwrap();
        assert_eq!(m.certificate.len(), 1);
        assert_eq!(m.certificate[0].cn.as_deref(), Some("[[certificate]]\n"));

        // An inline array alone is a manifest too; mixed with tables it is an error.
        let inline = "certificate = [{ id = \"i\", profile = \"device\" }]\n";
        assert_eq!(Manifest::parse(inline, "m").unwrap().certificate.len(), 1);
        let mixed = format!("{inline}[[certificate]]\nid = \"j\"\nprofile = \"device\"\n");
        assert!(Manifest::parse(&mixed, "m").is_err());

        // Errors say where the table starts.
        let bad = "[[certificate]]\nid = \"a\"\nprofile = \"device\"\n\n[[certificate]]\nid = \"b\"\nprofle = \"device\"\n";
        let e = Manifest::parse(bad, "m").unwrap_err().to_string();
        assert!(e.contains("line 5") && e.contains("profle"), "{e}");
    }

    #[test]
    fn par_map_keeps_order() {
        let v: Vec<usize> = (0..1000).collect();
        assert_eq!(
            par_map(v.clone(), 3, |x| x * 2),
            v.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert_eq!(par_map(vec![1], 4, |x| x + 1), vec![2]);
        assert!(par_map(Vec::<u8>::new(), 4, |x| x).is_empty());
    }
}
