//! The crypto floor of issuance: per certificate, one P-256 key generation and one
//! ECDSA P-256 signature over a certificate-sized message, with ring, on every core.
//! `benches/vs-openssl.sh` compares the batch rate against this figure.
//!
//!     cargo bench --bench crypto_floor -- [COUNT]

use std::time::Instant;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

fn main() {
    // `cargo bench` passes `--bench`; the count is the first other argument.
    let count: usize = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A to-be-signed certificate is about 400 bytes.
    let tbs = vec![0x5au8; 400];
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let tbs = &tbs;
            s.spawn(move || {
                let rng = SystemRandom::new();
                let n = count / threads + usize::from(t < count % threads);
                for _ in 0..n {
                    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                        .expect("keygen");
                    let key = EcdsaKeyPair::from_pkcs8(
                        &ECDSA_P256_SHA256_ASN1_SIGNING,
                        pkcs8.as_ref(),
                        &rng,
                    )
                    .expect("key");
                    std::hint::black_box(key.public_key());
                    let sig = key.sign(&rng, tbs).expect("sign");
                    std::hint::black_box(sig);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "crypto floor: {count} x (P-256 keygen + sign) on {threads} threads in {secs:.3} s = {:.0} /s ({:.1} us per certificate of wall time)",
        count as f64 / secs,
        secs * 1e6 / count as f64
    );
}
