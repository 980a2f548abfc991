//! CSR intake: parse (PEM or DER), verify the signature, read what it requests,
//! then run policy against every built-in profile. Nothing may panic; every
//! refusal must be an error value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtlsca::policy::{self, Origin};
use mtlsca::profile;

fuzz_target!(|data: &[u8]| {
    let Ok(csr) = mtlsca::issue::read_csr(data) else {
        return;
    };
    let now = time::macros::datetime!(2026-06-01 00:00 UTC);
    let ca_not_after = time::macros::datetime!(2036-06-01 00:00 UTC);
    let constraints = [mtlsca::names::Pattern::parse("corp.internal").unwrap()];
    for (name, _) in profile::BUILTIN {
        let p = profile::builtin(name).expect("built-in profile");
        for c in [&constraints[..], &[]] {
            if let Ok(a) = policy::check(&p, c, &csr.content, csr.key, ca_not_after, Origin::Csr, now) {
                // What policy approves must be what the profile's role implies.
                assert_eq!(a.role, p.role);
                assert!(a.not_after <= ca_not_after);
                assert!(!a.names.is_empty() || p.role == mtlsca::role::Role::Entity);
            }
        }
    }
});
