//! Policy: whether a request may be signed under a profile and the CA's
//! constraints, and exactly what the certificate will then say. Every violation is
//! collected and reported together, each naming its rule. No I/O, no clock.

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::key::PublicKeyKind;
use crate::names::{self, printable, Pattern, SanName};
use crate::profile::{Profile, Requirement, Validity};
use crate::role::{eku_conflict, Eku, EntityKind, NameKind, Role};

/// Where the requested content came from: syntax errors in arguments are bad
/// usage (exit 2); in a CSR they are refusals of what it asks for (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Arguments,
    Csr,
}

/// What a requester asks for, as typed (arguments) or as found in a CSR.
#[derive(Debug, Clone, Default)]
pub struct RequestedContent {
    pub dns: Vec<String>,
    pub ip: Vec<String>,
    pub uri: Vec<String>,
    pub email: Vec<String>,
    pub cn: Option<String>,
    pub org: Option<String>,
    pub country: Option<String>,
    pub validity: Option<String>,
    /// EKU OIDs a CSR requests (None: it requests no EKU extension).
    pub requested_ekus: Option<Vec<String>>,
    /// A CSR asks for basicConstraints CA:TRUE.
    pub requests_ca: bool,
    /// Other names a CSR requests that mtlsca never issues (UPN, directoryName, ...).
    pub unsupported_names: Vec<String>,
    /// Critical extensions a CSR requests that mtlsca does not know.
    pub unknown_critical: Vec<String>,
}

/// The subject as it will be written (C, O, CN order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    pub country: Option<String>,
    pub org: Option<String>,
    pub cn: Option<String>,
}

impl Subject {
    /// "C=DE, O=Acme, CN=web" (empty when the subject is empty).
    pub fn to_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.country {
            parts.push(format!("C={c}"));
        }
        if let Some(o) = &self.org {
            parts.push(format!("O={o}"));
        }
        if let Some(cn) = &self.cn {
            parts.push(format!("CN={cn}"));
        }
        parts.join(", ")
    }
}

/// A request that passed policy: exactly what goes into the certificate.
#[derive(Debug, Clone)]
pub struct Approved {
    pub role: Role,
    pub subject: Subject,
    pub names: Vec<SanName>,
    pub ekus: Vec<Eku>,
    /// keyEncipherment in addition to digitalSignature (RSA device keys).
    pub key_encipherment: bool,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Check a request against its profile, the CA's name constraints and the issuing
/// CA's own lifetime.
pub fn check(
    profile: &Profile,
    ca_constraints: &[Pattern],
    req: &RequestedContent,
    key: PublicKeyKind,
    ca_not_after: OffsetDateTime,
    origin: Origin,
    now: OffsetDateTime,
) -> Result<Approved> {
    let mut refusals: Vec<String> = Vec::new();
    let mut syntax: Vec<String> = Vec::new();
    let role = profile.role;

    // Names: parse every one (never copy blindly), then check kind, wildcard and bounds.
    let mut names: Vec<SanName> = Vec::new();
    for (kind, values) in [
        (NameKind::Dns, &req.dns),
        (NameKind::Ip, &req.ip),
        (NameKind::Uri, &req.uri),
        (NameKind::Email, &req.email),
    ] {
        for v in values {
            match SanName::parse(kind, v) {
                Ok(n) => {
                    if !names.contains(&n) {
                        names.push(n)
                    }
                }
                Err(m) => syntax.push(m),
            }
        }
    }
    for n in &names {
        refusals.extend(check_name(profile, ca_constraints, n));
    }
    for u in &req.unsupported_names {
        refusals.push(format!(
            "the CSR requests a {u} name, which mtlsca never issues"
        ));
    }

    // Identity: every certificate must name someone or something.
    let has = |k: NameKind| names.iter().any(|n| n.kind() == k);
    match (role, profile.kind) {
        (Role::Device, _) => {
            if !(has(NameKind::Dns) || has(NameKind::Ip) || has(NameKind::Uri)) {
                refusals.push(
                    "no identity: a device certificate needs at least one DNS, IP or URI name (--dns, --ip, --uri)".into(),
                );
            }
        }
        (Role::Entity, Some(EntityKind::Person)) => {
            if !has(NameKind::Email) {
                refusals.push(
                    "no identity: a person certificate needs at least one email address (--email)"
                        .into(),
                );
            }
        }
        (Role::Entity, _) => {}
    }

    // Subject attributes, by the profile's rules.
    let mut subject = Subject::default();
    let attr = |label: &str,
                flag: &str,
                value: &Option<String>,
                rule: Requirement,
                refusals: &mut Vec<String>,
                syntax: &mut Vec<String>|
     -> Option<String> {
        match (value, rule) {
            (Some(_), Requirement::Forbidden) => {
                refusals.push(format!(
                    "profile `{}` forbids {label} in the subject",
                    profile.name
                ));
                None
            }
            (Some(v), _) => {
                let checked = if flag == "--country" {
                    names::check_country(v)
                } else {
                    names::check_dn_value(label, v)
                };
                match checked {
                    Ok(v) => Some(v),
                    Err(m) => {
                        syntax.push(m);
                        None
                    }
                }
            }
            (None, Requirement::Required) => {
                refusals.push(format!(
                    "profile `{}` requires {label} ({flag})",
                    profile.name
                ));
                None
            }
            (None, _) => None,
        }
    };
    subject.cn = attr(
        "a common name",
        "--cn",
        &req.cn,
        profile.subject.common_name,
        &mut refusals,
        &mut syntax,
    );
    subject.org = attr(
        "organizationName",
        "--org",
        &req.org,
        profile.subject.organization,
        &mut refusals,
        &mut syntax,
    );
    subject.country = attr(
        "countryName",
        "--country",
        &req.country,
        profile.subject.country,
        &mut refusals,
        &mut syntax,
    );
    if role == Role::Device
        && subject.cn.is_none()
        && profile.subject.common_name != Requirement::Forbidden
    {
        // A device's CN defaults to its first DNS or IP name (for tools that still read CN).
        subject.cn = names
            .iter()
            .find(|n| matches!(n, SanName::Dns(_) | SanName::Ip(_)))
            .map(|n| n.value());
    }
    if let Some(cn) = &subject.cn {
        if role == Role::Entity && looks_like_host(cn) {
            refusals.push(format!(
                "common name `{}` looks like a host name: an entity certificate names a person or organisation, not a host",
                printable(cn)
            ));
        }
        if role == Role::Device && cn.contains('@') {
            refusals.push(format!(
                "common name `{}` looks like an email address: a device certificate names a machine",
                printable(cn)
            ));
        }
    }

    // What a CSR asks for beyond names: checked, never copied.
    if let Some(ekus) = &req.requested_ekus {
        let known: Vec<Eku> = ekus.iter().filter_map(|o| Eku::from_oid(o)).collect();
        if let Some(conflict) = eku_conflict(role, &known) {
            refusals.push(format!("the CSR requests {}: {conflict}", eku_list(ekus)));
        } else {
            for o in ekus {
                let allowed =
                    Eku::from_oid(o).is_some_and(|e| profile.extended_key_usage.contains(&e));
                if !allowed {
                    refusals.push(format!(
                        "the CSR requests EKU {}, which profile `{}` does not issue (it issues {})",
                        eku_name(o),
                        profile.name,
                        profile
                            .extended_key_usage
                            .iter()
                            .map(|e| e.display_name())
                            .collect::<Vec<_>>()
                            .join(" + ")
                    ));
                }
            }
        }
    }
    if req.requests_ca {
        refusals.push(
            "the CSR requests CA:TRUE: mtlsca signs only leaf certificates from profiles".into(),
        );
    }
    for ext in &req.unknown_critical {
        refusals.push(format!(
            "the CSR requests critical extension {ext}, which mtlsca does not know"
        ));
    }

    // Validity: the profile's default or the request, within the profile's maximum
    // and within the issuing CA's own lifetime.
    let validity = match &req.validity {
        None => Some(profile.default_validity),
        Some(v) => match Validity::parse(v) {
            Ok(v) => Some(v),
            Err(m) => {
                syntax.push(format!("--validity {m}"));
                None
            }
        },
    };
    let not_before = now.replace_nanosecond(0).unwrap_or(now);
    let mut not_after = not_before;
    if let Some(v) = validity {
        if v > profile.max_validity {
            refusals.push(format!(
                "validity {v} is over profile `{}`'s maximum of {}",
                profile.name, profile.max_validity
            ));
        }
        not_after = not_before + v.duration();
        if not_after > ca_not_after {
            refusals.push(format!(
                "validity {v} would run past the issuing CA's own notAfter ({})",
                crate::timefmt::date(ca_not_after)
            ));
        }
    }

    if !syntax.is_empty() {
        return Err(match origin {
            Origin::Arguments => Error::Usage(syntax.join("; ")),
            Origin::Csr => Error::Refused(syntax.into_iter().chain(refusals).collect()),
        });
    }
    if !refusals.is_empty() {
        return Err(Error::Refused(refusals));
    }
    Ok(Approved {
        role,
        subject,
        names,
        ekus: profile.extended_key_usage.clone(),
        key_encipherment: role == Role::Device && key.is_rsa(),
        not_before,
        not_after,
    })
}

/// The rules for one name: kind for the role, kind for the profile, wildcard,
/// the profile's patterns, the CA's name constraints.
fn check_name(profile: &Profile, ca_constraints: &[Pattern], n: &SanName) -> Vec<String> {
    let mut out = Vec::new();
    let kind = n.kind();
    if !kind.allowed_for(profile.role) {
        out.push(match profile.role {
            Role::Device => format!(
                "{n}: a device certificate cannot carry {} names (they identify a person or organisation)",
                kind.as_str()
            ),
            Role::Entity => format!(
                "{n}: an entity certificate cannot carry {} names (they identify a device; use the device profile)",
                kind.as_str()
            ),
        });
        return out;
    }
    if !profile.names.allows(kind) {
        out.push(format!(
            "{n}: profile `{}` does not accept {} names",
            profile.name,
            kind.as_str()
        ));
        return out;
    }
    if n.is_wildcard() && !profile.allow_wildcards {
        out.push(format!(
            "{n}: wildcards are not allowed by profile `{}` (allow_wildcards = false)",
            profile.name
        ));
    }
    let within = |patterns: &[Pattern]| {
        let of_kind: Vec<&Pattern> = patterns.iter().filter(|p| p.kind() == kind).collect();
        of_kind.is_empty() || of_kind.iter().any(|p| p.matches(n))
    };
    if !within(&profile.permitted) {
        out.push(format!(
            "{n}: outside profile `{}`'s permitted names ({})",
            profile.name,
            join_patterns(&profile.permitted, kind)
        ));
    }
    if !within(ca_constraints) {
        out.push(format!(
            "{n}: outside the CA's name constraints ({})",
            join_patterns(ca_constraints, kind)
        ));
    }
    out
}

fn join_patterns(p: &[Pattern], kind: NameKind) -> String {
    p.iter()
        .filter(|p| p.kind() == kind)
        .map(|p| p.as_text())
        .collect::<Vec<_>>()
        .join(", ")
}

fn looks_like_host(cn: &str) -> bool {
    cn.parse::<std::net::IpAddr>().is_ok()
        || (cn.contains('.') && !cn.contains(' ') && names::parse_dns(cn, true).is_ok())
}

fn eku_name(oid: &str) -> String {
    Eku::from_oid(oid)
        .map(|e| e.display_name().to_string())
        .unwrap_or_else(|| oid.to_string())
}

fn eku_list(oids: &[String]) -> String {
    oids.iter()
        .map(|o| eku_name(o))
        .collect::<Vec<_>>()
        .join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::builtin;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);
    const CA_END: OffsetDateTime = datetime!(2036-11-27 12:00 UTC);

    fn req() -> RequestedContent {
        RequestedContent::default()
    }

    fn run(profile: &str, r: &RequestedContent) -> Result<Approved> {
        run_with(profile, &[], r)
    }

    fn run_with(profile: &str, nc: &[Pattern], r: &RequestedContent) -> Result<Approved> {
        let p = builtin(profile).unwrap();
        check(
            &p,
            nc,
            r,
            PublicKeyKind::EcdsaP256,
            CA_END,
            Origin::Arguments,
            NOW,
        )
    }

    fn refused(res: Result<Approved>, needle: &str) {
        match res {
            Err(Error::Refused(m)) => {
                assert!(m.join("\n").contains(needle), "{m:?} lacks `{needle}`")
            }
            other => panic!("expected refusal `{needle}`, got {other:?}"),
        }
    }

    #[test]
    fn device_gets_server_auth_and_cn_from_first_name() {
        let a = run(
            "device",
            &RequestedContent {
                dns: vec!["Web.Corp.Internal".into()],
                ip: vec!["10.0.0.1".into()],
                ..req()
            },
        )
        .unwrap();
        assert_eq!(a.ekus, vec![Eku::ServerAuth]);
        assert_eq!(a.subject.cn.as_deref(), Some("web.corp.internal"));
        assert_eq!(a.names.len(), 2);
        assert_eq!(a.not_after - a.not_before, time::Duration::days(90));
    }

    #[test]
    fn rule_device_with_email_is_refused() {
        refused(
            run(
                "device",
                &RequestedContent {
                    dns: vec!["a.test".into()],
                    email: vec!["a@b.test".into()],
                    ..req()
                },
            ),
            "device certificate cannot carry email",
        );
    }

    #[test]
    fn rule_entity_with_dns_or_ip_is_refused() {
        let base = RequestedContent {
            cn: Some("Alice".into()),
            email: vec!["a@b.test".into()],
            ..req()
        };
        refused(
            run(
                "person",
                &RequestedContent {
                    dns: vec!["a.test".into()],
                    ..base.clone()
                },
            ),
            "entity certificate cannot carry DNS",
        );
        refused(
            run(
                "person",
                &RequestedContent {
                    ip: vec!["10.0.0.1".into()],
                    ..base
                },
            ),
            "entity certificate cannot carry IP",
        );
    }

    #[test]
    fn rule_no_identity_is_refused() {
        refused(run("device", &req()), "no identity");
        refused(
            run(
                "person",
                &RequestedContent {
                    cn: Some("Alice".into()),
                    ..req()
                },
            ),
            "no identity",
        );
    }

    #[test]
    fn rule_person_needs_cn_and_org_needs_o() {
        refused(
            run(
                "person",
                &RequestedContent {
                    email: vec!["a@b.test".into()],
                    ..req()
                },
            ),
            "requires a common name",
        );
        refused(
            run(
                "organization",
                &RequestedContent {
                    cn: Some("Acme".into()),
                    ..req()
                },
            ),
            "requires organizationName",
        );
        let o = run(
            "organization",
            &RequestedContent {
                org: Some("Acme Corp".into()),
                country: Some("de".into()),
                ..req()
            },
        )
        .unwrap();
        assert_eq!(o.subject.to_text(), "C=DE, O=Acme Corp");
    }

    #[test]
    fn rule_wildcards_need_the_profile() {
        refused(
            run(
                "device",
                &RequestedContent {
                    dns: vec!["*.corp.internal".into()],
                    ..req()
                },
            ),
            "wildcards are not allowed",
        );
    }

    #[test]
    fn rule_names_outside_constraints_are_refused() {
        let nc = vec![
            Pattern::parse("corp.internal").unwrap(),
            Pattern::parse("10.0.0.0/8").unwrap(),
        ];
        assert!(run_with(
            "device",
            &nc,
            &RequestedContent {
                dns: vec!["a.corp.internal".into()],
                ip: vec!["10.1.1.1".into()],
                ..req()
            }
        )
        .is_ok());
        refused(
            run_with(
                "device",
                &nc,
                &RequestedContent {
                    dns: vec!["evil.example".into()],
                    ..req()
                },
            ),
            "outside the CA's name constraints",
        );
        refused(
            run_with(
                "device",
                &nc,
                &RequestedContent {
                    ip: vec!["192.0.2.1".into()],
                    ..req()
                },
            ),
            "outside the CA's name constraints",
        );
    }

    #[test]
    fn rule_validity_over_max_or_past_ca_is_refused() {
        let r = RequestedContent {
            dns: vec!["a.test".into()],
            validity: Some("398d".into()),
            ..req()
        };
        refused(run("device", &r), "maximum of 397d");
        let p = builtin("device").unwrap();
        let r = RequestedContent {
            dns: vec!["a.test".into()],
            ..req()
        };
        refused(
            check(
                &p,
                &[],
                &r,
                PublicKeyKind::EcdsaP256,
                NOW + time::Duration::days(30),
                Origin::Arguments,
                NOW,
            ),
            "past the issuing CA",
        );
    }

    #[test]
    fn rule_csr_requests_are_checked() {
        let r = RequestedContent {
            dns: vec!["a.test".into()],
            requested_ekus: Some(vec![
                crate::role::OID_SERVER_AUTH.into(),
                crate::role::OID_CLIENT_AUTH.into(),
            ]),
            requests_ca: true,
            ..req()
        };
        let p = builtin("device").unwrap();
        let res = check(
            &p,
            &[],
            &r,
            PublicKeyKind::EcdsaP256,
            CA_END,
            Origin::Csr,
            NOW,
        );
        refused(res, "serverAuth + clientAuth");
        let res = check(
            &p,
            &[],
            &r,
            PublicKeyKind::EcdsaP256,
            CA_END,
            Origin::Csr,
            NOW,
        );
        refused(res, "CA:TRUE");
        let ok = RequestedContent {
            requested_ekus: Some(vec![crate::role::OID_SERVER_AUTH.into()]),
            requests_ca: false,
            ..r
        };
        assert!(check(
            &p,
            &[],
            &ok,
            PublicKeyKind::EcdsaP256,
            CA_END,
            Origin::Csr,
            NOW
        )
        .is_ok());
    }

    #[test]
    fn syntax_errors_are_usage_from_arguments() {
        match run(
            "device",
            &RequestedContent {
                ip: vec!["999.1.1.1".into()],
                ..req()
            },
        ) {
            Err(Error::Usage(m)) => assert!(m.contains("not an IP address")),
            other => panic!("{other:?}"),
        }
        match run(
            "device",
            &RequestedContent {
                dns: vec!["a.test".into()],
                validity: Some("soon".into()),
                ..req()
            },
        ) {
            Err(Error::Usage(m)) => assert!(m.contains("--validity")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rsa_device_keys_get_key_encipherment() {
        let p = builtin("device").unwrap();
        let r = RequestedContent {
            dns: vec!["a.test".into()],
            ..req()
        };
        let a = check(
            &p,
            &[],
            &r,
            PublicKeyKind::Rsa { bits: 2048 },
            CA_END,
            Origin::Csr,
            NOW,
        )
        .unwrap();
        assert!(a.key_encipherment);
    }
}
