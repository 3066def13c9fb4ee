#!/usr/bin/env python3
"""Abuse benchmark: what anyone who can reach the agent's port can make it do, measured from
outside on the release build, loopback only. It reruns the probes of issue 20 ("Safe under
abuse"), each against the agent alone in its process and the simulator in another:

  probe flood       4 clients hammer /probe for 5 s, once per check (token, graph, smtp), after
                    the scheduled first round: token requests, Graph reads and SMTP sessions per
                    second at the simulator, and the most SMTP connections of the mailbox at once
  idle sockets      2,000 connections that say nothing (half of them stall mid-headers), then
                    1,100 that reconnect as soon as they are closed: /metrics latency (fresh
                    connection each time) p50, p99 and max over up to 50 scrapes or 45 s
  /status memory    10,000 mailboxes over 1,000 apps: one /status (size, time), then 4 at once:
                    the rise of the agent's peak RSS (VmHWM, reset before) over its RSS before
  wrong passwords   basic auth (bcrypt cost 10): 2 clients, 10 s of wrong passwords (a new one
                    each time, then the same one again and again): the agent's CPU, and the
                    time of a scrape with the right password meanwhile
  small             the rest, once each: SIGHUP 0.1 s after `demo` starts, an empty file on
                    reload, 196 KB of nested YAML, a 10 MB bad value, /dev/zero as a secret
                    file, a closed stdout, a secret file others may read, a user listed twice,
                    check=smtp on an app (a secret echoed in base64 and a probe's slot at its
                    deadline need a scripted server: tests/it/secrets.rs and tests/it/probe.rs)

With --before REV (a commit, e.g. the main the branch started from) it builds that revision in
a worktree under target/bench/ and runs everything against both, printing before and after side
by side; the simulator is always the current build's. Bounded: about 4 minutes per binary plus
the builds. It prints a table and writes it to bench/results/abuse-<time>.md.

    bench/abuse.py                            # the current build only
    bench/abuse.py --before f523485           # before/after, as in BENCHMARKS.md
    bench/abuse.py --only probe,idle          # some of the probes
"""

import argparse
import datetime
import json
import os
import random
import re
import resource
import socket
import ssl
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
import base64

from procs import ROOT, BIN, free_port, cpu_seconds, rss_mib, stop, total, wait_for

# bcrypt (cost 10) of "bench-password": the web configuration's one user.
PASSWORD = "bench-password"
HASH = "$2b$10$4UOMNC7H107Nsihi1pBOF.fggn6kd/rukR0yxJdvrVy1dulrJ4K8O"


def build(cwd, target_dir=None):
    env = dict(os.environ)
    if target_dir:
        env["CARGO_TARGET_DIR"] = str(target_dir)
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=cwd, env=env, check=True)


def before_binary(rev):
    """The release binary of `rev`, built in a worktree of its own under target/bench/."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = ROOT / "target" / "bench" / f"before-{sha}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=ROOT, check=True)
    build(tree, tree / "target")
    return tree / "target" / "release" / "smtp-oauth-exporter", sha


def http(url, timeout=30, headers=None):
    """(status, body, seconds) of a GET on a new connection; status 0 when it failed."""
    req = urllib.request.Request(url, headers=headers or {})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return r.status, body, time.monotonic() - start
    except urllib.error.HTTPError as e:
        e.read()
        return e.code, b"", time.monotonic() - start
    except OSError:
        return 0, b"", time.monotonic() - start


class World:
    """The simulator (current build) with a fleet, and the agent under test on its config."""

    def __init__(self, agent_bin, workdir, name, mailboxes, extra_args=(), web_config=None,
                 config_extra=""):
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        simdir = self.workdir / "sim"
        self.sim = subprocess.Popen(
            [str(BIN), "simulate", "--mailboxes", str(mailboxes), "--config-out", str(simdir),
             "--smtp-schedule", "5m", "--token-schedule", "5m", "--graph-schedule", "6h",
             "--startup-spread", "20s" if mailboxes > 100 else "1s",
             "--max-concurrent-checks", "200", "--log.level", "warn"],
            stdout=open(self.workdir / "sim.log", "w"), stderr=subprocess.STDOUT,
        )
        self.agent = None
        config = simdir / "agent.yml"
        wait_for("the simulator", lambda: config.exists(), 120, 0.5)
        time.sleep(0.5)
        if config_extra:
            # Only where the agent knows the settings (an older build has none of them).
            with_extra = simdir / "agent-extra.yml"
            with_extra.write_text(config.read_text() + config_extra)
            if subprocess.run([str(agent_bin), "--config.file", str(with_extra), "check-config"],
                              capture_output=True).returncode == 0:
                config = with_extra
        self.ca = ssl.create_default_context(cafile=str(simdir / "simulator-ca.pem"))
        self.https = re.search(r"https://127\.0\.0\.1:\d+", config.read_text()).group(0)
        self.port = free_port()
        args = [str(agent_bin), "--config.file", str(config), "--web.listen-address",
                f"127.0.0.1:{self.port}", "--log.level", "warn", *extra_args]
        if web_config:
            path = self.workdir / "web.yml"
            path.write_text(web_config)
            args += ["--web.config.file", str(path)]
        self.agent = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                      stderr=open(self.workdir / "agent.log", "w"))
        self.base = f"http://127.0.0.1:{self.port}"

    def stats(self):
        with urllib.request.urlopen(f"{self.https}/sim/stats", context=self.ca, timeout=10) as r:
            return json.loads(r.read())

    def metrics(self, headers=None):
        return http(self.base + "/metrics", headers=headers)[1].decode()

    def first_round(self, mailboxes, apps, graph=True, headers=None):
        def done():
            t = self.metrics(headers)
            return (total(t, "smtp_oauth_scheduler_runs_total", check="smtp") >= mailboxes
                    and total(t, "smtp_oauth_scheduler_runs_total", check="token") >= apps
                    and (not graph or total(t, "smtp_oauth_scheduler_runs_total", check="graph") >= apps))
        wait_for("the first round of checks", done, 600, 0.5)

    def close(self):
        stop(self.agent, self.sim)


def hammer(url, clients, seconds, headers=None):
    """`clients` threads GET `url` for `seconds`: how many answers of each status."""
    until = time.monotonic() + seconds
    counts = {}
    lock = threading.Lock()

    def client():
        while time.monotonic() < until:
            status, _, _ = http(url, timeout=seconds + 5, headers=headers)
            with lock:
                counts[status] = counts.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def probe_flood(agent_bin, workdir):
    """The flood with the defaults, then with every probe forced to run its check (freshness
    0, no rate limits: what an older build always did), on a simulator of its own each."""
    return {
        "defaults": flood(agent_bin, workdir, "probe", ""),
        "forced": flood(agent_bin, workdir, "probe-forced",
                        "probe: { freshness: 0s, rate_limit: 0, client_rate_limit: 0 }\n"),
    }


def flood(agent_bin, workdir, name, config_extra):
    w = World(agent_bin, workdir, name, 1, config_extra=config_extra)
    try:
        w.first_round(1, 1)
        out = {}
        for check, query in [("token", "target=app-0&check=token"),
                             ("graph", "target=mb-0-0&check=graph"),
                             ("smtp", "target=mb-0-0")]:
            s0, t0 = w.stats(), time.monotonic()
            counts = hammer(f"{w.base}/probe?{query}", 4, 5)
            s1, t1 = w.stats(), time.monotonic()
            secs = t1 - t0
            out[check] = {
                "probes_per_s": sum(counts.values()) / secs,
                "statuses": counts,
                "token_requests_per_s": (s1["token_requests"] - s0["token_requests"]) / secs,
                "graph_reads_per_s": (s1["graph_requests"] - s0["graph_requests"]) / secs,
                "smtp_sessions_per_s": (s1.get("smtp_sessions", 0) - s0.get("smtp_sessions", 0)) / secs,
            }
        out["smtp_peak_connections"] = w.stats().get("smtp_peak_connections")
        return out
    finally:
        w.close()


def hold_idle(port, n, stop, reconnect, ready):
    """Keeps `n` connections open that never send a whole request (every other one sends half
    a request line), opened at once, as a client with many sockets does; with `reconnect`, a
    closed one is opened again at once. Sets `ready` once they are open."""
    def open_one():
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        return s

    socks = [open_one() for _ in range(n)]
    stop.wait(1)
    for i, s in enumerate(socks):
        if i % 2:
            try:
                s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass
    ready.set()
    while not stop.is_set():
        if reconnect:
            for i, s in enumerate(socks):
                try:
                    closed = s.recv(1) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    s.close()
                    socks[i] = open_one()
        stop.wait(0.05)
    for s in socks:
        s.close()


def scrape_times(base, count=50, budget=45):
    times = []
    start = time.monotonic()
    while len(times) < count and time.monotonic() - start < budget:
        status, _, took = http(base + "/metrics", timeout=30)
        times.append(took if status == 200 else float("inf"))
    first = times[0]
    times.sort()
    return {
        "scrapes": len(times),
        "first_ms": 1000 * first,
        "p50_ms": 1000 * times[len(times) // 2],
        "p99_ms": 1000 * times[min(len(times) - 1, int(len(times) * 0.99))],
        "max_ms": 1000 * times[-1],
    }


def idle_sockets(agent_bin, workdir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    w = World(agent_bin, workdir, "idle", 1)
    try:
        w.first_round(1, 1)
        out = {}
        for name, n, reconnect in [("idle_2000", 2000, False), ("reconnecting_1100", 1100, True)]:
            stop, ready = threading.Event(), threading.Event()
            holder = threading.Thread(target=hold_idle, args=(w.port, n, stop, reconnect, ready))
            holder.start()
            ready.wait()
            out[name] = scrape_times(w.base)
            stop.set()
            holder.join()
            time.sleep(1)
        return out
    finally:
        w.close()


def vm(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def status_memory(agent_bin, workdir):
    w = World(agent_bin, workdir, "status", 10000)
    try:
        w.first_round(10000, 1000, graph=False)
        time.sleep(2)
        w.metrics()
        time.sleep(2)
        out = {}
        status, body, took = http(w.base + "/status", timeout=120)
        out["one_status_mb"] = len(body) / 1e6
        out["one_status_s"] = took
        time.sleep(2)
        for path in ["/status", "/"]:
            pid = w.agent.pid
            before = rss_mib(pid)
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            results = []
            threads = [threading.Thread(target=lambda: results.append(http(w.base + path, timeout=120)))
                       for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peak = vm(pid, "VmHWM")
            key = "status" if path == "/status" else "page"
            out[f"four_{key}_rss_before_mib"] = before
            out[f"four_{key}_rss_peak_mib"] = peak
            out[f"four_{key}_rss_rise_mib"] = peak - before
            out[f"four_{key}_ok"] = sum(1 for r in results if r[0] == 200)
            time.sleep(2)
        return out
    finally:
        w.close()


def wrong_passwords(agent_bin, workdir):
    web = f"basic_auth_users:\n  prometheus: '{HASH}'\n"
    w = World(agent_bin, workdir, "auth", 1, web_config=web)
    good = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()}
    try:
        w.first_round(1, 1, headers=good)
        out = {}
        for name, same in [("distinct", False), ("repeated", True)]:
            until = time.monotonic() + 10
            counts = {}
            lock = threading.Lock()

            def client(n):
                i = 0
                while time.monotonic() < until:
                    pw = "wrong" if same else f"wrong-{n}-{i}-{random.random()}"
                    h = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{pw}".encode()).decode()}
                    status, _, _ = http(w.base + "/metrics", timeout=30, headers=h)
                    with lock:
                        counts[status] = counts.get(status, 0) + 1
                    i += 1

            cpu0, t0 = cpu_seconds(w.agent.pid), time.monotonic()
            threads = [threading.Thread(target=client, args=(n,)) for n in range(2)]
            for t in threads:
                t.start()
            time.sleep(5)
            _, _, scrape = http(w.base + "/metrics", timeout=30, headers=good)
            for t in threads:
                t.join()
            cpu1, t1 = cpu_seconds(w.agent.pid), time.monotonic()
            out[name] = {
                "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
                "requests": sum(counts.values()),
                "scrape_during_ms": 1000 * scrape,
            }
            time.sleep(1)
        return out
    finally:
        w.close()


def run(cmd, limit=60, stdout=subprocess.PIPE, memory=None, **kw):
    """(exit code or -signal, stderr bytes, seconds) of a command, killed after `limit` s;
    `memory`: an address-space limit in bytes (so that reading /dev/zero ends)."""
    def limits():
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, preexec_fn=limits, **kw)
    try:
        _, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        return "killed", err, limit
    return p.returncode, err, time.monotonic() - start


def small(agent_bin, workdir):
    """The smaller probes, one run each."""
    d = workdir / "small"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    app = ("apps:\n  - { name: a, tenant: contoso.onmicrosoft.com, client_id: "
           "00000000-0000-4000-8000-000000000001, client_secret_file: a.secret, "
           "checks: { token: { enabled: false }, graph: { enabled: false } } }\n")
    (d / "a.secret").write_text("A~secret")
    os.chmod(d / "a.secret", 0o644)
    (d / "ok.yml").write_text(app)
    # SIGHUP 0.1 s after the demo starts.
    port = free_port()
    p = subprocess.Popen([str(agent_bin), "demo", "--web.listen-address", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.1)
    p.send_signal(1)
    time.sleep(3)
    code = p.poll()
    out["sighup_at_start"] = "running" if code is None else f"died ({code})"
    stop(p)
    # An empty file on reload.
    port = free_port()
    cfg = d / "reload.yml"
    cfg.write_text(app)
    p = subprocess.Popen([str(agent_bin), "--config.file", str(cfg), "--web.enable-lifecycle",
                          "--web.listen-address", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
    base = f"http://127.0.0.1:{port}"
    wait_for("the agent", lambda: http(base + "/-/ready")[0] == 200, 30, 0.2)
    cfg.write_text("")
    req = urllib.request.Request(base + "/-/reload", method="POST")
    try:
        status = urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as e:
        status = e.code
    metrics = http(base + "/metrics")[1].decode()
    out["empty_reload"] = (f"HTTP {status}, last_reload_successful "
                           f"{total(metrics, 'smtp_oauth_config_last_reload_successful'):.0f}")
    stop(p)
    # 196 KB of nested flow collections.
    deep = d / "deep.yml"
    deep.write_text("apps: " + "[" * 98000 + "]" * 98000 + "\n")
    code, _, secs = run([str(agent_bin), "--config.file", str(deep), "check-config"])
    out["yaml_nesting"] = f"{secs:.2f} s (exit {code})"
    # A 10 MB bad value: how much of it the error repeats.
    long = d / "long.yml"
    long.write_text("apps:\n  - { name: a, tenant: contoso.onmicrosoft.com, client_id: "
                    "00000000-0000-4000-8000-000000000001, client_secret: x, graph_url: 'ftp://"
                    + "v" * 10_000_000 + "' }\n")
    code, err, _ = run([str(agent_bin), "--config.file", str(long), "check-config"])
    out["long_value_error"] = f"{len(err):,} bytes of error"
    # /dev/zero as the secret file, under a 2 GiB address-space limit.
    zero = d / "zero.yml"
    zero.write_text(app.replace("a.secret", "/dev/zero"))
    code, err, secs = run([str(agent_bin), "--config.file", str(zero), "check-config"],
                          memory=2 << 30, cwd=d)
    said = err.decode(errors="replace").strip().splitlines()
    said = said[-1] if said else ""
    said = said[said.find("cannot read"):] if "cannot read" in said else said[-90:]
    out["dev_zero_secret"] = f"exit {code} after {secs:.1f} s: {said}"
    # check | head -1: stdout closed before anything is written.
    r, w = os.pipe()
    os.close(r)
    code, err, _ = run([str(agent_bin), "--config.file", str(d / "ok.yml"), "check-config"],
                       stdout=w, cwd=d)
    os.close(w)
    out["closed_stdout"] = f"exit {code}" + (" (panic)" if b"panicked" in err else "")
    # A secret file others may read.
    code, err, _ = run([str(agent_bin), "--config.file", str(d / "ok.yml"), "check-config"], cwd=d)
    out["readable_secret"] = "warned" if b"readable by group or others" in err else "no warning"
    # A user listed twice in basic_auth_users.
    web = d / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n  prometheus: '{HASH}'\n")
    port = free_port()
    code, err, _ = run([str(agent_bin), "--config.file", str(d / "ok.yml"), "--web.config.file",
                        str(web), "--web.listen-address", f"127.0.0.1:{port}"], limit=3, cwd=d)
    out["duplicate_user"] = "refused" if code == 1 else "accepted"
    # check=smtp on an app.
    port = free_port()
    p = subprocess.Popen([str(agent_bin), "--config.file", str(d / "ok.yml"),
                          "--web.listen-address", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
    base = f"http://127.0.0.1:{port}"
    wait_for("the agent", lambda: http(base + "/-/ready")[0] == 200, 30, 0.2)
    out["probe_smtp_on_app"] = f"HTTP {http(base + '/probe?target=a&check=smtp')[0]}"
    stop(p)
    return out


PROBES = {
    "probe": probe_flood,
    "idle": idle_sockets,
    "status": status_memory,
    "auth": wrong_passwords,
    "small": small,
}


def rows(r):
    """(what, value) pairs of one binary's results, in the table's order."""
    out = []
    if "probe" in r:
        for mode, label in [("defaults", "defaults"), ("forced", "freshness 0, no rate limit")]:
            p = r["probe"][mode]
            for check in ("token", "graph", "smtp"):
                c = p[check]
                what = f"/probe check={check} ({label})"
                out += [
                    (f"{what}: probes answered per s (4 clients)", f"{c['probes_per_s']:.0f}"),
                    (f"{what}: answers by status", ", ".join(f"{k}: {v}" for k, v in sorted(c["statuses"].items()))),
                    (f"{what}: token requests per s", f"{c['token_requests_per_s']:.1f}"),
                    (f"{what}: Graph reads per s", f"{c['graph_reads_per_s']:.1f}"),
                    (f"{what}: SMTP sessions per s", f"{c['smtp_sessions_per_s']:.1f}"),
                ]
            out.append((f"/probe ({label}): SMTP connections of the mailbox at once, at most",
                        f"{p['smtp_peak_connections']}"))
    if "idle" in r:
        for name, label in [("idle_2000", "2,000 idle sockets"), ("reconnecting_1100", "1,100 reconnecting idle sockets")]:
            s = r["idle"][name]
            out.append((f"/metrics behind {label}: first; p50 / p99 / max (scrapes)",
                        f"{s['first_ms']:.1f}; {s['p50_ms']:.1f} / {s['p99_ms']:.1f} / {s['max_ms']:.1f} ms ({s['scrapes']})"))
    if "status" in r:
        s = r["status"]
        out += [
            ("one /status at 10,000 mailboxes: size, time", f"{s['one_status_mb']:.2f} MB, {s['one_status_s']:.2f} s"),
            ("4 concurrent /status: peak RSS rise (before → peak)",
             f"{s['four_status_rss_rise_mib']:.1f} MiB ({s['four_status_rss_before_mib']:.0f} → {s['four_status_rss_peak_mib']:.0f})"),
            ("4 concurrent /: peak RSS rise (before → peak)",
             f"{s['four_page_rss_rise_mib']:.1f} MiB ({s['four_page_rss_before_mib']:.0f} → {s['four_page_rss_peak_mib']:.0f})"),
        ]
    if "auth" in r:
        for name, label in [("distinct", "a new wrong password each time"), ("repeated", "the same wrong password")]:
            a = r["auth"][name]
            out.append((f"2 clients, {label}, 10 s: agent CPU, requests, a scrape meanwhile",
                        f"{a['cpu_percent']:.0f} %, {a['requests']}, {a['scrape_during_ms']:.0f} ms"))
    if "small" in r:
        s = r["small"]
        out += [
            ("SIGHUP 0.1 s after `demo` starts", s["sighup_at_start"]),
            ("an empty configuration file on POST /-/reload", s["empty_reload"]),
            ("check-config on 196 KB of nested `[`", s["yaml_nesting"]),
            ("check-config on a 10 MB bad value", s["long_value_error"]),
            ("check-config with /dev/zero as the secret file (2 GiB address space)", s["dev_zero_secret"]),
            ("check-config with stdout closed", s["closed_stdout"]),
            ("a secret file readable by others", s["readable_secret"]),
            ("a user listed twice in basic_auth_users", s["duplicate_user"]),
            ("/probe?check=smtp on an app", s["probe_smtp_on_app"]),
        ]
    return out


def table(results, labels):
    head = "| probe | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels) + "\n"
    columns = [dict(rows(r)) for r in results]
    lines = []
    for what, _ in rows(results[-1]):
        lines.append(f"| {what} | " + " | ".join(c.get(what, "") for c in columns) + " |")
    return head + "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="a revision to measure as 'before' (built in target/bench/)")
    ap.add_argument("--only", default=",".join(PROBES), help="comma-separated: " + ", ".join(PROBES))
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        build(ROOT)
    binaries = []
    if args.before:
        bin_before, sha = before_binary(args.before)
        binaries.append((f"before ({sha})", bin_before))
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip()
    binaries.append((f"after ({head})", BIN))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    workdir = ROOT / "target" / "bench" / f"abuse-{stamp}"
    results = []
    for label, binary in binaries:
        r = {}
        for name in args.only.split(","):
            print(f"== {label}: {name}", flush=True)
            r[name] = PROBES[name](binary, workdir / label.split()[0])
            print(json.dumps(r[name]), flush=True)
        results.append(r)
    out = table(results, [l for l, _ in binaries])
    note = (f"\nRelease builds, loopback; the simulator is the current build's in every column. "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.\n")
    print(out + note)
    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    path = results_dir / f"abuse-{stamp}.md"
    path.write_text(f"# Abuse benchmark, {stamp} UTC\n\n" + out + note)
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
