#!/usr/bin/env bash
# Benchmark: retention and maintenance on a long history. strongroom's `forget --prune` and
# `check --read-data` against restic's, in one run, on the same 200 days of a growing hotel
# SQLite database. Not a test: run it by hand (`bench/prune.sh`); with the defaults it takes
# about ten minutes on two cores and 9 GB of disk at its peak.
#
# The history: one snapshot a day for DAYS days (default 200), each taken with the clock
# faked to that day at 02:00 UTC (strongroom under `faketime`, restic with `backup --time`).
# Between two days the database grows by GROW of its bookings (default 0.2%, new rows at
# the end of the table and in both indexes) and UPDATE of its bookings change at random
# (default 1%). strongroom backs up the live database (it reads it inside one SQLite read
# transaction); restic backs up a consistent copy made with `sqlite3 DB ".backup COPY"`
# (copying the live file is not a consistent backup), always at the same path.
#
# Measured, on both repositories:
#   forget --keep-daily 30 --keep-weekly 13 --keep-monthly 12 --prune
#                        time, peak RSS, repository bytes before and after   target: time <= 1.0x restic
#   check --read-data    time, peak RSS (after the prune)                     target: time <= 1.0x restic
#   then AFTER more days (default 7) of backups, each followed by a forget --prune:
#   forget --prune       mean time a day, peak RSS                            target: time <= 1.0x restic
#   check --read-data    time, peak RSS (after the daily prunes)              target: time <= 1.0x restic
# The forget runs with the clock at the last day, 03:00 (restic's buckets do not depend on
# the clock); both tools bucket in UTC here (TZ=UTC), so they should keep the same days,
# which is checked and printed.
#
# Environment: BOOKINGS (default 600000, about 60 MB of database, about 90 MB after 200
# days), DAYS (200), AFTER (7), GROW (0.002), UPDATE (0.01), START (2026-01-01), BENCH_DIR
# (default a fresh temp dir, removed at the end unless KEEP=1; a BENCH_DIR given is never
# removed).
# KEEP=1 also keeps hard-linked copies of both repositories as they were before the forget
# (BENCH_DIR/before-forget/), to re-run or profile the prune.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BOOKINGS=${BOOKINGS:-600000}
DAYS=${DAYS:-200}
GROW=${GROW:-0.002}
UPDATE=${UPDATE:-0.01}
START=${START:-2026-01-01}
POLICY="--keep-daily 30 --keep-weekly 13 --keep-monthly 12"
missing=()
for t in restic faketime sqlite3 python3 bc; do
  command -v "$t" >/dev/null || missing+=("$t")
done
if (( ${#missing[@]} )); then
  echo "bench/prune.sh needs ${missing[*]}: apt-get install restic faketime sqlite3 python3 bc" >&2
  exit 1
fi
cargo build --release -q
SR=${CARGO_TARGET_DIR:-$PWD/target}/release/strongroom
M="python3 $PWD/bench/measure.py"
if [[ -n ${BENCH_DIR:-} ]]; then
  W=$BENCH_DIR
  [[ ! -e $W/sr && ! -e $W/restic ]] || { echo "$W already holds repositories; give an empty BENCH_DIR" >&2; exit 1; }
else
  W=$(mktemp -d /var/tmp/strongroom-prune.XXXXXX)
  [[ ${KEEP:-0} == 1 ]] || trap 'rm -rf "$W"' EXIT
fi
mkdir -p "$W/copy"
# One clock for both tools' buckets. The faked clock is the wall clock only: monotonic
# clocks (timeouts, durations) run as they are.
export TZ=UTC FAKETIME_DONT_FAKE_MONOTONIC=1
export STRONGROOM_REPO=$W/sr STRONGROOM_PASSWORD=bench-password
export RESTIC_REPOSITORY=$W/restic RESTIC_PASSWORD=bench-password RESTIC_CACHE_DIR=$W/restic-cache
DB=$W/hotel.db
COPY=$W/copy/hotel.db
du_b() { du -sb "$1" | cut -f1; }
mb() { echo "scale=1; $1/1000000" | bc -l; }
ratio() { printf %.2f "$(echo "scale=4; $1/$2" | bc -l)"; }
day() { date -u -d "$START + $1 days" +%F; }
now() { echo "$EPOCHREALTIME"; }
add() { echo "$1 + $3 - $2" | bc -l; } # total, from, to: total + (to - from)
declare -A T R
run() { # name, command
  local out
  sync
  out=$($M "$2")
  T[$1]=${out% *}; R[$1]=${out#* }
  printf '  %-22s %8.2f s %8.1f MB peak RSS\n' "$1" "${T[$1]}" "$(mb $((R[$1] * 1024)))"
}
quiet() { # runs a command, showing its output only when it fails
  "$@" >"$W/last.log" 2>&1 || { cat "$W/last.log" >&2; return 1; }
}

# Adds GROW of the bookings as new bookings, in one transaction that also counts the
# confirmed ones in their rooms (the hotel invariant holds in every state). Deterministic:
# the new rows depend only on their ids.
grow() { # date
  sqlite3 "$DB" <<EOF
.timeout 10000
BEGIN IMMEDIATE;
CREATE TEMP TABLE nb AS
  WITH RECURSIVE m AS (SELECT (SELECT max(id) FROM bookings) AS last,
                              (SELECT max(id) FROM users) AS users,
                              (SELECT max(id) FROM room_inventory) AS rooms),
  n(g) AS (SELECT last + 1 FROM m UNION ALL SELECT g + 1 FROM n, m
           WHERE g < last + max(1, CAST(last * $GROW AS INTEGER)))
  SELECT g AS id, 1 + (g * 2654435761) % users AS user_id, 1 + (g * 40503) % rooms AS room_id,
         CASE WHEN g % 10 = 0 THEN 'cancelled' ELSE 'confirmed' END AS status,
         1 + g % 4 AS guests, 8000 + (g * 7727) % 90000 AS total_cents, '$1' AS created_at,
         (SELECT notes FROM bookings WHERE id = 1 + (g * 13) % 1000) AS notes
  FROM n, m;
INSERT INTO bookings SELECT * FROM nb;
UPDATE room_inventory SET booked = booked +
    (SELECT count(*) FROM nb WHERE nb.room_id = room_inventory.id AND nb.status = 'confirmed')
  WHERE id IN (SELECT room_id FROM nb WHERE status = 'confirmed');
DROP TABLE nb;
COMMIT;
EOF
}

echo "building a hotel database with $BOOKINGS bookings in $W ..."
"$SR" hotel generate "$DB" --bookings "$BOOKINGS" >/dev/null
DB_START=$(stat -c %s "$DB")
echo "database: $(mb "$DB_START") MB; $DAYS daily snapshots from $START, +$GROW bookings and $UPDATE updated a day"
"$SR" init -q 2>/dev/null
restic init -q >/dev/null

# --- the history -------------------------------------------------------------------------
# restic backs up $COPY, made by sqlite3's online backup: a consistent state, as strongroom's.
T_CHANGE=0 T_SR=0 T_COPY=0 T_RESTIC=0
HIST0=$(now)
for ((d = 0; d < DAYS; d++)); do
  D=$(day "$d")
  t0=$(now)
  if (( d > 0 )); then
    grow "$D"
    quiet "$SR" hotel update "$DB" --fraction "$UPDATE" --seed $((1000 + d))
  fi
  t1=$(now)
  quiet faketime -f "@$D 02:00:00" "$SR" backup "sqlite:$DB" -q
  t2=$(now)
  sqlite3 "$DB" ".backup '$COPY'"
  t3=$(now)
  quiet restic backup -q --host bench --time "$D 02:00:00" "$COPY"
  t4=$(now)
  T_CHANGE=$(add "$T_CHANGE" "$t0" "$t1"); T_SR=$(add "$T_SR" "$t1" "$t2")
  T_COPY=$(add "$T_COPY" "$t2" "$t3"); T_RESTIC=$(add "$T_RESTIC" "$t3" "$t4")
  if (( (d + 1) % 20 == 0 || d + 1 == DAYS )); then
    printf '  day %3d (%s): database %6.1f MB, strongroom %7.1f MB, restic %7.1f MB\n' $((d + 1)) "$D" \
      "$(mb "$(stat -c %s "$DB")")" "$(mb "$(du_b "$W/sr")")" "$(mb "$(du_b "$W/restic")")"
  fi
done
HIST=$(echo "$(now) - $HIST0" | bc -l)
DB_END=$(stat -c %s "$DB")
# The hotel invariant (hotel::INVARIANT_SQL): every state the history made was consistent.
[[ $(sqlite3 "$DB" "SELECT count(*) = 0 FROM room_inventory r WHERE r.booked !=
      (SELECT count(*) FROM bookings b WHERE b.room_id = r.id AND b.status = 'confirmed')") == 1 ]] \
  || { echo "the hotel invariant does not hold after the history" >&2; exit 1; }
printf 'history: %.0f s wall; data changes %.0f s, strongroom backups %.0f s, sqlite3 .backup copies %.0f s, restic backups %.0f s\n' \
  "$HIST" "$T_CHANGE" "$T_SR" "$T_COPY" "$T_RESTIC"

# --- what every command pays first --------------------------------------------------------
# Opening a repository derives the key from the password (strongroom: Argon2id; restic:
# scrypt), which costs both tools time and memory before any work; listing the snapshots
# shows that floor.
echo "opening the repository (listing snapshots):"
run strongroom_list "$SR list -q >/dev/null"
run restic_list "restic snapshots -q >/dev/null"

# --- forget --prune ----------------------------------------------------------------------
SR_BEFORE=$(du_b "$W/sr"); RESTIC_BEFORE=$(du_b "$W/restic")
if [[ ${KEEP:-0} == 1 ]]; then
  mkdir -p "$W/before-forget"
  cp -al "$W/sr" "$W/restic" "$W/before-forget/"
fi
LAST=$(day $((DAYS - 1)))
echo "forget $POLICY --prune (strongroom's clock at $LAST 03:00):"
run strongroom_forget "faketime -f '@$LAST 03:00:00' $SR forget $POLICY --prune >$W/sr-forget.out"
run restic_forget "restic forget $POLICY --prune >$W/restic-forget.out"
# What each prune did, in its own words.
grep -E '^(deleted|written by the repack|left in place|freed)' "$W/sr-forget.out" | sed 's/^/  strongroom: /' || true
grep -E '^(to repack|to delete|remaining|removing)' "$W/restic-forget.out" | sed 's/  */ /g; s/^/  restic: /' || true
SR_AFTER=$(du_b "$W/sr"); RESTIC_AFTER=$(du_b "$W/restic")
# The days each tool kept.
"$SR" list --json | python3 -c 'import json,sys; print("\n".join(sorted(s["started_at"][:10] for s in json.load(sys.stdin))))' > "$W/sr-kept"
restic snapshots --json | python3 -c 'import json,sys; print("\n".join(sorted(s["time"][:10] for s in json.load(sys.stdin))))' > "$W/restic-kept"
SR_KEPT=$(wc -l < "$W/sr-kept"); RESTIC_KEPT=$(wc -l < "$W/restic-kept")
if cmp -s "$W/sr-kept" "$W/restic-kept"; then
  SAME="the same $SR_KEPT days"
else
  SAME="different days: $(diff "$W/sr-kept" "$W/restic-kept" | grep '^[<>]' | tr '\n' ' ')"
fi
echo "  kept: strongroom $SR_KEPT, restic $RESTIC_KEPT snapshots ($SAME)"

# --- check --read-data -------------------------------------------------------------------
echo "check --read-data (after the prune):"
run strongroom_check "$SR check --read-data -q >/dev/null"
run restic_check "restic check --read-data -q >/dev/null"

# --- steady state ----------------------------------------------------------------------------
# The forget above catches up on a whole history at once; a deployment prunes every day. So
# AFTER more days (default 7), each a day of changes, a backup and a `forget --prune` of both
# tools, timed per day; then `check --read-data` again, on repositories that daily prunes
# keep (strongroom's repack budget, 5% of the repository a prune by default, takes several
# prunes to pack what a catch-up leaves).
AFTER=${AFTER:-7}
echo "then $AFTER more days, each with a backup and a forget --prune:"
T_DSR=0 T_DRESTIC=0 R_DSR=0 R_DRESTIC=0
for ((k = 0; k < AFTER; k++)); do
  D=$(day $((DAYS + k)))
  grow "$D"
  quiet "$SR" hotel update "$DB" --fraction "$UPDATE" --seed $((5000 + k))
  quiet faketime -f "@$D 02:00:00" "$SR" backup "sqlite:$DB" -q
  sqlite3 "$DB" ".backup '$COPY'"
  quiet restic backup -q --host bench --time "$D 02:00:00" "$COPY"
  sync
  out=$($M "faketime -f '@$D 03:00:00' $SR forget $POLICY --prune >$W/sr-daily.out")
  T_DSR=$(echo "$T_DSR + ${out% *}" | bc -l); (( ${out#* } > R_DSR )) && R_DSR=${out#* }
  sync
  out=$($M "restic forget $POLICY --prune >$W/restic-daily.out")
  T_DRESTIC=$(echo "$T_DRESTIC + ${out% *}" | bc -l); (( ${out#* } > R_DRESTIC )) && R_DRESTIC=${out#* }
done
T[strongroom_daily]=$(printf %.2f "$(echo "$T_DSR / $AFTER" | bc -l)"); R[strongroom_daily]=$R_DSR
T[restic_daily]=$(printf %.2f "$(echo "$T_DRESTIC / $AFTER" | bc -l)"); R[restic_daily]=$R_DRESTIC
printf '  %-22s %8.2f s a day, %8.1f MB peak RSS\n' strongroom_daily "${T[strongroom_daily]}" "$(mb $((R_DSR * 1024)))"
printf '  %-22s %8.2f s a day, %8.1f MB peak RSS\n' restic_daily "${T[restic_daily]}" "$(mb $((R_DRESTIC * 1024)))"
SR_STEADY=$(du_b "$W/sr"); RESTIC_STEADY=$(du_b "$W/restic")
echo "check --read-data (after $AFTER daily prunes):"
run strongroom_check2 "$SR check --read-data -q >/dev/null"
run restic_check2 "restic check --read-data -q >/dev/null"

# --- summary -------------------------------------------------------------------------------
rss() { mb $(( R[$1] * 1024 )); }
echo
echo "| measure ($DAYS daily snapshots, DB $(mb "$DB_START") → $(mb "$DB_END") MB) | strongroom | restic | strongroom / restic | target |"
echo "| --- | --- | --- | --- | --- |"
echo "| forget --prune, time | ${T[strongroom_forget]} s | ${T[restic_forget]} s | $(ratio "${T[strongroom_forget]}" "${T[restic_forget]}")x | ≤ 1.0x |"
echo "| forget --prune, peak RSS | $(rss strongroom_forget) MB | $(rss restic_forget) MB | $(ratio "${R[strongroom_forget]}" "${R[restic_forget]}")x | (the figure) |"
echo "| check --read-data, time | ${T[strongroom_check]} s | ${T[restic_check]} s | $(ratio "${T[strongroom_check]}" "${T[restic_check]}")x | ≤ 1.0x |"
echo "| check --read-data, peak RSS | $(rss strongroom_check) MB | $(rss restic_check) MB | $(ratio "${R[strongroom_check]}" "${R[restic_check]}")x | (the figure) |"
echo "| forget --prune daily, mean of $AFTER days after, time | ${T[strongroom_daily]} s | ${T[restic_daily]} s | $(ratio "${T[strongroom_daily]}" "${T[restic_daily]}")x | ≤ 1.0x |"
echo "| forget --prune daily, peak RSS | $(rss strongroom_daily) MB | $(rss restic_daily) MB | $(ratio "${R[strongroom_daily]}" "${R[restic_daily]}")x | (the figure) |"
echo "| check --read-data after $AFTER daily prunes, time | ${T[strongroom_check2]} s | ${T[restic_check2]} s | $(ratio "${T[strongroom_check2]}" "${T[restic_check2]}")x | ≤ 1.0x |"
echo "| repository after $AFTER daily prunes | $(mb "$SR_STEADY") MB | $(mb "$RESTIC_STEADY") MB | $(ratio "$SR_STEADY" "$RESTIC_STEADY")x | |"
echo "| list snapshots (the floor: key derivation, startup), time / peak RSS | ${T[strongroom_list]} s / $(rss strongroom_list) MB | ${T[restic_list]} s / $(rss restic_list) MB | $(ratio "${T[strongroom_list]}" "${T[restic_list]}")x / $(ratio "${R[strongroom_list]}" "${R[restic_list]}")x | |"
echo "| repository before forget | $(mb "$SR_BEFORE") MB | $(mb "$RESTIC_BEFORE") MB | $(ratio "$SR_BEFORE" "$RESTIC_BEFORE")x | |"
echo "| repository after prune | $(mb "$SR_AFTER") MB | $(mb "$RESTIC_AFTER") MB | $(ratio "$SR_AFTER" "$RESTIC_AFTER")x | |"
echo "| snapshots kept of $DAYS | $SR_KEPT | $RESTIC_KEPT | | same days: $([[ $SAME == the* ]] && echo yes || echo no) |"
echo "| building the history, $DAYS backups | $(printf %.0f "$T_SR") s (live database) | $(printf %.0f "$T_RESTIC") s (+ $(printf %.0f "$T_COPY") s sqlite3 .backup) | $(ratio "$T_SR" "$T_RESTIC")x | |"
echo
echo "restic backed up a copy made by \`sqlite3 DB \".backup COPY\"\` each day; strongroom read the live database."
[[ ${KEEP:-0} != 1 ]] || echo "kept: $W (repositories as before the forget in $W/before-forget)"
