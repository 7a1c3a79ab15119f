#!/usr/bin/env python3
"""Where the CPU went in one livebench run: per process (kernel threads included, e.g. the
threaded NAPI's napi/r0-ID), % of one CPU, from the run folder's /proc snapshots.
Usage: lbtop.py RUN_DIR [N]  (RUN_DIR: livebench's raw files folder, e.g. .../run.XXXX/1)"""
import sys

HZ = 100


def parse(text):
    out = {}
    for line in text.splitlines():
        try:
            f = line[line.rindex(")") + 2:].split()
            comm = line[line.index("(") + 1:line.rindex(")")]
            # utime, stime; processor (field 39) is f[36]
            out[int(line.split()[0])] = (comm, int(f[11]) + int(f[12]), f[36])
        except (ValueError, IndexError):
            pass
    return out


d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 12
t0, t1 = (float(open(f"{d}/t{i}").read()) for i in (0, 1))
p0, p1 = (parse(open(f"{d}/procs{i}").read()) for i in (0, 1))
rows = []
for pid, (comm, ticks, cpu) in p1.items():
    old = p0.get(pid)
    dt = ticks - (old[1] if old and old[0] == comm else 0)
    if dt > 0:
        rows.append((100 * dt / HZ / (t1 - t0), pid, comm, cpu))
for pct, pid, comm, cpu in sorted(rows, reverse=True)[:n]:
    print(f"{pct:6.1f}%  pid {pid:<7} last on cpu{cpu}  {comm}")
