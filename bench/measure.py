#!/usr/bin/env python3
"""Runs a shell command and prints "<wall seconds> <peak RSS KiB>" on stdout.

Peak RSS is ru_maxrss from wait4(), the largest resident set of the command or any of its
waited-for descendants (so a pipeline reports its biggest stage).

With --io it prints "<wall seconds> <peak RSS KiB> <read() bytes> <write() bytes> <disk
read bytes> <CPU seconds>" instead, for the command and its waited-for descendants: the
bytes passed through read() and write() calls (rchar and wchar: files, whether the page
cache holds them or not, and sockets read or written with read() and write()), the bytes
read from the block device (read_bytes: what the page cache did not hold), and the user +
system CPU time. Linux adds a reaped child's I/O counts to its parent's, so the difference
in this process's /proc/self/io across the wait is the command's.
"""
import os
import subprocess
import sys
import time


def io_counts():
    with open("/proc/self/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["rchar"]), int(fields["wchar"]), int(fields["read_bytes"])


cmd = sys.argv[1]
io = "--io" in sys.argv
if io:
    before = io_counts()
t = time.monotonic()
p = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.DEVNULL if "--quiet" in sys.argv else None)
_, status, ru = os.wait4(p.pid, 0)
dt = time.monotonic() - t
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.stderr.write(f"command failed ({code}): {cmd}\n")
    sys.exit(code)
if io:
    r, w, d = (b - a for a, b in zip(before, io_counts()))
    print(f"{dt:.3f} {ru.ru_maxrss} {r} {w} {d} {ru.ru_utime + ru.ru_stime:.2f}")
else:
    print(f"{dt:.3f} {ru.ru_maxrss}")
