//! The refusal log of `serve`'s listeners: one line on stderr (through
//! [`crate::serverlog`]) for each refused request or connection.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;

/// One line on stderr for each refused request or connection, in the proxy's
/// format: `TIME peer=ADDR request="METHOD PATH" verdict=refused status=N
/// problem=TYPE reason="…"` (`verdict=error` for a 5xx). Nothing for an answer
/// that is not a refusal.
pub(super) fn log_refusal(
    peer: &str,
    request: &str,
    status: StatusCode,
    problem: &str,
    reason: &str,
) {
    let verdict = if status.is_server_error() {
        "error"
    } else {
        "refused"
    };
    let quote = |s: &str| Value::String(s.trim().to_string()).to_string();
    crate::serverlog::line(format!(
        "{} peer={peer} request={} verdict={verdict} status={} problem={problem} reason={}",
        crate::timefmt::rfc3339(OffsetDateTime::now_utc()),
        quote(request),
        status.as_u16(),
        quote(reason)
    ));
}

/// Connections dropped at the connection limit since the last line about them:
/// logged at most once a second, with their count, so a flood cannot fill the
/// log.
static DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static DROPPED_LOGGED: Mutex<Option<Instant>> = Mutex::new(None);

pub(super) fn log_dropped_at_limit(peer: &str, refusal: &crate::conn_limit::GateRefusal) {
    use std::sync::atomic::Ordering;
    let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = DROPPED_LOGGED.lock().unwrap_or_else(|p| p.into_inner());
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
        return;
    }
    *last = Some(Instant::now());
    DROPPED.fetch_sub(n, Ordering::Relaxed);
    log_refusal(
        peer,
        "connection",
        StatusCode::TOO_MANY_REQUESTS,
        "connectionLimit",
        &format!("{refusal}; {n} connection(s) closed at once since the last such line"),
    );
}
