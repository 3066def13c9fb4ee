#!/usr/bin/env python3
"""Scale benchmark: the agent alone in its own process against the simulator in another, for
N mailboxes over N/10 apps (default 100, 1,000 and 10,000), or for fleet shapes (--shapes: one
app of 10,000 mailboxes, 1,000 apps of 10, 10,000 apps of one, each app in its own tenant with
service health read, a delivery canary on 1 % of the mailboxes), on a compressed schedule.

Per N it waits for the first round of every check (Graph's too), then measures a window: CPU per check run, CPU as a share
of one core at the real 5-minute schedule, RSS after warm-up and at its highest, open file
descriptors, /metrics render time and size (a scrape every 15 s, as Prometheus does), how late
runs start (p50/p99 from the agent's own histogram) and token requests beyond the token check.
It prints a table and writes it to bench/results/scale-<time>.md.

    bench/scale.py                      # 100, 1,000, 10,000 mailboxes; about 20 minutes
    bench/scale.py --sizes 10000 --window 300
    bench/scale.py --shapes 1x10000,1000x10,10000x1   # each at 10,000 and at 1,000 mailboxes,
                                                      # with the growth exponent; about an hour

In shape mode each shape runs at its size and at a tenth of it (the larger factor divided by
ten: 1x1000, 100x10, 1000x1), and the table gives each figure's growth exponent between the two
(log of the ratio over log 10: 1 is linear). It also times the first round (every check kind's
first run done) against scheduler.startup_spread.
"""

import argparse
import datetime
import json
import re
import ssl
import statistics
import subprocess
import time
import urllib.request
from procs import ROOT, BIN, free_port, cpu_seconds, rss_mib, open_fds, series, stop, total, wait_for

REAL_SCHEDULE = 300.0  # seconds: the default SMTP and token schedule


def build():
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)


def get(url, context=None, timeout=30):
    start = time.monotonic()
    with urllib.request.urlopen(url, context=context, timeout=timeout) as r:
        body = r.read()
    return body, time.monotonic() - start


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


def run_size(n, args, workdir, per_app=10, shape=False):
    name = f"{(n + per_app - 1) // per_app}x{per_app}"
    simdir = workdir / f"sim-{name}"
    simlog = open(workdir / f"sim-{name}.log", "w")
    extra = []
    if shape:
        extra = [
            "--tenant-per-app", "--canary-percent", "1", "--canary-schedule", args.canary_schedule,
            "--health-schedule", args.schedule,
        ]
    sim = subprocess.Popen(
        [
            str(BIN), "simulate", "--mailboxes", str(n), "--per-app", str(per_app),
            "--config-out", str(simdir),
            "--smtp-schedule", args.schedule, "--token-schedule", args.schedule,
            "--startup-spread", args.spread, "--max-concurrent-checks", "200",
            "--traffic-share", str(args.traffic_share), "--traffic-schedule", args.schedule,
            "--log.level", "warn", *extra,
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
        started = time.monotonic()
        started_wall = time.time()
        agent = subprocess.Popen(
            [str(BIN), "--config.file", str(config), "--web.listen-address",
             f"127.0.0.1:{port}", "--log.level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / f"agent-{name}.log", "w"),
        )
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        apps = (n + per_app - 1) // per_app
        canaries = len(re.findall(r"canary: \{", config.read_text())) if shape else 0

        def page():
            try:
                return get(metrics_url)[0].decode()
            except OSError:
                return ""

        # Warm-up: the first round of every check, Graph's included, so the page measured is
        # the steady state's. The agent spreads a tenant's first Graph reads at one a second
        # (Graph's per-tenant limit), so with N/10 apps in one tenant that round takes N/10 s.
        seen = {}

        def first_round_done():
            t = seen["text"] = page()
            return (total(t, "smtp_oauth_scheduler_runs_total", check="smtp") >= n
                    and total(t, "smtp_oauth_scheduler_runs_total", check="token") >= apps
                    and total(t, "smtp_oauth_scheduler_runs_total", check="graph") >= apps
                    and total(t, "smtp_oauth_scheduler_runs_total", check="health") >= (apps if shape else 0)
                    and total(t, "smtp_oauth_scheduler_runs_total", check="canary") >= canaries)

        wait_for("the first round", first_round_done, 600 + apps * 2)
        # When the first round ended, from the agent's own page: the latest end of a run (start
        # plus duration), from the agent's start. Polling a 27 MB page takes a second or two, so
        # the time the bench noticed is later; it stays the bound when the page has no runs.
        noticed = time.monotonic() - started
        first_round = min(noticed, last_run_end(seen["text"]) - started_wall)
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
            "shape": name,
            "first_round_s": first_round,
            "verdicts": total(text, "smtp_oauth_verdict_evaluations_total"),
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
        stop(agent, sim)


def last_run_end(text):
    """The latest end (start plus duration) of a run on the page, in Unix seconds."""
    took = {tuple(sorted(l.items())): v for l, v in series(text, "smtp_oauth_check_duration_seconds")}
    ends = [v + took.get(tuple(sorted(l.items())), 0.0)
            for l, v in series(text, "smtp_oauth_check_last_run_timestamp_seconds")]
    return max(ends, default=float("inf"))


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


def shape_table(pairs, args):
    """Each shape at a tenth of its size and at its size, with the growth exponents."""
    import math

    head = (
        "| shape | mailboxes | CPU per check | CPU at 5 min | RSS max | scrape time | scrape size "
        "| start delay p50 / p99 | token requests per app beyond the check | first round | verdicts computed |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines, growth = [], []
    for small, big in pairs:
        for r in (small, big):
            lines.append(
                f"| {r['shape']} | {r['mailboxes']:,} | {r['cpu_per_check_ms']:.2f} ms | {r['cpu_share_at_5m']:.2f} % "
                f"| {r['rss_max']:.1f} MiB | {r['scrape_ms']:.1f} ms | {r['scrape_mb']:.2f} MB "
                f"| {r['slip_p50'] or 0:.3f} s / {r['slip_p99'] or 0:.3f} s | {r['extra_tokens_per_app']:.2f} "
                f"| {r['first_round_s']:.1f} s (spread {args.spread}) | {r['verdicts']:,.0f} |"
            )
        k = math.log(big["mailboxes"] / small["mailboxes"])

        def exp(key):
            a, b = small[key], big[key]
            return math.log(b / a) / k if a > 0 and b > 0 else float("nan")

        growth.append(
            f"- {small['shape']} → {big['shape']}: growth exponents CPU at 5 min {exp('cpu_share_at_5m'):.2f}, "
            f"RSS {exp('rss_max'):.2f}, scrape time {exp('scrape_ms'):.2f}, scrape size {exp('scrape_mb'):.2f}, "
            f"verdicts computed {exp('verdicts'):.2f}"
        )
    note = (
        f"Each app in a tenant of its own with service health read, a canary on 1 % of the mailboxes "
        f"(every {args.canary_schedule}); SMTP, token and health every {args.schedule} (compressed from 5m; CPU at 5 min "
        f"scales the measured share by {parse_seconds(args.schedule)}/300), Graph every 6h, window {args.window}s "
        f"after the first round, a scrape every 15 s. Growth exponent: log(figure at N / figure at N/10) / log 10.\n"
    )
    return head + "\n".join(lines) + "\n\n" + "\n".join(growth) + "\n\n" + note


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--shapes", help="APPSxMAILBOXES,... (such as 1x10000,1000x10,10000x1)")
    ap.add_argument("--canary-schedule", default="3m", help="the canaries' schedule in shape mode")
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
    if args.shapes:
        pairs = []
        for shape in args.shapes.split(","):
            apps, per_app = (int(x) for x in shape.lower().split("x"))
            # A tenth of the fleet: the larger factor divided by ten.
            small = (apps // 10, per_app) if apps >= per_app else (apps, per_app // 10)
            pair = []
            for a, m in (small, (apps, per_app)):
                print(f"== {a}x{m}", flush=True)
                pair.append(run_size(a * m, args, workdir, per_app=m, shape=True))
                print(json.dumps(pair[-1]), flush=True)
            pairs.append(pair)
        out = shape_table(pairs, args)
        stamp = "shapes-" + stamp
    else:
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
