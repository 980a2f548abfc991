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
//! Entries are then issued by the engine (`issue::Issuer::issue_all`): in chunks,
//! signed on every core, each chunk recorded in one transaction with the same
//! exactly-once protocol and the same self-check as `issue`. An entry whose
//! request id is recorded is `exists`; re-running a manifest never issues an entry
//! twice. Ids name files, so two ids whose files would collide (`web` and
//! `web.chain` both write `web.chain.pem`) are refused before anything is issued.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;

use crate::ca::Ca;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::issue::{self, Files, IssuanceRequest, Issuer, KeySource, Output, RunOptions};
use crate::key::KeyType;
use crate::policy::RequestedContent;
use crate::rules::{Field, Origin, Refusal, Refusals, Rule};
use crate::store::Store;

/// Largest manifest read (checked before parsing).
pub const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
/// Entries per store transaction and flush.
pub const DEFAULT_CHUNK: usize = crate::issue::DEFAULT_CHUNK;
/// Longest entry id (it is a file name).
const MAX_ID: usize = 128;
/// How many manifest errors are listed before "and N more".
const MAX_LISTED_ERRORS: usize = 20;
/// Most chunks between two turns given to other jobs in a server's engine
/// ([`run`]'s `give_way`): 1,024 entries by default, about a quarter of a
/// second here on tmpfs.
pub const GIVE_WAY_CHUNKS: usize = 4;
/// A slice that takes longer than this halves the next one (down to one
/// chunk): on a slow disk a turn still comes about this often.
pub const GIVE_WAY_AFTER: std::time::Duration = std::time::Duration::from_millis(300);

/// A manifest: `[[certificate]]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The entries, in manifest order.
    #[serde(default)]
    pub certificate: Vec<Entry>,
}

/// One `[[certificate]]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The entry's id: its request id, and the stem of its file names.
    pub id: String,
    /// The profile to issue from.
    pub profile: String,
    /// DNS names.
    #[serde(default)]
    pub dns: Vec<String>,
    /// IP addresses.
    #[serde(default)]
    pub ip: Vec<String>,
    /// URIs.
    #[serde(default)]
    pub uri: Vec<String>,
    /// Email addresses.
    #[serde(default)]
    pub email: Vec<String>,
    /// Subject common name.
    pub cn: Option<String>,
    /// Subject organizationName.
    pub org: Option<String>,
    /// Subject countryName.
    pub country: Option<String>,
    /// Validity ("90d"), else the profile's default.
    pub validity: Option<String>,
    /// Key type for the generated key, else the profile's.
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
#[non_exhaustive]
pub enum EntryStatus {
    /// Issued by this run.
    Issued,
    /// Issued before under the same id.
    Exists,
    /// Renewed by this run (`--renew-within`): a new key and certificate in place
    /// of one that expires within the window.
    Renewed,
    /// Refused (or bad); see the reasons.
    Refused,
}

impl EntryStatus {
    /// `issued`, `exists`, `renewed` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Renewed => "renewed",
            EntryStatus::Issued => "issued",
            EntryStatus::Exists => "exists",
            EntryStatus::Refused => "refused",
        }
    }
}

/// One reason an entry was refused: the rule (when the refusal names one), the
/// field and the message, as JSON lines print them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reason {
    /// The rule's code.
    pub rule: Option<std::borrow::Cow<'static, str>>,
    /// The manifest key concerned.
    pub field: Option<String>,
    /// The sentence.
    pub message: String,
}

impl Reason {
    /// The reasons of an error about one entry.
    pub fn of(e: &Error) -> Vec<Reason> {
        match e.reasons() {
            Some(r) => r
                .reasons
                .iter()
                .map(|x| Reason {
                    rule: Some(x.rule.code().into()),
                    field: x.field.as_ref().map(|f| f.name()),
                    message: r.message_of(x),
                })
                .collect(),
            None => vec![Reason {
                rule: None,
                field: None,
                message: e.to_string(),
            }],
        }
    }
}

/// The report of one entry, in manifest order.
#[derive(Debug, Clone)]
pub struct EntryOutcome {
    /// The entry's id.
    pub id: String,
    /// What happened.
    pub status: EntryStatus,
    /// The certificate's serial (issued or existing).
    pub serial: Option<String>,
    /// Why it was refused.
    pub reasons: Vec<Reason>,
    /// The files written for it.
    pub files: Vec<PathBuf>,
    /// The certificate's notAfter (issued or existing).
    pub not_after: Option<OffsetDateTime>,
    /// With `--renew-within`: what the renewal replaced and retired, and
    /// whether the window was capped for this entry's certificate.
    pub rotation: Rotation,
}

/// What a renewing batch did about an entry's old certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// The serial of the certificate this entry's renewal replaced.
    pub replaces: Option<String>,
    /// With `--revoke-old`: when that certificate is revoked as superseded
    /// (now, or at the end of `--grace`).
    pub retires_at: Option<OffsetDateTime>,
    /// When the window was capped for the entry's certificate
    /// ([`crate::renew::effective_window`]): its lifetime and the window
    /// applied, in seconds.
    pub capped: Option<(i64, i64)>,
}

impl EntryOutcome {
    fn of(id: &str, r: Result<issue::Issued>) -> EntryOutcome {
        match r {
            Ok(i) => EntryOutcome {
                id: id.to_string(),
                status: match i.status {
                    issue::IssueStatus::Exists => EntryStatus::Exists,
                    _ => EntryStatus::Issued,
                },
                serial: Some(i.record.serial),
                reasons: Vec::new(),
                files: i.files,
                not_after: Some(i.record.not_after),
                rotation: Rotation::default(),
            },
            Err(e) => EntryOutcome {
                id: id.to_string(),
                status: EntryStatus::Refused,
                serial: None,
                reasons: Reason::of(&e),
                files: Vec::new(),
                not_after: None,
                rotation: Rotation::default(),
            },
        }
    }
}

/// Counts of a finished batch.
pub type Summary = issue::Counts;

/// Where and how a batch runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// The directory the files go to.
    pub out_dir: PathBuf,
    /// Entries per transaction and flush.
    pub chunk: usize,
    /// Signing threads.
    pub threads: usize,
    /// Renew every entry whose certificate expires within this span from now
    /// (and is not revoked) instead of answering `exists`.
    pub renew_within: Option<time::Duration>,
    /// With `renew_within`: retire the certificates renewed (revoke them as
    /// superseded), after `grace` when given.
    pub revoke_old: bool,
    /// How long a retired certificate stays valid after its renewal.
    pub grace: Option<time::Duration>,
}

impl BatchOptions {
    /// Default chunking and one thread per core, files into `out_dir`.
    pub fn new(out_dir: PathBuf) -> BatchOptions {
        let r = RunOptions::batch();
        BatchOptions {
            out_dir,
            chunk: r.chunk,
            threads: r.threads,
            renew_within: None,
            revoke_old: false,
            grace: None,
        }
    }
}

/// A manifest error about one entry: its label, then the sentence.
fn entry_refusal(label: &str, rule: Rule, field: Option<Field>, msg: String) -> Refusal {
    Refusal {
        rule,
        field,
        value: None,
        detail: msg,
        entry: None,
    }
    .in_entry(label)
}

/// Report the entries policy refused before `upto`, in manifest order.
fn report_refused(
    next: &mut usize,
    upto: usize,
    refused: &mut [Option<Error>],
    entries: &[Entry],
    summary: &mut Summary,
    report: &mut dyn FnMut(&EntryOutcome),
) {
    while *next < upto {
        if let Some(err) = refused[*next].take() {
            summary.refused += 1;
            report(&EntryOutcome::of(&entries[*next].id, Err(err)));
        }
        *next += 1;
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

/// Issue every entry of `manifest`, calling `report` for each entry in manifest
/// order as soon as its files are final. Errors of the manifest are returned
/// before anything is issued; a CA or store failure stops the batch (what was
/// reported before is durable and complete).
///
/// `give_way`, when given, is called between slices of at most
/// `GIVE_WAY_CHUNKS` chunks (fewer while slices take longer than
/// `GIVE_WAY_AFTER`), with no chunk staged or signing: the server's engine
/// runs the jobs that came in meanwhile there (an ACME finalize waits for a
/// slice, not for the whole batch). What it issues is staged against like
/// anything recorded before the batch: a request id it records is `exists`
/// (or a conflict) here.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ca: &Ca,
    store: &Store,
    manifest: &Manifest,
    manifest_name: &str,
    opts: &BatchOptions,
    now: OffsetDateTime,
    report: &mut dyn FnMut(&EntryOutcome),
    give_way: Option<&mut dyn FnMut()>,
) -> Result<Summary> {
    store.apply_due_retirements(now)?;
    let issuer = Issuer::new(ca, store)?;
    let out_dir = std::path::absolute(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;
    let staged = stage(&issuer, store, manifest, manifest_name, opts, &out_dir, now)?;
    // It receives private keys: directories made here are 0700 whatever the
    // umask (of this process, or of the server running the batch).
    fsutil::create_dir_all_mode(&out_dir, 0o700)?;
    let summary = issue_in_slices(
        &issuer,
        store,
        &manifest.certificate,
        staged,
        opts,
        now,
        report,
        give_way,
    )?;
    // The retirements recorded with the renewals.
    store.flush()?;
    Ok(summary)
}

/// The entries staged for the engine: a request each (a renewal where the
/// entry's certificate is due), and the entries policy refused, reported in
/// their place.
struct Staged {
    requests: Vec<IssuanceRequest>,
    refused: Vec<Option<Error>>,
    renewing: HashSet<usize>,
    /// Per entry: where the renewal window was capped (lifetime, window).
    capped: Vec<Capped>,
}

/// Everything that can be known before signing: ids and their files, key
/// types, profiles, policy (the engine's own check). Any bad input of the
/// manifest is returned (nothing is issued); refusals stay with their entry.
fn stage(
    issuer: &Issuer<'_>,
    store: &Store,
    manifest: &Manifest,
    manifest_name: &str,
    opts: &BatchOptions,
    out_dir: &Path,
    now: OffsetDateTime,
) -> Result<Staged> {
    let entries = &manifest.certificate;
    let mut errors: Vec<Refusal> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::with_capacity(entries.len());
    let mut file_owner: HashMap<PathBuf, &str> = HashMap::with_capacity(entries.len() * 3);
    let mut staged = Staged {
        requests: Vec::with_capacity(entries.len()),
        refused: Vec::with_capacity(entries.len()),
        renewing: HashSet::new(),
        capped: Vec::with_capacity(entries.len()),
    };
    for (n, e) in entries.iter().enumerate() {
        let label = format!(
            "certificate #{} (id `{}`)",
            n + 1,
            crate::names::printable(&e.id)
        );
        check_entry_id(e, &label, out_dir, &mut seen, &mut file_owner, &mut errors);
        let key_type = match e.key_type.as_deref().map(KeyType::parse).transpose() {
            Ok(kt) => kt,
            Err(err) => {
                errors.push(entry_refusal(
                    &label,
                    Rule::KeyUnsupported,
                    Some(Field::Key),
                    err.to_string(),
                ));
                None
            }
        };
        let mut req = IssuanceRequest {
            profile: e.profile.clone(),
            content: e.content(),
            key: KeySource::Generate(key_type),
            request_id: Some(e.id.clone()),
            output: Output::Prefix(out_dir.join(&e.id)),
            origin: Origin::Manifest,
            replaces: None,
        };
        staged.capped.push(None);
        match issuer.check_request(&req, now) {
            Ok(()) => {
                let (renewal, capped) = renewal(issuer, store, opts, &req, out_dir, now)?;
                staged.capped[n] = capped;
                if let Some(renewal) = renewal {
                    req = renewal;
                    staged.renewing.insert(n);
                }
                staged.refused.push(None)
            }
            Err(err @ Error::Refused(_)) => staged.refused.push(Some(err)),
            Err(Error::Invalid(r)) => {
                for x in &r.reasons {
                    errors.push(entry_refusal(
                        &label,
                        x.rule,
                        x.field.clone(),
                        r.message_of(x),
                    ));
                }
                staged.refused.push(None);
            }
            Err(err @ (Error::Usage(_) | Error::Input { .. })) => {
                errors.push(entry_refusal(
                    &label,
                    Rule::ProfileUnknown,
                    Some(Field::Profile),
                    err.to_string(),
                ));
                staged.refused.push(None);
            }
            Err(err) => return Err(err),
        }
        staged.requests.push(req);
    }
    if !errors.is_empty() {
        let more = errors.len().saturating_sub(MAX_LISTED_ERRORS);
        errors.truncate(MAX_LISTED_ERRORS);
        let mut context = format!("manifest {manifest_name}: nothing was issued");
        if more > 0 {
            context.push_str(&format!(" ({more} more errors not listed)"));
        }
        return Err(Error::Invalid(
            Refusals::new(Origin::Manifest, errors).context(context),
        ));
    }
    Ok(staged)
}

/// An entry's id: its syntax, unique in the manifest, and files that no other
/// entry's files map onto.
fn check_entry_id<'m>(
    e: &'m Entry,
    label: &str,
    out_dir: &Path,
    seen: &mut HashSet<&'m str>,
    file_owner: &mut HashMap<PathBuf, &'m str>,
    errors: &mut Vec<Refusal>,
) {
    if let Err(m) = check_id(&e.id) {
        errors.push(entry_refusal(
            label,
            Rule::BatchIdSyntax,
            Some(Field::Id),
            m,
        ));
    } else if !seen.insert(e.id.as_str()) {
        errors.push(entry_refusal(
            label,
            Rule::BatchIdDuplicate,
            Some(Field::Id),
            "duplicate id".into(),
        ));
    } else {
        let output = Output::Prefix(out_dir.join(&e.id));
        if let Some(files) = Files::of(&output, true) {
            for f in files.all() {
                if let Some(other) = file_owner.insert(f.clone(), e.id.as_str()) {
                    errors.push(entry_refusal(
                        label,
                        Rule::BatchIdCollision,
                        Some(Field::Id),
                        format!(
                            "its file {} is also the file of id `{}`; choose ids that do not map onto each other's files",
                            f.display(),
                            crate::names::printable(other)
                        ),
                    ));
                }
            }
        }
    }
}

/// Issue the staged entries through the engine: all at once, or, with
/// `give_way`, in slices between which the server runs other jobs; report each
/// entry in manifest order as soon as its files are final.
#[allow(clippy::too_many_arguments)]
fn issue_in_slices(
    issuer: &Issuer<'_>,
    store: &Store,
    entries: &[Entry],
    staged: Staged,
    opts: &BatchOptions,
    now: OffsetDateTime,
    report: &mut dyn FnMut(&EntryOutcome),
    mut give_way: Option<&mut dyn FnMut()>,
) -> Result<Summary> {
    let Staged {
        requests,
        mut refused,
        renewing,
        capped,
    } = staged;
    let mut retire_error: Option<Error> = None;
    // Entries policy refused are reported in their place; the rest go to the engine.
    let (to_issue, positions): (Vec<IssuanceRequest>, Vec<usize>) = requests
        .into_iter()
        .enumerate()
        .filter(|(i, _)| refused[*i].is_none())
        .map(|(i, r)| (r, i))
        .unzip();
    let mut next = 0usize;
    let mut summary = Summary {
        total: entries.len(),
        ..Summary::default()
    };
    let run_opts = RunOptions {
        chunk: opts.chunk,
        threads: opts.threads,
    };
    let mut renewed = 0usize;
    let chunk = opts.chunk.max(1);
    // Chunks in the next slice: GIVE_WAY_CHUNKS, halved while a slice takes
    // longer than GIVE_WAY_AFTER (a slow disk), grown back when it is quick.
    let mut chunks = GIVE_WAY_CHUNKS;
    let mut counts = issue::Counts::default();
    let mut base = 0;
    while base < to_issue.len() {
        let len = match give_way {
            Some(_) => chunk.saturating_mul(chunks),
            None => to_issue.len(),
        };
        let part = &to_issue[base..to_issue.len().min(base.saturating_add(len))];
        let started = std::time::Instant::now();
        let c = issuer.issue_all(part, &run_opts, now, &mut |i, r| {
            let pos = positions[base + i];
            report_refused(&mut next, pos, &mut refused, entries, &mut summary, report);
            let mut o = EntryOutcome::of(&entries[pos].id, r);
            o.rotation.capped = capped[pos];
            if o.status == EntryStatus::Issued && renewing.contains(&pos) {
                o.status = EntryStatus::Renewed;
                renewed += 1;
                o.rotation.replaces = part[i].replaces.clone();
                if opts.revoke_old && retire_error.is_none() {
                    match retire_old(store, part[i].replaces.as_deref(), opts.grace, now) {
                        Ok(at) => o.rotation.retires_at = at,
                        Err(e) => retire_error = Some(e),
                    }
                }
            }
            report(&o);
            next = pos + 1;
        })?;
        if let Some(e) = retire_error.take() {
            return Err(e);
        }
        counts.issued += c.issued;
        counts.exists += c.exists;
        counts.refused += c.refused;
        base += part.len();
        chunks = next_slice(chunks, started.elapsed());
        if base < to_issue.len() {
            if let Some(give_way) = give_way.as_mut() {
                give_way();
            }
        }
    }
    report_refused(
        &mut next,
        entries.len(),
        &mut refused,
        entries,
        &mut summary,
        report,
    );
    summary.issued += counts.issued - renewed;
    summary.renewed += renewed;
    summary.exists += counts.exists;
    summary.refused += counts.refused;
    Ok(summary)
}

/// Chunks in the slice after one of `chunks` that took `took`: half as many
/// (at least one) after a slow slice, twice as many (at most
/// `GIVE_WAY_CHUNKS`) after a quick one.
fn next_slice(chunks: usize, took: std::time::Duration) -> usize {
    if took > GIVE_WAY_AFTER {
        (chunks / 2).max(1)
    } else if took < GIVE_WAY_AFTER / 2 {
        (chunks * 2).min(GIVE_WAY_CHUNKS)
    } else {
        chunks
    }
}

/// With `--renew-within`: the renewal of the certificate that stands for this
/// entry's id, when it expires within the window, is not revoked, and was issued
/// for this very request (a changed entry is left to the engine, which refuses it
/// as a request-id conflict).
fn renewal(
    issuer: &Issuer<'_>,
    store: &Store,
    opts: &BatchOptions,
    req: &IssuanceRequest,
    out_dir: &std::path::Path,
    now: OffsetDateTime,
) -> Result<(Option<IssuanceRequest>, Capped)> {
    let (Some(within), Some(id)) = (opts.renew_within, req.request_id.as_deref()) else {
        return Ok((None, None));
    };
    let Some(rec) = store.by_request_id(id)? else {
        return Ok((None, None));
    };
    // The certificate that stands for the id now: one renewed before is never
    // renewed again, its renewal is the one judged.
    let cur = issuer.current(rec)?;
    if opts.revoke_old {
        retire_left_valid(store, &cur, opts.grace, now)?;
    }
    let capped = match crate::renew::effective_window(&cur, within) {
        (w, true) if cur.status_at(now) == crate::store::Status::Valid => Some((
            (cur.not_after - cur.not_before).whole_seconds(),
            w.whole_seconds(),
        )),
        _ => None,
    };
    if !crate::renew::is_due(&cur, within, now) {
        return Ok((None, capped));
    }
    match issuer.check_same_request(&cur, req, now) {
        Ok(()) => {}
        Err(Error::Refused(_)) => return Ok((None, capped)),
        Err(e) => return Err(e),
    }
    let der = store
        .der(&cur)?
        .ok_or_else(|| Error::Store(format!("record {} has no certificate", cur.serial)))?;
    crate::renew::request(
        &cur,
        &der,
        crate::renew::RenewOutput::ReplaceAt(out_dir.join(id)),
        req.content.validity.clone(),
        Origin::Manifest,
    )
    .map(|r| (Some(r), capped))
}

/// Where the renewal window was capped for an entry's certificate: its
/// lifetime and the window applied, in seconds.
type Capped = Option<(i64, i64)>;

/// With `--revoke-old`: the certificate `cur` replaced, when it is still
/// valid and no retirement of it is pending (a kill between a renewal and its
/// retirement, or a renewal made without `--revoke-old`), retires now too.
fn retire_left_valid(
    store: &Store,
    cur: &crate::store::Record,
    grace: Option<time::Duration>,
    now: OffsetDateTime,
) -> Result<()> {
    let Some(prev) = cur.replaces.as_deref() else {
        return Ok(());
    };
    let Some(rec) = crate::store::hex_decode(prev)
        .map(|b| store.get(&b))
        .transpose()?
        .flatten()
    else {
        return Ok(());
    };
    if rec.status_at(now) == crate::store::Status::Valid
        && store.pending_retirement(&rec.serial)?.is_none()
    {
        retire_old(store, Some(prev), grace, now)?;
    }
    Ok(())
}

/// With `--revoke-old`: retire the certificate a renewal replaced (revoked as
/// superseded now, or recorded to be at the end of `grace`); when.
fn retire_old(
    store: &Store,
    old: Option<&str>,
    grace: Option<time::Duration>,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>> {
    let Some(bytes) = old.and_then(crate::store::hex_decode) else {
        return Ok(None);
    };
    let due = now + grace.unwrap_or(time::Duration::ZERO);
    Ok(match store.retire(&bytes, due, now)? {
        crate::store::Retired::Revoked(r) => r.revocation.map(|v| v.at),
        crate::store::Retired::AlreadyRevoked(r) => r.revocation.map(|v| v.at),
        crate::store::Retired::Scheduled(p) => Some(p.due),
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
    fn slices_shrink_on_a_slow_disk_and_grow_back() {
        let slow = GIVE_WAY_AFTER * 3;
        let quick = GIVE_WAY_AFTER / 4;
        let mut chunks = GIVE_WAY_CHUNKS;
        let mut seen = vec![];
        for took in [slow, slow, slow, slow, GIVE_WAY_AFTER, quick, quick, quick] {
            chunks = next_slice(chunks, took);
            seen.push(chunks);
        }
        assert_eq!(seen, [2, 1, 1, 1, 1, 2, 4, 4]);
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
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
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
            renew_within: None,
            revoke_old: false,
            grace: None,
        };
        let batch = |report: &mut dyn FnMut(&EntryOutcome), give_way: Option<&mut dyn FnMut()>| {
            run(&ca, &store, &manifest, "m", &opts, now, report, give_way).unwrap()
        };
        let mut seen = Vec::new();
        // Given a way to give way (a server's engine): called between slices
        // of GIVE_WAY_CHUNKS chunks (here 28 of the 29 entries to issue), with
        // the slice before recorded and nothing of the next one under way.
        let mut turns = Vec::new();
        let summary = batch(
            &mut |o| seen.push((o.id.clone(), o.status)),
            Some(&mut || turns.push(store.count())),
        );
        assert_eq!(turns, [opts.chunk * GIVE_WAY_CHUNKS]);
        assert_eq!(summary.issued, 29);
        assert_eq!(summary.refused, 1);
        let ids: Vec<String> = seen.iter().map(|(id, _)| id.clone()).collect();
        let want: Vec<String> = (0..30).map(|i| format!("e{i:02}")).collect();
        assert_eq!(ids, want);
        assert_eq!(seen[11].1, EntryStatus::Refused);
        assert_eq!(store.count(), 29);
        let files = std::fs::read_dir(dir.path().join("out")).unwrap().count();
        assert_eq!(files, 29 * 3);

        let summary = batch(&mut |_| {}, None);
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
}
