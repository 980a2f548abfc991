//! The CA's configuration (`ca.toml`): its name, key type, constraints and
//! settings, and the constraints in effect.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::key::KeyType;
use crate::names::{printable, Pattern};

use super::layout::{CaId, CaKind, Generations, CONFIG_FILE};
use crate::profile::Validity;

/// `<ca-dir>/ca.toml`: what `init` decided. Written last, so its presence marks a
/// complete CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// The CA's name.
    pub name: String,
    /// Key type of the CA keys.
    pub key_type: KeyType,
    /// DNS domain constraints: each covers the domain and every name under it.
    #[serde(default)]
    pub permit_dns: Vec<String>,
    /// IP range constraints (CIDR).
    #[serde(default)]
    pub permit_ip: Vec<String>,
    /// URI host constraints in RFC 5280 §4.2.1.10 form: `corp.internal` (exactly
    /// that host) or `.corp.internal` (any host under it). Empty with
    /// `permit_dns` set: URI hosts are held to the DNS domains. Not written when
    /// empty, so a CA without it stays readable by earlier versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permit_uri: Vec<String>,
    /// When `init` made the CA.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The CA keys in `private/` are encrypted PKCS#8 (`init --encrypt`): a plain
    /// key found there instead is refused as tampering.
    #[serde(default)]
    pub encrypted_keys: bool,
    /// The current generation of each CA (`ca roll`); written only once one is
    /// past 1, so a CA never rolled keeps the `ca.toml` it had.
    #[serde(default, skip_serializing_if = "Generations::is_initial")]
    pub generation: Generations,
    /// How long before a current CA's notAfter the warnings of `store check`
    /// and `list` start (`[rollover]`, each key optional): absent, the defaults
    /// of [`CaConfig::rollover_window`].
    #[serde(default, skip_serializing_if = "Rollover::is_empty")]
    pub rollover: Rollover,
    /// The root is another organisation's (`init --external-root`, then `ca
    /// install`): `root.pem` is its certificate, mtlsca holds no key for it and
    /// publishes no CRL of it. Not written when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external_root: bool,
}

/// `[rollover]` of `ca.toml`: the rollover window of each CA, as a validity
/// span (`device = "400d"`); absent keys take the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollover {
    /// The root's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The device issuing CA's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The entity issuing CA's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
}

impl Rollover {
    /// No window set.
    pub fn is_empty(&self) -> bool {
        self.root.is_none() && self.device.is_none() && self.entity.is_none()
    }

    /// The window `ca.toml` sets for `kind`, if any (exit 3 when it does not parse).
    pub fn of(&self, kind: CaKind) -> Result<Option<Validity>> {
        let v = match kind {
            CaKind::Root => &self.root,
            CaKind::Device => &self.device,
            CaKind::Entity => &self.entity,
        };
        v.as_deref()
            .map(|t| {
                Validity::parse(t).map_err(|m| {
                    Error::State(format!(
                        "{CONFIG_FILE}: key `rollover.{}`: {m}",
                        kind.as_str()
                    ))
                })
            })
            .transpose()
    }
}

impl CaConfig {
    /// The current generation of `kind`.
    pub fn current(&self, kind: CaKind) -> CaId {
        CaId::new(kind, self.generation.of(kind))
    }

    /// The CA's effective name constraints: the DNS domains (`Pattern::Dns`), the
    /// IP ranges, and the URI hosts: `permit_uri`, or, when it is empty and
    /// `permit_dns` is not, for each DNS domain `d` the hosts `d` and `.d`.
    /// An entry that does not parse is an error (exit 3) naming `ca.toml`, the
    /// key and the value; nothing is dropped.
    pub fn constraints(&self) -> Result<Vec<Pattern>> {
        effective_constraints(
            &self.permit_dns,
            &self.permit_ip,
            &self.permit_uri,
            |key, value, why| {
                Error::State(format!(
                    "{CONFIG_FILE}: key `{key}`: `{}` {why}",
                    printable(value)
                ))
            },
        )
    }
}

/// Parse the three constraint lists (`permit_dns`, `permit_ip`, `permit_uri`)
/// into patterns, deriving the URI hosts from the DNS domains when no URI
/// constraint is given; `err(key, value, why)` makes the error of a bad entry.
pub(super) fn effective_constraints(
    dns: &[String],
    ip: &[String],
    uri: &[String],
    err: impl Fn(&str, &str, String) -> Error,
) -> Result<Vec<Pattern>> {
    let mut out = Vec::with_capacity(dns.len() * 3 + ip.len() + uri.len());
    for d in dns {
        match Pattern::parse(d) {
            Ok(p @ Pattern::Dns(_)) => out.push(p),
            Ok(Pattern::DnsUnder(domain)) => {
                return Err(err(
                    "permit_dns",
                    d,
                    format!("is not a DNS domain: a DNS constraint covers the domain and every name under it, and cannot leave the domain itself out; write `{domain}`"),
                ))
            }
            Ok(_) => {
                return Err(err(
                    "permit_dns",
                    d,
                    "is not a DNS domain such as corp.internal".into(),
                ))
            }
            Err(m) => return Err(err("permit_dns", d, format!("is not a DNS domain: {m}"))),
        }
    }
    for c in ip {
        match Pattern::parse(c) {
            Ok(p @ Pattern::Ip { .. }) => out.push(p),
            Ok(_) => {
                return Err(err(
                    "permit_ip",
                    c,
                    "is not an IP range such as 10.0.0.0/8".into(),
                ))
            }
            Err(m) => return Err(err("permit_ip", c, format!("is not an IP range: {m}"))),
        }
    }
    for u in uri {
        let p = Pattern::parse_uri_host(u).map_err(|m| {
            err(
                "permit_uri",
                u,
                format!("is not a URI host constraint: {m}"),
            )
        })?;
        out.push(p);
    }
    if uri.is_empty() {
        let derived: Vec<Pattern> = out
            .iter()
            .filter_map(|p| match p {
                Pattern::Dns(d) => Some([
                    Pattern::UriHost(d.clone()),
                    Pattern::UriHostUnder(d.clone()),
                ]),
                _ => None,
            })
            .flatten()
            .collect();
        out.extend(derived);
    }
    Ok(out)
}
