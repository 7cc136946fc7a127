#!/usr/bin/env bash
# Peak memory of a backup after a 1% update, for a 1 GB and a 10 GB hotel database: the
# index must not grow in memory with the repository (docs/ARCHITECTURE.md, "The local
# index cache"). Target: the two peaks within 1.25x of each other, both under 256 MB.
#
#   bench/memory.sh                 # 1 GB and 10 GB (the 10 GB database takes ~25 min to make)
#   SIZES="1" bench/memory.sh       # only 1 GB
#   BENCH_DIR=/var/tmp/mem KEEP=1 bench/memory.sh   # keep (and reuse) the databases
#
# Per size: generate the database (reused when BENCH_DIR has it), a first full backup into
# a fresh local repository, `hotel update --fraction 0.01`, then the measured backup. Times
# and peak RSS come from bench/measure.py (wait4's ru_maxrss). The index cache of each
# repository starts cold for the first backup and warm for the second, as in production.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZES=${SIZES:-"1 10"}
BENCH_DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/strongroom-mem.XXXXXX)}
mkdir -p "$BENCH_DIR"
cargo build --release -q
BIN=$PWD/target/release/strongroom
M=$PWD/bench/measure.py
export STRONGROOM_PASSWORD=bench NO_COLOR=1 STRONGROOM_CACHE_DIR=$BENCH_DIR/cache
cleanup() { [[ ${KEEP:-} == 1 ]] || rm -rf "$BENCH_DIR"; }
trap cleanup EXIT

declare -A FULL INCR
for gb in $SIZES; do
    db=$BENCH_DIR/hotel-${gb}g.db
    if [[ ! -s $db ]]; then
        echo "generating a ${gb} GB hotel database…" >&2
        "$BIN" hotel generate "$db" --bookings $((gb * 10000000)) >/dev/null
    fi
    repo=$BENCH_DIR/repo-${gb}g
    rm -rf "$repo" "$BENCH_DIR/cache"
    export STRONGROOM_REPO=$repo
    "$BIN" init >/dev/null
    FULL[$gb]=$(python3 "$M" "'$BIN' backup sqlite:$db -q" --quiet)
    "$BIN" hotel update "$db" --fraction 0.01 >/dev/null
    INCR[$gb]=$(python3 "$M" "'$BIN' backup sqlite:$db -q" --quiet)
    echo "${gb} GB: full ${FULL[$gb]}, after 1% update ${INCR[$gb]} (seconds, peak KiB)" >&2
done

echo
echo "| database | full backup | peak RSS | backup after 1% update | peak RSS |"
echo "| --- | --- | --- | --- | --- |"
for gb in $SIZES; do
    read -r ft fr <<<"${FULL[$gb]}"
    read -r it ir <<<"${INCR[$gb]}"
    printf '| %s GB | %.1f s | %d MB | %.1f s | %d MB |\n' "$gb" "$ft" $((fr / 1024)) "$it" $((ir / 1024))
done
set -- $SIZES
if [[ $# -ge 2 ]]; then
    read -r _ a <<<"${INCR[$1]}"
    read -r _ b <<<"${INCR[$2]}"
    python3 - "$1" "$2" "$a" "$b" <<'PY'
import sys
print(f"peak RSS after the update, {sys.argv[2]} GB / {sys.argv[1]} GB: {int(sys.argv[4])/int(sys.argv[3]):.2f}x (target <= 1.25x, both < 256 MB)")
PY
fi
