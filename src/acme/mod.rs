//! ACME (RFC 8555) building blocks for `mtlsca serve` (issue 14). What is here
//! so far: JWS verification of requests ([`jws`]). The server, its state in the
//! store and the challenges are not built yet.

pub mod jws;
