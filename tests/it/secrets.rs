//! Secrets and tokens never reach logs, metrics or any other output: the real binary runs
//! against the simulator with a fleet that succeeds and fails, at debug level, in both log
//! formats; everything it prints, every scrape, `/status`, the status page, every `/probe`
//! answer and every output of the `check` command (text, JSON, Nagios, a test message) is
//! searched for the client secrets, the private key and every access token the simulator issued.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::common::*;
use crate::fixtures::fleet;

/// Every line is one record of the format: JSON objects with `ts`, a lower-case `level`, `msg`
/// and numbers as numbers; logfmt lines with the same keys and no `\'` escapes.
fn check_log_lines(format: &str, log: &str) {
    let mut n = 0;
    for line in log.lines() {
        n += 1;
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(v["ts"].is_string() && v["msg"].is_string(), "{line}");
            assert!(
                ["debug", "info", "warn", "error"].contains(&v["level"].as_str().unwrap_or("")),
                "{line}"
            );
            if let Some(d) = v.get("duration_seconds") {
                assert!(d.is_number(), "{line}");
            }
        } else {
            assert!(
                line.starts_with("ts=") && line.contains(" level="),
                "{line}"
            );
            assert!(!line.contains("\\'"), "an escaped apostrophe: {line}");
        }
    }
    assert!(n > 10, "{format}: {n} lines");
}

/// The failures the fleet has (each searched output must cover them) ...
const FAILURES: [&str; 6] = [
    "secret_expired",
    "secret_invalid",
    "http_error",
    "auth_rejected",
    "token_unavailable",
    "starttls_missing",
];
/// ... and its successes (target, check).
const SUCCESSES: [(&str, &str); 7] = [
    ("good", "token"),
    ("ok", "smtp"),
    ("cert-mb", "smtp"),
    ("ok", "canary"),
    ("good", "health"),
    ("good", "activity"),
    (TENANT, "traffic"),
];

/// The fleet's apps and mailboxes.
const TARGETS: [&str; 10] = [
    "good", "stale", "wrong", "cert", "inline", "ok", "cert-mb", "denied", "stale-mb", "plain",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_key_or_token_in_any_output() {
    let w = World::new().await;
    let f = fleet(&w).await;
    let config = w.file("fleet.yml", &f.yaml);
    let mut printed = String::new();
    let mut scrapes = Vec::new();
    for format in ["logfmt", "json"] {
        let out = w.dir.path().join(format!("{format}.log"));
        let log = std::fs::File::create(&out).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_smtp-oauth-exporter"))
            .args([
                "--config.file",
                &config,
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.level",
                "debug",
                "--log.format",
                format,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the agent binary");
        // The agent picks its port (no bind-release-rebind race) and logs it.
        let port = listen_port(&out).await;
        let url = format!("http://127.0.0.1:{port}/metrics");
        // Scrape until every failure of the fleet has happened twice and every healthy check
        // has passed: the searched output covers success and error paths.
        let start = std::time::Instant::now();
        loop {
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            let done = FAILURES.iter().all(|reason| {
                text.lines().any(|l| {
                    l.starts_with("smtp_oauth_check_failures_total{")
                        && l.contains(&format!("reason=\"{reason}\""))
                        && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(2.0)
                })
            }) && SUCCESSES.iter().all(|(target, check)| {
                value(
                    &text,
                    "smtp_oauth_check_success",
                    &[("check", check), ("target", target)],
                ) == Some(1.0)
            });
            scrapes.push(text);
            if done {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the fleet's failures and successes did not all show:\n{}",
                scrapes.last().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Every other path: the status document, the page, the alerts, health and readiness, a
        // page that does not exist, and a probe of every target and check (failures included).
        let mut paths: Vec<(String, u16)> = ["/status", "/", "/alerts", "/-/healthy", "/-/ready"]
            .iter()
            .map(|p| (p.to_string(), 200))
            .collect();
        paths.push(("/no-such-page".into(), 404));
        for t in TARGETS {
            paths.push((format!("/probe?target={t}"), 200));
            for c in ["token", "graph"] {
                paths.push((format!("/probe?target={t}&check={c}"), 200));
            }
        }
        for (p, status) in &paths {
            let r = reqwest::get(format!("http://127.0.0.1:{port}{p}"))
                .await
                .expect("the agent answers");
            assert_eq!(r.status(), *status, "{p}");
            scrapes.push(r.text().await.unwrap_or_default());
        }
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "the agent did not stop cleanly on SIGTERM: {status}"
        );
        let log = std::fs::read_to_string(&out).unwrap();
        check_log_lines(format, &log);
        printed += &log;
    }
    // The check command, in every output, at debug level, and sending a test message.
    for args in [
        vec!["check", "--output", "text"],
        vec!["check", "--output", "json"],
        vec!["check", "--output", "nagios"],
        vec!["check", "ok", "--send-test-to", "helpdesk@contoso.com"],
        vec!["check", "stale-mb", "denied", "--log.format", "json"],
    ] {
        let mut all = args.clone();
        all.extend(["--config.file", &config, "--log.level", "debug"]);
        let (out, err, _) = run_binary_async(&all).await;
        assert!(!out.is_empty(), "{args:?} printed nothing: {err}");
        printed += &out;
        printed += &err;
    }
    assert_eq!(
        w.sim
            .messages()
            .iter()
            .filter(|m| m.recipients == ["helpdesk@contoso.com"])
            .count(),
        1,
        "the test message went out"
    );
    let all_scrapes = scrapes.join("\n");
    // The canaries ran (the Junk one failed), and the service health issue was read: their
    // paths are in the outputs searched below.
    assert!(
        all_scrapes.contains("reason=\"delivered_to_junk\""),
        "the Junk canary"
    );
    assert!(printed.contains("EX777"), "the incident is logged");
    crate::canary::assert_only_the_canarys_messages(&w);
    assert!(
        scrapes.len() >= 10,
        "expected many scrapes, got {}",
        scrapes.len()
    );

    // The run had failures and successes of each kind, so the search below covers error paths.
    for (target, check) in SUCCESSES {
        assert!(
            all_scrapes.contains(&format!(
                "smtp_oauth_check_success{{check=\"{check}\",target=\"{target}\"}} 1"
            )),
            "{target}"
        );
    }
    for reason in FAILURES {
        assert!(
            all_scrapes.contains(&format!("reason=\"{reason}\"")),
            "no {reason} in the run"
        );
    }
    assert!(
        printed.contains("check failed") && printed.contains("check succeeded"),
        "logs:\n{printed}"
    );
    assert!(
        printed.contains("client secret inline"),
        "the inline secret is warned about"
    );

    let tokens = w.sim.issued_tokens();
    assert!(tokens.len() >= 3, "tokens were issued: {}", tokens.len());
    let mut needles: Vec<(String, String)> = Vec::new();
    for s in &f.secrets {
        needles.push(("client secret".into(), s.clone()));
        // ... and as it goes on the wire, form-encoded (`~` becomes %7E).
        let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        needles.push(("form-encoded client secret".into(), encoded));
    }
    let assertions = w.sim.received_assertions();
    assert!(
        !assertions.is_empty(),
        "the certificate app sent client assertions"
    );
    for a in assertions {
        needles.push((
            "client assertion signature".into(),
            a.rsplit('.').next().unwrap().to_string(),
        ));
        needles.push(("client assertion".into(), a));
    }
    for line in f.cert.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        needles.push(("private key line".into(), line.to_string()));
    }
    for t in &tokens {
        needles.push(("access token".into(), t.clone()));
        // The signature part alone, and the XOAUTH2 blob as it goes on the wire.
        needles.push((
            "token signature".into(),
            t.rsplit('.').next().unwrap().to_string(),
        ));
        for user in ["ok@contoso.com", "cert@contoso.com", "denied@contoso.com"] {
            let blob = base64::engine::general_purpose::STANDARD
                .encode(format!("user={user}\x01auth=Bearer {t}\x01\x01"));
            needles.push(("XOAUTH2 blob".into(), blob));
        }
    }
    for (what, needle) in &needles {
        assert!(
            !printed.contains(needle.as_str()),
            "a {what} appears in the log or command output"
        );
        assert!(
            !all_scrapes.contains(needle.as_str()),
            "a {what} appears in a scrape, /status, the page or a probe"
        );
    }
}

/// Pieces of secrets to search outputs for: every run of `len` bytes of each (a secret cut
/// short still gives most of it away), found in one pass over a text.
#[derive(Default)]
struct Pieces {
    /// By length: piece -> what it is a piece of.
    by_len: std::collections::BTreeMap<usize, std::collections::HashMap<Vec<u8>, String>>,
}

impl Pieces {
    fn add(&mut self, what: &str, secret: &str, len: usize) {
        let b = secret.as_bytes();
        let len = len.min(b.len());
        let map = self.by_len.entry(len).or_default();
        for w in b.windows(len) {
            map.entry(w.to_vec()).or_insert_with(|| what.to_string());
        }
    }

    /// What the pieces found in `text` are pieces of, each once.
    fn found_in(&self, text: &str) -> Vec<String> {
        let mut found = std::collections::BTreeSet::new();
        for (len, map) in &self.by_len {
            for w in text.as_bytes().windows(*len) {
                if let Some(what) = map.get(w) {
                    found.insert(what.clone());
                }
            }
        }
        found.into_iter().collect()
    }
}

/// The inline secret of an app in the places a configuration error can come from: a field of
/// the wrong type, a wrong mapping, broken YAML around it, another credential beside it.
const INLINE_SECRET: &str = "Kx9~inline-Secret-value-5f2c7e1d9aQ";

fn app_with(line: &str) -> String {
    format!(
        "apps:\n  - name: billing\n    tenant: 11111111-2222-3333-4444-555555555555\n    client_id: 1f0c5a7e-2b8d-4e51-9a3c-6d2f8b1e4a70\n    {line}\n"
    )
}

/// The configuration error for `yaml`, which must not load.
fn config_error(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    match smtp_oauth_exporter::config::from_yaml(yaml, "config.yml", dir.path()) {
        Ok(_) => panic!("loaded:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_configuration_error_never_shows_the_inline_secret() {
    let s = INLINE_SECRET;
    let cases = [
        ("a list", app_with(&format!("client_secret: [ \"{s}\" ]"))),
        (
            "a block list",
            app_with(&format!("client_secret:\n      - {s}")),
        ),
        (
            "a map",
            app_with(&format!("client_secret: {{ value: \"{s}\" }}")),
        ),
        (
            "a map key",
            app_with(&format!("client_secret: {{ {s}: 1 }}")),
        ),
        (
            "beside another credential",
            app_with(&format!("client_secret: {s}\n    client_secret_env: HOME")),
        ),
        (
            "an unterminated quote",
            app_with(&format!("client_secret: \"{s}\n    cloud: global")),
        ),
        ("a stray colon", app_with(&format!("client_secret: {s}: x"))),
        (
            "a tab",
            app_with(&format!("client_secret:\t{s}\n\t  cloud: global")),
        ),
        ("an unknown field", app_with(&format!("clientsecret: {s}"))),
    ];
    let needles = pieces(s);
    let mut problems = Vec::new();
    for (what, yaml) in &cases {
        let err = config_error(yaml);
        if !needles.found_in(&err).is_empty() {
            problems.push(format!("{what}: {err}"));
        }
    }
    assert_eq!(cases.len(), 9);
    assert!(
        problems.is_empty(),
        "the secret is in the error:\n{}",
        problems.join("\n")
    );
}

/// Every 12-character piece of a secret.
fn pieces(secret: &str) -> Pieces {
    let mut p = Pieces::default();
    p.add("a 12-character piece of the secret", secret, 12);
    p
}

/// A secret pasted into `client_id` or `tenant` (both sit beside the secret in the portal) is
/// not a GUID: the error says so without echoing the value, which it may do for a short value
/// that cannot be a secret (`my-app`).
#[test]
fn a_secret_pasted_into_client_id_or_tenant_is_not_echoed() {
    let s = INLINE_SECRET;
    let good = "apps:\n  - name: billing\n    tenant: 11111111-2222-3333-4444-555555555555\n    client_id: 1f0c5a7e-2b8d-4e51-9a3c-6d2f8b1e4a70\n    client_secret_env: HOME\n";
    let mut problems = Vec::new();
    for (field, value) in [
        ("client_id", "1f0c5a7e-2b8d-4e51-9a3c-6d2f8b1e4a70"),
        ("tenant", "11111111-2222-3333-4444-555555555555"),
    ] {
        let yaml = good.replace(&format!("{field}: {value}"), &format!("{field}: {s}"));
        assert_ne!(yaml, good);
        let err = config_error(&yaml);
        assert!(err.contains(&format!("apps[0].{field}")), "{err}");
        if !pieces(s).found_in(&err).is_empty() {
            problems.push(format!("{field}: {err}"));
        }
    }
    assert!(
        problems.is_empty(),
        "the secret is in the error:\n{}",
        problems.join("\n")
    );
}

/// Servers that echo what the agent sent: the token endpoint quotes the client secret or the
/// client assertion in its error description, or returns a page quoting the form with the
/// credential across the first 120 bytes (what the agent logs of a page); Graph quotes the
/// bearer token; Exchange quotes the XOAUTH2 response and the token in its 535. The binary runs
/// them at debug level: its log, every scrape, `/status`, `/`, `/alerts` and every probe hold no
/// piece of any of it (12 characters of a secret, 24 of an assertion or a token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_echoing_the_credential_gets_it_redacted_everywhere() {
    use smtp_oauth_exporter::sim::GraphFault;
    use smtp_oauth_exporter::sim::{
        app_certificate, SimApp, SmtpFault, TokenFault, ROLE_APPLICATION_READ_ALL,
    };

    let w = World::new().await;
    let now = chrono::Utc::now();
    let days = chrono::Duration::days;
    let secret = "Ech0~q8Zr2VbN7xKp4LmW9sTy3HdF6gJc1";
    let cert = app_certificate("echo-cert");
    let file = w.file("echo.secret", secret);
    let crt = w.file("echo.crt", &cert.cert_pem);
    let key = w.file("echo.key", &cert.key_pem);
    let echo = w.sim.start_smtp(Some(SmtpFault::EchoAuth)).await.unwrap();
    // (app, certificate credential, token fault, Graph fault, expected failure (check, reason))
    let apps = [
        (
            "echo-secret",
            false,
            Some(TokenFault::EchoCredential),
            None,
            ("token", "secret_invalid"),
        ),
        (
            "echo-form",
            false,
            Some(TokenFault::EchoForm),
            None,
            ("token", "invalid_response"),
        ),
        (
            "echo-assertion",
            true,
            Some(TokenFault::EchoCredential),
            None,
            ("token", "secret_invalid"),
        ),
        (
            "echo-assertion-form",
            true,
            Some(TokenFault::EchoForm),
            None,
            ("token", "invalid_response"),
        ),
        (
            "echo-base64",
            false,
            Some(TokenFault::EchoBase64),
            None,
            ("token", "secret_invalid"),
        ),
        (
            "echo-assertion-base64",
            true,
            Some(TokenFault::EchoBase64),
            None,
            ("token", "secret_invalid"),
        ),
        (
            "echo-graph",
            false,
            None,
            Some(GraphFault::EchoToken),
            ("graph", "http_error"),
        ),
        ("mailer", false, None, None, ("token", "")),
    ];
    let mut yaml = String::from(
        "scheduler: { startup_spread: 200ms }\ndefaults:\n  checks:\n    token: { schedule: 1s, timeout: 2s }\n    smtp: { schedule: 1s, timeout: 3s }\n    graph: { enabled: false, schedule: 1s, timeout: 3s }\napps:\n",
    );
    for (i, (name, with_cert, token_fault, graph_fault, _)) in apps.iter().enumerate() {
        let id = client_id(50 + i as u32);
        let mut app = SimApp::new(TENANT, &id, name).with_graph_role(ROLE_APPLICATION_READ_ALL);
        app = if *with_cert {
            app.with_certificate(cert.cert_der.clone(), None, now - days(1), now + days(90))
        } else {
            app.with_secret(secret, None, now - days(1), now + days(90))
        };
        w.sim.add_app(app);
        w.sim.set_token_fault(&id, token_fault.clone());
        w.sim.set_graph_fault(&id, graph_fault.clone());
        let credential = if *with_cert {
            format!("certificate: {{ cert_file: {crt}, key_file: {key} }}")
        } else {
            format!("client_secret_file: {file}")
        };
        let graph = if graph_fault.is_some() {
            "\n    checks: { graph: { enabled: true } }"
        } else {
            ""
        };
        yaml += &format!(
            "  - name: {name}\n    tenant: {TENANT}\n    client_id: {id}\n    {credential}\n    {}{graph}\n",
            w.endpoints()
        );
        if *name == "mailer" {
            w.sim.add_mailbox("echo@contoso.com", &[&id]);
        }
    }
    yaml += &format!(
        "mailboxes:\n  - {{ name: echo-smtp, app: mailer, address: echo@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
        echo.port()
    );
    let config = w.file("echo.yml", &yaml);
    let agent = Process::start(
        &["--config.file", &config, "--log.level", "debug"],
        w.dir.path().join("echo.log"),
    )
    .await;
    let mut expected: Vec<(&str, &str, &str)> = apps
        .iter()
        .filter(|a| !a.4 .1.is_empty())
        .map(|(name, _, _, _, (check, reason))| (*name, *check, *reason))
        .collect();
    expected.push(("echo-smtp", "smtp", "auth_rejected"));
    let mut outputs = Vec::new();
    let start = std::time::Instant::now();
    loop {
        let text = reqwest::get(agent.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let done = expected.iter().all(|(target, check, reason)| {
            value(
                &text,
                "smtp_oauth_check_failures_total",
                &[("check", check), ("target", target), ("reason", reason)],
            ) >= Some(2.0)
        });
        outputs.push(text);
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not every echo failed twice as expected:\n{}",
            outputs.last().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut paths: Vec<String> = ["/status", "/", "/alerts", "/-/healthy", "/-/ready"]
        .iter()
        .map(|p| p.to_string())
        .collect();
    for (target, check, _) in &expected {
        paths.push(format!("/probe?target={target}&check={check}"));
    }
    for p in &paths {
        let r = reqwest::get(agent.url(p)).await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        outputs.push(r.text().await.unwrap());
    }
    let log = agent.log_text();
    let status = agent.stop();
    assert!(status.success(), "{status}");
    // The echoes reached the agent: its log has the failures they caused.
    assert!(log.contains("[redacted]"), "nothing was redacted:\n{log}");

    let mut needles = Pieces::default();
    needles.add("a piece of the client secret", secret, 12);
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    needles.add("a piece of the form-encoded secret", &encoded, 12);
    // The base64 forms, alone and inside `Basic base64(client_id:secret)`: the characters made
    // of the secret's bits alone (the client ID ahead of it is no secret).
    for (name, ..) in apps.iter().filter(|a| a.2 == Some(TokenFault::EchoBase64)) {
        let i = apps.iter().position(|a| a.0 == *name).unwrap();
        let id = client_id(50 + i as u32);
        let sent: Vec<String> = if name.contains("assertion") {
            w.sim.received_assertions()
        } else {
            vec![secret.to_string()]
        };
        for s in sent {
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ] {
                needles.add("a piece of the base64 credential", &engine.encode(&s), 12);
            }
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{s}"));
            let from = (8 * (id.len() + 1)).div_ceil(6);
            needles.add("a piece of the credential in Basic", &basic[from..], 12);
        }
    }
    let assertions = w.sim.received_assertions();
    assert!(assertions.len() >= 4, "{} assertions", assertions.len());
    let tokens = w.sim.issued_tokens();
    assert!(tokens.len() >= 2, "{} tokens", tokens.len());
    // A JWT's header (`{"typ":"JWT","alg":...}`) is the same in every token: the pieces
    // searched are those of the claims and the signature.
    let claims_and_signature = |jwt: &str| jwt.split_once('.').map_or(jwt, |x| x.1).to_string();
    for a in &assertions {
        needles.add(
            "a piece of a client assertion",
            &claims_and_signature(a),
            24,
        );
    }
    for t in &tokens {
        needles.add("a piece of an access token", &claims_and_signature(t), 24);
        let blob = base64::engine::general_purpose::STANDARD
            .encode(format!("user=echo@contoso.com\x01auth=Bearer {t}\x01\x01"));
        needles.add("a piece of the XOAUTH2 response", &blob, 24);
    }
    let mut found: Vec<String> = needles
        .found_in(&log)
        .into_iter()
        .map(|w| format!("{w} in the log"))
        .collect();
    for (i, out) in outputs.iter().enumerate() {
        found.extend(
            needles
                .found_in(out)
                .into_iter()
                .map(|w| format!("{w} in output {i} ({})", out.lines().next().unwrap_or(""))),
        );
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
