#!/usr/bin/env bash
# Batch issuance rate: a fresh CA, an N-entry manifest (default 5,000: four in
# five device certificates, one in five person certificates), one
# `mtlsca batch` run, timed from outside the process (so it includes start-up,
# manifest validation, the store and every fsync). Prints certificates/s and
# the peak RSS. Not a test: run it by hand on an otherwise idle machine.
#
#   bash benches/batch.sh [N]            # builds the release binary first
#   MTLSCA=/path/to/mtlsca bash benches/batch.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-5000}"

if [ -z "${MTLSCA:-}" ]; then
  cargo build --release --quiet
  MTLSCA="${CARGO_TARGET_DIR:-target}/release/mtlsca"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$MTLSCA" --ca-dir "$work/ca" -q init --name Bench

awk -v n="$n" 'BEGIN {
  for (i = 0; i < n; i++) {
    if (i % 5 == 4) {
      printf "[[certificate]]\nid = \"person-%06d\"\nprofile = \"person\"\ncn = \"Person %d\"\nemail = [\"p%d@corp.example\"]\n\n", i, i, i
    } else {
      printf "[[certificate]]\nid = \"web-%06d\"\nprofile = \"device\"\ndns = [\"web-%06d.corp.internal\"]\nip = [\"10.%d.%d.%d\"]\n\n", i, i, int(i / 65536) % 256, int(i / 256) % 256, i % 256 + 0
    }
  }
}' > "$work/manifest.toml"

rusage() {
  if [ -x /usr/bin/time ]; then /usr/bin/time -f "%M %U %S" -o "$work/rss" "$@"; else "$@"; fi
}

start=$(date +%s.%N)
rusage "$MTLSCA" --ca-dir "$work/ca" --json batch --manifest "$work/manifest.toml" \
  --out-dir "$work/out" > "$work/lines"
end=$(date +%s.%N)

issued=$(grep -c '"status":"issued"' "$work/lines" || true)
if [ "$issued" != "$n" ]; then
  echo "error: $issued of $n entries issued" >&2
  exit 1
fi
awk -v n="$n" -v s="$start" -v e="$end" 'BEGIN {
  printf "batch: %d certificates in %.2f s = %.0f certificates/s (%d cores)\n", n, e - s, n / (e - s), '"$(nproc)"'
}'
if [ -f "$work/rss" ]; then
  read -r rss user sys < "$work/rss"
  echo "peak RSS: $(( rss / 1024 )) MiB; CPU: ${user} s user, ${sys} s system"
fi

# A re-run issues nothing and only checks.
start=$(date +%s.%N)
"$MTLSCA" --ca-dir "$work/ca" --json batch --manifest "$work/manifest.toml" \
  --out-dir "$work/out" > "$work/lines2"
end=$(date +%s.%N)
exists=$(grep -c '"status":"exists"' "$work/lines2" || true)
awk -v n="$exists" -v s="$start" -v e="$end" 'BEGIN {
  printf "re-run: %d entries found issued in %.2f s\n", n, e - s
}'
