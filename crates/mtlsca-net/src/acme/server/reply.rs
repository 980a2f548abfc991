//! What a handler answers when it does not refuse: the HTTP layer
//! above writes it out with the headers every answer carries.

use hyper::StatusCode;
use serde_json::Value;

/// A successful answer.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) content_type: &'static str,
    pub(super) body: Vec<u8>,
    /// The Location header (a new or the answered resource).
    pub(super) location: Option<String>,
    /// Link headers beyond the directory's (`rel="up"`).
    pub(super) links: Vec<String>,
    /// Retry-After, in seconds.
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
    /// A JSON reply.
    pub(super) fn json(status: StatusCode, v: Value) -> Reply {
        Reply::body(status, "application/json", v.to_string().into_bytes())
    }
    /// With a Location header.
    pub(super) fn at(mut self, url: String) -> Reply {
        self.location = Some(url);
        self
    }
    /// With a Link header of relation `rel`.
    pub(super) fn link(mut self, url: &str, rel: &str) -> Reply {
        self.links.push(format!("<{url}>;rel=\"{rel}\""));
        self
    }
}
