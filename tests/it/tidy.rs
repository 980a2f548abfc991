//! `store tidy`: expired certificates (and revoked ones past their last CRL)
//! move from the live store into the archive, where `show`, `list --all`,
//! `export`, `audit` and `store check` still reach them; a killed tidy leaves
//! every certificate reachable once and completes on a re-run; backups carry
//! the archive. The clock is moved with `faketime` (Debian `faketime`).

use std::collections::BTreeSet;
use std::process::Output;

use crate::common::{code, have_faketime, text, Env, Server};

/// mtlsca with the clock moved by `offset` (faketime's `+2d`), `vars` set.
fn at(env: &Env, offset: &str, vars: &[(&str, &str)], args: &[&str]) -> Output {
    env.at_dir(&env.ca_dir(), offset, vars, args)
}

/// `at`, which must succeed; its JSON (`--json` is added).
fn at_json(env: &Env, offset: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = at(env, offset, &[], &a);
    assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out)))
}

/// Issue a device certificate valid for `validity` under request id `id`; its serial.
fn issue(env: &Env, id: &str, validity: &str) -> String {
    let v = env.json(&[
        "issue",
        "device",
        "--dns",
        &format!("{id}.corp.internal"),
        "--validity",
        validity,
        "--request-id",
        id,
        "--out",
        id,
    ]);
    v["serial"].as_str().unwrap().to_string()
}

fn serials(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap().to_string())
        .collect()
}

/// Every certificate is listed once by `list --all` and answers `show`; the
/// store and the audit chain check.
fn reachable_once(env: &Env, offset: &str, all: &BTreeSet<String>) {
    let listed = serials(&at_json(env, offset, &["list", "--all"]));
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "listed twice: {listed:?}");
    assert_eq!(&unique, all);
    for s in all {
        assert_eq!(at_json(env, offset, &["show", s])["serial"], s.as_str());
    }
    assert_eq!(at_json(env, offset, &["store", "check"])["healthy"], true);
    assert_eq!(at_json(env, offset, &["audit", "--verify"])["intact"], true);
}

#[test]
fn tidy_moves_exactly_the_expired_certificates_and_they_stay_reachable() {
    if !have_faketime() {
        return;
    }
    let env = Env::with_ca();
    let short: Vec<String> = (0..3)
        .map(|i| issue(&env, &format!("s{i}"), "1h"))
        .collect();
    let long: Vec<String> = (0..2)
        .map(|i| issue(&env, &format!("l{i}"), "30d"))
        .collect();
    let all: BTreeSet<String> = short.iter().chain(&long).cloned().collect();
    let later = "+2d";

    // A dry run reports and moves nothing.
    let dry = at_json(&env, later, &["store", "tidy", "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["moved"], 3, "{dry}");
    assert_eq!(dry["first_serial"], short.iter().min().unwrap().as_str());
    assert!(
        !env.path("ca/archive").exists(),
        "a dry run made an archive"
    );
    assert_eq!(serials(&at_json(&env, later, &["list"])).len(), 5);
    // Expired for two days, not three: kept.
    let kept = at_json(&env, later, &["store", "tidy", "--expired-for", "3d"]);
    assert_eq!(kept["moved"], 0, "{kept}");

    let moved = at_json(&env, later, &["store", "tidy"]);
    assert_eq!(moved["moved"], 3, "{moved}");
    assert_eq!(moved["hot_records"], 2);
    assert_eq!(moved["archived_records"], 3);
    assert!(env.path("ca/archive").is_dir());
    // Without a server the live store is rebuilt with what stays (smaller).
    let c = &moved["compacted"];
    assert!(
        c["bytes_after"].as_u64().unwrap() < c["bytes_before"].as_u64().unwrap(),
        "{moved}"
    );
    assert!(!env.path("ca/db.compact").exists());

    // `list` is the live store; `list --all` adds the archive.
    let hot: BTreeSet<String> = serials(&at_json(&env, later, &["list"]))
        .into_iter()
        .collect();
    assert_eq!(hot, long.iter().cloned().collect());
    reachable_once(&env, later, &all);
    let check = at_json(&env, later, &["store", "check"]);
    assert_eq!(check["records"], 2);
    assert_eq!(check["archived_records"], 3);

    // `show` answers for an archived certificate by serial, request id,
    // fingerprint and file, and says so.
    let shown = at_json(&env, later, &["show", &short[1]]);
    assert_eq!(shown["archived"], true);
    assert_eq!(shown["status"], "expired");
    assert!(
        shown["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "issue"),
        "{shown}"
    );
    assert_eq!(
        at_json(&env, later, &["show", "s1"])["serial"],
        short[1].as_str()
    );
    let sha = shown["sha256"].as_str().unwrap();
    assert_eq!(
        at_json(&env, later, &["show", sha])["serial"],
        short[1].as_str()
    );
    assert_eq!(at_json(&env, later, &["show", "s1.pem"])["archived"], true);
    assert_eq!(at_json(&env, later, &["show", &long[0]])["archived"], false);
    let out = at(&env, later, &[], &["show", &short[0]]);
    assert!(text(&out).contains("archived    yes"), "{}", text(&out));

    // `export` writes an archived certificate; OpenSSL reads the same serial.
    let out = at(
        &env,
        later,
        &[],
        &[
            "export",
            &short[2],
            "--format",
            "pem",
            "--out",
            "s2-export.pem",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let serial = env.openssl_ok(&["x509", "-in", "s2-export.pem", "-noout", "-serial"]);
    assert!(
        serial
            .to_ascii_lowercase()
            .contains(&format!("serial={}", short[2])),
        "{serial}"
    );

    // A batch re-run (the same request id) finds the archived certificate.
    let out = at(
        &env,
        later,
        &[],
        &[
            "issue",
            "device",
            "--dns",
            "s0.corp.internal",
            "--validity",
            "1h",
            "--request-id",
            "s0",
            "--out",
            "s0",
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(text(&out).contains(&short[0]), "{}", text(&out));

    // An archived certificate is not revoked: refused, naming why.
    let out = at(&env, later, &[], &["revoke", &short[0]]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("archived"), "{}", text(&out));

    // The log covers both parts and records the move.
    let log = at_json(&env, later, &["audit"]);
    let log = log.as_array().unwrap();
    assert!(log.iter().any(|e| e["action"] == "tidy"));
    for s in &all {
        assert!(
            log.iter()
                .any(|e| e["action"] == "issue" && e["serial"] == s.as_str()),
            "no issue entry for {s}"
        );
    }
    // Tidy again: nothing more to move.
    assert_eq!(at_json(&env, later, &["store", "tidy"])["moved"], 0);
}

#[test]
fn a_revoked_expired_certificate_waits_for_a_crl_after_its_expiry() {
    if !have_faketime() {
        return;
    }
    let env = Env::with_ca();
    let revoked = issue(&env, "r0", "1h");
    let _live = issue(&env, "l0", "30d");
    env.ok(&["revoke", &revoked, "--reason", "keyCompromise"]);
    env.ok(&["crl"]); // thisUpdate before the certificate's notAfter
    let later = "+2d";

    let r = at_json(&env, later, &["store", "tidy"]);
    assert_eq!(r["moved"], 0, "{r}");
    assert_eq!(r["waiting_for_crl"], 1);
    assert_eq!(at_json(&env, later, &["show", &revoked])["archived"], false);

    // A CRL after its expiry still lists it (OpenSSL reads it); then it may go.
    let out = at(&env, later, &[], &["crl"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let listed = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(listed.to_ascii_lowercase().contains(&revoked), "{listed}");
    let r = at_json(&env, later, &["store", "tidy"]);
    assert_eq!(r["moved"], 1, "{r}");
    assert_eq!(r["moved_revoked"], 1);
    let shown = at_json(&env, later, &["show", &revoked]);
    assert_eq!(shown["archived"], true);
    assert_eq!(shown["status"], "revoked");
    assert!(shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "revoke"));
    // The next CRL no longer lists it (past its last appearance).
    let out = at(&env, "+3d", &[], &["crl"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let listed = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(!listed.to_ascii_lowercase().contains(&revoked), "{listed}");
    assert_eq!(at_json(&env, "+3d", &["store", "check"])["healthy"], true);
}

#[test]
fn a_killed_tidy_leaves_every_certificate_reachable_once_and_a_rerun_completes_it() {
    if !have_faketime() {
        return;
    }
    for stop in ["archive-flushed", "chunk-removed"] {
        let env = Env::with_ca();
        let first = issue(&env, "p0", "1h");
        let short: Vec<String> = (0..6)
            .map(|i| issue(&env, &format!("s{i}"), "1d"))
            .collect();
        let long: Vec<String> = (0..2)
            .map(|i| issue(&env, &format!("l{i}"), "30d"))
            .collect();
        let all: BTreeSet<String> = short.iter().chain(&long).chain([&first]).cloned().collect();
        let later = "+2d";
        // A first tidy, so the killed one adds to an archive (and its part of
        // the audit chain) that already holds some.
        assert_eq!(at_json(&env, "+2h", &["store", "tidy"])["moved"], 1);
        let out = at(
            &env,
            later,
            &[("MTLSCA_TEST_TIDY_ABORT", stop)],
            &["store", "tidy"],
        );
        // Aborted (faketime reports the signal and exits 1): no report.
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "{stop}: tidy was not stopped: {}",
            text(&out)
        );
        reachable_once(&env, later, &all);
        let r = at_json(&env, later, &["store", "tidy"]);
        assert!(r["moved"].as_u64().unwrap() <= 6, "{stop}: {r}");
        assert_eq!(r["hot_records"], 2, "{stop}: {r}");
        assert_eq!(r["archived_records"], 7, "{stop}: {r}");
        reachable_once(&env, later, &all);
        for s in &short {
            assert_eq!(
                at_json(&env, later, &["show", s])["archived"],
                true,
                "{stop}"
            );
        }
        assert_eq!(at_json(&env, later, &["store", "tidy"])["moved"], 0);
    }
}

#[test]
fn backup_and_restore_carry_the_archive() {
    if !have_faketime() {
        return;
    }
    let env = Env::with_ca();
    let gone = issue(&env, "s0", "1h");
    let live = issue(&env, "l0", "30d");
    let later = "+2d";
    assert_eq!(at_json(&env, later, &["store", "tidy"])["moved"], 1);
    let out = at(&env, later, &[], &["backup", "bk"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(env.path("bk/archive.jsonl").is_file());
    let restored = env.path("ca2");
    let out = env.at_dir(&restored, later, &[], &["restore", "bk"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let in_restored = |args: &[&str]| {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = env.at_dir(&restored, later, &[], &a);
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let shown = in_restored(&["show", &gone]);
    assert_eq!(shown["archived"], true);
    assert_eq!(shown["serial"], gone.as_str());
    assert_eq!(
        serials(&in_restored(&["list", "--all"]))
            .into_iter()
            .collect::<BTreeSet<_>>(),
        [gone.clone(), live.clone()].into_iter().collect()
    );
    assert_eq!(serials(&in_restored(&["list"])), vec![live]);
    assert_eq!(in_restored(&["store", "check"])["archived_records"], 1);
    assert_eq!(in_restored(&["audit", "--verify"])["intact"], true);
}

#[test]
fn tidy_runs_through_the_server_that_holds_the_store() {
    if !have_faketime() {
        return;
    }
    let env = Env::with_ca();
    let gone = issue(&env, "s0", "1h");
    let _live = issue(&env, "l0", "30d");
    let mut server = Server::start(&env, &[]);
    let later = "+2d";
    let r = at_json(&env, later, &["store", "tidy"]);
    assert_eq!(r["moved"], 1, "{r}");
    // The server keeps the live store's files open: not rebuilt.
    assert!(r["compacted"].is_null(), "{r}");
    assert_eq!(at_json(&env, later, &["show", &gone])["archived"], true);
    // The server's own certificate is live too.
    let hot = serials(&at_json(&env, later, &["list"]));
    assert_eq!(hot.len(), 2, "{hot:?}");
    assert!(!hot.contains(&gone));
    assert_eq!(serials(&at_json(&env, later, &["list", "--all"])).len(), 3);
    assert_eq!(at_json(&env, later, &["store", "check"])["healthy"], true);
    assert_eq!(server.stop(), 0);
    // After the server: the same, locally.
    assert_eq!(at_json(&env, later, &["show", &gone])["archived"], true);
    assert_eq!(
        at_json(&env, later, &["store", "check"])["archived_records"],
        1
    );
}
