//! Bench helper: fill a CA's store with COUNT real device certificates, issued
//! through the engine (`Issuer::issue_all`, signed on every core, recorded in
//! chunks of 2,048 with one flush each) without writing key or certificate files.
//! One in 10,000 expires in 20 days, so that `list --expiring-within 30d` has a
//! few matches. Prints the last serial.
//!
//!     mtlsca --ca-dir CA init
//!     cargo bench --bench fill_store -- CA COUNT

use std::time::{Duration, Instant};

use mtlsca::ca::Ca;
use mtlsca::issue::{IssuanceRequest, Issuer, KeySource, Output, RunOptions};
use mtlsca::policy::RequestedContent;
use mtlsca::rules::Origin;
use mtlsca::store::Store;

const CHUNK: usize = 2048;

fn main() {
    // `cargo bench` passes `--bench`.
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
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
    let opts = RunOptions {
        chunk: CHUNK,
        ..RunOptions::batch()
    };
    let start = Instant::now();
    let mut last = String::new();
    let base = store.count();
    let mut done = 0;
    while done < count {
        let n = (CHUNK * 8).min(count - done);
        let requests: Vec<IssuanceRequest> = (base + done..base + done + n)
            .map(|i| IssuanceRequest {
                profile: "device".into(),
                content: RequestedContent {
                    dns: vec![format!("host-{i}.fill.internal")],
                    validity: (i % 10_000 == 0).then(|| "20d".to_string()),
                    ..Default::default()
                },
                key: KeySource::Generate(None),
                request_id: Some(format!("fill-{i}")),
                output: Output::None,
                origin: Origin::Arguments,
                replaces: None,
            })
            .collect();
        issuer
            .issue_all(&requests, &opts, now, &mut |_, r| match r {
                Ok(i) => last = i.record.serial,
                Err(e) => fail(e),
            })
            .unwrap_or_else(|e| fail(e));
        done += n;
        if done % (CHUNK * 48) == 0 || done == count {
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
