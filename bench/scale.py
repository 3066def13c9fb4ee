#!/usr/bin/env python3
"""Scale benchmark: the agent alone in its own process against the simulator in another, for
N mailboxes over N/10 apps (default 100, 1,000 and 10,000), on a compressed schedule.

Per N it waits for the first round of every check (Graph's too), then measures a window: CPU per check run, CPU as a share
of one core at the real 5-minute schedule, RSS after warm-up and at its highest, open file
descriptors, /metrics render time and size (a scrape every 15 s, as Prometheus does), how late
runs start (p50/p99 from the agent's own histogram) and token requests beyond the token check.
It prints a table and writes it to bench/results/scale-<time>.md.

    bench/scale.py                      # 100, 1,000, 10,000 mailboxes; about 20 minutes
    bench/scale.py --sizes 10000 --window 300
"""

import argparse
import datetime
import json
import re
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from procs import ROOT, BIN, free_port, cpu_seconds, rss_mib, open_fds

REAL_SCHEDULE = 300.0  # seconds: the default SMTP and token schedule


def build():
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)


def get(url, context=None, timeout=30):
    start = time.monotonic()
    with urllib.request.urlopen(url, context=context, timeout=timeout) as r:
        body = r.read()
    return body, time.monotonic() - start


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
    return sum(v for l, v in series(text, name) if all(l.get(k) == x for k, x in want.items()))


def quantile(text, name, q, **want):
    """histogram_quantile over one histogram's cumulative buckets."""
    buckets = sorted(
        (float("inf") if l["le"] == "+Inf" else float(l["le"]), v)
        for l, v in series(text, name + "_bucket")
        if all(l.get(k) == x for k, x in want.items())
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def wait_for(what, predicate, limit):
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() - start > limit:
            sys.exit(f"timed out after {limit}s waiting for {what}")
        time.sleep(1)


def run_size(n, args, workdir):
    simdir = workdir / f"sim-{n}"
    simlog = open(workdir / f"sim-{n}.log", "w")
    sim = subprocess.Popen(
        [
            str(BIN), "simulate", "--mailboxes", str(n), "--config-out", str(simdir),
            "--smtp-schedule", args.schedule, "--token-schedule", args.schedule,
            "--startup-spread", args.spread, "--max-concurrent-checks", "200",
            "--traffic-share", str(args.traffic_share), "--traffic-schedule", args.schedule,
            "--log.level", "warn",
        ],
        stdout=simlog, stderr=subprocess.STDOUT,
    )
    agent = None
    try:
        config = simdir / "agent.yml"
        wait_for("the simulator", lambda: config.exists(), 60)
        time.sleep(0.5)
        ca = ssl.create_default_context(cafile=str(simdir / "simulator-ca.pem"))
        https = re.search(r"https://127\.0\.0\.1:\d+", config.read_text()).group(0)
        port = free_port()
        agent = subprocess.Popen(
            [str(BIN), "--config.file", str(config), "--web.listen-address",
             f"127.0.0.1:{port}", "--log.level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / f"agent-{n}.log", "w"),
        )
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        apps = (n + 9) // 10

        def page():
            try:
                return get(metrics_url)[0].decode()
            except OSError:
                return ""

        # Warm-up: the first round of every check, Graph's included, so the page measured is
        # the steady state's. The agent spreads the first Graph reads at two a second (Graph's
        # per-tenant limit), so that round takes N/20 seconds.
        wait_for(
            "the first round",
            lambda: (lambda t: total(t, "smtp_oauth_scheduler_runs_total", check="smtp") >= n
                     and total(t, "smtp_oauth_scheduler_runs_total", check="token") >= apps
                     and total(t, "smtp_oauth_scheduler_runs_total", check="graph") >= apps)(page()),
            600 + apps // 2,
        )
        time.sleep(2)
        text = page()
        runs0 = total(text, "smtp_oauth_scheduler_runs_total")
        cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
        rss_warm = rss_mib(agent.pid)
        rss_max = rss_warm
        scrapes = []
        while time.monotonic() - t0 < args.window:
            time.sleep(15)
            body, took = get(metrics_url)
            scrapes.append((took, len(body)))
            rss_max = max(rss_max, rss_mib(agent.pid))
        cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
        text = page()
        runs1 = total(text, "smtp_oauth_scheduler_runs_total")
        rss_end = rss_mib(agent.pid)
        rss_max = max(rss_max, rss_end)
        fds = open_fds(agent.pid)
        failures = total(text, "smtp_oauth_scheduler_runs_total", result="failure")
        stats = json.loads(get(f"{https}/sim/stats", context=ca)[0])
        token_checks = total(text, "smtp_oauth_scheduler_runs_total", check="token")
        exchange = stats["token_requests_by_resource"].get("exchange", 0)
        checks = max(runs1 - runs0, 1)
        cpu = cpu1 - cpu0
        share_at_5m = cpu / (t1 - t0) * (parse_seconds(args.schedule) / REAL_SCHEDULE)
        return {
            "mailboxes": n,
            "apps": apps,
            "checks": int(checks),
            "failures": int(failures),
            "cpu_per_check_ms": 1000 * cpu / checks,
            "cpu_share_at_5m": 100 * share_at_5m,
            "rss_warm": rss_warm,
            "rss_max": rss_max,
            "fds": fds,
            "scrape_ms": 1000 * statistics.median(s[0] for s in scrapes),
            "scrape_mb": statistics.median(s[1] for s in scrapes) / 1e6,
            "slip_p50": quantile(text, "smtp_oauth_scheduler_delay_seconds", 0.5, check="smtp"),
            "slip_p99": quantile(text, "smtp_oauth_scheduler_delay_seconds", 0.99, check="smtp"),
            "extra_tokens_per_app": (exchange - token_checks) / apps,
            "traffic_reads": int(total(text, "smtp_oauth_scheduler_runs_total", check="traffic")),
            "traffic_failures": int(total(text, "smtp_oauth_scheduler_runs_total", check="traffic", result="failure")),
        }
    finally:
        for p in (agent, sim):
            if p:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def parse_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    return int(m.group(1)) * units[m.group(2)]


def table(rows, args):
    head = (
        "| mailboxes | apps | check runs | CPU per check | CPU at 5 min | RSS warm | RSS max | fds "
        "| scrape time | scrape size | start delay p50 / p99 | extra token requests per app |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        lines.append(
            f"| {r['mailboxes']:,} | {r['apps']:,} | {r['checks']:,} | {r['cpu_per_check_ms']:.2f} ms "
            f"| {r['cpu_share_at_5m']:.2f} % | {r['rss_warm']:.1f} MiB | {r['rss_max']:.1f} MiB "
            f"| {r['fds']} | {r['scrape_ms']:.1f} ms | {r['scrape_mb']:.2f} MB "
            f"| {r['slip_p50'] or 0:.3f} s / {r['slip_p99'] or 0:.3f} s | {r['extra_tokens_per_app']:.2f} |"
        )
    growth = []
    for a, b in zip(rows, rows[1:]):
        k = b["mailboxes"] / a["mailboxes"]
        growth.append(
            f"- {a['mailboxes']:,} → {b['mailboxes']:,} mailboxes (×{k:g}): RSS ×{b['rss_max'] / a['rss_max']:.2f}, "
            f"scrape size ×{b['scrape_mb'] / a['scrape_mb']:.1f}, scrape time ×{b['scrape_ms'] / a['scrape_ms']:.1f}, "
            f"CPU per check ×{b['cpu_per_check_ms'] / a['cpu_per_check_ms']:.2f}"
        )
    note = (
        f"Schedule {args.schedule} for SMTP and token checks (compressed from 5m; CPU at 5 min scales "
        f"the measured share by {parse_seconds(args.schedule)}/300), Graph every 6h, window "
        f"{args.window}s after the first round, a scrape every 15 s; message trace read for "
        f"{100 * args.traffic_share:g} % of the mailboxes at the SMTP schedule "
        f"({', '.join(str(r['traffic_reads']) + ' reads, ' + str(r['traffic_failures']) + ' failed' for r in rows)}).\n"
    )
    return head + "\n".join(lines) + "\n\n" + "\n".join(growth) + ("\n\n" if growth else "\n") + note


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--window", type=int, default=120, help="seconds measured after warm-up")
    ap.add_argument("--schedule", default="60s", help="SMTP and token schedule (compressed)")
    ap.add_argument("--spread", default="30s", help="scheduler.startup_spread")
    ap.add_argument("--traffic-share", type=float, default=0.01,
                    help="share of the mailboxes whose traffic is watched (message trace)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        build()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    workdir = ROOT / "target" / "bench" / f"scale-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        print(f"== {n} mailboxes", flush=True)
        rows.append(run_size(n, args, workdir))
        print(json.dumps(rows[-1]), flush=True)
    out = table(rows, args)
    print(out)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"scale-{stamp}.md"
    path.write_text(f"# Scale benchmark, {stamp} UTC\n\n" + out)
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
