//! ACME (RFC 8555) building blocks for `mtlsca serve` (issue 14). What is here
//! so far: JWS verification of requests ([`jws`]), replay nonces ([`nonce`]) and
//! external account binding ([`eab`]). The server, its state in the store and the
//! challenges are not built yet.

pub mod eab;
pub mod jws;
pub mod nonce;
