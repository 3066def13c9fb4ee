#!/usr/bin/env python3
"""Side by side with blackbox_exporter (Debian's prometheus-blackbox-exporter, installed here when
missing): against one STARTTLS server with XOAUTH2 (the simulator, in its own process),
blackbox's tcp module scripted for banner, EHLO, STARTTLS, TLS, EHLO, QUIT, and our /probe of a
full SMTP check (the same, plus AUTH XOAUTH2 with a cached token, MAIL FROM and RSET). Probes
alternate between the two in one run, sequentially and then 20 at a time; per exporter: CPU per
probe of its process, p50/p99 latency, idle and loaded RSS, and the ratio. Our probes go round
20 mailboxes with `probe.freshness: 0s` and no rate limit, so that every probe runs a full check
(by default the agent answers a probe from a recent run, and shares one run among concurrent
probes of a target). Then the same agent runs the 20 mailboxes' SMTP checks on a schedule (every
2 s) and the CPU per scheduled check is measured over a window. The floor is a bare connect,
STARTTLS and TLS handshake from this script. Prints a table and writes it to
bench/results/blackbox-<time>.md.

    bench/blackbox.py                  # 400 probes each, sequential and at concurrency 20
    bench/blackbox.py --probes 2000
    bench/blackbox.py --profile        # and the agent's top sites under perf (needs perf)
"""

import argparse
import concurrent.futures
import itertools
import datetime
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from procs import ROOT, BIN, free_port, cpu_seconds, rss_mib, total, wait_for

# Mailboxes our probes go round (one app): every probe a separate target.
MAILBOXES = 20


def as_root(cmd):
    return cmd if os.geteuid() == 0 else ["sudo"] + cmd


def blackbox_binary():
    for name in ("prometheus-blackbox-exporter", "blackbox_exporter"):
        path = shutil.which(name)
        if path:
            return path
    print("== installing prometheus-blackbox-exporter (Debian package)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(as_root(["apt-get", "update", "-qq"]), check=True, env=env)
    subprocess.run(
        as_root(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                 "prometheus-blackbox-exporter"]),
        check=True, env=env, stdout=subprocess.DEVNULL,
    )
    # The package may start its own service; this benchmark runs its own instance.
    subprocess.run(as_root(["pkill", "-f", "prometheus-blackbox-exporter --"]), check=False)
    return shutil.which("prometheus-blackbox-exporter")


def wait_port(port, limit=30):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"nothing listens on {port}")


def probe(url):
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read().decode()
    took = time.monotonic() - start
    ok = re.search(r"^probe_success (\S+)$", body, re.M)
    if not ok or float(ok.group(1)) != 1.0:
        sys.exit(f"probe failed: {url}\n{body}")
    return took


def floor(host, port, ca):
    """Connect, banner, EHLO, STARTTLS, TLS handshake, QUIT: what any STARTTLS probe must do."""
    ctx = ssl.create_default_context(cafile=ca)
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as s:
        f = s.makefile("rb")

        def reply():
            while True:
                line = f.readline()
                if len(line) < 4 or line[3:4] == b" ":
                    return line

        reply()
        s.sendall(b"EHLO bench.localhost\r\n")
        reply()
        s.sendall(b"STARTTLS\r\n")
        reply()
        with ctx.wrap_socket(s, server_hostname=host) as t:
            t.sendall(b"QUIT\r\n")
            t.recv(512)
    return time.monotonic() - start


def measure(name, pid, urls, concurrency):
    """Runs the probes; returns CPU per probe (ms) of the exporter's process and latencies."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    if concurrency == 1:
        lat = [u() for u in urls]
    else:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            lat = list(pool.map(lambda u: u(), urls))
    cpu = (cpu_seconds(pid) - cpu0) if pid else 0.0
    return {"name": name, "cpu_ms": 1000 * cpu / len(urls), "lat": lat}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# Where a sample's symbol belongs, first match wins.
CATEGORIES = [
    ("kernel (loopback TCP, epoll, wake-ups)", lambda dso, sym: dso.startswith("[kernel")),
    ("TLS crypto (ring)", lambda dso, sym: "ring_core" in sym or sym.startswith(("ring::", "fe4_", "fe_", "x25519"))),
    ("certificate parsing (x509-parser, nom)", lambda dso, sym: any(k in sym for k in ("nom::", "x509", "der_parser", "asn1"))),
    ("formatting (fmt)", lambda dso, sym: "fmt::" in sym or "format_inner" in sym),
    ("TLS protocol (rustls)", lambda dso, sym: "rustls" in sym),
    ("allocator and memcpy", lambda dso, sym: any(k in sym for k in ("malloc", "free", "realloc", "memmove", "memcpy", "memset", "_int_"))),
    ("tokio runtime", lambda dso, sym: "tokio" in sym),
    ("HTTP (hyper, reqwest)", lambda dso, sym: "hyper" in sym or "reqwest" in sym),
    ("the agent's own code", lambda dso, sym: "smtp_oauth_exporter" in sym),
]


def profile_probes(pid, fn, n, work):
    """The agent's CPU by category and its top symbols (perf samples at 2 kHz, self time) over
    n sequential probes."""
    data = work / "perf.data"
    rec = subprocess.Popen(["perf", "record", "-F", "2000", "-p", str(pid), "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    for _ in range(n):
        fn()
    rec.send_signal(2)
    rec.wait(30)
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,symbol", "-q"],
        capture_output=True, text=True, check=True,
    ).stdout
    by_cat, top = {}, []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*?)\s*$", line)
        if not m:
            continue
        # The symbol, without perf's padding and trailing columns, nor Rust's hash suffix.
        sym = re.sub(r"::h[0-9a-f]{16}$", "", re.split(r"\s{2,}", m.group(3))[0])
        pct, dso = float(m.group(1)), m.group(2)
        cat = next((c for c, f in CATEGORIES if f(dso, sym)), "other")
        by_cat[cat] = by_cat.get(cat, 0.0) + pct
        if len(top) < 10:
            top.append(f"| {pct:.1f} % | {dso} | `{sym[:100]}` |")
    cats = "\n".join(f"| {c} | {p:.1f} % |" for c, p in sorted(by_cat.items(), key=lambda x: -x[1]))
    return (
        f"\nWhere the agent's CPU goes over {n} sequential probes (perf, self time):\n\n"
        "| category | share |\n|---|---:|\n" + cats + "\n\nTop symbols:\n\n"
        "| share | object | symbol |\n|---:|---|---|\n" + "\n".join(top) + "\n"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probes", type=int, default=400, help="probes per exporter and mode")
    ap.add_argument("--window", type=int, default=60, help="seconds the scheduled checks are measured")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--profile", action="store_true",
                    help="also sample the agent with perf during sequential probes and list its top sites")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    blackbox = blackbox_binary()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    work = ROOT / "target" / "bench" / f"blackbox-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        simdir = work / "sim"
        procs.append(subprocess.Popen(
            [str(BIN), "simulate", "--mailboxes", str(MAILBOXES), "--per-app", str(MAILBOXES),
             "--no-schedule", "--config-out", str(simdir), "--log.level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(work / "sim.log", "w"),
        ))
        config = simdir / "agent.yml"
        for _ in range(100):
            if config.exists():
                break
            time.sleep(0.2)
        time.sleep(0.5)
        text = config.read_text()
        smtp_port = int(re.search(r"smtp_port: (\d+)", text).group(1))
        ca = str(simdir / "simulator-ca.pem")
        # Every probe a full check: no answer from a recent run, no rate limit.
        config.write_text(text + "probe: { freshness: 0s, rate_limit: 0, client_rate_limit: 0 }\n")
        # The scheduled variant: the same mailboxes' SMTP checks every 2 s.
        scheduled = work / "scheduled.yml"
        scheduled.write_text(
            text.replace("smtp: { enabled: false, schedule: 5m }", "smtp: { enabled: true, schedule: 2s }")
            .replace("token: { enabled: false", "token: { enabled: true")
        )

        ours_port = free_port()
        ours = subprocess.Popen(
            [str(BIN), "--config.file", str(config), "--web.listen-address",
             f"127.0.0.1:{ours_port}", "--log.level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(work / "agent.log", "w"),
        )
        procs.append(ours)
        bb_config = work / "blackbox.yml"
        bb_config.write_text(f"""modules:
  smtp_starttls:
    prober: tcp
    timeout: 10s
    tcp:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: {ca}
      query_response:
        - expect: "^220 "
        - send: "EHLO bench.localhost"
        - expect: "^250 "
        - send: "STARTTLS"
        - expect: "^220 "
        - starttls: true
        - send: "EHLO bench.localhost"
        - expect: "^250 "
        - send: "QUIT"
        - expect: "^221 "
""")
        bb_port = free_port()
        bb = subprocess.Popen(
            [blackbox, f"--config.file={bb_config}", f"--web.listen-address=127.0.0.1:{bb_port}"],
            stdout=subprocess.DEVNULL, stderr=open(work / "blackbox.log", "w"),
        )
        procs.append(bb)
        wait_port(ours_port)
        wait_port(bb_port)
        time.sleep(1)
        bb_url = f"http://127.0.0.1:{bb_port}/probe?module=smtp_starttls&target=127.0.0.1:{smtp_port}"
        ours_urls = [f"http://127.0.0.1:{ours_port}/probe?target=mb-0-{i}" for i in range(MAILBOXES)]
        turn = itertools.count()

        def ours_probe():
            return probe(ours_urls[next(turn) % MAILBOXES])

        # One probe each first (our token is fetched and cached, as in steady state).
        ours_probe()
        probe(bb_url)
        idle = {"blackbox": rss_mib(bb.pid), "ours": rss_mib(ours.pid)}
        n = args.probes
        results = {}
        for conc in (1, 20):
            # Alternate in rounds so that both meet the same machine state.
            acc = {"blackbox": {"cpu": 0.0, "lat": []}, "ours": {"cpu": 0.0, "lat": []},
                   "floor": {"cpu": 0.0, "lat": []}}
            rounds = 4
            for _ in range(rounds):
                for name, pid, fn in (
                    ("blackbox", bb.pid, lambda: probe(bb_url)),
                    ("ours", ours.pid, ours_probe),
                    ("floor", None, lambda: floor("127.0.0.1", smtp_port, ca)),
                ):
                    m = measure(name, pid, [fn] * (n // rounds), conc)
                    acc[name]["cpu"] += m["cpu_ms"] / rounds
                    acc[name]["lat"] += m["lat"]
            results[conc] = acc
        loaded = {"blackbox": rss_mib(bb.pid), "ours": rss_mib(ours.pid)}
        profile = profile_probes(ours.pid, ours_probe, n, work) if args.profile else ""
        ours.terminate()
        ours.wait(10)
        # The scheduled check: the agent on its schedule alone, CPU per SMTP run over a window.
        sched_port = free_port()
        sched = subprocess.Popen(
            [str(BIN), "--config.file", str(scheduled), "--web.listen-address",
             f"127.0.0.1:{sched_port}", "--log.level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(work / "scheduled.log", "w"),
        )
        procs.append(sched)
        wait_port(sched_port)
        metrics = f"http://127.0.0.1:{sched_port}/metrics"

        def smtp_runs():
            with urllib.request.urlopen(metrics, timeout=30) as r:
                return total(r.read().decode(), "smtp_oauth_scheduler_runs_total", check="smtp")

        wait_for("the first round", lambda: smtp_runs() >= MAILBOXES, 120)
        time.sleep(2)
        runs0, cpu0 = smtp_runs(), cpu_seconds(sched.pid)
        time.sleep(args.window)
        runs1, cpu1 = smtp_runs(), cpu_seconds(sched.pid)
        scheduled_ms = 1000 * (cpu1 - cpu0) / max(runs1 - runs0, 1)
        scheduled_runs = runs1 - runs0
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    rows = []
    for label, key in (
        ("blackbox_exporter, tcp module (banner, EHLO, STARTTLS, TLS, EHLO, QUIT)", "blackbox"),
        ("smtp-oauth-exporter /probe (the same, plus AUTH XOAUTH2, MAIL FROM, RSET)", "ours"),
        ("floor: connect, banner, EHLO, STARTTLS, TLS handshake, QUIT (this script)", "floor"),
    ):
        cells = [label]
        for conc in (1, 20):
            r = results[conc][key]
            cpu = f"{r['cpu']:.2f} ms" if key != "floor" else "n/a"
            cells += [cpu, f"{1000 * pct(r['lat'], 0.5):.1f} ms", f"{1000 * pct(r['lat'], 0.99):.1f} ms"]
        if key == "floor":
            cells += ["", ""]
        else:
            cells += [f"{idle[key]:.1f} MiB", f"{loaded[key]:.1f} MiB"]
        rows.append("| " + " | ".join(cells) + " |")
    ratio1 = results[1]["ours"]["cpu"] / results[1]["blackbox"]["cpu"]
    ratio20 = results[20]["ours"]["cpu"] / results[20]["blackbox"]["cpu"]
    bb_cpu = (results[1]["blackbox"]["cpu"] + results[20]["blackbox"]["cpu"]) / 2
    rows.append(
        f"| smtp-oauth-exporter, scheduled SMTP check ({MAILBOXES} mailboxes every 2 s, {scheduled_runs:.0f} runs) "
        f"| {scheduled_ms:.2f} ms | | | | | | | |"
    )
    out = (
        "| probe | CPU per probe | p50 | p99 | CPU per probe at 20 | p50 at 20 | p99 at 20 | RSS idle | RSS loaded |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
        + f"\n\nCPU per probe, ours / blackbox_exporter's: {ratio1:.2f} sequential, {ratio20:.2f} at concurrency 20 "
        f"({n} probes of each per mode, alternated in 4 rounds; CPU is each exporter process's own user+system time). "
        f"A scheduled check / blackbox_exporter's probe (mean of both modes): {scheduled_ms / bb_cpu:.2f}.\n"
    )
    out += profile
    print(out)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    path = results_dir / f"blackbox-{stamp}.md"
    path.write_text(f"# Beside blackbox_exporter, {stamp} UTC\n\n" + out)
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
