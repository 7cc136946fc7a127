#!/usr/bin/env bash
# Benchmark: copying a hotel database's history from a local repository to S3 (Garage).
# `strongroom copy` against `restic copy`, in one run, on the same history and the same
# store. Not a test: run it by hand (`bench/copy.sh`); at the default 1 GB it takes about
# twenty minutes on two shared cores and 14 GB of disk (both sources and both copies hold
# the whole history; restic's grows by about 370 MB a day), `BENCH_MB=100` about two.
#
# The history: a full backup of a hotel SQLite database of BENCH_MB MB (default 1000), then
# DAYS daily backups (default 10), each after `hotel update --fraction UPDATE` (default 0.01,
# a different seed each day). strongroom backs up the live database; restic backs up a
# consistent copy made with `sqlite3 DB ".backup COPY"`, always at the same path (copying
# the live file is not a consistent backup). Each tool's source repository is local; each
# copies into a prefix of one Garage bucket, after every backup (as a nightly `copy` after
# the nightly backup would):
#   strongroom   init --copy-of SOURCE, then   copy --to s3://BUCKET/PREFIX/sr
#   restic       init --from-repo SOURCE --copy-chunker-params (restic at its best: the
#                copy deduplicates as the source does), then   copy --from-repo SOURCE
#
# Measured per copy (the initial one and each day's), the same way for both tools:
#   time         wall clock, bench/measure.py
#   written      growth of the tool's prefix in the bucket: the sizes ListObjectsV2 lists,
#                before and after (bench/s3_bytes.py)
#   read         bytes read from the disk (read_bytes of /proc/PID/io): the source
#                repository is dropped from the page cache just before each copy, so this
#                is what the copy read of its source (and of anything else not cached);
#                every copy therefore starts with a cold source, for both tools
#   peak RSS     ru_maxrss, and CPU time (user + system)
# Also printed: what each backup added to each source repository (what a copy has to move),
# the objects each copy added to the bucket, the bytes each passed through read() (rchar,
# page cache included: strongroom's local index cache shows there) and strongroom's own
# `copy --json` figures.
# Targets: the initial copy at most 0.5x restic's time; each daily copy at most 0.25x
# restic's bytes written.
#
# Environment: BENCH_MB (1000; about 9,500 bookings a MB), DAYS (10), UPDATE (0.01),
# BENCH_DIR (default a fresh temp dir, removed at the end unless KEEP=1; a BENCH_DIR given
# is never removed), and a running Garage (source the env file scripts/garage-up writes) or
# one is started here and stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BENCH_MB=${BENCH_MB:-1000}
DAYS=${DAYS:-10}
UPDATE=${UPDATE:-0.01}
BOOKINGS=$((BENCH_MB * 9500))
missing=()
for t in restic sqlite3 python3 bc; do
  command -v "$t" >/dev/null || missing+=("$t")
done
if (( ${#missing[@]} )); then
  echo "bench/copy.sh needs ${missing[*]}: apt-get install restic sqlite3 python3 bc" >&2
  exit 1
fi
cargo build --release -q
SR=${CARGO_TARGET_DIR:-$PWD/target}/release/strongroom
M="python3 $ROOT/bench/measure.py"
if [[ -n ${BENCH_DIR:-} ]]; then
  W=$BENCH_DIR
  [[ ! -e $W/sr && ! -e $W/restic ]] || { echo "$W already holds repositories; give an empty BENCH_DIR" >&2; exit 1; }
  mkdir -p "$W"
else
  W=$(mktemp -d /var/tmp/strongroom-copy.XXXXXX)
fi
started_garage=0
cleanup() {
  if ((started_garage)); then "$ROOT/scripts/garage-down" "$W/garage" || true; fi
  [[ -n ${BENCH_DIR:-} || ${KEEP:-0} == 1 ]] || rm -rf "$W"
}
trap cleanup EXIT
if [[ -z ${STRONGROOM_TEST_S3:-} ]]; then
  scripts/garage-up "$W/garage" >/dev/null
  started_garage=1
  # shellcheck disable=SC1091
  source "$W/garage/env"
fi
BUCKET=${STRONGROOM_TEST_S3#s3://}
BUCKET=${BUCKET%%/*}
PREFIX=bench-copy-$$-$RANDOM
SR_TO=s3://$BUCKET/$PREFIX/sr
RESTIC_TO=s3:${AWS_ENDPOINT_URL%/}/$BUCKET/$PREFIX/restic

export NO_COLOR=1 STRONGROOM_CACHE_DIR=$W/sr-cache STRONGROOM_STATE_DIR=$W/sr-state
export STRONGROOM_REPO=$W/sr STRONGROOM_PASSWORD=bench-password
export STRONGROOM_FROM_PASSWORD=bench-password STRONGROOM_TO_PASSWORD=bench-copy-password
export RESTIC_CACHE_DIR=$W/restic-cache
# restic's source is --from-repo; its --repo is the copy.
export RESTIC_FROM_PASSWORD=bench-password RESTIC_PASSWORD=bench-copy-password
RESTIC_SRC=$W/restic
RESTIC_S3=(-o "s3.region=${AWS_REGION:-us-east-1}")
DB=$W/hotel.db
COPY=$W/copy/hotel.db
mkdir -p "$W/copy"
du_b() { du -sb "$1" | cut -f1; }
mb() { echo "scale=1; $1/1000000" | bc -l; }
ratio() { printf %.2f "$(echo "scale=4; $1/$2" | bc -l)"; }
bucket_objects() { python3 "$ROOT/bench/s3_bytes.py" "$BUCKET" "$PREFIX/$1/"; } # "bytes objects"
# Drops a directory's files from the page cache (they are clean after sync), so that what a
# copy reads of its source shows as disk reads.
evict() {
  python3 -c 'import os, sys
for d, _, fs in os.walk(sys.argv[1]):
    for f in fs:
        fd = os.open(os.path.join(d, f), os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)' "$1"
}
rsrc() { RESTIC_PASSWORD=bench-password restic --repo "$RESTIC_SRC" "$@"; } # the source
quiet() { # runs a command, showing its output only when it fails
  "$@" >"$W/last.log" 2>&1 || { cat "$W/last.log" >&2; return 1; }
}

echo "building a hotel database with $BOOKINGS bookings in $W ..."
"$SR" hotel generate "$DB" --bookings "$BOOKINGS" >/dev/null
sqlite3 "$DB" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
DB_BYTES=$(stat -c %s "$DB")
echo "database: $(mb "$DB_BYTES") MB; a full backup and $DAYS days of $UPDATE of bookings updated"
quiet "$SR" init -q
STRONGROOM_PASSWORD=$STRONGROOM_TO_PASSWORD quiet "$SR" --repo "$SR_TO" init --copy-of "$W/sr" -q
quiet rsrc init
quiet restic "${RESTIC_S3[@]}" init --repo "$RESTIC_TO" --from-repo "$RESTIC_SRC" --copy-chunker-params

# Per step: T time, R peak RSS (KiB), I read() bytes, D disk read bytes, C CPU seconds, B
# bucket bytes written, O objects added to the bucket, A bytes the backup added to the
# source repository; J strongroom's json figures.
declare -A T R I D C B O A J
measure() { # key, tool (sr|restic), its source repository, command
  local before out after
  before=$(bucket_objects "$2")
  sync
  evict "$3"
  out=$($M "$4" --io)
  read -r T[$1] R[$1] I[$1] _ D[$1] C[$1] <<<"$out"
  after=$(bucket_objects "$2")
  B[$1]=$(( ${after% *} - ${before% *} ))
  O[$1]=$(( ${after#* } - ${before#* } ))
}
step() { # name: back up both, then copy both
  local n=$1 s0 r0
  s0=$(du_b "$W/sr")
  quiet "$SR" backup "sqlite:$DB" -q
  A[sr_$n]=$(( $(du_b "$W/sr") - s0 ))
  sqlite3 "$DB" ".backup '$COPY'"
  r0=$(du_b "$RESTIC_SRC")
  quiet rsrc backup -q --host bench "$COPY"
  A[restic_$n]=$(( $(du_b "$RESTIC_SRC") - r0 ))
  measure "sr_$n" sr "$W/sr" "'$SR' copy --to '$SR_TO' --json -q >'$W/sr-copy.json'"
  J[$n]=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["copies"][0]; print(c["bytes_read"], c["bytes_written"], c["snapshots_copied"])' "$W/sr-copy.json")
  measure "restic_$n" restic "$RESTIC_SRC" "restic ${RESTIC_S3[*]} --repo '$RESTIC_TO' copy --from-repo '$RESTIC_SRC' -q >/dev/null"
  printf '  %-8s strongroom %7.2f s %8.1f MB written %6.0f MB RSS | restic %7.2f s %8.1f MB written %6.0f MB RSS\n' "$n" \
    "${T[sr_$n]}" "$(mb "${B[sr_$n]}")" "$(mb $((R[sr_$n] * 1024)))" \
    "${T[restic_$n]}" "$(mb "${B[restic_$n]}")" "$(mb $((R[restic_$n] * 1024)))"
}

echo "copies (each after that step's backups):"
step initial
STEPS=(initial)
for ((d = 1; d <= DAYS; d++)); do
  quiet "$SR" hotel update "$DB" --fraction "$UPDATE" --seed $((1000 + d))
  step "day$d"
  STEPS+=("day$d")
done

# Every snapshot made it to both copies.
SR_N=$(STRONGROOM_PASSWORD=$STRONGROOM_TO_PASSWORD "$SR" --repo "$SR_TO" list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
RESTIC_N=$(restic "${RESTIC_S3[@]}" --repo "$RESTIC_TO" snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[[ $SR_N == $((DAYS + 1)) && $RESTIC_N == $((DAYS + 1)) ]] \
  || { echo "the copies hold $SR_N (strongroom) and $RESTIC_N (restic) snapshots, not $((DAYS + 1))" >&2; exit 1; }

# --- summary -------------------------------------------------------------------------------
rss() { printf %.0f "$(mb $(( R[$1] * 1024 )))"; }
echo
echo "Copy to Garage (S3), hotel database of $(mb "$DB_BYTES") MB, $DAYS days of $UPDATE updated; $(date -u +%F)"
echo
echo "| step | time strongroom / restic | ratio | written strongroom / restic | ratio | read from disk strongroom / restic | peak RSS strongroom / restic | CPU strongroom / restic |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
worst=0 worst_day=
for n in "${STEPS[@]}"; do
  echo "| $n | ${T[sr_$n]} / ${T[restic_$n]} s | $(ratio "${T[sr_$n]}" "${T[restic_$n]}")x | $(mb "${B[sr_$n]}") / $(mb "${B[restic_$n]}") MB | $(ratio "${B[sr_$n]}" "${B[restic_$n]}")x | $(mb "${D[sr_$n]}") / $(mb "${D[restic_$n]}") MB | $(rss "sr_$n") / $(rss "restic_$n") MB | ${C[sr_$n]} / ${C[restic_$n]} s |"
  if [[ $n != initial ]]; then
    r=$(echo "scale=4; ${B[sr_$n]}/${B[restic_$n]}" | bc -l)
    if [[ -z $worst_day || $(echo "$r > $worst" | bc -l) == 1 ]]; then worst=$r worst_day=$n; fi
  fi
done
echo
echo "What each backup added to its source repository (what a copy has to move), objects written to the bucket, bytes through read() (page cache included), and strongroom's own \`copy --json\` figures:"
echo
echo "| step | backup added strongroom / restic | ratio | objects written strongroom / restic | read() strongroom / restic | strongroom json bytes_read / bytes_written |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in "${STEPS[@]}"; do
  read -r jr jw _ <<<"${J[$n]}"
  echo "| $n | $(mb "${A[sr_$n]}") / $(mb "${A[restic_$n]}") MB | $(ratio "${A[sr_$n]}" "${A[restic_$n]}")x | ${O[sr_$n]} / ${O[restic_$n]} | $(mb "${I[sr_$n]}") / $(mb "${I[restic_$n]}") MB | $(mb "$jr") / $(mb "$jw") MB |"
done
echo
t=$(ratio "${T[sr_initial]}" "${T[restic_initial]}")
verdict() { [[ $(echo "$1 <= $2" | bc -l) == 1 ]] && echo PASS || echo MISS; }
echo "target: initial copy time <= 0.5x restic's: ${t}x  $(verdict "$t" 0.5)"
w=$(printf %.2f "$worst")
echo "target: each daily copy's bytes written <= 0.25x restic's: worst ${w}x ($worst_day)  $(verdict "$w" 0.25)"
[[ ${KEEP:-0} != 1 && -z ${BENCH_DIR:-} ]] || echo "kept: $W"
