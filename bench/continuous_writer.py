#!/usr/bin/env python3
"""The application for bench/continuous.sh: numbered, timestamped bookings into a hotel database.

    continuous_writer.py DB ACKLOG [--rate N] [--seconds S] [--wal-limit BYTES] [--min-free MB]

Each commit is one booking transaction as the hotel application makes it (bench/sqlite.sh's
database, crates/strongroom/src/hotel.rs): a row in `bookings` and its room's `booked` count
in `room_inventory`, so the hotel invariant holds in every committed state. The booking id
is the commit's number: it continues from the database's largest id, one more per commit,
so a restored copy must hold every id up to some point and none after a gap. `created_at`
holds the commit's wall-clock time (Unix seconds).

The database is in WAL mode with `synchronous = NORMAL`, as an application would run it (no
fsync per commit; SQLite's own automatic checkpoint stays on). After each COMMIT returns,
"<id> <unix time>" is appended to ACKLOG with one write() (no fsync: the kernel keeps it
across a kill -9 of this process, and the database itself is the truth). Nothing else is
written outside the database.

--rate N spaces commits to N a second (default: as fast as it can); --seconds S stops after
S seconds (default: until SIGTERM or SIGINT). On a clean stop it prints "<commits>
<seconds> <commits per second> <largest -wal size seen, bytes>". The -wal file's size is
looked at every 500 commits: past --wal-limit (default 2 GB) the writer stops with exit code
3, because a replicator that keeps SQLite from restarting the WAL would otherwise fill the
disk; when the database's file system has less than --min-free MB free (default 3000), it
stops with exit code 4 (the machine is shared: a bench must not fill its disk).

Python's sqlite3 rather than a Rust example: one booking transaction costs about 60 µs of
SQLite's own work and about 15 µs of interpreter on these machines, so it makes well over
3,000 commits a second (the rate the issue measured Litestream at), and the bench needs no
extra build.
"""
import os
import signal
import sqlite3
import sys
import time


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit("usage: continuous_writer.py DB ACKLOG [--rate N] [--seconds S]")
    db, acklog = args[0], args[1]
    rate = float(args[args.index("--rate") + 1]) if "--rate" in args else 0.0
    seconds = float(args[args.index("--seconds") + 1]) if "--seconds" in args else 0.0
    wal_limit = int(args[args.index("--wal-limit") + 1]) if "--wal-limit" in args else 2 << 30
    min_free = int(args[args.index("--min-free") + 1]) if "--min-free" in args else 3000
    stop = False

    def on_signal(_sig, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    c = sqlite3.connect(db, isolation_level=None, timeout=30)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA synchronous = NORMAL")
    users, rooms, last = c.execute(
        "SELECT (SELECT max(id) FROM users), (SELECT max(id) FROM room_inventory),"
        " (SELECT coalesce(max(id), 0) FROM bookings)"
    ).fetchone()
    log = os.open(acklog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rnd = int.from_bytes(os.urandom(8), "little") | 1
    n = 0
    wal = wal_peak = 0
    start = time.time()
    while not stop:
        if n % 500 == 0:
            try:
                wal = os.stat(db + "-wal").st_size
            except FileNotFoundError:
                wal = 0
            wal_peak = max(wal_peak, wal)
            fs = os.statvfs(os.path.dirname(os.path.abspath(db)))
            if fs.f_bavail * fs.f_frsize < min_free * 1_000_000:
                sys.stderr.write(f"less than {min_free} MB free beside {db}: stopping\n")
                sys.exit(4)
            if wal > wal_limit:
                took = time.time() - start
                print(f"{n} {took:.3f} {n / took if took else 0:.1f} {wal_peak}", flush=True)
                sys.stderr.write(f"the WAL passed {wal_limit} bytes ({wal}): stopping\n")
                sys.exit(3)
        now = time.time()
        if seconds and now - start >= seconds:
            break
        if rate:
            due = start + n / rate
            if due > now:
                time.sleep(due - now)
                continue
        # xorshift64: cheap, and a different sequence in every run
        rnd ^= (rnd << 13) & 0xFFFFFFFFFFFFFFFF
        rnd ^= rnd >> 7
        rnd ^= (rnd << 17) & 0xFFFFFFFFFFFFFFFF
        bid = last + n + 1
        room = 1 + rnd % rooms
        c.execute("BEGIN IMMEDIATE")
        c.execute(
            "INSERT INTO bookings (id, user_id, room_id, status, guests, total_cents,"
            " created_at, notes) VALUES (?, ?, ?, 'confirmed', ?, ?, ?, ?)",
            (bid, 1 + (rnd >> 20) % users, room, 1 + (rnd >> 8) % 4,
             9000 + (rnd >> 12) % 50000, f"{now:.6f}", f"bench booking {bid} {rnd:016x}"),
        )
        c.execute("UPDATE room_inventory SET booked = booked + 1 WHERE id = ?", (room,))
        c.execute("COMMIT")
        os.write(log, f"{bid} {time.time():.6f}\n".encode())
        n += 1
    took = time.time() - start
    print(f"{n} {took:.3f} {n / took if took else 0:.1f} {wal_peak}", flush=True)


if __name__ == "__main__":
    main()
