//! `serve`'s CRL publisher: the CRLs in the CA's `crl/` are kept current for
//! as long as the server runs, whoever serves them (the publication listener,
//! or any web server that reads the directory).
//!
//! - **At start**, before the publication listener accepts its first
//!   connection: every CA's CRL (so the CRL URL of a fresh server never
//!   answers 404).
//! - **After every revocation**, whatever door it came through (ACME
//!   revokeCert, the control socket's `revoke` and `crl`, a `renew
//!   --revoke-old` through the socket, ...): the engine counts the store's
//!   revocations ([`crate::service::Service::revocations`]) and this task
//!   waits on that count. A burst is one publication: at most one every
//!   [`MIN_GAP`].
//! - **Before half of nextUpdate has passed** ([`crate::crl::republish_due`]),
//!   checked every tenth of the interval (at least every second, at most
//!   every 30 s) against the files themselves, so a CRL signed by hand with a
//!   shorter `--next-update` is refreshed in time as well.
//! - **When the publication door finds a CRL past its nextUpdate** (it never
//!   serves one: 503), it pokes this task.
//!
//! Every CRL is signed on the engine thread (`crl::publish_all` through
//! [`crate::service::ops::SignCrls`]), which holds the store; all CAs at
//! once, not only the revoked certificate's issuer: `publish_all` is the one
//! function that knows every CA whose CRL is published (every generation of
//! a rolled CA too), the CRLs of the CAs that revoked nothing are small, and
//! bursts are coalesced. Each publication is logged (CA, number, entries,
//! nextUpdate); a failed one is logged and retried after 1 s, 2 s, 4 s, ...
//! up to a tenth of the interval or [`MAX_BACKOFF`]; it never stops the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{watch, Notify};

use super::engine::Engine;
use crate::error::Result;

/// The shortest nextUpdate interval `serve --crl-next-update` accepts.
pub const MIN_NEXT_UPDATE: time::Duration = time::Duration::seconds(10);
/// At most one publication this often (a burst of revocations is one).
pub const MIN_GAP: Duration = Duration::from_secs(1);
/// The longest wait between two attempts after failed publications (and at
/// most a tenth of the interval, so a CRL is retried several times before the
/// one published goes past its nextUpdate).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The largest CRL file the publisher and the publication door read.
pub const MAX_CRL_BYTES: u64 = 16 * 1024 * 1024;

/// What identifies one version of a file: a CRL is replaced by a rename, so
/// a new one is a new inode (and its size or time differ too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl Version {
    fn of(meta: &std::fs::Metadata) -> Version {
        use std::os::unix::fs::MetadataExt;
        Version {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// thisUpdate and nextUpdate of a CRL.
pub(super) type Times = (OffsetDateTime, OffsetDateTime);

/// What the publisher and the publication door share: the times of the CRL
/// files as last parsed (one entry per file, kept while its version stays the
/// same, so a request does not parse a large CRL again), the files the last
/// publication wrote, and the door's poke.
#[derive(Debug, Default)]
pub(super) struct Crls {
    parsed: Mutex<HashMap<PathBuf, (Version, Option<Times>)>>,
    files: Mutex<Vec<PathBuf>>,
    poke: Notify,
}

impl Crls {
    /// The times of the CRL `bytes` read from `path` whose handle had `meta`:
    /// from the cache when that version was parsed before. `None`: not a CRL.
    pub(super) fn times(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        bytes: &[u8],
    ) -> Option<Times> {
        let version = Version::of(meta);
        if let Some((v, times)) = self.parsed.lock().ok()?.get(path) {
            if *v == version {
                return *times;
            }
        }
        let times = crate::crl::crl_times(bytes);
        if let Ok(mut parsed) = self.parsed.lock() {
            parsed.insert(path.to_path_buf(), (version, times));
        }
        times
    }

    /// The times of the CRL file at `path` (read only when this version was
    /// not parsed before); `None` when it is missing or not a CRL.
    fn times_of_file(&self, path: &Path) -> Option<Times> {
        use std::io::Read;
        let f = std::fs::File::open(path).ok()?;
        let meta = f.metadata().ok()?;
        let version = Version::of(&meta);
        if let Some((v, times)) = self.parsed.lock().ok()?.get(path) {
            if *v == version {
                return *times;
            }
        }
        if meta.len() > MAX_CRL_BYTES {
            return None;
        }
        let mut bytes = Vec::new();
        f.take(MAX_CRL_BYTES).read_to_end(&mut bytes).ok()?;
        self.times(path, &meta, &bytes)
    }

    /// Ask the publisher for new CRLs now (the door found one past its nextUpdate).
    pub(super) fn poke(&self) {
        self.poke.notify_one();
    }

    /// Whether a CRL the last publication wrote must be signed again at `now`
    /// (missing, unreadable, or half of its span or of `interval` passed).
    fn due(&self, interval: time::Duration, now: OffsetDateTime) -> bool {
        let files = self.files.lock().map(|f| f.clone()).unwrap_or_default();
        files.iter().any(|f| match self.times_of_file(f) {
            Some((this, next)) => crate::crl::republish_due(this, next, interval, now),
            None => true,
        })
    }
}

/// How `serve` publishes its CRLs.
#[derive(Clone)]
pub(super) struct Publisher {
    engine: Engine,
    crls: Arc<Crls>,
    /// nextUpdate − thisUpdate of every CRL signed.
    interval: time::Duration,
}

impl Publisher {
    pub(super) fn new(engine: Engine, crls: Arc<Crls>, interval: time::Duration) -> Publisher {
        Publisher {
            engine,
            crls,
            interval,
        }
    }

    /// Sign and publish every CA's CRL through the engine, and log each one
    /// (or the failure).
    pub(super) async fn publish(&self, why: &str) -> Result<()> {
        let signed = self.engine.publish_crls(self.interval).await;
        let now = crate::timefmt::rfc3339(OffsetDateTime::now_utc());
        match signed {
            Ok(signed) => {
                let mut files = Vec::new();
                for s in &signed {
                    let c = &s.crl;
                    crate::serverlog::line(format!(
                        "{now} crl=published ca={} number={} entries={} this_update={} next_update={} file={} why={why}",
                        c.issuer.as_str(),
                        c.number,
                        c.revoked,
                        crate::timefmt::rfc3339(c.this_update),
                        crate::timefmt::rfc3339(c.next_update),
                        s.file.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                    ));
                    files.extend(s.file.clone());
                }
                if let Ok(mut f) = self.crls.files.lock() {
                    *f = files;
                }
                Ok(())
            }
            Err(e) => {
                let reason = serde_json::Value::String(e.to_string()).to_string();
                crate::serverlog::line(format!("{now} crl=failed why={why} reason={reason}"));
                Err(e)
            }
        }
    }

    /// Keep the CRLs current until shutdown: after each revocation (a burst
    /// coalesced), when one is due again, when the door pokes; failures
    /// retried with a growing backoff. `pending`: the start's publication
    /// failed, so one is owed at once.
    pub(super) async fn run(self, mut pending: bool, mut shutdown: watch::Receiver<bool>) {
        let mut revocations = self.engine.service.revocations();
        revocations.borrow_and_update();
        let tenth = self.interval.whole_milliseconds() / 10;
        let check_every = Duration::from_millis(tenth.clamp(1_000, 30_000) as u64);
        let max_backoff = Duration::from_millis(tenth.max(1_000) as u64).min(MAX_BACKOFF);
        let mut last = Instant::now();
        let mut backoff = Duration::ZERO;
        let mut why = "start-retry";
        loop {
            if !pending {
                tokio::select! {
                    r = revocations.changed() => {
                        if r.is_err() {
                            return;
                        }
                        why = "revocation";
                        pending = true;
                    }
                    _ = self.crls.poke.notified() => {
                        why = "expired";
                        pending = true;
                    }
                    _ = tokio::time::sleep(check_every) => {}
                    _ = shutdown.changed() => return,
                }
            }
            if !pending {
                let (crls, interval) = (self.crls.clone(), self.interval);
                let due = tokio::task::spawn_blocking(move || {
                    crls.due(interval, OffsetDateTime::now_utc())
                })
                .await
                .unwrap_or(true);
                if due {
                    why = "refresh";
                } else if self.engine.retirement_due().await.unwrap_or(false) {
                    // A replaced certificate's grace ended: publishing
                    // revokes it (`crl::before_publish`) and lists it.
                    why = "retirement";
                } else {
                    continue;
                }
            }
            // At most one publication per MIN_GAP (the revocations that come
            // meanwhile are in it), none before the backoff of a failure.
            let not_before = last + MIN_GAP.max(backoff);
            tokio::select! {
                _ = tokio::time::sleep_until(not_before.into()) => {}
                _ = shutdown.changed() => return,
            }
            revocations.borrow_and_update();
            last = Instant::now();
            match self.publish(why).await {
                Ok(()) => {
                    pending = false;
                    backoff = Duration::ZERO;
                }
                Err(_) => {
                    pending = true;
                    backoff = (backoff * 2).clamp(MIN_GAP, max_backoff);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CRL signed by a throwaway CA, PEM, with these times.
    fn crl_pem(this: OffsetDateTime, next: OffsetDateTime) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::CrlSign];
        let issuer = rcgen::Issuer::new(params, key);
        let crl = rcgen::CertificateRevocationListParams {
            this_update: this,
            next_update: next,
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        crl.pem().unwrap()
    }

    /// A file's times are read again when the file is replaced (as a
    /// publication replaces it: a rename), and a missing or torn file is due.
    #[test]
    fn times_follow_the_file_and_missing_ones_are_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.crl");
        let crls = Crls::default();
        if let Ok(mut f) = crls.files.lock() {
            f.push(path.clone());
        }
        let week = time::Duration::days(7);
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        assert!(crls.due(week, now), "missing");
        std::fs::write(&path, crl_pem(now, now + week)).unwrap();
        assert_eq!(crls.times_of_file(&path), Some((now, now + week)));
        assert!(!crls.due(week, now));
        assert!(crls.due(week, now + week / 2));
        // Replaced by a rename, as a publication does: the new times.
        let later = now + time::Duration::hours(1);
        let tmp = dir.path().join(".device.crl.tmp");
        std::fs::write(&tmp, crl_pem(later, later + week)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(crls.times_of_file(&path), Some((later, later + week)));
        // A torn file is no CRL: due at once.
        std::fs::write(&tmp, "-----BEGIN X509 CRL-----\nMII").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(crls.times_of_file(&path), None);
        assert!(crls.due(week, later));
    }
}
