//! External account binding keys, as the operator makes, lists and revokes
//! them (`mtlsca acme eab`); the ACME server checks a binding against them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;

/// Length of the HMAC keys handed out (HS256 wants at least 32 bytes).
pub const KEY_BYTES: usize = 32;

/// Create an EAB key for accounts whose certificates come from `profile` (a
/// device or workload profile of `ca`; an entity profile is a usage error, an
/// unknown one invalid, exit 2). Durable on return. The key id and HMAC key
/// are random (128 and 256 bits).
pub fn create(
    ca: &crate::ca::Ca,
    store: &crate::store::Store,
    profile: &str,
    now: time::OffsetDateTime,
) -> crate::error::Result<crate::store::acme::EabKey> {
    use crate::error::Error;
    use ring::rand::SecureRandom;
    let p = ca.profile(profile)?;
    if p.role != crate::role::Role::Device {
        return Err(Error::Usage(format!(
            "profile `{profile}` is an entity profile; ACME proves control of DNS names and IPs, so EAB keys are for device or workload profiles only"
        )));
    }
    let rng = ring::rand::SystemRandom::new();
    let (mut kid, mut key) = ([0u8; 16], [0u8; KEY_BYTES]);
    rng.fill(&mut kid)
        .and_then(|()| rng.fill(&mut key))
        .map_err(|_| Error::State("the system's random number generator failed".into()))?;
    let k = crate::store::acme::EabKey {
        kid: format!("eab-{}", crate::hex::encode(&kid)),
        hmac_key: B64.encode(key),
        profile: profile.to_string(),
        created: now,
        account: None,
        revoked: None,
    };
    let acme = store.acme()?;
    acme.put_new_eab(&k)?;
    acme.flush()?;
    Ok(k)
}

/// Every EAB key in the store, oldest first.
pub fn list(store: &crate::store::Store) -> crate::error::Result<Vec<crate::store::acme::EabKey>> {
    let mut keys = store.acme()?.eab_keys()?;
    keys.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.kid.cmp(&b.kid)));
    Ok(keys)
}

/// Revoke an EAB key: it binds no account from now on (an account it already
/// bound keeps working; deactivate that one over ACME). Durable on return;
/// an unknown key id is refused (exit 1).
pub fn revoke(
    store: &crate::store::Store,
    kid: &str,
    now: time::OffsetDateTime,
) -> crate::error::Result<crate::store::acme::EabKey> {
    let acme = store.acme()?;
    let k = acme.revoke_eab(kid, now)?.ok_or_else(|| {
        crate::error::Error::refused(format!(
            "there is no EAB key `{}`",
            crate::names::printable(kid)
        ))
    })?;
    acme.flush()?;
    Ok(k)
}
