//! Policy against arbitrary requests: any text, one field a line (`dns=`, `ip=`,
//! `uri=`, `email=`, `cn=`, `org=`, `country=`, `validity=`), through
//! `policy::check` for every built-in profile and a narrowed one, under CA name
//! constraints. What policy approves is checked by an independent oracle: nothing
//! it approves may lie outside the constraints, the profile's name kinds or its
//! maximum validity; no approved value may hold a control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtlsca::key::PublicKeyKind;
use mtlsca::names::SanName;
use mtlsca::policy::{self, Origin, RequestedContent};
use mtlsca::profile::{self, Profile};

const NARROW: &str = r#"
name = "narrow"
role = "device"
names = { dns = true, ip = true, uri = true }
allow_wildcards = true
permitted = ["spiffe://corp.internal/ns/prod", "svc.corp.internal", "10.1.0.0/16"]
validity = { default = "1d", max = "7d" }
"#;

fn in_dns(name: &str, domain: &str) -> bool {
    let n = name.trim_start_matches("*.").to_ascii_lowercase();
    n == domain || n.ends_with(&format!(".{domain}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut req = RequestedContent::default();
    for line in text.split('\n') {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.to_string();
        match k {
            "dns" => req.dns.push(v),
            "ip" => req.ip.push(v),
            "uri" => req.uri.push(v),
            "email" => req.email.push(v),
            "cn" => req.cn = Some(v),
            "org" => req.org = Some(v),
            "country" => req.country = Some(v),
            "validity" => req.validity = Some(v),
            _ => {}
        }
    }
    let now = time::macros::datetime!(2026-06-01 00:00 UTC);
    let ca_not_after = time::macros::datetime!(2030-06-01 00:00 UTC);
    let constraints = [
        mtlsca::names::Pattern::parse("corp.internal").unwrap(),
        mtlsca::names::Pattern::parse("10.0.0.0/8").unwrap(),
    ];
    let mut profiles: Vec<Profile> = profile::BUILTIN
        .iter()
        .map(|(n, _)| profile::builtin(n).unwrap())
        .collect();
    profiles.push(Profile::parse(NARROW, "narrow").unwrap());
    for p in &profiles {
        let narrow = p.name == "narrow";
        let Ok(a) = policy::check(
            p,
            &constraints,
            &req,
            PublicKeyKind::EcdsaP256,
            ca_not_after,
            Origin::Arguments,
            now,
        ) else {
            continue;
        };
        assert_eq!(a.role, p.role);
        assert!(a.not_after <= ca_not_after && a.not_before <= a.not_after);
        assert!(a.not_after - a.not_before <= p.max_validity.duration() + time::Duration::hours(1));
        for n in &a.names {
            assert!(p.names.allows(n.kind()), "{}: {n} of a kind it does not accept", p.name);
            match n {
                SanName::Dns(d) => {
                    assert!(in_dns(d, "corp.internal"), "{}: {d} outside the CA", p.name);
                    assert!(!narrow || in_dns(d, "svc.corp.internal"), "narrow: {d}");
                    assert!(p.allow_wildcards || !d.contains('*'), "{}: {d}", p.name);
                }
                SanName::Ip(ip) => {
                    let std::net::IpAddr::V4(v4) = ip else {
                        panic!("{}: {ip} outside 10.0.0.0/8", p.name);
                    };
                    assert_eq!(v4.octets()[0], 10, "{}: {ip}", p.name);
                    assert!(!narrow || v4.octets()[1] == 1, "narrow: {ip}");
                }
                SanName::Uri(u) => {
                    assert!(!u.chars().any(|c| c.is_control() || c == ' '), "{u:?}");
                    if narrow {
                        let rest = u.strip_prefix("spiffe://corp.internal/ns/prod");
                        assert!(
                            rest.is_some_and(|r| r.is_empty() || r.starts_with(['/', '?', '#'])),
                            "narrow: {u} outside spiffe://corp.internal/ns/prod"
                        );
                        assert!(!u.split('/').any(|s| s == ".." || s == "."), "narrow: {u}");
                    }
                }
                SanName::Email(e) => {
                    assert!(!e.chars().any(|c| c.is_control() || c == ' '), "{e:?}");
                }
            }
        }
        for v in [&a.subject.cn, &a.subject.org, &a.subject.country].into_iter().flatten() {
            assert!(!v.chars().any(char::is_control), "{}: {v:?}", p.name);
        }
    }
});
