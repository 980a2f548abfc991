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
//!
//! The library is a facade over the workspace's crates, whose graph is the
//! architecture: `mtlsca-rules` (the draft's rules and policy, no I/O) ←
//! `mtlsca-verify` (the verifier relying parties use alone) ← `mtlsca-ca` (the
//! CA: keys, store, engine) ← `mtlsca-net` (proxy, ACME, control socket) ←
//! this binary. Modules keep their paths here (`mtlsca::store::Store`, ...).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc(no_inline)]
pub use mtlsca_ca::{
    backup, batch, ca, crl, eab_keys, export, external, fsutil, issue, keypair, lookup, quickstart,
    renew, rotate, service, store, trust,
};
#[doc(no_inline)]
pub use mtlsca_net::{acme, conn_limit, control, proxy, serverlog};
#[doc(no_inline)]
pub use mtlsca_rules::{
    error, hex, key, name_constraints, names, policy, profile, role, rules, text, timefmt,
};
#[doc(no_inline)]
pub use mtlsca_verify::{inspect, verify};

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
