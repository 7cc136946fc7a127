#!/usr/bin/env bash
# Benchmark: the daemon's answers on a large repository. Issue goal: the dashboard's first
# paint within 1 s on a repository with 10,000 snapshots and 100,000 journal records. Not a
# test: run it by hand (`bench/daemon.sh`); about five minutes on two cores (most of it
# writing the 100,000 journal objects).
#
# The repository: one real SQLite backup, then `examples/seed_large` writes SNAPSHOTS more
# manifests (real, restorable: the same chunks) and RECORDS journal records. Measured, with
# the release build:
#   status --json        cold (no local caches) and warm: time and peak RSS
#   daemon start         time until /api/status answers 200 with a judgement, first run
#                        (cold caches) and second run (the kept judgement), then until the
#                        page's lists (snapshots, journal) are read
#   the page             time for GET /, then GET /api/status, on a running daemon
# There is no reference tool for this one (Backrest needs restic's own repository); the
# figures are printed against the goal.
#
# Environment: SNAPSHOTS (10000), RECORDS (100000), BENCH_DIR (default a fresh temp dir,
# removed at the end unless KEEP=1; a BENCH_DIR given is never removed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SNAPSHOTS=${SNAPSHOTS:-10000}
RECORDS=${RECORDS:-100000}
for t in sqlite3 curl python3 bc; do
  command -v "$t" >/dev/null || { echo "bench/daemon.sh needs $t" >&2; exit 1; }
done
cargo build --release -q -p strongroom-cli
cargo build --release -q -p strongroom --example seed_large
B=$PWD/target/release/strongroom
SEED=$PWD/target/release/examples/seed_large
if [[ -n ${BENCH_DIR:-} ]]; then
  D=$BENCH_DIR; mkdir -p "$D"
else
  D=$(mktemp -d /tmp/strongroom-bench-daemon.XXXX)
  [[ ${KEEP:-} == 1 ]] || trap 'rm -rf "$D"' EXIT
fi
export STRONGROOM_PASSWORD=bench STRONGROOM_STATE_DIR=$D/state STRONGROOM_CACHE_DIR=$D/cache
export STRONGROOM_CONFIG=$D/strongroom.toml
sqlite3 "$D/hotel.db" "CREATE TABLE bookings(id INTEGER PRIMARY KEY, guest TEXT);
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20000)
  INSERT INTO bookings(guest) SELECT 'guest ' || i FROM n;"
cat > "$D/strongroom.toml" <<TOML
repository = "$D/repo"
[sources.hotel]
url = "sqlite:$D/hotel.db"
TOML
"$B" init -q >/dev/null
"$B" backup hotel -q
echo "seeding $SNAPSHOTS snapshots and $RECORDS journal records…"
"$SEED" "$D/repo" "$SNAPSHOTS" "$RECORDS" >/dev/null

measure() { # label, command…: prints seconds and peak RSS
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$D/time" "$@" >/dev/null 2>&1 || true
  # time(1) puts "Command exited with non-zero status 1" first when status finds warnings
  read -r secs kb < <(tail -n 1 "$D/time")
  printf '%-34s %7.2f s  %6d MB\n' "$label" "$secs" $((kb / 1024))
}
rm -rf "$D/cache"
measure "status --json, cold caches" "$B" status --json --no-alerts
measure "status --json, warm caches" "$B" status --json --no-alerts

first_answer() { # label: starts the daemon, times until /api/status answers 200
  local label=$1 start end port
  start=$(date +%s.%N)
  "$B" daemon --listen 127.0.0.1:0 2> "$D/daemon.log" &
  DAEMON=$!
  until port=$(grep -o '127.0.0.1:[0-9]*' "$D/daemon.log" 2>/dev/null); do sleep 0.02; done
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$port/api/status") == 200 ]]; do sleep 0.02; done
  end=$(date +%s.%N)
  printf '%-34s %7.2f s\n' "$label" "$(echo "$end - $start" | bc)"
  until curl -s "http://$port/api/daemon" | grep -q '"lists_read_at": "'; do sleep 0.05; done
  end=$(date +%s.%N)
  printf '%-34s %7.2f s\n' "  … and to the page's lists" "$(echo "$end - $start" | bc)"
  PORT=$port
}
first_answer "daemon start to /api/status, 1st"
sleep 1
page=$(curl -s -o /dev/null -w '%{time_total}' "http://$PORT/")
api=$(curl -s -o /dev/null -w '%{time_total}' "http://$PORT/api/status")
printf '%-34s %7.3f s   (goal: first paint < 1 s)\n' "GET / on a running daemon" "$page"
printf '%-34s %7.3f s\n' "GET /api/status on a running one" "$api"
kill -TERM "$DAEMON"; wait "$DAEMON" || true
first_answer "daemon start to /api/status, 2nd"
kill -TERM "$DAEMON"; wait "$DAEMON" || true
