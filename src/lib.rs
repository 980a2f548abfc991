//! mtlsca: a private certificate authority that gives EKUs one meaning each, as
//! draft-frank-mtls-via-serverauth-extension-00 proposes: serverAuth identifies a
//! device, clientAuth an entity (a person or an organisation).
//!
//! The crate is a library first; the `mtlsca` binary is a thin layer over it.
//! The types most callers need are re-exported here:
//!
//! - issuing: [`Ca`] (a CA directory), [`Store`] (its records), [`Issuer`] (the
//!   one engine) taking an [`IssuanceRequest`] and giving an [`Issued`], or a
//!   refusal whose [`Refusal`]s name a [`Rule`] of the rulebook;
//! - verifying: [`verify_cert`], [`check_pair`] (with an optional loopback
//!   handshake) and the rustls verifiers [`DraftClientCertVerifier`] /
//!   [`DraftServerCertVerifier`] built from a [`DraftPolicy`];
//! - the draft's vocabulary: [`Role`], [`Eku`], [`CertClass`], [`Connection`].
//!
//! `ARCHITECTURE.md` in the repository maps the modules.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod acme;
pub mod backup;
pub mod batch;
pub mod ca;
pub mod conn_limit;
pub mod control;
pub mod crl;
pub mod eab_keys;
pub mod error;
pub mod export;
pub mod fsutil;
mod hex;
pub mod issue;
pub mod key;
pub mod keypair;
pub mod lookup;
mod name_constraints;
pub mod names;
pub mod policy;
pub mod profile;
pub mod proxy;
pub mod quickstart;
pub mod renew;
pub mod role;
pub mod rules;
pub mod serverlog;
pub mod service;
pub mod store;
pub mod text;
pub mod timefmt;

pub mod inspect;
pub mod verify;

pub use ca::{Ca, CaKind, InitOptions, PassphraseSource};
pub use error::{Error, Result};
pub use issue::{IssuanceRequest, IssueStatus, Issued, Issuer, KeySource, Output, RunOptions};
pub use policy::RequestedContent;
pub use profile::Profile;
pub use role::{CertClass, Connection, Eku, EntityKind, Role};
pub use rules::{Field, Origin, Refusal, Refusals, Rule};
pub use store::{Record, Store};
pub use verify::rustls_verifiers::{DraftClientCertVerifier, DraftPolicy, DraftServerCertVerifier};
pub use verify::{check_pair, verify_cert, CertVerdict, PairRequest, PairVerdict};
