//! The rulebook: the table of roles and kinds (EKUs, name kinds, subject rules,
//! validity caps), the limits every request is held to, and a stable code for
//! every rule mtlsca enforces. Profiles, policy, the engine's self-check, `inspect`
//! and the verifier read it; no rule or number is written twice.
//!
//! A refusal is data ([`Refusal`]: rule, field, detail). Its text is made at the
//! edge by [`Refusal::message`], which names the field the way the requester wrote
//! it: `--email` on the command line, `email` in a batch manifest, the CSR's
//! email name in a CSR.

use std::fmt;

use serde::Serialize;

use crate::role::{Eku, EntityKind, NameKind, Role};

/// Smallest RSA modulus accepted anywhere (CSRs, imported keys, `inspect` findings).
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted in a CSR.
pub const RSA_MAX_BITS: usize = 8192;
/// Most subjectAltNames in one request (Let's Encrypt's limit as well).
pub const MAX_NAMES: usize = 100;
/// Most bytes of all requested names together: keeps a certificate far below the
/// 64 KiB that DER readers such as rustls-webpki accept.
pub const MAX_NAME_BYTES: usize = 16 * 1024;
/// Largest certificate the engine lets out (checked when it reads its work back).
pub const MAX_CERT_DER: usize = 32 * 1024;
/// Longest request id.
pub const MAX_REQUEST_ID: usize = 256;
/// Longest validity any profile may allow (a guard against typos such as "3650y").
pub const VALIDITY_CEILING_SECS: i64 = 10 * 365 * 86_400;

/// What one kind of certificate is: the row of the role table in DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRules {
    /// The role: device or entity.
    pub role: Role,
    /// The entity kind (person or organisation); `None` for devices.
    pub kind: Option<EntityKind>,
    /// The name kinds the role may carry at all.
    pub name_kinds: &'static [NameKind],
    /// The name kinds a profile of this kind accepts unless it says otherwise.
    pub default_names: &'static [NameKind],
    /// At least one name of these kinds is required (empty: no name required).
    pub identity: &'static [NameKind],
    /// Default (common name, organization, country) requirements.
    pub subject: [Requirement; 3],
    /// The subject attribute that must be `required` in every profile of this kind.
    pub fixed_subject: Option<SubjectAttr>,
    /// What a common name may be.
    pub cn: CnRule,
    /// Default and maximum validity of a profile that does not say, in seconds.
    pub validity: (i64, i64),
}

/// Whether a subject attribute must, may or must not appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    /// Must appear.
    Required,
    /// May appear.
    Optional,
    /// Must not appear.
    Forbidden,
}

impl Requirement {
    /// The profile spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Requirement::Required => "required",
            Requirement::Optional => "optional",
            Requirement::Forbidden => "forbidden",
        }
    }
}

/// The subject attributes mtlsca writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum SubjectAttr {
    /// commonName.
    CommonName,
    /// organizationName.
    Organization,
    /// countryName.
    Country,
}

/// What a certificate's common name may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CnRule {
    /// A device: the CN, when present, repeats one of its DNS names (so OpenSSL,
    /// which reads a CN as a host name, holds it to the name constraints like the
    /// SANs); it defaults to the first DNS name, and a device without one has no CN.
    RepeatsDnsName,
    /// An entity: a person's or organisation's name, never a host name or IP literal.
    NotAHost,
}

const DEVICE: KindRules = KindRules {
    role: Role::Device,
    kind: None,
    name_kinds: &[NameKind::Dns, NameKind::Ip, NameKind::Uri],
    default_names: &[NameKind::Dns, NameKind::Ip, NameKind::Uri],
    identity: &[NameKind::Dns, NameKind::Ip, NameKind::Uri],
    subject: [
        Requirement::Optional,
        Requirement::Optional,
        Requirement::Optional,
    ],
    fixed_subject: None,
    cn: CnRule::RepeatsDnsName,
    validity: (90 * 86_400, 397 * 86_400),
};

const PERSON: KindRules = KindRules {
    role: Role::Entity,
    kind: Some(EntityKind::Person),
    name_kinds: &[NameKind::Email, NameKind::Uri],
    default_names: &[NameKind::Email],
    identity: &[NameKind::Email],
    subject: [
        Requirement::Required,
        Requirement::Optional,
        Requirement::Optional,
    ],
    fixed_subject: Some(SubjectAttr::CommonName),
    cn: CnRule::NotAHost,
    validity: (365 * 86_400, 825 * 86_400),
};

const ORGANIZATION: KindRules = KindRules {
    role: Role::Entity,
    kind: Some(EntityKind::Organization),
    name_kinds: &[NameKind::Email, NameKind::Uri],
    default_names: &[],
    identity: &[],
    subject: [
        Requirement::Optional,
        Requirement::Required,
        Requirement::Optional,
    ],
    fixed_subject: Some(SubjectAttr::Organization),
    cn: CnRule::NotAHost,
    validity: (365 * 86_400, 825 * 86_400),
};

/// The rules of a role and entity kind (an entity without a kind reads as an
/// organisation, the less demanding row).
pub fn kind_rules(role: Role, kind: Option<EntityKind>) -> &'static KindRules {
    match (role, kind) {
        (Role::Device, _) => &DEVICE,
        (Role::Entity, Some(EntityKind::Person)) => &PERSON,
        (Role::Entity, _) => &ORGANIZATION,
    }
}

/// Whether a role may carry names of this kind at all.
pub fn name_kind_allowed(role: Role, kind: NameKind) -> bool {
    kind_rules(role, None).name_kinds.contains(&kind)
        || (role == Role::Entity && PERSON.name_kinds.contains(&kind))
}

/// The EKUs a role implies: exactly these go into a leaf.
pub fn implied_ekus(role: Role, kind: Option<EntityKind>, smime: bool) -> Vec<Eku> {
    match (role, kind) {
        (Role::Device, _) => vec![Eku::ServerAuth],
        (Role::Entity, Some(EntityKind::Person)) if smime => {
            vec![Eku::ClientAuth, Eku::EmailProtection]
        }
        (Role::Entity, _) => vec![Eku::ClientAuth],
    }
}

/// Why a set of EKUs is not acceptable for a role; `None` when it is.
pub fn eku_conflict(role: Role, ekus: &[Eku]) -> Option<(Rule, &'static str)> {
    if ekus.contains(&Eku::Any) {
        return Some((
            Rule::EkuAny,
            "anyExtendedKeyUsage is refused: it gives a certificate every meaning at once",
        ));
    }
    if ekus.contains(&Eku::ServerAuth) && ekus.contains(&Eku::ClientAuth) {
        return Some((
            Rule::EkuServerAndClient,
            "serverAuth and clientAuth together are refused: a certificate is either a device (serverAuth) or an entity (clientAuth)",
        ));
    }
    match role {
        Role::Device if ekus.contains(&Eku::ClientAuth) => Some((
            Rule::EkuWrongRole,
            "clientAuth on a device is refused: clientAuth identifies a person or organisation",
        )),
        Role::Device if ekus.contains(&Eku::EmailProtection) => Some((
            Rule::EkuWrongRole,
            "emailProtection on a device is refused: S/MIME is for persons",
        )),
        Role::Entity if ekus.contains(&Eku::ServerAuth) => Some((
            Rule::EkuWrongRole,
            "serverAuth on an entity is refused: serverAuth identifies a device",
        )),
        _ => None,
    }
}

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $summary:literal; )*) => {
        /// Every rule mtlsca enforces, each with a stable kebab-case code (the
        /// README lists them; JSON output carries the code as `rule`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Rule {
            $( $(#[$doc])* $variant, )*
        }

        impl Rule {
            /// Every rule, in README order.
            pub const ALL: &'static [Rule] = &[ $( Rule::$variant, )* ];

            /// The stable code.
            pub fn code(self) -> &'static str {
                match self { $( Rule::$variant => $code, )* }
            }

            /// One line on what the rule says.
            pub fn summary(self) -> &'static str {
                match self { $( Rule::$variant => $summary, )* }
            }
        }
    };
}

rules! {
    /// A name that is not a DNS name, IP address, URI or email address.
    NameSyntax = "name-syntax", "a requested name is not well-formed (DNS, IP, URI or email syntax, SPIFFE ID rules)";
    /// A name of a kind the role may not carry.
    NameKindForRole = "name-kind-for-role", "a device carries DNS, IP and URI names; an entity carries email (and URI) names";
    /// A name of a kind the profile does not accept.
    NameKindForProfile = "name-kind-for-profile", "the profile's `names` table does not accept this kind of name";
    /// A wildcard DNS name under a profile that does not allow them.
    WildcardNotAllowed = "wildcard-not-allowed", "wildcard DNS names need `allow_wildcards = true` in the profile";
    /// A name outside the profile's `permitted` patterns.
    NameOutsideProfile = "name-outside-profile", "the name lies outside the profile's `permitted` patterns";
    /// A name outside the CA's name constraints.
    NameOutsideConstraints = "name-outside-constraints", "the name lies outside the CA's name constraints (`init --permit-dns/--permit-ip/--permit-uri`)";
    /// A CSR asks for a name type mtlsca never issues.
    NameTypeUnsupported = "name-type-unsupported", "UPN, directoryName, otherName and registeredID names are never issued";
    /// No name identifies the subject.
    NoIdentity = "no-identity", "a device needs a DNS, IP or URI name; a person needs an email address";
    /// Too many names, or too many bytes of names.
    RequestTooLarge = "request-too-large", "at most 100 names and 16 KiB of names per request";
    /// A subject attribute that is not a valid value.
    SubjectSyntax = "subject-syntax", "a subject attribute is empty, too long, holds control characters, or a country is not two letters";
    /// A subject attribute the profile forbids.
    SubjectAttributeForbidden = "subject-attribute-forbidden", "the profile's `subject` table forbids this attribute";
    /// A subject attribute the profile requires is missing.
    SubjectAttributeRequired = "subject-attribute-required", "the profile's `subject` table requires this attribute";
    /// A device CN that is not one of its DNS names.
    DeviceCnNotADnsName = "device-cn-not-a-dns-name", "a device's common name must repeat one of its DNS names (an IP-only or URI-only device has no CN)";
    /// An entity CN that reads as a host name or IP address.
    EntityCnIsAHost = "entity-cn-is-a-host", "an entity's common name is a person's or organisation's name, never a host name or IP address";
    /// anyExtendedKeyUsage.
    EkuAny = "eku-any", "anyExtendedKeyUsage is never issued";
    /// serverAuth and clientAuth together.
    EkuServerAndClient = "eku-server-and-client", "serverAuth and clientAuth are never issued together";
    /// An EKU of the other role.
    EkuWrongRole = "eku-wrong-role", "clientAuth or emailProtection on a device, serverAuth on an entity";
    /// An EKU the profile does not issue.
    EkuNotInProfile = "eku-not-in-profile", "a CSR asks for an EKU its profile does not issue";
    /// A CSR asks to be a CA.
    CsrRequestsCa = "csr-requests-ca", "a CSR asks for basicConstraints CA:TRUE";
    /// A CSR asks for a critical extension mtlsca does not know.
    CsrUnknownCriticalExtension = "csr-unknown-critical-extension", "a CSR asks for a critical extension mtlsca does not know";
    /// A CSR that cannot be read.
    CsrUnreadable = "csr-unreadable", "the CSR is not PEM or DER PKCS#10, or holds more than one request";
    /// A CSR whose signature does not verify.
    CsrSignature = "csr-signature", "the CSR's signature does not verify (tampered, or signed by another key)";
    /// A CSR signed with an algorithm mtlsca does not accept.
    CsrSignatureAlgorithm = "csr-signature-algorithm", "the CSR is signed with SHA-1 or another algorithm mtlsca does not accept";
    /// A weak key.
    KeyTooWeak = "key-too-weak", "RSA keys need at least 2048 bits and a public exponent of at least 65537";
    /// A key algorithm or curve mtlsca does not accept.
    KeyUnsupported = "key-unsupported", "keys are ECDSA P-256/P-384, Ed25519 or RSA 2048-8192";
    /// A validity that does not parse.
    ValiditySyntax = "validity-syntax", "a validity is a number and a unit (s, m, h, d, w, y), or --not-after a time";
    /// A validity over the profile's maximum.
    ValidityOverProfileMax = "validity-over-profile-max", "the validity is over the profile's `validity.max`";
    /// A validity that would outlive the issuing CA.
    ValidityPastIssuingCa = "validity-past-issuing-ca", "the certificate would outlive its issuing CA";
    /// A request id that is not usable.
    RequestIdSyntax = "request-id-syntax", "a request id is 1-256 characters without control characters";
    /// A request id recorded for a different request.
    RequestIdConflict = "request-id-conflict", "a request id stands for one request; this one was recorded for another";
    /// A request id of the form only renewals are recorded under.
    RequestIdReserved = "request-id-reserved", "request ids starting with `renewal-of:` are the engine's: only a renewal (`mtlsca renew`, `batch --renew-within`) is recorded under one, the one of the certificate it replaces";
    /// A batch entry id that cannot name files.
    BatchIdSyntax = "batch-id-syntax", "a batch id starts with a letter or digit and holds only letters, digits and . _ - @ +";
    /// A batch entry id used twice.
    BatchIdDuplicate = "batch-id-duplicate", "batch ids are unique within a manifest";
    /// Two batch ids whose files would have the same name.
    BatchIdCollision = "batch-id-collision", "two batch ids must not map onto the same files (`web` and `web.chain` both write web.chain.pem)";
    /// An output file that exists already.
    OutputExists = "output-exists", "mtlsca never overwrites a file (choose another --out)";
    /// An output directory that does not exist.
    OutputDirMissing = "output-dir-missing", "the directory of an output file must exist";
    /// An output name that is a symbolic link.
    OutputIsSymlink = "output-is-symlink", "an output name must not be a symbolic link, dangling or not";
    /// A profile name the CA does not have.
    ProfileUnknown = "profile-unknown", "the CA has no profile of that name (`mtlsca profile list` shows them)";
    /// A profile that is not valid TOML or has unknown keys.
    ProfileSyntax = "profile-syntax", "a profile is TOML with the documented keys only";
    /// A profile whose `name` is not usable or not its file's.
    ProfileName = "profile-name", "a profile's name is 1-64 letters, digits, `-` or `_`, and matches its file name";
    /// A profile `kind` that does not fit its role.
    ProfileKind = "profile-kind", "entity profiles say `kind = person|organization`; device profiles have none";
    /// A profile EKU list that is not what its role implies.
    ProfileEku = "profile-eku", "`extended_key_usage` may only repeat what the role implies";
    /// S/MIME on a profile that is not a person profile.
    ProfileSmime = "profile-smime", "`smime` is for person profiles only";
    /// A profile validity that is not usable.
    ProfileValidity = "profile-validity", "`validity.default` must not exceed `validity.max`, nor `max` 10 years";
    /// Profile subject rules that break the role table.
    ProfileSubject = "profile-subject", "person profiles require a CN; organization profiles require O";
    /// Profile name kinds that break the role table.
    ProfileNames = "profile-names", "a profile accepts only the name kinds of its role, and a device profile at least one";
    /// Wildcards allowed without DNS names.
    ProfileWildcards = "profile-wildcards", "`allow_wildcards` needs DNS names";
    /// A `permitted` pattern that is not usable.
    ProfilePermitted = "profile-permitted", "`permitted` patterns must parse and be of a name kind the profile accepts";
    /// A `crl_url` that is not an http:// URL with a host and a path.
    ProfileCrlUrl = "profile-crl-url", "`crl_url` is an http:// URL with a host and a path, at most 512 bytes";
    /// No certificate matches the given serial, fingerprint or id.
    NotFound = "not-found", "no certificate matches";
    /// A revocation of a certificate that is revoked already (a revocation is final).
    AlreadyRevoked = "already-revoked", "a certificate is revoked once; its reason and time are final";
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl Rule {
    /// The rule of a stable code.
    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.code() == code)
    }
}

impl<'de> serde::Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rule, D::Error> {
        let code = String::deserialize(d)?;
        Rule::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown rule code `{code}`")))
    }
}

/// Where a request came from: decides how a refusal names its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Origin {
    /// Command-line arguments (`--email`).
    #[default]
    Arguments,
    /// A batch manifest entry (`email`).
    Manifest,
    /// A CSR (its email name).
    Csr,
    /// A profile file (its keys).
    Profile,
    /// An ACME order (its identifiers, of type `dns` or `ip`).
    Acme,
}

impl Origin {
    /// Every origin.
    pub const ALL: [Origin; 5] = [
        Origin::Arguments,
        Origin::Manifest,
        Origin::Csr,
        Origin::Profile,
        Origin::Acme,
    ];

    /// `arguments`, `manifest`, `csr`, `profile` or `acme`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Arguments => "arguments",
            Origin::Manifest => "manifest",
            Origin::Csr => "csr",
            Origin::Profile => "profile",
            Origin::Acme => "acme",
        }
    }

    /// The origin `as_str` spells so.
    pub fn parse(s: &str) -> Option<Origin> {
        Origin::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// The part of a request a refusal is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Field {
    /// A subjectAltName of this kind.
    Name(NameKind),
    /// A subject attribute.
    Subject(SubjectAttr),
    /// The requested validity.
    Validity,
    /// The key (type, size, algorithm).
    Key,
    /// The requested EKUs (CSR).
    Eku,
    /// basicConstraints (CSR).
    BasicConstraints,
    /// An extension (CSR), by OID.
    Extension,
    /// The CSR as a whole.
    Csr,
    /// The request id.
    RequestId,
    /// A batch entry id.
    Id,
    /// An output file.
    Output,
    /// A profile key, dotted (`validity.max`).
    ProfileKey(String),
    /// The profile (name).
    Profile,
}

impl Field {
    /// The neutral name, for JSON (`dns`, `cn`, `validity`, `profile.validity.max`).
    pub fn name(&self) -> String {
        match self {
            Field::Name(k) => k.as_str().to_ascii_lowercase(),
            Field::Subject(SubjectAttr::CommonName) => "cn".into(),
            Field::Subject(SubjectAttr::Organization) => "org".into(),
            Field::Subject(SubjectAttr::Country) => "country".into(),
            Field::Validity => "validity".into(),
            Field::Key => "key".into(),
            Field::Eku => "eku".into(),
            Field::BasicConstraints => "basic-constraints".into(),
            Field::Extension => "extension".into(),
            Field::Csr => "csr".into(),
            Field::RequestId => "request-id".into(),
            Field::Id => "id".into(),
            Field::Output => "out".into(),
            Field::ProfileKey(k) => format!("profile.{k}"),
            Field::Profile => "profile".into(),
        }
    }

    /// The field whose [`Field::name`] this is.
    pub fn from_name(name: &str) -> Option<Field> {
        let field = match name {
            "dns" => Field::Name(NameKind::Dns),
            "ip" => Field::Name(NameKind::Ip),
            "uri" => Field::Name(NameKind::Uri),
            "email" => Field::Name(NameKind::Email),
            "cn" => Field::Subject(SubjectAttr::CommonName),
            "org" => Field::Subject(SubjectAttr::Organization),
            "country" => Field::Subject(SubjectAttr::Country),
            "validity" => Field::Validity,
            "key" => Field::Key,
            "eku" => Field::Eku,
            "basic-constraints" => Field::BasicConstraints,
            "extension" => Field::Extension,
            "csr" => Field::Csr,
            "request-id" => Field::RequestId,
            "id" => Field::Id,
            "out" => Field::Output,
            "profile" => Field::Profile,
            other => Field::ProfileKey(other.strip_prefix("profile.")?.to_string()),
        };
        Some(field)
    }

    /// How the requester wrote this field.
    pub fn label(&self, origin: Origin) -> String {
        let name = self.name();
        match (origin, self) {
            (_, Field::ProfileKey(k)) => format!("key `{k}`"),
            (Origin::Csr, Field::Name(k)) => format!("the CSR's {} name", k.as_str()),
            (Origin::Csr, Field::Subject(a)) => format!("the CSR's subject {}", attr_label(*a)),
            (Origin::Csr, Field::Key) => "the CSR's key".into(),
            (Origin::Csr, Field::Eku) => "the CSR's EKU request".into(),
            (Origin::Csr, Field::BasicConstraints) => "the CSR's basicConstraints".into(),
            (Origin::Csr, Field::Extension) => "the CSR's extension".into(),
            (Origin::Csr, Field::Csr) => "the CSR".into(),
            (Origin::Acme, Field::Name(k)) => {
                format!("{} identifier", k.as_str().to_ascii_lowercase())
            }
            (Origin::Arguments, Field::Key) => "--key-type".into(),
            (Origin::Arguments, Field::Id) => "id".into(),
            (Origin::Arguments, Field::Profile) => "profile".into(),
            (Origin::Arguments, _) => format!("--{name}"),
            (Origin::Manifest, Field::Key) => "key_type".into(),
            (Origin::Manifest, Field::RequestId) => "id".into(),
            (_, _) => name.replace('-', "_"),
        }
    }
}

fn attr_label(a: SubjectAttr) -> &'static str {
    match a {
        SubjectAttr::CommonName => "CN",
        SubjectAttr::Organization => "O",
        SubjectAttr::Country => "C",
    }
}

/// Why a request (or a profile) is refused: one rule, the field it concerns, the
/// offending value, and the detail. The text is made at the edge (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Refusal {
    /// The rule broken.
    pub rule: Rule,
    /// What part of the request, when one part is at fault.
    pub field: Option<Field>,
    /// The value at fault, printable (control characters escaped).
    pub value: Option<String>,
    /// What is wrong, and where one exists, what would change the outcome.
    pub detail: String,
    /// Which entry of several (a batch manifest's `certificate #3 (id web)`).
    pub entry: Option<String>,
}

impl Refusal {
    /// A refusal of `rule` with its detail.
    pub fn new(rule: Rule, detail: impl Into<String>) -> Refusal {
        Refusal {
            rule,
            field: None,
            value: None,
            detail: detail.into(),
            entry: None,
        }
    }

    /// Say which entry of several it is about.
    pub fn in_entry(mut self, entry: impl Into<String>) -> Refusal {
        self.entry = Some(entry.into());
        self
    }

    /// The field it is about.
    pub fn on(mut self, field: Field) -> Refusal {
        self.field = Some(field);
        self
    }

    /// The value at fault (made printable here).
    pub fn value(mut self, v: impl AsRef<str>) -> Refusal {
        self.value = Some(crate::text::printable(v.as_ref()));
        self
    }

    /// The sentence for a requester of `origin`: `--dns evil.com: outside ...`.
    pub fn message(&self, origin: Origin) -> String {
        match &self.entry {
            // An entry's detail is already the whole sentence about the field.
            Some(e) => format!("{e}: {}", self.detail),
            None => self.message_in_entry(origin),
        }
    }

    fn message_in_entry(&self, origin: Origin) -> String {
        let detail = self.detail_for(origin);
        match (&self.field, &self.value) {
            (Some(f), Some(v)) => format!("{} `{v}`: {detail}", f.label(origin)),
            (Some(f), None) => format!("{}: {detail}", f.label(origin)),
            (None, Some(v)) => format!("`{v}`: {detail}"),
            (None, None) => detail.into_owned(),
        }
    }

    /// The detail as a requester of `origin` reads it. Details are written for
    /// the command line, where advice names flags (`--ip`, `--not-after`); a
    /// manifest names its keys, and a CSR or an ACME order has no flags at all:
    /// - an IP address given as a DNS name is told where an IP goes there;
    /// - for a CSR or an ACME order, the clauses of advice that name a flag
    ///   (`...; ask for ... or --not-after T`) are left out.
    fn detail_for(&self, origin: Origin) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        let ip_as_dns = self.rule == Rule::NameSyntax
            && self.field == Some(Field::Name(NameKind::Dns))
            && self
                .value
                .as_deref()
                .is_some_and(|v| v.parse::<std::net::IpAddr>().is_ok());
        match origin {
            Origin::Arguments | Origin::Profile => Cow::Borrowed(&self.detail),
            Origin::Manifest if ip_as_dns => Cow::Borrowed("an IP address goes in `ip`, not `dns`"),
            Origin::Manifest => Cow::Borrowed(&self.detail),
            Origin::Acme if ip_as_dns => {
                Cow::Borrowed("an IP address must be an identifier of type `ip`, not `dns`")
            }
            Origin::Csr if ip_as_dns => {
                Cow::Borrowed("an IP address must be an iPAddress name, not a dNSName")
            }
            Origin::Csr | Origin::Acme => without_flag_advice(&self.detail),
        }
    }

    /// `{rule, field, message}` for JSON output.
    pub fn to_json(&self, origin: Origin) -> serde_json::Value {
        serde_json::json!({
            "rule": self.rule.code(),
            "field": self.field.as_ref().map(|f| f.name()),
            "message": self.message(origin),
        })
    }
}

/// A detail without its clauses (`; `-separated) that name a command-line flag,
/// the first clause (what is wrong) always kept.
fn without_flag_advice(detail: &str) -> std::borrow::Cow<'_, str> {
    let mut clauses = detail.split("; ");
    let first = clauses.next().unwrap_or("");
    let rest: Vec<&str> = clauses.collect();
    if !rest.iter().any(|c| names_a_flag(c)) {
        return std::borrow::Cow::Borrowed(detail);
    }
    let mut kept = vec![first];
    kept.extend(rest.into_iter().filter(|c| !names_a_flag(c)));
    std::borrow::Cow::Owned(kept.join("; "))
}

/// Whether text names a command-line flag (`--ip`, `(--permit-dns`), not a DNS
/// label that holds `--` (`xn--bcher-kva.example`).
fn names_a_flag(text: &str) -> bool {
    text.match_indices("--").any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + 2..].chars().next();
        before.is_none_or(|c| c.is_whitespace() || "(`'\",/".contains(c))
            && after.is_some_and(|c| c.is_ascii_lowercase())
    })
}

/// Refusals of one request, with where the request came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Refusals {
    /// How the request was made (decides the field labels).
    pub origin: Origin,
    /// Every rule the request breaks.
    pub reasons: Vec<Refusal>,
    /// What was refused, when the message must say it (`profile x.toml`,
    /// `certificate #3 (id web)`).
    pub context: Option<String>,
}

impl Refusals {
    /// Refusals of a request of `origin`.
    pub fn new(origin: Origin, reasons: Vec<Refusal>) -> Refusals {
        Refusals {
            origin,
            reasons,
            context: None,
        }
    }

    /// Say what was refused.
    pub fn context(mut self, context: impl Into<String>) -> Refusals {
        self.context = Some(context.into());
        self
    }

    /// The messages, each naming its field.
    pub fn messages(&self) -> Vec<String> {
        self.reasons.iter().map(|r| self.message_of(r)).collect()
    }

    /// One refusal's message.
    pub fn message_of(&self, r: &Refusal) -> String {
        r.message(self.origin)
    }

    /// The JSON list of `{rule, field, message}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.reasons
                .iter()
                .map(|r| r.to_json(self.origin))
                .collect(),
        )
    }

    /// Whether a rule is among the reasons.
    pub fn has(&self, rule: Rule) -> bool {
        self.reasons.iter().any(|r| r.rule == rule)
    }
}

impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.context {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.messages().join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every origin and field spelled out and read back (what travels on the
    /// control socket); the matches make a new variant a compile error here.
    #[test]
    fn origins_fields_and_codes_read_back_from_their_spelling() {
        for o in Origin::ALL {
            match o {
                Origin::Arguments
                | Origin::Manifest
                | Origin::Csr
                | Origin::Profile
                | Origin::Acme => {}
            }
            assert_eq!(Origin::parse(o.as_str()), Some(o));
        }
        let names = [NameKind::Dns, NameKind::Ip, NameKind::Uri, NameKind::Email];
        let attrs = [
            SubjectAttr::CommonName,
            SubjectAttr::Organization,
            SubjectAttr::Country,
        ];
        let mut fields: Vec<Field> = names.into_iter().map(Field::Name).collect();
        fields.extend(attrs.into_iter().map(Field::Subject));
        fields.extend([
            Field::Validity,
            Field::Key,
            Field::Eku,
            Field::BasicConstraints,
            Field::Extension,
            Field::Csr,
            Field::RequestId,
            Field::Id,
            Field::Output,
            Field::ProfileKey("validity.max".into()),
            Field::ProfileKey(String::new()),
            Field::Profile,
        ]);
        for f in fields {
            match &f {
                Field::Name(k) => match k {
                    NameKind::Dns | NameKind::Ip | NameKind::Uri | NameKind::Email => {}
                },
                Field::Subject(_)
                | Field::Validity
                | Field::Key
                | Field::Eku
                | Field::BasicConstraints
                | Field::Extension
                | Field::Csr
                | Field::RequestId
                | Field::Id
                | Field::Output
                | Field::ProfileKey(_)
                | Field::Profile => {}
            }
            assert_eq!(Field::from_name(&f.name()), Some(f.clone()), "{f:?}");
        }
        assert_eq!(Field::from_name("nonsense"), None);
        for r in Rule::ALL {
            assert_eq!(Rule::from_code(r.code()), Some(*r));
        }
        assert_eq!(Rule::from_code("no-such-rule"), None);
    }

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Rule::ALL {
            let c = r.code();
            assert!(seen.insert(c), "{c} twice");
            assert!(
                c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{c}"
            );
            assert!(!r.summary().is_empty());
        }
    }

    #[test]
    fn messages_name_the_field_as_written() {
        let r = Refusal::new(Rule::NameKindForRole, "a device cannot carry email names")
            .on(Field::Name(NameKind::Email))
            .value("a@b.test");
        assert_eq!(
            r.message(Origin::Arguments),
            "--email `a@b.test`: a device cannot carry email names"
        );
        assert!(r.message(Origin::Manifest).starts_with("email `a@b.test`"));
        assert!(r.message(Origin::Csr).starts_with("the CSR's email name"));
        let j = r.to_json(Origin::Arguments);
        assert_eq!(j["rule"], "name-kind-for-role");
        assert_eq!(j["field"], "email");
    }

    #[test]
    fn csrs_and_acme_orders_are_told_no_command_line_flags() {
        let ip = Refusal::new(
            Rule::NameSyntax,
            "`10.0.0.1` is an IP address: give it with --ip, not --dns",
        )
        .on(Field::Name(NameKind::Dns))
        .value("10.0.0.1");
        assert!(ip.message(Origin::Arguments).contains("--ip"));
        assert_eq!(
            ip.message(Origin::Acme),
            "dns identifier `10.0.0.1`: an IP address must be an identifier of type `ip`, not `dns`"
        );
        assert!(ip.message(Origin::Manifest).contains("goes in `ip`"));
        assert!(ip.message(Origin::Csr).contains("iPAddress"));
        let outside = Refusal::new(
            Rule::NameOutsideConstraints,
            "outside the CA's name constraints (DNS corp.internal); they are fixed in the root certificate at `init` (--permit-dns, --permit-ip, --permit-uri): use a name inside them",
        )
        .on(Field::Name(NameKind::Dns))
        .value("xn--bcher-kva.example");
        for origin in [Origin::Acme, Origin::Csr] {
            let m = outside.message(origin);
            assert!(!names_a_flag(&m), "{m}");
            assert!(
                m.contains("xn--bcher-kva.example") && m.contains("(DNS corp.internal)"),
                "{m}"
            );
        }
        assert!(outside.message(Origin::Arguments).contains("--permit-dns"));
        assert!(names_a_flag("or --not-after 2030"));
        assert!(!names_a_flag("`xn--bcher-kva.example`"));
    }

    #[test]
    fn the_role_table() {
        assert!(name_kind_allowed(Role::Device, NameKind::Dns));
        assert!(!name_kind_allowed(Role::Device, NameKind::Email));
        assert!(name_kind_allowed(Role::Entity, NameKind::Email));
        assert!(!name_kind_allowed(Role::Entity, NameKind::Ip));
        assert_eq!(
            implied_ekus(Role::Entity, Some(EntityKind::Person), true),
            vec![Eku::ClientAuth, Eku::EmailProtection]
        );
        assert_eq!(
            eku_conflict(Role::Device, &[Eku::ServerAuth, Eku::ClientAuth]).map(|c| c.0),
            Some(Rule::EkuServerAndClient)
        );
        assert_eq!(eku_conflict(Role::Device, &[Eku::ServerAuth]), None);
    }

    #[test]
    fn device_implies_server_auth_only() {
        assert_eq!(
            implied_ekus(Role::Device, None, true),
            vec![Eku::ServerAuth]
        );
    }

    #[test]
    fn person_implies_client_auth_and_optionally_email_protection() {
        let p = Some(EntityKind::Person);
        assert_eq!(implied_ekus(Role::Entity, p, false), vec![Eku::ClientAuth]);
        assert_eq!(
            implied_ekus(Role::Entity, p, true),
            vec![Eku::ClientAuth, Eku::EmailProtection]
        );
        let o = Some(EntityKind::Organization);
        assert_eq!(implied_ekus(Role::Entity, o, true), vec![Eku::ClientAuth]);
    }

    #[test]
    fn eku_conflicts_name_the_rule() {
        let cases: &[(Role, &[Eku], Option<&str>)] = &[
            (Role::Device, &[Eku::ServerAuth], None),
            (Role::Entity, &[Eku::ClientAuth], None),
            (Role::Entity, &[Eku::ClientAuth, Eku::EmailProtection], None),
            (
                Role::Device,
                &[Eku::ServerAuth, Eku::ClientAuth],
                Some("together"),
            ),
            (
                Role::Entity,
                &[Eku::ServerAuth, Eku::ClientAuth],
                Some("together"),
            ),
            (Role::Device, &[Eku::Any], Some("anyExtendedKeyUsage")),
            (
                Role::Device,
                &[Eku::ClientAuth],
                Some("clientAuth on a device"),
            ),
            (
                Role::Entity,
                &[Eku::ServerAuth],
                Some("serverAuth on an entity"),
            ),
            (
                Role::Device,
                &[Eku::EmailProtection],
                Some("emailProtection on a device"),
            ),
        ];
        for (role, ekus, want) in cases {
            let got = eku_conflict(*role, ekus).map(|(_, why)| why);
            match want {
                None => assert!(got.is_none(), "{role} {ekus:?}: {got:?}"),
                Some(w) => assert!(got.unwrap_or("").contains(w), "{role} {ekus:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn name_kinds_follow_the_role_table() {
        assert!(name_kind_allowed(Role::Device, NameKind::Dns));
        assert!(name_kind_allowed(Role::Device, NameKind::Ip));
        assert!(name_kind_allowed(Role::Device, NameKind::Uri));
        assert!(!name_kind_allowed(Role::Device, NameKind::Email));
        assert!(name_kind_allowed(Role::Entity, NameKind::Email));
        assert!(!name_kind_allowed(Role::Entity, NameKind::Dns));
        assert!(!name_kind_allowed(Role::Entity, NameKind::Ip));
    }
}
