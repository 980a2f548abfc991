#!/usr/bin/env bash
# Provisioning with mtlsca, end to end: a CA, a manifest issued in one batch (and
# re-run, issuing nothing), a revocation and CRL publication checked with
# OpenSSL, and a renewal by re-issue under a new request id.
#
#   bash examples/provision.sh [WORKDIR]
#
# Uses $MTLSCA as the binary when set, else `cargo run --release --`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${MTLSCA:-}" ]; then
  mtlsca() { "$MTLSCA" "$@"; }
else
  cargo build --release --quiet --manifest-path "$here/../Cargo.toml"
  mtlsca() { cargo run --release --quiet --manifest-path "$here/../Cargo.toml" -- "$@"; }
fi
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
export MTLSCA_DIR="$work/ca"
certs="$work/certs"
step() { printf '\n== %s\n' "$*"; }
serial_of() { sed -n "s/.*\"id\":\"$1\",\"status\":\"[a-z]*\",\"serial\":\"\([0-9a-f]*\)\".*/\1/p" "$2"; }

step "a CA in $MTLSCA_DIR (kept if it exists)"
[ -f "$MTLSCA_DIR/ca.toml" ] || mtlsca init --name "Provisioning Demo" \
  --permit-dns corp.internal --permit-ip 10.0.0.0/8

step "issue the manifest: one JSON line per entry"
mtlsca --json batch --manifest "$here/provision.toml" --out-dir "$certs" | tee "$work/run1.jsonl"

step "run it again: every entry already exists, nothing is issued twice"
mtlsca batch --manifest "$here/provision.toml" --out-dir "$certs"

step "db-01's key leaked: revoke it and publish the CRLs"
db=$(serial_of db-01 "$work/run1.jsonl")
mtlsca revoke "$db" --reason keyCompromise
mtlsca crl
cat "$MTLSCA_DIR/crl/root.crl" "$MTLSCA_DIR/crl/device.crl" > "$work/crls.pem"
for host in web-01 db-01; do
  if openssl verify -crl_check_all -CAfile "$MTLSCA_DIR/root.pem" \
      -untrusted "$MTLSCA_DIR/device-ca.pem" -CRLfile "$work/crls.pem" \
      "$certs/$host.pem" > /dev/null 2>&1; then
    echo "openssl: $host accepted"
  else
    echo "openssl: $host rejected (revoked)"
  fi
done

step "renew web-01: a new key and certificate in certs/web-01.*, the old one revoked as superseded"
mtlsca renew web-01 --revoke-old
mtlsca show web-01
mtlsca crl

step "inventory"
mtlsca list
mtlsca list --status revoked
mtlsca list --expiring-within 45d

step "a PKCS#12 of alice for her browser (password from the environment)"
alice=$(serial_of alice "$work/run1.jsonl")
MTLSCA_P12_PASSWORD=change-me mtlsca export "$alice" --format p12 --out "$work/alice.p12"

step "the audit log"
mtlsca audit

echo
echo "done: everything is in $work"
