"""What the benchmark scripts share: where the release binary is, a free loopback port, a
process's CPU time, resident memory and open files from /proc (Linux), reading series off a
Prometheus page, and waiting for a condition."""

import os
import pathlib
import re
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "smtp-oauth-exporter"
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User plus system CPU time of a process, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def series(text, name):
    """(labels dict, value) of every sample of a metric."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        labels = dict(re.findall(r'([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.append((labels, float(m.group(4))))
    return out


def total(text, name, **want):
    """The sum of a metric's samples whose labels have the given values."""
    return sum(v for l, v in series(text, name) if all(l.get(k) == x for k, x in want.items()))


def wait_for(what, predicate, limit, every=1.0):
    """The predicate's first true value, polled every `every` seconds; exits after `limit`."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() - start > limit:
            sys.exit(f"timed out after {limit}s waiting for {what}")
        time.sleep(every)


def stop(*procs):
    """Ends processes started for a benchmark: SIGTERM, then SIGKILL after 10 s."""
    for p in procs:
        if p:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
