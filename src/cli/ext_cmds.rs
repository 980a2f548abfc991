//! A CA under an external root: `init --external-root` (the pending CA and its
//! requests) and `ca install` (the signed issuing CA certificates).

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::render::print_json;
use super::{Ctx, Outcome};
use crate::ca::{self, CaKind, InitOptions};
use crate::error::Result;
use crate::fsutil;
use crate::keypair::Passphrase;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The device issuing CA's certificate (signed from device-ca.csr; EKU serverAuth alone)
    #[arg(long, value_name = "DEVICE-CA.pem")]
    pub device: PathBuf,
    /// The entity issuing CA's certificate (signed from entity-ca.csr; EKU clientAuth alone)
    #[arg(long, value_name = "ENTITY-CA.pem")]
    pub entity: PathBuf,
}

/// Largest certificate file read.
const MAX_CERT_FILE: u64 = 1024 * 1024;

fn read(path: &Path, what: &str) -> Result<(Vec<u8>, String)> {
    let bytes = fsutil::read_bounded(path, MAX_CERT_FILE, what)?;
    Ok((bytes, path.display().to_string()))
}

/// `init --external-root ROOT.pem`: the pending CA, then the next steps.
pub fn init_external(
    ctx: &Ctx,
    root: &Path,
    opts: &InitOptions,
    passphrase: Option<&Passphrase>,
) -> Result<Outcome> {
    let dir = &ctx.global.ca_dir;
    let (bytes, what) = read(root, "root certificate")?;
    let pending = ca::init_external(dir, opts, &bytes, &what, passphrase, ctx.now)?;
    let csr = |k: CaKind| dir.join(ca::csr_file(k));
    let install = format!(
        "mtlsca --ca-dir {} ca install --device device-ca.pem --entity entity-ca.pem",
        dir.display()
    );
    if ctx.global.json {
        print_json(&json!({
            "ca_dir": dir,
            "name": pending.config.name,
            "pending": true,
            "external_root": true,
            "root": dir.join("root.pem"),
            "root_subject": pending.root_subject,
            "device_csr": csr(CaKind::Device),
            "entity_csr": csr(CaKind::Entity),
            "encrypted_keys": pending.config.encrypted_keys,
            "next": install,
        }));
        return Ok(Outcome::Done);
    }
    ctx.say(format!(
        "created CA `{}` in {}, waiting for its issuing CA certificates",
        pending.config.name,
        dir.display()
    ));
    ctx.say(format!(
        "  external root      {}  ({})",
        dir.join("root.pem").display(),
        pending.root_subject
    ));
    ctx.say(format!(
        "  device CA request  {}  (EKU serverAuth, pathlen 0)",
        csr(CaKind::Device).display()
    ));
    ctx.say(format!(
        "  entity CA request  {}  (EKU clientAuth, pathlen 0)",
        csr(CaKind::Entity).display()
    ));
    ctx.say(
        "next: the root's owner signs both requests, each with the extensions of its role, e.g.",
    );
    ctx.say("  printf 'basicConstraints=critical,CA:TRUE,pathlen:0\\nkeyUsage=critical,keyCertSign,cRLSign\\nextendedKeyUsage=serverAuth\\nsubjectKeyIdentifier=hash\\nauthorityKeyIdentifier=keyid:always\\n' > device-ca.ext");
    ctx.say(format!(
        "  openssl x509 -req -in {} -CA root.pem -CAkey root.key -days 3650 -extfile device-ca.ext -out device-ca.pem",
        csr(CaKind::Device).display()
    ));
    ctx.say("  (entity-ca.csr likewise, with extendedKeyUsage=clientAuth; docs/operations.md, \"Under an existing root\")");
    ctx.say(format!("then: {install}"));
    Ok(Outcome::Done)
}

pub(super) fn install(ctx: &Ctx, a: InstallArgs) -> Result<Outcome> {
    let dir = &ctx.global.ca_dir;
    let input = crate::external::InstallInput {
        device: read(&a.device, "device CA certificate")?,
        entity: read(&a.entity, "entity CA certificate")?,
    };
    let source = ctx.passphrase_source();
    let done =
        crate::external::install(dir, &input, Some(&source), ctx.global.lock_timeout, ctx.now)?;
    let bundle = dir.join(ca::BUNDLE_FILE);
    if ctx.global.json {
        print_json(&json!({
            "ca_dir": dir,
            "name": done.ca.config.name,
            "external_root": true,
            "root": dir.join("root.pem"),
            "device_ca": dir.join(CaKind::Device.cert_file()),
            "entity_ca": dir.join(CaKind::Entity.cert_file()),
            "ca_bundle": bundle,
            "name_constraints": done.constraints,
            "crls": done.crls,
        }));
        return Ok(Outcome::Done);
    }
    ctx.say(format!(
        "installed the issuing CAs of `{}` in {} under the external root",
        done.ca.config.name,
        dir.display()
    ));
    for kind in [CaKind::Device, CaKind::Entity] {
        ctx.say(format!(
            "  {} issuing CA {}",
            kind.as_str(),
            dir.join(kind.cert_file()).display()
        ));
    }
    ctx.say(format!(
        "  CA bundle         {}  (external root + both issuing CAs)",
        bundle.display()
    ));
    if !done.constraints.is_empty() {
        ctx.say(format!(
            "  name constraints  {}",
            done.constraints.join(", ")
        ));
    }
    for c in &done.crls {
        ctx.say(format!("  CRL               {}", c.display()));
    }
    ctx.say(format!(
        "relying parties trust {} (the external root); the CA issues from now on",
        dir.join("root.pem").display()
    ));
    Ok(Outcome::Done)
}
