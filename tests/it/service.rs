//! The CLI while `mtlsca serve` runs (issue 14 point 5): commands reach the
//! server through `<ca-dir>/mtlsca.sock` instead of waiting for the store's lock,
//! with the same output, files and exit codes as a local run.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Command, Stdio};

use mtlsca::service::{ops, Client};
use serde_json::Value;

use crate::common::{code, Env, Server};

/// Short enough that a command waiting for the store's lock fails the test.
const LOCK: &str = "--lock-timeout=200ms";

/// Run with the short lock timeout: stdout, stderr, exit code.
fn run(env: &Env, args: &[&str]) -> (String, String, i32) {
    let mut a = vec![LOCK];
    a.extend_from_slice(args);
    let out = env.run(&a);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        code(&out),
    )
}

fn ok(env: &Env, args: &[&str]) -> String {
    let (out, err, c) = run(env, args);
    assert_eq!(c, 0, "mtlsca {args:?}: {out}{err}");
    out
}

fn json(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = ok(env, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn status(env: &Env) -> mtlsca::service::ServiceStats {
    let client = Client::connect(&env.ca_dir())
        .unwrap()
        .expect("a server answers on the socket");
    client.call(ops::Status).unwrap()
}

#[test]
fn commands_go_through_the_socket_with_the_output_of_a_local_run() {
    let env = Env::with_ca();
    let sock = env.ca_dir().join("mtlsca.sock");
    let mut server = Server::start(&env, &[]);
    let meta = std::fs::symlink_metadata(&sock).expect("the control socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&sock), 0o600, "the socket is owner-only");
    let leftovers: Vec<_> = std::fs::read_dir(env.ca_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mtlsca.sock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // issue: files and modes as usual, relative to the client's directory.
    let out = ok(&env, &["issue", "device", "--dns", "web.corp.internal"]);
    assert!(out.contains("  wrote    web.corp.internal.key"), "{out}");
    assert_eq!(mode(&env.path("web.corp.internal.key")), 0o600);
    assert_eq!(mode(&env.path("web.corp.internal.pem")), 0o644);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "web.corp.internal.pem",
    ]);
    let issued = json(&env, &["issue", "device", "--dns", "api.corp.internal"]);
    assert_eq!(issued["status"], "issued");
    assert_eq!(issued["files"][1], "api.corp.internal.pem");

    // sign: a CSR read by the client from a file and from standard input.
    env.openssl_csr(
        "s.key",
        "/CN=s.corp.internal",
        &["subjectAltName=DNS:s.corp.internal"],
        &["-out", "s.csr"],
    );
    let pem = ok(&env, &["sign", "device", "--csr", "s.csr"]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let csr = std::fs::read(env.path("s.csr")).unwrap();
    let mut a = env.cmd();
    let piped = a
        .args([LOCK, "sign", "device", "--csr", "-", "--out", "s.pem"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        piped.stdin.as_ref().unwrap().write_all(&csr).unwrap();
    }
    let piped = piped.wait_with_output().unwrap();
    assert_eq!(code(&piped), 0, "{piped:?}");
    assert!(env.path("s.pem").is_file() && env.path("s.chain.pem").is_file());

    // batch: a manifest with one entry refused (exit 1), files in --out-dir.
    std::fs::write(
        env.path("m.toml"),
        "[[certificate]]\nid = \"b1\"\nprofile = \"device\"\ndns = [\"b1.corp.internal\"]\n\n\
         [[certificate]]\nid = \"b2\"\nprofile = \"device\"\nemail = [\"x@corp.example\"]\n",
    )
    .unwrap();
    std::fs::create_dir(env.path("out")).unwrap();
    let (out, _, c) = run(&env, &["batch", "--manifest", "m.toml", "--out-dir", "out"]);
    assert_eq!(c, 1, "{out}");
    assert!(out.contains("refused b2: email `x@corp.example`"), "{out}");
    assert!(
        out.contains("1 issued, 0 already issued, 1 refused"),
        "{out}"
    );
    assert_eq!(mode(&env.path("out/b1.key")), 0o600);

    // revoke by file name, then publish the CRLs.
    let rev = ok(&env, &["revoke", "web.corp.internal.pem"]);
    assert!(rev.starts_with("revoked device certificate"), "{rev}");
    let crl = ok(&env, &["crl"]);
    // Whatever number: the server also publishes at start and after revoke.
    assert!(
        crl.lines()
            .any(|l| l.starts_with("device CRL number ") && l.contains(": 1 revoked")),
        "{crl}"
    );
    let crl_text = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(crl_text.contains("Serial Number"), "{crl_text}");

    // A refusal through the socket: exit 1, the rule codes in the JSON error.
    let refusal_args = ["--json", "issue", "device", "--email", "a@corp.example"];
    let remote_refusal = run(&env, &refusal_args);
    assert_eq!(remote_refusal.2, 1);
    assert!(remote_refusal
        .0
        .contains("\"rule\": \"name-kind-for-role\""));
    let remote_missing = run(&env, &["--json", "show", "0123456789abcdef"]);
    assert_eq!(remote_missing.2, 1);

    // What list, show and audit say through the server...
    let serial = issued["serial"].as_str().unwrap().to_string();
    let remote_list = ok(&env, &["--json", "list"]);
    let remote_list_text = ok(&env, &["list"]);
    let remote_show = ok(&env, &["--json", "show", &serial]);
    let remote_audit = ok(&env, &["--json", "audit"]);
    assert!(status(&env).issue_jobs >= 5);

    // ...is what they say locally once it stopped: the socket gone, all recorded.
    assert_eq!(server.stop(), 0);
    assert!(!sock.exists(), "the socket is removed at a clean stop");
    assert!(Client::connect(&env.ca_dir()).unwrap().is_none());
    assert_eq!(ok(&env, &["--json", "list"]), remote_list);
    assert_eq!(ok(&env, &["list"]), remote_list_text);
    assert_eq!(ok(&env, &["--json", "show", &serial]), remote_show);
    assert_eq!(ok(&env, &["--json", "audit"]), remote_audit);
    assert_eq!(run(&env, &refusal_args), remote_refusal);
    assert_eq!(
        run(&env, &["--json", "show", "0123456789abcdef"]),
        remote_missing
    );
    // The server's own certificate, 2 issued, 2 signed, 1 from the batch.
    assert_eq!(env.store_count(), 6);
    let check = ok(&env, &["store", "check"]);
    assert!(check.starts_with("store ok"), "{check}");
}

#[test]
fn a_stale_socket_is_ignored_by_the_cli_and_replaced_by_serve() {
    let env = Env::with_ca();
    let sock = env.ca_dir().join("mtlsca.sock");
    // A socket file nobody listens on: a server killed without its clean stop.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    ok(&env, &["issue", "device", "--dns", "a.corp.internal"]);
    assert!(ok(&env, &["list"]).contains("1 certificate(s)"));
    let mut server = Server::start(&env, &[]);
    assert!(std::fs::symlink_metadata(&sock)
        .unwrap()
        .file_type()
        .is_socket());
    assert_eq!(mode(&sock), 0o600);
    assert!(ok(&env, &["list"]).contains("2 certificate(s)"));
    assert_eq!(server.stop(), 0);
    assert!(!sock.exists());
}

/// A command started while `serve` holds the lock but has no socket yet (it
/// opens the store first, which takes seconds on a large one) goes to the
/// socket as soon as it appears, instead of waiting out its lock timeout.
#[test]
fn a_command_waiting_for_the_lock_goes_to_the_socket_once_serve_is_up() {
    let env = Env::with_ca();
    let mut server = Server::start(&env, &[]);
    let sock = env.ca_dir().join("mtlsca.sock");
    let hidden = env.ca_dir().join("starting.sock");
    // The server as it is between opening the store and binding its socket.
    std::fs::rename(&sock, &hidden).unwrap();
    let started = std::time::Instant::now();
    let child = env
        .cmd()
        .args([
            "--lock-timeout=20s",
            "issue",
            "device",
            "--dns",
            "late.corp.internal",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    std::fs::rename(&hidden, &sock).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_eq!(
        code(&out),
        0,
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Not the lock timeout: the socket answered.
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        status(&env).issue_jobs,
        2,
        "the server's certificate and this one"
    );
    assert!(env.path("late.corp.internal.pem").exists());
    assert_eq!(server.stop(), 0);
}

#[test]
fn concurrent_issues_during_serve_are_all_recorded() {
    let env = std::sync::Arc::new(Env::with_ca());
    let mut server = Server::start(&env, &[]);
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let env = env.clone();
            std::thread::spawn(move || {
                let name = format!("c{i}.corp.internal");
                run(&env, &["--json", "issue", "device", "--dns", &name])
            })
        })
        .collect();
    let mut serials = std::collections::HashSet::new();
    for t in threads {
        let (out, err, c) = t.join().unwrap();
        assert_eq!(c, 0, "{out}{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        serials.insert(v["serial"].as_str().unwrap().to_string());
    }
    assert_eq!(serials.len(), 12);
    let stats = status(&env);
    // The server's own certificate and the twelve, in at most that many groups.
    assert_eq!(stats.issue_jobs, 13, "{stats:?}");
    assert!(stats.groups <= 13 && stats.groups >= 1, "{stats:?}");
    assert_eq!(server.stop(), 0);
    assert_eq!(env.store_count(), 13);
    let check = ok(&env, &["store", "check"]);
    assert!(check.starts_with("store ok"), "{check}");
    let listed = json(&env, &["list"]);
    for s in &serials {
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["serial"] == s.as_str()),
            "{s} not listed"
        );
    }
}

#[test]
fn hostile_frames_on_the_socket_do_not_stop_the_server() {
    use std::io::{Read, Write};
    let env = Env::with_ca();
    let mut server = Server::start(&env, &[]);
    let sock = env.ca_dir().join("mtlsca.sock");
    let exchange = |bytes: &[u8]| -> Vec<u8> {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    // Oversized, truncated, not JSON: no answer, the connection closed.
    assert!(exchange(&u32::MAX.to_be_bytes()).is_empty());
    assert!(exchange(&[0, 0, 1, 0, b'{']).is_empty());
    // Not JSON, and another protocol version: an error answer.
    let frame = |body: &[u8]| {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    let garbage = exchange(&frame(b"not json"));
    assert!(String::from_utf8_lossy(&garbage).contains("a bad request"));
    let other = exchange(&frame(br#"{"v": 99, "op": "Status"}"#));
    assert!(
        String::from_utf8_lossy(&other).contains("control protocol 99"),
        "{}",
        String::from_utf8_lossy(&other)
    );
    // The server still answers.
    assert!(ok(&env, &["list"]).contains("1 certificate(s)"));
    assert_eq!(server.stop(), 0);
}

/// Run from `sub`, a directory other than the server's: stdout, stderr, exit code.
fn run_in(env: &Env, sub: &str, args: &[&str]) -> (String, String, i32) {
    let out = env
        .cmd()
        .current_dir(env.path(sub))
        .arg(LOCK)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mtlsca");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        code(&out),
    )
}

fn ok_in(env: &Env, sub: &str, args: &[&str]) -> String {
    let (out, err, c) = run_in(env, sub, args);
    assert_eq!(c, 0, "mtlsca {args:?} in {sub}: {out}{err}");
    out
}

fn json_in(env: &Env, sub: &str, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = ok_in(env, sub, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// `audit --verify`, `store check`, `export`, `renew` and `backup` while the
/// server runs: through the socket (the short lock timeout would fail a local
/// run), from another directory than the server's, with the output, files and
/// exit codes of a local run.
#[test]
fn verify_check_export_renew_and_backup_go_through_the_socket() {
    let env = Env::with_ca();
    std::fs::create_dir(env.path("work")).unwrap();
    std::fs::write(env.path("work/pw.txt"), "p12-password-long\n").unwrap();
    // Issued locally before the server starts: the key file recorded relative.
    let web = json_in(
        &env,
        "work",
        &["issue", "device", "--dns", "web.corp.internal"],
    );
    let api = json_in(
        &env,
        "work",
        &["issue", "device", "--dns", "api.corp.internal"],
    );
    let web_serial = web["serial"].as_str().unwrap().to_string();
    let api_serial = api["serial"].as_str().unwrap().to_string();
    let mut server = Server::start(&env, &[]);

    // export: every format, files in the client's directory.
    let pem = ok_in(&env, "work", &["export", &web_serial, "--format", "pem"]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    for (format, file) in [("chain", "c.pem"), ("der", "c.der")] {
        let out = ok_in(
            &env,
            "work",
            &["export", &web_serial, "--format", format, "--out", file],
        );
        assert!(out.starts_with(&format!("wrote {file} ({format} of certificate")));
        assert!(env.path("work").join(file).is_file() && !env.path(file).exists());
    }
    // p12 with the key file recorded at issuance (relative to this directory).
    let p12 = [
        "export",
        "web.corp.internal.pem",
        "--format",
        "p12",
        "--p12-password-file",
        "pw.txt",
        "--out",
        "w.p12",
    ];
    ok_in(&env, "work", &p12);
    assert_eq!(mode(&env.path("work/w.p12")), 0o600);
    let dump = env.openssl_ok(&[
        "pkcs12",
        "-in",
        "work/w.p12",
        "-passin",
        "file:work/pw.txt",
        "-nodes",
    ]);
    assert!(
        dump.contains("PRIVATE KEY") && dump.contains("web.corp.internal"),
        "{dump}"
    );
    // An unknown certificate: refused, exit 1, as locally.
    let remote_unknown = run_in(
        &env,
        "work",
        &["export", "0123456789abcdef", "--format", "pem"],
    );
    assert_eq!(remote_unknown.2, 1, "{remote_unknown:?}");

    // renew in place by file name: the old files kept as .prev.
    let renewed = json_in(&env, "work", &["renew", "web.corp.internal.pem"]);
    assert_eq!(renewed["replaces"], web_serial.as_str());
    assert_eq!(renewed["old_revoked"], false);
    assert!(
        renewed["files"]
            .as_array()
            .unwrap()
            .iter()
            // The key file is recorded absolute: shown so, as in a local run.
            .any(|f| f.as_str().unwrap().ends_with("/work/web.corp.internal.pem")),
        "{renewed}"
    );
    assert!(env.path("work/web.corp.internal.pem.prev").is_file());
    assert!(env.path("work/web.corp.internal.key.prev").is_file());
    assert_eq!(mode(&env.path("work/web.corp.internal.key")), 0o600);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "work/web.corp.internal.pem",
    ]);
    // renew to a new prefix, revoking the old one.
    let out = ok_in(
        &env,
        "work",
        &["renew", &api_serial, "--out", "api2", "--revoke-old"],
    );
    assert!(out.contains(&format!("  replaces {api_serial}")), "{out}");
    assert!(
        out.contains(&format!("  revoked  {api_serial} (superseded)")),
        "{out}"
    );
    assert!(env.path("work/api2.key").is_file() && env.path("work/api2.pem").is_file());
    let revoked = json_in(&env, "work", &["list", "--status", "revoked"]);
    assert_eq!(revoked[0]["serial"], api_serial.as_str(), "{revoked}");

    // batch --renew-within: the entry issued; renewed only once due (a window
    // longer than 2/3 of its lifetime is capped, and the server says so, as a
    // local run does; renewal in place is tested under faketime in rotation.rs).
    std::fs::write(
        env.path("work/r.toml"),
        "[[certificate]]\nid = \"r1\"\nprofile = \"device\"\ndns = [\"r1.corp.internal\"]\n",
    )
    .unwrap();
    let out = ok_in(&env, "work", &["batch", "--manifest", "r.toml"]);
    assert!(out.contains("1 entries: 1 issued"), "{out}");
    let (out, err, c) = run_in(
        &env,
        "work",
        &["batch", "--manifest", "r.toml", "--renew-within", "400d"],
    );
    assert_eq!(c, 0, "{out}{err}");
    assert!(
        out.contains("0 issued, 0 renewed, 1 already issued"),
        "{out}"
    );
    assert!(
        err.contains("note: window 400d is longer than 2/3 of the 90d lifetime of 1 certificate: renewing those with less than 60d left"),
        "{err}"
    );
    assert!(env.path("work/r1.pem").is_file() && !env.path("work/r1.pem.prev").exists());

    // backup into a directory relative to the client, written by the server.
    let out = ok_in(&env, "work", &["backup", "bk"]);
    assert!(out.starts_with("backed up CA `Test` to bk: "), "{out}");
    assert!(env.path("work/bk/MANIFEST.json").is_file() && !env.path("bk").exists());
    let (_, err, c) = run_in(&env, "work", &["backup", "bk"]);
    assert_eq!(c, 2, "{err}");

    // audit --verify and store check: what they say through the server...
    let remote: Vec<_> = [
        &["audit", "--verify"][..],
        &["--json", "audit", "--verify"],
        &["store", "check"],
        &["--json", "store", "check"],
        &["export", &web_serial, "--format", "pem"],
    ]
    .iter()
    .map(|a| (a.to_vec(), run_in(&env, "work", a)))
    .collect();
    assert!(
        remote[0].1 .0.starts_with("audit log intact: "),
        "{remote:?}"
    );
    assert!(remote[2].1 .0.starts_with("store ok: "), "{remote:?}");
    assert_eq!(
        status(&env).issue_jobs,
        3,
        "the server's own and two renewals"
    );

    // ...is what they say locally once it stopped.
    assert_eq!(server.stop(), 0);
    for (args, out) in &remote {
        assert_eq!(&run_in(&env, "work", args), out, "{args:?}");
    }
    assert_eq!(
        run_in(
            &env,
            "work",
            &["export", "0123456789abcdef", "--format", "pem"]
        ),
        remote_unknown
    );
    for (format, file) in [("chain", "c.pem"), ("der", "c.der")] {
        let local = format!("local-{file}");
        ok_in(
            &env,
            "work",
            &["export", &web_serial, "--format", format, "--out", &local],
        );
        assert_eq!(
            std::fs::read(env.path("work").join(file)).unwrap(),
            std::fs::read(env.path("work").join(&local)).unwrap()
        );
    }
    // The backup made through the server restores.
    let restored = env.path("restored");
    let out = Command::new(crate::common::BIN)
        .current_dir(env.path("work"))
        .env_clear()
        .arg("--ca-dir")
        .arg(&restored)
        .args(["restore", "bk"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{out:?}");
    // The server's own certificate, two issued, two renewals, and r1.
    assert_eq!(env.store_count(), 6);
    let listed = Command::new(crate::common::BIN)
        .env_clear()
        .arg("--ca-dir")
        .arg(&restored)
        .args(["--json", "list"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(6), "{listed}");
}

/// `verify cert` with the CA as anchor asks the CA's records about revocation:
/// through the server while it runs, with the verdict of a local run. A second
/// `serve` on the same CA fails at once (exit 3) instead of after the lock timeout.
#[test]
fn verify_uses_the_server_and_a_second_serve_fails_fast() {
    let env = Env::with_ca();
    let issued = json(&env, &["issue", "device", "--dns", "v.corp.internal"]);
    let serial = issued["serial"].as_str().unwrap().to_string();
    let mut server = Server::start(&env, &[]);
    let (out, err, c) = run(&env, &["verify", "cert", "v.corp.internal.pem"]);
    assert_eq!(c, 0, "{out}{err}");
    ok(&env, &["revoke", &serial]);
    // Revoked in the store, no CRL published: only the records say so.
    let remote = run(&env, &["--json", "verify", "cert", "v.corp.internal.pem"]);
    assert_eq!(remote.2, 1, "{remote:?}");
    assert!(
        remote.0.contains("according to the CA's store"),
        "{remote:?}"
    );

    let started = std::time::Instant::now();
    let out = env
        .cmd()
        .args(["--lock-timeout=20s", "serve", "--listen", "127.0.0.1:0"])
        .args(["--name", "localhost"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: `mtlsca serve` already runs on this CA"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    assert_eq!(server.stop(), 0);
    assert_eq!(
        run(&env, &["--json", "verify", "cert", "v.corp.internal.pem"]),
        remote
    );
}

/// A profile edited while `serve` runs is what the next `issue` through the
/// socket uses, as a new local process would (the server reads a profile again
/// when its file changes).
#[test]
fn a_profile_edited_while_serve_runs_applies_to_the_next_issue() {
    let env = Env::with_ca();
    let profile = env.ca_dir().join("profiles/narrow.toml");
    let narrow = |permitted: &str| {
        std::fs::write(
            &profile,
            format!("name = \"narrow\"\nrole = \"device\"\npermitted = [\"{permitted}\"]\n"),
        )
        .unwrap()
    };
    narrow("web.corp.internal");
    let _server = Server::start(&env, &[]);
    let issued = json(
        &env,
        &[
            "issue",
            "narrow",
            "--dns",
            "web.corp.internal",
            "--out",
            "w1",
        ],
    );
    assert_eq!(issued["status"], "issued", "{issued}");
    narrow("db.corp.internal");
    let (_, err, code) = run(
        &env,
        &[
            "issue",
            "narrow",
            "--dns",
            "web.corp.internal",
            "--out",
            "w2",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("name-outside-profile") || err.contains("permitted"),
        "{err}"
    );
    let issued = json(
        &env,
        &[
            "issue",
            "narrow",
            "--dns",
            "db.corp.internal",
            "--out",
            "d1",
        ],
    );
    assert_eq!(issued["status"], "issued", "{issued}");
}

/// `list` and `audit` through a running server are read in parts of
/// `PAGE_BUDGET` records (one engine job each, so that issuing goes on between
/// them: at a million records a list in one job held every issue for seconds)
/// and print exactly what a local run prints, whatever the filter.
#[test]
fn long_lists_and_audits_are_read_in_parts_with_the_output_of_a_local_run() {
    use mtlsca::service::{PageRequest, PAGE_BUDGET};
    let env = Env::with_ca();
    let n = PAGE_BUDGET + 150;
    let manifest: String = (0..n)
        .map(|i| {
            let validity = if i % 3 == 0 { "validity = \"10d\"\n" } else { "" };
            format!("[[certificate]]\nid = \"e{i}\"\nprofile = \"device\"\ndns = [\"e{i}.corp.internal\"]\n{validity}\n")
        })
        .collect();
    std::fs::write(env.path("m.toml"), manifest).unwrap();
    std::fs::create_dir(env.path("out")).unwrap();
    let m = env.path("m.toml");
    let out = env.path("out");
    ok(
        &env,
        &[
            "-q",
            "batch",
            "--manifest",
            m.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
        ],
    );
    let all = json(&env, &["list"]);
    assert_eq!(all.as_array().unwrap().len(), n);
    let some = all[1234]["serial"].as_str().unwrap().to_string();
    ok(&env, &["-q", "revoke", &some]);
    let reads: &[&[&str]] = &[
        &["list"],
        &["--json", "list"],
        &["list", "--expiring-within", "20d"],
        &["list", "--name", "e1*"],
        &["list", "--status", "revoked"],
        &["audit"],
        &["--json", "audit"],
    ];
    // Through the server first (its start records its own certificate), then
    // locally once it has stopped: the same store both times.
    let mut server = Server::start(&env, &[]);
    let remote: Vec<String> = reads.iter().map(|a| ok(&env, a)).collect();
    // The server answered in parts: the first holds PAGE_BUDGET records and
    // says where the next starts.
    let client = Client::connect(&env.ca_dir())
        .unwrap()
        .expect("the server answers");
    let first = ops::ListPart {
        filter: Default::default(),
        page: PageRequest::default(),
    };
    let part = client.call(first.clone()).unwrap();
    assert_eq!(part.items.len(), PAGE_BUDGET);
    assert!(part.next.is_some());
    // Streamed (what the CLI asks for): every part on one connection, the
    // records and the server's own certificate.
    let mut parts = Vec::new();
    client
        .call_parts(first, &mut |p| parts.push(p.items.len()))
        .unwrap();
    assert_eq!(parts, [PAGE_BUDGET, n + 1 - PAGE_BUDGET]);
    assert_eq!(server.stop(), 0);
    let local: Vec<String> = reads.iter().map(|a| ok(&env, a)).collect();
    assert!(
        local[2].contains(&format!("{} certificate(s)", n.div_ceil(3))),
        "{}",
        local[2]
    );
    assert!(local[4].contains("1 certificate(s)") && local[4].contains(&some));
    for ((args, got), want) in reads.iter().zip(&remote).zip(&local) {
        // The first line that differs, not two pages of output.
        let diff = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .map(|i| (i, got.lines().nth(i), want.lines().nth(i)));
        assert_eq!(
            diff, None,
            "mtlsca {args:?} through the server (line, got, want)"
        );
        assert_eq!(got.lines().count(), want.lines().count(), "mtlsca {args:?}");
    }
}

/// A batch through a running server gives way to the jobs that came in while
/// it runs, between slices of `GIVE_WAY_CHUNKS` chunks: an `issue` sent during
/// a batch is recorded among the batch's entries, not after all of them (before
/// this, a batch held the engine, and every ACME finalize, to its end).
#[test]
fn a_batch_through_the_server_lets_an_issue_in_between_its_slices() {
    use mtlsca::batch::{BatchOptions, GIVE_WAY_CHUNKS};
    let env = Env::with_ca();
    let chunk = 8;
    // Many slices: the issue below is sent once the first chunk's files exist,
    // long before the last slice starts.
    let n = 125 * chunk;
    let manifest: String = (0..n)
        .map(|i| {
            format!("[[certificate]]\nid = \"e{i}\"\nprofile = \"device\"\ndns = [\"e{i}.corp.internal\"]\n\n")
        })
        .collect();
    let out = env.path("out");
    std::fs::create_dir(&out).unwrap();
    let mut server = Server::start(&env, &[]);
    let ca_dir = env.ca_dir();
    let batch = std::thread::spawn(move || {
        let client = Client::connect(&ca_dir)
            .unwrap()
            .expect("a server answers on the socket");
        let mut opts = BatchOptions::new(out);
        opts.chunk = chunk;
        client.call(ops::Batch {
            manifest,
            name: "m.toml".into(),
            opts,
        })
    });
    let first = env.path("out").join("e0.pem");
    while !first.exists() {
        assert!(
            !batch.is_finished(),
            "the batch ended before its first file showed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pem = env.path("between");
    ok(
        &env,
        &[
            "-q",
            "issue",
            "device",
            "--dns",
            "between.corp.internal",
            "--request-id",
            "between",
            "--out",
            pem.to_str().unwrap(),
        ],
    );
    let b = batch.join().unwrap().unwrap();
    assert_eq!(b.entries.len(), n);
    let summary = b.outcome.expect("the batch ran through");
    assert_eq!(summary.issued, n);
    assert!(status(&env).batch_turns >= 1);
    // The audit log, in order: the issue sits between entries of the batch.
    let audit = json(&env, &["audit"]);
    let ids: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "issue")
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    let at = ids
        .iter()
        .position(|i| *i == "between")
        .expect("the issue is audited");
    let batch_after = ids[at..].iter().filter(|i| i.starts_with('e')).count();
    let slice = chunk * GIVE_WAY_CHUNKS;
    assert!(
        batch_after >= slice,
        "the issue was recorded after {} of the batch's {n} entries, not between its slices",
        n - batch_after
    );
    assert_eq!(server.stop(), 0);
}

/// `renewal-of:` request ids are the engine's (rule `request-id-reserved`),
/// whatever the front end: an `issue` sent on the control socket with one is
/// refused by the engine (bad input, exit 2), as the command line's is; a
/// renewal names what it replaces as data, and a certificate this CA did not
/// issue is not found. Nothing is issued.
#[test]
fn a_renewal_id_sent_on_the_socket_is_refused_by_the_engine() {
    use mtlsca::issue::{IssuanceRequest, KeySource, Output};
    use mtlsca::policy::RequestedContent;
    use mtlsca::rules::Origin;
    let env = Env::with_ca();
    let mut server = Server::start(&env, &[]);
    let before = json(&env, &["list"]).as_array().unwrap().len();
    let own = json(&env, &["list"])[0]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let client = Client::connect(&env.ca_dir())
        .unwrap()
        .expect("a server answers on the socket");
    let req = |request_id: String, replaces: Option<String>| {
        ops::Issue(IssuanceRequest {
            profile: "device".into(),
            content: RequestedContent {
                dns: vec!["x.corp.internal".into()],
                ..Default::default()
            },
            key: KeySource::Generate(None),
            request_id: Some(request_id),
            output: Output::Prefix(env.path("x")),
            origin: Origin::Arguments,
            replaces,
        })
    };
    let rule = |e: &mtlsca::Error| e.reasons().map(|r| r.reasons[0].rule.code());
    // The id of a renewal of the server's own certificate, on a request that
    // renews nothing.
    let e = client
        .call(req(format!("renewal-of:{own}"), None))
        .unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert_eq!(rule(&e), Some("request-id-reserved"));
    assert!(e.to_string().contains("reserved for renewals"), "{e}");
    // A renewal under an id that is not its own.
    let e = client.call(req("x".into(), Some(own.clone()))).unwrap_err();
    assert_eq!(rule(&e), Some("request-id-reserved"), "{e}");
    // A renewal of a certificate this CA did not issue.
    let unknown = "7f".repeat(16);
    let e = client
        .call(req(format!("renewal-of:{unknown}"), Some(unknown)))
        .unwrap_err();
    assert_eq!((e.exit_code(), rule(&e)), (1, Some("not-found")), "{e}");
    // The command line through the socket: the engine's refusal, in JSON too.
    let (out, _, c) = run(
        &env,
        &[
            "--json",
            "issue",
            "device",
            "--dns",
            "y.corp.internal",
            "--request-id",
            &format!("renewal-of:{own}"),
        ],
    );
    assert_eq!(c, 2, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["error"]["reasons"][0]["rule"], "request-id-reserved",
        "{v}"
    );
    assert_eq!(v["error"]["reasons"][0]["field"], "request-id", "{v}");
    // Nothing was issued.
    assert_eq!(json(&env, &["list"]).as_array().unwrap().len(), before);
    assert!(!env.path("x.pem").exists() && !env.path("y.corp.internal.pem").exists());
    assert_eq!(server.stop(), 0);
}
