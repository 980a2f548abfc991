//! `proxy server` and `proxy client`: arguments into [`crate::proxy`] options,
//! and a tokio runtime to run them on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::{parse_wait, Ctx, Outcome};
use crate::error::{Error, Result};
use crate::names::SanName;
use crate::proxy::{
    self, ClientOptions, FetchLimits, IdentityFiles, Limits, LogFormat, ServerOptions, TrustFiles,
};
use crate::role::{Connection, NameKind, Role};
use crate::verify::{load, PeerName};

// `mtlsca proxy server|client`. (A doc comment here would replace the
// command's summary in `--help`: see `super::Deferred`.)
#[derive(Debug, Subcommand)]
pub enum ProxyCmd {
    /// Accept mTLS connections and pass them on as plain TCP, or HTTP with identity headers
    Server(ServerArgs),
    /// Accept plain connections and pass them on over mTLS, checking the far end's certificate
    Client(ClientArgs),
}

/// Log format of the proxy.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    /// key=value lines
    Text,
    /// one JSON object per line
    Json,
}

/// Roles accepted from initiators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcceptArg {
    /// devices (serverAuth certificates): server-to-server
    Device,
    /// persons and organisations (clientAuth certificates)
    Entity,
}

/// Options both modes share.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// This end's certificate followed by its intermediates (PEM)
    #[arg(long, value_name = "CHAIN.pem")]
    pub cert: PathBuf,
    /// Its private key (default: X.key beside X.pem or X.chain.pem)
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
    /// Trust anchors (root certificates) the peer must chain to
    #[arg(long, value_name = "ROOTS.pem", required = true)]
    pub trust: Vec<PathBuf>,
    /// Intermediates that may be used to build the peer's path
    #[arg(long, value_name = "INTERMEDIATES.pem")]
    pub untrusted: Vec<PathBuf>,
    /// CRL files to check the peer against (reloaded when they change)
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Read the CRLs the CA in --ca-dir publishes in its crl/ directory (implied
    /// when --ca-dir or $MTLSCA_DIR is given; this flag adds the default ./mtlsca)
    #[arg(long)]
    pub ca_crls: bool,
    /// Fetch CRLs from the peers' own CRL distribution points (http:// only),
    /// checked after each handshake: a revoked peer, or one without a current
    /// CRL, is refused (for peers of another PKI, with --trust its root)
    #[arg(long)]
    pub crl_fetch: bool,
    /// With --crl-fetch: connecting and the whole answer of one fetch
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_wait, requires = "crl_fetch")]
    pub crl_fetch_timeout: Duration,
    /// With --crl-fetch: the largest CRL accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 10 * 1024 * 1024, requires = "crl_fetch")]
    pub crl_fetch_max_bytes: usize,
    /// Check no revocation at all (logged as a warning at start); without a
    /// revocation source (--crl, --ca-dir, --crl-fetch) the proxy does not start
    #[arg(long, conflicts_with_all = ["crl", "ca_crls", "crl_fetch"])]
    pub no_revocation_check: bool,
    /// Connections served at once; further ones are closed and logged
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections one client address (IPv4) or /64 (IPv6) may hold at once;
    /// further ones from it are closed and logged
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections_per_client: usize,
    /// Refuse peers whose certificates break the issuer rules (the default;
    /// accepted for compatibility)
    #[arg(long, conflicts_with = "lenient")]
    pub strict: bool,
    /// Admit peers whose certificates break the issuer rules (a device with an
    /// email name or without a name, a leaf signed by the root, ...), logging
    /// the findings' codes with each admission
    #[arg(long)]
    pub lenient: bool,
    /// Time allowed for the TLS handshake
    #[arg(long, default_value = "10s", value_parser = parse_wait)]
    pub handshake_timeout: Duration,
    /// A connection without traffic for this long is closed
    #[arg(long, default_value = "5m", value_parser = parse_wait)]
    pub idle_timeout: Duration,
    /// On SIGTERM, how long connections in flight may take to finish
    #[arg(long, default_value = "30s", value_parser = parse_wait)]
    pub drain_timeout: Duration,
    /// How often certificate, key, trust and CRL files are checked for changes
    #[arg(long, default_value = "1s", value_parser = parse_wait)]
    pub reload_interval: Duration,
    /// Log lines (stderr): text or json
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormatArg,
}

// `proxy server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to accept mTLS connections on (IP:PORT)
    #[arg(long)]
    pub listen: SocketAddr,
    /// Where accepted connections go (HOST:PORT)
    #[arg(long)]
    pub target: String,
    /// Initiator roles accepted (device, entity, or device,entity)
    #[arg(long, value_enum, value_delimiter = ',', default_value = "device")]
    pub accept: Vec<AcceptArg>,
    /// Accept only initiators presenting one of these names, exactly: a DNS
    /// name, IP, email or URI (repeatable; a wildcard certificate matches none)
    #[arg(long, value_name = "NAME")]
    pub allow_name: Vec<String>,
    /// HTTP/1.x: add X-MTLS-Peer-* headers to each request, stripping incoming ones
    #[arg(long)]
    pub http: bool,
    /// In --http mode, the largest request head in bytes
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

// `proxy client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Address to accept plain connections on (IP:PORT)
    #[arg(long)]
    pub listen: SocketAddr,
    /// The mTLS responder (HOST:PORT)
    #[arg(long)]
    pub target: String,
    /// The name the responder must be valid for (default for a device: the
    /// target's host); an entity responder needs its email address or URI here
    #[arg(long)]
    pub name: Option<String>,
    /// The connection kind the link must be (server-to-server, client-to-server, ...)
    #[arg(long, value_parser = parse_connection)]
    pub expect: Option<Connection>,
    #[command(flatten)]
    pub common: CommonArgs,
}

fn parse_connection(s: &str) -> std::result::Result<Connection, String> {
    Connection::parse(s).ok_or_else(|| {
        format!("`{s}`: one of server-to-server, client-to-server, server-to-client, end-to-end")
    })
}

struct Common {
    identity: IdentityFiles,
    trust: TrustFiles,
    limits: Limits,
    log: LogFormat,
    reload: Duration,
    lenient: bool,
}

/// A peer's name as `flag` gives it, its syntax checked (bad usage otherwise).
fn peer_name(flag: &str, raw: &str) -> Result<PeerName> {
    let name = PeerName::parse(raw);
    let checked = match &name {
        PeerName::Ip(_) => Ok(()),
        PeerName::Dns(d) => SanName::parse(NameKind::Dns, d).map(|_| ()),
        PeerName::Email(e) => SanName::parse(NameKind::Email, e).map(|_| ()),
        PeerName::Uri(u) => SanName::parse(NameKind::Uri, u).map(|_| ()),
        _ => Ok(()),
    };
    checked
        .map_err(|why| Error::Usage(format!("{flag} {}: {why}", crate::names::printable(raw))))?;
    Ok(name)
}

fn common(ctx: &Ctx, c: CommonArgs) -> Result<Common> {
    let key = match c.key {
        Some(k) => k,
        None => load::key_beside(&c.cert).ok_or_else(|| {
            Error::Usage(format!(
                "give --key: no key name follows from {}",
                c.cert.display()
            ))
        })?,
    };
    let mut crl_dirs = Vec::new();
    if c.ca_crls || ctx.global.ca_dir_given {
        crl_dirs.push(ctx.global.ca_dir.join("crl"));
    }
    Ok(Common {
        identity: IdentityFiles { chain: c.cert, key },
        trust: TrustFiles {
            roots: c.trust,
            untrusted: c.untrusted,
            crls: c.crl,
            crl_dirs,
            crl_fetch: c.crl_fetch.then(|| FetchLimits {
                timeout: c.crl_fetch_timeout.max(Duration::from_millis(1)),
                max_bytes: c.crl_fetch_max_bytes,
                ..FetchLimits::default()
            }),
            no_revocation_check: c.no_revocation_check,
        },
        limits: Limits {
            max_connections: c.max_connections,
            max_connections_per_client: c.max_connections_per_client,
            handshake_timeout: c.handshake_timeout,
            idle_timeout: c.idle_timeout.max(Duration::from_millis(1)),
            drain_timeout: c.drain_timeout,
            ..Limits::default()
        },
        log: match c.log_format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        },
        reload: c.reload_interval.max(Duration::from_millis(50)),
        lenient: c.lenient,
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::input("tokio runtime", e.to_string()))
}

/// How long a stopping proxy waits for its log lines to reach stderr.
const LOG_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Run `proxy server` or `proxy client` until SIGTERM.
pub fn proxy(ctx: &Ctx, cmd: ProxyCmd) -> Result<Outcome> {
    match cmd {
        ProxyCmd::Server(a) => {
            let c = common(ctx, a.common)?;
            let mut accept: Vec<Role> = Vec::new();
            for r in a.accept {
                let r = match r {
                    AcceptArg::Device => Role::Device,
                    AcceptArg::Entity => Role::Entity,
                };
                if !accept.contains(&r) {
                    accept.push(r);
                }
            }
            let o = ServerOptions {
                listen: a.listen,
                target: a.target,
                identity: c.identity,
                trust: c.trust,
                accept,
                allow_names: a
                    .allow_name
                    .iter()
                    .map(|n| peer_name("--allow-name", n))
                    .collect::<Result<_>>()?,
                lenient: c.lenient,
                http: a.http,
                limits: Limits {
                    max_header_bytes: a.max_header_bytes.max(64),
                    ..c.limits
                },
                log: c.log,
                reload_interval: c.reload,
            };
            let ran = runtime()?.block_on(proxy::run_server(o));
            crate::serverlog::flush(LOG_FLUSH_WAIT);
            ran?;
        }
        ProxyCmd::Client(a) => {
            let c = common(ctx, a.common)?;
            let o = ClientOptions {
                listen: a.listen,
                target: a.target,
                identity: c.identity,
                trust: c.trust,
                name: a
                    .name
                    .as_deref()
                    .map(|n| peer_name("--name", n))
                    .transpose()?,
                expect: a.expect,
                lenient: c.lenient,
                limits: c.limits,
                log: c.log,
                reload_interval: c.reload,
            };
            let ran = runtime()?.block_on(proxy::run_client(o));
            crate::serverlog::flush(LOG_FLUSH_WAIT);
            ran?;
        }
    }
    Ok(Outcome::Done)
}
