//! Bench helper: fill a CA's store with COUNT real device certificates, issued
//! through the pipeline (`issue::prepare`, signed on every core) and recorded in
//! chunks (`Store::record_chunk`, one flush each), without writing key or
//! certificate files. One in 10,000 expires in 20 days, so that
//! `list --expiring-within 30d` has a few matches. Prints the last serial.
//!
//!     mtlsca --ca-dir CA init
//!     cargo run --release --example fill_store -- CA COUNT

use std::time::{Duration, Instant};

use mtlsca::ca::{Ca, CaKind};
use mtlsca::issue::{prepare, IssuanceRequest, Issuer, KeySource, Output};
use mtlsca::policy::RequestedContent;
use mtlsca::store::{ChunkItem, Recorded, Store};

const CHUNK: usize = 2048;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(count)) = (
        args.next(),
        args.next().and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: fill_store CA_DIR COUNT");
        std::process::exit(2);
    };
    let now = time::OffsetDateTime::now_utc();
    let ca = Ca::open(dir.as_ref()).unwrap_or_else(|e| fail(e));
    let store = Store::open(&ca.dir, Duration::from_secs(30)).unwrap_or_else(|e| fail(e));
    let issuer = Issuer::new(&ca, &store).unwrap_or_else(|e| fail(e));
    let signing = issuer
        .signing_ca(CaKind::Device)
        .unwrap_or_else(|e| fail(e));
    let cx = issuer.sign_context(&signing, now);
    let profile = ca.profile("device").unwrap_or_else(|e| fail(e));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    let mut last = String::new();
    let base = store.count();
    let mut done = 0;
    while done < count {
        let n = CHUNK.min(count - done);
        let ids: Vec<usize> = (base + done..base + done + n).collect();
        let per = ids.len().div_ceil(threads);
        let prepared: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .chunks(per)
                .map(|part| {
                    let (cx, profile) = (&cx, &profile);
                    s.spawn(move || {
                        part.iter()
                            .map(|i| {
                                let req = IssuanceRequest {
                                    profile: "device".into(),
                                    content: RequestedContent {
                                        dns: vec![format!("host-{i}.fill.internal")],
                                        validity: (i % 10_000 == 0).then(|| "20d".to_string()),
                                        ..Default::default()
                                    },
                                    key: KeySource::Generate(None),
                                    request_id: Some(format!("fill-{i}")),
                                    output: Output::None,
                                };
                                prepare(cx, profile, &req, None).unwrap_or_else(|e| fail(e))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let items: Vec<ChunkItem<'_>> = prepared
            .iter()
            .map(|p| ChunkItem {
                record: &p.record,
                der: &p.der,
                issuer_key_id: &p.issuer_key_id,
            })
            .collect();
        let recorded = store.record_chunk(&items, now).unwrap_or_else(|e| fail(e));
        store.flush().unwrap_or_else(|e| fail(e));
        if recorded.iter().any(|r| !matches!(r, Recorded::New)) {
            fail("a serial or request id collided; run on a fresh CA");
        }
        last = prepared
            .last()
            .map(|p| p.record.serial.clone())
            .unwrap_or(last);
        done += n;
        if done % (CHUNK * 50) == 0 || done == count {
            eprintln!("{done} records in {:.1} s", start.elapsed().as_secs_f64());
        }
    }
    println!(
        "filled: {count} records in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    println!("last serial: {last}");
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("error: {e}");
    std::process::exit(3);
}
