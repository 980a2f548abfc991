//! A verifier for relying parties of `draft-frank-mtls-via-serverauth-extension-00`:
//! serverAuth identifies a device, clientAuth an entity (a person or an
//! organisation), and what a TLS connection is follows from the two
//! certificates in it (server-to-server, client-to-server, server-to-client,
//! end-to-end).
//!
//! - [`verify_cert`] and [`check_pair`]: verdicts with reasons, never errors;
//! - [`DraftClientCertVerifier`] / [`DraftServerCertVerifier`]: rustls
//!   verifiers, built from a [`DraftPolicy`], that accept peers by the draft's
//!   rules (for example a server that accepts device certificates from
//!   initiators, for server-to-server links) without turning EKU checks off;
//! - [`inspect`]: what any certificate says, and the draft's findings about it.
//!
//! It depends on rustls and rustls-webpki (with ring) and on the draft's
//! rulebook ([`mtlsca_rules`]); no async runtime, no store.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod inspect;
pub mod verify;

#[doc(no_inline)]
pub use mtlsca_rules::{
    error, hex, key, name_constraints, names, role, rules, text, timefmt, CertClass, Connection,
    Eku, EntityKind, Role,
};
pub use verify::rustls_verifiers::{DraftClientCertVerifier, DraftPolicy, DraftServerCertVerifier};
pub use verify::{check_pair, verify_cert, CertVerdict, PairRequest, PairVerdict};
