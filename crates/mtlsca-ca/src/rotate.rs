//! `renew --all`: renew every current, valid certificate that is due
//! ([`crate::renew::is_due`]), in place, and retire what the renewals replaced.
//!
//! It runs through a [`Backend`] (list, show, issue, retire), so it works the
//! same with the store opened here and through a running server's control
//! socket. Certificates whose files were not written by mtlsca (signed CSRs)
//! are skipped with the reason.

use std::collections::HashSet;
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::renew::{self, RenewOutput, WindowCaps};
use crate::rules::Origin;
use crate::service::Backend;
use crate::store::{ListFilter, Record, Status};

/// What `renew --all` renews and how.
#[derive(Debug, Clone, Default)]
pub struct RenewAllOptions {
    /// The renewal window (capped per certificate at 2/3 of its lifetime).
    pub within: time::Duration,
    /// Only this profile's certificates.
    pub profile: Option<String>,
    /// Only certificates whose names or subject match (glob or substring, as `list --name`).
    pub name: Option<String>,
    /// The new certificates' validity (default: each profile's).
    pub validity: Option<String>,
    /// Retire the certificates renewed (revoke them as superseded).
    pub revoke_old: bool,
    /// After this grace period.
    pub grace: Option<time::Duration>,
    /// Say what would be renewed; write and record nothing.
    pub dry_run: bool,
}

/// What happened to one due certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewAllStatus {
    /// Renewed by this run.
    Renewed,
    /// Due, and would be renewed (`--dry-run`).
    Due,
    /// Due, but not renewable in place (see the reason).
    Skipped,
    /// Due, but the renewal was refused (see the reason).
    Refused,
    /// Replaced by an earlier renewal and still valid (an interrupted
    /// `--revoke-old`): retired by this run.
    Retired,
}

impl RenewAllStatus {
    /// `renewed`, `due`, `skipped` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            RenewAllStatus::Renewed => "renewed",
            RenewAllStatus::Due => "due",
            RenewAllStatus::Skipped => "skipped",
            RenewAllStatus::Refused => "refused",
            RenewAllStatus::Retired => "retired",
        }
    }
}

/// The report of one due certificate.
#[derive(Debug, Clone)]
pub struct RenewAllEntry {
    /// The certificate that was due.
    pub old: Record,
    /// What happened.
    pub status: RenewAllStatus,
    /// Its renewal.
    pub new: Option<Record>,
    /// The files written for the renewal.
    pub files: Vec<PathBuf>,
    /// With `--revoke-old`: when the old certificate is revoked (now, or at
    /// the end of the grace period).
    pub retires_at: Option<OffsetDateTime>,
    /// Why it was skipped or refused.
    pub reason: Option<String>,
}

/// How a `renew --all` run ended.
#[derive(Debug, Clone, Default)]
pub struct RenewAllSummary {
    /// Current, valid certificates matching the filters.
    pub considered: usize,
    /// Renewed (or, with `--dry-run`, due).
    pub renewed: usize,
    /// Due but skipped.
    pub skipped: usize,
    /// Due but refused.
    pub refused: usize,
    /// Where the window was capped.
    pub caps: WindowCaps,
}

/// Renew every current, valid certificate matching `opts` that is due at
/// `now`, in place, calling `report` for each due one in serial order.
pub fn renew_all(
    backend: &Backend,
    opts: &RenewAllOptions,
    now: OffsetDateTime,
    report: &mut dyn FnMut(&RenewAllEntry),
) -> Result<RenewAllSummary> {
    // Retirements due by now first (and nothing else changes in a dry run).
    if !opts.dry_run {
        backend.apply_retirements(now)?;
    }
    // Every status: a renewal has the profile and names of what it replaced,
    // so the filters find both, and a certificate replaced by a recorded
    // renewal (even one revoked since) is never renewed again.
    let records = backend.list(
        ListFilter {
            profile: opts.profile.clone(),
            name: opts.name.clone(),
            ..Default::default()
        },
        now,
    )?;
    let replaced: HashSet<&str> = records
        .iter()
        .filter_map(|r| r.replaces.as_deref())
        .collect();
    let mut summary = RenewAllSummary::default();
    if opts.revoke_old && !opts.dry_run {
        // A renewal whose retirement was not recorded (a kill between the
        // two): the replaced certificate is still valid and retires now.
        let pending: HashSet<String> = backend
            .retiring(now)?
            .into_iter()
            .map(|p| p.serial)
            .collect();
        for rec in records.iter().filter(|r| {
            r.status_at(now) == Status::Valid
                && replaced.contains(r.serial.as_str())
                && !pending.contains(&r.serial)
        }) {
            let r = backend.retire(&rec.serial, opts.grace, now)?;
            report(&RenewAllEntry {
                old: rec.clone(),
                status: RenewAllStatus::Retired,
                new: None,
                files: Vec::new(),
                retires_at: r.due.or_else(|| r.record.revocation.as_ref().map(|v| v.at)),
                reason: Some(
                    "replaced by an earlier renewal and still valid: retired as superseded".into(),
                ),
            });
        }
    }
    for rec in records
        .iter()
        .filter(|r| r.status_at(now) == Status::Valid && !replaced.contains(r.serial.as_str()))
    {
        summary.considered += 1;
        summary.caps.note(rec, opts.within);
        if !renew::is_due(rec, opts.within, now) {
            continue;
        }
        let mut entry = RenewAllEntry {
            old: rec.clone(),
            status: RenewAllStatus::Due,
            new: None,
            files: Vec::new(),
            retires_at: None,
            reason: None,
        };
        if rec.key_file.is_none() {
            entry.status = RenewAllStatus::Skipped;
            entry.reason = Some(format!(
                "signed from a CSR, no recorded files to renew in place: `mtlsca renew {} --out PREFIX`",
                rec.serial
            ));
            summary.skipped += 1;
        } else if opts.dry_run {
            summary.renewed += 1;
        } else {
            renew_one(backend, opts, rec, now, &mut entry, &mut summary)?;
        }
        report(&entry);
    }
    Ok(summary)
}

/// Renew `rec` in place and retire it when asked; refusals are the entry's.
fn renew_one(
    backend: &Backend,
    opts: &RenewAllOptions,
    rec: &Record,
    now: OffsetDateTime,
    entry: &mut RenewAllEntry,
    summary: &mut RenewAllSummary,
) -> Result<()> {
    let shown = backend.show(&rec.serial, now)?;
    let issued = renew::request(
        rec,
        &shown.der,
        RenewOutput::InPlace,
        opts.validity.clone(),
        Origin::Arguments,
    )
    .and_then(|req| backend.issue(req, now));
    let issued = match issued {
        Ok(i) => i,
        Err(
            e @ (Error::Refused(_) | Error::Invalid(_) | Error::Usage(_) | Error::Input { .. }),
        ) => {
            entry.status = RenewAllStatus::Refused;
            entry.reason = Some(e.to_string());
            summary.refused += 1;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    entry.status = RenewAllStatus::Renewed;
    entry.files = issued.files;
    entry.new = Some(issued.record);
    summary.renewed += 1;
    if opts.revoke_old {
        let r = backend.retire(&rec.serial, opts.grace, now)?;
        entry.retires_at = match r.due {
            Some(due) => Some(due),
            None => r.record.revocation.as_ref().map(|v| v.at),
        };
    }
    Ok(())
}
