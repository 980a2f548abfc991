//! The ACME endpoints (RFC 8555 §7), as methods of [`App`](super::app::App):
//! each takes a request the HTTP layer verified, reads its typed payload
//! ([`super::payload`]), applies the rules ([`super::order_rules`],
//! [`super::account_rules`]), changes the working copy and writes it through
//! to the store.
//!
//! - `info`: the directory and renewalInfo (GET);
//! - `account`: newAccount (with external account binding and the room for
//!   accounts without it), account update and deactivation, keyChange;
//! - `order`: newOrder (with the room for orders and authorizations), an
//!   order, an authorization;
//! - `challenge`: a challenge, and the validation a client's answer starts;
//! - `finalize`: an order's CSR checked and issued through the engine;
//! - `revoke`: revokeCert, and a certificate's download.

mod account;
mod challenge;
mod finalize;
mod info;
mod order;
mod revoke;
