#!/usr/bin/env python3
"""Soak test: the release agent against the simulator (its own process) with 1,000 mailboxes
and a moving mix of faults (secrets refused, Graph throttling and 500s, consent revoked, SMTP
AUTH off), on a compressed schedule, for a given time. Prometheus-like scrapes every 15 s, a
configuration reload every 5 minutes, and every minute a sample of the agent's RSS and open file
descriptors. After the warm-up, it fails if either grows beyond its bound, if a scrape fails, or
if the agent dies. Prints the samples and writes them to bench/results/soak-<time>.md.

    scripts/soak.sh                         # one hour
    scripts/soak.sh --duration 600          # ten minutes
"""

import argparse
import datetime
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from procs import ROOT, BIN, free_port, rss_mib, open_fds


def wait_for(path, pattern, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{path.name}: exited early:\n{path.read_text()[-3000:]}")
        text = path.read_text() if path.exists() else ""
        m = re.search(pattern, text)
        if m:
            return m
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {pattern!r} in {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=3600, help="seconds (default one hour)")
    ap.add_argument("--mailboxes", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=None, help="seconds (default a sixth, at most 10 minutes)")
    ap.add_argument("--rss-growth", type=float, default=0.15, help="allowed RSS growth after warm-up, as a share (default 0.15)")
    ap.add_argument("--rss-slack", type=float, default=8.0, help="and in MiB at least (default 8)")
    ap.add_argument("--fd-slack", type=int, default=40, help="allowed growth of open files after warm-up")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    warmup = args.warmup if args.warmup is not None else min(600, args.duration // 6)

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    work = ROOT / "target" / "soak"
    work.mkdir(parents=True, exist_ok=True)
    sim_log, agent_log = work / "simulator.log", work / "agent.log"
    sim = subprocess.Popen(
        [BIN, "simulate", "--mailboxes", str(args.mailboxes), "--config-out", str(work / "config"),
         "--smtp-schedule", "30s", "--token-schedule", "30s", "--graph-schedule", "2m",
         "--startup-spread", "20s", "--faults-every", "60s"],
        stdout=open(sim_log, "w"), stderr=subprocess.STDOUT)
    wait_for(sim_log, r"simulator ready", sim)
    port = free_port()
    agent = subprocess.Popen(
        [BIN, "--config.file", str(work / "config" / "agent.yml"), "--web.listen-address",
         f"127.0.0.1:{port}", "--web.enable-lifecycle", "--log.level", "warn"],
        stdout=open(agent_log, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    samples, failures = [], []
    scrapes = reloads = 0
    start = time.time()
    next_scrape = next_sample = start
    next_reload = start + 300
    try:
        while time.time() - start < args.duration:
            now = time.time()
            if agent.poll() is not None:
                failures.append(f"the agent exited with {agent.returncode}")
                break
            if now >= next_scrape:
                next_scrape += 15
                try:
                    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
                        body = r.read()
                        if r.status != 200 or b"smtp_oauth_verdict" not in body:
                            failures.append(f"scrape at {now - start:.0f}s: HTTP {r.status}")
                    scrapes += 1
                except Exception as e:  # noqa: BLE001 - any scrape failure fails the soak
                    if time.time() - start > 5:
                        failures.append(f"scrape at {now - start:.0f}s: {e}")
            if now >= next_reload:
                next_reload += 300
                req = urllib.request.Request(base + "/-/reload", method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        reloads += r.status == 200
                except Exception as e:  # noqa: BLE001
                    failures.append(f"reload at {now - start:.0f}s: {e}")
            if now >= next_sample:
                next_sample += 60
                s = (now - start, rss_mib(agent.pid), open_fds(agent.pid))
                samples.append(s)
                print(f"{s[0]:6.0f}s  RSS {s[1]:7.1f} MiB  fds {s[2]:5d}", flush=True)
            time.sleep(0.5)
    finally:
        for p in (agent, sim):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()

    warm = [s for s in samples if s[0] >= warmup]
    verdict = []
    if len(warm) >= 2:
        first_rss = statistics.median(s[1] for s in warm[:3])
        last_rss = statistics.median(s[1] for s in warm[-3:])
        max_rss = max(s[1] for s in warm)
        rss_bound = first_rss + max(first_rss * args.rss_growth, args.rss_slack)
        first_fd, last_fd = warm[0][2], warm[-1][2]
        max_fd = max(s[2] for s in warm)
        fd_bound = first_fd + args.fd_slack
        verdict.append(f"RSS after warm-up {first_rss:.1f} MiB, at the end {last_rss:.1f} MiB, highest {max_rss:.1f} MiB (bound {rss_bound:.1f})")
        verdict.append(f"open files after warm-up {first_fd}, at the end {last_fd}, highest {max_fd} (bound {fd_bound})")
        if last_rss > rss_bound:
            failures.append(f"RSS grew from {first_rss:.1f} to {last_rss:.1f} MiB (bound {rss_bound:.1f})")
        if max_fd > fd_bound:
            failures.append(f"open files grew from {first_fd} to {max_fd} (bound {fd_bound})")
    else:
        failures.append("too few samples after the warm-up to judge growth")
    verdict.append(f"{scrapes} scrapes, {reloads} reloads, {len(samples)} samples over {args.duration} s, {args.mailboxes} mailboxes")

    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"soak-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.md"
    lines = ["| seconds | RSS MiB | open files |", "|---|---|---|"]
    lines += [f"| {s[0]:.0f} | {s[1]:.1f} | {s[2]} |" for s in samples]
    report = "\n".join(["# Soak", "", *[f"- {v}" for v in verdict],
                        *[f"- FAILED: {f}" for f in failures], "", *lines, ""])
    out.write_text(report)
    print("\n".join(verdict))
    print(f"written to {out.relative_to(ROOT)}")
    if failures:
        print("\n".join(f"FAILED: {f}" for f in failures[:20]))
        sys.exit(1)
    print("soak passed")


if __name__ == "__main__":
    main()
