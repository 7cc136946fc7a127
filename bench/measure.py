#!/usr/bin/env python3
"""Runs a shell command and prints "<wall seconds> <peak RSS KiB>" on stdout.

Peak RSS is ru_maxrss from wait4(), the largest resident set of the command or any of its
waited-for descendants (so a pipeline reports its biggest stage).
"""
import os
import subprocess
import sys
import time

cmd = sys.argv[1]
t = time.monotonic()
p = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.DEVNULL if "--quiet" in sys.argv else None)
_, status, ru = os.wait4(p.pid, 0)
dt = time.monotonic() - t
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.stderr.write(f"command failed ({code}): {cmd}\n")
    sys.exit(code)
print(f"{dt:.3f} {ru.ru_maxrss}")
