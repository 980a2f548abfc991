//! Certificate inspection: any bytes as a PEM bundle or DER certificate, through
//! `mtlsca::inspect` (facts, the draft's classification, findings) and
//! `role::classify` on the EKUs x509-parser reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtlsca::role::{classify, CertClass};

fuzz_target!(|data: &[u8]| {
    let at = time::macros::datetime!(2026-06-01 00:00 UTC);
    let ders: Vec<Vec<u8>> = match mtlsca::verify::load::certs_from_bytes(data, "fuzz") {
        Ok(certs) => certs.iter().map(|c| c.as_ref().to_vec()).collect(),
        Err(_) => vec![data.to_vec()],
    };
    for (i, der) in ders.iter().enumerate() {
        let Ok(inspection) = mtlsca::inspect::inspect_der("fuzz", i, der, at) else {
            continue;
        };
        let facts = &inspection.facts;
        let cert = mtlsca::inspect::parse_der(der).expect("inspect_der parsed it");
        let ekus: Option<Vec<String>> = mtlsca::inspect::key_purposes(&cert)
            .map(|v| v.iter().map(|p| p.oid().to_string()).collect());
        let class = classify(cert.is_ca(), ekus.as_deref());
        // inspect and classify agree, and the class follows from EKUs and CA flag.
        // Not for a certificate that repeats an extension (RFC 5280 4.2 forbids it):
        // x509-parser then reads no basicConstraints while inspect reads the first
        // one that parses (tests/data/fuzz/cert_classify-duplicate-basic-constraints.der,
        // reported).
        let mut oids: Vec<String> = cert.extensions().iter().map(|e| e.oid.to_id_string()).collect();
        let n = oids.len();
        oids.sort();
        oids.dedup();
        if oids.len() == n {
            assert_eq!(facts.role, class);
        }
        if cert.is_ca() {
            assert_eq!(class, CertClass::Ca);
        } else if ekus.is_none() {
            assert_eq!(class, CertClass::NoEku);
        }
        if matches!(facts.role, CertClass::Ambiguous | CertClass::NoEku) {
            assert!(!inspection.draft_conformant);
        }
        // Whatever it prints is printable.
        let names = facts.names.iter().map(|n| n.to_string());
        for s in names.chain([facts.subject.clone(), facts.issuer.clone()]) {
            assert!(!s.chars().any(|c| c.is_control()), "control character in {s:?}");
        }
        let _ = serde_json::to_string(&inspection);
    }
});
