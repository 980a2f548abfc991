//! `mtlsca serve`: arguments to [`crate::acme::server::ServeOptions`].

use std::net::SocketAddr;

use clap::Args;

use super::{Ctx, Outcome};
use crate::acme::server::{serve as run_server, ServeOptions};
use crate::error::{Error, Result};

/// `mtlsca serve`.
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
    /// Close a connection when no request headers arrive for this long (idle
    /// keep-alive, or a client sending slowly)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = super::parse_wait)]
    pub idle_timeout: std::time::Duration,
    /// The profile of the server's own certificate (a device profile; renewed
    /// after two thirds of its validity)
    #[arg(long, value_name = "PROFILE", default_value = "device")]
    pub tls_profile: String,
}

/// Run the server until SIGTERM or Ctrl-C.
pub fn serve(ctx: &Ctx, a: ServeArgs) -> Result<Outcome> {
    let tls = ctx.open_ca()?.profile(&a.tls_profile)?;
    if tls.role != crate::role::Role::Device {
        return Err(Error::Usage(format!(
            "--tls-profile `{}` is an entity profile; the server's certificate is a device certificate",
            a.tls_profile
        )));
    }
    run_server(ServeOptions {
        ca_dir: ctx.global.ca_dir.clone(),
        lock_timeout: ctx.global.lock_timeout,
        passphrase: ctx.passphrase_source(),
        listen: a.listen,
        names: a.names,
        acme_profile: a.acme_profile,
        require_eab: a.acme_require_eab,
        http01_port: a.acme_http01_port,
        tlsalpn01_port: a.acme_tlsalpn01_port,
        rate_limit: a.acme_rate_limit,
        idle_timeout: a.idle_timeout,
        tls_profile: a.tls_profile,
    })?;
    Ok(Outcome::Done)
}
