#!/usr/bin/env bash
# Benchmark: strongroom's logical PostgreSQL backup and restore against the strategy's own
# pipeline (`pg_dump -Fc | gzip | gpg --encrypt`) and `pg_restore -j2` of a custom dump, in
# one run, on one throwaway cluster. Not a test: run it by hand (`bench/pg-logical.sh`); it
# takes several minutes and a few GB of disk.
#
# Prints times, stored bytes, peak RSS and the ratios the issue sets as targets (issue 23):
#   backup time   <= 0.3x the strategy pipeline;
#   stored bytes  <= 1.0x the strategy pipeline's;
#   restore time  <= 0.9x pg_restore -j2 of a custom-format dump file;
# and where strongroom's restore spent its time (from its -v log: wall time of the schema,
# data and post-data phases; CPU of reading the repository, parsing, the client side of COPY).
# Autovacuum is off in the throwaway cluster: it would vacuum the tables one restore loaded
# while the next restore runs (measured: 7.8 s and 12.3 s for the same post-data phase). The
# restores run twice, in alternating order, each after a checkpoint; the ratio is of the sums.
# Each restored database is checked (its bookings counted) and dropped before the next restore:
# the disk is shared, and two restored copies beside the source once filled it.
# Then updates 1% of bookings and backs up again, to show what deduplication saves where the
# strategy stores a whole new dump every day.
#
# Environment: SHAPE (hotel, default: every column a formula of the row number, which
# compresses unrepresentatively well; varied: random values, timestamps with microseconds,
# notes of 3-24 words, shaped like the held-out data of issue 23), BOOKINGS (default 6000000
# for hotel, 4000000 for varied: about 1 GB of database either way), BENCH_DIR (default a
# fresh temp dir, removed at the end), JOBS (pg_restore jobs for both tools, default 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHAPE=${SHAPE:-hotel}
case $SHAPE in
  hotel) BOOKINGS=${BOOKINGS:-6000000}; VARIED=() ;;
  varied) BOOKINGS=${BOOKINGS:-4000000}; VARIED=(--varied) ;;
  *) echo "SHAPE is hotel or varied" >&2; exit 1 ;;
esac
JOBS=${JOBS:-2}
for t in pg_dump pg_restore gzip gpg python3 bc; do
  command -v "$t" >/dev/null || { echo "bench needs $t" >&2; exit 1; }
done
BIN=""
for d in /usr/lib/postgresql/*/bin; do [[ -x $d/initdb && -x $d/pg_ctl ]] && BIN=$d; done
[[ -n $BIN ]] || BIN=$(pg_config --bindir)
cargo build --release -q
SR=$PWD/target/release/strongroom
M="python3 $PWD/bench/measure.py"
W=${BENCH_DIR:-$(mktemp -d /var/tmp/strongroom-pgbench.XXXXXX)}
mkdir -p "$W/ref"
AS=()
if [[ $(id -u) -eq 0 ]]; then AS=(runuser -u postgres --); chown postgres "$W"; fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  "${AS[@]}" "$BIN/pg_ctl" -D "$W/data" -m immediate stop >/dev/null 2>&1 || true
  [[ -n ${BENCH_DIR:-} ]] || rm -rf "$W"
}
trap cleanup EXIT
"${AS[@]}" "$BIN/initdb" -D "$W/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$W/data" -l "$W/server.log" -w -o \
  "-p $PORT -k $W -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_wal_size=4GB -c autovacuum=off" start >/dev/null
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
export STRONGROOM_PASSWORD=bench-password STRONGROOM_REPO=$W/sr GNUPGHOME=$W/gnupg
URL="postgres://postgres@127.0.0.1:$PORT"
du_b() { du -sb "$1" | cut -f1; }

echo "building a $SHAPE-shaped hotel database with $BOOKINGS bookings (PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), port $PORT) ..."
psql -qc "CREATE DATABASE hotel"
$SR hotel postgres-sql --bookings "$BOOKINGS" "${VARIED[@]}" | psql -q hotel >/dev/null
psql -qc "CHECKPOINT"
DB_BYTES=$(psql -tAc "SELECT pg_database_size('hotel')")
echo "database: $((DB_BYTES / 1000000)) MB"
mkdir -p "$GNUPGHOME"; chmod 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key bench@strongroom.invalid default default never 2>/dev/null
$SR init -q 2>/dev/null

declare -A T R
run() { # name, command
  local out
  out=$($M "$2")
  T[$1]=${out% *}; R[$1]=${out#* }
  printf '  %-30s %8.2f s %8.1f MB RSS\n' "$1" "${T[$1]}" "$(echo "${R[$1]}/1024" | bc -l)"
}
mb() { echo "scale=1; $1/1000000" | bc -l; }
ratio() { echo "scale=2; $1/$2" | bc -l; }

echo "backups:"
sync
run strategy_backup "pg_dump -Fc hotel | gzip | gpg --batch --yes --trust-model always --encrypt -r bench@strongroom.invalid -o $W/ref/day1.dump.gz.gpg"
STRATEGY_BYTES=$(stat -c %s "$W/ref/day1.dump.gz.gpg")
run strongroom_backup "$SR backup $URL/hotel -q >/dev/null"
SR_BYTES=$(du_b "$W/sr")

echo "restores (into new databases, $JOBS jobs; two rounds in alternating order, each after a checkpoint):"
pg_dump -Fc -f "$W/ref/custom.dump" hotel
fresh() { # drops the database $1, checkpoints, waits for the disk
  psql -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1"
  psql -qc "CHECKPOINT"
  sync
}
restore_ref() {
  fresh ref_restore
  psql -qc "CREATE DATABASE ref_restore"
  run "pg_restore_j${JOBS}_$1" "pg_restore -j $JOBS -d ref_restore $W/ref/custom.dump"
}
restore_sr() {
  fresh sr_restore
  run "strongroom_restore_$1" "$SR restore latest --target-db $URL/sr_restore --jobs $JOBS -v >/dev/null 2>$W/restore.log"
}
SRC_ROWS=$(psql -tAd hotel -c "SELECT count(*) FROM bookings")
rows_then_drop() { # one restored database at a time: the disk is shared
  local n
  n=$(psql -tAd "$1" -c "SELECT count(*) FROM bookings")
  [[ $n == "$SRC_ROWS" ]] || { echo "$1 has $n bookings, not $SRC_ROWS" >&2; exit 1; }
  fresh "$1"
}
restore_ref 1; rows_then_drop ref_restore; restore_sr 1; rows_then_drop sr_restore
restore_sr 2; rows_then_drop sr_restore; restore_ref 2; rows_then_drop ref_restore
for k in pg_restore_j$JOBS strongroom_restore; do
  T[$k]=$(echo "${T[${k}_1]} + ${T[${k}_2]}" | bc -l)
  R[$k]=$(( R[${k}_1] > R[${k}_2] ? R[${k}_1] : R[${k}_2] ))
done

echo "day 2: 1% of bookings updated, backed up again:"
$SR hotel postgres-sql --update 0.01 | psql -q hotel
run strategy_backup_2 "pg_dump -Fc hotel | gzip | gpg --batch --yes --trust-model always --encrypt -r bench@strongroom.invalid -o $W/ref/day2.dump.gz.gpg"
STRATEGY_BYTES_2=$(stat -c %s "$W/ref/day2.dump.gz.gpg")
run strongroom_backup_2 "$SR backup $URL/hotel -q >/dev/null"
SR_BYTES_2=$(( $(du_b "$W/sr") - SR_BYTES ))

echo
echo "| measure | strongroom | reference | ratio | target |"
echo "|---|---|---|---|---|"
echo "| backup, s (ref: pg_dump -Fc \| gzip \| gpg) | ${T[strongroom_backup]} | ${T[strategy_backup]} | $(ratio "${T[strongroom_backup]}" "${T[strategy_backup]}") | <= 0.30 |"
echo "| backup, MB stored | $(mb "$SR_BYTES") | $(mb "$STRATEGY_BYTES") | $(ratio "$SR_BYTES" "$STRATEGY_BYTES") | <= 1.00 |"
echo "| restore, s, two rounds (ref: pg_restore -j$JOBS of -Fc file) | ${T[strongroom_restore_1]} + ${T[strongroom_restore_2]} | ${T[pg_restore_j${JOBS}_1]} + ${T[pg_restore_j${JOBS}_2]} | $(ratio "${T[strongroom_restore]}" "${T[pg_restore_j$JOBS]}") | <= 0.90 |"
echo "| day-2 backup after 1% updates, s | ${T[strongroom_backup_2]} | ${T[strategy_backup_2]} | $(ratio "${T[strongroom_backup_2]}" "${T[strategy_backup_2]}") | |"
echo "| day-2 backup, MB added | $(mb "$SR_BYTES_2") | $(mb "$STRATEGY_BYTES_2") | $(ratio "$SR_BYTES_2" "$STRATEGY_BYTES_2") | |"
echo "| peak RSS backup / restore, MB | $(( R[strongroom_backup] / 1024 )) / $(( R[strongroom_restore] / 1024 )) | $(( R[strategy_backup] / 1024 )) / $(( R[pg_restore_j$JOBS] / 1024 )) | | |"
echo
echo "database $((DB_BYTES / 1000000)) MB, $SHAPE shape, $BOOKINGS bookings; $(nproc) cores; strongroom restore includes the row-count check."
split=$(grep 'restore time split' "$W/restore.log" | tail -1)
field() { sed -nE "s/.* $1=([0-9.]+).*/\\1/p" <<<"$split" | xargs printf '%.2f'; }
if [[ -n $split ]]; then
  echo "strongroom restore: schema $(field schema_seconds) s, data (parallel COPY) $(field data_seconds) s," \
    "indexes and constraints $(field post_data_seconds) s of $(field total_seconds) s;" \
    "CPU: repository read (fetch, decrypt, decompress) $(field read_cpu_seconds) s," \
    "parsing $(field parse_cpu_seconds) s, COPY client $(field copy_client_cpu_seconds) s"
fi
