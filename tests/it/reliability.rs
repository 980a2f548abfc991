//! Reliability and security: protected CA keys, store integrity, backup and
//! restore, the audit chain, concurrency and the lock wait, hostile input, and
//! issuance interrupted by SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{code, text, Env};

const PASS: &str = "correct horse battery staple";

/// Run with extra environment variables (the harness scrubs the environment).
fn run_env(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = env.cmd();
    for (k, v) in vars {
        c.env(k, v);
    }
    c.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mtlsca")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A small deterministic PRNG (xorshift64*), seeded per test run and printed so
/// a failure can be replayed with MTLSCA_TEST_SEED.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("MTLSCA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    ^ u64::from(std::process::id())
            });
        eprintln!("MTLSCA_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Serial (lowercase hex, no leading zero byte) of a PEM certificate file.
fn pem_serial(path: &Path) -> String {
    let text = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).expect("PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).expect("certificate");
    let raw = cert.raw_serial();
    let raw = if raw.len() > 1 && raw[0] == 0 {
        &raw[1..]
    } else {
        raw
    };
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn serials(env: &Env) -> Vec<String> {
    env.json(&["list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------- protected keys

#[test]
fn encrypted_ca_keys_open_in_openssl_and_unlock_only_with_the_passphrase() {
    let env = Env::new();
    // Without a passphrase, --encrypt is bad usage and creates nothing.
    let out = run_env(&env, &[], &["init", "--encrypt"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(stderr(&out).contains("error: init --encrypt needs a passphrase"));
    assert!(!env.ca_dir().exists());
    let out = run_env(
        &env,
        &[("MTLSCA_PASSPHRASE", "short")],
        &["init", "--encrypt"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(!env.ca_dir().exists());

    let pass = [("MTLSCA_PASSPHRASE", PASS)];
    let out = run_env(&env, &pass, &["init", "--encrypt", "--key-type", "ed25519"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let config = std::fs::read_to_string(env.ca_dir().join("ca.toml")).unwrap();
    assert!(config.contains("encrypted_keys = true"), "{config}");
    for key in ["root.key", "device-ca.key", "entity-ca.key"] {
        let path = env.ca_dir().join("private").join(key);
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{pem}"
        );
        let p = path.to_str().unwrap();
        // OpenSSL opens it with the passphrase (PBES2: PBKDF2-SHA256, AES-256-CBC) ...
        let parsed = env.openssl_ok(&["asn1parse", "-in", p]);
        assert!(parsed.contains("PBES2") && parsed.contains("hmacWithSHA256"));
        assert!(parsed.contains("aes-256-cbc"), "{parsed}");
        let text = env.openssl_ok(&[
            "pkey",
            "-in",
            p,
            "-passin",
            &format!("pass:{PASS}"),
            "-noout",
            "-text",
        ]);
        assert!(text.contains("ED25519"), "{text}");
        // ... and not without it.
        assert!(!env
            .openssl(&[
                "pkey",
                "-in",
                p,
                "-passin",
                "pass:wrong passphrase",
                "-noout"
            ])
            .status
            .success());
    }

    // Issuance works with the passphrase, from the environment or a file.
    let out = run_env(
        &env,
        &pass,
        &["issue", "device", "--dns", "a.corp.internal"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    std::fs::write(env.path("pass.txt"), format!("{PASS}\n")).unwrap();
    // Readable by others: refused with the fix.
    std::fs::set_permissions(
        env.path("pass.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let err = env.fails(
        &[
            "--passphrase-file",
            env.path("pass.txt").to_str().unwrap(),
            "issue",
            "device",
            "--dns",
            "b.corp.internal",
        ],
        2,
    );
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(
        env.path("pass.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    env.ok(&[
        "--passphrase-file",
        env.path("pass.txt").to_str().unwrap(),
        "issue",
        "person",
        "--cn",
        "Alice Example",
        "--email",
        "alice@corp.example",
    ]);
    assert_eq!(env.store_count(), 2);

    // Missing and wrong passphrases: exit 3, a clear message, nothing issued.
    let out = env.run(&["issue", "device", "--dns", "b.corp.internal"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(stderr(&out).contains("is encrypted: give its passphrase in $MTLSCA_PASSPHRASE"));
    let out = run_env(
        &env,
        &[("MTLSCA_PASSPHRASE", "not the passphrase")],
        &["issue", "device", "--dns", "b.corp.internal"],
    );
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(stderr(&out).contains("error:") && stderr(&out).contains("wrong passphrase"));
    std::fs::write(env.path("empty.txt"), "\n").unwrap();
    let out = env.run(&[
        "--passphrase-file",
        env.path("empty.txt").to_str().unwrap(),
        "issue",
        "device",
        "--dns",
        "b.corp.internal",
    ]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(!env.path("b.corp.internal.pem").exists());
    assert!(!env.path("b.corp.internal.key").exists());
    assert_eq!(env.store_count(), 2);

    // A plain key swapped in for an encrypted one is refused.
    let other = Env::with_ca();
    std::fs::copy(
        other.ca_dir().join("private/device-ca.key"),
        env.ca_dir().join("private/device-ca.key"),
    )
    .unwrap();
    let out = run_env(
        &env,
        &pass,
        &["issue", "device", "--dns", "c.corp.internal"],
    );
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(stderr(&out).contains("is not encrypted"), "{}", text(&out));
}

#[cfg(unix)]
#[test]
fn ca_keys_others_can_read_are_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::with_ca();
    let private = env.ca_dir().join("private");
    let key = private.join("device-ca.key");
    assert_eq!(
        std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = env.fails(&["issue", "device", "--dns", "a.corp.internal"], 3);
    assert!(err.contains("error:") && err.contains("readable by group or others"));
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = env.fails(&["issue", "device", "--dns", "a.corp.internal"], 3);
    assert!(
        err.contains(&format!("chmod 700 {}", private.display())),
        "{err}"
    );
    assert!(!env.path("a.corp.internal.pem").exists());
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    env.ok(&["issue", "device", "--dns", "a.corp.internal"]);
}

// ---------------------------------------------------------------- store integrity

fn issue_some(env: &Env) {
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "web-01.corp.internal",
        "--ip",
        "10.0.0.11",
        "--request-id",
        "web-01",
    ]);
    env.ok(&["issue", "workload", "--uri", "spiffe://corp.internal/api"]);
    env.ok(&[
        "issue",
        "person",
        "--cn",
        "Alice Example",
        "--email",
        "alice@corp.example",
    ]);
}

/// Open the store's sled database directly (as damage would reach it).
fn raw_db(env: &Env) -> sled::Db {
    sled::open(env.ca_dir().join("db")).expect("open sled")
}

#[test]
fn store_check_passes_when_healthy_and_names_each_damaged_record() {
    let env = Env::with_ca();
    issue_some(&env);
    let out = env.ok(&["store", "check"]);
    assert!(out.contains("store ok: 3 records"), "{out}");
    let v = env.json(&["store", "check"]);
    assert_eq!(v["healthy"], true);
    assert_eq!(v["records"], 3);

    let list = env.json(&["list"]);
    let rec = |i: usize| list[i]["serial"].as_str().unwrap().to_string();
    let (a, b) = (rec(0), rec(1));
    {
        let db = raw_db(&env);
        let records = db.open_tree("records").unwrap();
        let certs = db.open_tree("certs").unwrap();
        // Record a: its notAfter no longer matches the certificate.
        let key_a = hex(&a);
        let mut r: serde_json::Value =
            serde_json::from_slice(&records.get(&key_a).unwrap().unwrap()).unwrap();
        r["not_after"] = serde_json::json!("2099-01-01T00:00:00Z");
        records
            .insert(&key_a, serde_json::to_vec(&r).unwrap())
            .unwrap();
        // Record b: its certificate's bytes are overwritten.
        let key_b = hex(&b);
        let cert_key = certs
            .iter()
            .keys()
            .map(|k| k.unwrap())
            .find(|k| k.ends_with(&key_b))
            .unwrap();
        let mut der = certs.get(&cert_key).unwrap().unwrap().to_vec();
        let mid = der.len() / 2;
        der.truncate(mid);
        certs.insert(&cert_key, der).unwrap();
        db.flush().unwrap();
    }
    let out = env.run(&["store", "check"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    let all = text(&out);
    assert!(stderr(&out).starts_with("error: store:"), "{all}");
    assert!(all.contains(&format!("record {a}")) && all.contains("notAfter differs"));
    assert!(all.contains(&format!("record {b}")), "{all}");
    assert!(all.contains("SHA-256 of its certificate differs"), "{all}");
    assert!(!all.contains(&format!("record {}:", rec(2))), "{all}");
    // JSON names the damage too, and the exit code stays 3.
    let out = env.run(&["--json", "store", "check"]);
    assert_eq!(code(&out), 3);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    assert!(v["damage"].as_array().unwrap().len() >= 2);
}

#[test]
fn store_check_finds_index_entries_that_disagree_with_records() {
    let env = Env::with_ca();
    issue_some(&env);
    let victim = serials(&env)[0].clone();
    env.ok(&["revoke", &victim, "--reason", "keyCompromise"]);
    env.ok(&["store", "check"]);
    {
        let db = raw_db(&env);
        // The revocation index loses its entry (a CRL would silently omit it).
        let revoked = db.open_tree("revoked").unwrap();
        let k = revoked.iter().keys().next().unwrap().unwrap();
        revoked.remove(k).unwrap();
        // A name index entry removed, and a request id pointing nowhere.
        let names = db.open_tree("names").unwrap();
        let first = names.iter().keys().next().unwrap().unwrap();
        names.remove(first).unwrap();
        let requests = db.open_tree("requests").unwrap();
        requests.insert("ghost", vec![0x42u8; 16]).unwrap();
        db.flush().unwrap();
    }
    let out = env.run(&["store", "check"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("missing from the name index"), "{all}");
    assert!(all.contains("index requests `ghost`"), "{all}");
    assert!(
        all.contains(&format!(
            "record {victim}: revoked, but missing from the revocation index"
        )),
        "{all}"
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn an_edited_or_removed_audit_entry_is_detected() {
    let env = Env::with_ca();
    issue_some(&env);
    let out = env.ok(&["audit", "--verify"]);
    // `init`'s three CRLs, then three certificates.
    assert!(out.contains("audit log intact: 6 entries"), "{out}");
    {
        let db = raw_db(&env);
        let audit = db.open_tree("audit").unwrap();
        let key = 0u64.to_be_bytes();
        let mut e: serde_json::Value =
            serde_json::from_slice(&audit.get(key).unwrap().unwrap()).unwrap();
        e["detail"] = serde_json::json!("device nothing to see here");
        audit.insert(key, serde_json::to_vec(&e).unwrap()).unwrap();
        db.flush().unwrap();
    }
    let out = env.run(&["audit", "--verify"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        stderr(&out).contains("audit entry 1: does not chain to the entry before it"),
        "{}",
        text(&out)
    );
    let out = env.run(&["store", "check"]);
    assert_eq!(code(&out), 3, "{}", text(&out));

    // Removing the newest entry (no successor to notice) breaks the head.
    let env = Env::with_ca();
    issue_some(&env);
    {
        let db = raw_db(&env);
        db.open_tree("audit")
            .unwrap()
            .remove(5u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let out = env.run(&["audit", "--verify"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(stderr(&out).contains("audit head"), "{}", text(&out));
}

// ---------------------------------------------------------------- backup and restore

#[test]
fn backup_then_restore_answers_list_and_show_the_same() {
    let env = Env::with_ca();
    issue_some(&env);
    let revoked = serials(&env)[1].clone();
    env.ok(&["revoke", &revoked, "--reason", "superseded"]);
    env.ok(&["crl"]);
    let out = env.ok(&["backup", "bk"]);
    assert!(out.contains("3 certificate records"), "{out}");
    let bk = env.path("bk");
    for f in [
        "MANIFEST.json",
        "ca.toml",
        "root.pem",
        "device-ca.pem",
        "entity-ca.pem",
        "private/root.key",
        "private/device-ca.key",
        "private/entity-ca.key",
        "profiles/device.toml",
        "store.jsonl",
    ] {
        assert!(bk.join(f).is_file(), "backup lacks {f}");
    }
    // A backup never replaces a directory.
    let err = env.fails(&["backup", "bk"], 2);
    assert!(err.contains("error:") && err.contains("already exists"));

    // Restore into a new CA directory.
    let restored = Env::new();
    let out = restored.run(&["restore", bk.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(env.json(&["list"]), restored.json(&["list"]));
    for serial in serials(&env) {
        assert_eq!(
            env.json(&["show", &serial]),
            restored.json(&["show", &serial])
        );
        assert_eq!(
            env.ok(&["show", &serial, "--pem"]),
            restored.ok(&["show", &serial, "--pem"])
        );
    }
    restored.ok(&["store", "check"]);
    restored.ok(&["audit", "--verify"]);
    assert_eq!(
        restored.json(&["show", &revoked])["status"],
        serde_json::json!("revoked")
    );
    let crls = |e: &Env| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(e.ca_dir().join("crl"))
            .unwrap()
            .map(|f| {
                let f = f.unwrap();
                (
                    f.file_name().to_string_lossy().into_owned(),
                    std::fs::read(f.path()).unwrap(),
                )
            })
            .collect()
    };
    assert!(!crls(&env).is_empty());
    assert_eq!(crls(&env), crls(&restored));
    for f in [
        "root.pem",
        "device-ca.pem",
        "entity-ca.pem",
        "private/root.key",
    ] {
        assert_eq!(
            std::fs::read(env.ca_dir().join(f)).unwrap(),
            std::fs::read(restored.ca_dir().join(f)).unwrap()
        );
    }
    // The restored CA issues, and its request ids still hold.
    restored.ok(&["issue", "device", "--dns", "new.corp.internal"]);
    let again = restored.json(&[
        "issue",
        "device",
        "--dns",
        "web-01.corp.internal",
        "--ip",
        "10.0.0.11",
        "--request-id",
        "web-01",
        "--out",
        "again",
    ]);
    assert_eq!(again["status"], "exists");
    assert_eq!(restored.store_count(), 4);

    // Restoring over a CA is refused; so is a backup whose files were altered.
    let err = restored.fails(&["restore", bk.to_str().unwrap()], 3);
    assert!(err.contains("already holds a CA"), "{err}");
    let store = bk.join("store.jsonl");
    let mut lines = std::fs::read_to_string(&store).unwrap();
    lines = lines.replacen("\"records\"", "\"recordz\"", 1);
    std::fs::write(&store, lines).unwrap();
    let third = Env::new();
    let err = third.fails(&["restore", bk.to_str().unwrap()], 2);
    assert!(err.contains("differs from the manifest"), "{err}");
    assert!(
        !third.ca_dir().exists(),
        "a failed restore leaves nothing behind"
    );
}

// ---------------------------------------------------------------- concurrency

#[test]
fn eight_processes_issue_ten_each_without_a_duplicate_serial() {
    let env = Env::with_ca();
    let dir = env.dir.path().to_path_buf();
    let ca = env.ca_dir();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (dir, ca) = (dir.clone(), ca.clone());
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let name = format!("w{w}-{i}.corp.internal");
                        Command::new(crate::common::BIN)
                            .current_dir(&dir)
                            .env_clear()
                            .args(["--ca-dir", ca.to_str().unwrap(), "--json"])
                            .args(["--lock-timeout", "60s", "issue", "device", "--dns", &name])
                            .stdin(Stdio::null())
                            .output()
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for w in workers {
        for out in w.join().unwrap() {
            assert_eq!(code(&out), 0, "{}", text(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(seen.insert(v["serial"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(seen.len(), 80);
    let listed: BTreeSet<String> = serials(&env).into_iter().collect();
    assert_eq!(listed, seen);
    env.ok(&["store", "check"]);
}

#[test]
fn a_held_lock_is_waited_for_then_gives_a_clear_exit_3() {
    let env = Env::with_ca();
    let held = mtlsca::store::Store::open(&env.ca_dir(), Duration::from_secs(5)).unwrap();
    let start = Instant::now();
    let out = env.run(&[
        "--lock-timeout",
        "400ms",
        "issue",
        "device",
        "--dns",
        "a.corp.internal",
    ]);
    let waited = start.elapsed();
    assert_eq!(code(&out), 3, "{}", text(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error: store:"), "{err}");
    assert!(err.contains("is locked by another mtlsca process"), "{err}");
    assert!(err.contains("--lock-timeout"), "{err}");
    assert!(
        waited >= Duration::from_millis(400),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    assert!(!env.path("a.corp.internal.pem").exists());
    assert!(!env.path("a.corp.internal.key").exists());

    // Released while a process waits: that process goes on and succeeds.
    let child = env
        .cmd()
        .args([
            "--lock-timeout",
            "20s",
            "issue",
            "device",
            "--dns",
            "b.corp.internal",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(env.store_count(), 1);
}

// ---------------------------------------------------------------- hostile input

/// Make a CSR with OpenSSL: key spec (`ec:P-256`, `rsa:1024`, `ed25519`), subject,
/// extra `-addext` values; PEM unless `der`.
fn csr(env: &Env, name: &str, key: &str, subject: &str, exts: &[&str], der: bool) -> PathBuf {
    let path = env.path(name);
    let mut args: Vec<String> = vec!["req".into(), "-new".into(), "-nodes".into()];
    match key.split_once(':') {
        Some(("ec", curve)) => args.extend([
            "-newkey".into(),
            "ec".into(),
            "-pkeyopt".into(),
            format!("ec_paramgen_curve:{curve}"),
        ]),
        _ => args.extend(["-newkey".into(), key.into()]),
    }
    args.extend([
        "-keyout".into(),
        env.path(&format!("{name}.key")).display().to_string(),
        "-subj".into(),
        subject.into(),
        "-out".into(),
        path.display().to_string(),
    ]);
    if der {
        args.extend(["-outform".into(), "DER".into()]);
    }
    for e in exts {
        args.extend(["-addext".into(), e.to_string()]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    env.openssl_ok(&a);
    std::fs::remove_file(env.path(&format!("{name}.key"))).unwrap();
    path
}

/// Every file under `dir` (relative paths), without the store's own files.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if rel.starts_with("ca/db") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, e.metadata().unwrap().len());
            }
        }
    }
    out
}

#[test]
fn hostile_and_broken_inputs_are_refused_cleanly() {
    let env = Env::with_ca();
    env.ok(&["issue", "device", "--dns", "seed.corp.internal"]);
    let w = |name: &str, data: &[u8]| {
        let p = env.path(name);
        std::fs::write(&p, data).unwrap();
        p.display().to_string()
    };

    // Inputs made once, up front (so the snapshot below sees them).
    let good = csr(
        &env,
        "good.csr",
        "ec:P-256",
        "/CN=web.corp.internal",
        &["subjectAltName=DNS:web.corp.internal"],
        false,
    );
    let good_text = std::fs::read_to_string(&good).unwrap();
    let empty = w("empty.csr", b"");
    let junk = w(
        "junk.csr",
        b"this is not a certificate request\n\x00\x01\x02",
    );
    let truncated = w(
        "truncated.csr",
        &good_text.as_bytes()[..good_text.len() / 2],
    );
    let mut rng = Rng::new();
    let mut random: Vec<u8> = vec![0x30, 0x82, 0x01, 0x00];
    random.extend((0..256).map(|_| rng.next() as u8));
    let random_der = w("random.der", &random);
    let huge = env.path("huge.csr");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(60 * 1024 * 1024)
        .unwrap();
    let huge = huge.display().to_string();
    let rsa1024 = csr(
        &env,
        "rsa1024.csr",
        "rsa:1024",
        "/CN=old.corp.internal",
        &["subjectAltName=DNS:old.corp.internal"],
        false,
    );
    let wildcard = csr(
        &env,
        "wild.csr",
        "ec:P-256",
        "/CN=*.corp.internal",
        &["subjectAltName=DNS:*.corp.internal"],
        false,
    );
    let email_for_device = csr(
        &env,
        "email.csr",
        "ec:P-256",
        "/CN=host.corp.internal",
        &["subjectAltName=DNS:host.corp.internal,email:bob@corp.example"],
        false,
    );
    let ca_true = csr(
        &env,
        "ca.csr",
        "ec:P-384",
        "/CN=sub.corp.internal",
        &[
            "subjectAltName=DNS:sub.corp.internal",
            "basicConstraints=critical,CA:TRUE",
        ],
        true,
    );
    let critical = csr(
        &env,
        "critical.csr",
        "ed25519",
        "/CN=x.corp.internal",
        &[
            "subjectAltName=DNS:x.corp.internal",
            "1.3.6.1.4.1.55555.1=critical,ASN1:UTF8String:surprise",
        ],
        false,
    );
    let both_ekus = csr(
        &env,
        "both.csr",
        "ec:P-256",
        "/CN=y.corp.internal",
        &[
            "subjectAltName=DNS:y.corp.internal",
            "extendedKeyUsage=serverAuth,clientAuth",
        ],
        false,
    );
    let dns_for_person = csr(
        &env,
        "person-dns.csr",
        "ec:P-256",
        "/CN=Bob Example",
        &["subjectAltName=email:bob@corp.example,DNS:bob.corp.internal"],
        false,
    );
    let bad_sig = {
        let p = csr(
            &env,
            "badsig.der",
            "ec:P-256",
            "/CN=z.corp.internal",
            &["subjectAltName=DNS:z.corp.internal"],
            true,
        );
        let mut der = std::fs::read(&p).unwrap();
        let n = der.len();
        der[n - 5] ^= 0x55;
        std::fs::write(&p, der).unwrap();
        p
    };
    let cert_not_csr = w(
        "cert.pem",
        &std::fs::read(env.ca_dir().join("root.pem")).unwrap(),
    );
    let unknown_key = w(
        "unknown.toml",
        b"name = \"odd\"\nrole = \"device\"\ncolour = \"blue\"\n",
    );
    let bad_toml = w("bad.toml", b"name = \"odd\nrole = device\n[[[\n");
    let mixed_profile = w(
        "mixed.toml",
        b"name = \"mixed\"\nrole = \"device\"\nextended_key_usage = [\"server-auth\", \"client-auth\"]\n",
    );
    let dup_manifest = w(
        "dup.toml",
        b"[[certificate]]\nid = \"web\"\nprofile = \"device\"\ndns = [\"a.corp.internal\"]\n\n[[certificate]]\nid = \"web\"\nprofile = \"device\"\ndns = [\"b.corp.internal\"]\n",
    );
    let traversal_manifest = w(
        "traversal.toml",
        b"[[certificate]]\nid = \"../escape\"\nprofile = \"device\"\ndns = [\"a.corp.internal\"]\n",
    );
    std::fs::write(
        env.ca_dir().join("profiles/narrow.toml"),
        "name = \"narrow\"\nrole = \"device\"\npermitted = [\"spiffe://corp.internal\"]\n",
    )
    .unwrap();
    let foreign = env.path("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("ca.toml"), "this = [is not a CA\n").unwrap();
    let foreign = foreign.display().to_string();
    let a_file = w("plain-file", b"not a directory");
    let missing = env.path("no-such-ca").display().to_string();
    let long_name = format!("{}.corp.internal", "a".repeat(300));
    let p = |p: &PathBuf| p.display().to_string();
    let (rsa1024, wildcard, email_for_device, ca_true, critical, both_ekus) = (
        p(&rsa1024),
        p(&wildcard),
        p(&email_for_device),
        p(&ca_true),
        p(&critical),
        p(&both_ekus),
    );
    let (dns_for_person, bad_sig) = (p(&dns_for_person), p(&bad_sig));

    // (what, arguments, expected exit code, text the error must contain)
    let out = |f: &str| env.path(f).display().to_string();
    let o = out("out.pem");
    let cases: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        (
            "empty CSR",
            vec!["sign", "device", "--csr", &empty, "--out", &o],
            2,
            "empty",
        ),
        (
            "junk CSR",
            vec!["sign", "device", "--csr", &junk, "--out", &o],
            2,
            "CSR",
        ),
        (
            "truncated PEM",
            vec!["sign", "device", "--csr", &truncated, "--out", &o],
            2,
            "CSR",
        ),
        (
            "random DER",
            vec!["sign", "device", "--csr", &random_der, "--out", &o],
            2,
            "PKCS#10",
        ),
        (
            "60 MB file",
            vec!["sign", "device", "--csr", &huge, "--out", &o],
            2,
            "larger than",
        ),
        (
            "a certificate, not a CSR",
            vec!["sign", "device", "--csr", &cert_not_csr, "--out", &o],
            2,
            "CERTIFICATE",
        ),
        (
            "invalid CSR signature",
            vec!["sign", "device", "--csr", &bad_sig, "--out", &o],
            2,
            "signature",
        ),
        (
            "RSA-1024 key",
            vec!["sign", "device", "--csr", &rsa1024, "--out", &o],
            1,
            "RSA-1024",
        ),
        (
            "wildcard in CSR",
            vec!["sign", "device", "--csr", &wildcard, "--out", &o],
            1,
            "wildcard",
        ),
        (
            "email in a device CSR",
            vec!["sign", "device", "--csr", &email_for_device, "--out", &o],
            1,
            "email",
        ),
        (
            "CA:TRUE requested",
            vec!["sign", "device", "--csr", &ca_true, "--out", &o],
            1,
            "CA",
        ),
        (
            "unknown critical extension",
            vec!["sign", "device", "--csr", &critical, "--out", &o],
            1,
            "1.3.6.1.4.1.55555.1",
        ),
        (
            "both TLS EKUs requested",
            vec!["sign", "device", "--csr", &both_ekus, "--out", &o],
            1,
            "refused",
        ),
        (
            "DNS name in a person CSR",
            vec!["sign", "person", "--csr", &dns_for_person, "--out", &o],
            1,
            "DNS",
        ),
        (
            "missing CSR file",
            vec!["sign", "device", "--csr", "nope.csr", "--out", &o],
            2,
            "nope.csr",
        ),
        (
            "name with a space",
            vec!["issue", "device", "--dns", "web corp.internal"],
            2,
            "DNS name",
        ),
        (
            "name with a control character",
            vec!["issue", "device", "--dns", "web\u{7}.corp.internal"],
            2,
            "DNS name",
        ),
        (
            "300-character name",
            vec!["issue", "device", "--dns", &long_name],
            2,
            "longer than",
        ),
        (
            "IP out of range",
            vec!["issue", "device", "--ip", "300.1.1.1"],
            2,
            "not an IP address",
        ),
        (
            "IP too short",
            vec!["issue", "device", "--ip", "10.0.0"],
            2,
            "not an IP address",
        ),
        (
            "validity without unit",
            vec![
                "issue",
                "device",
                "--dns",
                "v.corp.internal",
                "--validity",
                "90",
            ],
            2,
            "no unit",
        ),
        (
            "validity with a bad unit",
            vec![
                "issue",
                "device",
                "--dns",
                "v.corp.internal",
                "--validity",
                "90x",
            ],
            2,
            "unknown unit",
        ),
        (
            "validity over the maximum",
            vec![
                "issue",
                "device",
                "--dns",
                "v.corp.internal",
                "--validity",
                "5000d",
            ],
            1,
            "validity",
        ),
        (
            "email without a domain",
            vec!["issue", "person", "--cn", "Bob", "--email", "bob"],
            2,
            "email",
        ),
        (
            "email with two @",
            vec![
                "issue",
                "person",
                "--cn",
                "Bob",
                "--email",
                "bob@@corp.example",
            ],
            2,
            "email",
        ),
        (
            "control character in a CN",
            vec![
                "issue",
                "person",
                "--cn",
                "Bob\nEvil",
                "--email",
                "bob@corp.example",
            ],
            2,
            "control",
        ),
        (
            "wildcard by argument",
            vec!["issue", "device", "--dns", "*.corp.internal"],
            1,
            "wildcard",
        ),
        (
            "wrong name kind by argument",
            vec![
                "issue",
                "device",
                "--dns",
                "h.corp.internal",
                "--email",
                "h@corp.example",
            ],
            1,
            "email",
        ),
        (
            "unknown profile",
            vec!["issue", "nosuch", "--dns", "n.corp.internal"],
            2,
            "no profile",
        ),
        (
            "request id with a control character",
            vec![
                "issue",
                "device",
                "--dns",
                "r.corp.internal",
                "--request-id",
                "a\u{1b}[31m",
            ],
            2,
            "request id",
        ),
        (
            "profile with an unknown key",
            vec!["profile", "check", &unknown_key],
            1,
            "colour",
        ),
        (
            "profile that is not TOML",
            vec!["profile", "check", &bad_toml],
            1,
            "bad.toml",
        ),
        (
            "profile with both TLS EKUs",
            vec!["profile", "check", &mixed_profile],
            1,
            "mixed.toml",
        ),
        (
            "URI past a permitted prefix's boundary",
            vec![
                "issue",
                "narrow",
                "--uri",
                "spiffe://corp.internal.evil.example/x",
            ],
            1,
            "outside profile `narrow`",
        ),
        (
            "URI with a dot-dot segment",
            vec![
                "issue",
                "workload",
                "--uri",
                "spiffe://corp.internal/ns/prod/../admin",
            ],
            2,
            "path segment",
        ),
        (
            "manifest with duplicate ids",
            vec!["batch", "--manifest", &dup_manifest, "--out-dir", "."],
            2,
            "web",
        ),
        (
            "manifest id that escapes --out-dir",
            vec!["batch", "--manifest", &traversal_manifest, "--out-dir", "."],
            2,
            "escape",
        ),
        (
            "missing --ca-dir",
            vec![
                "--ca-dir",
                &missing,
                "issue",
                "device",
                "--dns",
                "m.corp.internal",
            ],
            3,
            "no CA",
        ),
        (
            "foreign --ca-dir",
            vec![
                "--ca-dir",
                &foreign,
                "issue",
                "device",
                "--dns",
                "m.corp.internal",
            ],
            3,
            "damaged CA configuration",
        ),
        (
            "--ca-dir that is a file",
            vec!["--ca-dir", &a_file, "list"],
            3,
            "plain-file",
        ),
    ];
    assert!(cases.len() >= 25);

    let before_count = env.store_count();
    let before_list = env.json(&["list"]);
    let before_files = snapshot(env.dir.path());
    for (what, args, want, needle) in &cases {
        let out = if args[0] == "--ca-dir" {
            // Its own --ca-dir, not the harness's.
            Command::new(crate::common::BIN)
                .current_dir(env.dir.path())
                .env_clear()
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        } else {
            env.run(args)
        };
        let err = stderr(&out);
        assert_eq!(code(&out), *want, "{what}: {}", text(&out));
        assert!(err.starts_with("error: "), "{what}: {}", text(&out));
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{what}: expected `{needle}` in: {err}"
        );
        assert!(out.stdout.is_empty(), "{what}: printed {}", text(&out));
        assert_eq!(
            snapshot(env.dir.path()),
            before_files,
            "{what}: files changed"
        );
        assert_eq!(env.store_count(), before_count, "{what}: the store changed");
    }
    assert_eq!(env.json(&["list"]), before_list);
    env.ok(&["store", "check"]);
}

// ---------------------------------------------------------------- crash recovery

/// Exactly once through SIGKILL: a run of `issue --request-id` processes, each
/// killed at a random moment (before, during or after its record and files), is
/// followed after every kill by the invariants, and a final re-run of every entry
/// completes the set with each entry issued exactly once.
#[test]
fn issuance_killed_at_random_moments_recovers_exactly_once() {
    let env = Env::with_ca();
    let out_dir = env.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let entries = 40usize;
    let args = |i: usize| -> Vec<String> {
        vec![
            "--lock-timeout".into(),
            "30s".into(),
            "issue".into(),
            "device".into(),
            "--dns".into(),
            format!("host-{i}.corp.internal"),
            "--request-id".into(),
            format!("entry-{i}"),
            "--out".into(),
            out_dir.join(format!("entry-{i}")).display().to_string(),
        ]
    };
    let mut rng = Rng::new();
    // How long one issuance takes here: kill points are drawn within it.
    let start = Instant::now();
    let a = args(entries);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    env.ok(&a);
    let full = start.elapsed().as_millis() as u64;
    let mut killed = 0;
    let mut trials = 0;
    let mut left_partials = 0;
    while killed < 12 && trials < 80 {
        let i = rng.below(entries as u64) as usize;
        let a = args(i);
        let mut child = env
            .cmd()
            .args(&a)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(full + 10)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        trials += 1;
        check_crash_invariants(&env, &out_dir);
        let partials = std::fs::read_dir(&out_dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                n.to_string_lossy().ends_with(".partial")
            })
            .count();
        if partials > 0 {
            left_partials += 1;
        }
    }
    eprintln!(
        "{trials} runs, {killed} killed while running, {left_partials} left temporary files to recover (one issuance takes {full} ms)"
    );
    assert!(
        killed >= 10,
        "only {killed} of {trials} runs were still running when killed"
    );

    // Re-run everything: each entry completes exactly once.
    for i in 0..entries {
        let a = args(i);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut with_json = vec!["--json"];
        with_json.extend(a);
        let v: serde_json::Value = {
            let out = env.run(&with_json);
            assert_eq!(code(&out), 0, "entry {i}: {}", text(&out));
            serde_json::from_slice(&out.stdout).unwrap()
        };
        let serial = v["serial"].as_str().unwrap();
        assert_eq!(pem_serial(&out_dir.join(format!("entry-{i}.pem"))), serial);
    }
    check_crash_invariants(&env, &out_dir);
    let list = env.json(&["list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), entries + 1, "each entry issued exactly once");
    let ids: BTreeSet<&str> = list
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), entries + 1);
    let serials: BTreeSet<&str> = list.iter().map(|r| r["serial"].as_str().unwrap()).collect();
    assert_eq!(serials.len(), entries + 1, "no serial repeats");
    for i in 0..entries {
        for ext in ["key", "pem", "chain.pem"] {
            assert!(
                out_dir.join(format!("entry-{i}.{ext}")).is_file(),
                "entry {i} lacks its .{ext}"
            );
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    env.ok(&["store", "check"]);
}

/// Exactly once through SIGKILL for `batch`: a 3,000-entry manifest, the batch
/// killed at random moments (50-400 ms in) until at least ten kills landed while
/// it ran, the invariants after each, then a final run that must complete the set.
#[test]
fn batch_killed_at_random_moments_issues_each_entry_exactly_once() {
    let env = Env::with_ca();
    let out_dir = env.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let entries = 3000usize;
    let mut manifest = String::new();
    for i in 0..entries {
        manifest.push_str(&format!(
            "[[certificate]]\nid = \"e{i:04}\"\nprofile = \"device\"\ndns = [\"e{i:04}.corp.internal\"]\n\n"
        ));
    }
    std::fs::write(env.path("m.toml"), manifest).unwrap();
    let out = out_dir.display().to_string();
    let args = ["batch", "--manifest", "m.toml", "--out-dir", out.as_str()];
    let mut rng = Rng::new();
    let (mut killed, mut trials, mut left_partials) = (0, 0, 0);
    let started = Instant::now();
    while killed < 10 && trials < 40 {
        let mut child = env
            .cmd()
            .args(["-q", "--lock-timeout", "30s"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50 + rng.below(351)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        trials += 1;
        if std::fs::read_dir(&out_dir).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        }) {
            left_partials += 1;
        }
        check_crash_invariants(&env, &out_dir);
    }
    eprintln!(
        "{trials} batch runs, {killed} killed while running, {left_partials} left temporary files, {:?}",
        started.elapsed()
    );
    assert!(
        killed >= 10,
        "only {killed} of {trials} runs were killed while running"
    );

    // The final run completes everything; every entry is issued exactly once.
    let out = env.run(&[&["--json"][..], &args[..]].concat());
    assert_eq!(code(&out), 0, "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), entries);
    assert!(lines
        .iter()
        .all(|l| l["status"] == "issued" || l["status"] == "exists"));
    check_crash_invariants(&env, &out_dir);
    let list = env.json(&["list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), entries, "each entry issued exactly once");
    let ids: BTreeSet<&str> = list
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), entries);
    let serials: BTreeSet<&str> = list.iter().map(|r| r["serial"].as_str().unwrap()).collect();
    assert_eq!(serials.len(), entries, "no serial repeats");
    for l in &lines {
        let id = l["id"].as_str().unwrap();
        for ext in ["key", "pem", "chain.pem"] {
            assert!(
                out_dir.join(format!("{id}.{ext}")).is_file(),
                "{id} lacks .{ext}"
            );
        }
        assert_eq!(
            pem_serial(&out_dir.join(format!("{id}.pem"))),
            l["serial"].as_str().unwrap()
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// After any crash: the store opens, and every leaf file on disk has a record
/// with the same serial (nothing left the CA unrecorded).
fn check_crash_invariants(env: &Env, out_dir: &Path) {
    let store = mtlsca::store::Store::open(&env.ca_dir(), Duration::from_secs(10))
        .expect("the store opens after a crash");
    for e in std::fs::read_dir(out_dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".pem") || name.ends_with(".chain.pem") {
            continue;
        }
        let serial = pem_serial(&out_dir.join(&name));
        let rec = store
            .find(&serial)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} (serial {serial}) has no record"));
        assert_eq!(rec.serial, serial);
        let id = name.trim_end_matches(".pem");
        assert_eq!(rec.request_id.as_deref(), Some(id));
    }
    let report = store.check().unwrap();
    assert!(report.healthy(), "{:?}", report.damage);
}

// ---------------------------------------------------------------- fuzz regressions

/// Inputs the fuzz targets found (`fuzz/`, see docs/reliability.md): each must be
/// handled without a panic, with a documented exit code.
#[test]
fn fuzz_findings_are_handled_without_a_panic() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let env = Env::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let p = path.to_str().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let out = if name.starts_with("cert_classify") {
            env.run(&["--json", "inspect", p])
        } else if name.starts_with("profile_parse") {
            // A profile whose permitted URI held backslashes: it parsed, but printed
            // as TOML that did not parse back. Such URIs are now refused (`profile
            // check` answers "no": exit 1).
            let out = env.run(&["profile", "check", p]);
            assert_eq!(code(&out), 1, "{name}: {}", text(&out));
            assert!(stderr(&out).contains("RFC 3986"), "{name}: {}", text(&out));
            out
        } else {
            continue;
        };
        seen += 1;
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(matches!(code(&out), 0..=3), "{name}: {}", text(&out));
        if code(&out) == 0 {
            // A certificate that repeats basicConstraints (the first malformed)
            // is still read and given one of the five roles.
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let role = v[0]["role"].as_str().unwrap();
            assert!(
                ["device", "entity", "ambiguous", "no-eku", "ca"].contains(&role),
                "{name}: {role}"
            );
            // ... and reported as malformed, never as draft-conformant.
            let findings = v[0]["findings"].to_string();
            assert!(findings.contains("malformed"), "{name}: {findings}");
        } else {
            assert!(err.starts_with("error: "), "{name}: {err}");
        }
    }
    assert!(seen >= 2);
}

/// What `profile show` prints (Profile::to_toml) parses back to the same profile,
/// whatever its description and permitted patterns hold.
#[test]
fn printed_profiles_parse_back() {
    let text = r#"
name = "odd"
description = "quotes \" and back\\slashes \\ and \t tabs"
role = "device"
names = { dns = true, ip = true, uri = true }
permitted = ["https://corp.internal/ns/a%22b", "corp.internal", "10.0.0.0/8"]
"#;
    let p = mtlsca::profile::Profile::parse(text, "odd").unwrap();
    let printed = p.to_toml();
    let back = mtlsca::profile::Profile::parse(&printed, "printed").unwrap();
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        serde_json::to_value(&back).unwrap()
    );
}

// ------------------------------------------------- hostile conditions (issue 10)

/// The binary as `Env::cmd` runs it, but against another CA directory.
fn cmd_at(env: &Env, ca_dir: &Path) -> Command {
    let mut c = Command::new(crate::common::BIN);
    c.current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--ca-dir")
        .arg(ca_dir)
        .stdin(Stdio::null());
    c
}

/// A CA with a few certificates, one of them revoked and published in a CRL.
/// Returns the revoked serial.
fn ca_with_a_revocation(env: &Env) -> String {
    issue_some(env);
    let v = env.json(&[
        "issue",
        "device",
        "--dns",
        "r5.corp.internal",
        "--request-id",
        "r5",
    ]);
    let serial = v["serial"].as_str().unwrap().to_string();
    env.ok(&["revoke", &serial, "--reason", "keyCompromise"]);
    env.ok(&["crl"]);
    serial
}

/// Every command that needs the store stops with exit 3 and names the way back.
fn store_commands_stop(env: &Env, serial: &str) {
    let cmds: Vec<Vec<&str>> = vec![
        vec!["store", "check"],
        vec![
            "issue",
            "device",
            "--dns",
            "r5.corp.internal",
            "--request-id",
            "r5",
        ],
        vec!["crl"],
        vec!["crl", "--issuer", "device", "--out", "-"],
        vec!["list"],
        vec!["show", serial],
        vec!["revoke", serial],
        vec!["export", serial, "--format", "pem"],
        vec!["audit"],
        vec!["audit", "--verify"],
        vec!["backup", "bk-after"],
    ];
    for c in cmds {
        let err = env.fails(&c, 3);
        assert!(err.starts_with("error: "), "{c:?}: {err}");
        assert!(
            err.contains("restore"),
            "{c:?} does not say how to restore: {err}"
        );
    }
}

#[test]
fn a_vanished_store_is_never_replaced_by_an_empty_one() {
    let env = Env::with_ca();
    let revoked = ca_with_a_revocation(&env);
    env.ok(&["backup", "bk"]);
    let db = env.ca_dir().join("db");

    // The whole db/ removed: every command stops, nothing recreates it.
    let saved = env.path("db-saved");
    std::fs::rename(&db, &saved).unwrap();
    store_commands_stop(&env, &revoked);
    assert!(!db.exists(), "a command recreated the store");
    let err = env.fails(&["store", "check"], 3);
    assert!(err.contains("no store"), "{err}");

    // Only the data file and the snapshots removed.
    std::fs::rename(&saved, &db).unwrap();
    env.ok(&["store", "check"]);
    for e in std::fs::read_dir(&db).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        if n == "db" || n.starts_with("snap.") {
            std::fs::remove_file(&p).unwrap();
        }
    }
    store_commands_stop(&env, &revoked);
    assert!(!db.join("db").exists(), "a command recreated the data file");

    // The way back: restore the backup; the revocation and the CRL numbers hold.
    let back = env.path("back");
    let out = cmd_at(&env, &back)
        .args(["restore", "bk"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = cmd_at(&env, &back)
        .args(["--json", "crl", "--issuer", "device", "--out", "-"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // init 1, revoke 2, crl 3 (in the backup): this one 4.
    assert_eq!(v["number"], 4, "{v}");
    assert_eq!(v["revoked"], 1, "{v}");
}

#[test]
fn a_store_of_another_ca_is_refused() {
    let env = Env::with_ca();
    ca_with_a_revocation(&env);
    let other = Env::with_ca();
    other.ok(&["issue", "device", "--dns", "x.corp.internal"]);
    let db = env.ca_dir().join("db");
    std::fs::rename(&db, env.path("db-own")).unwrap();
    let copy = Command::new("cp")
        .arg("-a")
        .arg(other.ca_dir().join("db"))
        .arg(&db)
        .status()
        .unwrap();
    assert!(copy.success());
    for c in [vec!["store", "check"], vec!["list"], vec!["crl"]] {
        let err = env.fails(&c, 3);
        assert!(err.contains("another CA"), "{c:?}: {err}");
    }
    // Its own store back: all is well again.
    std::fs::remove_dir_all(&db).unwrap();
    std::fs::rename(env.path("db-own"), &db).unwrap();
    env.ok(&["store", "check"]);
}

/// Unmounts a tmpfs when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `size` at `dir`, when the tests run as root (else `None`).
fn small_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return None;
    }
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

/// Fill the file system holding `dir` to the last byte with a ballast file.
fn fill_up(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let one = [0u8; 1];
    while f.write_all(&one).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn a_full_disk_loses_no_record_and_the_store_recovers_by_itself() {
    let env = Env::new();
    let small = env.path("small");
    let Some(_mount) = small_tmpfs(&small, "2m") else {
        return;
    };
    let ca = small.join("ca");
    let run = |args: &[&str]| cmd_at(&env, &ca).args(args).output().unwrap();
    let out = run(&["init", "--name", "Full"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    std::fs::create_dir(env.path("out")).unwrap();
    let issue = |i: usize| {
        run(&[
            "issue",
            "device",
            "--dns",
            &format!("h{i}.corp.internal"),
            "--request-id",
            &format!("r{i}"),
            "--out",
            &format!("out/h{i}"),
        ])
    };
    for i in 0..20 {
        let out = issue(i);
        assert_eq!(code(&out), 0, "{}", text(&out));
    }
    // The disk fills up: every command fails cleanly (exit 3), and sled's next
    // snapshot is left half-written.
    let ballast = fill_up(&small);
    for args in [vec!["list"], vec!["store", "check"]] {
        let out = run(&args);
        assert_eq!(code(&out), 3, "{args:?} on a full disk: {}", text(&out));
        assert!(stderr(&out).starts_with("error: "), "{}", text(&out));
    }
    let out = issue(20);
    assert_eq!(code(&out), 3, "issue on a full disk: {}", text(&out));
    // Space freed: the store opens by itself with every record.
    std::fs::remove_file(&ballast).unwrap();
    let out = run(&["store", "check"]);
    assert_eq!(code(&out), 0, "the store did not recover: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("20 records"),
        "{}",
        text(&out)
    );
    // The request that failed completes now, exactly once.
    let out = issue(20);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = run(&["--json", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 21);
    let out = run(&["store", "check"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let leftovers: Vec<String> = std::fs::read_dir(ca.join("db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".generating"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_interrupted_sled_snapshot_is_recovered_at_open() {
    let env = Env::with_ca();
    issue_some(&env);
    let db = env.ca_dir().join("db");
    // What a full disk or a kill leaves: an empty or torn newest snapshot.
    std::fs::write(db.join("snap.7FFFFFFFFFFFFFFF.generating"), b"").unwrap();
    std::fs::write(db.join("snap.7FFFFFFFFFFFFFFE.generating"), b"torn snapsh").unwrap();
    let out = env.ok(&["store", "check"]);
    assert!(out.contains("3 records"), "{out}");
    assert_eq!(env.store_count(), 3);
}

/// Hidden leftovers of `init` in the CA directory's parent and inside it.
fn init_leftovers(env: &Env) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ca."))
        .collect();
    if env.ca_dir().join(".mtlsca-init").exists() {
        v.push("ca/.mtlsca-init".into());
    }
    v
}

#[test]
fn init_killed_at_random_moments_leaves_nothing_or_a_whole_ca() {
    let env = Env::new();
    let mut rng = Rng::new();
    let start = Instant::now();
    env.ok(&["init", "--name", "Kill"]);
    let full = start.elapsed().as_millis() as u64;
    std::fs::remove_dir_all(env.ca_dir()).unwrap();
    let (mut killed, mut trials, mut whole) = (0, 0, 0);
    while killed < 12 && trials < 100 {
        trials += 1;
        let mut child = env
            .cmd()
            .args(["init", "--name", "Kill"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(full + 5)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        if env.ca_dir().exists() {
            // A complete CA: usable, and init refuses it.
            whole += 1;
            env.ok(&["store", "check"]);
            let prefix = format!("k{trials}");
            env.ok(&[
                "issue",
                "device",
                "--dns",
                "k.corp.internal",
                "--out",
                &prefix,
            ]);
            let err = env.fails(&["init", "--name", "Again"], 3);
            assert!(err.contains("already holds a CA"), "{err}");
            std::fs::remove_dir_all(env.ca_dir()).unwrap();
        } else {
            let err = env.fails(&["list"], 3);
            assert!(err.contains("no CA"), "{err}");
        }
    }
    eprintln!(
        "{trials} runs, {killed} killed while running, {whole} complete CAs (init takes {full} ms)"
    );
    assert!(
        killed >= 10,
        "only {killed} of {trials} inits were killed while running"
    );
    // The next init cleans up what a killed one left and completes.
    env.ok(&["init", "--name", "Kill"]);
    env.ok(&["store", "check"]);
    assert!(
        init_leftovers(&env).is_empty(),
        "{:?}",
        init_leftovers(&env)
    );
}

#[test]
fn init_killed_while_filling_an_existing_directory_is_cleaned_up() {
    let env = Env::new();
    std::fs::create_dir(env.ca_dir()).unwrap();
    std::fs::write(env.ca_dir().join("README"), b"mine").unwrap();
    let mut rng = Rng::new();
    let start = Instant::now();
    env.ok(&["init", "--name", "Kill"]);
    let full = start.elapsed().as_millis() as u64;
    let (mut killed, mut trials) = (0, 0);
    while killed < 10 && trials < 80 {
        trials += 1;
        for e in [
            "ca.toml",
            "ca-bundle.pem",
            "root.pem",
            "device-ca.pem",
            "entity-ca.pem",
        ] {
            let _ = std::fs::remove_file(env.ca_dir().join(e));
        }
        for d in ["private", "profiles", "db", "crl", ".mtlsca-init"] {
            let _ = std::fs::remove_dir_all(env.ca_dir().join(d));
        }
        let mut child = env
            .cmd()
            .args(["init", "--name", "Kill"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(full + 5)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        if env.ca_dir().join("ca.toml").exists() {
            env.ok(&["store", "check"]);
        } else {
            // Never "no CA" and "already holds a CA" at once: init completes it.
            env.fails(&["list"], 3);
            env.ok(&["init", "--name", "Kill"]);
            env.ok(&["store", "check"]);
        }
        assert_eq!(std::fs::read(env.ca_dir().join("README")).unwrap(), b"mine");
    }
    assert!(
        killed >= 5,
        "only {killed} of {trials} inits were killed while running"
    );
}

/// A kill between moving the CA's entries in and moving `ca.toml` (seen about once
/// in 15 runs of the test above): the next `init` completes, it does not refuse a
/// "part of a CA".
#[test]
fn init_killed_before_ca_toml_moved_in_is_completed_by_the_next_init() {
    let env = Env::new();
    std::fs::create_dir(env.ca_dir()).unwrap();
    std::fs::write(env.ca_dir().join("README"), b"mine").unwrap();
    env.ok(&["init", "--name", "Kill"]);
    let staging = env.ca_dir().join(".mtlsca-init");
    std::fs::create_dir(&staging).unwrap();
    std::fs::rename(env.ca_dir().join("ca.toml"), staging.join("ca.toml")).unwrap();
    env.fails(&["list"], 3);
    env.ok(&["init", "--name", "Kill"]);
    env.ok(&["store", "check"]);
    assert!(!staging.exists());
    assert_eq!(std::fs::read(env.ca_dir().join("README")).unwrap(), b"mine");
}

#[test]
fn two_inits_at_once_yield_one_ca_and_one_clear_refusal() {
    for round in 0..20 {
        let env = Env::new();
        let spawn = || {
            env.cmd()
                .args(["init", "--name", "Race"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let mut codes: Vec<i32> = outs.iter().map(code).collect();
        codes.sort();
        assert_eq!(
            codes,
            vec![0, 3],
            "round {round}: {}\n{}",
            text(&outs[0]),
            text(&outs[1])
        );
        let refusal = outs.iter().find(|o| code(o) == 3).unwrap();
        assert!(
            stderr(refusal).contains("already holds a CA"),
            "{}",
            stderr(refusal)
        );
        env.ok(&["store", "check"]);
        assert!(
            init_leftovers(&env).is_empty(),
            "{:?}",
            init_leftovers(&env)
        );
    }
}

/// The CRL number of a PEM CRL file (via openssl), if the file is there.
fn crl_number_of(env: &Env, file: &Path) -> Option<u64> {
    if !file.exists() {
        return None;
    }
    let out = env.openssl_ok(&["crl", "-in", file.to_str().unwrap(), "-noout", "-crlnumber"]);
    let line = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("crlNumber="))
        .unwrap_or_else(|| panic!("no crlNumber: {out}"));
    let hex = line.trim_start_matches("0x");
    Some(u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("crlNumber: {out}")))
}

#[test]
fn a_leftover_crl_temp_file_never_blocks_and_failures_burn_no_number() {
    // `init` published number 1, this `crl` number 2.
    let env = Env::with_ca();
    env.ok(&["crl"]);
    let crl_dir = env.ca_dir().join("crl");
    // What a kill during `crl` leaves (a torn file), for each CA.
    for kind in ["root", "device", "entity"] {
        std::fs::write(
            crl_dir.join(format!(".{kind}.crl.tmp")),
            b"-----BEGIN X509 CRL-----\nMII",
        )
        .unwrap();
    }
    let v = env.json(&["crl"]);
    for c in v.as_array().unwrap() {
        assert_eq!(c["number"], 3, "{v}");
    }
    let left: Vec<String> = std::fs::read_dir(&crl_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(crl_number_of(&env, &crl_dir.join("root.crl")), Some(3));

    // Publications that fail use no number (a missing directory is bad
    // usage, exit 2, as for export: it is refused before anything is signed).
    for _ in 0..3 {
        env.fails(
            &["crl", "--issuer", "device", "--out", "no/such/dir/d.crl"],
            2,
        );
    }
    let v = env.json(&["crl", "--issuer", "device", "--out", "-"]);
    assert_eq!(v["number"], 4, "{v}");

    // nextUpdate never reaches past the CA's own notAfter.
    let err = env.fails(&["crl", "--next-update", "1000y"], 2);
    assert!(err.contains("end of validity"), "{err}");
    let v = env.json(&[
        "crl",
        "--issuer",
        "root",
        "--out",
        "-",
        "--next-update",
        "30d",
    ]);
    assert_eq!(v["number"], 4, "{v}");
}

#[test]
fn export_never_replaces_a_file_without_force() {
    let env = Env::with_ca();
    let v = env.json(&["issue", "device", "--dns", "e.corp.internal", "--out", "e"]);
    let s = v["serial"].as_str().unwrap().to_string();
    let key = std::fs::read(env.path("e.key")).unwrap();
    // A private key, a dangling symlink, a missing directory: refused, untouched.
    let err = env.fails(&["export", &s, "--format", "pem", "--out", "e.key"], 2);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(env.path("e.key")).unwrap(), key);
    std::os::unix::fs::symlink("/nowhere/x", env.path("dangling.pem")).unwrap();
    env.fails(
        &["export", &s, "--format", "pem", "--out", "dangling.pem"],
        2,
    );
    assert!(std::fs::symlink_metadata(env.path("dangling.pem"))
        .unwrap()
        .file_type()
        .is_symlink());
    let err = env.fails(
        &["export", &s, "--format", "pem", "--out", "no/dir/x.pem"],
        2,
    );
    assert!(err.contains("does not exist"), "{err}");
    // A new name works; --force replaces a file, and a symlink itself (not its target).
    env.ok(&["export", &s, "--format", "pem", "--out", "e2.pem"]);
    env.ok(&[
        "export", &s, "--format", "der", "--out", "e2.pem", "--force",
    ]);
    env.openssl_ok(&["x509", "-inform", "DER", "-in", "e2.pem", "-noout"]);
    std::fs::write(env.path("target"), b"keep").unwrap();
    std::os::unix::fs::symlink(env.path("target"), env.path("link.pem")).unwrap();
    env.ok(&[
        "export", &s, "--format", "pem", "--out", "link.pem", "--force",
    ]);
    assert_eq!(std::fs::read(env.path("target")).unwrap(), b"keep");
    assert!(std::fs::symlink_metadata(env.path("link.pem"))
        .unwrap()
        .is_file());
    // A temporary file a killed export left does not block the next one.
    std::fs::write(env.path(".e3.pem.tmp"), b"torn").unwrap();
    env.ok(&["export", &s, "--format", "pem", "--out", "e3.pem"]);
    assert!(!env.path(".e3.pem.tmp").exists());
}

/// Run mtlsca on `env`'s CA under `umask 000`.
fn run_umask0(env: &Env, args: &[&str]) -> Output {
    let ca = env.ca_dir().to_string_lossy().into_owned();
    let mut all = vec!["--ca-dir", ca.as_str()];
    all.extend_from_slice(args);
    crate::common::umask0(env, &all).output().unwrap()
}

/// Every path under `dir` (itself included) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = vec![(
        dir.to_path_buf(),
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777,
    )];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(modes(&p));
        } else {
            out.push((p, m.permissions().mode() & 0o7777));
        }
    }
    out
}

#[test]
fn under_umask_000_the_ca_is_created_with_explicit_modes_and_check_reports_loose_ones() {
    let env = Env::new();
    for args in [
        vec!["init", "--name", "Umask"],
        vec!["issue", "device", "--dns", "u.corp.internal", "--out", "u"],
        vec!["crl"],
        vec!["backup", "bk"],
    ] {
        let out = run_umask0(&env, &args);
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
    }
    let mut all = modes(&env.ca_dir());
    all.extend(modes(&env.path("bk")));
    for (p, mode) in &all {
        let allowed: &[u32] = if p.is_dir() {
            &[0o700, 0o750]
        } else {
            &[0o600, 0o644]
        };
        assert!(allowed.contains(mode), "{} has mode {mode:o}", p.display());
        if p.starts_with(env.ca_dir().join("private")) || p.starts_with(env.ca_dir().join("db")) {
            assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", p.display());
        }
    }
    let out = run_umask0(&env, &["store", "check"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    // A profile directory others can write is reported, with the fix.
    use std::os::unix::fs::PermissionsExt;
    let profiles = env.ca_dir().join("profiles");
    std::fs::set_permissions(&profiles, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = env.fails(&["store", "check"], 3);
    assert!(
        err.contains("profiles") && err.contains("chmod go-w"),
        "{err}"
    );
}

#[test]
fn smaller_findings_of_issue_10() {
    let env = Env::with_ca();
    let profiles = env.ca_dir().join("profiles");
    // One invalid profile does not hide the others; it is listed with its error.
    std::fs::write(profiles.join("broken.toml"), "name = \"broken\"\nrole = ").unwrap();
    let out = env.ok(&["profile", "list"]);
    assert!(out.contains("device") && out.contains("person"), "{out}");
    assert!(out.contains("broken") && out.contains("INVALID"), "{out}");
    let v = env.json(&["profile", "list"]);
    let broken = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "broken")
        .unwrap();
    assert_eq!(broken["valid"], false, "{v}");
    std::fs::remove_file(profiles.join("broken.toml")).unwrap();

    // profile check: any invalid profile is "no" (1), an unreadable file is 2.
    std::fs::write(env.path("syntax.toml"), "name = \"x\"\nrole = ").unwrap();
    std::fs::write(
        env.path("unknown.toml"),
        "name = \"x\"\nrole = \"device\"\nhue = 1\n",
    )
    .unwrap();
    std::fs::write(
        env.path("rule.toml"),
        "name = \"x\"\nrole = \"device\"\nextended_key_usage = [\"client-auth\"]\n",
    )
    .unwrap();
    for f in ["syntax.toml", "unknown.toml", "rule.toml"] {
        env.fails(&["profile", "check", f], 1);
    }
    env.fails(&["profile", "check", "missing.toml"], 2);

    // Terminal controls and bidi overrides from recorded values and profiles are
    // printed escaped by show, list, audit and profile list.
    // Control characters in a name are refused at issuance; a bidi override is not.
    let evil = "Alice\u{202e}gpj.exe";
    std::fs::write(
        profiles.join("evil.toml"),
        "name = \"evil\"\nrole = \"device\"\ndescription = \"x\\u001b]0;pwned\\u0007\\u202e\"\n",
    )
    .unwrap();
    let out = env.run(&[
        "issue",
        "person",
        "--cn",
        evil,
        "--email",
        "alice@corp.example",
        "--out",
        "evil",
        "--json",
    ]);
    let mut shown = vec![env.ok(&["profile", "list"])];
    if code(&out) == 0 {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = v["serial"].as_str().unwrap().to_string();
        env.ok(&["revoke", &s]);
        shown.push(env.ok(&["show", &s]));
        shown.push(env.ok(&["list"]));
        shown.push(env.ok(&["audit"]));
    } else {
        eprintln!("a CN with controls is refused at issuance: {}", text(&out));
    }
    assert_eq!(shown.len(), 4, "the bidi name was not recorded");
    for s in &shown {
        for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
            assert!(!s.contains(bad), "raw {:?} printed:\n{s}", bad);
        }
    }
    assert!(shown[0].contains("\\u{1b}"), "{}", shown[0]);

    // A PKCS#12 password of one character is refused.
    let v = env.json(&["issue", "device", "--dns", "p.corp.internal", "--out", "p"]);
    let s = v["serial"].as_str().unwrap().to_string();
    std::fs::write(env.path("pw1"), "x\n").unwrap();
    let err = env.fails(
        &[
            "export",
            &s,
            "--format",
            "p12",
            "--password-file",
            "pw1",
            "--out",
            "p.p12",
        ],
        2,
    );
    assert!(err.contains("too short"), "{err}");
    assert!(!env.path("p.p12").exists());
}

/// A CSR for an RSA key with public exponent 3, made with openssl.
#[test]
fn an_rsa_key_with_exponent_3_is_refused() {
    let env = Env::with_ca();
    let gen = env.openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-pkeyopt",
        "rsa_keygen_pubexp:3",
        "-out",
        "e3.key",
    ]);
    assert!(gen.status.success(), "{}", text(&gen));
    env.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "e3.key",
        "-subj",
        "/CN=e3.corp.internal",
        "-addext",
        "subjectAltName=DNS:e3.corp.internal",
        "-out",
        "e3.csr",
    ]);
    let err = env.fails(&["sign", "device", "--csr", "e3.csr", "--out", "e3.pem"], 1);
    assert!(err.contains("exponent"), "{err}");
    assert!(!env.path("e3.pem").exists());
    assert_eq!(env.store_count(), 0);
}

/// Run mtlsca with `args`, SIGKILL it after a random delay within `full_ms`;
/// whether the kill landed while it ran.
fn run_and_kill(env: &Env, args: &[&str], full_ms: u64, rng: &mut Rng) -> bool {
    let mut child = env
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(rng.below(full_ms + 5)));
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    killed
}

/// How long one run of a command takes here (kill points are drawn within it).
fn time_ms(env: &Env, args: &[&str]) -> u64 {
    let start = Instant::now();
    env.ok(args);
    start.elapsed().as_millis() as u64
}

#[test]
fn crl_killed_at_random_moments_never_reuses_a_number_nor_blocks() {
    let env = Env::with_ca();
    issue_some(&env);
    let s = env.json(&["issue", "device", "--dns", "gone.corp.internal"])["serial"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["revoke", &s]);
    let full = time_ms(&env, &["crl"]);
    let crl_dir = env.ca_dir().join("crl");
    let mut rng = Rng::new();
    // Every (issuer, number) ever published, with the CRL's bytes.
    let mut seen: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let observe = |env: &Env,
                   seen: &mut BTreeMap<(String, u64), Vec<u8>>,
                   last: &mut BTreeMap<String, u64>| {
        for kind in ["root", "device", "entity"] {
            let f = crl_dir.join(format!("{kind}.crl"));
            let Some(n) = crl_number_of(env, &f) else {
                continue;
            };
            let bytes = std::fs::read(&f).unwrap();
            let prev = seen.entry((kind.to_string(), n)).or_insert(bytes.clone());
            assert_eq!(*prev, bytes, "{kind} CRL number {n} used by two CRLs");
            let l = last.entry(kind.to_string()).or_insert(0);
            assert!(n >= *l, "{kind} CRL number went back from {l} to {n}");
            *l = n;
        }
    };
    observe(&env, &mut seen, &mut last);
    let (mut killed, mut trials) = (0, 0);
    while killed < 10 && trials < 80 {
        trials += 1;
        if run_and_kill(&env, &["crl"], full, &mut rng) {
            killed += 1;
        }
        observe(&env, &mut seen, &mut last);
        env.ok(&["store", "check"]);
        // Re-running completes it: every CRL newer than what was published.
        let before = last.clone();
        let v = env.json(&["crl"]);
        for c in v.as_array().unwrap() {
            let kind = c["issuer"].as_str().unwrap();
            let n = c["number"].as_u64().unwrap();
            assert!(n > before.get(kind).copied().unwrap_or(0), "{v}");
        }
        observe(&env, &mut seen, &mut last);
        let left: Vec<String> = std::fs::read_dir(&crl_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    eprintln!("{trials} runs, {killed} killed while running (crl takes {full} ms)");
    assert!(
        killed >= 10,
        "only {killed} of {trials} were killed while running"
    );
    // The revoked certificate is in the device CRL, as openssl reads it.
    let text = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(text.contains(&s.to_uppercase()), "{text}");
}

#[test]
fn revoke_killed_at_random_moments_revokes_exactly_once() {
    let env = Env::with_ca();
    let spare = env.json(&[
        "issue",
        "device",
        "--dns",
        "spare.corp.internal",
        "--out",
        "spare",
    ]);
    let full = time_ms(&env, &["revoke", spare["serial"].as_str().unwrap()]);
    let mut rng = Rng::new();
    let mut serials = Vec::new();
    let (mut killed, mut trials, mut landed) = (0, 0, 0);
    while killed < 10 && trials < 60 {
        trials += 1;
        let v = env.json(&[
            "issue",
            "device",
            "--dns",
            &format!("v{trials}.corp.internal"),
            "--out",
            &format!("v{trials}"),
        ]);
        serials.push(v["serial"].as_str().unwrap().to_string());
        let s = serials.last().unwrap();
        if run_and_kill(
            &env,
            &["revoke", s, "--reason", "keyCompromise"],
            full,
            &mut rng,
        ) {
            killed += 1;
        }
        env.ok(&["store", "check"]);
        // Re-running completes it, or says it is already done.
        let out = env.run(&["revoke", s, "--reason", "keyCompromise"]);
        match code(&out) {
            0 => {}
            1 => {
                assert!(stderr(&out).contains("already revoked"), "{}", text(&out));
                landed += 1;
            }
            _ => panic!("{}", text(&out)),
        }
        let rec = env.json(&["show", s]);
        assert_eq!(rec["status"], "revoked", "{rec}");
    }
    eprintln!("{trials} runs, {killed} killed while running, {landed} had revoked before the kill (revoke takes {full} ms)");
    assert!(
        killed >= 10,
        "only {killed} of {trials} were killed while running"
    );
    // One revoke entry in the audit log per certificate.
    let log = env.json(&["audit"]);
    for s in &serials {
        let n = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "revoke" && e["serial"] == s.as_str())
            .count();
        assert_eq!(n, 1, "{s} revoked {n} times");
    }
    env.ok(&["audit", "--verify"]);
}

#[test]
fn export_killed_at_random_moments_leaves_a_whole_file_or_none() {
    let env = Env::with_ca();
    let v = env.json(&["issue", "device", "--dns", "x.corp.internal", "--out", "x"]);
    let s = v["serial"].as_str().unwrap().to_string();
    std::fs::write(env.path("pw"), "correct horse\n").unwrap();
    let args = |i: usize| -> Vec<String> {
        let mut a: Vec<String> = vec!["export".into(), s.clone(), "--format".into()];
        if i % 2 == 0 {
            a.extend(["chain".into(), "--out".into(), format!("x{i}.pem")]);
        } else {
            a.extend(["p12".into(), "--password-file".into(), "pw".into()]);
            a.extend(["--out".into(), format!("x{i}.p12")]);
        }
        a
    };
    let a1 = args(1);
    let full = time_ms(&env, &a1.iter().map(String::as_str).collect::<Vec<_>>());
    let mut rng = Rng::new();
    let (mut killed, mut trials) = (0, 0);
    while killed < 10 && trials < 80 {
        trials += 1;
        let i = trials + 1;
        let a = args(i);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        if run_and_kill(&env, &a, full, &mut rng) {
            killed += 1;
        }
        // Re-running completes it; or the killed run had finished the file.
        let out = env.run(&a);
        match code(&out) {
            0 => {}
            2 => assert!(stderr(&out).contains("already exists"), "{}", text(&out)),
            _ => panic!("{}", text(&out)),
        }
        let file = a[a.len() - 1];
        if i % 2 == 0 {
            env.openssl_ok(&["x509", "-in", file, "-noout"]);
        } else {
            env.openssl_ok(&[
                "pkcs12",
                "-in",
                file,
                "-passin",
                "pass:correct horse",
                "-noenc",
                "-info",
            ]);
        }
        let left: Vec<String> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".x"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    eprintln!("{trials} runs, {killed} killed while running (export takes {full} ms)");
    assert!(
        killed >= 10,
        "only {killed} of {trials} were killed while running"
    );
    env.ok(&["store", "check"]);
}

#[test]
fn restore_killed_at_random_moments_leaves_nothing_or_a_whole_ca() {
    let env = Env::with_ca();
    ca_with_a_revocation(&env);
    env.ok(&["backup", "bk"]);
    let target = env.path("back");
    let restore = || {
        cmd_at(&env, &target)
            .args(["restore", "bk"])
            .output()
            .unwrap()
    };
    let start = Instant::now();
    let out = restore();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let full = start.elapsed().as_millis() as u64;
    std::fs::remove_dir_all(&target).unwrap();
    let mut rng = Rng::new();
    let (mut killed, mut trials) = (0, 0);
    while killed < 10 && trials < 80 {
        trials += 1;
        let mut child = cmd_at(&env, &target)
            .args(["restore", "bk"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(full + 5)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        if target.exists() {
            let out = cmd_at(&env, &target)
                .args(["--json", "list"])
                .output()
                .unwrap();
            assert_eq!(code(&out), 0, "{}", text(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v.as_array().unwrap().len(), 4, "{v}");
            std::fs::remove_dir_all(&target).unwrap();
        }
    }
    eprintln!("{trials} runs, {killed} killed while running (restore takes {full} ms)");
    assert!(
        killed >= 10,
        "only {killed} of {trials} were killed while running"
    );
    let out = restore();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = cmd_at(&env, &target)
        .args(["store", "check"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let left: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".back"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
