//! The harness: a temp dir, the real binary with a scrubbed environment, OpenSSL.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_mtlsca");

/// Whether `faketime` (Debian `faketime`) runs here: when it does not, the
/// caller skips (said on stderr), and under `MTLSCA_REQUIRE_FAKETIME` (`.ci/run`)
/// the test fails instead.
pub fn have_faketime() -> bool {
    let here = Command::new("faketime")
        .args(["-f", "+1d", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !here {
        assert!(
            std::env::var_os("MTLSCA_REQUIRE_FAKETIME").is_none(),
            "faketime is required (MTLSCA_REQUIRE_FAKETIME) but not installed (apt-get install faketime)"
        );
        eprintln!(
            "SKIPPED: faketime is not installed (apt-get install faketime; .ci/run installs it)"
        );
    }
    here
}

/// A scratch directory with a CA directory inside (not yet initialised).
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// `mtlsca --ca-dir CA_DIR ARGS` in the scratch directory with the clock
    /// moved by `offset` (faketime's `+70d`), a scrubbed environment plus `vars`.
    pub fn at_dir(
        &self,
        ca_dir: &Path,
        offset: &str,
        vars: &[(&str, &str)],
        args: &[&str],
    ) -> Output {
        Command::new("faketime")
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars.iter().copied())
            .args(["-f", offset, BIN, "--ca-dir"])
            .arg(ca_dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run faketime mtlsca")
    }

    /// An OpenSSL CSR for a new P-256 key (written to `key`): subject `subj`,
    /// each of `ext` as an `-addext`, then `out` (e.g. `["-out", "x.csr"]`).
    pub fn openssl_csr(&self, key: &str, subj: &str, ext: &[&str], out: &[&str]) {
        let mut args = vec![
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-subj",
            subj,
        ];
        for e in ext {
            args.extend(["-addext", e]);
        }
        args.extend_from_slice(out);
        self.openssl_ok(&args);
    }

    /// Write `name.pem`, `name.key`, `name.chain.pem`: a leaf made by OpenSSL under
    /// mtlsca's device issuing CA, with `eku` as its extendedKeyUsage (or none).
    pub fn openssl_leaf(&self, name: &str, eku: Option<&str>) {
        let mut ext = format!("keyUsage=critical,digitalSignature\nsubjectAltName=DNS:{name}.test");
        if let Some(e) = eku {
            ext.push_str(&format!("\nextendedKeyUsage={e}"));
        }
        self.openssl_signed(name, "device-ca", &format!("/CN={name}.test"), &ext);
    }

    /// `NAME.key`, `NAME.pem` and `NAME.chain.pem` (the leaf, then its issuer
    /// unless that is the root): a leaf that OpenSSL signs with the key of the
    /// CA's `issuer` (`device-ca`, `entity-ca` or `root`), with subject `subj`
    /// and the extensions `ext` (one a line), whatever mtlsca's rules say: what
    /// only a holder of a CA key can make. The serial is made from the name.
    pub fn openssl_signed(&self, name: &str, issuer: &str, subj: &str, ext: &str) {
        self.openssl_ok(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ]);
        let csr = format!("{name}.csr");
        self.openssl_ok(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subj,
            "-out",
            &csr,
        ]);
        std::fs::write(
            self.path(&format!("{name}.ext")),
            format!("[v3]\nbasicConstraints=critical,CA:FALSE\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n{ext}\n"),
        )
        .unwrap();
        self.openssl_ok(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("ca/{issuer}.pem"),
            "-CAkey",
            &format!("ca/private/{issuer}.key"),
            "-set_serial",
            &format!(
                "0x5a{}",
                name.bytes().map(|b| format!("{b:02x}")).collect::<String>()
            ),
            "-days",
            "30",
            "-sha256",
            "-extfile",
            &format!("{name}.ext"),
            "-extensions",
            "v3",
            "-out",
            &format!("{name}.pem"),
        ]);
        let mut chain = std::fs::read_to_string(self.path(&format!("{name}.pem"))).unwrap();
        if issuer != "root" {
            chain += &std::fs::read_to_string(self.ca_dir().join(format!("{issuer}.pem"))).unwrap();
        }
        std::fs::write(self.path(&format!("{name}.chain.pem")), chain).unwrap();
    }

    /// Alice, a person (`alice.pem`, `alice.key`, `alice.chain.pem`).
    pub fn issue_alice(&self) {
        self.ok(&[
            "issue",
            "person",
            "--cn",
            "Alice",
            "--email",
            "alice@test",
            "--out",
            "alice",
        ]);
    }

    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A fresh env with `mtlsca init` already run.
    pub fn with_ca() -> Env {
        let env = Env::new();
        env.ok(&["init", "--name", "Test"]);
        env
    }

    /// A fresh env with a name-constrained CA, as in the issue-9 review:
    /// `init --permit-dns corp.internal --permit-ip 10.0.0.0/8`.
    pub fn constrained() -> Env {
        let env = Env::new();
        env.ok(&[
            "init",
            "--name",
            "Test",
            "--permit-dns",
            "corp.internal",
            "--permit-ip",
            "10.0.0.0/8",
        ]);
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.path("ca")
    }

    /// The binary, run in the temp dir, with `--ca-dir ca` and nothing else from
    /// the caller's environment but PATH.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("--ca-dir")
            .arg(self.ca_dir());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mtlsca")
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mtlsca");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Run and insist on exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(code(&out), 0, "mtlsca {args:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run with --json and parse stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: bad JSON {e}: {out}"))
    }

    /// Run and insist on `want`; returns stderr. Non-zero codes must say `error:`
    /// unless they are verdicts (exit 1 from verify).
    pub fn fails(&self, args: &[&str], want: i32) -> String {
        let out = self.run(args);
        assert_eq!(code(&out), want, "mtlsca {args:?}:\n{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "panic: {err}");
        err
    }

    pub fn openssl(&self, args: &[&str]) -> Output {
        Command::new("openssl")
            .current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("openssl is installed")
    }

    /// Run openssl and insist on success; returns stdout + stderr.
    pub fn openssl_ok(&self, args: &[&str]) -> String {
        let out = self.openssl(args);
        assert!(
            out.status.success(),
            "openssl {args:?} failed:\n{}",
            text(&out)
        );
        text(&out)
    }

    /// `openssl x509 -text -noout` of a file.
    pub fn x509_text(&self, file: &str) -> String {
        self.openssl_ok(&["x509", "-in", file, "-noout", "-text"])
    }

    /// How many certificates the store holds (via `list --json`).
    pub fn store_count(&self) -> usize {
        self.json(&["list"])
            .as_array()
            .expect("list is an array")
            .len()
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// ../shared relative to the repository root, if present.
pub fn shared_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.is_dir().then_some(p)
}

/// A running `mtlsca serve`; SIGTERMed on drop.
pub struct Server {
    /// The `mtlsca serve` process.
    pub child: Child,
    /// The port it listens on.
    pub port: u16,
}

/// `mtlsca ARGS` under `umask 000`, in `env`'s directory with a scrubbed
/// environment (what a careless service manager runs it with).
pub fn umask0(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .args(args)
        .stdin(Stdio::null());
    c
}

/// A TCP connection to `127.0.0.1:port` from the loopback address `from`
/// (127.0.0.2, ...: another client as per-client limits count them).
pub fn connect_from(from: std::net::Ipv4Addr, port: u16) -> std::net::TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&std::net::SocketAddr::from((from, 0)).into())
        .unwrap();
    s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    s.into()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// On any free port, with `extra` arguments.
    pub fn start(env: &Env, extra: &[&str]) -> Server {
        Server::start_at(env, 0, extra)
    }

    /// On a given port (0: any), so that a restarted server keeps its URLs.
    pub fn start_at(env: &Env, port: u16, extra: &[&str]) -> Server {
        Server::spawn(env, port, extra, Stdio::inherit())
    }

    /// On any free port, its standard error (the refusal log) into `log`.
    pub fn start_logging(env: &Env, extra: &[&str], log: &std::path::Path) -> Server {
        let file = std::fs::File::create(log).unwrap();
        Server::spawn(env, 0, extra, Stdio::from(file))
    }

    /// On any free port, its standard error a pipe that nobody reads until the
    /// test takes `child.stderr` (a supervisor that never reads the log).
    pub fn start_with_unread_stderr(env: &Env, extra: &[&str]) -> Server {
        Server::spawn(env, 0, extra, Stdio::piped())
    }

    fn spawn(env: &Env, port: u16, extra: &[&str], stderr: Stdio) -> Server {
        let listen = format!("127.0.0.1:{port}");
        let mut child = env
            .cmd()
            .args(["serve", "--listen", &listen, "--name", "localhost"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn mtlsca serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = Server::port_in(&line);
        Server { child, port }
    }

    /// The port of serve's first line, `serving https://127.0.0.1:PORT ...`.
    pub fn port_in(line: &str) -> u16 {
        line.split("https://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("serve did not say where it listens: {line:?}"))
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        // A server that does not stop within a minute is killed, so that a hang
        // fails the test (-1) instead of holding it forever.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return -1;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `https://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}
