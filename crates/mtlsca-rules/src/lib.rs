//! The rules of `draft-frank-mtls-via-serverauth-extension-00` as mtlsca
//! applies them: serverAuth identifies a device, clientAuth an entity (a person
//! or an organisation). Roles and their EKUs ([`role`]), the rulebook with a
//! stable code per rule ([`rules`]), name syntax and patterns ([`names`]),
//! profiles ([`profile`]) and whether a request may be signed under one
//! ([`policy`]); public keys and the one key comparison ([`key`]).
//!
//! No I/O and no clock: time is passed in, files are read by the callers.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod error;
#[doc(hidden)]
pub mod hex;
pub mod key;
#[doc(hidden)]
pub mod name_constraints;
pub mod names;
pub mod policy;
pub mod profile;
pub mod role;
pub mod rules;
pub mod text;
pub mod timefmt;

pub use error::{Error, Result};
pub use policy::RequestedContent;
pub use profile::Profile;
pub use role::{CertClass, Connection, Eku, EntityKind, Role};
pub use rules::{Field, Origin, Refusal, Refusals, Rule};
