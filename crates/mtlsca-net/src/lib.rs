//! mtlsca's network doors: the mTLS proxy ([`proxy`]), the ACME server with
//! its publication listener ([`acme`]), the control socket's server
//! ([`control`]), the connection limits every listener admits through
//! ([`conn_limit`]) and the servers' log ([`serverlog`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acme;
pub mod conn_limit;
pub mod control;
pub mod proxy;
pub mod serverlog;

#[doc(no_inline)]
pub use mtlsca_ca::{
    backup, batch, ca, crl, eab_keys, export, fsutil, issue, keypair, lookup, quickstart, renew,
    service, store,
};
#[doc(no_inline)]
pub use mtlsca_rules::{
    error, hex, key, name_constraints, names, policy, profile, role, rules, text, timefmt,
};
#[doc(no_inline)]
pub use mtlsca_verify::{inspect, verify};
