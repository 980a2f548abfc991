//! Hostile input on the control socket `<ca-dir>/mtlsca.sock` while `mtlsca
//! serve` runs (issue 22): bad frames, slow clients, garbage and deeply nested
//! JSON, unknown operations and protocol versions, paths with `..` or NUL
//! bytes, more connections than the server serves at once, and peers of
//! another uid. After each attack the server still serves a normal `mtlsca
//! list` through the socket, its log says what it refused and why, and it
//! never panics. The client is checked against a hostile server too.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mtlsca::batch::BatchOptions;
use mtlsca::ca::CaKind;
use mtlsca::issue::{IssuanceRequest, KeySource, Output as Files};
use mtlsca::policy::RequestedContent;
use mtlsca::service::client::MAX_CLIENTS;
use mtlsca::service::protocol::{Request, MAX_REQUEST, VERSION};
use mtlsca::service::{ops, CrlTarget, Remote};
use serde_json::{json, Value};

use crate::common::{code, text, Env, Server, BIN};

/// Short enough that a command falling back to the store's lock fails.
const LOCK: &str = "--lock-timeout=200ms";
/// The server's read timeout (`socket::READ_TIMEOUT`, not configurable).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The uid the tests switch to (nobody).
const OTHER_UID: u32 = 65534;

/// A CA with `mtlsca serve` running on it, its stderr (the log) in a file.
struct Served {
    env: Env,
    server: Server,
    log: PathBuf,
    sock: PathBuf,
}

impl Served {
    fn start() -> Served {
        let env = Env::with_ca();
        let log = env.path("serve.log");
        let server = Server::start_logging(&env, &[], &log);
        Served::around(env, server, log)
    }

    fn around(env: Env, server: Server, log: PathBuf) -> Served {
        let sock = env.ca_dir().join("mtlsca.sock");
        Served {
            env,
            server,
            log,
            sock,
        }
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.sock).expect("connect to the control socket");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Send `bytes`, close the sending side, and read what the server sends
    /// until it closes the connection.
    fn exchange(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        // The server may close before reading everything: a failed write is
        // part of the attack, not of the test.
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        read_until_closed(&mut s)
    }

    /// The error answer to `bytes`: its kind and message.
    fn refused(&self, bytes: &[u8]) -> (String, String) {
        let answer = answer(&self.exchange(bytes));
        let err = &answer["result"]["Err"];
        assert!(err.is_object(), "an error answer: {answer}");
        (
            err["kind"].as_str().unwrap_or_default().to_string(),
            err["message"].as_str().unwrap_or_default().to_string(),
        )
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (polling, up to 10 s) for `n` log lines holding every one of
    /// `needles`; the last of them.
    fn logged_n(&self, n: usize, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_text();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .collect();
            if lines.len() >= n {
                return lines[lines.len() - 1].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "{n} log line(s) with {needles:?}; the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn logged(&self, needles: &[&str]) -> String {
        self.logged_n(1, needles)
    }

    /// A normal `mtlsca list` through the socket (with the short lock timeout
    /// a local run would fail) works.
    fn still_serves(&self) {
        let out = self.env.run(&[LOCK, "list"]);
        assert_eq!(code(&out), 0, "list after the attack: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("certificate(s)"),
            "{}",
            text(&out)
        );
    }

    /// Stop the server: a clean stop, and no panic in its log.
    fn finish(mut self) {
        assert_eq!(self.server.stop(), 0, "serve's log:\n{}", self.log_text());
        let log = self.log_text();
        assert!(!log.contains("panicked"), "{log}");
    }
}

fn read_until_closed(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // Reset: the server closed with our bytes unread.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("reading the answer: {e} (after {} bytes)", out.len()),
        }
    }
}

/// One frame: the 4-byte big-endian length, then `body`.
fn frame(body: impl AsRef<[u8]>) -> Vec<u8> {
    let body = body.as_ref();
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A request frame for `req` (as the client would send it, unchecked).
fn request(req: &Request) -> Vec<u8> {
    frame(json!({"v": VERSION, "op": req}).to_string())
}

/// The wire request of an operation, its paths as given.
fn wire(op: impl Remote) -> Request {
    op.to_request().unwrap()
}

/// The one answer frame in `bytes`, parsed.
fn answer(bytes: &[u8]) -> Value {
    assert!(bytes.len() >= 4, "an answer frame: {bytes:?}");
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 4, "one whole frame");
    serde_json::from_slice(&bytes[4..]).expect("a JSON answer")
}

#[test]
fn a_length_over_the_limit_is_closed_unanswered_and_logged() {
    let s = Served::start();
    for len in [MAX_REQUEST + 1, u32::MAX] {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(br#"{"v": 2, "op": "Status"}"#);
        assert!(s.exchange(&bytes).is_empty(), "no answer to {len} bytes");
        s.logged(&[
            "request=\"control socket\" verdict=refused problem=too-large",
            &format!("a request of {len} bytes (at most {MAX_REQUEST})"),
        ]);
        s.still_serves();
    }
    s.finish();
}

#[test]
fn a_truncated_frame_is_closed_unanswered_and_logged() {
    let s = Served::start();
    // A length announcing 256 bytes, one sent; half a length.
    assert!(s.exchange(&[0, 0, 1, 0, b'{']).is_empty());
    s.logged(&[
        "problem=truncated",
        "the connection closed after 5 of the request's 260 bytes",
    ]);
    assert!(s.exchange(&[0, 0]).is_empty());
    s.logged(&[
        "problem=truncated",
        "the connection closed after 2 of the request's 4 bytes",
    ]);
    // A connection that sends nothing (how clients look for a server) is no
    // attack: not logged.
    assert!(s.exchange(&[]).is_empty());
    s.still_serves();
    assert_eq!(
        s.log_text()
            .lines()
            .filter(|l| l.contains("control socket"))
            .count(),
        2,
        "{}",
        s.log_text()
    );
    s.finish();
}

/// A request that never completes is closed by the server's read timeout
/// (10 s, for the whole request): one that stops after two bytes and one that
/// dribbles a byte every 200 ms. Others are served meanwhile, at once.
#[test]
fn a_request_that_never_completes_is_closed_by_the_read_timeout_without_blocking_others() {
    let s = Served::start();
    let started = Instant::now();
    let mut silent = s.connect();
    silent.write_all(&[0, 0]).unwrap();
    let mut dribbler = s.connect();
    let dribbling = std::thread::spawn(move || {
        // A length of 1000, then one byte at a time until the server closes.
        let mut sent = 0usize;
        for b in [0u8, 0, 3, 232].into_iter().chain(std::iter::repeat(b' ')) {
            if dribbler.write_all(&[b]).is_err() {
                break;
            }
            sent += 1;
            if sent > 4 + 1000 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (sent, read_until_closed(&mut dribbler))
    });
    // Other clients are not held up by them.
    for _ in 0..3 {
        let t = Instant::now();
        s.still_serves();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    // The silent client is closed by the server, no answer, after the timeout.
    assert!(read_until_closed(&mut silent).is_empty());
    let closed_after = started.elapsed();
    assert!(
        closed_after >= READ_TIMEOUT - Duration::from_millis(500),
        "closed after {closed_after:?}"
    );
    s.logged(&[
        "problem=timeout",
        "no complete request within 10 s (2 bytes received)",
    ]);
    let (sent, answered) = dribbling.join().unwrap();
    assert!(sent < 4 + 1000, "the dribbler sent its whole request");
    assert!(answered.is_empty());
    s.logged_n(2, &["problem=timeout", "no complete request within 10 s"]);
    s.still_serves();
    s.finish();
}

#[test]
fn garbage_and_deeply_nested_json_are_refused_with_an_answer() {
    let s = Served::start();
    let deep_op = format!(r#"{{"v": 2, "op": {}}}"#, "[".repeat(100_000));
    let deep_closed = "[".repeat(50_000) + &"]".repeat(50_000);
    let deep_objects = r#"{"a":"#.repeat(20_000) + "1" + &"}".repeat(20_000);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", frame("not json")),
        ("an empty frame", frame("")),
        ("not UTF-8", frame([0xff, 0xfe, 0x00, 0x80])),
        ("NUL bytes", frame([0u8; 64])),
        ("an op nested 100,000 deep", frame(deep_op)),
        ("arrays nested 50,000 deep", frame(deep_closed)),
        ("objects nested 20,000 deep", frame(deep_objects)),
        (
            "a version as a string",
            frame(r#"{"v": "2", "op": "Status"}"#),
        ),
        (
            "a version over u32",
            frame(r#"{"v": 4294967296, "op": "Status"}"#),
        ),
        ("trailing bytes", frame(r#"{"v": 2, "op": "Status"} {}"#)),
    ];
    for (n, (what, bytes)) in cases.iter().enumerate() {
        let (kind, message) = s.refused(bytes);
        assert_eq!(kind, "state", "{what}: {message}");
        assert!(message.starts_with("a bad request: "), "{what}: {message}");
        s.logged_n(n + 1, &["verdict=refused problem=bad-request"]);
    }
    // Nesting is refused by the parser's depth limit, not by a stack overflow.
    let (_, message) = s.refused(&cases[4].1);
    assert!(message.contains("recursion limit"), "{message}");
    s.still_serves();
    s.finish();
}

#[test]
fn an_unknown_operation_or_another_protocol_version_is_refused_with_an_answer() {
    let s = Served::start();
    for (body, want) in [
        (r#"{"v": 2, "op": "Explode"}"#, "unknown variant `Explode`"),
        (r#"{"v": 2, "op": {"Backup": {}}}"#, "missing field `dir`"),
        (
            r#"{"v": 2, "op": {"Status": 7, "Backup": 8}}"#,
            "a bad request",
        ),
        (r#"{"v": 2}"#, "missing field `op`"),
        (r#"{"op": "Status"}"#, "missing field `v`"),
    ] {
        let (kind, message) = s.refused(&frame(body));
        assert_eq!(kind, "state", "{body}: {message}");
        assert!(message.contains(want), "{body}: {message}");
    }
    s.logged_n(5, &["problem=bad-request"]);
    for v in [0, 1, 3, 99] {
        let (kind, message) = s.refused(&frame(format!(r#"{{"v": {v}, "op": "Status"}}"#)));
        assert_eq!(kind, "state");
        assert!(
            message.contains(&format!(
                "the client speaks control protocol {v}, this server 2: run the same mtlsca version"
            )),
            "{message}"
        );
    }
    s.logged_n(4, &["problem=protocol-version"]);
    s.still_serves();
    s.finish();
}

/// Where operations take paths (issue and CRL files, batch and backup
/// directories, a certificate file named in show or revoke): a relative path
/// (which the server would resolve against its own working directory) and a
/// NUL byte are refused with an answer, nothing written; `..` in an absolute
/// path is the file system's to resolve, as in a local run by the same user
/// (the only peer served); a batch id with `..` is refused as a manifest
/// error. Through the CLI, `-` is a file name like any other.
#[test]
fn paths_that_are_relative_or_hold_nul_bytes_are_refused() {
    let s = Served::start();
    let dir = s.env.dir.path().to_path_buf();
    let abs = |p: &str| dir.join(p);
    let crl = |target: PathBuf| {
        wire(ops::SignCrls {
            issuer: Some(CaKind::Device),
            generation: None,
            target: CrlTarget::File(target),
            next_update: time::Duration::days(1),
        })
    };
    let issue = |output: PathBuf| {
        wire(ops::Issue(IssuanceRequest {
            profile: "device".into(),
            content: RequestedContent {
                dns: vec!["h.corp.internal".into()],
                ..Default::default()
            },
            key: KeySource::Generate(None),
            request_id: None,
            output: Files::Prefix(output),
            origin: Default::default(),
            replaces: None,
        }))
    };
    let manifest =
        "[[certificate]]\nid = \"m1\"\nprofile = \"device\"\ndns = [\"m1.corp.internal\"]\n";
    let batch = |out_dir: PathBuf, manifest: &str| {
        wire(ops::Batch {
            manifest: manifest.into(),
            name: "m.toml".into(),
            opts: BatchOptions::new(out_dir),
        })
    };
    let cases: Vec<(Request, &str)> = vec![
        (
            wire(ops::Backup { dir: "bk".into() }),
            "the backup directory `bk` is relative",
        ),
        (
            wire(ops::Backup { dir: abs("b\0k") }),
            "the backup directory holds a NUL byte",
        ),
        (crl("c.crl".into()), "the CRL file `c.crl` is relative"),
        (crl(abs("c\0.crl")), "the CRL file holds a NUL byte"),
        (issue("h".into()), "the output `h` is relative"),
        (issue("-".into()), "the output `-` is relative"),
        (issue(abs("h\0")), "the output holds a NUL byte"),
        (
            batch("out".into(), manifest),
            "the output directory `out` is relative",
        ),
        (
            batch(abs("o\0ut"), manifest),
            "the output directory holds a NUL byte",
        ),
        (
            wire(ops::Show {
                query: abs("a\0.pem").display().to_string(),
            }),
            "the certificate named holds a NUL byte",
        ),
    ];
    for (n, (op, want)) in cases.iter().enumerate() {
        let (kind, message) = s.refused(&request(op));
        assert_eq!(kind, "state", "{op:?}: {message}");
        assert!(
            message.starts_with(&format!("a bad request: {want}")),
            "{op:?}: {message}"
        );
        s.logged_n(n + 1, &["problem=bad-request"]);
    }
    // Nothing was written, in the server's directory (also the tests') or
    // anywhere the paths lead.
    let mut entries: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["ca", "serve.log"], "written: {entries:?}");

    // `..` in an absolute path: resolved by the file system.
    std::fs::create_dir(abs("sub")).unwrap();
    let ok = answer(&s.exchange(&request(&crl(abs("sub/../c.crl")))));
    assert!(ok["result"]["Ok"].is_array(), "{ok}");
    assert!(abs("c.crl").is_file());
    // A batch id that would leave the output directory: a manifest error.
    let escape = manifest.replace("m1\"", "../escape\"");
    let report = answer(&s.exchange(&request(&batch(abs("sub"), &escape))));
    let outcome = &report["result"]["Ok"]["outcome"]["Err"];
    assert_eq!(outcome["kind"], "invalid", "{report}");
    assert!(outcome.to_string().contains("batch-id-syntax"), "{report}");
    assert!(!abs("escape.pem").exists() && !abs("escape.key").exists());

    // The CLI sends `--out -` and `--out-dir -` as files in its own directory,
    // as a local run writes them (not in the server's working directory).
    std::fs::create_dir(abs("work")).unwrap();
    let run_in_work = |args: &[&str]| {
        let out = s
            .env
            .cmd()
            .current_dir(abs("work"))
            .arg(LOCK)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run_in_work(&["issue", "device", "--dns", "d.corp.internal", "--out", "-"]);
    assert!(out.contains("  wrote    -.key"), "{out}");
    std::fs::write(abs("work/m.toml"), manifest).unwrap();
    run_in_work(&["batch", "--manifest", "m.toml", "--out-dir", "-"]);
    assert!(abs("work/-.key").is_file() && abs("work/-/m1.key").is_file());
    assert!(!abs("-.key").exists() && !abs("-").exists());
    s.still_serves();
    s.finish();
}

/// More connections than the server serves at once (`MAX_CLIENTS`), all
/// silent: the rest wait to be accepted (the log says the cap was reached),
/// and a command waiting among them is served as soon as they go (long before
/// their read timeout).
#[test]
fn connections_over_the_cap_wait_and_are_served_once_others_go() {
    let s = Served::start();
    let idle: Vec<UnixStream> = (0..MAX_CLIENTS + 16).map(|_| s.connect()).collect();
    let held = Instant::now();
    s.logged(&[
        "verdict=waiting problem=client-cap",
        &format!("{MAX_CLIENTS} connections are being served"),
    ]);
    let mut list = s
        .env
        .cmd()
        .args([LOCK, "--json", "list"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While every slot is held (before the idle ones time out), it waits.
    std::thread::sleep(Duration::from_millis(300));
    assert!(list.try_wait().unwrap().is_none(), "served over the cap");
    assert!(held.elapsed() < READ_TIMEOUT - Duration::from_secs(2));
    drop(idle);
    let gone = Instant::now();
    let out = list.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        gone.elapsed() < Duration::from_secs(5),
        "served {:?} after the others went",
        gone.elapsed()
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // Connections that closed without a byte are not logged as attacks.
    assert!(!s.log_text().contains("problem=truncated"));
    s.still_serves();
    s.finish();
}

// ---------------------------------------------------------------------------
// Peers of another uid
// ---------------------------------------------------------------------------

/// `setpriv` to run as `OTHER_UID`: `None` (the test is skipped, saying so)
/// when not root, without util-linux's setpriv, or when that user cannot run
/// the binary.
fn other_uid_runner() -> Option<()> {
    let probe = Command::new("setpriv")
        .args(as_other_args())
        .arg(BIN)
        .arg("--version")
        .output();
    match probe {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            eprintln!(
                "skipped: cannot run {BIN} as uid {OTHER_UID} (not root?): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("skipped: setpriv (util-linux) is not available: {e}");
            None
        }
    }
}

fn as_other_args() -> [String; 3] {
    [
        format!("--reuid={OTHER_UID}"),
        format!("--regid={OTHER_UID}"),
        "--clear-groups".into(),
    ]
}

/// `mtlsca` as `OTHER_UID`, in the test's directory, with `--ca-dir` absolute.
fn other_uid_cmd(env: &Env) -> Command {
    let mut c = Command::new("setpriv");
    c.args(as_other_args())
        .arg(BIN)
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--ca-dir")
        .arg(env.ca_dir());
    c
}

fn run_other_uid(env: &Env, args: &[&str]) -> Output {
    other_uid_cmd(env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Issue 22, finding 3: `serve` runs as its own user and root runs a command
/// (the usual `sudo mtlsca list`). The server refuses the peer of another
/// uid (SO_PEERCRED) with an error answer and closes; the client, whose
/// request write then fails with EPIPE, used to print `Broken pipe`. It now
/// reads the server's answer: the uid rule, exit 3, and the server logs it.
#[test]
fn a_root_client_of_a_server_run_by_another_user_gets_the_refusal_not_a_broken_pipe() {
    let Some(()) = other_uid_runner() else { return };
    let env = Env::with_ca();
    chmod(env.dir.path(), 0o755);
    let chown = Command::new("chown")
        .args(["-R", &format!("{OTHER_UID}:{OTHER_UID}")])
        .arg(env.ca_dir())
        .status()
        .unwrap();
    assert!(chown.success());
    let log = env.path("serve.log");
    let mut child = other_uid_cmd(&env)
        .args(["serve", "--listen", "127.0.0.1:0", "--name", "localhost"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = Server::port_in(&line);
    let s = Served::around(env, Server { child, port }, log);

    let want = format!(
        "error: the control socket answers only uid {OTHER_UID}, the user `mtlsca serve` runs as, not uid 0: run the command as uid {OTHER_UID}\n"
    );
    // Several times: the refusal may come before or after the request is sent.
    for args in [
        &[LOCK, "list"][..],
        &[LOCK, "list"],
        &[LOCK, "show", "0123456789abcdef"],
        &[LOCK, "issue", "device", "--dns", "r.corp.internal"],
        &[LOCK, "audit"],
    ] {
        let err = s.env.fails(args, 3);
        assert_eq!(err, want, "{args:?}");
    }
    let out = s.env.run(&[LOCK, "--json", "list"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "state", "{v}");
    s.logged_n(
        6,
        &[
            "peer=uid:0,pid:",
            "request=\"control socket\" verdict=refused problem=other-user",
            &format!("answers only uid {OTHER_UID}"),
        ],
    );
    // The server's own user is served.
    let out = run_other_uid(&s.env, &[LOCK, "list"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 certificate(s)"));
    s.finish();
}

/// A user other than the server's: the socket's mode (0600) keeps it out, and
/// the message says whose socket it is; a socket others may open (a careless
/// chmod) still answers that user only with the uid rule (SO_PEERCRED).
#[test]
fn a_client_of_another_uid_is_told_whose_socket_it_is() {
    let Some(()) = other_uid_runner() else { return };
    let s = Served::start();
    chmod(s.env.dir.path(), 0o755);
    chmod(&s.env.ca_dir(), 0o755);
    let out = run_other_uid(&s.env, &[LOCK, "list"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "error: the control socket {} belongs to uid 0 (the user `mtlsca serve` runs as), and the server answers only that user, not uid {OTHER_UID}: run the command as uid 0\n",
            s.sock.display()
        )
    );
    chmod(&s.sock, 0o666);
    let out = run_other_uid(&s.env, &[LOCK, "list"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        format!(
            "error: the control socket answers only uid 0, the user `mtlsca serve` runs as, not uid {OTHER_UID}: run the command as uid 0\n"
        )
    );
    s.logged(&[
        &format!("peer=uid:{OTHER_UID},pid:"),
        "verdict=refused problem=other-user",
    ]);
    chmod(&s.sock, 0o600);
    s.still_serves();
    s.finish();
}

// ---------------------------------------------------------------------------
// A hostile server
// ---------------------------------------------------------------------------

/// The client against a socket whose server misbehaves: it closes without an
/// answer, answers in another protocol version, announces an answer over the
/// limit, or sends garbage. Each is a clear `error:` (exit 3), never a panic
/// or a bare OS error.
#[test]
fn a_hostile_server_is_a_clear_error_for_the_client() {
    let env = Env::new();
    std::fs::create_dir(env.ca_dir()).unwrap();
    let listener = UnixListener::bind(env.ca_dir().join("mtlsca.sock")).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "the server closed the connection without an answer"),
        (
            frame(r#"{"v": 99, "result": {"Ok": "Status"}}"#),
            "the server speaks control protocol 99, this client 2: run the same mtlsca version",
        ),
        (
            u32::MAX.to_be_bytes().to_vec(),
            "a message of 4294967295 bytes",
        ),
        (frame("garbage"), "a bad answer"),
        (
            vec![0, 0, 0, 100, b'{'],
            "the server closed the connection without an answer",
        ),
    ];
    let answers: Vec<Vec<u8>> = cases.iter().map(|(a, _)| a.clone()).collect();
    let server = std::thread::spawn(move || {
        for bytes in answers {
            let (mut s, _) = listener.accept().unwrap();
            // Read the request's frame first, so the answer is not cut off.
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            let _ = s.write_all(&bytes);
        }
    });
    let sock = env.ca_dir().join("mtlsca.sock");
    for (_, want) in &cases {
        let err = env.fails(&[LOCK, "list"], 3);
        assert!(
            err.starts_with(&format!("error: the control socket {}: ", sock.display())),
            "{err}"
        );
        assert!(err.contains(want), "{want}: {err}");
    }
    server.join().unwrap();
}

/// A client of protocol version 1 (the mtlsca before the protocol had types
/// of its own) is told the version, not misread: its `list`, `issue` and
/// `status` frames, exactly as it sent them, get an error answer naming both
/// versions, in an envelope it reads (`v`, then `result.Err` with a kind and a
/// message), and nothing runs. The log says `protocol-version`.
#[test]
fn a_client_of_protocol_1_is_told_the_version_not_misread() {
    let s = Served::start();
    let before = s.env.json(&[LOCK, "list"]).as_array().unwrap().len();
    let out = s.env.path("v1");
    let v1_frames = [
        r#"{"v":1,"op":{"List":{"filter":{"role":null,"status":null,"profile":null,"expiring_within":null,"name":null},"page":{"after":null,"at":null,"stream":true}}}}"#.to_string(),
        format!(
            r#"{{"v":1,"op":{{"Issue":{{"profile":"device","content":{{"dns":["v1.corp.internal"],"ip":[],"uri":[],"email":[],"cn":null,"org":null,"country":null,"validity":null,"requested_ekus":null,"requests_ca":false,"unsupported_names":[],"unknown_critical":[]}},"key":{{"Generate":null}},"request_id":"v1","output":{{"Prefix":{}}},"origin":"Arguments"}}}}}}"#,
            json!(out)
        ),
        r#"{"v":1,"op":"Status"}"#.to_string(),
    ];
    for (n, body) in v1_frames.iter().enumerate() {
        let answer = answer(&s.exchange(&frame(body)));
        assert_eq!(answer["v"], VERSION, "{answer}");
        assert_eq!(
            answer["result"],
            json!({"Err": {
                "kind": "state",
                "message": "the client speaks control protocol 1, this server 2: run the same mtlsca version",
            }}),
            "{body}"
        );
        s.logged_n(n + 1, &["problem=protocol-version"]);
    }
    // Nothing was issued.
    assert!(!s.env.path("v1.pem").exists() && !s.env.path("v1.key").exists());
    let after = s.env.json(&[LOCK, "list"]).as_array().unwrap().len();
    assert_eq!(after, before);
    s.still_serves();
    s.finish();
}

/// The client against a server that answers in another protocol version (an
/// older `serve` still running, or a newer one): the version is the error
/// (exit 3), whatever shape the answer has; an answer of this version but not
/// of the operation asked for is a bad answer, never read as another one.
#[test]
fn a_server_of_another_protocol_version_is_a_version_error_for_the_client() {
    let env = Env::new();
    std::fs::create_dir(env.ca_dir()).unwrap();
    let listener = UnixListener::bind(env.ca_dir().join("mtlsca.sock")).unwrap();
    let v1 = "the server speaks control protocol 1, this client 2: run the same mtlsca version";
    let cases: Vec<(&[&str], String, &str)> = vec![
        // Protocol 1's answers to `list` and `show`, as such a server sent them.
        (
            &["list"],
            r#"{"v":1,"result":{"Ok":{"RecordPage":{"items":[],"next":null,"at":"2025-01-01T00:00:00Z"}}}}"#.into(),
            v1,
        ),
        (&["show", "0a"], r#"{"v":1,"result":{"Ok":{"Shown":{}}}}"#.into(), v1),
        // Protocol 1's refusal of this client's request.
        (
            &["audit"],
            r#"{"v":1,"result":{"Err":{"kind":"state","message":"the client speaks control protocol 2, this server 1: run the same mtlsca version"}}}"#.into(),
            v1,
        ),
        (
            &["list"],
            r#"{"v":3,"result":{"Ok":{"items":[],"next":null,"at":"2025-01-01T00:00:00Z"}}}"#.into(),
            "the server speaks control protocol 3, this client 2: run the same mtlsca version",
        ),
        // This version, the answer of another operation.
        (&["list"], r#"{"v":2,"result":{"Ok":{"groups":1}}}"#.into(), "a bad answer"),
    ];
    let answers: Vec<Vec<u8>> = cases.iter().map(|(_, a, _)| frame(a)).collect();
    let server = std::thread::spawn(move || {
        for bytes in answers {
            let (mut s, _) = listener.accept().unwrap();
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            // What this client sends: its own version.
            let sent: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(sent["v"], VERSION, "{sent}");
            let _ = s.write_all(&bytes);
        }
    });
    let sock = env.ca_dir().join("mtlsca.sock");
    for (args, _, want) in &cases {
        let mut a = vec![LOCK];
        a.extend_from_slice(args);
        let err = env.fails(&a, 3);
        assert!(
            err.starts_with(&format!("error: the control socket {}: ", sock.display())),
            "{err}"
        );
        assert!(err.contains(want), "{args:?}: {want}: {err}");
    }
    server.join().unwrap();
}
