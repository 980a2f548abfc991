//! Profiles: TOML templates that say what a certificate of one kind looks like.
//! Parsed with `deny_unknown_fields`, then validated against the role rules, so an
//! ambiguous profile is refused when it is loaded, not when it is used.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::key::KeyType;
use crate::names::Pattern;
use crate::role::{Eku, EntityKind, NameKind, Role};
use crate::rules::{self, eku_conflict, implied_ekus, Field, Refusal, Refusals};

/// The profiles built into the binary (and copied into each CA at `init`).
pub const BUILTIN: [(&str, &str); 4] = [
    ("device", include_str!("../profiles/device.toml")),
    ("workload", include_str!("../profiles/workload.toml")),
    ("person", include_str!("../profiles/person.toml")),
    (
        "organization",
        include_str!("../profiles/organization.toml"),
    ),
];

/// Longest validity any profile may allow (the rulebook's ceiling).
const VALIDITY_CEILING: Validity = Validity(crate::rules::VALIDITY_CEILING_SECS);

/// A span of validity, parsed from a number and a unit: `s`, `m` (minutes), `h`,
/// `d`, `w` (weeks) or `y` (365 days): "90d", "24h", "2w", "1y".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Validity(pub i64);

/// The units a validity may be written in, with their length in seconds.
pub const VALIDITY_UNITS: &[(&str, i64)] = &[
    ("s", 1),
    ("m", 60),
    ("h", 3600),
    ("d", 86_400),
    ("w", 7 * 86_400),
    ("y", 365 * 86_400),
];

impl Validity {
    /// Parse a number and a unit (`s m h d w y`; a year is 365 days): "90d", "24h".
    pub fn parse(s: &str) -> std::result::Result<Validity, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{s}` has no unit (use s, m, h, d, w or y, e.g. 90d)"))?;
        let (num, unit) = s.split_at(split);
        let n: i64 = num.parse().map_err(|_| {
            format!("`{s}` is not a number followed by s, m, h, d, w or y (e.g. 90d)")
        })?;
        let per = VALIDITY_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, per)| *per)
            .ok_or_else(|| format!("`{s}`: unknown unit `{unit}` (use s, m, h, d, w or y)"))?;
        if n <= 0 {
            return Err(format!("`{s}` must be positive"));
        }
        n.checked_mul(per)
            .filter(|secs| *secs <= 1000 * 365 * 86_400)
            .map(Validity)
            .ok_or_else(|| format!("`{s}` is too long"))
    }

    /// The span in seconds.
    pub fn seconds(self) -> i64 {
        self.0
    }

    /// The span as a duration.
    pub fn duration(self) -> time::Duration {
        time::Duration::seconds(self.0)
    }
}

impl Serialize for Validity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s % (365 * 86_400) == 0 {
            write!(f, "{}y", s / (365 * 86_400))
        } else if s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

pub use crate::rules::Requirement;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    description: Option<String>,
    role: Role,
    kind: Option<EntityKind>,
    extended_key_usage: Option<Vec<Eku>>,
    key: Option<KeyType>,
    validity: Option<RawValidity>,
    subject: Option<RawSubject>,
    names: Option<RawNames>,
    allow_wildcards: Option<bool>,
    permitted: Option<Vec<String>>,
    smime: Option<bool>,
    crl_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValidity {
    default: Option<String>,
    max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    common_name: Option<Requirement>,
    organization: Option<Requirement>,
    country: Option<Requirement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNames {
    dns: Option<bool>,
    ip: Option<bool>,
    uri: Option<bool>,
    email: Option<bool>,
}

/// The subject attribute rules of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectRules {
    /// commonName.
    pub common_name: Requirement,
    /// organizationName.
    pub organization: Requirement,
    /// countryName.
    pub country: Requirement,
}

/// Which subjectAltName kinds a profile accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameRules {
    /// DNS names.
    pub dns: bool,
    /// IP addresses.
    pub ip: bool,
    /// URIs.
    pub uri: bool,
    /// Email addresses.
    pub email: bool,
}

impl NameRules {
    /// Whether names of this kind are accepted.
    pub fn allows(&self, kind: NameKind) -> bool {
        match kind {
            NameKind::Dns => self.dns,
            NameKind::Ip => self.ip,
            NameKind::Uri => self.uri,
            NameKind::Email => self.email,
        }
    }
}

/// A validated profile: every default filled in, every role rule checked.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The profile's name (its file name without `.toml`).
    pub name: String,
    /// One line on what the profile is for.
    pub description: String,
    /// The role: device or entity.
    pub role: Role,
    /// The entity kind (person or organization); `None` for devices.
    pub kind: Option<EntityKind>,
    /// The EKUs its certificates carry (what the role implies).
    pub extended_key_usage: Vec<Eku>,
    /// Key type of generated keys.
    pub key: KeyType,
    /// Validity when the request names none.
    pub default_validity: Validity,
    /// The longest validity it issues.
    pub max_validity: Validity,
    /// Which subject attributes are required, optional or forbidden.
    pub subject: SubjectRules,
    /// Which name kinds it accepts.
    pub names: NameRules,
    /// Whether wildcard DNS names are allowed.
    pub allow_wildcards: bool,
    /// Name patterns that narrow the CA's constraints.
    pub permitted: Vec<Pattern>,
    /// Whether person certificates also carry emailProtection (S/MIME).
    pub smime: bool,
    /// An `http://` URL put in certificates as their CRL distribution point
    /// (where `mtlsca serve --publish-listen` serves the issuing CA's CRL).
    pub crl_url: Option<String>,
}

impl Profile {
    /// Parse and validate a profile. `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Profile> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            Error::Invalid(
                Refusals::new(
                    rules::Origin::Profile,
                    vec![Refusal::new(rules::Rule::ProfileSyntax, toml_message(&e))],
                )
                .context(format!("profile {origin}")),
            )
        })?;
        Profile::from_raw(raw).map_err(|e| {
            let (invalid, rule, msg) = match e {
                ProfileError::Invalid(r, m) => (true, r, m),
                ProfileError::Rule(r, m) => (false, r, m),
            };
            // "key `validity.max`: ..." names its field.
            let refusal = match msg.strip_prefix("key `").and_then(|r| r.split_once("`: ")) {
                Some((key, detail)) => {
                    Refusal::new(rule, detail).on(Field::ProfileKey(key.to_string()))
                }
                None => Refusal::new(rule, msg),
            };
            let r = Refusals::new(rules::Origin::Profile, vec![refusal])
                .context(format!("profile {origin}"));
            if invalid {
                Error::Invalid(r)
            } else {
                Error::Refused(r)
            }
        })
    }

    /// A profile from its file's keys, checked against the rulebook step by
    /// step (the first broken rule is the error).
    fn from_raw(raw: RawProfile) -> std::result::Result<Profile, ProfileError> {
        check_profile_name(&raw.name)?;
        let role = raw.role;
        let kind = kind_of(role, raw.kind)?;
        let smime = raw.smime.unwrap_or(false);
        let implied = ekus_of(role, kind, smime, raw.extended_key_usage.as_deref())?;
        let (default_validity, max_validity) = validity_of(role, raw.validity.as_ref())?;
        let subject = subject_rules_of(kind, raw.subject)?;
        let names = name_rules_of(role, kind, raw.names)?;
        let allow_wildcards = raw.allow_wildcards.unwrap_or(false);
        if allow_wildcards && !names.dns {
            return Err(ProfileError::Rule(rules::Rule::ProfileWildcards,
                "key `allow_wildcards`: wildcards need DNS names, which this profile does not accept".into(),
            ));
        }
        let permitted = permitted_of(raw.permitted.unwrap_or_default(), &names)?;
        let crl_url = match raw.crl_url {
            Some(u) => Some(check_crl_url(&u).map_err(|m| {
                ProfileError::Invalid(rules::Rule::ProfileCrlUrl, format!("key `crl_url`: {m}"))
            })?),
            None => None,
        };

        Ok(Profile {
            name: raw.name,
            description: raw.description.unwrap_or_default(),
            role,
            kind,
            extended_key_usage: implied,
            key: raw.key.unwrap_or(KeyType::EcdsaP256),
            default_validity,
            max_validity,
            subject,
            names,
            allow_wildcards,
            permitted,
            smime,
            crl_url,
        })
    }

    /// "device" or "entity/person", for listings.
    pub fn role_label(&self) -> String {
        match self.kind {
            Some(k) => format!("{}/{}", self.role, k.as_str()),
            None => self.role.to_string(),
        }
    }

    /// The profile as TOML with every default spelled out (for `profile show`).
    pub fn to_toml(&self) -> String {
        let req = |r: Requirement| r.as_str();
        let ekus: Vec<String> = self
            .extended_key_usage
            .iter()
            .map(|e| format!("\"{}\"", e.spelling()))
            .collect();
        let permitted: Vec<String> = self
            .permitted
            .iter()
            .map(|p| toml::Value::String(p.as_text()).to_string())
            .collect();
        let mut out = String::new();
        out.push_str(&format!("name = \"{}\"\n", self.name));
        out.push_str(&format!(
            "description = {}\n",
            toml::Value::String(self.description.clone())
        ));
        out.push_str(&format!("role = \"{}\"\n", self.role));
        if let Some(k) = self.kind {
            out.push_str(&format!("kind = \"{}\"\n", k.as_str()));
        }
        out.push_str(&format!("extended_key_usage = [{}]\n", ekus.join(", ")));
        out.push_str(&format!("key = \"{}\"\n", self.key));
        out.push_str(&format!(
            "validity = {{ default = \"{}\", max = \"{}\" }}\n",
            self.default_validity, self.max_validity
        ));
        out.push_str(&format!(
            "subject = {{ common_name = \"{}\", organization = \"{}\", country = \"{}\" }}\n",
            req(self.subject.common_name),
            req(self.subject.organization),
            req(self.subject.country)
        ));
        out.push_str(&format!(
            "names = {{ dns = {}, ip = {}, uri = {}, email = {} }}\n",
            self.names.dns, self.names.ip, self.names.uri, self.names.email
        ));
        out.push_str(&format!("allow_wildcards = {}\n", self.allow_wildcards));
        out.push_str(&format!("permitted = [{}]\n", permitted.join(", ")));
        if self.kind == Some(EntityKind::Person) {
            out.push_str(&format!("smime = {}\n", self.smime));
        }
        if let Some(u) = &self.crl_url {
            out.push_str(&format!("crl_url = {}\n", toml::Value::String(u.clone())));
        }
        out
    }
}

/// The longest `crl_url` accepted.
pub const MAX_CRL_URL: usize = 512;

/// A profile's name: 1-64 letters, digits, `-` or `_` (it names a file).
fn check_profile_name(name: &str) -> std::result::Result<(), ProfileError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ProfileError::Invalid(
            rules::Rule::ProfileName,
            format!("key `name`: `{name}` must be 1-64 letters, digits, `-` or `_`"),
        ));
    }
    Ok(())
}

/// An entity profile names its kind; a device profile has none.
fn kind_of(
    role: Role,
    kind: Option<EntityKind>,
) -> std::result::Result<Option<EntityKind>, ProfileError> {
    use ProfileError::Rule;
    Ok(match (role, kind) {
    (Role::Device, Some(_)) => {
        return Err(Rule(rules::Rule::ProfileKind,
            "key `kind`: only entity profiles have a kind (person or organization)".into(),
        ))
    }
    (Role::Device, None) => None,
    (Role::Entity, None) => {
        return Err(Rule(rules::Rule::ProfileKind,
            "key `kind`: an entity profile must say `kind = \"person\"` or `kind = \"organization\"`".into(),
        ))
    }
    (Role::Entity, Some(k)) => Some(k),
})
}

/// The EKUs the role implies; a stated `extended_key_usage` must say exactly that.
fn ekus_of(
    role: Role,
    kind: Option<EntityKind>,
    smime: bool,
    stated: Option<&[Eku]>,
) -> std::result::Result<Vec<Eku>, ProfileError> {
    use ProfileError::Rule;
    if smime && kind != Some(EntityKind::Person) {
        return Err(Rule(
            rules::Rule::ProfileSmime,
            "key `smime`: email-protection is only for person profiles".into(),
        ));
    }
    let implied = implied_ekus(role, kind, smime);
    if let Some(stated) = stated {
        if let Some((rule, conflict)) = eku_conflict(role, stated) {
            return Err(Rule(rule, format!("key `extended_key_usage`: {conflict}")));
        }
        let mut a = stated.to_vec();
        let mut b = implied.clone();
        a.sort_by_key(|e| e.spelling());
        a.dedup();
        b.sort_by_key(|e| e.spelling());
        if a != b {
            let want: Vec<_> = implied.iter().map(|e| e.spelling()).collect();
            return Err(Rule(rules::Rule::ProfileEku, format!(
            "key `extended_key_usage`: a {} profile{} implies [{}]; the EKU follows from the role and cannot be listed otherwise",
            role,
            kind.map(|k| format!(" of kind {}", k.as_str())).unwrap_or_default(),
            want.join(", ")
        )));
        }
    }
    Ok(implied)
}

/// Default and maximum validity: the role's defaults, or the file's, within
/// the ceiling.
fn validity_of(
    role: Role,
    raw: Option<&RawValidity>,
) -> std::result::Result<(Validity, Validity), ProfileError> {
    use ProfileError::Invalid;
    let (default_v, max_v) = match role {
        Role::Device => ("90d", "397d"),
        Role::Entity => ("365d", "825d"),
    };
    let parse_v = |key: &str, v: Option<&String>, fallback: &str| {
        Validity::parse(v.map(String::as_str).unwrap_or(fallback)).map_err(|m| {
            Invalid(
                rules::Rule::ProfileValidity,
                format!("key `validity.{key}`: {m}"),
            )
        })
    };
    let (default_validity, max_validity) = match raw {
        Some(v) => (
            parse_v("default", v.default.as_ref(), default_v)?,
            parse_v("max", v.max.as_ref(), max_v)?,
        ),
        None => (
            parse_v("default", None, default_v)?,
            parse_v("max", None, max_v)?,
        ),
    };
    if default_validity > max_validity {
        return Err(Invalid(
            rules::Rule::ProfileValidity,
            format!("key `validity`: default {default_validity} is longer than max {max_validity}"),
        ));
    }
    if max_validity > VALIDITY_CEILING {
        return Err(Invalid(
            rules::Rule::ProfileValidity,
            format!("key `validity.max`: {max_validity} is over the ceiling of {VALIDITY_CEILING}"),
        ));
    }
    Ok((default_validity, max_validity))
}

/// The subject's rules: the kind's defaults, or the file's; a person needs a
/// CN and an organisation an organizationName.
fn subject_rules_of(
    kind: Option<EntityKind>,
    raw: Option<RawSubject>,
) -> std::result::Result<SubjectRules, ProfileError> {
    use ProfileError::Rule;
    let subject_default = match kind {
        None => SubjectRules {
            common_name: Requirement::Optional,
            organization: Requirement::Optional,
            country: Requirement::Optional,
        },
        Some(EntityKind::Person) => SubjectRules {
            common_name: Requirement::Required,
            organization: Requirement::Optional,
            country: Requirement::Optional,
        },
        Some(EntityKind::Organization) => SubjectRules {
            common_name: Requirement::Optional,
            organization: Requirement::Required,
            country: Requirement::Optional,
        },
    };
    let subject = match raw {
        None => subject_default,
        Some(s) => SubjectRules {
            common_name: s.common_name.unwrap_or(subject_default.common_name),
            organization: s.organization.unwrap_or(subject_default.organization),
            country: s.country.unwrap_or(subject_default.country),
        },
    };
    if kind == Some(EntityKind::Person) && subject.common_name != Requirement::Required {
        return Err(Rule(
            rules::Rule::ProfileSubject,
            "key `subject.common_name`: a person certificate must carry a common name (required)"
                .into(),
        ));
    }
    if kind == Some(EntityKind::Organization) && subject.organization != Requirement::Required {
        return Err(Rule(rules::Rule::ProfileSubject,
        "key `subject.organization`: an organization certificate must carry organizationName (required)".into(),
    ));
    }
    Ok(subject)
}

/// The name kinds accepted: the kind's defaults, or the file's, each one the
/// role may carry.
fn name_rules_of(
    role: Role,
    kind: Option<EntityKind>,
    raw: Option<RawNames>,
) -> std::result::Result<NameRules, ProfileError> {
    use ProfileError::Rule;
    let names_default = match kind {
        None => NameRules {
            dns: true,
            ip: true,
            uri: true,
            email: false,
        },
        Some(EntityKind::Person) => NameRules {
            dns: false,
            ip: false,
            uri: false,
            email: true,
        },
        Some(EntityKind::Organization) => NameRules {
            dns: false,
            ip: false,
            uri: false,
            email: false,
        },
    };
    let names = match raw {
        None => names_default,
        Some(n) => NameRules {
            dns: n.dns.unwrap_or(names_default.dns),
            ip: n.ip.unwrap_or(names_default.ip),
            uri: n.uri.unwrap_or(names_default.uri),
            email: n.email.unwrap_or(names_default.email),
        },
    };
    for kind_ in [NameKind::Dns, NameKind::Ip, NameKind::Uri, NameKind::Email] {
        if names.allows(kind_) && !rules::name_kind_allowed(role, kind_) {
            let why = match role {
                Role::Device => "a device is a machine, not a person or organisation",
                Role::Entity => "an entity is someone, not a host",
            };
            return Err(Rule(
                rules::Rule::ProfileNames,
                format!(
                    "key `names.{}`: a {role} certificate cannot carry {} names ({why})",
                    kind_.as_str().to_ascii_lowercase(),
                    kind_.as_str()
                ),
            ));
        }
    }
    if role == Role::Device && !(names.dns || names.ip || names.uri) {
        return Err(Rule(
            rules::Rule::ProfileNames,
            "key `names`: a device profile must accept at least one of dns, ip or uri".into(),
        ));
    }
    if kind == Some(EntityKind::Person) && !names.email {
        return Err(Rule(
            rules::Rule::ProfileNames,
            "key `names.email`: a person certificate must carry an email address".into(),
        ));
    }
    Ok(names)
}

/// The `permitted` patterns, each of a name kind the profile accepts.
fn permitted_of(
    raw: Vec<String>,
    names: &NameRules,
) -> std::result::Result<Vec<Pattern>, ProfileError> {
    use ProfileError::{Invalid, Rule};
    let mut permitted = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let pat = Pattern::parse(p).map_err(|m| {
            Invalid(
                rules::Rule::ProfilePermitted,
                format!("key `permitted[{i}]`: {m}"),
            )
        })?;
        if !names.allows(pat.kind()) {
            return Err(Rule(
                rules::Rule::ProfilePermitted,
                format!(
            "key `permitted[{i}]`: `{p}` is a {} pattern, but the profile accepts no {} names",
            pat.kind().as_str(),
            pat.kind().as_str()
        ),
            ));
        }
        permitted.push(pat);
    }
    Ok(permitted)
}

/// A CRL distribution point URL: `http://HOST[:PORT]/PATH` (RFC 5280
/// §4.2.1.13: HTTP, one DER CRL; CRL fetchers do not speak HTTPS to the CA they
/// check), HOST a DNS name, an IPv4 address or a bracketed IPv6 address, PATH of
/// RFC 3986 path characters, no query or fragment, at most [`MAX_CRL_URL`] bytes.
pub fn check_crl_url(u: &str) -> std::result::Result<String, String> {
    let shown = crate::names::printable(&u.chars().take(80).collect::<String>());
    if u.len() > MAX_CRL_URL {
        return Err(format!("`{shown}…` is over {MAX_CRL_URL} bytes"));
    }
    let rest = u.strip_prefix("http://").ok_or_else(|| {
        format!("`{shown}` must start with http:// (CRLs are fetched over plain HTTP)")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => {
            return Err(format!(
                "`{shown}` has no path (e.g. http://ca.example/crl/device.crl)"
            ))
        }
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (ip, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{shown}`: an IPv6 host goes in brackets"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{shown}`: `{ip}` is not an IPv6 address"))?;
        match after {
            "" => (None, None),
            a => (
                None,
                Some(
                    a.strip_prefix(':')
                        .ok_or_else(|| format!("`{shown}`: `{a}` after the IPv6 host"))?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(authority), None),
        }
    };
    if let Some(h) = host {
        if h.parse::<std::net::Ipv4Addr>().is_err() {
            crate::names::parse_dns(h, false).map_err(|m| {
                format!("`{shown}`: the host is not a DNS name or an IP address: {m}")
            })?;
        }
    }
    if let Some(p) = port {
        if p.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
            return Err(format!("`{shown}`: the port must be 1-65535"));
        }
    }
    let path_ok = path
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-._~/%!$&'()*+,;=:@".contains(&c));
    if !path_ok {
        return Err(format!(
            "`{shown}`: the path may hold only URL path characters (no query, fragment or spaces)"
        ));
    }
    Ok(u.to_string())
}

enum ProfileError {
    /// Not a valid profile at all (bad value): exit 2.
    Invalid(rules::Rule, String),
    /// A valid profile that breaks a role rule: refused, exit 1.
    Rule(rules::Rule, String),
}

/// toml's messages span lines with a source excerpt; keep the first line and the key.
fn toml_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

/// The built-in profile of that name, if any.
pub fn builtin(name: &str) -> Option<Profile> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(n, text)| {
        Profile::parse(text, &format!("built-in {n}")).expect("built-in profiles are valid")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile> {
        Profile::parse(text, "test.toml")
    }

    fn refused_with(text: &str, needle: &str) {
        match parse(text) {
            Err(Error::Refused(m)) => {
                assert!(m.to_string().contains(needle), "{m:?} lacks {needle}")
            }
            other => panic!("expected refusal with {needle}, got {other:?}"),
        }
    }

    fn invalid_with(text: &str, needle: &str) {
        match parse(text) {
            Err(e @ Error::Invalid(_)) => {
                assert!(e.to_string().contains(needle), "{e} lacks {needle}")
            }
            other => panic!("expected invalid input with {needle}, got {other:?}"),
        }
    }

    #[test]
    fn builtins_are_valid_and_have_the_documented_validity() {
        let want = [
            ("device", Role::Device, "90d", "397d"),
            ("workload", Role::Device, "24h", "7d"),
            ("person", Role::Entity, "365d", "825d"),
            ("organization", Role::Entity, "365d", "825d"),
        ];
        for (name, role, d, m) in want {
            let p = builtin(name).unwrap();
            assert_eq!(p.role, role);
            assert_eq!(p.default_validity, Validity::parse(d).unwrap());
            assert_eq!(p.max_validity, Validity::parse(m).unwrap());
            // show output parses back to the same profile
            let again = parse(&p.to_toml()).unwrap();
            assert_eq!(again.to_toml(), p.to_toml());
        }
    }

    #[test]
    fn minimal_profiles_take_role_defaults() {
        let d = parse("name = \"d\"\nrole = \"device\"").unwrap();
        assert_eq!(d.extended_key_usage, vec![Eku::ServerAuth]);
        assert!(d.names.dns && d.names.ip && d.names.uri && !d.names.email);
        let p = parse("name = \"p\"\nrole = \"entity\"\nkind = \"person\"").unwrap();
        assert_eq!(p.extended_key_usage, vec![Eku::ClientAuth]);
        assert_eq!(p.subject.common_name, Requirement::Required);
        assert!(p.names.email && !p.names.dns);
        let o = parse("name = \"o\"\nrole = \"entity\"\nkind = \"organization\"").unwrap();
        assert_eq!(o.subject.organization, Requirement::Required);
    }

    #[test]
    fn rule_both_tls_ekus_in_one_profile_is_refused() {
        refused_with(
            "name = \"x\"\nrole = \"device\"\nextended_key_usage = [\"server-auth\", \"client-auth\"]",
            "together",
        );
    }

    #[test]
    fn rule_any_eku_is_refused() {
        refused_with(
            "name = \"x\"\nrole = \"device\"\nextended_key_usage = [\"any\"]",
            "anyExtendedKeyUsage",
        );
    }

    #[test]
    fn rule_server_auth_on_entity_is_refused() {
        refused_with(
            "name = \"x\"\nrole = \"entity\"\nkind = \"person\"\nextended_key_usage = [\"server-auth\"]",
            "serverAuth on an entity",
        );
    }

    #[test]
    fn rule_client_auth_on_device_is_refused() {
        refused_with(
            "name = \"x\"\nrole = \"device\"\nextended_key_usage = [\"client-auth\"]",
            "clientAuth on a device",
        );
    }

    #[test]
    fn rule_email_protection_needs_smime() {
        refused_with(
            "name = \"x\"\nrole = \"entity\"\nkind = \"person\"\nextended_key_usage = [\"client-auth\", \"email-protection\"]",
            "implies [client-auth]",
        );
        let p = parse("name = \"x\"\nrole = \"entity\"\nkind = \"person\"\nsmime = true\nextended_key_usage = [\"client-auth\", \"email-protection\"]").unwrap();
        assert_eq!(
            p.extended_key_usage,
            vec![Eku::ClientAuth, Eku::EmailProtection]
        );
    }

    #[test]
    fn rule_device_cannot_accept_email_names() {
        refused_with(
            "name = \"x\"\nrole = \"device\"\nnames = { email = true }",
            "cannot carry email",
        );
    }

    #[test]
    fn rule_entity_cannot_accept_dns_or_ip_names() {
        refused_with(
            "name = \"x\"\nrole = \"entity\"\nkind = \"person\"\nnames = { dns = true }",
            "cannot carry DNS",
        );
        refused_with(
            "name = \"x\"\nrole = \"entity\"\nkind = \"organization\"\nnames = { ip = true }",
            "cannot carry IP",
        );
    }

    #[test]
    fn rule_device_needs_a_name_kind() {
        refused_with(
            "name = \"x\"\nrole = \"device\"\nnames = { dns = false, ip = false, uri = false }",
            "at least one",
        );
    }

    #[test]
    fn rule_person_needs_cn_and_email() {
        refused_with(
            "name = \"x\"\nrole = \"entity\"\nkind = \"person\"\nsubject = { common_name = \"optional\" }",
            "common name",
        );
        refused_with(
            "name = \"x\"\nrole = \"entity\"\nkind = \"person\"\nnames = { email = false }",
            "email",
        );
    }

    #[test]
    fn rule_organization_needs_o() {
        refused_with(
            "name = \"x\"\nrole = \"entity\"\nkind = \"organization\"\nsubject = { organization = \"optional\" }",
            "organizationName",
        );
    }

    #[test]
    fn rule_entity_needs_kind_and_device_has_none() {
        refused_with("name = \"x\"\nrole = \"entity\"", "kind");
        refused_with(
            "name = \"x\"\nrole = \"device\"\nkind = \"person\"",
            "only entity",
        );
    }

    #[test]
    fn rule_smime_only_for_persons() {
        refused_with("name = \"x\"\nrole = \"device\"\nsmime = true", "smime");
    }

    #[test]
    fn rule_wildcards_need_dns() {
        refused_with(
            "name = \"x\"\nrole = \"device\"\nnames = { dns = false }\nallow_wildcards = true",
            "wildcards",
        );
    }

    #[test]
    fn invalid_unknown_keys_are_errors() {
        invalid_with(
            "name = \"x\"\nrole = \"device\"\ncolour = \"blue\"",
            "colour",
        );
        invalid_with(
            "name = \"x\"\nrole = \"device\"\nnames = { fax = true }",
            "fax",
        );
    }

    #[test]
    fn invalid_validity_values() {
        invalid_with(
            "name = \"x\"\nrole = \"device\"\nvalidity = { default = \"90\" }",
            "validity.default",
        );
        invalid_with(
            "name = \"x\"\nrole = \"device\"\nvalidity = { max = \"12x\" }",
            "unknown unit",
        );
        invalid_with(
            "name = \"x\"\nrole = \"device\"\nvalidity = { default = \"400d\", max = \"397d\" }",
            "longer than max",
        );
        invalid_with(
            "name = \"x\"\nrole = \"device\"\nvalidity = { max = \"20y\" }",
            "ceiling",
        );
    }

    #[test]
    fn invalid_role_and_syntax() {
        invalid_with("name = \"x\"\nrole = \"robot\"", "profile test.toml");
        invalid_with("name = \"x\"\nrole = ", "profile test.toml");
        invalid_with("role = \"device\"", "name");
        invalid_with("name = \"a b\"\nrole = \"device\"", "key `name`");
    }

    #[test]
    fn permitted_patterns_must_match_accepted_kinds() {
        let p = parse(
            "name = \"x\"\nrole = \"device\"\npermitted = [\"corp.internal\", \"10.0.0.0/8\"]",
        )
        .unwrap();
        assert_eq!(p.permitted.len(), 2);
        refused_with(
            "name = \"x\"\nrole = \"entity\"\nkind = \"person\"\npermitted = [\"corp.internal\"]",
            "permitted[0]",
        );
        invalid_with(
            "name = \"x\"\nrole = \"device\"\npermitted = [\"10.0.0.0/99\"]",
            "permitted[0]",
        );
    }

    #[test]
    fn validity_parsing() {
        assert_eq!(Validity::parse("24h").unwrap().seconds(), 86_400);
        assert_eq!(Validity::parse("90d").unwrap().seconds(), 90 * 86_400);
        assert_eq!(Validity::parse("1y").unwrap().seconds(), 365 * 86_400);
        assert_eq!(Validity::parse("2w").unwrap().seconds(), 14 * 86_400);
        assert_eq!(Validity::parse("90m").unwrap().seconds(), 5400);
        assert_eq!(Validity::parse("45s").unwrap().seconds(), 45);
        assert_eq!(Validity::parse("90m").unwrap().to_string(), "90m");
        for bad in [
            "",
            "d",
            "0d",
            "-5d",
            "5",
            "5x",
            "1.5d",
            "99999999999999999999d",
        ] {
            assert!(Validity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crl_urls_are_http_with_a_host_and_a_path() {
        for good in [
            "http://ca.corp.internal/crl/device.crl",
            "http://127.0.0.1:8080/crl/device.crl",
            "http://[::1]:80/crl/entity.crl",
            "http://[::1]/c",
        ] {
            assert_eq!(check_crl_url(good).as_deref(), Ok(good), "{good}");
        }
        for (bad, says) in [
            ("https://ca.corp.internal/crl/device.crl", "http://"),
            ("ldap://ca/x", "http://"),
            ("http://ca.corp.internal", "no path"),
            ("http://ca:0/x", "port"),
            ("http://ca:99999/x", "port"),
            ("http://[::1/x", "brackets"),
            ("http://[zz]/x", "IPv6"),
            ("http://[::1]x/y", "after the IPv6"),
            ("http://bad host/x", "host"),
            ("http://ca/x?y=1", "path"),
            ("http://ca/x#f", "path"),
            ("http://ca/x y", "path"),
        ] {
            let e = check_crl_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let long = format!("http://ca/{}", "x".repeat(MAX_CRL_URL));
        assert!(check_crl_url(&long).unwrap_err().contains("over 512"));
        let p = parse("name = \"x\"\nrole = \"device\"\ncrl_url = \"http://ca/crl/device.crl\"")
            .unwrap();
        assert_eq!(p.crl_url.as_deref(), Some("http://ca/crl/device.crl"));
        assert!(p
            .to_toml()
            .contains("crl_url = \"http://ca/crl/device.crl\""));
        assert_eq!(parse(&p.to_toml()).unwrap().crl_url, p.crl_url);
    }
}
