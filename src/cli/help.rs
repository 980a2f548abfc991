//! Help that shows the way: an EXAMPLES block for every command's `--help` and
//! man page, man pages for every (nested) command with EXIT STATUS, ENVIRONMENT
//! and FILES sections, and value hints for shell completions.

use clap::builder::PossibleValuesParser;
use clap::{Arg, Command};

/// Examples per command path (`issue`, `verify pair`): the command and what it does.
pub fn examples(path: &str) -> &'static [(&'static str, &'static str)] {
    match path {
        "" => &[
            ("mtlsca quickstart", "a demo CA, two devices and a person, pairs verified"),
            ("mtlsca init --name Acme --permit-dns corp.internal", "create a CA"),
            ("mtlsca issue device --dns web.corp.internal", "a device certificate"),
            ("mtlsca renew web.corp.internal.pem", "renew it in place"),
        ],
        "init" => &[
            ("mtlsca --ca-dir ./ca init --name Acme", "a CA in ./ca without name constraints"),
            (
                "mtlsca init --permit-dns corp.internal --permit-ip 10.0.0.0/8",
                "a CA that may only name hosts under corp.internal and in 10.0.0.0/8",
            ),
            ("MTLSCA_PASSPHRASE=... mtlsca init --encrypt", "CA keys encrypted under a passphrase"),
            ("mtlsca init --external-root corp-root.pem", "issuing CAs under your own root: keys and CSRs now, `ca install` later"),
        ],
        "trust" => &[
            ("mtlsca trust install", "as root: the system store and the NSS databases in $HOME (Firefox, Chrome)"),
            ("mtlsca trust uninstall --nss ~/.pki/nssdb", "remove it from one NSS database"),
        ],
        "trust install" => &[
            ("mtlsca trust install", "as root: the system store and the NSS databases in $HOME"),
            ("mtlsca trust install --nss ~/.pki/nssdb --java lab.p12", "one NSS database and a Java keystore"),
        ],
        "trust uninstall" => &[("mtlsca trust uninstall", "as root: remove what trust install added")],
        "ca install" => &[
            ("mtlsca ca install --device device-ca.pem --entity entity-ca.pem", "the two certificates the external root signed"),
            ("mtlsca --json ca install --device device-ca.pem --entity entity-ca.pem", "the same, the result as JSON"),
        ],
        "profile" => &[
            ("mtlsca profile list", "the CA's profiles"),
            ("mtlsca profile show device", "one profile, every default spelled out"),
        ],
        "profile list" => &[("mtlsca profile list --json", "the profiles as JSON")],
        "profile show" => &[("mtlsca profile show workload", "the workload profile as TOML")],
        "profile check" => &[("mtlsca profile check ca/profiles/device.toml", "validate an edited profile")],
        "issue" => &[
            ("mtlsca issue device --dns web.corp.internal --ip 10.0.0.11", "a server: web.corp.internal.{key,pem,chain.pem}"),
            ("mtlsca issue device --san dns:web.corp.internal,ip:10.0.0.11 --out web", "the same, names as one list, files web.*"),
            ("mtlsca issue workload --uri spiffe://corp.internal/ns/prod/sa/api --validity 24h", "a workload identity for a day"),
            ("mtlsca issue person --cn 'Alice Example' --email alice@corp.example", "a person"),
            ("mtlsca issue device --dns db.corp.internal --request-id db-01", "idempotent: a repeat returns the same certificate"),
            ("mtlsca issue device --dns x.corp.internal --not-after 2027-01-31T00:00:00Z", "valid until a given time"),
        ],
        "sign" => &[
            ("mtlsca sign device --csr db.csr --out db.pem", "sign a CSR after checking it"),
            ("openssl req ... | mtlsca sign device --csr - > db.pem", "from standard input to standard output"),
        ],
        "renew" => &[
            ("mtlsca renew web.pem", "a new key and certificate in web.*, the old ones kept as web.*.prev"),
            ("mtlsca renew db-01 --out db-new --revoke-old", "by request id, to new files, the old one revoked"),
            ("mtlsca renew 5f0c1a2b --validity 30d", "by serial prefix, for 30 days"),
            ("mtlsca renew --all --within 30d --revoke-old --grace 1h", "every certificate due, the old ones revoked an hour later"),
            ("mtlsca renew --all --within 30d --profile device --dry-run", "what is due, changing nothing"),
        ],
        "list" => &[
            ("mtlsca list --role device --expiring-within 30d", "devices that expire within 30 days"),
            ("mtlsca list --status revoked --json", "revoked certificates as JSON"),
            ("mtlsca list --name '*.corp.internal'", "by name"),
            ("mtlsca list --all", "archived certificates too (store tidy)"),
        ],
        "show" => &[
            ("mtlsca show 5f0c1a2b", "by a unique serial prefix (8+ hex digits)"),
            ("mtlsca show web.pem", "by the certificate file"),
            ("mtlsca show db-01 --pem", "by request id, the certificate as PEM"),
        ],
        "quickstart" => &[("mtlsca quickstart /tmp/demo", "a demo CA and certificates in /tmp/demo")],
        "store" => &[
            ("mtlsca store check", "verify records, indexes and the audit chain"),
            ("mtlsca store tidy", "move expired certificates into the archive"),
        ],
        "store check" => &[("mtlsca store check --json", "the report as JSON; exit 3 when damaged")],
        "store tidy" => &[
            ("mtlsca store tidy --dry-run", "what would move, moving nothing"),
            ("mtlsca store tidy --expired-for 30d", "keep those expired less than 30 days"),
        ],
        "backup" => &[("mtlsca backup /srv/backup/ca-2026-11-29", "a consistent copy of the CA")],
        "restore" => &[("mtlsca --ca-dir ./ca2 restore /srv/backup/ca-2026-11-29", "bring a backup back")],
        "inspect" => &[
            ("mtlsca inspect web.pem", "device, entity, ambiguous, no-EKU or CA, with findings"),
            ("mtlsca inspect certs/*.pem --json", "many at once, as JSON"),
        ],
        "verify" => &[
            ("mtlsca verify cert web.pem --role device --name web.corp.internal", "one certificate"),
            ("mtlsca verify pair --initiator app.chain.pem --responder db.chain.pem", "a pair as one connection"),
        ],
        "verify cert" => &[
            ("mtlsca verify cert web.chain.pem --role device --name web.corp.internal", "against the CA in --ca-dir"),
            ("mtlsca verify cert web.pem --trust ca/root.pem --untrusted ca/device-ca.pem --purpose server", "the classic reading, another trust anchor"),
        ],
        "verify pair" => &[
            ("mtlsca verify pair --initiator app.chain.pem --responder db.chain.pem --expect server-to-server", "classify and check a link"),
            ("mtlsca verify pair --initiator alice.chain.pem --responder web.chain.pem --handshake", "and run a TLS 1.3 handshake over loopback"),
        ],
        "serve" => &[
            ("mtlsca serve --listen 0.0.0.0:8443 --name ca.corp.internal", "ACME at https://ca.corp.internal:8443/acme/directory, device profile"),
            ("mtlsca acme eab create --profile workload && mtlsca serve --listen 0.0.0.0:8443 --name ca.corp.internal --acme-require-eab", "only accounts bound to a key handed out beforehand (`acme eab create`)"),
            ("mtlsca serve --listen 0.0.0.0:8443 --name ca.corp.internal --acme-resolver 10.0.0.53:53 --publish-listen 0.0.0.0:8080", "validate through that DNS server; CRLs at http://ca.corp.internal:8080/crl/NAME.crl"),
            ("mtlsca serve --listen 0.0.0.0:8443 --name ca.corp.internal --publish-listen 0.0.0.0:8080 --crl-next-update 24h", "CRLs valid a day, signed again every 12 hours and after every revocation"),
        ],
        "acme" => &[
            ("mtlsca acme eab create --profile device", "an external account binding key for one ACME client"),
            ("mtlsca acme eab list", "the keys, whether bound, and to which account"),
        ],
        "acme eab" => &[
            ("mtlsca acme eab create --profile workload --json", "kid and HMAC key as JSON; the account gets workload certificates"),
            ("mtlsca acme eab revoke eab-0123abcd...", "the key binds no account from now on"),
        ],
        "acme eab create" => &[
            ("mtlsca acme eab create --profile device", "prints kid and hmac_key (base64url)"),
            ("mtlsca acme eab create --profile workload --json", "as JSON, for a script"),
        ],
        "acme eab list" => &[("mtlsca acme eab list --json", "every key without its HMAC key")],
        "acme eab revoke" => &[("mtlsca acme eab revoke eab-0123abcd...", "refuse the key from now on")],
        "proxy" => &[
            ("mtlsca proxy server --listen 0.0.0.0:8443 --target 127.0.0.1:8080 --cert web.chain.pem --key web.key --trust ca/root.pem --untrusted ca/ca-bundle.pem --crl ca/crl/device.crl --http", "mTLS in front of a plain HTTP server, identity headers added"),
            ("mtlsca proxy client --listen 127.0.0.1:9000 --target db.corp.internal:8443 --cert app.chain.pem --key app.key --trust ca/root.pem --crl ca/crl/device.crl --expect server-to-server", "plain TCP in, mTLS out"),
        ],
        "proxy server" => &[
            ("mtlsca proxy server --listen 0.0.0.0:8443 --target 127.0.0.1:8080 --cert web.chain.pem --key web.key --trust ca/root.pem --untrusted ca/ca-bundle.pem --crl ca/crl/device.crl --http", "devices in, X-MTLS-* headers to the backend"),
            ("mtlsca proxy server --listen 0.0.0.0:8443 --target 127.0.0.1:5432 --cert db.chain.pem --key db.key --trust ca/root.pem --accept device --allow-name app.corp.internal --crl ca/crl/device.crl", "a TCP service, one named peer, revocation from a CRL"),
            ("mtlsca --ca-dir ./ca proxy server --listen 0.0.0.0:8443 --target 127.0.0.1:8080 --cert web.chain.pem --key web.key --trust ./ca/root.pem", "revocation from the CRLs ./ca publishes in ./ca/crl/ (reloaded as `mtlsca crl` renews them)"),
            ("mtlsca proxy server --listen 0.0.0.0:8443 --target 127.0.0.1:8080 --cert web.chain.pem --key web.key --trust partner-root.pem --crl-fetch", "a partner's devices (another PKI), revocation from the CRLs their certificates point to"),
        ],
        "proxy client" => &[
            ("mtlsca proxy client --listen 127.0.0.1:9000 --target db.corp.internal:8443 --cert app.chain.pem --key app.key --trust ca/root.pem --crl ca/crl/device.crl --expect server-to-server", "a device to a device"),
        ],
        "batch" => &[
            ("mtlsca batch --manifest fleet.toml --out-dir certs", "issue a manifest, idempotently"),
            ("mtlsca batch --manifest fleet.toml --out-dir certs --renew-within 7d", "and renew what expires within a week"),
            ("mtlsca batch --manifest fleet.toml --out-dir certs --renew-within 30d --revoke-old", "and revoke what the renewals replaced"),
            ("cat fleet.toml | mtlsca --json batch --manifest -", "from standard input, JSON lines out"),
        ],
        "revoke" => &[
            ("mtlsca revoke web.pem --reason keyCompromise", "by the certificate file"),
            ("mtlsca revoke 5f0c1a2b --reason superseded", "by serial prefix; crl/*.crl list it when this returns"),
            ("mtlsca revoke host-07 --reason keyCompromise", "by request id: its certificate and every unexpired earlier one"),
        ],
        "ca" => &[
            ("mtlsca ca status", "every CA generation: expiry, days left, rollover window"),
            ("mtlsca ca roll device", "a new device issuing CA; the old one stays valid for what it signed"),
            ("mtlsca ca install --device device-ca.pem --entity entity-ca.pem", "complete a CA made with init --external-root"),
        ],
        "ca roll" => &[
            ("mtlsca ca roll device", "new key and certificate for the device issuing CA (stop `serve` first)"),
            ("mtlsca ca roll root", "a new root of the same name, link certificates both ways, new issuing CAs"),
        ],
        "ca status" => &[("mtlsca ca status --json", "every generation as JSON")],
        "crl" => &[
            ("mtlsca crl", "the CRL of every CA generation into <ca-dir>/crl/"),
            ("mtlsca crl --issuer device-1", "one retired generation's CRL"),
            ("mtlsca crl --issuer device --out - --next-update 24h", "the device CA's CRL on standard output"),
        ],
        "export" => &[
            ("mtlsca export web.pem --format chain --out web.fullchain.pem", "leaf and issuing CA"),
            ("mtlsca export db-01 --format p12 --out db.p12", "PKCS#12; the password is asked for twice on a terminal"),
            ("mtlsca export db-01 --format p12 --p12-password-file pw.txt --out db.p12", "the password from a file"),
        ],
        "audit" => &[
            ("mtlsca audit --since 2026-11-01T00:00:00Z", "the log since a time"),
            ("mtlsca audit --verify", "check the hash chain"),
        ],
        "completions" => &[
            ("mtlsca completions bash > /etc/bash_completion.d/mtlsca", "bash"),
            ("mtlsca completions zsh > ~/.zfunc/_mtlsca", "zsh"),
        ],
        "man" => &[
            ("mtlsca man | man -l -", "read the main page"),
            ("mtlsca man --out-dir /usr/local/share/man/man1", "every page, one per command"),
        ],
        _ => &[],
    }
}

/// The text of an examples block.
fn examples_text(path: &str) -> Option<String> {
    let ex = examples(path);
    if ex.is_empty() {
        return None;
    }
    let mut s = String::from("Examples:\n");
    for (cmd, what) in ex {
        s.push_str(&format!("  {cmd}\n      {what}\n"));
    }
    Some(s.trim_end().to_string())
}

/// Value sets completions should offer instead of file names.
const KEY_TYPES: &[&str] = &["ecdsa-p256", "ecdsa-p384", "ed25519"];
const REASONS: &[&str] = &[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
];
const CONNECTIONS: &[&str] = &[
    "server-to-server",
    "client-to-server",
    "server-to-client",
    "end-to-end",
];

/// The command line as users meet it: examples after every command's help, and
/// (for completions) value hints for profiles, key types, reasons and
/// connection kinds.
pub fn command() -> Command {
    // Built first: commands add their arguments and subcommands only when built
    // (`super::Deferred`), and the examples go on every level.
    let mut cmd = <super::Cli as clap::CommandFactory>::command();
    cmd.build();
    decorate(cmd, "")
}

fn decorate(mut cmd: Command, path: &str) -> Command {
    if let Some(text) = examples_text(path) {
        cmd = cmd.after_help(text);
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subs {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |s| decorate(s, &sub_path));
    }
    cmd
}

/// For completions only: offer the built-in profile names, key types, reasons
/// and connection kinds as values (the parser itself accepts any profile, and
/// reasons in any case).
pub fn with_completion_values(cmd: Command) -> Command {
    let profiles: Vec<&'static str> = crate::profile::BUILTIN.iter().map(|(n, _)| *n).collect();
    let mut cmd = cmd;
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let names_a_profile = cmd.get_name() == "profile";
    for name in subs {
        let profiles = profiles.clone();
        let name_is_profile = names_a_profile && name == "show";
        cmd = cmd.mut_subcommand(&name, |s| {
            with_completion_values(s).mut_args(|a| hint(a, &profiles, name_is_profile))
        });
    }
    cmd
}

fn hint(a: Arg, profiles: &[&'static str], name_is_profile: bool) -> Arg {
    let values: Option<Vec<&'static str>> = match a.get_id().as_str() {
        "profile" => Some(profiles.to_vec()),
        "name" if name_is_profile => Some(profiles.to_vec()),
        "key_type" => Some(KEY_TYPES.to_vec()),
        "reason" => Some(REASONS.to_vec()),
        "expect" => Some(CONNECTIONS.to_vec()),
        _ => None,
    };
    match values {
        Some(v) => a.value_parser(PossibleValuesParser::new(v)),
        None => a,
    }
}

/// Shell completions for `shell`, with value hints.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = with_completion_values(command());
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mtlsca", &mut buf);
    buf
}

/// Every man page: `mtlsca.1` and one per command, nested ones included
/// (`mtlsca-verify-pair.1`), as (file name, roff).
pub fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    collect_pages(&cmd, "", None, &mut out)?;
    Ok(out)
}

fn collect_pages(
    cmd: &Command,
    path: &str,
    parent: Option<&str>,
    out: &mut Vec<(String, Vec<u8>)>,
) -> std::io::Result<()> {
    let title = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let page = clap_mangen::Man::new(cmd.clone())
        .title(title)
        .source(format!("mtlsca {}", env!("CARGO_PKG_VERSION")))
        .manual("mtlsca manual");
    let name = page.get_filename();
    let mut buf = Vec::new();
    page.render_title(&mut buf)?;
    page.render_name_section(&mut buf)?;
    page.render_synopsis_section(&mut buf)?;
    page.render_description_section(&mut buf)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut buf)?;
    }
    let subs: Vec<&Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subs.is_empty() {
        page.render_subcommands_section(&mut buf)?;
    }
    let mut roff = String::new();
    let ex = examples(path);
    if !ex.is_empty() {
        roff.push_str(".SH EXAMPLES\n");
        for (c, what) in ex {
            roff.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", escape(c), escape(what)));
        }
    }
    roff.push_str(EXIT_STATUS);
    roff.push_str(ENVIRONMENT);
    roff.push_str(FILES);
    let display = |c: &Command| {
        c.get_display_name()
            .unwrap_or_else(|| c.get_name())
            .to_string()
    };
    let mut see: Vec<String> = Vec::new();
    if let Some(p) = parent {
        see.push(format!("\\fB{}\\fR(1)", escape(p)));
    }
    for s in &subs {
        see.push(format!("\\fB{}\\fR(1)", escape(&display(s))));
    }
    see.push("\\fBopenssl\\fR(1)".into());
    roff.push_str(&format!(".SH \"SEE ALSO\"\n{}\n", see.join(",\n")));
    if parent.is_none() {
        page.render_version_section(&mut buf)?;
    }
    buf.extend_from_slice(roff.as_bytes());
    out.push((name, buf));
    let me = display(cmd);
    for s in subs {
        let sub_path = if path.is_empty() {
            s.get_name().to_string()
        } else {
            format!("{path} {}", s.get_name())
        };
        collect_pages(s, &sub_path, Some(&me), out)?;
    }
    Ok(())
}

/// Text safe in a roff line: backslashes and hyphens escaped, no leading dot or
/// quote.
fn escape(s: &str) -> String {
    let t = s.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
0
Done; or the answer is yes (valid).
.TP
1
Refused by policy, or verification failed (the answer is no).
.TP
2
Bad usage or unreadable input.
.TP
3
CA state problem: no CA, store locked past the wait, I/O or storage failure.
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBMTLSCA_DIR\fR
The CA directory when \fB\-\-ca\-dir\fR is not given (else \fI./mtlsca\fR).
.TP
\fBMTLSCA_PASSPHRASE\fR
The passphrase of encrypted CA keys when \fB\-\-passphrase\-file\fR is not given (else it is asked on the terminal when standard input is one).
.TP
\fBMTLSCA_P12_PASSWORD\fR
The password of a PKCS#12 export when \fB\-\-p12\-password\-file\fR is not given and standard input is not a terminal.
"#;

const FILES: &str = r#".SH FILES
.TP
\fICA_DIR/root.pem\fR, \fICA_DIR/device\-ca.pem\fR, \fICA_DIR/entity\-ca.pem\fR
The root and the two issuing CA certificates.
.TP
\fICA_DIR/ca\-bundle.pem\fR
The root and both issuing CAs in one file, for relying parties that take one CA file.
.TP
\fICA_DIR/private/\fR
The CA keys (directory 0700, keys 0600; optionally encrypted).
.TP
\fICA_DIR/profiles/\fR
The CA's own, editable copies of the profiles.
.TP
\fICA_DIR/db/\fR
The store: every issued certificate, its record, the indexes and the audit log.
.TP
\fICA_DIR/crl/\fR
The latest CRLs (written by \fBinit\fR, \fBrevoke\fR, \fBmtlsca crl\fR and a running \fBserve\fR).
.TP
\fIPREFIX.key\fR, \fIPREFIX.pem\fR, \fIPREFIX.chain.pem\fR
What \fBissue\fR writes: the key (0600), the certificate, the certificate and its issuing CA; \fBrenew\fR keeps replaced files as \fIPREFIX.*.prev\fR.
"#;
