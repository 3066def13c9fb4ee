//! Shared test helpers: a simulator with a tenant, configs written to a temp dir, an agent on
//! 127.0.0.1:0, scraping and reading series from the live `/metrics`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use smtp_oauth_exporter::agent::{Agent, ServeOptions};
use smtp_oauth_exporter::plan::Plan;
use smtp_oauth_exporter::sim::Simulator;

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";

/// A client ID made from a small number, so tests can name many apps.
pub fn client_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A simulator with one tenant, plus a temp dir holding its CA file.
pub struct World {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

impl World {
    pub async fn new() -> World {
        let sim = Simulator::start().await.expect("start simulator");
        sim.add_tenant(TENANT, &[TENANT_DOMAIN]);
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &sim.ca_pem).expect("write CA");
        World { sim, dir, ca_file }
    }

    /// Writes a file into the temp dir and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p.display().to_string()
    }

    /// The endpoint fields every app in a test needs: login/Graph URLs and the CA file.
    pub fn endpoints(&self) -> String {
        format!(
            "login_url: {base}\n    graph_url: {base}\n    ca_file: {ca}",
            base = self.sim.base_url(),
            ca = self.ca_file.display()
        )
    }

    /// Parses a config written by a test (relative paths resolve in the temp dir).
    pub fn config(&self, yaml: &str) -> Plan {
        match smtp_oauth_exporter::config::from_yaml(yaml, "test.yml", self.dir.path()) {
            Ok(c) => c,
            Err(e) => panic!("test config is invalid: {e}\n{yaml}"),
        }
    }

    /// An app of the simulated tenant in one call: registered in the simulator with client ID
    /// `client_id(n)` and a client secret valid for 300 days, the secret in a file; returns the
    /// app's block for the configuration's `apps:` (as [`secret_app`] writes it).
    pub fn app_with_secret(&self, n: u32, name: &str, secret: &str) -> String {
        let now = chrono::Utc::now();
        let id = client_id(n);
        self.sim.add_app(
            smtp_oauth_exporter::sim::SimApp::new(TENANT, &id, name).with_secret(
                secret,
                None,
                now,
                now + chrono::Duration::days(300),
            ),
        );
        let file = self.file(&format!("{name}.secret"), secret);
        secret_app(self, name, &id, &file, "")
    }

    pub async fn agent(&self, yaml: &str) -> Agent {
        Agent::start(self.config(yaml), &ServeOptions::default())
            .await
            .expect("start agent")
    }
}

/// GET `/metrics` over HTTP from a running agent.
pub async fn scrape(agent: &Agent) -> String {
    let url = format!("http://{}/metrics", agent.local_addr());
    let resp = reqwest::get(&url).await.expect("scrape");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("scrape body")
}

/// The value of the series `name{labels}` (labels given as `k="v"` pairs, any order, subset).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, v) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, rest) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")))
        {
            return v.parse().ok();
        }
    }
    None
}

/// Asserts that the page says the last `check` run of `target` failed with `reason`.
#[track_caller]
pub fn assert_reason(text: &str, check: &str, target: &str, reason: &str) {
    assert_eq!(
        value(
            text,
            "smtp_oauth_check_failure_info",
            &[("check", check), ("target", target), ("reason", reason)]
        ),
        Some(1.0),
        "the {check} check of {target} should have failed with {reason}; the page:\n{text}"
    );
}

/// Scrapes until `pred` holds on the text, or panics with the last scrape after `limit`.
pub async fn wait_for(
    agent: &Agent,
    limit: Duration,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = scrape(agent).await;
        if pred(&text) {
            return text;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}; last scrape:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A mailbox line for a config's `mailboxes:`, its SMTP at the simulator's port `port`.
pub fn mailbox_line(name: &str, app: &str, address: &str, port: u16) -> String {
    format!("  - {{ name: {name}, app: {app}, address: {address}, smtp_host: 127.0.0.1, smtp_port: {port} }}\n")
}

/// A secret-credential app block for a config.
pub fn secret_app(
    world: &World,
    name: &str,
    client: &str,
    secret_file: &str,
    extra: &str,
) -> String {
    format!(
        "  - name: {name}\n    tenant: {TENANT}\n    client_id: {client}\n    client_secret_file: {secret_file}\n    {}\n{extra}",
        world.endpoints()
    )
}

/// The agent binary, started as a process with its log in a file.
pub struct Process {
    pub child: std::process::Child,
    pub log: PathBuf,
    pub port: u16,
}

impl Process {
    /// Starts the binary with `args` (plus `--web.listen-address 127.0.0.1:0`) and waits for
    /// the port it logs.
    pub async fn start(args: &[&str], log: PathBuf) -> Process {
        Self::start_with_open_files(None, args, log).await
    }

    /// [`Process::start`] with the soft and hard limit on open files set to `limit` (by the
    /// shell's `ulimit -n`, so that the agent cannot raise it).
    pub async fn start_with_open_files(limit: Option<u32>, args: &[&str], log: PathBuf) -> Process {
        Self::start_under(limit.map(|n| format!("ulimit -n {n}")), args, log).await
    }

    /// [`Process::start`] with the soft limit on open files at `limit` and the hard one left as
    /// it is: what a shell or systemd gives a service by default (soft 1024), whatever this
    /// test process raised its own limit to.
    pub async fn start_with_soft_open_files(limit: u32, args: &[&str], log: PathBuf) -> Process {
        Self::start_under(Some(format!("ulimit -Sn {limit}")), args, log).await
    }

    async fn start_under(ulimit: Option<String>, args: &[&str], log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).expect("log file");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--web.listen-address", "127.0.0.1:0"]);
        let binary = env!("CARGO_BIN_EXE_smtp-oauth-exporter");
        let mut command = match ulimit {
            None => std::process::Command::new(binary),
            Some(u) => {
                let mut c = std::process::Command::new("sh");
                c.args(["-c", &format!("{u} && exec \"$0\" \"$@\""), binary]);
                c
            }
        };
        let child = command
            .args(&all)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start the agent binary");
        let port = listen_port(&log).await;
        Process { child, log, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for the agent")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The port from the agent's start-up line (`listen_address=127.0.0.1:PORT` in either format).
pub async fn listen_port(log: &std::path::Path) -> u16 {
    for _ in 0..200 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(i) = text.find("listen_address") {
            if let Some(j) = text[i..].find("127.0.0.1:") {
                let digits: String = text[i + j + 10..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(p) = digits.parse() {
                    return p;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the agent did not log its listen address:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Runs the binary to completion (the `check` command): stdout, stderr, exit code.
pub fn run_binary(args: &[&str]) -> (String, String, i32) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smtp-oauth-exporter"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the binary");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// A loopback port that refuses connections for as long as this lives: bound, never listening
/// (no bind-then-close race with another test taking the port).
pub struct RefusingPort {
    _socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl RefusingPort {
    pub fn new() -> RefusingPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().unwrap())
            .expect("bind a loopback port");
        let port = socket.local_addr().unwrap().port();
        RefusingPort {
            _socket: socket,
            port,
        }
    }
}

/// Runs promtool's `check metrics` on an exposition; panics with its report unless clean.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool is required (scripts/test.sh installs it from the prometheus package): {e}"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}\n--- exposition ---\n{text}"
    );
}

/// [`run_binary`] off the async workers, so that a simulator on this runtime keeps serving.
pub async fn run_binary_async(args: &[&str]) -> (String, String, i32) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_binary(&refs)
    })
    .await
    .expect("binary task")
}

/// A request the [`http_receiver`] got: its path, `Authorization` header and JSON body.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub body: serde_json::Value,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl std::ops::Index<&str> for Received {
    type Output = serde_json::Value;
    fn index(&self, key: &str) -> &serde_json::Value {
        &self.body[key]
    }
}

/// What an [`http_receiver`] got so far.
pub type Inbox = std::sync::Arc<std::sync::Mutex<Vec<Received>>>;

/// A minimal HTTP/1.1 receiver on loopback (an Alertmanager webhook, Alertmanager's own API):
/// records each request with a JSON body (its `Index` reads the body) and answers 200.
pub async fn http_receiver() -> (u16, Inbox) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox: Inbox = Default::default();
    let sink = inbox.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let authorization = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("authorization")
                        .then(|| v.trim().to_string())
                });
                let body = serde_json::from_slice(&buf[head_end..head_end + length])
                    .unwrap_or(serde_json::Value::Null);
                sink.lock().unwrap().push(Received {
                    path,
                    authorization,
                    body,
                    received_at: chrono::Utc::now(),
                });
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (port, inbox)
}

/// The `cause` label of a target's `smtp_oauth_verdict` series on a scrape.
pub fn verdict_cause(text: &str, target: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(&format!("smtp_oauth_verdict{{target=\"{target}\",")))
        .and_then(|l| l.split("cause=\"").nth(1))
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
}
