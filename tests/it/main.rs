//! Integration tests: one binary, one module per area. Each test runs the real
//! `mtlsca` binary in its own temp dir with a scrubbed environment.

mod acme;
mod acme_dns;
mod architecture;
mod ca;
mod common;
mod crl_publish;
mod engine;
mod external_root;
mod hostile_acme;
mod hostile_proxy;
mod hostile_publish;
mod hostile_socket;
mod lifecycle;
mod limbo;
mod names;
mod prompt;
mod proxy;
mod proxy_revocation;
mod readme;
mod real_pkis;
mod reliability;
mod rollover;
mod rotation;
mod rustls_recipe;
mod service;
mod tidy;
mod trust;
mod ux;
mod verify;
