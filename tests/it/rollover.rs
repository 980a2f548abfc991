//! CA generations (`ca roll`): an issuing CA rolled while its leaves stay
//! valid and revocable, a root rolled with link certificates both ways (checked
//! with OpenSSL and with rustls-webpki), an expired issuing CA refused and
//! rolled under `faketime`, the rollover warnings, and an interrupted roll.

use std::process::{Command, Output, Stdio};

use crate::common::{code, have_faketime, text, Env, BIN};
use crate::proxy::{echo_once, echo_server, proxy, serial_of, tls_client};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(env: &Env, rel: &str) -> String {
    std::fs::read_to_string(env.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Concatenate files of the temp dir into `out`.
fn cat(env: &Env, files: &[&str], out: &str) {
    let all: String = files.iter().map(|f| read(env, f)).collect();
    std::fs::write(env.path(out), all).unwrap();
}

/// `openssl verify ARGS LEAF`: whether it says OK.
fn openssl_verifies(env: &Env, args: &[&str], leaf: &str) -> bool {
    let mut a = vec!["verify"];
    a.extend_from_slice(args);
    a.push(leaf);
    let out = env.openssl(&a);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&format!("{leaf}: OK"))
}

fn issuer_of(env: &Env, file: &str) -> String {
    let out = env.openssl(&["x509", "-in", file, "-noout", "-issuer"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_issuing_roll_keeps_old_leaves_valid_and_revocable_and_new_leaves_follow_the_new_ca() {
    let env = Env::with_ca();
    // Two initiators and the proxy's own certificate under generation 1.
    env.ok(&["issue", "device", "--dns", "old.test", "--out", "old"]);
    env.ok(&["issue", "device", "--dns", "kept.test", "--out", "kept"]);
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "b.test",
        "--ip",
        "127.0.0.1",
        "--out",
        "b",
    ]);
    let ca_toml_before = read(&env, "ca/ca.toml");

    let rolled = env.json(&["ca", "roll", "device"]);
    assert_eq!(rolled["new"][0]["name"], "device-2", "{rolled}");
    assert_eq!(rolled["old"][0]["name"], "device", "{rolled}");
    assert!(env.path("ca/device-ca-2.pem").exists());
    assert!(env.path("ca/private/device-ca-2.key").exists());
    let ca_toml = read(&env, "ca/ca.toml");
    assert!(ca_toml.starts_with(&ca_toml_before), "{ca_toml}");
    assert!(
        ca_toml.contains("[generation]") && ca_toml.contains("device = 2"),
        "{ca_toml}"
    );

    env.ok(&["issue", "device", "--dns", "new.test", "--out", "new"]);
    assert!(issuer_of(&env, "new.pem").contains("Device Issuing CA 2"));
    assert!(!issuer_of(&env, "old.pem").contains("Device Issuing CA 2"));
    // The chain file carries the CA that signed it.
    assert!(read(&env, "new.chain.pem").ends_with(&read(&env, "ca/device-ca-2.pem")));
    // An old leaf's exported chain is its own generation's.
    env.ok(&[
        "export",
        &serial_of(&env, "kept.pem"),
        "--format",
        "chain",
        "--out",
        "kept.export.pem",
    ]);
    assert!(read(&env, "kept.export.pem").ends_with(&read(&env, "ca/device-ca.pem")));

    // One bundle for relying parties: both generations verify.
    for leaf in ["old.pem", "kept.pem", "new.pem"] {
        assert!(
            openssl_verifies(&env, &["-CAfile", "ca/ca-bundle.pem"], leaf),
            "{leaf}"
        );
    }
    // Without the old generation in the file, the old leaf does not.
    cat(&env, &["ca/root.pem", "ca/device-ca-2.pem"], "only-new.pem");
    assert!(!openssl_verifies(
        &env,
        &["-CAfile", "only-new.pem"],
        "old.pem"
    ));

    // Revoked after the roll: listed by its own CA's CRL.
    let old_serial = serial_of(&env, "old.pem");
    env.ok(&["revoke", &old_serial]);
    let crls = env.json(&["crl"]);
    let names: Vec<&str> = crls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["issuer"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["root", "device", "device-2", "entity"], "{crls}");
    let listed = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(
        listed.to_ascii_lowercase().contains(&old_serial),
        "{listed}"
    );
    let listed2 = env.openssl_ok(&["crl", "-in", "ca/crl/device-2.crl", "-noout", "-text"]);
    assert!(
        listed2.contains("Device Issuing CA 2") && listed2.contains("No Revoked Certificates"),
        "{listed2}"
    );
    let crl_args = [
        "-crl_check",
        "-CRLfile",
        "ca/crl/device.crl",
        "-CRLfile",
        "ca/crl/device-2.crl",
        "-CAfile",
        "ca/ca-bundle.pem",
    ];
    assert!(!openssl_verifies(&env, &crl_args, "old.pem"));
    assert!(openssl_verifies(&env, &crl_args, "new.pem"));
    assert!(openssl_verifies(&env, &crl_args, "kept.pem"));
    // `crl --issuer` names a generation.
    let one = env.json(&["crl", "--issuer", "device-1"]);
    assert_eq!(one["issuer"], "device", "{one}");
    let one = env.json(&["crl", "--issuer", "device"]);
    assert_eq!(one["issuer"], "device-2", "{one}");
    env.fails(&["crl", "--issuer", "device-3"], 2);

    // mtlsca verify with the CA directory: every generation is known.
    env.ok(&["verify", "cert", "new.pem"]);
    env.ok(&["verify", "cert", "kept.pem"]);
    let out = env.run(&["verify", "cert", "old.pem"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("revoked"), "{}", text(&out));

    // `ca status`: both generations, the old one retired.
    let status = env.json(&["ca", "status"]);
    let gen = |name: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {status}"))
            .clone()
    };
    assert_eq!(gen("device")["state"], "retired");
    assert_eq!(gen("device")["valid_certificates"], 2); // kept and b
    assert_eq!(gen("device-2")["state"], "current");
    assert_eq!(gen("device-2")["valid_certificates"], 1);

    // A proxy trusting the bundle, revocation from the CA's CRLs: an initiator
    // of each generation gets through, the revoked one does not.
    let echo = echo_server();
    let port = crate::common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let target = format!("127.0.0.1:{echo}");
    let p = proxy(
        &env,
        "rolled",
        port,
        &[
            "server",
            "--listen",
            &listen,
            "--target",
            &target,
            "--cert",
            "b.chain.pem",
            "--trust",
            "ca/ca-bundle.pem",
        ],
    );
    for who in ["new", "kept"] {
        assert!(
            echo_once(&tls_client(&env, who), port, b"hi\n").is_ok(),
            "{who}: {}",
            p.log()
        );
    }
    assert!(echo_once(&tls_client(&env, "old"), port, b"hi\n").is_err());
    let line = p.wait_line(&["verdict=refused"]);
    assert!(line.contains("revoked"), "{line}");
    assert_eq!(
        p.log().matches("verdict=accepted").count(),
        2,
        "{}",
        p.log()
    );
}

#[test]
fn a_root_roll_links_both_roots_so_each_validates_the_others_leaves() {
    let env = Env::with_ca();
    env.ok(&["issue", "device", "--dns", "old.test", "--out", "old"]);
    let rolled = env.json(&["ca", "roll", "root"]);
    let new: Vec<&str> = rolled["new"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(new, ["root-2", "device-2", "entity-2"], "{rolled}");
    env.ok(&["issue", "device", "--dns", "new.test", "--out", "new"]);
    let subject = |f: &str| {
        let out = env.openssl(&["x509", "-in", f, "-noout", "-subject"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(subject("ca/root.pem"), subject("ca/root-2.pem"));
    let spki = |f: &str| {
        let out = env.openssl(&["x509", "-in", f, "-noout", "-pubkey"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(spki("ca/root-2-by-1.pem"), spki("ca/root-2.pem"));
    assert_eq!(spki("ca/root-1-by-2.pem"), spki("ca/root.pem"));

    // A new leaf, trusting only the old root: through the link.
    cat(
        &env,
        &["ca/device-ca-2.pem", "ca/root-2-by-1.pem"],
        "up-new.pem",
    );
    assert!(openssl_verifies(
        &env,
        &["-CAfile", "ca/root.pem", "-untrusted", "up-new.pem"],
        "new.pem"
    ));
    assert!(!openssl_verifies(
        &env,
        &["-CAfile", "ca/root.pem", "-untrusted", "ca/device-ca-2.pem"],
        "new.pem"
    ));
    // An old leaf, trusting only the new root.
    cat(
        &env,
        &["ca/device-ca.pem", "ca/root-1-by-2.pem"],
        "up-old.pem",
    );
    assert!(openssl_verifies(
        &env,
        &["-CAfile", "ca/root-2.pem", "-untrusted", "up-old.pem"],
        "old.pem"
    ));
    assert!(!openssl_verifies(
        &env,
        &["-CAfile", "ca/root-2.pem", "-untrusted", "ca/device-ca.pem"],
        "old.pem"
    ));
    // The same with rustls-webpki (mtlsca verify cert --trust).
    for (trust, untrusted, leaf, want) in [
        ("ca/root.pem", "up-new.pem", "new.pem", 0),
        ("ca/root.pem", "ca/device-ca-2.pem", "new.pem", 1),
        ("ca/root-2.pem", "up-old.pem", "old.pem", 0),
        ("ca/root-2.pem", "ca/device-ca.pem", "old.pem", 1),
    ] {
        let out = env.run(&[
            "verify",
            "cert",
            "--trust",
            trust,
            "--untrusted",
            untrusted,
            leaf,
        ]);
        assert_eq!(
            code(&out),
            want,
            "{trust} {untrusted} {leaf}:\n{}",
            text(&out)
        );
    }
    // The bundle holds both roots and the links: both leaves verify.
    for leaf in ["old.pem", "new.pem"] {
        assert!(
            openssl_verifies(&env, &["-CAfile", "ca/ca-bundle.pem"], leaf),
            "{leaf}"
        );
        env.ok(&["verify", "cert", leaf]);
    }
    // Every generation's CRL is published, and a backup restores them all.
    env.ok(&["crl"]);
    for f in ["root", "root-2", "device", "device-2", "entity", "entity-2"] {
        assert!(env.path(&format!("ca/crl/{f}.crl")).exists(), "{f}");
    }
    env.ok(&["backup", "bk"]);
    let restored = Command::new(BIN)
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["--ca-dir", "restored", "restore", "bk"])
        .output()
        .unwrap();
    assert_eq!(code(&restored), 0, "{}", text(&restored));
    for f in [
        "root-2.pem",
        "root-2-by-1.pem",
        "root-1-by-2.pem",
        "device-ca-2.pem",
        "private/root-2.key",
    ] {
        assert!(env.path(&format!("restored/{f}")).exists(), "{f}");
    }
    // The restored CA opens, knows every generation and issues with the current one.
    assert_eq!(
        read(&env, "restored/ca-bundle.pem"),
        read(&env, "ca/ca-bundle.pem")
    );
    let restored_run = |args: &[&str]| {
        Command::new(BIN)
            .current_dir(env.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .args(["--ca-dir", "restored"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = restored_run(&["issue", "device", "--dns", "r.test", "--out", "r"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(issuer_of(&env, "r.pem").contains("Device Issuing CA 2"));
    let out = restored_run(&["verify", "cert", "old.pem"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
}

/// `mtlsca ARGS` with the clock moved by `offset` (`+4020d`).
fn at(env: &Env, offset: &str, args: &[&str]) -> Output {
    env.at_dir(&env.ca_dir(), offset, &[], args)
}

/// The notAfter of a certificate file, as OpenSSL prints it (`Dec  5 ... 2036 GMT`).
fn not_after(env: &Env, file: &str) -> String {
    let out = env.openssl(&["x509", "-in", file, "-noout", "-enddate"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("notAfter=")
        .to_string()
}

#[test]
fn an_expired_issuing_ca_is_refused_by_name_and_rolled_under_faketime() {
    if !have_faketime() {
        return;
    }
    let env = Env::with_ca();
    let expiry = not_after(&env, "ca/device-ca.pem");
    let year = expiry.split_whitespace().nth(3).unwrap().to_string();

    // 11 years on: the issuing CAs (10 years) are expired, the root (20) is not.
    let out = at(
        &env,
        "+4020d",
        &["issue", "device", "--dns", "x.test", "--out", "x"],
    );
    assert_eq!(code(&out), 3, "{}", text(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error: the device CA"), "{err}");
    assert!(
        err.contains("Device Issuing CA") && err.contains("expired on") && err.contains(&year),
        "{err}"
    );
    assert!(err.contains("mtlsca ca roll device"), "{err}");
    assert!(!env.path("x.pem").exists());
    // The same for a CSR (sign) and an entity.
    let out = at(
        &env,
        "+4020d",
        &[
            "issue", "person", "--email", "p@test", "--cn", "P", "--out", "p",
        ],
    );
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        stderr(&out).contains("mtlsca ca roll entity"),
        "{}",
        text(&out)
    );
    // store check says so too.
    let out = at(&env, "+4020d", &["store", "check"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        stderr(&out).contains("warning: the device CA (device) expired on"),
        "{}",
        text(&out)
    );

    let out = at(&env, "+4020d", &["ca", "roll", "device"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = at(
        &env,
        "+4020d",
        &["issue", "device", "--dns", "x.test", "--out", "x"],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(issuer_of(&env, "x.pem").contains("Device Issuing CA 2"));
    // Verified as of one day after the faked issuance.
    let t = Command::new("faketime")
        .args(["-f", "+4021d", "date", "+%s"])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&t.stdout).trim().to_string();
    assert!(openssl_verifies(
        &env,
        &["-attime", &t, "-CAfile", "ca/ca-bundle.pem"],
        "x.pem"
    ));
    // The rolled bundle left out the expired device CA, and still holds the entity CA.
    let bundle = read(&env, "ca/ca-bundle.pem");
    assert!(!bundle.contains(&read(&env, "ca/device-ca.pem")));
}

#[test]
fn a_validity_past_the_issuing_ca_names_its_expiry_and_the_roll() {
    if !have_faketime() {
        return;
    }
    let env = Env::with_ca();
    // About 50 days before the device CA expires: a 90-day certificate does not fit.
    let out = at(
        &env,
        "+3600d",
        &[
            "issue",
            "device",
            "--dns",
            "x.test",
            "--validity",
            "90d",
            "--out",
            "x",
        ],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("expires on") && err.contains("mtlsca ca roll device"),
        "{err}"
    );
    assert!(err.contains("--not-after"), "{err}");
}

#[test]
fn store_check_and_list_warn_only_once_the_rollover_window_is_reached() {
    let env = Env::with_ca();
    env.ok(&["issue", "device", "--dns", "a.test", "--out", "a"]);
    for args in [&["store", "check"][..], &["list"][..]] {
        let out = env.run(args);
        assert_eq!(code(&out), 0, "{}", text(&out));
        assert!(
            !stderr(&out).contains("warning"),
            "{args:?}: {}",
            text(&out)
        );
    }
    assert_eq!(
        env.json(&["store", "check"])["rollover"],
        serde_json::json!([])
    );

    // A window longer than the device CA's life: due now.
    let toml = env.ca_dir().join("ca.toml");
    let mut cfg = std::fs::read_to_string(&toml).unwrap();
    cfg.push_str("\n[rollover]\ndevice = \"11y\"\n");
    std::fs::write(&toml, cfg).unwrap();
    let out = env.run(&["store", "check"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: the device CA (device) expires on"),
        "{err}"
    );
    assert!(
        err.contains("days") && err.contains("`mtlsca ca roll device`"),
        "{err}"
    );
    assert!(!err.contains("entity CA"), "{err}");
    let v = env.json(&["store", "check"]);
    assert_eq!(v["rollover"].as_array().unwrap().len(), 1, "{v}");
    // list --json stays an array; the warning goes to stderr.
    let out = env.run(&["--json", "list"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.is_array());
    assert!(
        stderr(&out).contains("warning: the device CA"),
        "{}",
        text(&out)
    );
    // ca status shows it due.
    let status = env.json(&["ca", "status"]);
    let device = status
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "device")
        .unwrap();
    assert_eq!(device["rollover_due"], true, "{status}");
    assert_eq!(device["rollover_window"], "11y", "{status}");
    // A window that does not parse is a CA state error naming the key.
    let cfg = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("\"11y\"", "\"soon\"");
    std::fs::write(&toml, cfg).unwrap();
    let err = env.fails(&["ca", "status"], 3);
    assert!(err.contains("rollover.device"), "{err}");
}

#[test]
fn an_interrupted_roll_leaves_a_ca_that_issues_as_before_and_a_second_roll_completes() {
    let env = Env::with_ca();
    let ca_toml = read(&env, "ca/ca.toml");
    let bundle = read(&env, "ca/ca-bundle.pem");
    env.ok(&["ca", "roll", "device"]);
    // As if killed after the store learned device-2 and before ca.toml named
    // it: the old ca.toml and bundle, and a damaged leftover certificate.
    std::fs::write(env.path("ca/ca.toml"), &ca_toml).unwrap();
    std::fs::write(env.path("ca/ca-bundle.pem"), &bundle).unwrap();
    std::fs::write(env.path("ca/device-ca-2.pem"), "half").unwrap();
    env.ok(&["issue", "device", "--dns", "a.test", "--out", "a"]);
    assert!(!issuer_of(&env, "a.pem").contains("Issuing CA 2"));
    env.ok(&["store", "check"]);
    assert!(openssl_verifies(
        &env,
        &["-CAfile", "ca/ca-bundle.pem"],
        "a.pem"
    ));

    env.ok(&["ca", "roll", "device"]);
    env.ok(&["issue", "device", "--dns", "b.test", "--out", "b"]);
    assert!(issuer_of(&env, "b.pem").contains("Device Issuing CA 2"));
    for leaf in ["a.pem", "b.pem"] {
        assert!(
            openssl_verifies(&env, &["-CAfile", "ca/ca-bundle.pem"], leaf),
            "{leaf}"
        );
    }
    env.ok(&["store", "check"]);
    let audit = env.ok(&["audit"]);
    assert_eq!(audit.matches("roll").count(), 2, "{audit}");
}

#[test]
fn a_foreign_ca_is_still_refused_and_encrypted_keys_stay_encrypted() {
    const PASS: &str = "correct horse battery staple";
    let env = Env::new();
    let with_pass = |args: &[&str]| -> Output {
        env.cmd()
            .env("MTLSCA_PASSPHRASE", PASS)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = with_pass(&["init", "--name", "Enc", "--encrypt"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = env.run(&["ca", "roll", "entity"]);
    assert_eq!(code(&out), 3, "{}", text(&out));
    let out = with_pass(&["ca", "roll", "entity"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let key = read(&env, "ca/private/entity-ca-2.key");
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{key}"
    );
    let out = with_pass(&[
        "issue", "person", "--email", "p@test", "--cn", "P", "--out", "p",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(issuer_of(&env, "p.pem").contains("Entity Issuing CA 2"));

    // Another CA's device generation 2 put in place: its key id is not the store's.
    let other = Env::with_ca();
    other.ok(&["ca", "roll", "entity"]);
    std::fs::copy(
        other.path("ca/entity-ca-2.pem"),
        env.path("ca/entity-ca-2.pem"),
    )
    .unwrap();
    let err = env.fails(&["list"], 3);
    assert!(err.contains("belongs to another CA"), "{err}");
}

#[test]
fn a_roll_is_refused_while_serve_holds_the_ca_and_works_once_it_stopped() {
    let env = Env::with_ca();
    let mut server = crate::common::Server::start(&env, &[]);
    let err = env.fails(&["ca", "roll", "device"], 3);
    assert!(
        err.contains("mtlsca serve") && err.contains("stop it"),
        "{err}"
    );
    assert!(!env.path("ca/device-ca-2.pem").exists());
    // status works through the server.
    let status = env.json(&["ca", "status"]);
    assert_eq!(status.as_array().unwrap().len(), 3, "{status}");
    assert_eq!(server.stop(), 0);
    env.ok(&["ca", "roll", "device"]);
    assert!(env.path("ca/device-ca-2.pem").exists());
}

#[test]
fn each_generation_points_its_leaves_at_its_own_crl() {
    let env = Env::with_ca();
    let append = |profile: &str, line: &str| {
        let p = env
            .ca_dir()
            .join("profiles")
            .join(format!("{profile}.toml"));
        let mut t = std::fs::read_to_string(&p).unwrap();
        t.push_str(line);
        std::fs::write(&p, t).unwrap();
    };
    // The layout `serve --publish-listen` serves, and a URL of another shape.
    append(
        "device",
        "crl_url = \"http://ca.test:8080/crl/device.crl\"\n",
    );
    append("workload", "crl_url = \"http://ca.test/revoked.crl\"\n");
    env.ok(&["issue", "device", "--dns", "a.test", "--out", "a"]);
    let out = env.run(&["ca", "roll", "device"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: profile `workload`'s crl_url"),
        "{err}"
    );
    assert!(!err.contains("profile `device`"), "{err}");
    env.ok(&["issue", "device", "--dns", "b.test", "--out", "b"]);
    let cdp = |f: &str| {
        let out = env.openssl(&["x509", "-in", f, "-noout", "-ext", "crlDistributionPoints"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        cdp("a.pem").contains("http://ca.test:8080/crl/device.crl"),
        "{}",
        cdp("a.pem")
    );
    assert!(
        cdp("b.pem").contains("http://ca.test:8080/crl/device-2.crl"),
        "{}",
        cdp("b.pem")
    );
    // As the server publishes them: the CRL of each leaf's own CA.
    env.ok(&["crl"]);
    assert!(env.path("ca/crl/device-2.crl").exists());
}

/// Days from now to a certificate file's notAfter (by OpenSSL's `-checkend`
/// bisection would be slow: read the date and compare with `date`).
fn days_left(env: &Env, file: &str) -> i64 {
    let end = not_after(env, file);
    let out = Command::new("date")
        .args(["-u", "-d", &end, "+%s"])
        .output()
        .expect("date");
    let end: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (end - now) / 86_400
}

/// Three days before the issuing CAs end (no roll yet), `crl` still publishes
/// every CRL: an issuing CA's promises no update past its own notAfter, and
/// none keeps the others from being published.
#[test]
fn a_ca_near_its_end_still_publishes_a_crl_that_ends_with_it() {
    if !have_faketime() {
        return;
    }
    let env = Env::with_ca();
    let offset = format!("+{}d", days_left(&env, "ca/device-ca.pem") - 3);
    let out = at(&env, &offset, &["crl"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let device_end = not_after(&env, "ca/device-ca.pem");
    for (crl, end) in [
        ("ca/crl/device.crl", Some(&device_end)),
        ("ca/crl/entity.crl", None),
        ("ca/crl/root.crl", None),
    ] {
        let out = env.openssl(&["crl", "-in", crl, "-noout", "-nextupdate", "-crlnumber"]);
        assert!(out.status.success(), "{}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        // The CRL signed under faketime (number 2: init published number 1).
        assert!(said.contains("crlNumber=0x02"), "{crl}: {said}");
        if let Some(end) = end {
            assert!(said.contains(&format!("nextUpdate={end}")), "{crl}: {said}");
        }
    }
}
