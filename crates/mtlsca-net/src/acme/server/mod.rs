//! `mtlsca serve`: an HTTPS server (tokio, hyper, rustls with ring) that speaks
//! ACME (RFC 8555) and issues through the one engine.
//!
//! # What this first slice holds, and where
//!
//! - The engine (`Ca`, `Store`, `Issuer`) is the CA service ([`crate::service`]),
//!   on one thread of its own that keeps the store's lock for the whole run.
//!   Network tasks send it jobs (check identifiers, issue from a CSR) and await
//!   the answers; finalizes waiting together are group-committed (one flush).
//!   Every certificate is recorded in the store like any other.
//! - The control socket `<ca-dir>/mtlsca.sock` lets `list`, `show`, `issue`,
//!   `sign`, `batch`, `revoke`, `crl` and `audit` from another shell run through
//!   the same engine while the server holds the store.
//! - ACME state — accounts, orders, authorizations with challenges, chains for
//!   download, EAB keys — is in the same store (`store::acme`): the server keeps
//!   a working copy in memory (loaded at start, expired orders pruned) and writes
//!   each change through. Accounts, key rollovers and EAB bindings are flushed
//!   before the reply; orders and authorizations become durable with the next
//!   certificate's flush or at shutdown (after a crash a client at worst redoes
//!   an order). Nonces live in memory; a clean stop hands the live ones to the
//!   next start, a crash forgets them (refused, never replayable).
//! - The server's own certificate comes from `--tls-profile` (a device profile,
//!   default `device`) through the engine for `--name` (and the listen IP unless
//!   a wildcard), with a key that never leaves the process; it is renewed after
//!   two thirds of its lifetime and swapped in without a restart.
//! - URLs are built from the `Host` the client used, which must be one of
//!   `--name` (with or without the port) or the listen address: any other
//!   `Host` gets 421 and never reaches a URL.
//!
//! # Layers
//!
//! From the wire down; each file names only files below it:
//!
//! - `listen.rs`: the listeners, TLS and the server's own certificate,
//!   connections (`accept.rs`: the connection gate, who a peer is), pruning
//!   every minute, the clean stop; `publish.rs` the publication listener;
//!   `log.rs` the refusal log.
//! - `http/`: HTTP, JWS and nonces: the `Host` check, routing, body limits,
//!   JWS verification, nonce redemption, the request rates of client
//!   networks and accounts, and the reply or problem written out.
//! - `handlers/`: the ACME endpoints, thin: a typed payload in, the rules
//!   applied, the working copy changed and written through, a `Reply` or a
//!   `Problem` out.
//! - `app.rs`: the ACME service (the engine handle, `engine.rs`; the working
//!   copy behind one lock; its write-through to the store).
//! - The rules, pure functions with their unit tests: `order_rules.rs`
//!   (newOrder's identifiers, the challenges of each, what finalize's CSR must
//!   ask for, the profile, who may revoke) and `account_rules.rs` (contacts,
//!   deactivation, key rollover); beside them `validation.rs` (http-01,
//!   tls-alpn-01, dns-01: whether a client proved an identifier).
//! - `state.rs`: the working copy and issue 22's counts and pruning
//!   (`rate.rs` its token buckets, `options.rs` its [`AcmeLimits`]).
//! - The vocabulary: `objects.rs` (accounts, orders, authorizations,
//!   challenges and their store records), `status.rs` (their typed statuses),
//!   `views.rs` (their JSON), `payload.rs` (the typed request payloads),
//!   `problem.rs` (problem documents, typed by
//!   [`crate::acme::problem::ProblemType`]), `reply.rs`.
//!
//! # Limits
//!
//! Request bodies ≤ 64 KiB, at most [`MAX_CONNECTIONS`] connections, a TLS
//! handshake within 10 s, request headers within `--idle-timeout` (default
//! 10 s; this also closes a keep-alive connection idle that long), a connection
//! at most 5 minutes;
//! SIGTERM (or Ctrl-C) stops accepting and lets requests in flight finish.
//!
//! # Validation (http-01, tls-alpn-01, dns-01)
//!
//! Only the identifier's own addresses (the resolved DNS name, or the IP) on the
//! configured port; http-01: one GET, no redirect followed, 10 s per attempt, at most
//! 16 KiB read; tls-alpn-01 (RFC 8737, DNS names): SNI and ALPN `acme-tls/1`,
//! the self-signed certificate must name exactly the identifier and carry the
//! critical acmeIdentifier extension over the key authorization; dns-01 (RFC 8555
//! §8.4, DNS names; the only challenge of a wildcard, which the profile must
//! allow): a TXT record at `_acme-challenge.NAME` holding base64url(SHA-256(key
//! authorization)).
//!
//! Lookups go to `--acme-resolver HOST:PORT` when given (A/AAAA and TXT, through
//! [`crate::acme::dns`]); without it addresses come from the system's resolution
//! (getaddrinfo) and TXT records from the servers of /etc/resolv.conf.
//!
//! # Publication
//!
//! With `--publish-listen ADDR`, a second, plain-HTTP listener serves the CRLs of
//! the CA's `crl/` and the CA certificates (`publish`: GET and HEAD, a fixed list
//! of paths, bounded connections, headers and files; never a CRL past its
//! nextUpdate). Whether or not it listens, `publisher.rs` keeps every CA's CRL
//! in `crl/` current while the server runs: at start, after every revocation,
//! and before half of `--crl-next-update` has passed.

mod accept;
mod account_rules;
mod app;
mod engine;
mod handlers;
mod http;
mod listen;
mod log;
mod objects;
mod options;
mod order_rules;
mod payload;
mod problem;
mod publish;
mod publisher;
mod rate;
mod reply;
mod state;
mod status;
mod validation;
mod views;

pub use options::{AcmeLimits, ServeOptions, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT};
pub use publisher::MIN_NEXT_UPDATE as MIN_CRL_NEXT_UPDATE;

use std::time::Duration;

use crate::error::{Error, Result};
use engine::Engine;

/// How long a stopping server waits for its log lines to reach stderr.
const LOG_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Run the server until SIGTERM or Ctrl-C.
pub fn serve(opts: ServeOptions) -> Result<()> {
    if opts.crl_next_update < MIN_CRL_NEXT_UPDATE {
        return Err(Error::Usage(format!(
            "--crl-next-update must be at least {} seconds",
            MIN_CRL_NEXT_UPDATE.whole_seconds()
        )));
    }
    let (engine, acme, thread) = Engine::start(&opts)?;
    // Bound once the engine holds the store's lock: other commands reach the
    // CA through it while the server runs.
    let socket = crate::control::SocketServer::bind(&opts.ca_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::State(format!("cannot start the server runtime: {e}")))?;
    let result = rt.block_on(listen::run(opts, engine.clone(), acme, socket));
    rt.shutdown_timeout(Duration::from_secs(5));
    // The last handle gone, the engine finishes its jobs, flushes and closes
    // the store: wait for that before the process ends.
    let stats = engine.service.stats();
    drop(engine);
    thread.join();
    crate::serverlog::flush(LOG_FLUSH_WAIT);
    if result.is_ok() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout().lock(),
            "stopped: {} issue requests in {} group commits (largest {}; engine time per group: mean {:.2} ms, longest {:.2} ms){}",
            stats.issue_jobs,
            stats.groups,
            stats.largest_group,
            stats.group_micros as f64 / 1e3 / stats.groups.max(1) as f64,
            stats.longest_group_micros as f64 / 1e3,
            match stats.batch_turns {
                0 => String::new(),
                n => format!("; batches gave way to other jobs {n} times"),
            }
        );
    }
    result
}
