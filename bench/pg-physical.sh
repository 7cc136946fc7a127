#!/usr/bin/env bash
# Benchmark: strongroom's physical PostgreSQL backups, restores and WAL archiving against
# pgBackRest 2.45 (Debian's package) and 2.59.1 (the newest, built from
# ../shared/anchors/pgbackrest-2.59.1.tar.gz, with block incremental: repo1-bundle=y,
# repo1-block=y), all with zstd, process-max=2, encrypted, in one run, on one throwaway
# cluster. Not a test: run it by hand (`bench/pg-physical.sh`); it takes several minutes and a
# few GB of disk.
#
# Measures, on the same cluster and the same files:
#   full backup          time, stored bytes, peak RSS       target: time <= 1.0x 2.45
#   after updating 1% of bookings at random:
#   incremental backup   time, bytes added                  target: time <= 0.5x 2.45,
#                                                           bytes <= 0.25x 2.59.1 (block incr)
#   restore              time into an empty directory       target: <= 1.0x 2.59.1
#   restore of the full snapshot against the incremental one (page deltas: <= 1.1x)
#   WAL push             the same 50 segments, one process per segment as archive_command
#                        runs it                             target: >= 1.5x segments/s
#   archive lag          pg_stat_archiver under pgbench while strongroom archives
#                        (most segments behind, sampled every 0.2 s; the issue asks <= 2)
#
# Environment: BOOKINGS (default 6000000, about 1 GB of database), BENCH_DIR (default a fresh
# temp dir, removed at the end), SEGMENTS (default 50), PGBACKREST_NEW (the 2.59.1 binary;
# default /opt/pgbr/build/src/pgbackrest, built by `bench/build-pgbackrest.sh`; the columns
# are left out when it is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BOOKINGS=${BOOKINGS:-6000000}
SEGMENTS=${SEGMENTS:-50}
for t in pgbackrest pgbench psql python3 bc; do
  command -v "$t" >/dev/null || { echo "bench needs $t (apt-get install pgbackrest postgresql-contrib)" >&2; exit 1; }
done
NEW=${PGBACKREST_NEW:-/opt/pgbr/build/src/pgbackrest}
[[ -x $NEW ]] || echo "no pgBackRest 2.59.1 at $NEW (bench/build-pgbackrest.sh builds it): its columns are left out" >&2
BIN=""
for d in /usr/lib/postgresql/*/bin; do [[ -x $d/initdb && -x $d/pg_ctl ]] && BIN=$d; done
[[ -n $BIN ]] || BIN=$(pg_config --bindir)
cargo build --release -q
SR=$PWD/target/release/strongroom
M="python3 $PWD/bench/measure.py"
W=${BENCH_DIR:-$(mktemp -d /var/tmp/strongroom-pgphys.XXXXXX)}
mkdir -p "$W"
chmod 755 "$W"
AS=()
if [[ $(id -u) -eq 0 ]]; then AS=(runuser -u postgres --); chown postgres: "$W"; fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  "${AS[@]}" "$BIN/pg_ctl" -D "$W/data" -m immediate stop >/dev/null 2>&1 || true
  [[ -n ${BENCH_DIR:-} ]] || rm -rf "$W"
}
trap cleanup EXIT
du_b() { du -sb "$1" | cut -f1; }
mb() { echo "scale=1; $1/1000000" | bc -l; }
ratio() { echo "scale=2; $1/$2" | bc -l; }
declare -A T R
run() { # name, command (as the postgres user when root: both tools run as the server's user)
  local out
  out=$($M "${AS[*]} sh -c '$2'")
  T[$1]=${out% *}; R[$1]=${out#* }
  printf '  %-30s %8.2f s %8.1f MB RSS\n' "$1" "${T[$1]}" "$(echo "${R[$1]}/1024" | bc -l)"
}

# --- the cluster, the repositories --------------------------------------------------------
"${AS[@]}" mkdir -p "$W/sr" "$W/pgbr" "$W/pgbr-log" "$W/pgbr-lock" "$W/walsrc" "$W/restore" "$W/pgbr2" "$W/pgbr2-lock"
"${AS[@]}" "$BIN/initdb" -D "$W/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
export STRONGROOM_REPO=$W/sr
STRONGROOM_PASSWORD=bench-password "${AS[@]}" env STRONGROOM_REPO="$W/sr" STRONGROOM_PASSWORD=bench-password "$SR" init -q 2>/dev/null
"${AS[@]}" env STRONGROOM_REPO="$W/sr" STRONGROOM_PASSWORD=bench-password "$SR" key add --new-key-file "$W/sr.key" --label bench 2>/dev/null
export STRONGROOM_PASSWORD_FILE=$W/sr.key
cat > "$W/pgbackrest.conf" <<EOF
[global]
repo1-path=$W/pgbr
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=bench-password-for-pgbackrest
compress-type=zst
process-max=2
start-fast=y
archive-check=n
repo1-retention-full=99
log-level-console=warn
lock-path=$W/pgbr-lock
log-path=$W/pgbr-log
[bench]
pg1-path=$W/data
pg1-port=$PORT
pg1-socket-path=$W
EOF
chmod 644 "$W/pgbackrest.conf"
# 2.59.1: the same settings, its own repository, block incremental on.
sed -e "s|$W/pgbr\$|$W/pgbr2|; s|lock-path=.*|lock-path=$W/pgbr2-lock|" "$W/pgbackrest.conf" > "$W/pgbackrest2.conf"
sed -i "s|^repo1-path=.*|repo1-path=$W/pgbr2\nrepo1-bundle=y\nrepo1-block=y|" "$W/pgbackrest2.conf"
chmod 644 "$W/pgbackrest2.conf"
export PGBACKREST_CONFIG=$W/pgbackrest.conf
cat >> "$W/data/postgresql.conf" <<EOF
port = $PORT
unix_socket_directories = '$W'
listen_addresses = '127.0.0.1'
shared_buffers = 256MB
max_wal_size = 4GB
archive_mode = on
archive_command = 'env STRONGROOM_REPO=$W/sr STRONGROOM_PASSWORD_FILE=$W/sr.key $SR wal push %p'
EOF
"${AS[@]}" "$BIN/pg_ctl" -D "$W/data" -l "$W/server.log" -w start >/dev/null
export PGHOST=$W PGPORT=$PORT PGUSER=postgres
URL="postgres://postgres@127.0.0.1:$PORT"
"${AS[@]}" env PGBACKREST_CONFIG="$W/pgbackrest.conf" pgbackrest --stanza=bench stanza-create >/dev/null
[[ -x $NEW ]] && "${AS[@]}" env PGBACKREST_CONFIG="$W/pgbackrest2.conf" "$NEW" --stanza=bench stanza-create >/dev/null

echo "building a hotel database with $BOOKINGS bookings (PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), port $PORT) ..."
psql -qc "CREATE DATABASE hotel"
"$SR" hotel postgres-sql --bookings "$BOOKINGS" | psql -q hotel
# Vacuumed and frozen before any backup: otherwise autovacuum's pass for inserted rows (PG 13+)
# lands whenever its minute comes round, and when that is between the full backup and the
# incremental it rewrites every page of bookings (visibility flags, frozen xmins): measured,
# 84 MB of WAL during strongroom's incremental, +82 MB added where the same run on another
# try added +25 MB. A production table is vacuumed; the update's own changes are the measure.
psql -qc "VACUUM (FREEZE, ANALYZE)" hotel
psql -qc "CHECKPOINT"
DB_BYTES=$(psql -tAc "SELECT sum(pg_database_size(oid)) FROM pg_database")
echo "cluster: $(mb "$DB_BYTES") MB"
PGBR="env PGBACKREST_CONFIG=$W/pgbackrest.conf pgbackrest --stanza=bench"
PGBR2="env PGBACKREST_CONFIG=$W/pgbackrest2.conf $NEW --stanza=bench"
have_new() { [[ -x $NEW ]]; }
SRE="env STRONGROOM_REPO=$W/sr STRONGROOM_PASSWORD_FILE=$W/sr.key $SR"

# --- full and incremental backups -------------------------------------------------------------
echo "full backups:"
sync
run pgbackrest_full "$PGBR --type=full backup"
if have_new; then sync; run pgbackrest2_full "$PGBR2 --type=full backup"; fi
sync
run strongroom_full "$SRE backup $URL/hotel --kind physical -q >/dev/null"
# strongroom keeps its WAL archive in the same repository (wal/); pgBackRest keeps its in
# archive/. Both sides count their backups only.
sr_bytes() { echo $(( $(du_b "$W/sr") - $( [[ -d $W/sr/wal ]] && du_b "$W/sr/wal" || echo 0) )); }
PGBR_FULL=$(du_b "$W/pgbr/backup")
PGBR2_FULL=$(have_new && du_b "$W/pgbr2/backup" || echo 0)
SR_FULL=$(sr_bytes)
FULL_ID=$($SRE list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
echo "updating 1% of bookings at random ..."
"$SR" hotel postgres-sql --update 0.01 | psql -q hotel
psql -qc "CHECKPOINT"
echo "incremental backups (after the update):"
sync
run pgbackrest_incr "$PGBR --type=incr backup"
if have_new; then sync; run pgbackrest2_incr "$PGBR2 --type=incr backup"; fi
sync
run strongroom_incr "$SRE backup $URL/hotel --kind physical -q >/dev/null"
PGBR_INCR=$(( $(du_b "$W/pgbr/backup") - PGBR_FULL ))
PGBR2_INCR=$(have_new && echo $(( $(du_b "$W/pgbr2/backup") - PGBR2_FULL )) || echo 0)
SR_INCR=$(( $(sr_bytes) - SR_FULL ))

# --- restores -----------------------------------------------------------------------------------
# Each restore goes into the same empty directory, the previous one's removed and synced
# first: a restore into space just freed runs much faster here than one into fresh space
# (1.7-1.9 s against 3.0 s measured once), so tools that ran later would win by their place
# in the line. Two rounds, the second in the opposite order; times are the sums.
echo "restores (two rounds in opposite orders, each into the same emptied, synced directory):"
RESTORES=(pgbackrest strongroom strongroom_full)
have_new && RESTORES=(pgbackrest pgbackrest2 strongroom strongroom_full)
restore_one() { # tool, round
  "${AS[@]}" rm -rf "$W/restore/x"
  sync
  case $1 in
    pgbackrest) run "$1_restore_$2" "$PGBR --pg1-path=$W/restore/x restore" ;;
    pgbackrest2) run "$1_restore_$2" "$PGBR2 --pg1-path=$W/restore/x restore" ;;
    strongroom) run "$1_restore_$2" "$SRE restore latest --data-dir $W/restore/x -q >/dev/null 2>&1" ;;
    strongroom_full) run "$1_restore_$2" "$SRE restore $FULL_ID --data-dir $W/restore/x -q >/dev/null 2>&1" ;;
  esac
}
for t in "${RESTORES[@]}"; do restore_one "$t" 1; done
for (( i=${#RESTORES[@]}-1; i>=0; i-- )); do restore_one "${RESTORES[$i]}" 2; done
"${AS[@]}" rm -rf "$W/restore/x"
for t in "${RESTORES[@]}"; do
  T[${t}_restore]=$(echo "${T[${t}_restore_1]} + ${T[${t}_restore_2]}" | bc -l)
  R[${t}_restore]=$(( R[${t}_restore_1] > R[${t}_restore_2] ? R[${t}_restore_1] : R[${t}_restore_2] ))
done

# --- WAL push rate ---------------------------------------------------------------------------
echo "WAL push ($SEGMENTS segments, one process each, as archive_command runs them):"
psql -qc "ALTER SYSTEM SET archive_command = 'cp %p $W/walsrc/%f'" -c "SELECT pg_reload_conf()" >/dev/null
pgbench -i -s 10 -q hotel >/dev/null 2>&1
while (( $(ls "$W/walsrc" | grep -c '^[0-9A-F]\{24\}$' || true) < SEGMENTS )); do
  # Booking updates (heap, index and full-page images) and pgbench's small transactions.
  "$SR" hotel postgres-sql --update 0.02 | psql -q hotel
  pgbench -n -c 2 -T 3 hotel >/dev/null 2>&1
  psql -qtAc "SELECT pg_switch_wal()" >/dev/null
  sleep 0.5
done
mapfile -t SEGS < <(ls "$W/walsrc" | grep '^[0-9A-F]\{24\}$' | head -n "$SEGMENTS")
printf '%s\n' "${SEGS[@]}" > "$W/segments"
"${AS[@]}" env STRONGROOM_REPO="$W/sr-push" STRONGROOM_PASSWORD=bench-password "$SR" init -q 2>/dev/null
"${AS[@]}" env STRONGROOM_REPO="$W/sr-push" STRONGROOM_PASSWORD=bench-password "$SR" key add --new-key-file "$W/push.key" 2>/dev/null
# strongroom acts for the cluster in its working directory (the data directory, as
# PostgreSQL starts it); pgBackRest reads pg1-path. Both are given absolute segment paths.
run strongroom_push "cd $W/data && for f in \$(cat $W/segments); do env STRONGROOM_REPO=$W/sr-push STRONGROOM_PASSWORD_FILE=$W/push.key $SR wal push $W/walsrc/\$f || exit 1; done"
run pgbackrest_push "cd $W/data && for f in \$(cat $W/segments); do $PGBR archive-push $W/walsrc/\$f || exit 1; done"

# --- archive lag under load ----------------------------------------------------------------------
echo "archive lag under pgbench (strongroom archiving):"
psql -qc "ALTER SYSTEM RESET archive_command" -c "SELECT pg_reload_conf()" >/dev/null
psql -qtAc "SELECT pg_switch_wal()" >/dev/null
sleep 1
pgbench -n -c 4 -T 30 hotel > "$W/pgbench.out" 2>&1 &
BENCH=$!
MAXLAG=0
while kill -0 $BENCH 2>/dev/null; do
  LAG=$(psql -qtAc "SELECT (('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 9))::bit(64)::bigint
                          - ('x' || substr(COALESCE(last_archived_wal, pg_walfile_name(pg_current_wal_lsn())), 9, 16))::bit(64)::bigint) - 1
                     FROM pg_stat_archiver" 2>/dev/null || echo 0)
  (( LAG > MAXLAG )) && MAXLAG=$LAG
  sleep 0.2
done
TPS=$(grep -o 'tps = [0-9.]*' "$W/pgbench.out" | head -1)
FAILED=$(psql -qtAc "SELECT failed_count FROM pg_stat_archiver")
echo "  most segments behind: $MAXLAG ($TPS, archiver failures: $FAILED)"

# --- summary -------------------------------------------------------------------------------------
N=${#SEGS[@]}
SR_RATE=$(echo "scale=1; $N/${T[strongroom_push]}" | bc -l)
PGBR_RATE=$(echo "scale=1; $N/${T[pgbackrest_push]}" | bc -l)
echo
if ! have_new; then
  for k in full incr restore; do T[pgbackrest2_$k]=0; R[pgbackrest2_$k]=0; done
fi
r2() { have_new && ratio "$1" "$2" || echo "-"; }
echo "| measure | pgBackRest 2.45 | pgBackRest 2.59.1 (block incr) | strongroom | ratio vs 2.45 | ratio vs 2.59.1 | target |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
echo "| full backup | ${T[pgbackrest_full]} s, $(mb "$PGBR_FULL") MB | ${T[pgbackrest2_full]} s, $(mb "$PGBR2_FULL") MB | ${T[strongroom_full]} s, $(mb "$SR_FULL") MB | time $(ratio "${T[strongroom_full]}" "${T[pgbackrest_full]}")x, bytes $(ratio "$SR_FULL" "$PGBR_FULL")x | time $(r2 "${T[strongroom_full]}" "${T[pgbackrest2_full]}")x, bytes $(r2 "$SR_FULL" "$PGBR2_FULL")x | time <= 1.0x 2.45 |"
echo "| incremental after 1% updates | ${T[pgbackrest_incr]} s, +$(mb "$PGBR_INCR") MB | ${T[pgbackrest2_incr]} s, +$(mb "$PGBR2_INCR") MB | ${T[strongroom_incr]} s, +$(mb "$SR_INCR") MB | time $(ratio "${T[strongroom_incr]}" "${T[pgbackrest_incr]}")x, bytes $(ratio "$SR_INCR" "$PGBR_INCR")x | time $(r2 "${T[strongroom_incr]}" "${T[pgbackrest2_incr]}")x, bytes $(r2 "$SR_INCR" "$PGBR2_INCR")x | time <= 0.5x 2.45, bytes <= 0.25x 2.59.1 |"
echo "| restore (newest, page deltas), two rounds | ${T[pgbackrest_restore]} s | ${T[pgbackrest2_restore]} s | ${T[strongroom_restore]} s | $(ratio "${T[strongroom_restore]}" "${T[pgbackrest_restore]}")x | $(r2 "${T[strongroom_restore]}" "${T[pgbackrest2_restore]}")x | <= 1.0x 2.59.1 |"
echo "| restore of the full snapshot, two rounds | | | ${T[strongroom_full_restore]} s | | | delta restore $(ratio "${T[strongroom_restore]}" "${T[strongroom_full_restore]}")x of it, <= 1.1x |"
echo "| WAL push, $N segments | $PGBR_RATE seg/s | | $SR_RATE seg/s | $(ratio "$SR_RATE" "$PGBR_RATE")x | | >= 1.5x |"
echo "| peak RSS full / incr / restore / push | $(mb $((R[pgbackrest_full]*1024))) / $(mb $((R[pgbackrest_incr]*1024))) / $(mb $((R[pgbackrest_restore]*1024))) / $(mb $((R[pgbackrest_push]*1024))) MB | $(mb $((R[pgbackrest2_full]*1024))) / $(mb $((R[pgbackrest2_incr]*1024))) / $(mb $((R[pgbackrest2_restore]*1024))) MB | $(mb $((R[strongroom_full]*1024))) / $(mb $((R[strongroom_incr]*1024))) / $(mb $((R[strongroom_restore]*1024))) / $(mb $((R[strongroom_push]*1024))) MB | | | |"
echo "| archive lag under pgbench | | | $MAXLAG segment(s) behind at most | | | <= 2 |"
