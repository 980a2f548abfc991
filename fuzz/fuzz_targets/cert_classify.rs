//! Certificate inspection: parse any DER or PEM certificate with x509-parser and
//! classify it by the draft's rules (device / entity / ambiguous / no-EKU / CA).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtlsca::role::{classify, CertClass};
use x509_parser::extensions::ParsedExtension;

fuzz_target!(|data: &[u8]| {
    let der = match x509_parser::pem::parse_x509_pem(data) {
        Ok((_, pem)) => pem.contents,
        Err(_) => data.to_vec(),
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return;
    };
    let ekus: Option<Vec<String>> = cert.extended_key_usage().ok().flatten().map(|e| {
        let e = e.value;
        let mut v = Vec::new();
        if e.any {
            v.push(mtlsca::role::OID_ANY_EKU.to_string());
        }
        if e.server_auth {
            v.push(mtlsca::role::OID_SERVER_AUTH.to_string());
        }
        if e.client_auth {
            v.push(mtlsca::role::OID_CLIENT_AUTH.to_string());
        }
        if e.email_protection {
            v.push(mtlsca::role::OID_EMAIL_PROTECTION.to_string());
        }
        v.extend(e.other.iter().map(|o| o.to_id_string()));
        v
    });
    let class = classify(cert.is_ca(), ekus.as_deref());
    // The classification is a function of the EKUs and the CA flag alone.
    if cert.is_ca() {
        assert_eq!(class, CertClass::Ca);
    } else if ekus.is_none() {
        assert_eq!(class, CertClass::NoEku);
    }
    let _ = class.role();
    // Names and the rest of what `inspect` shows must read without panicking.
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for gn in &san.general_names {
                let _ = gn.to_string();
            }
        }
    }
    let _ = cert.subject().to_string();
    let _ = cert.validity().not_after.to_datetime();
});
