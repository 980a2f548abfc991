//! In-process costs: the crypto floor, the issuance pipeline per certificate, and the
//! store. Whole-process comparisons with OpenSSL are in `benches/vs-openssl.sh`.
//!
//!     cargo bench --bench issuance

use criterion::{criterion_group, criterion_main, Criterion};
use mtlsca::ca::{self, Ca, InitOptions};
use mtlsca::issue::{IssuanceRequest, Issuer, KeySource, Output};
use mtlsca::key::KeyType;
use mtlsca::policy::RequestedContent;
use mtlsca::store::Store;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn demo_ca() -> (tempfile::TempDir, Ca) {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let now = time::OffsetDateTime::now_utc();
    let ca = ca::init(
        &ca_dir,
        &InitOptions {
            name: "Bench".into(),
            key_type: KeyType::EcdsaP256,
            permit_dns: vec![],
            permit_ip: vec![],
            permit_uri: vec![],
        },
        now,
    )
    .unwrap();
    (dir, ca)
}

fn crypto_floor(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let tbs = vec![0x5au8; 400];
    c.bench_function("crypto floor: P-256 keygen + sign (ring)", |b| {
        b.iter(|| {
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            let key =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            key.sign(&rng, &tbs).unwrap()
        })
    });
}

fn pipeline(c: &mut Criterion) {
    let (_dir, ca) = demo_ca();
    let store = Store::open(&ca.dir, Duration::from_secs(5)).unwrap();
    let issuer = Issuer::new(&ca, &store).unwrap();
    let n = AtomicUsize::new(0);
    let now = time::OffsetDateTime::now_utc();
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(30);
    g.bench_function(
        "issue one device certificate (keygen, sign, self-check, record, flush)",
        |b| {
            b.iter(|| {
                let i = n.fetch_add(1, Ordering::Relaxed);
                let req = IssuanceRequest {
                    profile: "device".into(),
                    content: RequestedContent {
                        dns: vec![format!("host-{i}.bench.internal")],
                        ..Default::default()
                    },
                    key: KeySource::Generate(None),
                    request_id: None,
                    output: Output::None,
                    origin: mtlsca::rules::Origin::Arguments,
                    replaces: None,
                };
                issuer.issue(&req, now).unwrap()
            })
        },
    );
    g.finish();
    let serials: Vec<String> = store
        .list(&Default::default(), now)
        .unwrap()
        .into_iter()
        .map(|r| r.serial)
        .collect();
    let mut k = 0usize;
    c.bench_function("store: find by serial", |b| {
        b.iter(|| {
            k = (k + 1) % serials.len();
            store.find(&serials[k]).unwrap().unwrap()
        })
    });
}

criterion_group!(benches, crypto_floor, pipeline);
criterion_main!(benches);
