//! The command line: clap types, turning arguments into library requests, and
//! rendering results as text or JSON. No signing, no sled, no policy here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;

use crate::error::Result;

/// `println!` that never panics: a closed standard output (`mtlsca list | head`)
/// ends the output, not the process with a panic.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `print!` that never panics (see `outln!`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

mod acme_cmds;
mod admin_cmds;
mod ca_cmds;
mod ext_cmds;
pub mod help;
mod hints;
mod lifecycle_cmds;
mod prompt;
mod proxy_cmds;
pub mod render;
mod rollover_cmds;
mod serve_cmds;
mod trust_cmds;
mod verify_cmds;

pub use hints::{usage_hint, usage_message};

/// Parse the process's arguments with the command line users see (examples in
/// every command's help).
pub fn parse() -> std::result::Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    // The examples after each command's help cost a walk over the whole command
    // tree (≈ 0.5 ms, paid by every call). They show only in help and error
    // output, which clap produces as an `Err`: parse plain first, and only when
    // clap has something to print, parse again with the examples attached.
    let plain = <Cli as clap::CommandFactory>::command();
    let matches = match plain.try_get_matches() {
        Ok(m) => m,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => return Err(e),
        Err(_) => help::command().try_get_matches()?,
    };
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.global.ca_dir_given = matches!(
        matches.value_source("ca_dir"),
        Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
    );
    Ok(cli)
}

/// What a command concluded. Errors (exit 2 and 3, and refusals) travel as `Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, or the answer is "yes" (exit 0).
    Done,
    /// The answer is "no": verification failed, or an entry was refused (exit 1).
    No,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::No => 1,
        }
    }
}

/// A private CA whose EKUs mean one thing each: serverAuth = a device,
/// clientAuth = a person or organisation.
#[derive(Debug, Parser)]
#[command(name = "mtlsca", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// The CA directory (else $MTLSCA_DIR, else ./mtlsca)
    #[arg(
        long,
        global = true,
        env = "MTLSCA_DIR",
        hide_env_values = true,
        default_value = "mtlsca"
    )]
    pub ca_dir: PathBuf,
    /// Whether `--ca-dir` or $MTLSCA_DIR was given (not the default): `proxy`
    /// then reads that CA's published CRLs.
    #[arg(skip)]
    pub ca_dir_given: bool,
    /// Machine output: one JSON document on stdout (JSON lines for batch)
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors (and JSON when asked)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// How long to wait for another mtlsca process to release the store
    #[arg(long, global = true, default_value = "30s", value_parser = parse_wait)]
    pub lock_timeout: Duration,
    /// File holding the passphrase of encrypted CA keys (else $MTLSCA_PASSPHRASE, else asked on a terminal)
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// The environment variable that holds the passphrase of encrypted CA keys.
pub const PASSPHRASE_ENV: &str = "MTLSCA_PASSPHRASE";

fn parse_wait(s: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 30s, 500ms or 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("`{s}`: unknown unit (use ms, s or m)")),
    }
}

/// One command's arguments (or subcommands), added to clap's `Command` only when
/// that command is the one being parsed, its help is printed, or the whole tree
/// is built (`Command::defer`; completions, man pages and usage hints call
/// `build`). Building the options of all 23 commands was most of what clap did
/// on every call, about a third of a command's start-up.
///
/// `T`'s own doc comment, applied when the deferred part is built (after the
/// variant's), would replace the command's summary in `--help`: notes on `T`
/// are `//` comments; the summary is the doc comment of the `Command` variant.
#[derive(Debug, Clone)]
pub struct Deferred<T>(pub T);

impl<T: clap::FromArgMatches> clap::FromArgMatches for Deferred<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Deferred)
    }
    fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> std::result::Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Deferred)
    }
    fn update_from_arg_matches(
        &mut self,
        m: &clap::ArgMatches,
    ) -> std::result::Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
    fn update_from_arg_matches_mut(
        &mut self,
        m: &mut clap::ArgMatches,
    ) -> std::result::Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

impl<T: Args> Args for Deferred<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands)
    }
    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands_for_update)
    }
    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new CA: a root, device and entity CAs, the store and the default profiles
    Init(Deferred<ca_cmds::InitArgs>),
    /// List the certificate profiles, show one, or check an edited profile file
    #[command(subcommand)]
    Profile(Deferred<ca_cmds::ProfileCmd>),
    /// Make a key and a certificate from a profile: device, workload, person, organization
    Issue(Deferred<ca_cmds::IssueArgs>),
    /// Sign a certificate request (CSR) made elsewhere, after checking what it asks for
    Sign(Deferred<ca_cmds::SignArgs>),
    /// Replace an issued certificate (or, with --all, every one due) with a new key and certificate for the same names
    Renew(Deferred<ca_cmds::RenewArgs>),
    /// Show the issued certificates, all or those of a role, status, name, profile or expiry
    List(Deferred<ca_cmds::ListArgs>),
    /// Print one issued certificate, found by serial, request id, fingerprint or file
    Show(Deferred<ca_cmds::ShowArgs>),
    /// Try it out: a demo CA with two device certificates and a person's, each pair verified
    Quickstart(Deferred<ca_cmds::QuickstartArgs>),
    /// Check the certificate store for damage, or move expired certificates to its archive
    #[command(subcommand)]
    Store(Deferred<admin_cmds::StoreCmd>),
    /// Copy the whole CA (keys, certificates, profiles, store) into a new directory
    Backup(Deferred<admin_cmds::BackupArgs>),
    /// Bring a backup back as a new CA directory (the one --ca-dir names)
    Restore(Deferred<admin_cmds::RestoreArgs>),
    /// Tell what any certificates are for: device, entity, ambiguous, no EKU or CA
    Inspect(Deferred<verify_cmds::InspectArgs>),
    /// Check a certificate, or two certificates as the two ends of one connection
    #[command(subcommand)]
    Verify(Deferred<verify_cmds::VerifyCmd>),
    /// Issue many certificates from a TOML manifest; a rerun issues only what is missing
    Batch(Deferred<lifecycle_cmds::BatchArgs>),
    /// Revoke a certificate and publish the CRLs at once (through a running serve: it publishes them)
    Revoke(Deferred<lifecycle_cmds::RevokeArgs>),
    /// Sign and publish the certificate revocation lists (CRLs)
    Crl(Deferred<lifecycle_cmds::CrlArgs>),
    /// Write an issued certificate as PEM, DER, a full chain, or PKCS#12 with its key
    Export(Deferred<lifecycle_cmds::ExportArgs>),
    /// Print the log of everything the CA did, or check that nobody altered it (--verify)
    Audit(Deferred<admin_cmds::AuditOptions>),
    /// Print shell completions (bash, zsh, fish, ...)
    Completions(Deferred<lifecycle_cmds::CompletionsArgs>),
    /// Print the man page, or write every page into a directory (--out-dir)
    Man(Deferred<lifecycle_cmds::ManArgs>),
    /// Run a TLS proxy that admits peers by their certificates' roles: mTLS in, or mTLS out
    #[command(subcommand)]
    Proxy(Deferred<proxy_cmds::ProxyCmd>),
    /// Run an ACME server (RFC 8555): certbot, lego and the like get certificates here
    Serve(Deferred<serve_cmds::ServeArgs>),
    /// Manage the keys that bind ACME accounts to this CA (for serve --acme-require-eab)
    #[command(subcommand)]
    Acme(Deferred<acme_cmds::AcmeCmd>),
    /// The CA's own certificates: roll a CA to a new generation, show them all, install those an external root signed
    #[command(subcommand)]
    Ca(Deferred<rollover_cmds::CaCmd>),
    /// Trust the CA's root on this machine (system store, browsers, Java), for labs
    #[command(subcommand)]
    Trust(Deferred<trust_cmds::TrustCmd>),
}

/// What every command gets: the global options and the time it runs at.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub global: GlobalArgs,
    pub now: OffsetDateTime,
}

impl Ctx {
    /// Where the passphrase of encrypted CA keys comes from: `--passphrase-file`,
    /// else `$MTLSCA_PASSPHRASE`, else, on a terminal, asked there when a key is
    /// first unlocked (once a command).
    pub fn passphrase_source(&self) -> crate::ca::PassphraseSource {
        use crate::ca::PassphraseSource;
        match self.given_passphrase_source() {
            PassphraseSource::Environment(var) if prompt::can_prompt() => {
                PassphraseSource::FirstOf(vec![
                    PassphraseSource::Environment(var),
                    PassphraseSource::Ask(prompt::ca_passphrase(&self.global.ca_dir)),
                ])
            }
            given => given,
        }
    }

    /// The passphrase source the user gave: `--passphrase-file`, else
    /// `$MTLSCA_PASSPHRASE` (never the terminal).
    pub fn given_passphrase_source(&self) -> crate::ca::PassphraseSource {
        match &self.global.passphrase_file {
            Some(f) => crate::ca::PassphraseSource::File(f.clone()),
            None => crate::ca::PassphraseSource::Environment(PASSPHRASE_ENV.into()),
        }
    }

    /// The CA in `--ca-dir`, with the passphrase source handed to it.
    pub fn open_ca(&self) -> Result<crate::ca::Ca> {
        crate::ca::Ca::open(&self.global.ca_dir)
            .map(|ca| ca.with_passphrase_source(self.passphrase_source()))
    }

    /// How this command reaches the CA: the running server's control socket
    /// (`<ca-dir>/mtlsca.sock`) when one answers, else the CA and store opened here.
    pub fn backend(&self) -> Result<crate::service::Backend> {
        crate::service::Backend::open(
            &self.global.ca_dir,
            self.global.lock_timeout,
            self.passphrase_source(),
        )
    }

    /// Print a line of human output unless `--quiet` or `--json`.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.global.quiet && !self.global.json {
            outln!("{}", line.as_ref());
        }
    }
}

pub fn run(cli: Cli, now: OffsetDateTime) -> Result<Outcome> {
    let ctx = Ctx {
        global: cli.global,
        now,
    };
    match cli.command {
        Command::Init(Deferred(a)) => ca_cmds::init(&ctx, a),
        Command::Profile(Deferred(c)) => ca_cmds::profile(&ctx, c),
        Command::Issue(Deferred(a)) => ca_cmds::issue(&ctx, a),
        Command::Sign(Deferred(a)) => ca_cmds::sign(&ctx, a),
        Command::Renew(Deferred(a)) => ca_cmds::renew(&ctx, a),
        Command::List(Deferred(a)) => ca_cmds::list(&ctx, a),
        Command::Show(Deferred(a)) => ca_cmds::show(&ctx, a),
        Command::Quickstart(Deferred(a)) => ca_cmds::quickstart(&ctx, a),
        Command::Store(Deferred(c)) => admin_cmds::store(&ctx, c),
        Command::Backup(Deferred(a)) => admin_cmds::backup(&ctx, a),
        Command::Restore(Deferred(a)) => admin_cmds::restore(&ctx, a),
        Command::Inspect(Deferred(a)) => verify_cmds::inspect(&ctx, a),
        Command::Verify(Deferred(c)) => verify_cmds::verify(&ctx, c),
        Command::Batch(Deferred(a)) => lifecycle_cmds::batch(&ctx, a),
        Command::Revoke(Deferred(a)) => lifecycle_cmds::revoke(&ctx, a),
        Command::Crl(Deferred(a)) => lifecycle_cmds::crl(&ctx, a),
        Command::Export(Deferred(a)) => lifecycle_cmds::export(&ctx, a),
        Command::Audit(Deferred(a)) if a.verify => admin_cmds::audit_verify(&ctx),
        Command::Audit(Deferred(a)) => lifecycle_cmds::audit(&ctx, a.log),
        Command::Completions(Deferred(a)) => lifecycle_cmds::completions(a),
        Command::Man(Deferred(a)) => lifecycle_cmds::man(&ctx, a),
        Command::Proxy(Deferred(c)) => proxy_cmds::proxy(&ctx, c),
        Command::Serve(Deferred(a)) => serve_cmds::serve(&ctx, a),
        Command::Acme(Deferred(c)) => acme_cmds::acme(&ctx, c),
        Command::Ca(Deferred(c)) => rollover_cmds::ca(&ctx, c),
        Command::Trust(Deferred(c)) => trust_cmds::trust(&ctx, c),
    }
}
