//! ACME problem documents (RFC 8555 §6.7): a [`ProblemType`] with the HTTP
//! status, the detail, and the subproblems that name the rules broken.

use std::net::IpAddr;

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::acme::eab::EabError;
use crate::acme::jws::JwsError;
use crate::acme::problem::ProblemType;
use crate::error::Error;
use crate::rules::Refusals;

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

    /// An external account binding that does not hold (401).
    pub(super) fn eab(e: EabError) -> Problem {
        Problem {
            status: StatusCode::UNAUTHORIZED,
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
