#!/usr/bin/env bash
# `mtlsca proxy server` against stunnel and a direct connection, in the same run
# (issue 13). Not a timed test: prints figures and ratios, exits non-zero only
# on errors.
#
#   bash benches/proxy.sh                     # 10 s of handshakes, 1 GiB streams
#   SECS=5 MIB=256 bash benches/proxy.sh
#
# Handshakes: `openssl s_time -new` (full handshakes, one after the other, no
# session reuse) against `proxy server` with a device certificate and against
# stunnel with a person certificate (stunnel, OpenSSL underneath, cannot accept
# a device initiator). Each accepted connection is forwarded to the same
# loopback sink. Throughput: one TLS stream of MIB MiB from a Python `ssl`
# client through each proxy into the sink, and the same client straight to a
# sink that terminates TLS itself (the direct connection; plain TCP is shown
# for scale). Targets: handshakes/s >= stunnel's; stream >= 90 % of the direct
# connection. The client (s_time, Python) shares the 2 cores with the proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${SECS:-10}"
MIB="${MIB:-1024}"
for t in openssl stunnel4 python3; do
  command -v "$t" >/dev/null || { echo "error: $t is not installed (.ci/run installs it)" >&2; exit 2; }
done
cargo build --release --quiet --bin mtlsca
M="$PWD/${CARGO_TARGET_DIR:-target}/release/mtlsca"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
export MTLSCA_DIR="$work/ca"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "error: nothing listens on $1" >&2; exit 1
}

"$M" init --name Bench >/dev/null
"$M" issue device --dns proxy.test --ip 127.0.0.1 --out proxy >/dev/null
"$M" issue device --dns client.test --out client >/dev/null
"$M" issue person --cn Bench --email bench@test --out person >/dev/null
cat ca/root.pem ca/device-ca.pem ca/entity-ca.pem > bundle.pem

# The sink: reads everything, answers nothing.
SINK=$(port)
python3 - "$SINK" >/dev/null 2>&1 <<'PY' &
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=1024)
def drain(c):
    with c:
        while c.recv(1 << 20):
            pass
while True:
    c, _ = srv.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
PY
pids+=($!)
wait_port "$SINK"

# The same sink behind TLS terminated by itself: the direct connection.
TSINK=$(port)
python3 - "$TSINK" "$work/proxy.chain.pem" "$work/proxy.key" >/dev/null 2>&1 <<'PY' &
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=64)
def drain(c):
    try:
        with ctx.wrap_socket(c, server_side=True) as t:
            while t.recv(1 << 20):
                pass
    except (OSError, ssl.SSLError):
        pass
while True:
    c, _ = srv.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
PY
pids+=($!)
wait_port "$TSINK"

PP=$(port)
"$M" proxy server --listen "127.0.0.1:$PP" --target "127.0.0.1:$SINK" --cert proxy.chain.pem \
  --trust ca/root.pem --untrusted ca/device-ca.pem --max-connections 4096 2>proxy.log &
pids+=($!)
SP=$(port)
cat > stunnel.conf <<CONF
foreground = yes
pid =
[bench]
accept = 127.0.0.1:$SP
connect = 127.0.0.1:$SINK
cert = $work/proxy.chain.pem
key = $work/proxy.key
CAfile = $work/bundle.pem
verifyChain = yes
requireCert = yes
CONF
stunnel4 stunnel.conf >stunnel.log 2>&1 &
pids+=($!)
wait_port "$PP"
wait_port "$SP"

handshakes() { # port cert key -> connections per second
  openssl s_time -connect "127.0.0.1:$1" -new -time "$SECS" -cert "$2" -key "$3" 2>/dev/null \
    | awk '/connections in .* real seconds/ {print $1 / $4; exit}'
}

stream() { # port tls(0/1) cert key -> MiB/s
  python3 - "$1" "$2" "$3" "$4" "$MIB" <<'PY'
import socket, ssl, sys, time
port, tls, cert, key, mib = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3], sys.argv[4], int(sys.argv[5])
s = socket.create_connection(("127.0.0.1", port))
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert, key)
    s = ctx.wrap_socket(s)
    s.do_handshake()
buf = b"\0" * (1 << 20)
t = time.perf_counter()
for _ in range(mib):
    s.sendall(buf)
try:
    s.shutdown(socket.SHUT_WR)
except OSError:
    pass
# Wait for the far side to close: every byte went through.
try:
    while s.recv(1 << 16):
        pass
except (OSError, ssl.SSLError):
    pass
print(f"{mib / (time.perf_counter() - t):.1f}")
PY
}

echo "== new mTLS handshakes per second (openssl s_time -new, ${SECS}s each)"
hp=$(handshakes "$PP" client.pem client.key)
hs=$(handshakes "$SP" person.chain.pem person.key)
echo "mtlsca proxy (device initiator): ${hp:-?} /s"
echo "stunnel      (person initiator): ${hs:-?} /s"
awk -v a="${hp:-0}" -v b="${hs:-0}" 'BEGIN { if (b > 0) printf "ratio proxy/stunnel: %.2f (target >= 1)\n", a / b }'
sleep 1
accepted=$(grep -c "verdict=accepted" proxy.log || true)
refused=$(grep -c "verdict=refused" proxy.log || true)
echo "proxy log: $accepted accepted, $refused refused; reasons:"
grep -o 'reason="[^"]*"' proxy.log | sort | uniq -c | sort -rn | head -3 || true

echo "== one ${MIB} MiB stream"
t=$(stream "$SINK" 0 - -)
d=$(stream "$TSINK" 1 client.chain.pem client.key)
p=$(stream "$PP" 1 client.chain.pem client.key)
s=$(stream "$SP" 1 person.chain.pem person.key)
echo "plain TCP to the sink (no TLS, for scale): $t MiB/s"
echo "direct TLS to the sink:  $d MiB/s"
echo "through mtlsca proxy:    $p MiB/s"
echo "through stunnel:         $s MiB/s"
awk -v p="$p" -v d="$d" -v s="$s" 'BEGIN {
  printf "proxy/direct TLS: %.0f %% (target >= 90 %%); proxy/stunnel: %.2f\n", 100 * p / d, p / s }'
