//! mtlsca: a private certificate authority that gives EKUs one meaning each, as
//! draft-frank-mtls-via-serverauth-extension-00 proposes: serverAuth identifies a
//! device, clientAuth an entity (a person or an organisation).
//!
//! The crate is a library first; the `mtlsca` binary is a thin layer over it.
#![forbid(unsafe_code)]

pub mod backup;
pub mod batch;
pub mod ca;
pub mod crl;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod hex;
pub mod issue;
pub mod key;
pub mod name_constraints;
pub mod names;
pub mod policy;
pub mod profile;
pub mod proxy;
pub mod role;
pub mod rules;
pub mod store;
pub mod timefmt;

pub mod inspect;
pub mod verify;

pub mod cli;

pub use error::{Error, Result};
