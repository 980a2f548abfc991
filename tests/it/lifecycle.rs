//! Lifecycle: batch manifests, revocation and CRLs, export, audit, shell integration.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::common::{code, text, Env};

/// A manifest of `n` entries: device certificates, every fifth a person.
fn manifest(n: usize) -> String {
    let mut m = String::new();
    for i in 0..n {
        if i % 5 == 4 {
            let _ = write!(
                m,
                "[[certificate]]\nid = \"person-{i:04}\"\nprofile = \"person\"\ncn = \"Person {i}\"\nemail = [\"p{i}@corp.example\"]\n\n"
            );
        } else {
            let _ = write!(
                m,
                "[[certificate]]\nid = \"web-{i:04}\"\nprofile = \"device\"\ndns = [\"web-{i:04}.corp.internal\"]\nip = [\"10.0.{}.{}\"]\n\n",
                i / 250,
                i % 250 + 1
            );
        }
    }
    m
}

/// Run `--json batch` and parse its JSON lines.
fn batch_json(env: &Env, manifest: &str, want: i32) -> Vec<Value> {
    std::fs::write(env.path("m.toml"), manifest).unwrap();
    let out = env.run(&[
        "--json",
        "batch",
        "--manifest",
        "m.toml",
        "--out-dir",
        "out",
    ]);
    assert_eq!(code(&out), want, "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {e}: {l}")))
        .collect()
}

fn count(lines: &[Value], status: &str) -> usize {
    lines.iter().filter(|l| l["status"] == status).count()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn batch_issues_200_once_and_a_rerun_issues_nothing() {
    let env = Env::with_ca();
    let lines = batch_json(&env, &manifest(200), 0);
    assert_eq!(lines.len(), 200);
    assert_eq!(count(&lines, "issued"), 200);
    // One line per entry, in manifest order, with the documented fields.
    assert_eq!(lines[0]["id"], "web-0000");
    assert_eq!(lines[4]["id"], "person-0004");
    for l in &lines {
        assert_eq!(l["serial"].as_str().unwrap().len(), 32, "{l}");
        assert_eq!(l["reasons"], serde_json::json!([]));
    }
    assert_eq!(env.store_count(), 200);
    assert_eq!(
        files_in(&env.path("out")).len(),
        600,
        "no temporary file is left"
    );

    // The files are what OpenSSL expects: a valid chain, a private key only the owner reads.
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "-purpose",
        "sslserver",
        "out/web-0007.pem",
    ]);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/entity-ca.pem",
        "-purpose",
        "sslclient",
        "out/person-0009.pem",
    ]);
    let chain = std::fs::read_to_string(env.path("out/web-0007.chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let key_out = env.openssl_ok(&["pkey", "-in", "out/web-0007.key", "-noout", "-text"]);
    assert!(key_out.contains("P-256"), "{key_out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("out/web-0007.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let serials: Vec<&str> = lines
        .iter()
        .map(|l| l["serial"].as_str().unwrap())
        .collect();

    // Again: nothing issued twice, the same serials reported.
    let again = batch_json(&env, &manifest(200), 0);
    assert_eq!(again.len(), 200);
    assert_eq!(count(&again, "issued"), 0);
    assert_eq!(count(&again, "exists"), 200);
    let again_serials: Vec<&str> = again
        .iter()
        .map(|l| l["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, again_serials);
    assert_eq!(env.store_count(), 200);
}

#[test]
fn a_refused_entry_does_not_stop_the_others() {
    let env = Env::with_ca();
    let m = r#"
[[certificate]]
id = "web-01"
profile = "device"
dns = ["web-01.corp.internal"]

[[certificate]]
id = "confused"
profile = "device"
email = ["someone@corp.example"]

[[certificate]]
id = "alice"
profile = "person"
cn = "Alice Example"
email = ["alice@corp.example"]
"#;
    let lines = batch_json(&env, m, 1);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["status"], "issued");
    assert_eq!(lines[2]["status"], "issued");
    assert_eq!(lines[1]["status"], "refused");
    assert_eq!(lines[1]["serial"], Value::Null);
    let reasons = lines[1]["reasons"].to_string();
    assert!(reasons.contains("email"), "{reasons}");
    assert_eq!(env.store_count(), 2);
    assert!(!env.path("out/confused.pem").exists());
    assert!(!env.path("out/confused.key").exists());

    // Text mode: the refusal and a summary, no progress bar off a terminal.
    let out = env.run(&["batch", "--manifest", "m.toml", "--out-dir", "out"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("refused confused"), "{stdout}");
    assert!(
        stdout.contains("0 issued, 2 already issued, 1 refused"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out));
}

#[test]
fn bad_manifests_exit_2_and_issue_nothing() {
    let env = Env::with_ca();
    let good =
        "[[certificate]]\nid = \"ok\"\nprofile = \"device\"\ndns = [\"ok.corp.internal\"]\n\n";
    let cases = [
        (
            "unknown key",
            format!("{good}[[certificate]]\nid = \"b\"\nprofile = \"device\"\ndnss = [\"b.corp.internal\"]\n"),
            "dnss",
        ),
        (
            "duplicate id",
            format!("{good}[[certificate]]\nid = \"ok\"\nprofile = \"device\"\ndns = [\"c.corp.internal\"]\n"),
            "duplicate id",
        ),
        (
            "unknown profile",
            format!("{good}[[certificate]]\nid = \"d\"\nprofile = \"robot\"\ndns = [\"d.corp.internal\"]\n"),
            "robot",
        ),
        (
            "unsafe id",
            format!("{good}[[certificate]]\nid = \"../escape\"\nprofile = \"device\"\ndns = [\"e.corp.internal\"]\n"),
            "../escape",
        ),
        (
            "malformed name",
            format!("{good}[[certificate]]\nid = \"f\"\nprofile = \"device\"\ndns = [\"bad name!\"]\n"),
            "bad name",
        ),
        (
            "unknown table",
            format!("{good}[[certificates]]\nid = \"g\"\n"),
            "certificates",
        ),
        ("not TOML", "[[certificate]\nid = ".to_string(), "manifest"),
    ];
    for (what, m, needle) in cases {
        std::fs::write(env.path("m.toml"), &m).unwrap();
        let err = env.fails(&["batch", "--manifest", "m.toml", "--out-dir", "out"], 2);
        assert!(err.contains("error:"), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(env.store_count(), 0, "{what}: nothing may be issued");
        assert!(files_in(&env.path("out")).is_empty(), "{what}");
    }
    env.fails(&["batch", "--manifest", "missing.toml"], 2);
}

#[test]
fn batch_reads_the_manifest_from_stdin() {
    let env = Env::with_ca();
    let out = env.run_stdin(
        &["--json", "batch", "--manifest", "-", "--out-dir", "out"],
        manifest(3).as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert!(env.path("out/web-0002.chain.pem").exists());
}

#[test]
fn an_interrupted_batch_is_completed_not_duplicated() {
    let env = Env::with_ca();
    let lines = batch_json(&env, &manifest(2), 0);
    let serial = lines[0]["serial"].as_str().unwrap().to_string();
    // Crash after the record was flushed, before the files got their names: the
    // files are still temporary.
    for ext in ["key", "pem", "chain.pem"] {
        std::fs::rename(
            env.path(&format!("out/web-0000.{ext}")),
            env.path(&format!("out/.web-0000.{ext}.partial")),
        )
        .unwrap();
    }
    // Crash before the record: temporary files of a certificate never recorded.
    for ext in ["key", "pem", "chain.pem"] {
        std::fs::remove_file(env.path(&format!("out/web-0001.{ext}"))).unwrap();
    }
    let lines2 = {
        // web-0001 is recorded, so a fresh id stands for the unrecorded one.
        let m = manifest(2).replace("web-0001", "web-new");
        for ext in ["key", "pem", "chain.pem"] {
            std::fs::write(
                env.path(&format!("out/.web-new.{ext}.partial")),
                "half-written",
            )
            .unwrap();
        }
        batch_json(&env, &m, 0)
    };
    assert_eq!(lines2[0]["status"], "exists");
    assert_eq!(lines2[0]["serial"], serial.as_str());
    assert_eq!(lines2[1]["status"], "issued");
    assert_eq!(env.store_count(), 3);
    let files = files_in(&env.path("out"));
    assert!(files.iter().all(|f| !f.ends_with(".partial")), "{files:?}");
    // The completed files are the recorded certificate and its key.
    let pem = env.ok(&["show", &serial, "--pem"]);
    assert_eq!(
        std::fs::read_to_string(env.path("out/web-0000.pem")).unwrap(),
        pem
    );
    let cert_key = env.openssl_ok(&["x509", "-in", "out/web-0000.pem", "-noout", "-pubkey"]);
    let key_pub = env.openssl_ok(&["pkey", "-in", "out/web-0000.key", "-pubout"]);
    assert_eq!(cert_key, key_pub);
}

#[test]
fn batch_refuses_to_overwrite_unrecorded_files() {
    let env = Env::with_ca();
    std::fs::create_dir(env.path("out")).unwrap();
    std::fs::write(env.path("out/web-0000.pem"), "someone else's").unwrap();
    let lines = batch_json(&env, &manifest(2), 1);
    assert_eq!(lines[0]["status"], "refused");
    assert!(lines[0]["reasons"].to_string().contains("already exists"));
    assert_eq!(lines[1]["status"], "issued");
    assert_eq!(
        std::fs::read_to_string(env.path("out/web-0000.pem")).unwrap(),
        "someone else's"
    );
}

/// Issue one device certificate; returns its serial.
fn issue_device(env: &Env, name: &str) -> String {
    let v = env.json(&["issue", "device", "--dns", name, "--out", name]);
    v["serial"].as_str().unwrap().to_string()
}

#[test]
fn revoke_then_crl_makes_openssl_reject_only_the_revoked_certificate() {
    let env = Env::with_ca();
    let bad = issue_device(&env, "bad.corp.internal");
    let good = issue_device(&env, "good.corp.internal");
    // Serial input: upper case with colons.
    let typed: String = bad
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let v = env.json(&["revoke", &typed, "--reason", "keyCompromise"]);
    assert_eq!(v["status"], "revoked");
    assert_eq!(v["revocation"]["reason"], "keyCompromise");
    // `revoke` published the CRLs itself (number 2: `init` published 1).
    assert_eq!(v["crl_publication"], "published", "{v}");
    let device = v["crls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["issuer"] == "device")
        .unwrap();
    assert_eq!(device["number"], 2, "{v}");
    assert_eq!(device["revoked"], 1, "{v}");

    let crls = env.json(&["crl"]);
    assert_eq!(crls.as_array().unwrap().len(), 3);
    for kind in ["root", "device", "entity"] {
        let f = format!("ca/crl/{kind}.crl");
        assert!(env.path(&f).exists(), "{f}");
    }
    // Each CRL verifies under its CA.
    std::fs::write(
        env.path("cas.pem"),
        std::fs::read_to_string(env.path("ca/root.pem")).unwrap()
            + &std::fs::read_to_string(env.path("ca/device-ca.pem")).unwrap()
            + &std::fs::read_to_string(env.path("ca/entity-ca.pem")).unwrap(),
    )
    .unwrap();
    for kind in ["root", "device", "entity"] {
        let out = env.openssl_ok(&[
            "crl",
            "-in",
            &format!("ca/crl/{kind}.crl"),
            "-noout",
            "-verify",
            "-CAfile",
            "cas.pem",
        ]);
        assert!(out.contains("verify OK"), "{kind}: {out}");
    }
    let device_crl = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(device_crl.contains(&bad.to_uppercase()), "{device_crl}");
    assert!(!device_crl.contains(&good.to_uppercase()), "{device_crl}");
    assert!(device_crl.contains("Key Compromise"), "{device_crl}");
    assert!(device_crl.contains("X509v3 CRL Number"), "{device_crl}");
    // AKI of the CRL = SKI of the device CA.
    let ski = env.x509_text("ca/device-ca.pem");
    let ski = ski
        .lines()
        .skip_while(|l| !l.contains("Subject Key Identifier"))
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        device_crl.contains(&ski),
        "AKI {ski} missing:\n{device_crl}"
    );

    // openssl verify -crl_check_all: every CA in the path supplies a CRL.
    std::fs::write(
        env.path("crls.pem"),
        std::fs::read_to_string(env.path("ca/crl/root.crl")).unwrap()
            + &std::fs::read_to_string(env.path("ca/crl/device.crl")).unwrap(),
    )
    .unwrap();
    let verify = |leaf: &str| {
        env.openssl(&[
            "verify",
            "-crl_check_all",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/device-ca.pem",
            "-CRLfile",
            "crls.pem",
            leaf,
        ])
    };
    let out = verify("bad.corp.internal.pem");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));
    let out = verify("good.corp.internal.pem");
    assert!(out.status.success(), "{}", text(&out));

    // CRL numbers only grow: init 1, revoke 2, crl 3, this one 4.
    env.ok(&["crl"]);
    let n = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-crlnumber"]);
    assert!(n.contains("crlNumber=0x04"), "{n}");
}

#[test]
fn revocation_refusals_and_inventory() {
    let env = Env::with_ca();
    let s = issue_device(&env, "web.corp.internal");
    let other = issue_device(&env, "api.corp.internal");
    env.fails(&["revoke", &s, "--reason", "stolen"], 2);
    env.fails(&["revoke", &s, "--reason", "certificateHold"], 2);
    env.fails(&["revoke", "00ab"], 1);
    // Since issue 12 any string may name a request id: not found is a refusal.
    env.fails(&["revoke", "not-hex"], 1);
    env.fails(&["revoke", "nosuch/x.pem"], 2);
    env.ok(&["revoke", &format!("000{s}"), "--reason", "superseded"]);
    let err = env.fails(&["revoke", &s], 1);
    assert!(err.contains("already revoked"), "{err}");

    let revoked = env.json(&["list", "--status", "revoked"]);
    let revoked = revoked.as_array().unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["serial"], s.as_str());
    let valid = env.json(&["list", "--status", "valid"]);
    assert_eq!(valid.as_array().unwrap().len(), 1);
    assert_eq!(valid[0]["serial"], other.as_str());

    let shown = env.json(&["show", &s]);
    assert_eq!(shown["revocation"]["reason"], "superseded");
    let actions: Vec<&str> = shown["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["issue", "revoke"]);
}

#[test]
fn one_crl_to_stdout_or_a_file() {
    let env = Env::with_ca();
    let out = env.run(&[
        "crl",
        "--issuer",
        "entity",
        "--out",
        "-",
        "--next-update",
        "2d",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    std::fs::write(env.path("e.crl"), &out.stdout).unwrap();
    let t = env.openssl_ok(&["crl", "-in", "e.crl", "-noout", "-text"]);
    assert!(t.contains("Entity Issuing CA"), "{t}");
    assert!(t.contains("No Revoked Certificates"), "{t}");
    // `init` published number 1 of each.
    let v = env.json(&["crl", "--issuer", "device", "--out", "d.crl"]);
    assert_eq!(v["number"], 2);
    assert!(env.path("d.crl").exists());
    // The entity CA's counter is its own.
    let v = env.json(&["crl", "--issuer", "entity", "--out", "e2.crl"]);
    assert_eq!(v["number"], 3);
    env.fails(&["crl", "--out", "x.crl"], 2);
    env.fails(&["crl", "--next-update", "0d"], 2);
}

/// Issue 22, finding 1: `crl --out FILE` replaced an existing file without
/// `--force`. It now does what `export --out` does: an existing file (or
/// directory, or symlink, dangling or not) is refused with exit 2 before
/// anything is signed (no CRL number used), `--force` replaces it atomically
/// (the symlink itself, never its target), `-` is standard output; the same
/// through a running server.
#[test]
fn crl_out_never_replaces_a_file_without_force() {
    use std::os::unix::fs::symlink;
    let env = Env::with_ca();
    std::fs::write(env.path("d.crl"), "someone else's").unwrap();
    let err = env.fails(&["crl", "--issuer", "device", "--out", "d.crl"], 2);
    assert!(
        err.starts_with("error: d.crl already exists; refusing to overwrite it (pass --force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(env.path("d.crl")).unwrap(),
        "someone else's"
    );
    // A directory, a dangling symlink, a missing directory: refused too.
    std::fs::create_dir(env.path("dir.crl")).unwrap();
    let err = env.fails(&["crl", "--issuer", "device", "--out", "dir.crl"], 2);
    assert!(err.contains("dir.crl is a directory"), "{err}");
    symlink("nowhere.crl", env.path("dangling.crl")).unwrap();
    env.fails(&["crl", "--issuer", "device", "--out", "dangling.crl"], 2);
    assert!(!env.path("nowhere.crl").exists());
    let err = env.fails(&["crl", "--issuer", "device", "--out", "no/such/d.crl"], 2);
    assert!(err.contains("does not exist"), "{err}");
    // --force needs --out (it replaces nothing else).
    env.fails(&["crl", "--issuer", "device", "--force"], 2);

    // Nothing above used a CRL number (`init` used 1); --force replaces the
    // file in one rename.
    let v = env.json(&["crl", "--issuer", "device", "--out", "d.crl", "--force"]);
    assert_eq!(v["number"], 2, "{v}");
    let t = env.openssl_ok(&["crl", "-in", "d.crl", "-noout", "-text"]);
    assert!(t.contains("Device Issuing CA"), "{t}");
    assert!(!env.path(".d.crl.tmp").exists());
    // A symlink is replaced itself, its target left alone.
    std::fs::write(env.path("target.crl"), "kept").unwrap();
    symlink("target.crl", env.path("link.crl")).unwrap();
    env.fails(&["crl", "--issuer", "device", "--out", "link.crl"], 2);
    env.ok(&["crl", "--issuer", "device", "--out", "link.crl", "--force"]);
    assert!(!std::fs::symlink_metadata(env.path("link.crl"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(env.path("target.crl")).unwrap(),
        "kept"
    );
    // - is standard output, whatever exists.
    let out = env.run(&["crl", "--issuer", "device", "--out", "-"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN X509 CRL-----"));

    // The same through a running server: refused by the client, before the
    // server signs anything.
    let mut server = crate::common::Server::start(&env, &[]);
    let before = std::fs::read(env.path("d.crl")).unwrap();
    let err = env.fails(
        &[
            "--lock-timeout=200ms",
            "crl",
            "--issuer",
            "device",
            "--out",
            "d.crl",
        ],
        2,
    );
    assert!(err.contains("d.crl already exists"), "{err}");
    assert_eq!(std::fs::read(env.path("d.crl")).unwrap(), before);
    let v = env.json(&[
        "--lock-timeout=200ms",
        "crl",
        "--issuer",
        "device",
        "--out",
        "d.crl",
        "--force",
    ]);
    assert!(v["number"].as_u64() >= Some(4), "{v}");
    assert_ne!(std::fs::read(env.path("d.crl")).unwrap(), before);
    assert_eq!(server.stop(), 0);
}

/// Issue 22, finding 2: under `umask 000`, `batch --out-dir` made its missing
/// directories 0777, and the private keys went into them. Directories mtlsca
/// makes for output are 0700 whatever the umask (of the CLI, or of the server
/// running the batch); an existing directory keeps its mode; keys are 0600,
/// certificates and chains 0644.
#[test]
fn batch_out_dirs_are_0700_whatever_the_umask() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;
    let env = Env::with_ca();
    let mode = |p: &str| std::fs::metadata(env.path(p)).unwrap().permissions().mode() & 0o7777;
    let ca = env.ca_dir().to_string_lossy().into_owned();
    let umask0 = |args: &[&str]| {
        let mut all = vec!["--ca-dir", ca.as_str()];
        all.extend_from_slice(args);
        crate::common::umask0(&env, &all)
    };
    // One entry, `id`, in `id.toml`.
    let manifest = |id: &str| {
        std::fs::write(
            env.path(&format!("{id}.toml")),
            format!("[[certificate]]\nid = \"{id}\"\nprofile = \"device\"\ndns = [\"{id}.corp.internal\"]\n"),
        )
        .unwrap();
        format!("{id}.toml")
    };
    std::fs::create_dir(env.path("kept")).unwrap();
    std::fs::set_permissions(env.path("kept"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (id, out_dir) in [("new", "new/deep/out"), ("kept", "kept/sub")] {
        let m = manifest(id);
        let out = umask0(&["batch", "--manifest", &m, "--out-dir", out_dir])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", text(&out));
    }
    for dir in ["new", "new/deep", "new/deep/out", "kept/sub"] {
        assert_eq!(mode(dir), 0o700, "{dir} has mode {:o}", mode(dir));
    }
    assert_eq!(mode("kept"), 0o755, "an existing directory keeps its mode");
    for (id, dir) in [("new", "new/deep/out"), ("kept", "kept/sub")] {
        assert_eq!(mode(&format!("{dir}/{id}.key")), 0o600);
        assert_eq!(mode(&format!("{dir}/{id}.pem")), 0o644);
        assert_eq!(mode(&format!("{dir}/{id}.chain.pem")), 0o644);
    }

    // A server started under umask 000 makes the directories of a batch sent
    // through its socket 0700 too.
    let mut child = umask0(&["serve", "--listen", "127.0.0.1:0", "--name", "localhost"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = crate::common::Server::port_in(&line);
    let mut server = crate::common::Server { child, port };
    let m = manifest("served");
    let out = umask0(&[
        "--lock-timeout=200ms",
        "batch",
        "--manifest",
        &m,
        "--out-dir",
        "served/out",
    ])
    .output()
    .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    for dir in ["served", "served/out"] {
        assert_eq!(mode(dir), 0o700, "{dir} has mode {:o}", mode(dir));
    }
    assert_eq!(mode("served/out/served.key"), 0o600);
    assert_eq!(mode("served/out/served.pem"), 0o644);
    assert_eq!(server.stop(), 0);
}

/// The same class as `batch --out-dir`: `init` into missing parents and
/// `backup` into a new directory under umask 000 never leave a directory
/// others may write to, not even for a moment (made with their modes).
#[test]
fn init_and_backup_directories_do_not_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;

    let env = Env::new();
    let mode = |p: &str| std::fs::metadata(env.path(p)).unwrap().permissions().mode() & 0o7777;
    let umask0 = |args: &[&str]| {
        let out = crate::common::umask0(&env, args).output().unwrap();
        assert_eq!(code(&out), 0, "{}", text(&out));
    };
    umask0(&["-q", "--ca-dir", "a/b/ca", "init", "--name", "Umask"]);
    for (dir, want) in [
        ("a", 0o755),
        ("a/b", 0o755),
        ("a/b/ca", 0o750),
        ("a/b/ca/private", 0o700),
        ("a/b/ca/profiles", 0o750),
        ("a/b/ca/crl", 0o750),
        ("a/b/ca/db", 0o700),
    ] {
        assert_eq!(mode(dir), want, "{dir} has mode {:o}", mode(dir));
    }
    umask0(&["-q", "--ca-dir", "a/b/ca", "backup", "x/y/bk"]);
    for dir in ["x", "x/y", "x/y/bk", "x/y/bk/private"] {
        assert_eq!(mode(dir), 0o700, "{dir} has mode {:o}", mode(dir));
    }
}

#[test]
fn exports_parse_with_openssl() {
    let env = Env::with_ca();
    let v = env.json(&[
        "issue",
        "person",
        "--cn",
        "Alice Example",
        "--email",
        "alice@corp.example",
        "--out",
        "alice",
    ]);
    let s = v["serial"].as_str().unwrap().to_string();

    let out = env.run(&["export", &s, "--format", "der", "--out", "a.der"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let t = env.openssl_ok(&[
        "x509", "-inform", "der", "-in", "a.der", "-noout", "-subject",
    ]);
    assert!(t.contains("Alice Example"), "{t}");

    let out = env.run(&["export", &s, "--format", "pem"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(env.path("alice.pem")).unwrap()
    );

    env.ok(&["export", &s, "--format", "chain", "--out", "chain.pem"]);
    let t = env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "chain.pem",
        "chain.pem",
    ]);
    assert!(t.contains("OK"), "{t}");
    let chain = std::fs::read_to_string(env.path("chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    env.fails(&["export", "00ff", "--format", "pem"], 1);
}

#[test]
fn pkcs12_opens_with_openssl_and_holds_key_and_chain() {
    let env = Env::with_ca();
    let v = env.json(&[
        "issue",
        "person",
        "--cn",
        "Alice Example",
        "--email",
        "alice@corp.example",
        "--out",
        "alice",
    ]);
    let s = v["serial"].as_str().unwrap().to_string();
    std::fs::write(env.path("pw"), "correct horse\n").unwrap();

    env.ok(&[
        "export",
        &s,
        "--format",
        "p12",
        "--password-file",
        "pw",
        "--out",
        "a.p12",
    ]);
    let info = env.openssl_ok(&[
        "pkcs12",
        "-info",
        "-in",
        "a.p12",
        "-passin",
        "pass:correct horse",
        "-noenc",
    ]);
    assert_eq!(info.matches("BEGIN PRIVATE KEY").count(), 1, "{info}");
    assert_eq!(info.matches("BEGIN CERTIFICATE").count(), 3, "{info}");
    assert!(info.contains("AES-256-CBC"), "{info}");
    assert!(
        info.contains("Entity Issuing CA") && info.contains("Root CA"),
        "{info}"
    );
    // The key inside is the one written at issuance.
    std::fs::write(env.path("info.pem"), &info).unwrap();
    let inside = env.openssl_ok(&["pkey", "-in", "info.pem", "-pubout"]);
    let original = env.openssl_ok(&["pkey", "-in", "alice.key", "-pubout"]);
    assert_eq!(inside, original);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("a.p12"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A wrong password does not open it.
    let out = env.openssl(&[
        "pkcs12",
        "-info",
        "-in",
        "a.p12",
        "-passin",
        "pass:wrong",
        "-noenc",
    ]);
    assert!(!out.status.success());

    // Legacy: 3DES, still opened by OpenSSL 3.0 without -legacy.
    let mut cmd = env.cmd();
    let out = cmd
        .env("MTLSCA_P12_PASSWORD", "s3cret-pw")
        .args([
            "export",
            &s,
            "--format",
            "p12",
            "--legacy",
            "--key",
            "alice.key",
            "--out",
            "l.p12",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let info = env.openssl_ok(&[
        "pkcs12",
        "-info",
        "-in",
        "l.p12",
        "-passin",
        "pass:s3cret-pw",
        "-noenc",
    ]);
    assert!(info.contains("3-KeyTripleDES"), "{info}");
    assert_eq!(info.matches("BEGIN PRIVATE KEY").count(), 1, "{info}");

    // No password, a key that is not the certificate's, a password without p12.
    let err = env.fails(&["export", &s, "--format", "p12", "--out", "x.p12"], 2);
    assert!(err.contains("MTLSCA_P12_PASSWORD"), "{err}");
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "other.corp.internal",
        "--out",
        "other",
    ]);
    let err = env.fails(
        &[
            "export",
            &s,
            "--format",
            "p12",
            "--password-file",
            "pw",
            "--key",
            "other.key",
            "--out",
            "x.p12",
        ],
        2,
    );
    assert!(err.contains("does not belong"), "{err}");
    env.fails(
        &["export", &s, "--format", "pem", "--password-file", "pw"],
        2,
    );
    assert!(!env.path("x.p12").exists());
    // The recorded key is gone: say so.
    std::fs::remove_file(env.path("alice.key")).unwrap();
    let err = env.fails(
        &[
            "export",
            &s,
            "--format",
            "p12",
            "--password-file",
            "pw",
            "--out",
            "x.p12",
        ],
        2,
    );
    assert!(err.contains("--key"), "{err}");
}

#[test]
fn audit_prints_the_log() {
    let env = Env::with_ca();
    let s = issue_device(&env, "web.corp.internal");
    env.ok(&["revoke", &s]);
    env.ok(&["crl", "--issuer", "device", "--out", "d.crl"]);
    let log = env.json(&["audit"]);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // `init` and `revoke` publish every CA's CRL (three entries each).
    let crls = ["crl", "crl", "crl"];
    let want = [&crls[..], &["issue", "revoke"], &crls[..], &["crl"]].concat();
    assert_eq!(actions, want);
    assert_eq!(log[4]["serial"], s.as_str());
    assert_eq!(log[0]["seq"], 0);
    let text_log = env.ok(&["audit"]);
    assert_eq!(text_log.lines().count(), 9, "{text_log}");
    assert!(text_log.contains("revoke"), "{text_log}");
    let later = env.json(&["audit", "--since", "2999-01-01T00:00:00Z"]);
    assert!(later.as_array().unwrap().is_empty());
    env.fails(&["audit", "--since", "last tuesday"], 2);
}

#[test]
fn completions_and_man_page_generate() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.ok(&["completions", shell]);
        assert!(out.contains("mtlsca"), "{shell}");
        assert!(out.contains("batch") && out.contains("revoke"), "{shell}");
    }
    env.fails(&["completions", "tcsh"], 2);
    let page = env.ok(&["man"]);
    assert!(page.contains(".TH mtlsca 1"), "{page}");
    assert!(page.contains("batch"), "{page}");
    env.ok(&["man", "--out-dir", "man"]);
    let pages = files_in(&env.path("man"));
    assert!(pages.contains(&"mtlsca.1".to_string()), "{pages:?}");
    assert!(pages.contains(&"mtlsca-batch.1".to_string()), "{pages:?}");
    let batch_page = std::fs::read_to_string(env.path("man/mtlsca-batch.1")).unwrap();
    assert!(batch_page.contains(".TH"), "{batch_page}");
    assert!(batch_page.contains("manifest"), "{batch_page}");
}

#[test]
fn verify_cert_sees_a_revocation_in_the_store_and_in_the_crls() {
    let env = Env::with_ca();
    let s = issue_device(&env, "gone.corp.internal");
    issue_device(&env, "kept.corp.internal");
    env.ok(&[
        "verify",
        "cert",
        "gone.corp.internal.pem",
        "--role",
        "device",
    ]);
    env.ok(&["revoke", &s, "--reason", "cessationOfOperation"]);
    env.ok(&["crl"]);
    // The CA's store as the revocation source.
    let out = env.run(&[
        "verify",
        "cert",
        "gone.corp.internal.pem",
        "--role",
        "device",
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    // The published CRLs (rustls-webpki reads what `crl` wrote).
    let with_crls = |leaf: &str| {
        env.run(&[
            "verify",
            "cert",
            leaf,
            "--role",
            "device",
            "--trust",
            "ca/root.pem",
            "--untrusted",
            "ca/device-ca.pem",
            "--crl",
            "ca/crl/device.crl",
            "--crl",
            "ca/crl/root.crl",
        ])
    };
    let out = with_crls("gone.corp.internal.pem");
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("CRL"), "{}", text(&out));
    let out = with_crls("kept.corp.internal.pem");
    assert_eq!(code(&out), 0, "{}", text(&out));
}
