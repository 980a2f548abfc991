//! mtlsca's certificate authority: the hierarchy and its keys ([`ca`],
//! [`keypair`]), the store ([`store`]), the one issuance engine ([`issue`]),
//! batches, CRLs, exports, backups, lookups and renewals, and the service a
//! server holds the CA through ([`service`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backup;
pub mod batch;
pub mod ca;
pub mod crl;
pub mod eab_keys;
pub mod export;
pub mod external;
pub mod fsutil;
pub mod issue;
pub mod keypair;
pub mod lookup;
pub mod quickstart;
pub mod renew;
pub mod rotate;
pub mod service;
pub mod store;
pub mod trust;

#[doc(no_inline)]
pub use mtlsca_rules::{
    error, hex, key, name_constraints, names, policy, profile, role, rules, text, timefmt,
};
#[doc(no_inline)]
pub use mtlsca_verify::{inspect, verify};

pub use ca::{Ca, CaKind, InitOptions, PassphraseSource};
pub use issue::{IssuanceRequest, IssueStatus, Issued, Issuer, KeySource, Output, RunOptions};
pub use store::{Record, Store};
