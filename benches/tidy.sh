#!/usr/bin/env bash
# `store tidy` (issue 24): what moving expired certificates out of the live
# store saves each command. Builds a store of N records of which EXPIRED
# expired long ago (the CA made and EXPIRED certificates issued with the clock
# moved back by faketime, Debian `faketime`, through `fill_store`: real
# certificates signed by the engine, 90 days valid, so they expired 30 days
# before now; then N - EXPIRED issued now), then times a read-only command that
# opens the store (`show SERIAL` of a live certificate, median of RUNS runs)
# before and after `store tidy`, and prints the sizes of the live store and the
# archive. Not a test: run it by hand on an idle machine.
#
#   bash benches/tidy.sh [N] [EXPIRED] [RUNS]     # default 100000 90000 15
#   MTLSCA=/path/to/mtlsca bash benches/tidy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
expired="${2:-90000}"
runs="${3:-15}"
command -v faketime >/dev/null || { echo "error: faketime is not installed (apt-get install faketime)" >&2; exit 2; }

if [ -z "${MTLSCA:-}" ]; then
  cargo build --release --quiet
  MTLSCA="${CARGO_TARGET_DIR:-target}/release/mtlsca"
fi
# The fill helper as a binary, so that faketime moves its clock and not cargo's.
fill=$(cargo bench --bench fill_store --no-run 2>&1 | sed -n "s/.*Executable .*(\(.*\)).*/\1/p" | tail -1)
[ -x "$fill" ] || { echo "error: cannot find the fill_store bench binary" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ca="$work/ca"
faketime -f -200d "$MTLSCA" --ca-dir "$ca" -q init --name Bench
echo "filling: $expired certificates issued 120 days ago (expired 30 days ago)..." >&2
gone=$(faketime -f -120d "$fill" "$ca" "$expired" | sed -n "s/^last serial: //p")
echo "filling: $((n - expired)) certificates issued now..." >&2
live=$("$fill" "$ca" "$((n - expired))" | sed -n "s/^last serial: //p")

# Median (ms) of RUNS runs of `show SERIAL`, each timed from outside the
# process (bash 5's EPOCHREALTIME, read in place: no fork per run).
median_show() {
  local serial="$1" i s e
  : > "$work/times"
  for ((i = 0; i < runs; i++)); do
    s=${EPOCHREALTIME/[.,]/}
    "$MTLSCA" --ca-dir "$ca" -q show "$serial" >/dev/null
    e=${EPOCHREALTIME/[.,]/}
    echo $((e - s)) >> "$work/times"
  done
  sort -n "$work/times" | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] / 1000 }'
}
size() { du -sk "$1" 2>/dev/null | awk '{ printf "%.1f MiB", $1 / 1024 }'; }

before=$(median_show "$live")
db_before=$(size "$ca/db")
s=${EPOCHREALTIME/[.,]/}
"$MTLSCA" --ca-dir "$ca" store tidy >&2
e=${EPOCHREALTIME/[.,]/}
tidy_ms=$(( (e - s) / 1000 ))
after=$(median_show "$live")
archived_show=$(median_show "$gone")
"$MTLSCA" --ca-dir "$ca" -q store check

echo "store of $n records, $expired expired:"
echo "  show SERIAL (live), median of $runs: before tidy $before ms, after $after ms ($(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.1f", a / b }')x faster)"
echo "  show SERIAL (archived), median of $runs: $archived_show ms"
echo "  store tidy: $tidy_ms ms"
echo "  live store: $db_before before, $(size "$ca/db") after; archive: $(size "$ca/archive")"
