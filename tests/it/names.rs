//! Names and name constraints (issue 9, findings 5 and 7): URI constraints from
//! `--permit-dns` and `--permit-uri`, in policy and in the root; URI syntax;
//! patterns; constraints that cannot be read.

use crate::common::Env;

/// A P-256 CSR `NAME.csr` (key `NAME.key`) with subject `/O=Corp` and the SAN.
fn csr(env: &Env, name: &str, san: &str) -> String {
    let key = format!("{name}.key");
    let out = format!("{name}.csr");
    let ext = format!("subjectAltName={san}");
    env.openssl_csr(&key, "/O=Corp", &[&ext], &["-out", &out]);
    out
}

fn openssl_verify(env: &Env, leaf: &str) {
    let root = env.ca_dir().join("root.pem");
    let inter = env.ca_dir().join("device-ca.pem");
    let out = env.openssl_ok(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        inter.to_str().unwrap(),
        leaf,
    ]);
    assert!(out.contains(": OK"), "{out}");
}

/// Finding 5: with `--permit-dns` and no URI constraint, URI hosts are held to
/// the DNS domain, through `issue` and through a CSR.
#[test]
fn permit_dns_holds_uri_hosts_to_the_domain() {
    let env = Env::constrained();
    let err = env.fails(&["issue", "workload", "--uri", "spiffe://evil.com/x"], 1);
    assert!(err.contains("spiffe://evil.com/x"), "{err}");
    assert!(err.contains("name constraints"), "{err}");
    assert!(err.contains("URI:corp.internal"), "{err}");

    let req = csr(&env, "evil", "URI:spiffe://evil.com/x");
    let err = env.fails(&["sign", "workload", "--csr", &req, "--out", "evil.pem"], 1);
    assert!(err.contains("name constraints"), "{err}");
    assert!(!env.path("evil.pem").exists());

    for other in ["https://evil.com/", "https://web.corp.internal.evil.com/"] {
        env.fails(&["issue", "workload", "--uri", other], 1);
    }
    assert_eq!(env.store_count(), 0);

    // Inside the domain: issued, and OpenSSL accepts it under the root's URI subtrees.
    env.ok(&[
        "issue",
        "workload",
        "--uri",
        "spiffe://corp.internal/ns/prod/sa/api",
        "--out",
        "api",
    ]);
    openssl_verify(&env, "api.pem");
    env.ok(&[
        "issue",
        "workload",
        "--uri",
        "https://web.corp.internal/svc",
        "--out",
        "web",
    ]);
    openssl_verify(&env, "web.pem");
    let req = csr(&env, "good", "URI:spiffe://corp.internal/ns/prod/sa/db");
    env.ok(&["sign", "workload", "--csr", &req, "--out", "good.pem"]);
    openssl_verify(&env, "good.pem");
    assert_eq!(env.store_count(), 3);
}

/// Finding 5: a URI with userinfo is refused, and the message says the part
/// before `@` is not the host: bad input as an argument (exit 2), refused in a
/// CSR (exit 1).
#[test]
fn uri_userinfo_is_refused() {
    let env = Env::constrained();
    let err = env.fails(
        &[
            "issue",
            "workload",
            "--uri",
            "https://web.corp.internal@evil.com/",
        ],
        2,
    );
    assert!(err.contains("the part before `@` is not the host"), "{err}");
    assert!(err.contains("`evil.com`"), "{err}");
    let req = csr(&env, "ui", "URI:https://web.corp.internal@evil.com/");
    let err = env.fails(&["sign", "workload", "--csr", &req, "--out", "ui.pem"], 1);
    assert!(err.contains("the part before `@` is not the host"), "{err}");
    // Also on a CA without constraints: userinfo misleads any reader.
    let env = Env::with_ca();
    env.fails(
        &[
            "issue",
            "workload",
            "--uri",
            "https://web.corp.internal@evil.com/",
        ],
        2,
    );
    assert_eq!(env.store_count(), 0);
}

/// Finding 5: the root carries the URI subtrees beside the DNS and IP ones, so
/// relying parties enforce them too.
#[test]
fn root_carries_uri_subtrees() {
    let env = Env::constrained();
    let text = env.x509_text("ca/root.pem");
    assert!(text.contains("X509v3 Name Constraints: critical"), "{text}");
    for want in [
        "DNS:corp.internal",
        "IP:10.0.0.0/255.0.0.0",
        "URI:corp.internal",
        "URI:.corp.internal",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let v = env.json(&["list"]);
    assert_eq!(v.as_array().map(Vec::len), Some(0));
}

/// `init --permit-uri`: explicit URI hosts (exact host or `.domain`), stored in
/// ca.toml, written into the root, enforced in policy.
#[test]
fn permit_uri_is_explicit() {
    let env = Env::new();
    let out = env.json(&[
        "init",
        "--permit-dns",
        "corp.internal",
        "--permit-uri",
        "corp.internal",
    ]);
    assert_eq!(out["permit_uri"], serde_json::json!(["corp.internal"]));
    let toml = std::fs::read_to_string(env.ca_dir().join("ca.toml")).unwrap();
    assert!(toml.contains("permit_uri = [\"corp.internal\"]"), "{toml}");
    let text = env.x509_text("ca/root.pem");
    assert!(text.contains("URI:corp.internal"), "{text}");
    assert!(!text.contains("URI:.corp.internal"), "{text}");

    env.ok(&[
        "issue",
        "workload",
        "--uri",
        "spiffe://corp.internal/a",
        "--out",
        "ok",
    ]);
    // Only that host: a subdomain and another host are refused.
    env.fails(
        &["issue", "workload", "--uri", "https://web.corp.internal/"],
        1,
    );
    env.fails(&["issue", "workload", "--uri", "spiffe://evil.com/a"], 1);
    // A URI without a host cannot lie within a host constraint.
    env.fails(
        &[
            "issue",
            "workload",
            "--uri",
            "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        ],
        1,
    );

    let env = Env::new();
    env.ok(&["init", "--permit-uri", ".mesh.internal"]);
    let text = env.x509_text("ca/root.pem");
    assert!(text.contains("URI:.mesh.internal"), "{text}");
    assert!(!text.contains("DNS:"), "{text}");
    env.ok(&["issue", "workload", "--uri", "spiffe://a.mesh.internal/y"]);
    env.fails(
        &["issue", "workload", "--uri", "spiffe://mesh.internal/x"],
        1,
    );
    // DNS names stay unconstrained: only URI subtrees were asked for.
    env.ok(&["issue", "device", "--dns", "anything.example"]);
}

/// Bad constraint values at `init` are bad usage (exit 2), naming the flag.
#[test]
fn init_refuses_constraints_it_cannot_represent() {
    for (flag, value) in [
        ("--permit-uri", "spiffe://corp.internal"),
        ("--permit-uri", "corp.internal."),
        ("--permit-uri", "u@corp.internal"),
        ("--permit-dns", "corp.internal."),
        ("--permit-dns", "*.corp.internal"),
        ("--permit-ip", "10.0.0.1/8"),
    ] {
        let env = Env::new();
        let err = env.fails(&["init", flag, value], 2);
        assert!(err.contains(flag) && err.contains(value), "{err}");
        assert!(!env.ca_dir().join("ca.toml").exists());
    }
}

/// Finding 3 (the constraint loader part): an entry of ca.toml that does not
/// parse stops every command with exit 3 naming the file, key and value; it is
/// never dropped.
#[test]
fn unreadable_constraints_in_ca_toml_stop_every_command() {
    let env = Env::constrained();
    let cfg = env.ca_dir().join("ca.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let edited = text.replace(
        "permit_dns = [\"corp.internal\"]",
        "permit_dns = [\"corp.internal.\"]",
    );
    assert_ne!(text, edited, "{text}");
    std::fs::write(&cfg, edited).unwrap();
    let err = env.fails(&["issue", "device", "--dns", "web.corp.internal"], 3);
    for want in ["ca.toml", "permit_dns", "corp.internal."] {
        assert!(err.contains(want), "{want}: {err}");
    }
    env.fails(&["issue", "device", "--dns", "evil.com"], 3);
    std::fs::write(
        env.path("m.toml"),
        "[[certificate]]\nid = \"a\"\nprofile = \"device\"\ndns = [\"evil.com\"]\n",
    )
    .unwrap();
    env.fails(&["batch", "--manifest", "m.toml", "--out-dir", "."], 3);
    env.fails(&["list"], 3);

    // The same for a URI constraint.
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(!text.contains("permit_uri"), "{text}");
    std::fs::write(
        &cfg,
        text.replace("corp.internal.", "corp.internal")
            .replace("permit_ip =", "permit_uri = [\"spiffe://x\"]\npermit_ip ="),
    )
    .unwrap();
    let err = env.fails(&["issue", "device", "--dns", "web.corp.internal"], 3);
    assert!(
        err.contains("permit_uri") && err.contains("spiffe://x"),
        "{err}"
    );
}

/// Finding 7: SPIFFE IDs follow the SPIFFE ID spec; other URIs' dot segments are
/// found after percent-decoding and without `;params`.
#[test]
fn uri_syntax_holes_are_closed() {
    let env = Env::with_ca();
    for bad in [
        "spiffe://corp.internal/ns/prod/..%2fadmin",
        "spiffe://corp.internal/ns/prod/a/..;/b",
        "SPIFFE://corp.internal/ns/prod",
        "spiffe://Corp.Internal/ns/prod",
        "spiffe://corp.internal/ns/prod?x=1",
        "spiffe://corp.internal:443/ns/prod",
        "https://web.corp.internal/a/..%2fadmin",
        "https://web.corp.internal/a/..;/b",
    ] {
        let err = env.fails(&["issue", "workload", "--uri", bad], 2);
        assert!(
            err.starts_with("error: ") && err.contains(bad),
            "{bad}: {err}"
        );
    }
    for (n, bad) in [
        "spiffe://corp.internal/ns/prod/..%2fadmin",
        "spiffe://corp.internal/ns/prod/a/..;/b",
        "SPIFFE://corp.internal/ns/prod",
    ]
    .into_iter()
    .enumerate()
    {
        let req = csr(&env, &format!("bad{n}"), &format!("URI:{bad}"));
        env.fails(&["sign", "workload", "--csr", &req, "--out", "x.pem"], 1);
    }
    assert_eq!(env.store_count(), 0);
    env.ok(&[
        "issue",
        "workload",
        "--uri",
        "spiffe://corp.internal/ns/prod/sa/api",
    ]);
}

/// Finding 7: `@corp.example` means exactly that domain, `@.corp.example` its
/// subdomains; `*.corp.internal` names under the domain only.
#[test]
fn profile_patterns_mean_what_they_say() {
    let env = Env::with_ca();
    let profiles = env.ca_dir().join("profiles");
    std::fs::write(
        profiles.join("staff.toml"),
        "name = \"staff\"\nrole = \"entity\"\nkind = \"person\"\npermitted = [\"@corp.example\"]\n",
    )
    .unwrap();
    std::fs::write(
        profiles.join("contractor.toml"),
        "name = \"contractor\"\nrole = \"entity\"\nkind = \"person\"\npermitted = [\"@.corp.example\"]\n",
    )
    .unwrap();
    std::fs::write(
        profiles.join("sub.toml"),
        "name = \"sub\"\nrole = \"device\"\nallow_wildcards = true\npermitted = [\"*.corp.internal\"]\n",
    )
    .unwrap();
    let person = |profile: &str, email: &str| {
        vec![
            "issue".to_string(),
            profile.to_string(),
            "--cn".into(),
            "Alice Example".into(),
            "--email".into(),
            email.to_string(),
        ]
    };
    let run = |args: Vec<String>, want: i32| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        if want == 0 {
            env.ok(&a);
        } else {
            let err = env.fails(&a, want);
            assert!(err.contains("permitted"), "{err}");
        }
    };
    run(person("staff", "alice@corp.example"), 0);
    run(person("staff", "alice@eu.corp.example"), 1);
    run(person("contractor", "bob@eu.corp.example"), 0);
    run(person("contractor", "bob@corp.example"), 1);

    env.ok(&["issue", "sub", "--dns", "web.corp.internal"]);
    env.ok(&["issue", "sub", "--dns", "*.corp.internal"]);
    let err = env.fails(&["issue", "sub", "--dns", "corp.internal"], 1);
    assert!(err.contains("*.corp.internal"), "{err}");

    // URI prefixes keep working, on a segment boundary.
    std::fs::write(
        profiles.join("prod.toml"),
        "name = \"prod\"\nrole = \"device\"\npermitted = [\"spiffe://corp.internal/ns/prod\"]\n",
    )
    .unwrap();
    env.ok(&[
        "issue",
        "prod",
        "--uri",
        "spiffe://corp.internal/ns/prod/sa/api",
        "--out",
        "prod-api",
    ]);
    let err = env.fails(
        &[
            "issue",
            "prod",
            "--uri",
            "spiffe://corp.internal/ns/production/sa/api",
        ],
        1,
    );
    assert!(err.contains("permitted"), "{err}");

    // Printing a pattern gives back what it was: `profile show` keeps `*.`.
    let shown = env.ok(&["profile", "show", "sub"]);
    assert!(shown.contains("\"*.corp.internal\""), "{shown}");
    let shown = env.ok(&["profile", "show", "contractor"]);
    assert!(shown.contains("\"@.corp.example\""), "{shown}");
}
