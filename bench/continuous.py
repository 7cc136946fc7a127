#!/usr/bin/env python3
"""The measuring side of bench/continuous.sh (the application is continuous_writer.py).

    continuous.py size DIR                  "<files> <bytes>" under DIR now
    continuous.py watch DIR [--seconds S]   until S seconds pass or SIGTERM: "<objects> <bytes>"
                                            written under DIR meanwhile
    continuous.py loss DB ACKLOG [RATE]     what a restored DB lost against the writer's log:
                                            "<txns lost> <seconds lost> <gap 0|1> <restored max id>
                                            <last acknowledged id>"
    continuous.py proc PID                  "<CPU seconds> <peak RSS KiB>" of a running process
    continuous.py stats N...                "<median> <max>" of the numbers (or "- -")

watch polls DIR every 50 ms. An object is a file that appears (a new inode, or an inode that
had gone and came back); its bytes are the largest size seen. A temporary file renamed into
place keeps its inode, so it counts once; bytes appended to a file that was there before
count too. It sees what a store receives, whichever program wrote it, and it needs no
tracing of the replicator (which would slow it down). A file that lives less than 50 ms is
missed: neither Litestream's LTX files nor strongroom's objects are that short-lived.

loss: the writer's ids are dense from 1 (the hotel generator's and the writer's alike), so a
restored database holds a prefix without a gap exactly when count(*) = max(id). The seconds
lost are the acknowledgement time of the last acknowledged commit minus that of the last
restored one: how far behind the copy was when both processes died.
"""
import os
import signal
import sqlite3
import statistics
import sys
import time


def size(d):
    files = total = 0
    for root, _dirs, names in os.walk(d):
        for n in names:
            try:
                st = os.lstat(os.path.join(root, n))
            except FileNotFoundError:
                continue
            files += 1
            total += st.st_size
    return files, total


def snapshot(d):
    out = {}
    for root, _dirs, names in os.walk(d):
        for n in names:
            try:
                st = os.lstat(os.path.join(root, n))
            except FileNotFoundError:
                continue
            out[(st.st_dev, st.st_ino)] = st.st_size
    return out


def watch(d, seconds):
    stop = False

    def on_signal(_sig, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    base = snapshot(d)  # files there before the window: only their growth counts
    live = {}  # inode -> object number, for objects that appeared during the window
    written = {}  # object number (or ("grown", inode)) -> bytes
    objects = 0
    start = time.monotonic()
    while not stop and not (seconds and time.monotonic() - start >= seconds):
        time.sleep(0.05)
        now = snapshot(d)
        for k, sz in now.items():
            if k in live:
                written[live[k]] = max(written[live[k]], sz)
            elif k in base:
                if sz > base[k]:
                    written[("grown", k)] = sz - base[k]
            else:  # a new file, or an inode that had gone and came back
                objects += 1
                live[k] = objects
                written[objects] = sz
        for k in [k for k in live if k not in now]:
            del live[k]
        for k in [k for k in base if k not in now]:
            del base[k]
    print(objects, sum(written.values()), flush=True)


def loss(db, acklog, rate):
    acks = []
    with open(acklog) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and line.endswith("\n"):
                acks.append((int(parts[0]), float(parts[1])))
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    count, top = c.execute("SELECT count(*), coalesce(max(id), 0) FROM bookings").fetchone()
    gap = int(count != top)
    if not acks:
        print(0, 0.0, gap, top, 0)
        return
    last_id, last_t = acks[-1]
    first_id, first_t = acks[0]
    lost = max(0, last_id - top)
    if lost == 0:
        secs = 0.0
    elif top >= first_id:
        secs = last_t - acks[top - first_id][1]
    else:  # nothing of this run's commits came back
        secs = last_t - first_t + (1.0 / rate if rate else 0.0)
    print(lost, f"{secs:.3f}", gap, top, last_id)


def proc(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    print(f"{cpu:.2f}", hwm)


def stats(nums):
    xs = [float(x) for x in nums]
    if not xs:
        print("- -")
    else:
        print(f"{statistics.median(xs):.3f} {max(xs):.3f}")


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "size":
        print(*size(a[1]))
    elif cmd == "watch":
        watch(a[1], float(a[a.index("--seconds") + 1]) if "--seconds" in a else 0.0)
    elif cmd == "loss":
        loss(a[1], a[2], float(a[3]) if len(a) > 3 else 0.0)
    elif cmd == "proc":
        proc(a[1])
    elif cmd == "stats":
        stats(a[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
