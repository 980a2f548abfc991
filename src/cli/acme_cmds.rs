//! `mtlsca acme eab create|list|revoke`: external account binding keys for
//! `mtlsca serve --acme-require-eab`, kept in the CA's store.

use clap::{Args, Subcommand};
use serde_json::json;

use super::render::print_json;
use super::{Ctx, Outcome};
use crate::error::Result;
use crate::store::acme::EabKey;

// `mtlsca acme ...`. (A doc comment here would replace the command's summary
// in `--help`: see `super::Deferred`.)
#[derive(Debug, Subcommand)]
pub enum AcmeCmd {
    /// External account binding (EAB) keys: create, list or revoke them
    #[command(subcommand)]
    Eab(EabCmd),
}

// `mtlsca acme eab ...`.
#[derive(Debug, Subcommand)]
pub enum EabCmd {
    /// Create a key for one ACME client: prints its key id (kid) and HMAC key
    Create(CreateArgs),
    /// List the keys (never their HMAC keys): profile, creation time, bound account, revoked
    List,
    /// Revoke a key: it binds no account from now on
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The profile the bound account's certificates come from (device or workload)
    #[arg(long, value_name = "PROFILE", default_value = "device")]
    pub profile: String,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The key id (`kid`) to revoke
    pub kid: String,
}

fn key_json(k: &EabKey) -> serde_json::Value {
    json!({
        "kid": k.kid,
        "profile": k.profile,
        "created": crate::timefmt::rfc3339(k.created),
        "account": k.account,
        "revoked": k.revoked.map(crate::timefmt::rfc3339),
    })
}

/// Run `acme ...`.
pub fn acme(ctx: &Ctx, cmd: AcmeCmd) -> Result<Outcome> {
    let AcmeCmd::Eab(cmd) = cmd;
    match cmd {
        EabCmd::Create(a) => {
            let profile = super::ca_cmds::profile_name(ctx, a.profile);
            // Through `mtlsca serve`'s control socket when it runs (it holds
            // the store), else on the store opened here.
            let k = ctx
                .backend()
                .and_then(|b| b.eab_create(&profile, ctx.now))
                .map_err(|e| super::ca_cmds::with_profile_hint(ctx, &profile, e))?;
            if ctx.global.json {
                let mut v = key_json(&k);
                v["hmac_key"] = json!(k.hmac_key);
                print_json(&v);
            } else {
                outln!("kid: {}", k.kid);
                outln!("hmac_key: {}", k.hmac_key);
                outln!("profile: {}", k.profile);
                ctx.say(format!(
                    "give both to one ACME client, e.g. `lego --eab --kid {} --hmac {} ...`; the key binds one account",
                    k.kid, k.hmac_key
                ));
            }
        }
        EabCmd::List => {
            let keys = ctx.backend()?.eab_list(ctx.now)?;
            if ctx.global.json {
                print_json(&json!(keys.iter().map(key_json).collect::<Vec<_>>()));
            } else if keys.is_empty() {
                ctx.say("no EAB keys (create one with `mtlsca acme eab create --profile device`)");
            } else {
                for k in &keys {
                    let state = match (&k.revoked, &k.account) {
                        (Some(_), _) => "revoked".to_string(),
                        (None, Some(a)) => format!("bound to account {a}"),
                        (None, None) => "unused".to_string(),
                    };
                    outln!(
                        "{}  {}  {}  {}",
                        k.kid,
                        k.profile,
                        crate::timefmt::rfc3339(k.created),
                        state
                    );
                }
            }
        }
        EabCmd::Revoke(a) => {
            let k = ctx.backend()?.eab_revoke(&a.kid, ctx.now)?;
            if ctx.global.json {
                print_json(&key_json(&k));
            } else {
                ctx.say(format!("revoked EAB key {}", k.kid));
            }
        }
    }
    Ok(Outcome::Done)
}
