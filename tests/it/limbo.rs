//! Conformance: the x509-limbo path-validation cases in `../shared/conformance`,
//! run exactly as `mtlsca verify cert --purpose server|client --at T [--name N]`
//! runs them (`mtlsca::verify::verify_cert`; every case but the max-depth ones,
//! for which the CLI has no option), and through stock rustls-webpki as the
//! baseline. limbo expects issuer-side rules to fail a chain, which `verify cert`
//! reports as findings and fails on under `--strict`: agreement is counted with
//! `--strict` (asserted >= 95 % both ways) and printed for the default verdict,
//! separately for cases expected to validate and cases expected to be rejected.
//! Known divergences are listed with a reason in `tests/limbo-divergences.toml`;
//! any other disagreement fails, and so does a listed divergence that no longer
//! diverges. `LIMBO_LIST=1` prints the listed ones and where the default verdict
//! differs (with its findings), `LIMBO_DEBUG=ID` a verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use mtlsca::verify::{verify_cert, PeerName, Purpose, Trust, Usage, VerifyOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use serde::Deserialize;

use crate::common::shared_dir;

#[derive(Deserialize)]
struct Limbo {
    testcases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    validation_kind: String,
    trusted_certs: Vec<String>,
    untrusted_intermediates: Vec<String>,
    peer_certificate: String,
    validation_time: Option<String>,
    expected_result: String,
    expected_peer_name: Option<PeerNameJson>,
    max_chain_depth: Option<u64>,
    #[serde(default)]
    crls: Vec<String>,
}

#[derive(Deserialize)]
struct PeerNameJson {
    value: String,
}

#[derive(Deserialize)]
struct Divergences {
    divergence: Vec<Divergence>,
}

#[derive(Deserialize)]
struct Divergence {
    id: String,
    reason: String,
}

/// Why a case is not run, if it is not: exactly what `verify cert` cannot be
/// asked. Every other case runs as `verify cert --purpose server|client --at T
/// --trust ... --untrusted ... [--crl ...] [--name N]` would run it.
fn unsupported(c: &Case) -> Option<&'static str> {
    if c.max_chain_depth.is_some() {
        return Some("max chain depth (no such option)");
    }
    None
}

fn pem_certs(v: &[String]) -> Vec<CertificateDer<'static>> {
    v.iter()
        .filter_map(|p| CertificateDer::from_pem_slice(p.as_bytes()).ok())
        .collect()
}

fn at(c: &Case) -> time::OffsetDateTime {
    match &c.validation_time {
        Some(t) => time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{}: validation_time {t}: {e}", c.id)),
        None => time::OffsetDateTime::now_utc(),
    }
}

fn purpose(c: &Case) -> Purpose {
    if c.validation_kind == "SERVER" {
        Purpose::Server
    } else {
        Purpose::Client
    }
}

/// Ours: the library function behind `verify cert --purpose` (with `--strict`
/// when `strict`).
fn ours(c: &Case, strict: bool) -> bool {
    let Ok(leaf) = CertificateDer::from_pem_slice(c.peer_certificate.as_bytes()) else {
        return false;
    };
    let crls: Vec<CertificateRevocationListDer<'static>> = c
        .crls
        .iter()
        .filter_map(|p| CertificateRevocationListDer::from_pem_slice(p.as_bytes()).ok())
        .collect();
    let trust = Trust {
        anchors: pem_certs(&c.trusted_certs),
        intermediates: pem_certs(&c.untrusted_intermediates),
        crls,
        revocation: vec![],
    };
    // `--name` reads its value as the CLI does.
    let name = c
        .expected_peer_name
        .as_ref()
        .map(|n| PeerName::parse(&n.value));
    let opts = VerifyOptions {
        usage: Usage::Purpose(purpose(c)),
        name,
        at: at(c),
    };
    let mut v = verify_cert(&leaf, &trust, &opts);
    if strict {
        v = v.strict();
    }
    if std::env::var("LIMBO_DEBUG").is_ok_and(|d| c.id.contains(&d)) {
        println!("{}: {:#?}", c.id, v);
    }
    v.valid
}

/// The findings of the default verdict.
fn ours_findings(c: &Case) -> Vec<String> {
    let Ok(leaf) = CertificateDer::from_pem_slice(c.peer_certificate.as_bytes()) else {
        return vec![];
    };
    let trust = Trust {
        anchors: pem_certs(&c.trusted_certs),
        intermediates: pem_certs(&c.untrusted_intermediates),
        crls: vec![],
        revocation: vec![],
    };
    let opts = VerifyOptions {
        usage: Usage::Purpose(purpose(c)),
        name: None,
        at: at(c),
    };
    verify_cert(&leaf, &trust, &opts)
        .findings
        .into_iter()
        .map(|f| f.code.to_string())
        .collect()
}

/// The baseline: stock rustls-webpki with `KeyUsage::server_auth()` /
/// `client_auth()`, the same CRLs, and its own name check.
fn baseline(c: &Case) -> bool {
    let Ok(leaf) = CertificateDer::from_pem_slice(c.peer_certificate.as_bytes()) else {
        return false;
    };
    let Ok(ee) = webpki::EndEntityCert::try_from(&leaf) else {
        return false;
    };
    let trusted = pem_certs(&c.trusted_certs);
    let anchors: Vec<_> = trusted
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    let intermediates = pem_certs(&c.untrusted_intermediates);
    let crls: Vec<webpki::CertRevocationList<'static>> = c
        .crls
        .iter()
        .filter_map(|p| CertificateRevocationListDer::from_pem_slice(p.as_bytes()).ok())
        .filter_map(|d| webpki::OwnedCertRevocationList::from_der(d.as_ref()).ok())
        .map(webpki::CertRevocationList::Owned)
        .collect();
    let refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&refs).ok().map(|b| {
        b.with_status_policy(webpki::UnknownStatusPolicy::Allow)
            .build()
    });
    let usage = match purpose(c) {
        Purpose::Server => webpki::KeyUsage::server_auth(),
        Purpose::Client => webpki::KeyUsage::client_auth(),
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(at(c).unix_timestamp() as u64));
    if ee
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            time,
            usage,
            revocation,
            None,
        )
        .is_err()
    {
        return false;
    }
    match &c.expected_peer_name {
        Some(n) => match ServerName::try_from(n.value.as_str()) {
            Ok(name) => ee.verify_is_valid_for_subject_name(&name).is_ok(),
            Err(_) => false,
        },
        None => true,
    }
}

#[derive(Default)]
struct Tally {
    valid: (usize, usize),
    invalid: (usize, usize),
}

impl Tally {
    fn add(&mut self, expected_valid: bool, agrees: bool) {
        let slot = if expected_valid {
            &mut self.valid
        } else {
            &mut self.invalid
        };
        slot.1 += 1;
        if agrees {
            slot.0 += 1;
        }
    }

    fn pct(x: (usize, usize)) -> f64 {
        if x.1 == 0 {
            100.0
        } else {
            100.0 * x.0 as f64 / x.1 as f64
        }
    }

    fn line(&self, who: &str) -> String {
        format!(
            "{who}: expected SUCCESS {}/{} ({:.1}%), expected FAILURE {}/{} ({:.1}%)",
            self.valid.0,
            self.valid.1,
            Self::pct(self.valid),
            self.invalid.0,
            self.invalid.1,
            Self::pct(self.invalid)
        )
    }
}

#[test]
fn limbo_conformance() {
    let file = shared_dir().map(|d| d.join("conformance/limbo.json"));
    let Some(file) = file.filter(|f| f.is_file()) else {
        if std::env::var("MTLSCA_REQUIRE_CONFORMANCE").as_deref() == Ok("1") {
            panic!("MTLSCA_REQUIRE_CONFORMANCE=1 but ../shared/conformance/limbo.json is absent");
        }
        println!("limbo: skipped, ../shared/conformance/limbo.json is absent");
        return;
    };
    let limbo: Limbo = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let div_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/limbo-divergences.toml");
    let divs: Divergences = toml::from_str(&std::fs::read_to_string(&div_file).unwrap()).unwrap();
    let mut known: BTreeMap<String, String> = BTreeMap::new();
    for d in divs.divergence {
        assert!(
            !d.reason.trim().is_empty(),
            "divergence {} has no reason",
            d.id
        );
        assert!(
            known.insert(d.id.clone(), d.reason).is_none(),
            "divergence {} listed twice",
            d.id
        );
    }

    let (mut ours_t, mut base_t) = (Tally::default(), Tally::default());
    let mut default_t = Tally::default();
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    let mut seen = Vec::new();
    for c in &limbo.testcases {
        if let Some(why) = unsupported(c) {
            *skipped.entry(why).or_default() += 1;
            continue;
        }
        let expected_valid = c.expected_result == "SUCCESS";
        // limbo's expectations include the issuer-side rules, which `verify
        // cert` reports as findings and fails on under `--strict`: the
        // comparison is with `--strict`; the default verdict is counted too.
        let got = ours(c, true);
        let default = ours(c, false);
        default_t.add(expected_valid, default == expected_valid);
        if default != expected_valid && std::env::var("LIMBO_LIST").is_ok() {
            println!(
                "limbo: default verdict differs: {} {:?}",
                c.id,
                ours_findings(c)
            );
        }
        assert!(
            got || !default || expected_valid || !ours_findings(c).is_empty(),
            "{}: valid by default but not with --strict, without a finding",
            c.id
        );
        let base = baseline(c);
        ours_t.add(expected_valid, got == expected_valid);
        base_t.add(expected_valid, base == expected_valid);
        seen.push(c.id.clone());
        match (got == expected_valid, known.contains_key(&c.id)) {
            (false, false) => unexpected.push(format!(
                "{} (expected {}, ours says {})",
                c.id,
                c.expected_result,
                if got { "valid" } else { "invalid" }
            )),
            (true, true) => stale.push(c.id.clone()),
            (false, true) if std::env::var("LIMBO_LIST").is_ok() => {
                println!("limbo: listed: {}", c.id)
            }
            _ => {}
        }
    }
    let unknown_ids: Vec<&String> = known.keys().filter(|k| !seen.contains(k)).collect();
    let skipped_total: usize = skipped.values().sum();
    println!(
        "limbo: {} cases, {} run, {skipped_total} skipped {skipped:?}",
        limbo.testcases.len(),
        seen.len()
    );
    println!(
        "limbo: {}",
        ours_t.line("ours (verify cert --purpose --strict)")
    );
    println!(
        "limbo: {}",
        default_t.line("ours, default verdict (findings reported, not failing)")
    );
    println!("limbo: {}", base_t.line("baseline (rustls-webpki alone)"));
    println!(
        "limbo: {} known divergences listed in tests/limbo-divergences.toml",
        known.len()
    );
    assert!(
        unexpected.is_empty(),
        "limbo: unexpected disagreements:\n  {}",
        unexpected.join("\n  ")
    );
    assert!(
        stale.is_empty(),
        "limbo: listed divergences that now agree (remove them): {stale:?}"
    );
    assert!(
        unknown_ids.is_empty(),
        "limbo: divergences for cases not run: {unknown_ids:?}"
    );
    assert!(Tally::pct(ours_t.valid) >= 95.0, "{}", ours_t.line("ours"));
    assert!(
        Tally::pct(ours_t.invalid) >= 95.0,
        "{}",
        ours_t.line("ours")
    );
    // Findings never fail a default verdict: it accepts at least what --strict does.
    assert!(
        default_t.valid.0 >= ours_t.valid.0,
        "{}",
        default_t.line("default")
    );
    assert!(
        ours_t.invalid.0 > base_t.invalid.0,
        "ours must beat the baseline on invalid cases: {} vs {}",
        ours_t.line("ours"),
        base_t.line("baseline")
    );
}
