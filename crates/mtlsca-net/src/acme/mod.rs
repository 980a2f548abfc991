//! ACME (RFC 8555) for `mtlsca serve` (issue 14): JWS verification of requests
//! ([`jws`]), replay nonces ([`nonce`]), external account binding ([`eab`]), the
//! validator's DNS lookups ([`dns`]), the problem types of RFC 8555 §6.7
//! ([`problem`]) and the HTTPS server with its ACME endpoints
//! ([`server`]; its state — accounts, orders, authorizations, chains, EAB keys —
//! in the CA's store, `store::acme`).

pub mod dns;
pub mod eab;
pub mod jws;
pub mod nonce;
pub mod problem;
pub mod server;
