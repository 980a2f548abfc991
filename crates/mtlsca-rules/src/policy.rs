//! Policy: whether a request may be signed under a profile and the CA's
//! constraints, and exactly what the certificate will then say. Every violation is
//! collected and reported together as typed refusals (`rules::Refusal`), each
//! naming its rule and field. No I/O, no clock.

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::key::PublicKeyKind;
use crate::names::{self, Pattern, SanName};
use crate::profile::{Profile, Requirement, Validity};
use crate::role::{Eku, NameKind, Role};
use crate::rules::{self, CnRule, Field, Refusal, Rule, SubjectAttr};

pub use crate::rules::Origin;

/// What a requester asks for, as typed (arguments, a manifest) or as found in a CSR.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestedContent {
    /// DNS names.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ip: Vec<String>,
    /// URIs.
    pub uri: Vec<String>,
    /// Email addresses.
    pub email: Vec<String>,
    /// Subject common name.
    pub cn: Option<String>,
    /// Subject organizationName.
    pub org: Option<String>,
    /// Subject countryName.
    pub country: Option<String>,
    /// Requested validity ("90d").
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
    /// countryName.
    pub country: Option<String>,
    /// organizationName.
    pub org: Option<String>,
    /// commonName.
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

    /// Whether no attribute is set (the SAN extension is then critical).
    pub fn is_empty(&self) -> bool {
        self.country.is_none() && self.org.is_none() && self.cn.is_none()
    }
}

/// A request that passed policy: exactly what goes into the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The role.
    pub role: Role,
    /// The subject.
    pub subject: Subject,
    /// The subjectAltNames, in request order without duplicates.
    pub names: Vec<SanName>,
    /// The EKUs, as the profile implies them.
    pub ekus: Vec<Eku>,
    /// keyEncipherment in addition to digitalSignature (RSA device keys).
    pub key_encipherment: bool,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

/// Hold a request to its size limits before anything else looks at it: too many
/// names is bad input (exit 2), whatever the origin.
pub fn check_size(req: &RequestedContent, origin: Origin) -> Result<()> {
    let all = || {
        req.dns
            .iter()
            .chain(&req.ip)
            .chain(&req.uri)
            .chain(&req.email)
    };
    let count = all().count() + req.unsupported_names.len();
    let bytes: usize = all().map(|n| n.len()).sum();
    if count > rules::MAX_NAMES || bytes > rules::MAX_NAME_BYTES {
        return Err(Error::invalid(
            origin,
            Refusal::new(
                Rule::RequestTooLarge,
                format!(
                    "the request holds {count} names ({bytes} bytes); at most {} names and {} KiB of names are accepted",
                    rules::MAX_NAMES,
                    rules::MAX_NAME_BYTES / 1024
                ),
            ),
        ));
    }
    Ok(())
}

/// Check a request against its profile, the CA's name constraints and the issuing
/// CA's own lifetime. Every step adds what it finds wrong to one list, so a
/// requester hears of every problem at once.
pub fn check(
    profile: &Profile,
    ca_constraints: &[Pattern],
    req: &RequestedContent,
    key: PublicKeyKind,
    ca_not_after: OffsetDateTime,
    origin: Origin,
    now: OffsetDateTime,
) -> Result<Approved> {
    check_size(req, origin)?;
    let mut found = Found::default();
    let table = rules::kind_rules(profile.role, profile.kind);
    let names = parse_names(req, &mut found);
    for n in &names {
        found
            .refusals
            .extend(check_name(profile, ca_constraints, n));
    }
    refuse_unsupported_names(req, &mut found);
    check_identity(profile, table, &names, origin, &mut found);
    let mut subject = subject_of(profile, req, &mut found);
    apply_cn_rule(profile, table.cn, &names, &mut subject, &mut found);
    check_requested_extensions(profile, req, &mut found);
    let (not_before, not_after) = validity_of(profile, req, ca_not_after, now, &mut found);
    found.into_result(origin)?;
    Ok(Approved {
        role: profile.role,
        subject,
        names,
        ekus: profile.extended_key_usage.clone(),
        key_encipherment: profile.role == Role::Device && key.is_rsa(),
        not_before,
        not_after,
    })
}

/// What the steps of [`check`] found wrong: refusals (policy says no) and
/// syntax errors (the request cannot be right as written).
#[derive(Default)]
struct Found {
    refusals: Vec<Refusal>,
    syntax: Vec<Refusal>,
}

impl Found {
    /// Syntax errors are bad input, except in a CSR (its author cannot retype
    /// it: everything is a refusal); then the refusals.
    fn into_result(self, origin: Origin) -> Result<()> {
        if !self.syntax.is_empty() {
            return Err(match origin {
                Origin::Csr => Error::refusals(
                    origin,
                    self.syntax.into_iter().chain(self.refusals).collect(),
                ),
                _ => Error::Invalid(rules::Refusals::new(origin, self.syntax)),
            });
        }
        if !self.refusals.is_empty() {
            return Err(Error::refusals(origin, self.refusals));
        }
        Ok(())
    }
}

/// Every requested name parsed (never copied blindly), in request order
/// without duplicates; a name that does not parse is a syntax error.
fn parse_names(req: &RequestedContent, found: &mut Found) -> Vec<SanName> {
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
                Err(m) => found.syntax.push(
                    Refusal::new(Rule::NameSyntax, m)
                        .on(Field::Name(kind))
                        .value(v),
                ),
            }
        }
    }
    names
}

/// Names of a type mtlsca never issues (UPN, directoryName, ... from a CSR).
fn refuse_unsupported_names(req: &RequestedContent, found: &mut Found) {
    for u in &req.unsupported_names {
        found.refusals.push(Refusal::new(
            Rule::NameTypeUnsupported,
            format!("the CSR requests a {u} name, which mtlsca never issues"),
        ));
    }
}

/// Every certificate must name someone or something: at least one name of a
/// kind that identifies its role.
fn check_identity(
    profile: &Profile,
    table: &rules::KindRules,
    names: &[SanName],
    origin: Origin,
    found: &mut Found,
) {
    let role = profile.role;
    if !table.identity.is_empty() && !names.iter().any(|n| table.identity.contains(&n.kind())) {
        let flags: Vec<String> = table
            .identity
            .iter()
            .map(|k| Field::Name(*k).label(origin))
            .collect();
        found.refusals.push(Refusal::new(
            Rule::NoIdentity,
            format!(
                "no identity: a {} certificate needs at least one {} name ({})",
                profile.kind.map(|k| k.as_str()).unwrap_or(role.as_str()),
                table
                    .identity
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                flags.join(", ")
            ),
        ));
    }
}

/// The subject attributes, by the profile's rules (required, optional, forbidden).
fn subject_of(profile: &Profile, req: &RequestedContent, found: &mut Found) -> Subject {
    let mut subject = Subject::default();
    for (attr, value, requirement) in [
        (
            SubjectAttr::CommonName,
            &req.cn,
            profile.subject.common_name,
        ),
        (
            SubjectAttr::Organization,
            &req.org,
            profile.subject.organization,
        ),
        (SubjectAttr::Country, &req.country, profile.subject.country),
    ] {
        let field = Field::Subject(attr);
        let checked = match (value, requirement) {
            (Some(v), Requirement::Forbidden) => {
                found.refusals.push(
                    Refusal::new(
                        Rule::SubjectAttributeForbidden,
                        format!(
                            "profile `{}` forbids {} in the subject (its `subject.{}` is forbidden)",
                            profile.name,
                            attr_name(attr),
                            attr_key(attr)
                        ),
                    )
                    .on(field)
                    .value(v),
                );
                None
            }
            (Some(v), _) => {
                let r = if attr == SubjectAttr::Country {
                    names::check_country(v)
                } else {
                    names::check_dn_value(attr_name(attr), v)
                };
                match r {
                    Ok(v) => Some(v),
                    Err(m) => {
                        found
                            .syntax
                            .push(Refusal::new(Rule::SubjectSyntax, m).on(field));
                        None
                    }
                }
            }
            (None, Requirement::Required) => {
                found.refusals.push(
                    Refusal::new(
                        Rule::SubjectAttributeRequired,
                        format!(
                            "profile `{}` requires {} in the subject (its `subject.{}` is required): give it, or make it optional in the profile",
                            profile.name,
                            attr_name(attr),
                            subject_key(attr)
                        ),
                    )
                    .on(field),
                );
                None
            }
            (None, _) => None,
        };
        match attr {
            SubjectAttr::CommonName => subject.cn = checked,
            SubjectAttr::Organization => subject.org = checked,
            SubjectAttr::Country => subject.country = checked,
        }
    }
    subject
}

/// The role's common-name rule: a device's CN repeats one of its DNS names (or
/// is its first DNS name when none is given); an entity's CN is not a host.
fn apply_cn_rule(
    profile: &Profile,
    rule: CnRule,
    names: &[SanName],
    subject: &mut Subject,
    found: &mut Found,
) {
    match rule {
        CnRule::RepeatsDnsName => {
            let dns: Vec<&String> = names
                .iter()
                .filter_map(|n| match n {
                    SanName::Dns(d) => Some(d),
                    _ => None,
                })
                .collect();
            match &subject.cn {
                Some(cn) => {
                    let canonical = cn.trim_end_matches('.').to_ascii_lowercase();
                    match dns.iter().find(|d| ***d == canonical) {
                        // The CN is written exactly as its DNS name is.
                        Some(d) => subject.cn = Some((*d).clone()),
                        None => found.refusals.push(
                            Refusal::new(
                                Rule::DeviceCnNotADnsName,
                                if dns.is_empty() {
                                    "a device without a DNS name has no common name (verifiers read a CN as a host name); leave the CN out".to_string()
                                } else {
                                    format!(
                                        "a device's common name must repeat one of its DNS names ({})",
                                        dns.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
                                    )
                                },
                            )
                            .on(Field::Subject(SubjectAttr::CommonName))
                            .value(cn),
                        ),
                    }
                }
                None if profile.subject.common_name != Requirement::Forbidden => {
                    // For tools that still read the CN: the first DNS name, never an
                    // IP address or URI (OpenSSL checks a CN as a DNS name against
                    // the DNS constraints).
                    subject.cn = dns.first().map(|d| (*d).clone());
                }
                None => {}
            }
        }
        CnRule::NotAHost => {
            if let Some(cn) = &subject.cn {
                if names::looks_like_host(cn) {
                    found.refusals.push(
                        Refusal::new(
                            Rule::EntityCnIsAHost,
                            "looks like a host name or IP address: an entity certificate names a person or organisation, not a host (use the device profile for hosts)",
                        )
                        .on(Field::Subject(SubjectAttr::CommonName))
                        .value(cn),
                    );
                }
            }
        }
    }
}

/// What a CSR asks for beyond names (EKUs, CA:TRUE, critical extensions):
/// checked, never copied.
fn check_requested_extensions(profile: &Profile, req: &RequestedContent, found: &mut Found) {
    let role = profile.role;
    if let Some(ekus) = &req.requested_ekus {
        let known: Vec<Eku> = ekus.iter().filter_map(|o| Eku::from_oid(o)).collect();
        if let Some((rule, why)) = rules::eku_conflict(role, &known) {
            found.refusals.push(
                Refusal::new(rule, format!("requests {}: {why}", eku_list(ekus))).on(Field::Eku),
            );
        } else {
            for o in ekus {
                let allowed =
                    Eku::from_oid(o).is_some_and(|e| profile.extended_key_usage.contains(&e));
                if !allowed {
                    found.refusals.push(
                        Refusal::new(
                            Rule::EkuNotInProfile,
                            format!(
                                "requests EKU {}, which profile `{}` does not issue (it issues {})",
                                eku_name(o),
                                profile.name,
                                profile
                                    .extended_key_usage
                                    .iter()
                                    .map(|e| e.display_name())
                                    .collect::<Vec<_>>()
                                    .join(" + ")
                            ),
                        )
                        .on(Field::Eku),
                    );
                }
            }
        }
    }
    if req.requests_ca {
        found.refusals.push(
            Refusal::new(
                Rule::CsrRequestsCa,
                "requests CA:TRUE: mtlsca signs only leaf certificates from profiles",
            )
            .on(Field::BasicConstraints),
        );
    }
    for ext in &req.unknown_critical {
        found.refusals.push(
            Refusal::new(
                Rule::CsrUnknownCriticalExtension,
                "is critical and unknown to mtlsca",
            )
            .on(Field::Extension)
            .value(ext),
        );
    }
}

/// notBefore and notAfter: the profile's default or the requested validity,
/// within the profile's maximum and within the issuing CA's own lifetime.
fn validity_of(
    profile: &Profile,
    req: &RequestedContent,
    ca_not_after: OffsetDateTime,
    now: OffsetDateTime,
    found: &mut Found,
) -> (OffsetDateTime, OffsetDateTime) {
    let validity = match &req.validity {
        None => Some(profile.default_validity),
        Some(v) => match Validity::parse(v) {
            Ok(v) => Some(v),
            Err(m) => {
                found
                    .syntax
                    .push(Refusal::new(Rule::ValiditySyntax, m).on(Field::Validity));
                None
            }
        },
    };
    let not_before = now.replace_nanosecond(0).unwrap_or(now);
    let mut not_after = not_before;
    if let Some(v) = validity {
        if v > profile.max_validity {
            found.refusals.push(
                Refusal::new(
                    Rule::ValidityOverProfileMax,
                    format!(
                        "is over profile `{}`'s maximum of {} (its `validity.max`): the latest notAfter it allows is {}; ask for {} or less, or raise `validity.max` in the profile",
                        profile.name,
                        profile.max_validity,
                        crate::timefmt::human_time(not_before + profile.max_validity.duration()),
                        profile.max_validity
                    ),
                )
                .on(Field::Validity)
                .value(v.to_string()),
            );
        }
        not_after = not_before + v.duration();
        if not_after > ca_not_after {
            found.refusals.push(
                Refusal::new(
                    Rule::ValidityPastIssuingCa,
                    if ca_not_after > not_before {
                        format!(
                            "would run past the issuing CA's own notAfter: the {kind} issuing CA expires on {}; ask for a shorter validity or --not-after {} at the latest, or roll the CA with `mtlsca ca roll {kind}` (its new generation signs longer certificates)",
                            crate::timefmt::date(ca_not_after),
                            crate::timefmt::rfc3339(ca_not_after),
                            kind = profile.role.as_str(),
                        )
                    } else {
                        format!(
                            "cannot be met: the {kind} issuing CA expired on {}; roll it with `mtlsca ca roll {kind}`",
                            crate::timefmt::date(ca_not_after),
                            kind = profile.role.as_str(),
                        )
                    },
                )
                .on(Field::Validity)
                .value(v.to_string()),
            );
        }
    }
    (not_before, not_after)
}

fn attr_name(a: SubjectAttr) -> &'static str {
    match a {
        SubjectAttr::CommonName => "a common name",
        SubjectAttr::Organization => "organizationName",
        SubjectAttr::Country => "countryName",
    }
}

fn attr_key(a: SubjectAttr) -> &'static str {
    match a {
        SubjectAttr::CommonName => "common_name",
        SubjectAttr::Organization => "organization",
        SubjectAttr::Country => "country",
    }
}

/// The rules for one name: kind for the role, kind for the profile, wildcard,
/// the profile's patterns, the CA's name constraints.
fn check_name(profile: &Profile, ca_constraints: &[Pattern], n: &SanName) -> Vec<Refusal> {
    let mut out = Vec::new();
    let kind = n.kind();
    let at = |r: Refusal| r.on(Field::Name(kind)).value(n.value());
    if !rules::name_kind_allowed(profile.role, kind) {
        out.push(at(Refusal::new(
            Rule::NameKindForRole,
            match profile.role {
                Role::Device => format!(
                    "a device certificate cannot carry {} names (they identify a person or organisation; use the person profile for them)",
                    kind.as_str()
                ),
                Role::Entity => format!(
                    "an entity certificate cannot carry {} names (they identify a device; use the device profile)",
                    kind.as_str()
                ),
            },
        )));
        return out;
    }
    if !profile.names.allows(kind) {
        out.push(at(Refusal::new(
            Rule::NameKindForProfile,
            format!(
                "profile `{}` does not accept {} names (its `names.{}` is false; set it to true in the profile, or use a profile that accepts them: `mtlsca profile list`)",
                profile.name,
                kind.as_str(),
                kind.as_str().to_ascii_lowercase()
            ),
        )));
        return out;
    }
    if n.is_wildcard() && !profile.allow_wildcards {
        out.push(at(Refusal::new(
            Rule::WildcardNotAllowed,
            format!(
                "wildcards are not allowed by profile `{}` (set `allow_wildcards = true` in it to allow them)",
                profile.name
            ),
        )));
    }
    if !within(&profile.permitted, n) {
        out.push(at(Refusal::new(
            Rule::NameOutsideProfile,
            format!(
                "outside profile `{}`'s permitted names ({}); use a name inside them, or widen the profile's `permitted` list",
                profile.name,
                join_patterns(&profile.permitted, kind)
            ),
        )));
    }
    if !within(ca_constraints, n) {
        out.push(at(Refusal::new(
            Rule::NameOutsideConstraints,
            format!(
                "outside the CA's name constraints ({}); they are fixed in the root certificate at `init` (--permit-dns, --permit-ip, --permit-uri): use a name inside them",
                join_patterns(ca_constraints, kind)
            ),
        )));
    }
    out
}

/// Whether a name lies within a set of patterns: patterns of its kind bound it;
/// with none of its kind, it is free.
pub fn within(patterns: &[Pattern], n: &SanName) -> bool {
    let mut of_kind = patterns.iter().filter(|p| p.kind() == n.kind()).peekable();
    of_kind.peek().is_none() || of_kind.any(|p| p.matches(n))
}

fn join_patterns(p: &[Pattern], kind: NameKind) -> String {
    p.iter()
        .filter(|p| p.kind() == kind)
        .map(|p| p.as_text())
        .collect::<Vec<_>>()
        .join(", ")
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

/// The key of a subject attribute in a profile's `subject` table.
fn subject_key(attr: crate::rules::SubjectAttr) -> &'static str {
    match attr {
        crate::rules::SubjectAttr::CommonName => "common_name",
        crate::rules::SubjectAttr::Organization => "organization",
        crate::rules::SubjectAttr::Country => "country",
    }
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
                let m = m.messages();
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
            Err(Error::Invalid(m)) => assert!(m.to_string().contains("not an IP address")),
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
            Err(Error::Invalid(m)) => assert!(m.to_string().contains("--validity")),
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
