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
    /// The HTTP status it is answered with.
    pub(super) status: StatusCode,
    /// Its type (`type`, as a URN).
    pub(super) kind: ProblemType,
    /// What went wrong, for a person.
    pub(super) detail: String,
    /// One problem document per rule broken (`subproblems`).
    pub(super) subproblems: Vec<Value>,
    /// Retry-After, in seconds.
    pub(super) retry_after: Option<u32>,
}

impl Problem {
    /// A problem of `kind` answered with `status`.
    pub(super) fn new(status: StatusCode, kind: ProblemType, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            kind,
            detail: detail.into(),
            subproblems: Vec::new(),
            retry_after: None,
        }
    }
    /// `malformed` (400).
    pub(super) fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, ProblemType::Malformed, detail)
    }
    /// `unauthorized` (403).
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
    /// A resource that does not exist (404, `malformed`).
    pub(super) fn not_found() -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            ProblemType::Malformed,
            "no such resource",
        )
    }
    /// `serverInternal` (500): the store or the engine failed.
    pub(super) fn internal(e: &Error) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ProblemType::ServerInternal,
            e.to_string(),
        )
    }
    /// A JWS that does not hold (400, of the type the error says).
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

    /// The problem document (`application/problem+json`).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Origin, Refusal, Rule};

    #[test]
    fn a_problem_document_carries_its_urn_status_and_rules() {
        let p = Problem::rate_limited("slow down", 0);
        assert_eq!(p.retry_after, Some(1), "at least a second");
        assert_eq!(
            p.body(),
            json!({"type": "urn:ietf:params:acme:error:rateLimited", "detail": "slow down", "status": 429})
        );
        let r = Refusals::new(
            Origin::Acme,
            vec![
                Refusal::new(Rule::NameOutsideConstraints, "outside").value("evil.test"),
                Refusal::new(Rule::WildcardNotAllowed, "no wildcards").value("10.0.0.1"),
            ],
        );
        let p = Problem::engine(
            ProblemType::RejectedIdentifier,
            "the order",
            &Error::Refused(r),
        );
        assert_eq!(
            (p.status, p.kind),
            (StatusCode::BAD_REQUEST, ProblemType::RejectedIdentifier)
        );
        assert!(
            p.detail.starts_with(
                "the order refused by policy (name-outside-constraints, wildcard-not-allowed): "
            ),
            "{}",
            p.detail
        );
        let body = p.body();
        let subs = body["subproblems"].as_array().unwrap();
        assert_eq!(
            subs[0]["type"],
            "urn:ietf:params:acme:error:rejectedIdentifier"
        );
        assert_eq!(subs[0]["rule"], "name-outside-constraints");
        assert_eq!(
            subs[0]["identifier"],
            json!({"type": "dns", "value": "evil.test"})
        );
        assert_eq!(
            subs[1]["identifier"],
            json!({"type": "ip", "value": "10.0.0.1"})
        );
        // Only rejectedIdentifier names the identifier; a 5xx is serverInternal.
        let r = Refusals::new(
            Origin::Acme,
            vec![Refusal::new(Rule::NameOutsideConstraints, "x").value("a")],
        );
        let p = Problem::engine(ProblemType::BadCsr, "the CSR", &Error::Invalid(r));
        assert!(p
            .detail
            .starts_with("the CSR refused (name-outside-constraints)"));
        assert!(p.body()["subproblems"][0].get("identifier").is_none());
        let p = Problem::engine(ProblemType::BadCsr, "the CSR", &Error::State("disk".into()));
        assert_eq!(
            (p.status, p.kind),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                ProblemType::ServerInternal
            )
        );
    }
}
