//! The secured endpoint (`--web.config.file`, exporter-toolkit format): `/metrics` over TLS with
//! basic auth as `curl --cacert … -u user:pass` uses it, 401 for a wrong or missing password
//! (`/-/ready`, `/probe`, `/status` and `/` too; `/-/healthy` open), client certificates when
//! required, a renewed certificate served without a restart, wrong passwords at one bcrypt at a
//! time and once each, 431 for huge headers, and scrapes that idle, half-open or slow
//! connections cannot delay (500 half-open TLS ones, 2,000 idle ones). curl is a real client here
//! (scripts/test.sh installs it).
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use smtp_oauth_exporter::sim::TestCa;

use crate::common::*;

const USER: &str = "prometheus";
const PASSWORD: &str = "Scr4pe~pass";

/// Writes the CA, the server certificate and key, and a web config with `extra` lines under
/// `tls_server_config`; returns the web config's path.
fn web_config(dir: &Path, ca: &TestCa, tls_extra: &str) -> std::path::PathBuf {
    let server = ca.loopback_cert();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.chain_pem()).unwrap();
    std::fs::write(dir.join("server.key"), server.key_pem()).unwrap();
    let client = ca.loopback_cert();
    std::fs::write(dir.join("client.pem"), client.chain_pem()).unwrap();
    std::fs::write(dir.join("client.key"), client.key_pem()).unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\n{tls_extra}http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )
    .unwrap();
    path
}

/// A tiny configuration: one app whose checks are off (the endpoint is what is tested).
fn agent_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        "apps:\n  - { name: a, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret_file: a.secret, checks: { token: { enabled: false }, graph: { enabled: false } } }\n",
    )
    .unwrap();
    std::fs::write(dir.join("a.secret"), "A~secret").unwrap();
    path
}

/// The agent binary on the tiny configuration, behind a web configuration with `tls_extra`
/// under `tls_server_config` (TLS with the test CA's certificate, basic auth).
async fn secured_agent(dir: &Path, ca: &TestCa, tls_extra: &str) -> Process {
    let web = web_config(dir, ca, tls_extra);
    let config = agent_config(dir);
    Process::start(
        &[
            "--config.file",
            config.to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
        ],
        dir.join("agent.log"),
    )
    .await
}

/// curl's HTTP status code (000 when the connection or handshake failed) and body.
fn curl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("curl is required (scripts/test.sh installs it): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
    (code.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_tls_with_basic_auth_as_curl_scrapes_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("web test CA");
    let agent = secured_agent(dir.path(), &ca, "").await;
    let url = |p: &str| format!("https://127.0.0.1:{}{p}", agent.port);
    let cacert = dir.path().join("ca.pem");
    let cacert = cacert.to_str().unwrap();
    let auth = format!("{USER}:{PASSWORD}");

    let (code, body) = curl(&["--cacert", cacert, "-u", &auth, &url("/metrics")]);
    assert_eq!(code, "200", "{body}\n{}", agent.log_text());
    assert!(body.contains("smtp_oauth_build_info"));
    // The extra header of http_server_config.
    let (code, head) = curl(&["--cacert", cacert, "-u", &auth, "-I", &url("/metrics")]);
    assert_eq!(code, "200");
    assert!(
        head.to_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{head}"
    );

    let wrong = format!("{USER}:not-it");
    for (what, args) in [
        ("a wrong password", vec!["-u", wrong.as_str()]),
        ("an unknown user", vec!["-u", "nobody:x"]),
        ("no credentials", vec![]),
    ] {
        let mut a = vec!["--cacert", cacert];
        a.extend(args);
        let u = url("/status");
        a.push(&u);
        let (code, _) = curl(&a);
        assert_eq!(code, "401", "{what}");
    }
    let (code, head) = curl(&["--cacert", cacert, "-I", &url("/metrics")]);
    assert_eq!(code, "401");
    assert!(head.contains("WWW-Authenticate: Basic") || head.contains("www-authenticate: Basic"));
    // Liveness stays open (orchestrators probe it without credentials).
    let (code, body) = curl(&["--cacert", cacert, &url("/-/healthy")]);
    assert_eq!((code.as_str(), body.trim()), ("200", "Healthy"));
    // No TLS, or an unknown CA: no answer.
    let (code, _) = curl(&[&format!("http://127.0.0.1:{}/metrics", agent.port)]);
    assert_ne!(code, "200");
    let (code, _) = curl(&["-u", &auth, &url("/metrics")]);
    assert_eq!(
        code, "000",
        "a server certificate from an unknown CA was accepted"
    );
    // The password never shows in the log.
    assert!(!agent.log_text().contains(PASSWORD));
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("web test CA");
    let agent = secured_agent(
        dir.path(),
        &ca,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    )
    .await;
    let url = format!("https://127.0.0.1:{}/metrics", agent.port);
    let p = |f: &str| dir.path().join(f).display().to_string();
    let auth = format!("{USER}:{PASSWORD}");
    let (code, _) = curl(&[
        "--cacert",
        &p("ca.pem"),
        "--cert",
        &p("client.pem"),
        "--key",
        &p("client.key"),
        "-u",
        &auth,
        &url,
    ]);
    assert_eq!(code, "200");
    let (code, _) = curl(&["--cacert", &p("ca.pem"), "-u", &auth, &url]);
    assert_eq!(code, "000", "no client certificate, yet served");
    // One from another CA is refused as well.
    let other = TestCa::new("other CA").loopback_cert();
    std::fs::write(dir.path().join("other.pem"), other.chain_pem()).unwrap();
    std::fs::write(dir.path().join("other.key"), other.key_pem()).unwrap();
    let (code, _) = curl(&[
        "--cacert",
        &p("ca.pem"),
        "--cert",
        &p("other.pem"),
        "--key",
        &p("other.key"),
        "-u",
        &auth,
        &url,
    ]);
    assert_eq!(code, "000");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_half_open_connections_do_not_stop_a_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("web test CA");
    let agent = secured_agent(dir.path(), &ca, "").await;
    // 250 that connect and say nothing (no TLS hello), 250 that start a TLS hello and stall.
    let mut held = Vec::new();
    for i in 0..500 {
        let mut s = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
        if i % 2 == 1 {
            // The first bytes of a TLS record header (handshake, TLS 1.0 record version).
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
        }
        held.push(s);
    }
    assert_eq!(held.len(), 500);
    let cacert = dir.path().join("ca.pem").display().to_string();
    let started = Instant::now();
    let (code, body) = curl(&[
        "--cacert",
        &cacert,
        "-u",
        &format!("{USER}:{PASSWORD}"),
        &format!("https://127.0.0.1:{}/metrics", agent.port),
    ]);
    let took = started.elapsed();
    assert_eq!(code, "200", "{body}");
    assert!(
        took < Duration::from_secs(5),
        "the scrape waited {took:?} behind half-open connections"
    );
    drop(held);
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_endpoint_cuts_off_slow_and_oversized_requests() {
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path());
    let agent = Process::start(
        &["--config.file", config.to_str().unwrap()],
        dir.path().join("agent.log"),
    )
    .await;
    // A slowloris: the request line, then nothing. A scrape still gets through at once.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", agent.port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    assert_eq!(slow.len(), 200);
    let (code, _) = curl(&[&format!("http://127.0.0.1:{}/metrics", agent.port)]);
    assert_eq!(code, "200");
    // Headers over 16 KiB are refused, not buffered.
    let big = format!("X-Big: {}", "a".repeat(64 * 1024));
    let (code, _) = curl(&[
        "-H",
        &big,
        &format!("http://127.0.0.1:{}/metrics", agent.port),
    ]);
    assert_eq!(code, "431", "a 64 KiB header was not refused as too large");
    slow.clear();
    agent.stop();
}

/// The web configuration is taken with the same bounds as the configuration, and a user listed
/// twice in `basic_auth_users` is refused (YAML would keep the last hash only, silently).
#[test]
fn the_web_configuration_refuses_duplicate_users_and_endless_or_deep_files() {
    use smtp_oauth_exporter::server::web_config::WebConfig;
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let path = dir.path().join("web.yml");
    std::fs::write(
        &path,
        format!("basic_auth_users:\n  {USER}: '{hash}'\n  other: '{hash}'\n  {USER}: '{hash}'\n"),
    )
    .unwrap();
    let e = WebConfig::load(&path).unwrap_err();
    assert!(
        e.contains(&format!("user \"{USER}\" is listed twice")),
        "{e}"
    );
    std::fs::write(
        &path,
        format!("basic_auth_users:\n  {USER}: '{hash}'\n  other: '{hash}'\n"),
    )
    .unwrap();
    assert!(WebConfig::load(&path).unwrap().needs_auth());

    let e = WebConfig::load(Path::new("/dev/zero")).unwrap_err();
    assert!(e.contains("larger than 1 MiB"), "{e}");
    std::fs::write(
        &path,
        format!("basic_auth_users: {}\n", "{a: ".repeat(50_000)),
    )
    .unwrap();
    let started = Instant::now();
    let e = WebConfig::load(&path).unwrap_err();
    assert!(e.contains("nested deeper than"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// CPU seconds (user and system) the process has used so far, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name (which may hold spaces) start after its `)`.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Wrong passwords cost what exporter-toolkit makes them cost: a repeated one is answered from
/// the cache (one bcrypt, not one per request), and distinct ones run one bcrypt at a time, so
/// a flood takes one core, never all of them. Measured in the agent's CPU time, which a busy
/// test machine does not change.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_passwords_cost_one_bcrypt_at_a_time_and_once_each() {
    let dir = tempfile::tempdir().unwrap();
    // Cost 10, the usual one (htpasswd -B): tens of milliseconds per check.
    let hash = bcrypt::hash(PASSWORD, 10).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  {USER}: '{hash}'\n")).unwrap();
    let config = agent_config(dir.path());
    let agent = Process::start(
        &[
            "--config.file",
            config.to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
        ],
        dir.path().join("agent.log"),
    )
    .await;
    let pid = agent.child.id();
    let client = reqwest::Client::new();
    let get = |password: String| {
        let req = client
            .get(agent.url("/metrics"))
            .basic_auth(USER, Some(password));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // One bcrypt, measured.
    let cpu = cpu_seconds(pid);
    assert_eq!(get("wrong-0".into()).await, 401);
    let one = (cpu_seconds(pid) - cpu).max(0.01);

    // The same wrong password 50 times: answered from the cache.
    let cpu = cpu_seconds(pid);
    for _ in 0..50 {
        assert_eq!(get("wrong-0".into()).await, 401);
    }
    let repeated = cpu_seconds(pid) - cpu;
    assert!(
        repeated < 10.0 * one,
        "50 repeats of a wrong password took {repeated:.2} s of CPU (one bcrypt: {one:.3} s)"
    );

    // Four clients with distinct wrong passwords at once: one core at most.
    let cpu = cpu_seconds(pid);
    let started = Instant::now();
    let clients = (0..4).map(|c| {
        let get = &get;
        async move {
            for n in 0..8 {
                assert_eq!(get(format!("wrong-{c}-{n}")).await, 401);
            }
        }
    });
    futures::future::join_all(clients).await;
    let wall = started.elapsed().as_secs_f64();
    let used = cpu_seconds(pid) - cpu;
    assert!(
        used / wall < 1.4,
        "32 distinct wrong passwords used {used:.2} s of CPU in {wall:.2} s: more than one core"
    );
    // The right password still works, and is remembered.
    assert_eq!(get(PASSWORD.into()).await, 200);
    agent.stop();
}

/// Opens `n` connections to the agent that never send a whole request (every other one sends
/// half of one and stalls), each established before the next is opened.
async fn idle_sockets(
    port: u16,
    n: usize,
    opened: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<tokio::net::TcpStream> {
    let mut idle = Vec::new();
    for i in 0..n {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        if i % 2 == 1 {
            tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
        opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    idle
}

/// Times `/metrics`, `/-/healthy` and `/-/ready`, each on a fresh connection: sorted.
async fn scrape_times(agent: &Process) -> Vec<Duration> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut times = Vec::new();
    for path in ["/metrics", "/-/healthy", "/-/ready", "/metrics", "/metrics"] {
        let started = Instant::now();
        let r = client.get(agent.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    times
}

/// Scrapes first: connections that hold a place without asking anything (half say nothing, half
/// send half a request and stall) never delay a scrape, because the connection idle longest
/// makes room. With `--web.max-connections 64` and 300 of them (before: the 64 places stayed
/// taken for the 10 s header timeout, the scrape waited behind them in the listen queue), and
/// at the default 1,024 with 2,000 of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sockets_do_not_delay_a_scrape() {
    // This process holds the 2,000 client ends.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < 4096 {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(8192), hard).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path());
    for (cap, sockets) in [("64", 300), ("1024", 2000)] {
        // The agent with the soft limit a service gets by default (1024), not this process's.
        let agent = Process::start_with_soft_open_files(
            1024,
            &[
                "--config.file",
                config.to_str().unwrap(),
                "--web.max-connections",
                cap,
            ],
            dir.path().join(format!("agent-{cap}.log")),
        )
        .await;
        // Scrape while the sockets come in, once most of them hold a place (past what a soft
        // limit of 1024 descriptors lets a server accept): the old server stopped accepting
        // there, and a scrape waited in the backlog until its header timeout freed places.
        let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let opening = tokio::spawn(idle_sockets(agent.port, sockets, opened.clone()));
        let started = Instant::now();
        while opened.load(std::sync::atomic::Ordering::SeqCst) < sockets.min(1100)
            && started.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let times = scrape_times(&agent).await;
        let idle = opening.await.unwrap();
        eprintln!("scrapes behind {sockets} idle sockets (--web.max-connections {cap}): {times:?}");
        assert!(
            times[times.len() - 1] < Duration::from_secs(1)
                && times[times.len() / 2] < Duration::from_millis(200),
            "scrapes behind {sockets} idle sockets took {times:?}"
        );
        assert_eq!(idle.len(), sockets);
        drop(idle);
        agent.stop();
    }
}

/// Polls curl until it answers `want` (each try is a new connection, which also makes the agent
/// look at its web configuration's files), or panics after 10 s.
fn curl_until(want: &str, args: &[&str], agent: &Process) -> String {
    let started = Instant::now();
    loop {
        let (code, body) = curl(args);
        if code == want {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "curl {args:?} answered {code}, not {want}:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The web configuration follows its files without a restart: a renewed certificate (here from
/// another CA, so that the two can be told apart) is served within a second or so of being
/// written; an invalid change is logged and the running certificate stays. Basic auth guards
/// `/-/ready` and `/probe` as it guards `/metrics` (only `/-/healthy` is open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_and_an_invalid_change_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("web test CA");
    let agent = secured_agent(dir.path(), &ca, "").await;
    let p = |f: &str| dir.path().join(f).display().to_string();
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", agent.port);
    let auth = format!("{USER}:{PASSWORD}");
    let old_ca = p("ca.pem");
    let (code, _) = curl(&["--cacert", &old_ca, "-u", &auth, &url("/metrics")]);
    assert_eq!(code, "200");

    // Behind basic auth: readiness and probes too, liveness not.
    for path in ["/-/ready", "/probe?target=a", "/status", "/"] {
        let (code, _) = curl(&["--cacert", &old_ca, &url(path)]);
        assert_eq!(code, "401", "{path} without credentials");
    }
    let (code, body) = curl(&["--cacert", &old_ca, "-u", &auth, &url("/-/ready")]);
    assert_eq!((code.as_str(), body.trim()), ("200", "Ready"));
    let (code, body) = curl(&["--cacert", &old_ca, "-u", &auth, &url("/probe?target=nope")]);
    assert_eq!(code, "400", "{body}");
    let (code, _) = curl(&["--cacert", &old_ca, &url("/-/healthy")]);
    assert_eq!(code, "200");

    // Renewed, from another CA: the next connections get it.
    let renewed = TestCa::new("renewed CA");
    std::fs::write(dir.path().join("renewed-ca.pem"), renewed.pem()).unwrap();
    let cert = renewed.loopback_cert();
    std::fs::write(dir.path().join("server.key"), cert.key_pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), cert.chain_pem()).unwrap();
    let new_ca = p("renewed-ca.pem");
    curl_until(
        "200",
        &["--cacert", &new_ca, "-u", &auth, &url("/metrics")],
        &agent,
    );
    let (code, _) = curl(&["--cacert", &old_ca, "-u", &auth, &url("/metrics")]);
    assert_eq!(code, "000", "the old certificate is still served");
    assert!(agent.log_text().contains("web configuration reloaded"));

    // A broken change: logged, and the renewed certificate stays in service.
    std::fs::write(dir.path().join("server.pem"), "not a certificate\n").unwrap();
    let started = Instant::now();
    while !agent.log_text().contains("invalid web configuration") {
        let (code, _) = curl(&["--cacert", &new_ca, "-u", &auth, &url("/metrics")]);
        assert_eq!(
            code, "200",
            "a broken certificate file stopped the endpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the broken change was not noticed:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _) = curl(&["--cacert", &new_ca, "-u", &auth, &url("/metrics")]);
    assert_eq!(code, "200");
    // Logged once, not once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _) = curl(&["--cacert", &new_ca, "-u", &auth, &url("/metrics")]);
    assert_eq!(code, "200");
    assert_eq!(
        agent
            .log_text()
            .matches("invalid web configuration")
            .count(),
        1
    );
    agent.stop();
}
