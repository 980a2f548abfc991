//! `mtlsca serve`: arguments to [`crate::acme::server::ServeOptions`].

use std::net::SocketAddr;

use clap::Args;

use super::{Ctx, Outcome};
use crate::acme::server::{serve as run_server, AcmeLimits, ServeOptions};
use crate::error::{Error, Result};

// `mtlsca serve`. (A doc comment here would replace the command's summary in
// `--help`: see `super::Deferred`.)
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on for HTTPS (port 0: a free port, printed at start)
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// A DNS name of this server, put in its certificate (repeatable)
    #[arg(long = "name", value_name = "DNS", required = true)]
    pub names: Vec<String>,
    /// The profile ACME certificates come from (device or workload; never an entity profile)
    #[arg(long, value_name = "PROFILE", default_value = "device")]
    pub acme_profile: String,
    /// Refuse newAccount without external account binding
    #[arg(long)]
    pub acme_require_eab: bool,
    /// The port http-01 challenges are fetched from
    #[arg(long, value_name = "PORT", default_value_t = 80)]
    pub acme_http01_port: u16,
    /// The port tls-alpn-01 challenges are validated on
    #[arg(
        long = "acme-tlsalpn01-port",
        value_name = "PORT",
        default_value_t = 443
    )]
    pub acme_tlsalpn01_port: u16,
    /// Requests per second each ACME account may make (bursts of twice that; 0: no limit)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub acme_rate_limit: u32,
    /// New ACME accounts without external account binding each client address
    /// (IPv4) or /64 (IPv6) may create per hour (bursts of that many; 0: no limit)
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub acme_accounts_per_ip: u32,
    /// Close a connection when no request headers arrive for this long (idle
    /// keep-alive, or a client sending slowly)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_wait)]
    pub idle_timeout: std::time::Duration,
    /// The profile of the server's own certificate (a device profile; renewed
    /// after two thirds of its validity)
    #[arg(long, value_name = "PROFILE", default_value = "device")]
    pub tls_profile: String,
    /// The DNS server challenge validation asks (A/AAAA for http-01 and tls-alpn-01, TXT for
    /// dns-01); an IP alone means port 53; default: the system's resolution
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_resolver)]
    pub acme_resolver: Option<SocketAddr>,
    /// Also serve the CRLs (crl/NAME.crl, kept current by the server) and the CA
    /// certificates over plain HTTP on this address: /crl/NAME.crl, /ca/NAME.crt, /ca/NAME.pem
    #[arg(long, value_name = "ADDR")]
    pub publish_listen: Option<SocketAddr>,
    /// nextUpdate of the CRLs the server keeps published in <ca-dir>/crl/ (at start, after
    /// every revocation, and again before half of it has passed), e.g. 7d, 24h, 10s (at least 10s)
    #[arg(long, value_name = "SPAN", default_value = "7d")]
    pub crl_next_update: String,
    /// Connections each listener (HTTPS, publication) holds at once; more are closed on accept
    #[arg(long, value_name = "N", default_value_t = crate::acme::server::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Connections one client address (IPv4) or /64 (IPv6) may hold on each listener
    #[arg(long, value_name = "N", default_value_t = crate::acme::server::MAX_CONNECTIONS_PER_CLIENT)]
    pub max_connections_per_client: usize,
    #[command(flatten)]
    pub limits: AcmeLimitArgs,
}

// What the ACME server holds at most, in all and per client (a full table
// answers `rateLimited` with Retry-After; nothing live is pushed out). Flattened
// into `ServeArgs`: a doc comment here would become `serve`'s summary.
#[derive(Debug, Args)]
#[command(next_help_heading = "ACME limits")]
pub struct AcmeLimitArgs {
    /// Requests per second from one client address (IPv4) or /64 (IPv6), bursts of twice that (0: no limit)
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().requests_per_client)]
    pub acme_client_rate_limit: u32,
    /// Accounts without external account binding kept at once
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().accounts)]
    pub acme_max_accounts: usize,
    /// Accounts without a certificate yet that one client address or /64 may hold
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().unproven_accounts_per_client)]
    pub acme_unproven_accounts_per_client: usize,
    /// Live orders kept at once
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().orders)]
    pub acme_max_orders: usize,
    /// Live orders of one account
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().orders_per_account)]
    pub acme_orders_per_account: usize,
    /// Live authorizations kept at once
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().authzs)]
    pub acme_max_authorizations: usize,
    /// Live authorizations of one account
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().authzs_per_account)]
    pub acme_authorizations_per_account: usize,
    /// Challenge validations run at once (more wait their turn)
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().validations)]
    pub acme_validations: usize,
    /// Challenge validations of one account run at once (more wait their turn)
    #[arg(long, value_name = "N", default_value_t = AcmeLimits::default().validations_per_account)]
    pub acme_validations_per_account: usize,
}

impl AcmeLimitArgs {
    fn limits(&self) -> AcmeLimits {
        AcmeLimits {
            accounts: self.acme_max_accounts,
            unproven_accounts_per_client: self.acme_unproven_accounts_per_client,
            orders: self.acme_max_orders,
            orders_per_account: self.acme_orders_per_account,
            authzs: self.acme_max_authorizations,
            authzs_per_account: self.acme_authorizations_per_account,
            validations: self.acme_validations,
            validations_per_account: self.acme_validations_per_account,
            requests_per_client: self.acme_client_rate_limit,
            ..AcmeLimits::default()
        }
    }
}

/// `IP:PORT`, `[IPv6]:PORT`, an IP alone (port 53), or `HOST:PORT` (resolved
/// once, at start, by the system).
fn parse_resolver(s: &str) -> std::result::Result<SocketAddr, String> {
    let a = resolver_address(s)?;
    if a.port() == 0 {
        return Err("the resolver's port must be 1-65535".into());
    }
    Ok(a)
}

fn resolver_address(s: &str) -> std::result::Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    if !s.contains(':') {
        return Err("give the resolver as HOST:PORT (or an IP, port 53)".into());
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            format!(
                "cannot resolve the resolver `{}`",
                crate::names::printable(s)
            )
        })
}

/// Run the server until SIGTERM or Ctrl-C.
pub fn serve(ctx: &Ctx, mut a: ServeArgs) -> Result<Outcome> {
    use super::ca_cmds::{profile_name, with_profile_hint};
    a.tls_profile = profile_name(ctx, a.tls_profile);
    a.acme_profile = profile_name(ctx, a.acme_profile);
    let ca = ctx.open_ca()?;
    let passphrase = ctx.passphrase_source();
    if ca.config.encrypted_keys {
        // Asked now, on this terminal, before the server starts: never by the
        // engine thread in the middle of a request (the answer is kept).
        crate::ca::read_passphrase(&passphrase)?;
    }
    let tls = ca
        .profile(&a.tls_profile)
        .map_err(|e| with_profile_hint(ctx, &a.tls_profile, e))?;
    if tls.role != crate::role::Role::Device {
        return Err(Error::Usage(format!(
            "--tls-profile `{}` is an entity profile; the server's certificate is a device certificate",
            a.tls_profile
        )));
    }
    let acme_profile = a.acme_profile.clone();
    let crl_next_update = crate::profile::Validity::parse(&a.crl_next_update)
        .map_err(|m| Error::Usage(format!("--crl-next-update {m}")))?
        .duration();
    run_server(ServeOptions {
        ca_dir: ctx.global.ca_dir.clone(),
        lock_timeout: ctx.global.lock_timeout,
        passphrase,
        listen: a.listen,
        names: a.names,
        acme_profile: acme_profile.clone(),
        require_eab: a.acme_require_eab,
        http01_port: a.acme_http01_port,
        tlsalpn01_port: a.acme_tlsalpn01_port,
        rate_limit: a.acme_rate_limit,
        accounts_per_ip: a.acme_accounts_per_ip,
        idle_timeout: a.idle_timeout,
        tls_profile: a.tls_profile,
        resolver: a.acme_resolver,
        publish_listen: a.publish_listen,
        crl_next_update,
        connections: crate::conn_limit::ConnectionLimits::new(
            a.max_connections,
            a.max_connections_per_client,
        ),
        limits: a.limits.limits(),
    })
    .map_err(|e| with_profile_hint(ctx, &acme_profile, e))?;
    Ok(Outcome::Done)
}
