//! Issuing CAs under an external root (issue 24): `init --external-root`, an
//! OpenSSL-made root signing the two requests, `ca install` and its refusals,
//! the root's name constraints held by policy, and the documented recipe run
//! as written.

use std::path::Path;
use std::process::Command;

use crate::common::{code, text, Env, BIN};

/// A self-signed P-256 root made by OpenSSL: `NAME.pem`, `NAME.key`; `extra`
/// are more `-addext` values (name constraints).
fn openssl_root(env: &Env, name: &str, subj: &str, extra: &[&str]) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &pem,
        "-days",
        "3650",
        "-subj",
        subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    for e in extra {
        args.extend(["-addext", e]);
    }
    env.openssl_ok(&args);
}

/// `openssl x509 -req`: the root `root` signs `csr` into `out` with a CA
/// extension file whose extendedKeyUsage line is `eku` (none when `None`).
fn openssl_sign(env: &Env, root: &str, csr: &str, eku: Option<&str>, out: &str) {
    let mut ext = String::from(
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n",
    );
    if let Some(e) = eku {
        ext.push_str(&format!("extendedKeyUsage={e}\n"));
    }
    let ext_file = format!("{out}.ext");
    std::fs::write(env.path(&ext_file), ext).unwrap();
    env.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        &format!("{root}.pem"),
        "-CAkey",
        &format!("{root}.key"),
        "-set_serial",
        "0x1234",
        "-days",
        "1000",
        "-extfile",
        &ext_file,
        "-out",
        out,
    ]);
}

fn pending_msg(err: &str) {
    assert!(
        err.contains("waits for its issuing CA certificates") && err.contains("mtlsca ca install"),
        "{err}"
    );
}

#[test]
fn install_refuses_what_does_not_fit_and_a_pending_ca_says_what_to_do() {
    let env = Env::new();
    openssl_root(
        &env,
        "extroot",
        "/O=Corp/CN=Corp Root",
        &["nameConstraints=critical,permitted;DNS:corp.internal"],
    );
    // An intermediate is not a trust anchor; a leaf is not a CA.
    env.openssl_csr("inter.key", "/CN=Inter", &[], &["-out", "inter.csr"]);
    openssl_sign(
        &env,
        "extroot",
        "inter.csr",
        Some("serverAuth"),
        "inter.pem",
    );
    let err = env.fails(&["init", "--external-root", "inter.pem"], 2);
    assert!(
        err.contains("is not self-signed") && err.contains("trust anchor"),
        "{err}"
    );
    assert!(!env.ca_dir().exists());

    env.ok(&["init", "--name", "Corp", "--external-root", "extroot.pem"]);
    for f in ["device-ca.csr", "entity-ca.csr", "root.pem", "pending.toml"] {
        assert!(env.ca_dir().join(f).exists(), "{f}");
    }
    assert!(!env.ca_dir().join("ca.toml").exists());
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(env.ca_dir().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("private/device-ca.key"), 0o600);
    assert_eq!(mode("private"), 0o700);
    assert!(!env.ca_dir().join("private/root.key").exists());
    // OpenSSL reads the requests: the role's EKU and CA:TRUE, pathlen 0.
    let req = env.openssl_ok(&[
        "req",
        "-in",
        "ca/device-ca.csr",
        "-noout",
        "-text",
        "-verify",
    ]);
    assert!(req.contains("TLS Web Server Authentication"), "{req}");
    assert!(req.contains("CA:TRUE, pathlen:0"), "{req}");
    assert!(req.contains("Corp Device Issuing CA"), "{req}");

    // Every other command says what to do (exit 3); init again is refused.
    for args in [
        &["issue", "device", "--dns", "a.corp.internal"][..],
        &["list"],
        &["crl"],
    ] {
        pending_msg(&env.fails(args, 3));
    }
    pending_msg(&env.fails(&["init", "--external-root", "extroot.pem"], 3));

    // The right certificates, and wrong ones.
    openssl_sign(
        &env,
        "extroot",
        "ca/device-ca.csr",
        Some("serverAuth"),
        "device-ca.pem",
    );
    openssl_sign(
        &env,
        "extroot",
        "ca/entity-ca.csr",
        Some("clientAuth"),
        "entity-ca.pem",
    );
    // Another key: a request made by OpenSSL, signed by the right root.
    env.openssl_csr(
        "other.key",
        "/O=Corp/CN=Corp Device Issuing CA",
        &[],
        &["-out", "other.csr"],
    );
    openssl_sign(
        &env,
        "extroot",
        "other.csr",
        Some("serverAuth"),
        "other-key.pem",
    );
    // The device CA with the entity's EKU, both, or none.
    openssl_sign(
        &env,
        "extroot",
        "ca/device-ca.csr",
        Some("clientAuth"),
        "dev-client.pem",
    );
    openssl_sign(
        &env,
        "extroot",
        "ca/device-ca.csr",
        Some("serverAuth,clientAuth"),
        "dev-dual.pem",
    );
    openssl_sign(&env, "extroot", "ca/device-ca.csr", None, "dev-none.pem");
    // Signed by another root of the same name.
    openssl_root(&env, "impostor", "/O=Corp/CN=Corp Root", &[]);
    openssl_sign(
        &env,
        "impostor",
        "ca/device-ca.csr",
        Some("serverAuth"),
        "dev-impostor.pem",
    );
    for (device, entity, why) in [
        (
            "other-key.pem",
            "entity-ca.pem",
            "its key is not the device issuing CA's key",
        ),
        (
            "entity-ca.pem",
            "entity-ca.pem",
            "its key is not the device issuing CA's key",
        ),
        (
            "dev-client.pem",
            "entity-ca.pem",
            "extendedKeyUsage must be serverAuth alone",
        ),
        (
            "dev-dual.pem",
            "entity-ca.pem",
            "extendedKeyUsage must be serverAuth alone",
        ),
        ("dev-none.pem", "entity-ca.pem", "no extendedKeyUsage"),
        (
            "dev-impostor.pem",
            "entity-ca.pem",
            "does not validate to the root in root.pem",
        ),
        (
            "device-ca.pem",
            "device-ca.pem",
            "its key is not the entity issuing CA's key",
        ),
    ] {
        let err = env.fails(
            &["ca", "install", "--device", device, "--entity", entity],
            1,
        );
        assert!(err.contains(why), "{device}/{entity}: {err}");
        assert!(!env.ca_dir().join("ca.toml").exists());
        assert!(env.ca_dir().join("pending.toml").exists());
        pending_msg(&env.fails(&["list"], 3));
    }

    // After the refusals, the right ones install, over what an interrupted
    // install would have left (files written before ca.toml).
    std::fs::write(env.ca_dir().join("device-ca.pem"), "half-written").unwrap();
    std::fs::create_dir(env.ca_dir().join("db")).unwrap();
    let out = env.json(&[
        "ca",
        "install",
        "--device",
        "device-ca.pem",
        "--entity",
        "entity-ca.pem",
    ]);
    assert_eq!(out["external_root"], true, "{out}");
    env.openssl_ok(&["verify", "-CAfile", "extroot.pem", "ca/device-ca.pem"]);
    assert!(!env.ca_dir().join("pending.toml").exists());
    assert!(!env.ca_dir().join("device-ca.csr").exists());
    let config = std::fs::read_to_string(env.ca_dir().join("ca.toml")).unwrap();
    assert!(config.contains("external_root = true"), "{config}");
    assert!(
        config.contains("permit_dns = [\"corp.internal\"]"),
        "{config}"
    );
    // Once complete, install is refused.
    let err = env.fails(
        &[
            "ca",
            "install",
            "--device",
            "device-ca.pem",
            "--entity",
            "entity-ca.pem",
        ],
        3,
    );
    assert!(err.contains("complete already"), "{err}");
}

#[test]
fn constraints_the_root_cannot_have_honoured_are_refused() {
    let env = Env::new();
    openssl_root(
        &env,
        "extroot",
        "/O=Corp/CN=Corp Root",
        &["nameConstraints=critical,permitted;DNS:corp.internal,excluded;DNS:secret.corp.internal"],
    );
    env.ok(&["init", "--external-root", "extroot.pem"]);
    openssl_sign(
        &env,
        "extroot",
        "ca/device-ca.csr",
        Some("serverAuth"),
        "device-ca.pem",
    );
    openssl_sign(
        &env,
        "extroot",
        "ca/entity-ca.csr",
        Some("clientAuth"),
        "entity-ca.pem",
    );
    let err = env.fails(
        &[
            "ca",
            "install",
            "--device",
            "device-ca.pem",
            "--entity",
            "entity-ca.pem",
        ],
        1,
    );
    assert!(err.contains("excluded DNS:secret.corp.internal"), "{err}");
    assert!(!env.ca_dir().join("ca.toml").exists());
}

/// The shell block of docs/operations.md's "Under an existing root".
fn documented_recipe() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let section = doc
        .split("\n## Under an existing root\n")
        .nth(1)
        .expect("the section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .expect("a sh block")
        .split("\n```")
        .next()
        .unwrap();
    block.to_string()
}

#[test]
fn the_documented_recipe_makes_a_ca_whose_leaves_openssl_verifies_against_the_root() {
    let env = Env::new();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", path)
        .arg("-ec")
        .arg(documented_recipe())
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "the recipe failed:\n{}", text(&out));

    // A name inside the root's constraints: issued, and OpenSSL validates it to
    // the external root.
    env.ok(&["issue", "device", "--dns", "web.corp.internal"]);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "extroot.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "web.corp.internal.pem",
    ]);
    env.ok(&[
        "issue",
        "person",
        "--cn",
        "Alice",
        "--email",
        "alice@corp.example",
    ]);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "extroot.pem",
        "-untrusted",
        "ca/entity-ca.pem",
        "-purpose",
        "sslclient",
        "alice@corp.example.pem",
    ]);
    // Outside them: refused by policy before signing, nothing recorded.
    let out = env.run(&["--json", "issue", "device", "--dns", "web.other.example"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("name-outside-constraints"),
        "{}",
        text(&out)
    );
    assert!(!env.path("web.other.example.pem").exists());
    let listed = env.json(&["list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(
        !listed.to_string().contains("web.other.example"),
        "{listed}"
    );

    // The bundle: the external root, then the two issuing CAs.
    let bundle = std::fs::read_to_string(env.ca_dir().join("ca-bundle.pem")).unwrap();
    let root = std::fs::read_to_string(env.path("extroot.pem")).unwrap();
    let b64 = |pem: &str| -> String {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
    };
    assert!(b64(&bundle).starts_with(&b64(&root)), "{bundle}");
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 3);

    // CRLs: the issuing CAs' only; the root's are its owner's.
    env.ok(&[
        "revoke",
        "web.corp.internal.pem",
        "--reason",
        "keyCompromise",
    ]);
    env.ok(&["crl"]);
    assert!(env.ca_dir().join("crl/device.crl").exists());
    assert!(env.ca_dir().join("crl/entity.crl").exists());
    assert!(!env.ca_dir().join("crl/root.crl").exists());
    let err = env.fails(&["crl", "--issuer", "root", "--out", "-"], 3);
    assert!(err.contains("the root is external"), "{err}");
    // OpenSSL checks the device CA's CRL against the external root's path.
    let out = env.openssl(&[
        "verify",
        "-crl_check",
        "-CRLfile",
        "ca/crl/device.crl",
        "-CAfile",
        "extroot.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "web.corp.internal.pem",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));
}

#[test]
fn constraints_of_the_root_and_the_issuing_cas_meet() {
    let env = Env::new();
    openssl_root(
        &env,
        "extroot",
        "/O=Corp/CN=Corp Root",
        &["nameConstraints=critical,permitted;DNS:corp.internal,permitted;IP:10.0.0.0/255.0.0.0"],
    );
    env.ok(&[
        "init",
        "--external-root",
        "extroot.pem",
        "--permit-ip",
        "10.1.0.0/16",
    ]);
    // The device CA's certificate narrows the root's DNS domain further.
    let ext = "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nextendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\nnameConstraints=critical,permitted;DNS:web.corp.internal\n";
    std::fs::write(env.path("device.ext"), ext).unwrap();
    env.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        "ca/device-ca.csr",
        "-CA",
        "extroot.pem",
        "-CAkey",
        "extroot.key",
        "-set_serial",
        "7",
        "-days",
        "100",
        "-extfile",
        "device.ext",
        "-out",
        "device-ca.pem",
    ]);
    openssl_sign(
        &env,
        "extroot",
        "ca/entity-ca.csr",
        Some("clientAuth"),
        "entity-ca.pem",
    );
    let out = env.json(&[
        "ca",
        "install",
        "--device",
        "device-ca.pem",
        "--entity",
        "entity-ca.pem",
    ]);
    let nc: Vec<&str> = out["name_constraints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        nc.contains(&"web.corp.internal") && nc.contains(&"10.1.0.0/16"),
        "{out}"
    );
    assert!(
        !nc.contains(&"corp.internal") && !nc.contains(&"10.0.0.0/8"),
        "{out}"
    );

    env.ok(&[
        "issue",
        "device",
        "--dns",
        "a.web.corp.internal",
        "--ip",
        "10.1.2.3",
    ]);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "extroot.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "a.web.corp.internal.pem",
    ]);
    for args in [
        &["issue", "device", "--dns", "db.corp.internal"][..],
        &[
            "issue",
            "device",
            "--dns",
            "b.web.corp.internal",
            "--ip",
            "10.2.0.1",
        ],
    ] {
        let out = env.run(&[&["--json"][..], args].concat());
        assert_eq!(code(&out), 1, "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("name-outside-constraints"),
            "{}",
            text(&out)
        );
    }
    assert_eq!(env.store_count(), 1);
}
