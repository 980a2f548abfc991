//! `trust install` / `trust uninstall` (issue 24), only ever against stores the
//! test makes in its temp dir: a sysroot tree for Debian's
//! update-ca-certificates (its own ca-certificates.conf and hooks directory),
//! a new NSS database (`certutil -N`) and a new Java keystore. The stores are
//! read back with their own tools.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{code, text, Env};

/// Whether a tool is missing: a skip, or an error under `MTLSCA_REQUIRE_TRUST_TOOLS`.
fn missing(tool: &str, package: &str) -> bool {
    let found = Path::new(tool).is_absolute() && Path::new(tool).is_file()
        || Command::new(tool)
            .arg("-help")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if found {
        return false;
    }
    if std::env::var_os("MTLSCA_REQUIRE_TRUST_TOOLS").is_some() {
        panic!("{tool} is required (MTLSCA_REQUIRE_TRUST_TOOLS) but not installed (apt-get install {package})");
    }
    eprintln!("skipped: {tool} is not installed (apt-get install {package})");
    true
}

fn tool(env: &Env, program: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(program)
        .current_dir(env.dir.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (code(&out), text(&out))
}

/// A tree standing in for `/`: one CA of its own in `/usr/share/ca-certificates`
/// listed in its ca-certificates.conf, an empty hooks directory.
fn sysroot(env: &Env) {
    for d in [
        "sys/etc/ssl/certs",
        "sys/etc/ca-certificates/update.d",
        "sys/usr/share/ca-certificates/test",
    ] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    env.openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "sys/usr/share/ca-certificates/test/other-root.crt",
        "-subj",
        "/CN=Some Other Root",
        "-days",
        "30",
    ]);
    std::fs::write(
        env.path("sys/etc/ca-certificates.conf"),
        "test/other-root.crt\n",
    )
    .unwrap();
}

/// How many certificates of the sysroot's bundle are mtlsca's root.
fn in_bundle(env: &Env) -> usize {
    let bundle =
        std::fs::read_to_string(env.path("sys/etc/ssl/certs/ca-certificates.crt")).unwrap();
    let root = std::fs::read_to_string(env.ca_dir().join("root.pem")).unwrap();
    let b64 = |pem: &str| -> String { pem.lines().filter(|l| !l.starts_with("-----")).collect() };
    let body = b64(&root);
    assert!(bundle.contains("BEGIN CERTIFICATE"), "{bundle}");
    let all: String = bundle.lines().filter(|l| !l.starts_with("-----")).collect();
    all.matches(&body).count()
}

#[test]
fn install_puts_the_root_in_each_store_and_uninstall_takes_exactly_it_out() {
    if missing("/usr/sbin/update-ca-certificates", "ca-certificates")
        || missing("certutil", "libnss3-tools")
        || missing("keytool", "default-jdk-headless")
    {
        return;
    }
    let env = Env::new();
    env.ok(&["init", "--name", "Lab CA"]);
    sysroot(&env);
    std::fs::create_dir(env.path("nssdb")).unwrap();
    let (rc, out) = tool(
        &env,
        "certutil",
        &["-N", "--empty-password", "-d", "sql:nssdb"],
    );
    assert_eq!(rc, 0, "{out}");
    // Something of the user's own in the NSS database and the keystore, which
    // uninstall must leave alone.
    let (rc, out) = tool(
        &env,
        "certutil",
        &[
            "-A",
            "-d",
            "sql:nssdb",
            "-t",
            "C,,",
            "-n",
            "theirs",
            "-a",
            "-i",
            "sys/usr/share/ca-certificates/test/other-root.crt",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    let (rc, out) = tool(
        &env,
        "keytool",
        &[
            "-importcert",
            "-noprompt",
            "-alias",
            "theirs",
            "-file",
            "sys/usr/share/ca-certificates/test/other-root.crt",
            "-keystore",
            "lab.p12",
            "-storepass",
            "s3cret-store",
        ],
    );
    assert_eq!(rc, 0, "{out}");
    std::fs::write(env.path("storepass"), "s3cret-store\n").unwrap();
    std::fs::set_permissions(
        env.path("storepass"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let targets = [
        "--sysroot",
        "sys",
        "--nss",
        "nssdb",
        "--java",
        "lab.p12",
        "--java-storepass-file",
        "storepass",
    ];

    let mut args = vec!["trust", "install"];
    args.extend(targets);
    let report = env.json(&args);
    assert_eq!(report["ok"], true, "{report}");
    let nick = report["anchors"][0]["nickname"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        nick.starts_with("mtlsca-lab-ca-") && nick.len() == "mtlsca-lab-ca-".len() + 8,
        "{nick}"
    );
    let statuses: Vec<&str> = report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["installed", "installed", "installed"],
        "{report}"
    );

    // Each store, read with its own tool.
    let local = env.path(&format!("sys/usr/local/share/ca-certificates/{nick}.crt"));
    assert!(local.is_file());
    assert_eq!(in_bundle(&env), 1);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "sys/etc/ssl/certs/ca-certificates.crt",
        "ca/root.pem",
    ]);
    let (rc, listed) = tool(&env, "certutil", &["-L", "-d", "sql:nssdb"]);
    assert_eq!(rc, 0, "{listed}");
    assert!(
        listed.contains(&nick) && listed.contains("theirs"),
        "{listed}"
    );
    let (rc, listed) = tool(
        &env,
        "keytool",
        &[
            "-list",
            "-keystore",
            "lab.p12",
            "-storepass",
            "s3cret-store",
        ],
    );
    assert_eq!(rc, 0, "{listed}");
    assert!(
        listed.contains(&nick) && listed.contains("theirs"),
        "{listed}"
    );

    // Again: already there, nothing doubled.
    let out = env.ok(&args);
    assert_eq!(out.matches("already there").count(), 3, "{out}");
    assert_eq!(in_bundle(&env), 1);

    // Uninstall: exactly what install added.
    let mut args = vec!["trust", "uninstall"];
    args.extend(targets);
    let out = env.ok(&args);
    assert_eq!(out.matches(": removed").count(), 3, "{out}");
    assert!(!local.exists());
    assert_eq!(in_bundle(&env), 0);
    let bundle =
        std::fs::read_to_string(env.path("sys/etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 1, "{bundle}");
    let (_, listed) = tool(&env, "certutil", &["-L", "-d", "sql:nssdb"]);
    assert!(
        !listed.contains(&nick) && listed.contains("theirs"),
        "{listed}"
    );
    let (_, listed) = tool(
        &env,
        "keytool",
        &[
            "-list",
            "-keystore",
            "lab.p12",
            "-storepass",
            "s3cret-store",
        ],
    );
    assert!(
        !listed.contains(&nick) && listed.contains("theirs"),
        "{listed}"
    );
    let out = env.ok(&args);
    assert_eq!(out.matches(": not there").count(), 3, "{out}");
}

#[test]
fn a_store_that_fails_is_reported_and_the_others_still_done() {
    if missing("certutil", "libnss3-tools") {
        return;
    }
    let env = Env::new();
    env.ok(&["init", "--name", "Lab"]);
    std::fs::create_dir(env.path("nssdb")).unwrap();
    let (rc, out) = tool(
        &env,
        "certutil",
        &["-N", "--empty-password", "-d", "sql:nssdb"],
    );
    assert_eq!(rc, 0, "{out}");
    std::fs::create_dir(env.path("empty")).unwrap();
    let out = env.run(&[
        "--json", "trust", "install", "--nss", "empty", "--nss", "nssdb",
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["stores"][0]["status"], "failed", "{report}");
    assert!(
        report["stores"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no NSS database"),
        "{report}"
    );
    assert_eq!(report["stores"][1]["status"], "installed", "{report}");
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("error: trust install failed in 1 of 2 stores"));
    let (_, listed) = tool(&env, "certutil", &["-L", "-d", "sql:nssdb"]);
    assert!(listed.contains("mtlsca-lab-"), "{listed}");
}
