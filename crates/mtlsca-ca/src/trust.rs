//! Trusting the CA on a lab machine (`trust install`, `trust uninstall`): the
//! CA's root certificates ([`trust_anchors`]) put into, or taken out of, the
//! Debian system store (`update-ca-certificates`), NSS databases (`certutil`,
//! as Firefox and Chrome use) and Java keystores (`keytool`), as `mkcert
//! -install` and `step certificate install` do. Each store is one
//! [`Target`] and gets one [`Outcome`] per anchor; a store that fails does not
//! stop the others. What `install` adds is named after the CA and the root's
//! key identifier ([`Anchor::nickname`]), so `uninstall` removes exactly that.
//!
//! The tools are Debian's and NSS's and the JDK's, run with their output
//! captured and standard input closed, or holding the certificate they import
//! (they never wait on a prompt).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::ca::{Ca, CaKind};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::names::printable;

/// A root certificate relying parties install.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The certificate, PEM.
    pub pem: String,
    /// Its subject, `O=.., CN=..`.
    pub subject: String,
    /// Its subjectKeyIdentifier, lowercase hex.
    pub key_id: String,
    /// The name it is installed under in every store: `mtlsca-NAME-KEYID8`
    /// (the CA's name in lowercase letters, digits and `-`; the first 8 hex
    /// digits of the key identifier).
    pub nickname: String,
}

/// The root certificates to install for `ca`: every root generation (after
/// `ca roll root`, the old and the new root: relying parties trust both
/// during the overlap), current first.
pub fn trust_anchors(ca: &Ca) -> Result<Vec<Anchor>> {
    let name: String = ca
        .config
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    let name = if name.is_empty() { "ca" } else { name };
    let mut roots: Vec<_> = ca
        .generations()?
        .into_iter()
        .filter(|g| g.id.kind == CaKind::Root)
        .collect();
    roots.sort_by_key(|g| std::cmp::Reverse((g.current, g.id.generation)));
    let mut out = Vec::with_capacity(roots.len());
    for g in roots {
        let der = ca.cert_der_of(g.id)?;
        let file = g.id.cert_file();
        let (_, x) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| Error::State(format!("{file}: {e}")))?;
        let key_id = crate::ca::subject_key_id_of(&x)
            .map(|k| crate::hex::encode(&k))
            .ok_or_else(|| Error::State(format!("{file}: no subjectKeyIdentifier")))?;
        let nickname = format!("mtlsca-{name}-{}", &key_id[..key_id.len().min(8)]);
        out.push(Anchor {
            pem: fsutil::pem_lf(&pem::Pem::new("CERTIFICATE", der.clone())),
            subject: printable(&x.subject().to_string()),
            key_id,
            nickname,
        });
    }
    Ok(out)
}

/// Install or uninstall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Add the anchors.
    Install,
    /// Remove what install added.
    Uninstall,
}

/// One trust store.
#[derive(Debug, Clone)]
pub enum Target {
    /// Debian's system store: `<sysroot>/usr/local/share/ca-certificates/`, then
    /// `update-ca-certificates` (every directory it uses under `sysroot` when one
    /// is given; the machine's own otherwise, which needs root).
    System {
        /// A tree standing in for `/` (tests, images being built).
        sysroot: Option<PathBuf>,
    },
    /// An NSS database (`certutil -d sql:DIR`).
    Nss {
        /// The database directory.
        dir: PathBuf,
        /// Found by looking (`~/.pki/nssdb`, Firefox profiles), not asked for.
        found: bool,
    },
    /// A Java keystore (`keytool`), created by install when missing.
    Java {
        /// The keystore file.
        keystore: PathBuf,
        /// Its password (`changeit` unless given).
        storepass: Zeroizing<String>,
    },
}

impl Target {
    /// `system`, `nss` or `java`.
    pub fn store(&self) -> &'static str {
        match self {
            Target::System { .. } => "system",
            Target::Nss { .. } => "nss",
            Target::Java { .. } => "java",
        }
    }
}

/// What became of one anchor in one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "detail")]
pub enum Outcome {
    /// Added.
    Installed,
    /// It was there already (install changed nothing).
    AlreadyThere,
    /// Removed.
    Removed,
    /// It was not there (uninstall changed nothing).
    NotThere,
    /// Not tried, and why (a store looked for and not usable).
    Skipped(String),
    /// Tried and failed, and why.
    Failed(String),
}

impl Outcome {
    /// Whether this store did what was asked (a skip counts: it was not asked for).
    pub fn ok(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `system`, `nss` or `java`.
    pub store: &'static str,
    /// The file, database or keystore.
    pub location: PathBuf,
    /// The anchor's nickname (file name, NSS nickname, Java alias).
    pub nickname: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The NSS databases found by looking, as mkcert does: `$HOME/.pki/nssdb` and
/// every Firefox profile (`$HOME/.mozilla/firefox/*/`, and the snap's) that
/// holds a `cert9.db`.
pub fn default_nss_dirs(home: Option<&Path>) -> Vec<PathBuf> {
    let Some(home) = home else { return vec![] };
    let mut out = Vec::new();
    let nssdb = home.join(".pki/nssdb");
    if nssdb.is_dir() {
        out.push(nssdb);
    }
    for profiles in [
        home.join(".mozilla/firefox"),
        home.join("snap/firefox/common/.mozilla/firefox"),
    ] {
        let Ok(entries) = std::fs::read_dir(&profiles) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("cert9.db").is_file())
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

/// Install or uninstall every anchor in every target; one report per target
/// and anchor, in order.
pub fn apply(anchors: &[Anchor], targets: &[Target], action: Action) -> Vec<Report> {
    let mut out = Vec::new();
    for t in targets {
        for a in anchors {
            let (location, outcome) = match t {
                Target::System { sysroot } => system(a, sysroot.as_deref(), action),
                Target::Nss { dir, found } => nss(a, dir, *found, action),
                Target::Java {
                    keystore,
                    storepass,
                } => java(a, keystore, storepass, action),
            };
            out.push(Report {
                store: t.store(),
                location,
                nickname: a.nickname.clone(),
                outcome,
            });
        }
    }
    out
}

/// Run a tool with standard input closed: `Ok` with its output when it exited
/// 0, else why (its last line of error output, or that it is not installed).
fn run(cmd: Command, package: &str) -> std::result::Result<String, String> {
    run_with_input(cmd, package, None)
}

/// `run`, with `input` as the tool's standard input.
fn run_with_input(
    mut cmd: Command,
    package: &str,
    input: Option<&[u8]>,
) -> std::result::Result<String, String> {
    use std::io::Write;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawned = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let out = spawned.and_then(|mut child| {
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            // A tool that exits early closes the pipe: its status says why.
            let _ = stdin.write_all(bytes);
        }
        child.wait_with_output()
    });
    match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{program} is not installed (Debian package {package})"
        )),
        Err(e) => Err(format!("cannot run {program}: {e}")),
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let std = String::from_utf8_lossy(&o.stdout);
            let last = err
                .lines()
                .chain(std.lines())
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("")
                .to_string();
            Err(format!(
                "{program} failed ({}): {}",
                o.status,
                printable(&last)
            ))
        }
    }
}

/// Whether a program can be found on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

// ---------------------------------------------------------------- system

fn system(a: &Anchor, sysroot: Option<&Path>, action: Action) -> (PathBuf, Outcome) {
    // update-ca-certificates changes directory before it reads its paths:
    // they must be absolute.
    let sysroot = match sysroot.map(std::path::absolute).transpose() {
        Ok(r) => r,
        Err(e) => {
            let p = sysroot.unwrap_or(Path::new("/")).to_path_buf();
            return (p, Outcome::Failed(format!("--sysroot: {e}")));
        }
    };
    let sysroot = sysroot.as_deref();
    let root = sysroot.unwrap_or(Path::new("/"));
    let local = root.join("usr/local/share/ca-certificates");
    let file = local.join(format!("{}.crt", a.nickname));
    let tool = "update-ca-certificates";
    let tool_path = [
        "/usr/sbin/update-ca-certificates",
        "/sbin/update-ca-certificates",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .or_else(|| on_path(tool).then(|| PathBuf::from(tool)));
    let Some(tool_path) = tool_path else {
        return (
            file,
            Outcome::Failed(format!(
                "{tool} is not installed (Debian package ca-certificates)"
            )),
        );
    };
    let present = std::fs::read_to_string(&file).ok();
    let outcome = match action {
        Action::Install => {
            if present.as_deref() == Some(a.pem.as_str()) {
                return (file, Outcome::AlreadyThere);
            }
            if let Err(e) = fsutil::create_dir_all_mode(&local, 0o755)
                .and_then(|()| fsutil::write_atomic(&file, a.pem.as_bytes(), 0o644))
            {
                return (file, Outcome::Failed(hint_root(e.to_string(), sysroot)));
            }
            Outcome::Installed
        }
        Action::Uninstall => {
            if present.is_none() {
                return (file, Outcome::NotThere);
            }
            if let Err(e) = std::fs::remove_file(&file) {
                return (file, Outcome::Failed(hint_root(e.to_string(), sysroot)));
            }
            Outcome::Removed
        }
    };
    let mut cmd = Command::new(tool_path);
    if action == Action::Uninstall {
        // Clears the links to certificates that are gone, then links the rest.
        cmd.arg("--fresh");
    }
    if let Some(r) = sysroot {
        cmd.arg("--certsconf")
            .arg(r.join("etc/ca-certificates.conf"))
            .arg("--certsdir")
            .arg(r.join("usr/share/ca-certificates"))
            .arg("--localcertsdir")
            .arg(&local)
            .arg("--etccertsdir")
            .arg(r.join("etc/ssl/certs"))
            .arg("--hooksdir")
            .arg(r.join("etc/ca-certificates/update.d"));
    }
    match run(cmd, "ca-certificates") {
        Ok(_) => (file, outcome),
        Err(why) => (file, Outcome::Failed(hint_root(why, sysroot))),
    }
}

fn hint_root(why: String, sysroot: Option<&Path>) -> String {
    if sysroot.is_none() && why.to_ascii_lowercase().contains("permission denied") {
        format!("{why} (the system store needs root: run it with sudo)")
    } else {
        why
    }
}

// ---------------------------------------------------------------- NSS

fn nss(a: &Anchor, dir: &Path, found: bool, action: Action) -> (PathBuf, Outcome) {
    let location = dir.to_path_buf();
    if !on_path("certutil") {
        let why = "certutil is not installed (Debian package libnss3-tools)".to_string();
        return (
            location,
            if found {
                Outcome::Skipped(why)
            } else {
                Outcome::Failed(why)
            },
        );
    }
    if !dir.join("cert9.db").is_file() {
        return (
            location,
            Outcome::Failed(format!(
                "no NSS database in {} (make one with `certutil -N --empty-password -d sql:{}`)",
                dir.display(),
                dir.display()
            )),
        );
    }
    let db = format!("sql:{}", dir.display());
    let certutil = |args: &[&str]| {
        let mut c = Command::new("certutil");
        c.arg("-d").arg(&db).args(args);
        c
    };
    let present = run(certutil(&["-L", "-n", &a.nickname]), "libnss3-tools").is_ok();
    let result = match (action, present) {
        (Action::Install, true) => return (location, Outcome::AlreadyThere),
        (Action::Uninstall, false) => return (location, Outcome::NotThere),
        (Action::Install, false) => run_with_input(
            certutil(&["-A", "-t", "C,,", "-n", &a.nickname, "-a"]),
            "libnss3-tools",
            Some(a.pem.as_bytes()),
        )
        .map(|_| Outcome::Installed),
        (Action::Uninstall, true) => {
            run(certutil(&["-D", "-n", &a.nickname]), "libnss3-tools").map(|_| Outcome::Removed)
        }
    };
    (location, result.unwrap_or_else(Outcome::Failed))
}

// ---------------------------------------------------------------- Java

/// The environment variable keytool reads the store password from (never on
/// its command line, where `ps` would show it).
const STOREPASS_ENV: &str = "MTLSCA_KEYTOOL_STOREPASS";

fn java(a: &Anchor, keystore: &Path, pass: &str, action: Action) -> (PathBuf, Outcome) {
    let location = keystore.to_path_buf();
    let keytool = |args: &[&str]| {
        let mut c = Command::new("keytool");
        c.args(args)
            .arg("-alias")
            .arg(&a.nickname)
            .arg("-keystore")
            .arg(keystore)
            .arg("-storepass:env")
            .arg(STOREPASS_ENV)
            .env(STOREPASS_ENV, pass);
        c
    };
    let package = "default-jre-headless";
    let present = keystore.is_file() && run(keytool(&["-list"]), package).is_ok();
    let result = match (action, present) {
        (Action::Install, true) => return (location, Outcome::AlreadyThere),
        (Action::Uninstall, false) => {
            if !on_path("keytool") {
                return (
                    location,
                    Outcome::Failed(format!(
                        "keytool is not installed (Debian package {package})"
                    )),
                );
            }
            return (location, Outcome::NotThere);
        }
        (Action::Install, false) => run_with_input(
            keytool(&["-importcert", "-noprompt"]),
            package,
            Some(a.pem.as_bytes()),
        )
        .map(|_| Outcome::Installed),
        (Action::Uninstall, true) => run(keytool(&["-delete"]), package).map(|_| Outcome::Removed),
    };
    (location, result.unwrap_or_else(Outcome::Failed))
}
