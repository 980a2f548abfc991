//! The wire forms of the rotation operations ([`ops::Retire`],
//! [`ops::Retiring`], [`ops::RevokeLineage`]).

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::data::{self, Conv};
use super::{absolute_query, Remote, Request};
use crate::service::ops;
use crate::store::PendingRetirement;

/// [`ops::Retirement`] as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// The certificate, afterwards.
    pub record: data::Record,
    /// Revoked by this call.
    pub revoked: bool,
    /// When it will be revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub due: Option<OffsetDateTime>,
}

/// A [`PendingRetirement`] as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The certificate's serial.
    pub serial: String,
    /// Its issuing CA.
    pub issuer: String,
    /// When it is revoked.
    #[serde(with = "time::serde::rfc3339")]
    pub due: OffsetDateTime,
    /// Why.
    pub reason: String,
}

/// [`ops::RevokedLineage`] as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedLineage {
    /// The request id, when the query was one.
    pub request_id: Option<String>,
    /// The certificates revoked.
    pub revoked: Vec<data::Record>,
}

impl Remote for ops::Retire {
    type Wire = Retirement;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Retire {
            serial: self.serial,
            grace: self.grace.map(Into::into),
        })
    }

    fn answer_out(a: ops::Retirement) -> Retirement {
        Retirement {
            record: a.record.into(),
            revoked: a.revoked,
            due: a.due,
        }
    }

    fn answer_in(w: Retirement) -> ops::Retirement {
        ops::Retirement {
            record: w.record.into(),
            revoked: w.revoked,
            due: w.due,
        }
    }
}

impl Remote for ops::Retiring {
    type Wire = Vec<Pending>;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::Retiring)
    }

    fn answer_out(a: Vec<PendingRetirement>) -> Vec<Pending> {
        a.into_iter()
            .map(|p| Pending {
                serial: p.serial,
                issuer: p.issuer,
                due: p.due,
                reason: p.reason,
            })
            .collect()
    }

    fn answer_in(w: Vec<Pending>) -> Vec<PendingRetirement> {
        w.into_iter()
            .map(|p| PendingRetirement {
                serial: p.serial,
                issuer: p.issuer,
                due: p.due,
                reason: p.reason,
            })
            .collect()
    }
}

impl Remote for ops::ApplyRetirements {
    type Wire = u64;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::ApplyRetirements)
    }

    fn answer_out(a: u64) -> u64 {
        a
    }

    fn answer_in(w: u64) -> u64 {
        w
    }
}

impl Remote for ops::RevokeLineage {
    type Wire = RevokedLineage;

    fn to_request(self) -> Conv<Request> {
        Ok(Request::RevokeLineage {
            query: self.query,
            reason: self.reason.into(),
        })
    }

    fn answer_out(a: ops::RevokedLineage) -> RevokedLineage {
        RevokedLineage {
            request_id: a.request_id,
            revoked: a.revoked.into_iter().map(Into::into).collect(),
        }
    }

    fn answer_in(w: RevokedLineage) -> ops::RevokedLineage {
        ops::RevokedLineage {
            request_id: w.request_id,
            revoked: w.revoked.into_iter().map(Into::into).collect(),
        }
    }

    fn absolutize(&mut self, cwd: &Path) -> bool {
        absolute_query(&mut self.query, cwd);
        false
    }
}
