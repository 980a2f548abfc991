//! ACME load generator (issue 14): N concurrent clients on instant-acme, each
//! with its own account, loop new order → authorization → http-01 answered in
//! this process → finalize → certificate download, for a fixed time.
//!
//! Run by `benches/acme.sh` against `mtlsca serve` and pebble in the same run;
//! by hand:
//!
//! ```text
//! cargo bench --bench acme_load -- --directory https://127.0.0.1:8443/acme/directory \
//!     --root CA/root.pem --clients 32 --secs 20 --http01-port 5002 [--certs FILE] [--json]
//! ```
//!
//! Prints complete orders per second (orders whose certificate arrived inside
//! the window, divided by the window), p50/p99 of finalize (the finalize
//! request until the order is valid, polling included where the server
//! finalizes asynchronously) and of a whole order, and the errors. `--certs
//! FILE` writes the SHA-256 of every leaf certificate received (also those of
//! orders that finish after the window), one per line, so the caller can check
//! that the CA recorded each of them. Exit code 0 when the run completed (even
//! with errors, which are reported), 2 on bad arguments, 1 when no client could
//! start.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient, Identifier, NewAccount,
    NewOrder, OrderStatus,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// The generator shares the two cores with the server it measures: every
// millisecond it spends is one the server does not get. mimalloc and one
// thread (below) took its CPU per order from 0.50 to 0.42 ms (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line options.
struct Opts {
    directory: String,
    root: String,
    clients: usize,
    secs: f64,
    http01_port: u16,
    ident: Identifier,
    certs: Option<String>,
    json: bool,
    label: String,
    http2: bool,
}

const USAGE: &str = "usage: acme_load --directory URL --root PEM [--clients N] [--secs S] \
[--http01-port PORT] [--ip ADDR | --dns NAME] [--certs FILE] [--label NAME] [--http2] [--json]";

/// The HTTPS client for one account: its own connection pool, trusting every
/// certificate in `root` (a PEM file), TCP_NODELAY, HTTP/1.1 (and HTTP/2 by
/// ALPN when `http2`).
fn http_client(root: &str, http2: bool) -> Result<Box<dyn HttpClient>, String> {
    let text = std::fs::read(root).map_err(|e| format!("cannot read {root}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for p in pem::parse_many(&text).map_err(|e| format!("{root}: {e}"))? {
        roots
            .add(rustls_pki_types::CertificateDer::from(p.into_contents()))
            .map_err(|e| format!("{root}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{root} holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let connector = if http2 {
        builder.enable_all_versions().wrap_connector(tcp)
    } else {
        builder.enable_http1().wrap_connector(tcp)
    };
    let client: Client<_, BodyWrapper<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        directory: String::new(),
        root: String::new(),
        clients: 16,
        secs: 20.0,
        http01_port: 5002,
        ident: Identifier::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        certs: None,
        json: false,
        label: "server".into(),
        http2: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--directory" => o.directory = val(&a)?,
            "--root" => o.root = val(&a)?,
            "--clients" => {
                o.clients = val(&a)?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--clients takes a positive number")?
            }
            "--secs" => {
                o.secs = val(&a)?
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0)
                    .ok_or("--secs takes a positive number")?
            }
            "--http01-port" => {
                o.http01_port = val(&a)?.parse().map_err(|_| "--http01-port takes a port")?
            }
            "--ip" => {
                o.ident = Identifier::Ip(val(&a)?.parse().map_err(|_| "--ip takes an IP address")?)
            }
            "--dns" => o.ident = Identifier::Dns(val(&a)?),
            "--certs" => o.certs = Some(val(&a)?),
            "--label" => o.label = val(&a)?,
            "--json" => o.json = true,
            "--http2" => o.http2 = true,
            // `cargo bench` passes --bench to every bench target.
            "--bench" => {}
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if o.directory.is_empty() || o.root.is_empty() {
        return Err(format!("--directory and --root are required\n{USAGE}"));
    }
    Ok(o)
}

/// How long one order may take before it counts as an error (a server that
/// stops answering must not hang the run).
const ORDER_TIMEOUT: Duration = Duration::from_secs(20);

/// Tokens → key authorizations, served on the http-01 port.
type Answers = Arc<Mutex<HashMap<String, String>>>;

/// What the clients measured.
#[derive(Default)]
struct Tally {
    /// Orders whose certificate arrived inside the window.
    in_window: u64,
    /// Orders that finished after the window (their certificates count for durability).
    late: u64,
    finalize: Vec<Duration>,
    order: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    /// SHA-256 (hex) of every leaf received.
    certs: Vec<String>,
    polls: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A short, stable name for an error, so equal errors add up.
fn error_kind(e: &instant_acme::Error) -> String {
    let s = match e {
        instant_acme::Error::Api(p) => format!(
            "{} {}",
            p.r#type.as_deref().unwrap_or("problem"),
            p.detail.as_deref().unwrap_or("")
        ),
        other => other.to_string(),
    };
    s.chars().take(160).collect()
}

/// The http-01 responder: `GET /.well-known/acme-challenge/TOKEN` answers the
/// key authorization, anything else 404; one request per connection.
async fn responder(listener: tokio::net::TcpListener, answers: Answers) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let answers = answers.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(512);
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => return,
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let answer = path
                .strip_prefix("/.well-known/acme-challenge/")
                .and_then(|t| lock(&answers).get(t).cloned());
            let reply = match answer {
                Some(ka) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ka}",
                    ka.len()
                ),
                None => {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
                }
            };
            let _ = s.write_all(reply.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}

/// One order, start to finish. Returns (finalize time, leaf SHA-256, polls).
async fn one_order(
    account: &Account,
    ident: &Identifier,
    answers: &Answers,
) -> Result<(Duration, String, u64), instant_acme::Error> {
    let idents = [ident.clone()];
    let mut order = account.new_order(&NewOrder::new(&idents)).await?;
    let mut tokens = Vec::new();
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a?;
        match a.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            _ => {
                return Err(instant_acme::Error::Str(
                    "authorization neither pending nor valid",
                ))
            }
        }
        let mut ch = a
            .challenge(ChallengeType::Http01)
            .ok_or(instant_acme::Error::Str("no http-01 challenge offered"))?;
        lock(answers).insert(ch.token.clone(), ch.key_authorization().as_str().to_owned());
        tokens.push(ch.token.clone());
        ch.set_ready().await?;
    }
    let result = finish(&mut order).await;
    let mut a = lock(answers);
    for t in &tokens {
        a.remove(t);
    }
    result
}

/// Poll until ready, finalize, poll until valid, download.
async fn finish(
    order: &mut instant_acme::Order,
) -> Result<(Duration, String, u64), instant_acme::Error> {
    let mut polls = 0u64;
    let mut delay = Duration::from_millis(1);
    loop {
        tokio::time::sleep(delay).await;
        polls += 1;
        let st = order.refresh().await?;
        match st.status {
            OrderStatus::Ready => break,
            OrderStatus::Pending => {}
            _ => {
                return Err(match &st.error {
                    Some(p) => instant_acme::Error::Api(p.clone()),
                    None => instant_acme::Error::Str("order became invalid before finalize"),
                })
            }
        }
        delay = (delay * 2).min(Duration::from_millis(64));
    }
    let started = Instant::now();
    order.finalize().await?;
    let mut delay = Duration::from_millis(1);
    let chain = loop {
        if let Some(c) = order.certificate().await? {
            break c;
        }
        polls += 1;
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(64));
    };
    let finalize = started.elapsed();
    let leaf = pem::parse_many(chain.as_bytes())
        .ok()
        .and_then(|v| v.into_iter().find(|p| p.tag() == "CERTIFICATE"))
        .ok_or(instant_acme::Error::Str(
            "the download holds no certificate",
        ))?;
    let sha = ring::digest::digest(&ring::digest::SHA256, leaf.contents());
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((finalize, hex, polls))
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`,
/// clock ticks of 1/100 s, the kernel's USER_HZ on every mainstream
/// architecture); `None` elsewhere.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)].as_secs_f64() * 1e3
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // One thread: at 0.4 ms of CPU per order it drives over 2,000 orders/s, and
    // it saves the wake-ups between worker threads that a second core would
    // need (the server's own threads want that core).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(opts));
    std::process::exit(code);
}

async fn run(o: Opts) -> i32 {
    let answers: Answers = Arc::default();
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", o.http01_port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{}: {e}", o.http01_port);
            return 1;
        }
    };
    tokio::spawn(responder(listener, answers.clone()));

    // Accounts first, outside the measured window.
    let mut accounts = Vec::new();
    let mut setup_errors = BTreeMap::<String, u64>::new();
    for _ in 0..o.clients {
        let builder = match http_client(&o.root, o.http2) {
            Ok(c) => Account::builder_with_http(c),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        let new = NewAccount {
            contact: &[],
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        match tokio::time::timeout(
            ORDER_TIMEOUT,
            builder.create(&new, o.directory.clone(), None),
        )
        .await
        {
            Ok(Ok((a, _))) => accounts.push(a),
            Ok(Err(e)) => *setup_errors.entry(error_kind(&e)).or_default() += 1,
            Err(_) => {
                *setup_errors
                    .entry("no answer within 20 s".into())
                    .or_default() += 1
            }
        }
    }
    if accounts.is_empty() {
        eprintln!("error: no account could be created: {setup_errors:?}");
        return 1;
    }

    let tally = Arc::new(Mutex::new(Tally {
        errors: setup_errors
            .into_iter()
            .map(|(k, v)| (format!("newAccount: {k}"), v))
            .collect(),
        ..Tally::default()
    }));
    let window = Duration::from_secs_f64(o.secs);
    let cpu0 = cpu_secs();
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::new();
    for account in accounts {
        let (tally, answers, ident) = (tally.clone(), answers.clone(), o.ident.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let outcome =
                    tokio::time::timeout(ORDER_TIMEOUT, one_order(&account, &ident, &answers))
                        .await
                        .unwrap_or_else(|_| {
                            Err(instant_acme::Error::Str(
                                "no answer within 20 s (order abandoned)",
                            ))
                        });
                match outcome {
                    Ok((fin, sha, polls)) => {
                        let done = Instant::now();
                        let mut t = lock(&tally);
                        t.certs.push(sha);
                        t.polls += polls;
                        if done <= deadline {
                            t.in_window += 1;
                            t.finalize.push(fin);
                            t.order.push(done - t0);
                        } else {
                            t.late += 1;
                        }
                    }
                    Err(e) => {
                        *lock(&tally).errors.entry(error_kind(&e)).or_default() += 1;
                        // Do not spin on a server that refuses everything.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await {
            *lock(&tally)
                .errors
                .entry(format!("client task: {e}"))
                .or_default() += 1;
        }
    }
    let elapsed = start.elapsed();
    let gen_cpu = cpu_secs().zip(cpu0).map(|(b, a)| b - a);
    let mut t = std::mem::take(&mut *lock(&tally));

    if let Some(path) = &o.certs {
        let written = std::fs::File::create(path).and_then(|mut f| {
            for c in &t.certs {
                writeln!(f, "{c}")?;
            }
            f.sync_all()
        });
        if let Err(e) = written {
            eprintln!("error: cannot write {path}: {e}");
            return 1;
        }
    }

    let rate = t.in_window as f64 / window.as_secs_f64();
    let (f50, f99) = (
        percentile(&mut t.finalize, 0.50),
        percentile(&mut t.finalize, 0.99),
    );
    let (o50, o99) = (
        percentile(&mut t.order, 0.50),
        percentile(&mut t.order, 0.99),
    );
    let errors: u64 = t.errors.values().sum();
    let done = t.in_window + t.late;
    let polls_per_order = if done > 0 {
        t.polls as f64 / done as f64
    } else {
        f64::NAN
    };
    // The generator's own CPU per order: it shares the cores with the server.
    let gen_cpu_ms = gen_cpu.filter(|_| done > 0).map(|c| c * 1e3 / done as f64);
    if o.json {
        let v = serde_json::json!({
            "label": o.label,
            "clients": o.clients,
            "secs": window.as_secs_f64(),
            "elapsed_secs": elapsed.as_secs_f64(),
            "orders": t.in_window,
            "late_orders": t.late,
            "certificates": t.certs.len(),
            "orders_per_sec": rate,
            "finalize_p50_ms": f50,
            "finalize_p99_ms": f99,
            "order_p50_ms": o50,
            "order_p99_ms": o99,
            "polls_per_order": polls_per_order,
            "generator_cpu_secs": gen_cpu,
            "generator_cpu_ms_per_order": gen_cpu_ms,
            "errors": errors,
            "error_kinds": t.errors,
        });
        println!("{v}");
    } else {
        println!(
            "{}: {} clients, {:.1} s: {} orders ({:.1} /s), {} more finished after the window",
            o.label,
            o.clients,
            window.as_secs_f64(),
            t.in_window,
            rate,
            t.late
        );
        println!("  finalize p50 {f50:.1} ms  p99 {f99:.1} ms");
        println!("  order    p50 {o50:.1} ms  p99 {o99:.1} ms  ({polls_per_order:.1} polls/order)");
        if let Some(ms) = gen_cpu_ms {
            println!("  generator CPU {ms:.2} ms per order");
        }
        println!("  errors   {errors}");
        for (k, n) in &t.errors {
            println!("    {n} × {k}");
        }
    }
    0
}
