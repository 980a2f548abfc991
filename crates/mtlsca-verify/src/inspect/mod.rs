//! Reading any certificate: what it is under the draft (device, entity, ambiguous,
//! no-EKU, CA), its EKUs, names, key and validity ([`facts`]), and the draft's
//! findings about it ([`findings`](mod@findings)). Used by `inspect` (a migration lint over
//! existing certificates) and by `verify` to describe what it validated. No I/O,
//! no clock: the time is passed in. This module does not depend on `verify`.

pub mod facts;
pub mod findings;

pub use facts::{
    asn1_time, dn_string, eku_oid_list, joined, key_purposes, parse_der, presented_names,
    CertFacts, Curve, KeyInfo, KeyPurpose, PresentedName,
};
pub use findings::{findings, inspect_der, Inspection};
