#!/usr/bin/env bash
# One `mtlsca issue` while `mtlsca serve` holds the CA, against the same command
# opening the store itself (issue 14: ≤ 5 ms per issue at 1,000,000 records).
# Fills a fresh CA's store to N records (`cargo bench --bench fill_store`), times
# LOCAL_RUNS local `issue` runs, starts `serve`, times RUNS `issue` runs through
# its control socket, each timed from outside the process (spawn, socket,
# engine, signing, one fsync'd transaction, files). Prints p50/p99 of each and the
# service's group-commit counters. Not a test: run it by hand on an idle machine.
#
# On Linux with glibc it also builds the static release binary (README, "Release
# builds") and times the same RUNS through the same server with it as the
# client: a command's own start-up is a third of a call, and a static binary
# starts in about half the time. STATIC=0 skips that build.
#
#   bash benches/serve-issue.sh [N] [RUNS]       # default 100000 200
#   LOCAL_RUNS=20 MTLSCA=/path/to/mtlsca bash benches/serve-issue.sh 1000000
#   CA=/tmp/big/ca bash benches/serve-issue.sh 0 200   # a CA filled before (kept)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
runs="${2:-200}"
local_runs="${LOCAL_RUNS:-20}"

if [ -z "${MTLSCA:-}" ]; then
  cargo build --release --quiet
  MTLSCA="${CARGO_TARGET_DIR:-target}/release/mtlsca"
fi
static_bin=""
host="$(rustc -vV | sed -n 's/^host: //p')"
if [ "${STATIC:-1}" != 0 ] && [[ "$host" == *-linux-gnu ]]; then
  echo "building the static release binary (target $host)..." >&2
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --quiet --target "$host" --bin mtlsca
  static_bin="${CARGO_TARGET_DIR:-target}/$host/release/mtlsca"
fi

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
ca="${CA:-$work/ca}"
if [ -n "${CA:-}" ]; then
  # A CA filled before (CA=DIR), kept afterwards; N is read from its store.
  [ -f "$ca/ca.toml" ] || { echo "error: CA=$ca is not a CA directory" >&2; exit 2; }
  n=$("$MTLSCA" --ca-dir "$ca" store check 2>&1 | sed -n 's/^store ok: \([0-9]*\) records.*/\1/p')
  echo "using the CA in $ca ($n records)" >&2
else
"$MTLSCA" --ca-dir "$ca" -q init --name Bench
fi
if [ -z "${CA:-}" ] && [ "$n" -gt 0 ]; then
  echo "filling the store to $n records..." >&2
  cargo bench --quiet --bench fill_store -- "$ca" "$n" >/dev/null
fi
mkdir -p "$work/out"

# Times are bash 5's EPOCHREALTIME with the point removed (microseconds), read
# in place: `$(date +%s%N)` or any `$(...)` would add a process or a fork to
# each run.

# Microseconds per run of `mtlsca issue` (one line each) into $1, with the
# binary $4 (default $MTLSCA).
time_issues() {
  local file="$1" count="$2" tag="$3" bin="${4:-$MTLSCA}" i s e
  : > "$file"
  for ((i = 0; i < count; i++)); do
    s=${EPOCHREALTIME/[.,]/}
    "$bin" --ca-dir "$ca" -q --lock-timeout 2s issue device \
      --dns "$tag-$i.bench.internal" --out "$work/out/$tag-$i" >/dev/null
    e=${EPOCHREALTIME/[.,]/}
    echo $((e - s)) >> "$file"
  done
}

# The same for a process that does nothing (/bin/true): what starting any
# program costs here, part of every CLI figure.
time_true() {
  local file="$1" count="$2" i s e
  : > "$file"
  for ((i = 0; i < count; i++)); do
    s=${EPOCHREALTIME/[.,]/}; /bin/true; e=${EPOCHREALTIME/[.,]/}
    echo $((e - s)) >> "$file"
  done
}

# p50 and p99 (µs in, ms out) of the numbers in $1.
percentiles() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
    printf "p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d runs)", p50 / 1000, p99 / 1000, v[NR] / 1000, NR
  }'
}

time_issues "$work/local" "$local_runs" local
echo "store of $n: local issue (opens the store):  $(percentiles "$work/local")"

"$MTLSCA" --ca-dir "$ca" serve --listen 127.0.0.1:0 --name localhost > "$work/serve.out" &
server=$!
for _ in $(seq 1 600); do
  [ -S "$ca/mtlsca.sock" ] && grep -q serving "$work/serve.out" && break
  sleep 0.1
done
[ -S "$ca/mtlsca.sock" ] || { echo "error: serve did not start" >&2; exit 1; }
echo "serve started" >&2

time_issues "$work/remote" "$runs" remote
echo "store of $n: issue through serve's socket:   $(percentiles "$work/remote")"
if [ -n "$static_bin" ]; then
  time_issues "$work/remote-static" "$runs" static "$static_bin"
  echo "the same, static binary as the client:      $(percentiles "$work/remote-static")"
fi

# The floors, measured in the same run: starting a process, and the disk work
# of the durable file protocol alone (benches/io_floor.py).
time_true "$work/true" "$runs"
echo "floor: starting /bin/true:                 $(percentiles "$work/true")"
echo "floor: the protocol's fsyncs alone:        $(python3 benches/io_floor.py "$work" "$runs")"

kill -TERM "$server"
wait "$server" || true
server=""
grep -v '^serving' "$work/serve.out" || true
"$MTLSCA" --ca-dir "$ca" store check
static_runs=0; [ -z "$static_bin" ] || static_runs="$runs"
echo "expected records: $((n + local_runs + runs + static_runs + 1))"
