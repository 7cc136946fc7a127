#!/usr/bin/env bash
# Benchmark: reading a journal of thousands of records from S3 (Garage), the way `status`,
# `metrics` and `journal` do on every run. Not a test: run it by hand (`bench/journal.sh`).
#
# RECORDS journal records (default 2000) are written by real failing jobs (`wal push` of a
# file that does not exist: each opens the repository, fails, and journals the failure), 8
# at a time. Then, timed:
#   journal --json, cold      no local cache: every record object is fetched (8 at a time)
#   journal --json, warm      the local cache has them: one listing, nothing fetched
#   prune                     folds the records into one segment
#   journal --json, cold      after the fold: one listing, one object
#   status --json, warm       the whole status (snapshots, journal, WAL listing)
# There is no reference tool to compare with (restic, pgBackRest and WAL-G keep no job
# journal); the figure to look at is cold vs warm vs folded.
#
# Environment: RECORDS (2000), BENCH_DIR (default a fresh temp dir, removed at the end), and
# a running Garage (scripts/garage-up DIR; source DIR/env) or one is started here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
RECORDS=${RECORDS:-2000}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d)}
mkdir -p "$BENCH_DIR"
cargo build --release -q -p strongroom-cli
BIN=$PWD/target/release/strongroom
started_garage=0
if [[ -z ${STRONGROOM_TEST_S3:-} ]]; then
  scripts/garage-up "$BENCH_DIR/garage" >/dev/null
  # shellcheck disable=SC1091
  source "$BENCH_DIR/garage/env"
  started_garage=1
fi
cleanup() {
  if ((started_garage)); then "$ROOT/scripts/garage-down" "$BENCH_DIR/garage" || true; fi
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

export STRONGROOM_REPO="${STRONGROOM_TEST_S3%/}/bench-journal-$$-$RANDOM"
export STRONGROOM_PASSWORD=bench STRONGROOM_STATE_DIR=$BENCH_DIR/state
export STRONGROOM_CACHE_DIR=$BENCH_DIR/cache
cd "$BENCH_DIR"
"$BIN" init -q >/dev/null
"$BIN" hotel generate --bookings 20000 hotel.db >/dev/null
"$BIN" backup -q sqlite:hotel.db >/dev/null
echo "writing $RECORDS journal records through failing jobs…" >&2
seq "$RECORDS" | xargs -P 8 -I{} sh -c "'$BIN' -q wal push /nonexistent/00000001000000000000{} 2>/dev/null || true"
measure() { python3 "$ROOT/bench/measure.py" "$1" --quiet; }
rm -rf "$STRONGROOM_CACHE_DIR"
cold=$(measure "'$BIN' journal --json")
warm=$(measure "'$BIN' journal --json")
n=$("$BIN" journal --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
prune=$(measure "'$BIN' -q prune")
rm -rf "$STRONGROOM_CACHE_DIR"
folded=$(measure "'$BIN' journal --json")
status=$(measure "'$BIN' status --json --no-alerts || true")
objects=$("$BIN" -vv journal --json 2>&1 >/dev/null | grep -o 'read [0-9]* of [0-9]* journal objects' || true)
printf '\n%s journal records on Garage (S3), %s\n' "$n" "$(date -u +%F)"
printf '%-34s %8s %10s\n' "measure" "seconds" "peak RSS"
row() { read -r s k <<<"$2"; printf '%-34s %8s %8s MB\n' "$1" "$s" "$((k / 1024))"; }
row "journal --json, cold cache" "$cold"
row "journal --json, warm cache" "$warm"
row "prune (folds the records)" "$prune"
row "journal --json, cold, after fold" "$folded"
row "status --json, warm" "$status"
echo "after the fold: $objects"
