//! The refusal log of `serve`'s listeners: one line on stderr (through
//! [`crate::serverlog`]) for each refused request or connection.

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

/// The line about connections closed at the connection limits (counted by the
/// listener's [`crate::conn_limit::RefusalThrottle`]).
pub(super) fn log_dropped_at_limit(line: &crate::conn_limit::RefusalLine) {
    log_refusal(
        &line.peer.to_string(),
        "connection",
        StatusCode::TOO_MANY_REQUESTS,
        "connectionLimit",
        &line.reason,
    );
}
