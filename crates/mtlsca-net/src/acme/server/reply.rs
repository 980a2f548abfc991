//! Problem documents and replies.

use super::*;

// ---------------------------------------------------------------------------
// Problems and replies
// ---------------------------------------------------------------------------

/// An ACME problem document (RFC 8555 §6.7).
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) status: StatusCode,
    pub(super) kind: ProblemType,
    pub(super) detail: String,
    pub(super) subproblems: Vec<Value>,
    pub(super) retry_after: Option<u32>,
}

impl Problem {
    pub(super) fn new(status: StatusCode, kind: ProblemType, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            kind,
            detail: detail.into(),
            subproblems: Vec::new(),
            retry_after: None,
        }
    }
    pub(super) fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, ProblemType::Malformed, detail)
    }
    pub(super) fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, ProblemType::Unauthorized, detail)
    }
    /// `rateLimited` (429) with the seconds to wait in Retry-After.
    pub(super) fn rate_limited(detail: impl Into<String>, retry_after: u32) -> Problem {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            ProblemType::RateLimited,
            detail,
        );
        p.retry_after = Some(retry_after.max(1));
        p
    }
    pub(super) fn not_found() -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            ProblemType::Malformed,
            "no such resource",
        )
    }
    pub(super) fn internal(e: &Error) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::ServerInternal,
            e.to_string(),
        )
    }
    pub(super) fn jws(e: JwsError) -> Problem {
        Problem {
            status: StatusCode::BAD_REQUEST,
            kind: e.problem(),
            detail: e.to_string(),
            subproblems: Vec::new(),
            retry_after: None,
        }
    }

    /// The engine's refusals as a problem of `kind`, one subproblem per rule
    /// broken (its code in `detail` and in `rule`); `by_policy` when the
    /// request was well-formed and policy said no (else it was malformed:
    /// a name's syntax, an unreadable CSR).
    pub(super) fn refusals(
        kind: ProblemType,
        what: &str,
        r: &Refusals,
        by_policy: bool,
    ) -> Problem {
        let subs: Vec<Value> = r
            .reasons
            .iter()
            .map(|x| {
                let mut v = json!({
                    "type": kind,
                    "detail": format!("{}: {}", x.rule.code(), r.message_of(x)),
                    "rule": x.rule.code(),
                });
                if let Some(val) = &x.value {
                    if kind == ProblemType::RejectedIdentifier {
                        v["identifier"] = json!({"type": if val.parse::<IpAddr>().is_ok() {"ip"} else {"dns"}, "value": val});
                    }
                }
                v
            })
            .collect();
        let codes: Vec<&str> = r.reasons.iter().map(|x| x.rule.code()).collect();
        Problem {
            status: StatusCode::BAD_REQUEST,
            kind,
            detail: format!(
                "{what} refused{} ({}): {}",
                if by_policy { " by policy" } else { "" },
                codes.join(", "),
                r.messages().join("; ")
            ),
            subproblems: subs,
            retry_after: None,
        }
    }

    /// From an engine error: refusals become `kind`, the rest serverInternal.
    pub(super) fn engine(kind: ProblemType, what: &str, e: &Error) -> Problem {
        match e {
            Error::Refused(r) => Problem::refusals(kind, what, r, true),
            Error::Invalid(r) => Problem::refusals(kind, what, r, false),
            other => Problem::internal(other),
        }
    }

    pub(super) fn body(&self) -> Value {
        let mut v = json!({
            "type": self.kind,
            "detail": self.detail,
            "status": self.status.as_u16(),
        });
        if !self.subproblems.is_empty() {
            v["subproblems"] = Value::Array(self.subproblems.clone());
        }
        v
    }
}

/// A successful answer.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) content_type: &'static str,
    pub(super) body: Vec<u8>,
    pub(super) location: Option<String>,
    pub(super) links: Vec<String>,
    pub(super) retry_after: Option<u32>,
}

impl Reply {
    /// A reply with this body and content type, no headers beyond them.
    pub(super) fn body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }
    pub(super) fn json(status: StatusCode, v: Value) -> Reply {
        Reply::body(status, "application/json", v.to_string().into_bytes())
    }
    pub(super) fn at(mut self, url: String) -> Reply {
        self.location = Some(url);
        self
    }
    pub(super) fn link(mut self, url: &str, rel: &str) -> Reply {
        self.links.push(format!("<{url}>;rel=\"{rel}\""));
        self
    }
}

pub(super) fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

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
