//! Rotation (issue 24): renewal windows that never renew a certificate twice,
//! `renew --all`, `--revoke-old [--grace]`, and revocation of a request id's
//! lineage. The clock is moved with `faketime` (Debian `faketime`); OpenSSL
//! checks what the CRLs say.

use std::process::{Command, Output, Stdio};

use crate::common::{code, text, Env};

/// Whether `faketime` is missing: a skip, or an error under `MTLSCA_REQUIRE_FAKETIME`.
pub fn no_faketime() -> bool {
    !crate::common::have_faketime()
}

/// `mtlsca --ca-dir ca ARGS` with the clock moved by `offset` (faketime's
/// `+70d`, `+1682h`).
pub fn at(env: &Env, offset: &str, args: &[&str]) -> Output {
    env.at_dir(&env.ca_dir(), offset, &[], args)
}

/// `at`, insisting on exit 0; stdout.
pub fn at_ok(env: &Env, offset: &str, args: &[&str]) -> String {
    let out = at(env, offset, args);
    assert_eq!(code(&out), 0, "{offset} mtlsca {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `at` with `--json`, parsed.
fn at_json(env: &Env, offset: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = at_ok(env, offset, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: bad JSON {e}: {out}"))
}

/// `openssl ARGS` with the clock moved by `offset`.
fn openssl_at(env: &Env, offset: &str, args: &[&str]) -> Output {
    Command::new("faketime")
        .current_dir(env.path(""))
        .args(["-f", offset, "openssl"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run faketime openssl")
}

/// A manifest of `n` device hosts `host-01`...
fn hosts(n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "[[certificate]]\nid = \"host-{i:02}\"\nprofile = \"device\"\ndns = [\"host-{i:02}.corp.internal\"]\n\n"
            )
        })
        .collect()
}

/// The serial each host's current certificate has (`show host-NN`).
fn serials(env: &Env, offset: &str, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            at_json(env, offset, &["show", &format!("host-{i:02}")])["serial"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn valid_count(env: &Env, offset: &str) -> usize {
    at_json(env, offset, &["list", "--status", "valid"])
        .as_array()
        .unwrap()
        .len()
}

/// `openssl verify -crl_check_all` of `files` against the bundle and both
/// published CRLs, at the faked time: the output.
fn verify_crl(env: &Env, offset: &str, files: &[String]) -> (bool, String) {
    let mut args = vec![
        "verify",
        "-crl_check_all",
        "-CRLfile",
        "ca/crl/device.crl",
        "-CRLfile",
        "ca/crl/root.crl",
        "-CAfile",
        "ca/ca-bundle.pem",
    ];
    args.extend(files.iter().map(String::as_str));
    let out = openssl_at(env, offset, &args);
    (out.status.success(), text(&out))
}

/// The 50-host story of issue 24: rotate every host twice with
/// `--revoke-old`; each time exactly 50 certificates stay valid, each old
/// one is revoked `superseded` in the store and in the published CRL, and
/// its `.prev` file fails OpenSSL's CRL check while the current one passes.
#[test]
fn fifty_hosts_rotate_twice_and_leave_fifty_valid() {
    if no_faketime() {
        return;
    }
    let env = Env::with_ca();
    std::fs::write(env.path("hosts.toml"), hosts(50)).unwrap();
    env.ok(&["batch", "--manifest", "hosts.toml", "--out-dir", "out"]);
    let mut before = serials(&env, "+0d", 50);
    for offset in ["+70d", "+140d"] {
        let out = at_ok(
            &env,
            offset,
            &[
                "batch",
                "--manifest",
                "hosts.toml",
                "--out-dir",
                "out",
                "--renew-within",
                "30d",
                "--revoke-old",
            ],
        );
        assert!(out.contains("50 renewed"), "{out}");
        assert!(
            out.contains("CRLs published") && out.contains("device.crl (number"),
            "{out}"
        );
        // Run again at the same time: nothing is due any more.
        let again = at_ok(
            &env,
            offset,
            &[
                "batch",
                "--manifest",
                "hosts.toml",
                "--out-dir",
                "out",
                "--renew-within",
                "30d",
                "--revoke-old",
            ],
        );
        assert!(again.contains("0 renewed, 50 already issued"), "{again}");
        assert_eq!(valid_count(&env, offset), 50);
        let now = serials(&env, offset, 50);
        for (old, new) in before.iter().zip(&now) {
            assert_ne!(old, new);
            let shown = at_json(&env, offset, &["show", old]);
            assert_eq!(shown["status"], "revoked", "{shown}");
            assert_eq!(shown["revocation"]["reason"], "superseded", "{shown}");
            assert_eq!(shown["renewed_by"], new.as_str());
        }
        let crl = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
        for old in &before {
            assert!(crl.contains(&old.to_uppercase()), "{old} not in the CRL");
        }
        assert_eq!(
            crl.matches("Superseded").count(),
            crl.matches("Serial Number").count()
        );
        at_ok(&env, offset, &["crl", "--issuer", "root"]);
        let prev: Vec<String> = (1..=50)
            .map(|i| format!("out/host-{i:02}.pem.prev"))
            .collect();
        let (ok, out) = verify_crl(&env, offset, &prev);
        assert!(!ok, "{out}");
        assert_eq!(out.matches("certificate revoked").count(), 50, "{out}");
        let current: Vec<String> = (1..=50).map(|i| format!("out/host-{i:02}.pem")).collect();
        let (ok, out) = verify_crl(&env, offset, &current);
        assert!(ok, "{out}");
        before = now;
    }
}

/// A window at least the certificates' lifetime renews nothing right after
/// issuance, says so once, and again on a second run; `renew --all` likewise.
#[test]
fn a_window_longer_than_two_thirds_of_the_lifetime_is_capped() {
    let env = Env::with_ca();
    std::fs::write(env.path("hosts.toml"), hosts(5)).unwrap();
    env.ok(&["batch", "--manifest", "hosts.toml", "--out-dir", "out"]);
    let note = "note: window 91d is longer than 2/3 of the 90d lifetime of 5 certificates: renewing those with less than 60d left";
    for _ in 0..2 {
        let out = env.run(&[
            "batch",
            "--manifest",
            "hosts.toml",
            "--out-dir",
            "out",
            "--renew-within",
            "91d",
        ]);
        assert_eq!(code(&out), 0, "{}", text(&out));
        let all = text(&out);
        assert!(all.contains("0 renewed, 5 already issued"), "{all}");
        assert_eq!(all.matches(note).count(), 1, "{all}");
    }
    for _ in 0..2 {
        let out = env.run(&["renew", "--all", "--within", "91d"]);
        assert_eq!(code(&out), 0, "{}", text(&out));
        let all = text(&out);
        assert!(
            all.contains("5 current certificate(s) considered: 0 renewed"),
            "{all}"
        );
        assert_eq!(all.matches(note).count(), 1, "{all}");
    }
    assert_eq!(env.store_count(), 5);
    assert!(!env.path("out/host-01.pem.prev").exists());
}

/// `renew --all --profile P` renews only P's due certificates, in place;
/// `--dry-run` writes and records nothing; a certificate signed from a CSR
/// is skipped with the reason.
#[test]
fn renew_all_by_profile_in_place_and_dry_run() {
    if no_faketime() {
        return;
    }
    let env = Env::with_ca();
    env.ok(&["issue", "device", "--dns", "a.corp.internal", "--out", "a"]);
    env.ok(&["issue", "device", "--dns", "b.corp.internal", "--out", "b"]);
    env.ok(&[
        "issue",
        "person",
        "--email",
        "alice@test",
        "--cn",
        "Alice",
        "--validity",
        "90d",
        "--out",
        "alice",
    ]);
    env.openssl_ok(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "c.key",
        "-subj",
        "/CN=c.corp.internal",
        "-addext",
        "subjectAltName=DNS:c.corp.internal",
        "-out",
        "c.csr",
    ]);
    env.ok(&["sign", "device", "--csr", "c.csr", "--out", "c.pem"]);
    let a_before = std::fs::read(env.path("a.pem")).unwrap();
    let count = env.store_count();

    let dry = at_ok(
        &env,
        "+70d",
        &[
            "renew",
            "--all",
            "--within",
            "30d",
            "--profile",
            "device",
            "--dry-run",
        ],
    );
    assert!(
        dry.contains("due ") && dry.contains("a.corp.internal"),
        "{dry}"
    );
    assert!(
        dry.contains("skipped") && dry.contains("signed from a CSR"),
        "{dry}"
    );
    assert!(!dry.contains("alice"), "{dry}");
    assert_eq!(env.store_count(), count);
    assert_eq!(std::fs::read(env.path("a.pem")).unwrap(), a_before);
    assert!(!env.path("a.pem.prev").exists());

    let out = at(
        &env,
        "+70d",
        &[
            "--json",
            "renew",
            "--all",
            "--within",
            "30d",
            "--profile",
            "device",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = |s: &str| lines.iter().filter(|l| l["status"] == s).count();
    assert_eq!((status("renewed"), status("skipped")), (2, 1), "{lines:?}");
    assert!(lines.iter().all(|l| l["profile"] == "device"));
    assert_eq!(env.store_count(), count + 2);
    assert_ne!(std::fs::read(env.path("a.pem")).unwrap(), a_before);
    assert_eq!(std::fs::read(env.path("a.pem.prev")).unwrap(), a_before);
    // Alice (another profile) is still her first certificate, due now.
    let alice = at_json(&env, "+70d", &["show", "alice.pem"]);
    assert_eq!(alice["renewed_by"], serde_json::Value::Null);
    let old_alice = alice["serial"].as_str().unwrap().to_uppercase();
    let rest = at_ok(
        &env,
        "+70d",
        &["renew", "--all", "--within", "30d", "--revoke-old"],
    );
    assert!(
        rest.contains("renewed ") && rest.contains("alice@test"),
        "{rest}"
    );
    assert!(rest.contains("old revoked (superseded)"), "{rest}");
    assert!(
        rest.contains("1 renewed")
            && rest.contains("CRLs published")
            && rest.contains("entity.crl (number"),
        "{rest}"
    );
    // Without a server, the entity CA's CRL in crl/ lists her old certificate.
    let crl = env.openssl_ok(&["crl", "-in", "ca/crl/entity.crl", "-noout", "-text"]);
    assert!(crl.contains(&old_alice), "{crl}");
}

/// `--grace 1h`: the old certificate stays valid (list, CRL) until the grace
/// period ends; then a CRL run revokes it `superseded`, dated at its due time.
#[test]
fn revoke_old_with_a_grace_period() {
    if no_faketime() {
        return;
    }
    let env = Env::with_ca();
    env.ok(&["issue", "device", "--dns", "g.corp.internal", "--out", "g"]);
    let old = env.json(&["show", "g.pem"])["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let out = at_ok(
        &env,
        "+70d",
        &["renew", "g.pem", "--revoke-old", "--grace", "1h"],
    );
    assert!(out.contains("retiring"), "{out}");
    let shown = at_json(&env, "+70d", &["show", &old]);
    assert_eq!(shown["status"], "valid");
    let due = shown["retiring_at"].as_str().unwrap().to_string();
    assert_eq!(valid_count(&env, "+70d"), 2);
    let listed = at_ok(&env, "+70d", &["list"]);
    assert!(listed.contains(&format!("retiring at {due}")), "{listed}");
    at_ok(&env, "+70d", &["crl", "--issuer", "device"]);
    let crl = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(!crl.contains(&old.to_uppercase()), "{crl}");

    // Two hours later (70 days and 2 hours): the CRL run applies it.
    at_ok(&env, "+1682h", &["crl", "--issuer", "device"]);
    let shown = at_json(&env, "+1682h", &["show", &old]);
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["revocation"]["reason"], "superseded");
    assert_eq!(shown["revocation"]["at"].as_str(), Some(due.as_str()));
    assert_eq!(shown["retiring_at"], serde_json::Value::Null);
    let crl = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    let entry = crl
        .split("Serial Number: ")
        .find(|e| e.starts_with(&old.to_uppercase()))
        .unwrap_or_else(|| panic!("{old} not in {crl}"));
    assert!(entry.contains("Superseded"), "{entry}");
    // The CRL's revocation date is the due time (OpenSSL's spelling).
    let due_t =
        time::OffsetDateTime::parse(&due, &time::format_description::well_known::Rfc3339).unwrap();
    let spelled = format!(
        "{} {:>2} {:02}:{:02}:{:02} {}",
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            [due_t.month() as usize - 1],
        due_t.day(),
        due_t.hour(),
        due_t.minute(),
        due_t.second(),
        due_t.year()
    );
    assert!(
        entry.contains(&format!("Revocation Date: {spelled} GMT")),
        "{spelled}: {entry}"
    );
    assert_eq!(valid_count(&env, "+1682h"), 1);
}

/// `revoke ID` after two renewals revokes the current certificate and the
/// unexpired earlier one (the first, expired, is left), lists them, and the
/// CRL makes both files fail OpenSSL's check.
#[test]
fn revoking_a_request_id_revokes_its_lineage() {
    if no_faketime() {
        return;
    }
    let env = Env::with_ca();
    std::fs::write(env.path("hosts.toml"), hosts(7)).unwrap();
    env.ok(&["batch", "--manifest", "hosts.toml", "--out-dir", "out"]);
    let first = env.json(&["show", "host-07"])["serial"]
        .as_str()
        .unwrap()
        .to_string();
    for offset in ["+70d", "+140d"] {
        at_ok(
            &env,
            offset,
            &[
                "batch",
                "--manifest",
                "hosts.toml",
                "--out-dir",
                "out",
                "--renew-within",
                "30d",
            ],
        );
    }
    let current = at_json(&env, "+140d", &["show", "host-07"]);
    let second = at_json(&env, "+140d", &["show", "out/host-07.pem.prev"]);
    let (current, second) = (
        current["serial"].as_str().unwrap().to_string(),
        second["serial"].as_str().unwrap().to_string(),
    );
    assert!(current != second && second != first);

    let out = at_json(
        &env,
        "+140d",
        &["revoke", "host-07", "--reason", "keyCompromise"],
    );
    assert_eq!(out["request_id"], "host-07");
    let revoked: Vec<&str> = out["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap())
        .collect();
    assert_eq!(revoked, [second.as_str(), current.as_str()]);
    // The first expired before: left as it is.
    assert_eq!(
        at_json(&env, "+140d", &["show", &first])["status"],
        "expired"
    );
    // Again: nothing left to revoke is a refusal.
    let again = at(&env, "+140d", &["revoke", "host-07"]);
    assert_eq!(code(&again), 1, "{}", text(&again));

    at_ok(&env, "+140d", &["crl"]);
    let crl = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    for s in [&second, &current] {
        assert!(crl.contains(&s.to_uppercase()), "{s}: {crl}");
    }
    for f in ["out/host-07.pem", "out/host-07.pem.prev"] {
        let (ok, out) = verify_crl(&env, "+140d", &[f.to_string()]);
        assert!(!ok && out.contains("certificate revoked"), "{f}: {out}");
    }
    // Another host's current certificate still passes.
    let (ok, out) = verify_crl(&env, "+140d", &["out/host-06.pem".to_string()]);
    assert!(ok, "{out}");
    // A serial still names one certificate, in the single-record shape.
    let one = at_json(&env, "+140d", &["show", "host-06"])["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let single = at_json(&env, "+140d", &["revoke", &one]);
    assert_eq!(single["serial"], one.as_str());
    assert_eq!(single["status"], "revoked");
}

/// With `serve` running, `renew --revoke-old --grace`, `show`, `list`,
/// `renew --all` and `revoke ID` go through its control socket with the
/// output of a local run.
#[test]
fn retirement_and_lineage_through_a_running_server() {
    let env = Env::with_ca();
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "s.corp.internal",
        "--out",
        "s",
        "--request-id",
        "svc",
    ]);
    let first = env.json(&["show", "svc"])["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let mut server = crate::common::Server::start(&env, &[]);
    let out = env.ok(&["renew", "svc", "--revoke-old", "--grace", "1h"]);
    assert!(out.contains(&format!("retiring {first} at ")), "{out}");
    let shown = env.json(&["show", &first]);
    assert_eq!(shown["status"], "valid");
    assert!(shown["retiring_at"].is_string(), "{shown}");
    assert!(env.ok(&["list"]).contains("valid, retiring at "));
    let all = env.ok(&["renew", "--all", "--within", "91d"]);
    // (The server's own certificate is considered too.)
    assert!(
        all.contains("current certificate(s) considered: 0 renewed"),
        "{all}"
    );
    let out = env.json(&["revoke", "svc"]);
    let revoked: Vec<&str> = out["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap())
        .collect();
    assert_eq!(revoked.len(), 2, "{out}");
    assert_eq!(revoked[0], first);
    // Revoked meanwhile: the pending retirement is gone with it.
    assert_eq!(
        env.json(&["show", &first])["retiring_at"],
        serde_json::Value::Null
    );
    assert_eq!(server.stop(), 0);
}

/// A renewal whose retirement was never recorded (what a kill between the
/// two leaves, and what a plain `renew` does): `renew --all --revoke-old`
/// retires the replaced certificate that is still valid, and says so.
#[test]
fn renew_all_with_revoke_old_retires_what_an_earlier_renewal_left_valid() {
    let env = Env::with_ca();
    let v = env.json(&["issue", "device", "--dns", "r.corp.internal", "--out", "r"]);
    let old = v["serial"].as_str().unwrap().to_string();
    // Renewed without --revoke-old: the old one stays valid.
    let v = env.json(&["renew", "r.pem"]);
    let new = v["serial"].as_str().unwrap().to_string();
    assert_eq!(env.json(&["show", &old])["status"], "valid");
    let out = env.ok(&["renew", "--all", "--within", "1d", "--revoke-old"]);
    assert!(out.contains(&format!("retired {old}")), "{out}");
    let shown = env.json(&["show", &old]);
    assert_eq!(shown["status"], "revoked", "{shown}");
    assert_eq!(shown["revocation"]["reason"], "superseded", "{shown}");
    assert_eq!(env.json(&["show", &new])["status"], "valid");
    // The CRL in crl/ lists it; a second run retires nothing more.
    let crl = env.openssl(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(
        String::from_utf8_lossy(&crl.stdout).contains(&old.to_uppercase()),
        "{}",
        text(&crl)
    );
    let again = env.ok(&["renew", "--all", "--within", "1d", "--revoke-old"]);
    assert!(!again.contains("retired "), "{again}");
}

/// The same for `batch`: entries renewed by a run without `--revoke-old` (or
/// whose retirement a kill lost) are retired by the next run that has it, even
/// when nothing is due any more.
#[test]
fn batch_with_revoke_old_retires_what_an_earlier_renewal_left_valid() {
    if no_faketime() {
        return;
    }
    let env = Env::with_ca();
    std::fs::write(env.path("hosts.toml"), hosts(3)).unwrap();
    env.ok(&["batch", "--manifest", "hosts.toml", "--out-dir", "out"]);
    let renew = [
        "batch",
        "--manifest",
        "hosts.toml",
        "--out-dir",
        "out",
        "--renew-within",
        "30d",
    ];
    let out = at_ok(&env, "+70d", &renew);
    assert!(out.contains("3 renewed"), "{out}");
    assert_eq!(valid_count(&env, "+70d"), 6);
    let mut with_revoke = renew.to_vec();
    with_revoke.push("--revoke-old");
    let out = at_ok(&env, "+70d", &with_revoke);
    assert!(out.contains("0 renewed"), "{out}");
    assert_eq!(valid_count(&env, "+70d"), 3);
    let old = at_json(&env, "+70d", &["show", "out/host-01.pem.prev"]);
    assert_eq!(old["status"], "revoked", "{old}");
    assert_eq!(old["revocation"]["reason"], "superseded", "{old}");
}
