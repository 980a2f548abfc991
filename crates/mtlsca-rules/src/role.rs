//! The draft's semantics (draft-frank-mtls-via-serverauth-extension-00): what an
//! EKU means, which role a certificate has, and what a pair of certificates in one
//! TLS connection is. Pure data and functions: no I/O, no clock.

use std::fmt;

use serde::{Deserialize, Serialize};

/// id-kp-serverAuth
pub const OID_SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";
/// id-kp-clientAuth
pub const OID_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
/// id-kp-emailProtection
pub const OID_EMAIL_PROTECTION: &str = "1.3.6.1.5.5.7.3.4";
/// anyExtendedKeyUsage
pub const OID_ANY_EKU: &str = "2.5.29.37.0";

/// What a certificate authenticates. The EKU follows from it; nobody lists it by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A machine: server, service, appliance, workload. EKU serverAuth only.
    Device,
    /// Someone: a natural person or a legal entity. EKU clientAuth.
    Entity,
}

impl Role {
    /// `device` or `entity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Entity => "entity",
        }
    }

    /// The one TLS EKU this role carries.
    pub fn tls_eku(self) -> Eku {
        match self {
            Role::Device => Eku::ServerAuth,
            Role::Entity => Eku::ClientAuth,
        }
    }

    /// Read `device` or `entity`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "device" => Some(Role::Device),
            "entity" => Some(Role::Entity),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of entity a clientAuth certificate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EntityKind {
    /// A natural person.
    Person,
    /// A legal entity: an organisation acting as a party.
    Organization,
}

impl EntityKind {
    /// `person` or `organization`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Person => "person",
            EntityKind::Organization => "organization",
        }
    }
}

/// The extended key usages mtlsca knows by name (profile spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Eku {
    /// id-kp-serverAuth: a device.
    #[serde(rename = "server-auth")]
    ServerAuth,
    /// id-kp-clientAuth: an entity.
    #[serde(rename = "client-auth")]
    ClientAuth,
    /// id-kp-emailProtection: S/MIME, for persons.
    #[serde(rename = "email-protection")]
    EmailProtection,
    /// anyExtendedKeyUsage: never issued.
    #[serde(rename = "any")]
    Any,
}

impl Eku {
    /// The profile spelling (`server-auth`, ...).
    pub fn spelling(self) -> &'static str {
        match self {
            Eku::ServerAuth => "server-auth",
            Eku::ClientAuth => "client-auth",
            Eku::EmailProtection => "email-protection",
            Eku::Any => "any",
        }
    }

    /// The dotted OID.
    pub fn oid(self) -> &'static str {
        match self {
            Eku::ServerAuth => OID_SERVER_AUTH,
            Eku::ClientAuth => OID_CLIENT_AUTH,
            Eku::EmailProtection => OID_EMAIL_PROTECTION,
            Eku::Any => OID_ANY_EKU,
        }
    }

    /// The name OpenSSL and the RFCs use, for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Eku::ServerAuth => "serverAuth",
            Eku::ClientAuth => "clientAuth",
            Eku::EmailProtection => "emailProtection",
            Eku::Any => "anyExtendedKeyUsage",
        }
    }

    /// The EKU of a dotted OID, if mtlsca knows it by name.
    pub fn from_oid(oid: &str) -> Option<Eku> {
        match oid {
            OID_SERVER_AUTH => Some(Eku::ServerAuth),
            OID_CLIENT_AUTH => Some(Eku::ClientAuth),
            OID_EMAIL_PROTECTION => Some(Eku::EmailProtection),
            OID_ANY_EKU => Some(Eku::Any),
            _ => None,
        }
    }
}

/// A kind of subjectAltName.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NameKind {
    /// dNSName.
    Dns,
    /// iPAddress.
    Ip,
    /// uniformResourceIdentifier.
    Uri,
    /// rfc822Name.
    Email,
}

impl NameKind {
    /// `DNS`, `IP`, `URI` or `email`, as names are printed.
    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Dns => "DNS",
            NameKind::Ip => "IP",
            NameKind::Uri => "URI",
            NameKind::Email => "email",
        }
    }
}

/// How a certificate reads under the draft, from its EKU extension and CA flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertClass {
    /// serverAuth only: a machine.
    Device,
    /// clientAuth (perhaps emailProtection): a person or organisation.
    Entity,
    /// Both TLS EKUs, or anyExtendedKeyUsage: the draft cannot tell what it is.
    Ambiguous,
    /// A leaf without an EKU extension.
    NoEku,
    /// A CA certificate.
    Ca,
}

impl CertClass {
    /// `device`, `entity`, `ambiguous`, `no-eku` or `ca`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertClass::Device => "device",
            CertClass::Entity => "entity",
            CertClass::Ambiguous => "ambiguous",
            CertClass::NoEku => "no-eku",
            CertClass::Ca => "ca",
        }
    }

    /// The role, for `device` and `entity`.
    pub fn role(self) -> Option<Role> {
        match self {
            CertClass::Device => Some(Role::Device),
            CertClass::Entity => Some(Role::Entity),
            _ => None,
        }
    }
}

impl fmt::Display for CertClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classify a certificate by its EKU OIDs (`None` when it has no EKU extension).
/// A leaf with neither TLS EKU (e.g. only codeSigning) is `NoEku` for TLS purposes.
pub fn classify(is_ca: bool, ekus: Option<&[String]>) -> CertClass {
    if is_ca {
        return CertClass::Ca;
    }
    let Some(ekus) = ekus else {
        return CertClass::NoEku;
    };
    let has = |oid: &str| ekus.iter().any(|e| e == oid);
    let server = has(OID_SERVER_AUTH);
    let client = has(OID_CLIENT_AUTH);
    if has(OID_ANY_EKU) || (server && client) {
        CertClass::Ambiguous
    } else if server {
        CertClass::Device
    } else if client {
        CertClass::Entity
    } else {
        CertClass::NoEku
    }
}

/// What a TLS connection is, from the roles of its two certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connection {
    /// Device to device.
    ServerToServer,
    /// Entity to device.
    ClientToServer,
    /// Device to entity.
    ServerToClient,
    /// Entity to entity.
    EndToEnd,
}

impl Connection {
    /// The four kinds, in the draft's order.
    pub const ALL: [Connection; 4] = [
        Connection::ServerToServer,
        Connection::ClientToServer,
        Connection::ServerToClient,
        Connection::EndToEnd,
    ];

    /// The kebab-case name (`server-to-server`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::ServerToServer => "server-to-server",
            Connection::ClientToServer => "client-to-server",
            Connection::ServerToClient => "server-to-client",
            Connection::EndToEnd => "end-to-end",
        }
    }

    /// Read a kebab-case name.
    pub fn parse(s: &str) -> Option<Connection> {
        Connection::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The roles (initiator, responder) this connection kind needs.
    pub fn roles(self) -> (Role, Role) {
        match self {
            Connection::ServerToServer => (Role::Device, Role::Device),
            Connection::ClientToServer => (Role::Entity, Role::Device),
            Connection::ServerToClient => (Role::Device, Role::Entity),
            Connection::EndToEnd => (Role::Entity, Role::Entity),
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The connection table of the draft: initiator's role, responder's role → kind.
pub fn connection(initiator: Role, responder: Role) -> Connection {
    match (initiator, responder) {
        (Role::Device, Role::Device) => Connection::ServerToServer,
        (Role::Entity, Role::Device) => Connection::ClientToServer,
        (Role::Device, Role::Entity) => Connection::ServerToClient,
        (Role::Entity, Role::Entity) => Connection::EndToEnd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_reads_ekus() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(classify(true, None), CertClass::Ca);
        assert_eq!(classify(false, None), CertClass::NoEku);
        assert_eq!(
            classify(false, Some(&s(&[OID_SERVER_AUTH]))),
            CertClass::Device
        );
        assert_eq!(
            classify(false, Some(&s(&[OID_CLIENT_AUTH]))),
            CertClass::Entity
        );
        assert_eq!(
            classify(false, Some(&s(&[OID_CLIENT_AUTH, OID_EMAIL_PROTECTION]))),
            CertClass::Entity
        );
        assert_eq!(
            classify(false, Some(&s(&[OID_SERVER_AUTH, OID_CLIENT_AUTH]))),
            CertClass::Ambiguous
        );
        assert_eq!(
            classify(false, Some(&s(&[OID_ANY_EKU]))),
            CertClass::Ambiguous
        );
        assert_eq!(
            classify(false, Some(&s(&["1.3.6.1.5.5.7.3.3"]))),
            CertClass::NoEku
        );
    }

    #[test]
    fn connection_table_matches_the_draft() {
        use Role::*;
        assert_eq!(connection(Device, Device), Connection::ServerToServer);
        assert_eq!(connection(Entity, Device), Connection::ClientToServer);
        assert_eq!(connection(Device, Entity), Connection::ServerToClient);
        assert_eq!(connection(Entity, Entity), Connection::EndToEnd);
        for c in Connection::ALL {
            let (i, r) = c.roles();
            assert_eq!(connection(i, r), c);
            assert_eq!(Connection::parse(c.as_str()), Some(c));
        }
    }
}
