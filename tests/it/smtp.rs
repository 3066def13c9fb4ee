//! SMTP check over loopback against the simulator's Exchange endpoint: every failure reason on
//! the live `/metrics`, no credential without STARTTLS, bounded memory against endless lines.

use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::checks::smtp::Phase;
use smtp_oauth_exporter::sim::{SimApp, SmtpFault, SmtpStep, TokenFault};

use crate::common::*;

const APP: u32 = 7;
const BROKEN_APP: u32 = 8;

/// A world with two apps: `mail-app` (healthy) and `broken-app` (expired secret).
async fn world() -> World {
    let w = World::new().await;
    let now = Utc::now();
    for n in [APP, BROKEN_APP] {
        w.sim
            .add_app(SimApp::new(TENANT, &client_id(n), "mail").with_secret(
                "Sec~mail-app-value",
                None,
                now,
                now + chrono::Duration::days(30),
            ));
    }
    w.sim
        .set_token_fault(&client_id(BROKEN_APP), Some(TokenFault::ExpiredSecret));
    w
}

fn apps(w: &World, smtp: &str) -> String {
    let file = w.file("mail.secret", "Sec~mail-app-value");
    format!(
        "scheduler:\n  startup_spread: 200ms\nmetrics:\n  detail: true\ndefaults:\n  checks:\n    token: {{ enabled: false }}\n    graph: {{ enabled: false }}\n    smtp: {smtp}\napps:\n{}{}mailboxes:\n",
        secret_app(w, "mail-app", &client_id(APP), &file, ""),
        secret_app(w, "broken-app", &client_id(BROKEN_APP), &file, ""),
    )
}

fn mailbox(name: &str, app: &str, host: &str, port: u16, extra: &str) -> String {
    format!("  - name: {name}\n    app: {app}\n    address: {name}@contoso.com\n    smtp_host: {host}\n    smtp_port: {port}\n{extra}")
}

/// (mailbox, fault of its own listener, expected reason, failed phase, reply code, enhanced code)
type Case = (
    &'static str,
    Option<SmtpFault>,
    &'static str,
    &'static str,
    u16,
    &'static str,
);

fn reply(at: SmtpStep, code: u16, text: &str) -> Option<SmtpFault> {
    Some(SmtpFault::Reply {
        at,
        code,
        text: text.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_reason_reaches_the_metrics() {
    let w = world().await;
    let app = client_id(APP);
    let cases: Vec<Case> = vec![
        ("timeout", Some(SmtpFault::BannerDelay(Duration::from_secs(60))), "timeout", "banner", 0, ""),
        ("tls-handshake", Some(SmtpFault::StartTlsThenGarbage), "tls_handshake", "tls", 0, ""),
        ("expired-cert", Some(SmtpFault::ExpiredCertificate), "tls_cert_invalid", "tls", 0, ""),
        ("wrong-host-cert", Some(SmtpFault::WrongHostCertificate), "tls_cert_invalid", "tls", 0, ""),
        ("no-starttls", Some(SmtpFault::NoStartTls), "starttls_missing", "ehlo", 0, ""),
        ("no-xoauth2", Some(SmtpFault::NoXoauth2), "xoauth2_not_offered", "ehlo", 0, ""),
        ("no-full-access", None, "auth_rejected", "auth", 535, "5.7.3"),
        ("mailbox-disabled", None, "smtp_auth_disabled", "auth", 535, "5.7.139"),
        ("tenant-disabled", Some(SmtpFault::TenantSmtpAuthDisabled), "smtp_auth_disabled", "auth", 535, "5.7.139"),
        (
            "old-tls",
            reply(SmtpStep::EhloAfterTls, 421, "4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2."),
            "tls_version",
            "ehlo",
            421,
            "4.7.66",
        ),
        ("concurrency", reply(SmtpStep::Auth, 432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"), "throttled", "auth", 432, "4.3.2"),
        ("busy-banner", reply(SmtpStep::Banner, 421, "4.7.0 Temporary server error. Please try again later."), "throttled", "banner", 421, "4.7.0"),
        ("busy-mail", reply(SmtpStep::MailFrom, 451, "4.7.0 Temporary server error. Please try again later. PRX4"), "throttled", "mail_from", 451, "4.7.0"),
        ("send-as-denied", Some(SmtpFault::DenyMailFrom), "send_as_denied", "mail_from", 554, "5.2.252"),
        ("garbage", Some(SmtpFault::GarbageBanner), "protocol_error", "banner", 0, ""),
        ("endless-line", Some(SmtpFault::EndlessLine), "protocol_error", "banner", 0, ""),
        ("dropped", Some(SmtpFault::DropAfterEhlo), "protocol_error", "starttls", 0, ""),
    ];
    let mut yaml = apps(&w, "{ schedule: 1s, timeout: 2s }");
    for (name, fault, ..) in &cases {
        let addr = w.sim.start_smtp(fault.clone()).await.unwrap();
        let full_access: &[&str] = if *name == "no-full-access" {
            &[]
        } else {
            &[&app]
        };
        w.sim
            .add_mailbox(&format!("{name}@contoso.com"), full_access);
        yaml += &mailbox(name, "mail-app", "127.0.0.1", addr.port(), "");
    }
    w.sim
        .set_mailbox_smtp_auth_disabled("mailbox-disabled@contoso.com", true);
    // Reasons that need no fault script: DNS, a closed port, the token.
    let closed = RefusingPort::new();
    yaml += &mailbox("dns", "mail-app", "does-not-exist.invalid", 587, "");
    yaml += &mailbox("refused", "mail-app", "127.0.0.1", closed.port, "");
    w.sim
        .add_mailbox("no-token@contoso.com", &[&client_id(BROKEN_APP)]);
    yaml += &mailbox(
        "no-token",
        "broken-app",
        "127.0.0.1",
        w.sim.smtp_addr.port(),
        "",
    );
    // And the healthy ones, one of them skipping verification of a wrong-host certificate.
    w.sim.add_mailbox("healthy@contoso.com", &[&app]);
    yaml += &mailbox(
        "healthy",
        "mail-app",
        "127.0.0.1",
        w.sim.smtp_addr.port(),
        "",
    );
    let wrong_host = w
        .sim
        .start_smtp(Some(SmtpFault::WrongHostCertificate))
        .await
        .unwrap();
    w.sim.add_mailbox("insecure@contoso.com", &[&app]);
    yaml += &mailbox(
        "insecure",
        "mail-app",
        "127.0.0.1",
        wrong_host.port(),
        "    tls_insecure_skip_verify: true\n",
    );

    let agent = w.agent(&yaml).await;
    let mut all: Vec<&str> = cases.iter().map(|c| c.0).collect();
    all.extend(["dns", "refused", "no-token", "healthy", "insecure"]);
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "every mailbox to have run",
        |t| {
            all.iter().all(|n| {
                value(
                    t,
                    "smtp_oauth_check_success",
                    &[("check", "smtp"), ("target", n)],
                )
                .is_some()
            })
        },
    )
    .await;

    let mut problems = Vec::new();
    for (name, _, reason, phase, code, enhanced) in &cases {
        if value(
            &text,
            "smtp_oauth_check_failure_info",
            &[("check", "smtp"), ("target", name), ("reason", reason)],
        ) != Some(1.0)
        {
            problems.push(format!("{name}: expected reason {reason}"));
        }
        if value(
            &text,
            "smtp_oauth_smtp_status_code",
            &[("target", name), ("phase", phase)],
        ) != Some(f64::from(*code))
        {
            problems.push(format!(
                "{name}: expected status code {code} at phase {phase}"
            ));
        }
        if !enhanced.is_empty()
            && value(
                &text,
                "smtp_oauth_smtp_enhanced_status_code_info",
                &[
                    ("target", name),
                    ("phase", phase),
                    ("enhanced_status_code", enhanced),
                ],
            ) != Some(1.0)
        {
            problems.push(format!("{name}: expected enhanced status code {enhanced}"));
        }
    }
    for (name, reason) in [("dns", "dns"), ("refused", "connect_refused")] {
        if value(
            &text,
            "smtp_oauth_check_failure_info",
            &[("target", name), ("reason", reason)],
        ) != Some(1.0)
        {
            problems.push(format!("{name}: expected reason {reason}"));
        }
    }
    // The token failure keeps its AADSTS code on the SMTP series too.
    if value(
        &text,
        "smtp_oauth_check_failure_info",
        &[
            ("target", "no-token"),
            ("reason", "token_unavailable"),
            ("aadsts", "7000222"),
        ],
    ) != Some(1.0)
    {
        problems.push("no-token: expected token_unavailable with aadsts 7000222".into());
    }
    assert!(problems.is_empty(), "{}\n{text}", problems.join("\n"));

    for name in ["healthy", "insecure"] {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_check_success",
                &[("check", "smtp"), ("target", name)]
            ),
            Some(1.0),
            "{name}\n{text}"
        );
    }
    assert_eq!(
        value(
            &text,
            "smtp_oauth_smtp_tls_insecure_skip_verify",
            &[("target", "insecure")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_smtp_tls_insecure_skip_verify",
            &[("target", "healthy")]
        ),
        None,
        "present only when switched off"
    );
    for phase in Phase::ALL.map(Phase::as_str) {
        assert!(
            value(
                &text,
                "smtp_oauth_smtp_duration_seconds",
                &[("target", "healthy"), ("phase", phase)]
            )
            .is_some(),
            "phase {phase}"
        );
    }
    // TLS facts belong to the endpoint, not the mailbox.
    let endpoint = format!("127.0.0.1:{}", w.sim.smtp_addr.port());
    assert!(value(
        &text,
        "smtp_oauth_smtp_tls_version_info",
        &[("endpoint", &endpoint), ("version", "TLS 1.3")]
    )
    .is_some());
    let expiry = value(
        &text,
        "smtp_oauth_smtp_ssl_earliest_cert_expiry",
        &[("endpoint", &endpoint)],
    )
    .unwrap();
    let in_a_year = (Utc::now() + chrono::Duration::days(365)).timestamp() as f64;
    assert!(
        (expiry - in_a_year).abs() < 3.0 * 86400.0,
        "leaf expires in about a year: {expiry}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_mailbox_info",
            &[
                ("target", "healthy"),
                ("app", "mail-app"),
                ("address", "healthy@contoso.com")
            ]
        ),
        Some(1.0)
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_starttls_no_auth_and_no_token_is_ever_sent() {
    let w = world().await;
    let addr = w.sim.start_smtp(Some(SmtpFault::NoStartTls)).await.unwrap();
    w.sim.add_mailbox("plain@contoso.com", &[&client_id(APP)]);
    // A healthy mailbox of the same app makes sure a token is in the cache all along.
    w.sim.add_mailbox("healthy@contoso.com", &[&client_id(APP)]);
    let yaml = apps(&w, "{ schedule: 1s, timeout: 2s }")
        + &mailbox("plain", "mail-app", "127.0.0.1", addr.port(), "")
        + &mailbox(
            "healthy",
            "mail-app",
            "127.0.0.1",
            w.sim.smtp_addr.port(),
            "",
        );
    let agent = w.agent(&yaml).await;
    wait_for(
        &agent,
        Duration::from_secs(10),
        "three refusals and a healthy run",
        |t| {
            value(
                t,
                "smtp_oauth_check_failures_total",
                &[("target", "plain"), ("reason", "starttls_missing")],
            )
            .unwrap_or(0.0)
                >= 3.0
                && value(t, "smtp_oauth_check_success", &[("target", "healthy")]) == Some(1.0)
        },
    )
    .await;
    agent.stop().await;
    let tokens = w.sim.issued_tokens();
    assert!(!tokens.is_empty(), "the healthy mailbox got a token");
    let transcripts: Vec<_> = w
        .sim
        .smtp_transcripts()
        .into_iter()
        .filter(|t| t.listener == Some(addr))
        .collect();
    assert!(transcripts.len() >= 3);
    for t in &transcripts {
        // EHLO, then the agent hangs up.
        assert_eq!(t.lines.len(), 1, "{:?}", t.lines);
        assert!(t.lines[0].starts_with("EHLO "), "{:?}", t.lines);
        for line in &t.lines {
            assert!(
                !line.to_ascii_uppercase().starts_with("AUTH"),
                "AUTH sent without TLS: {line}"
            );
            assert!(
                !line.to_ascii_uppercase().starts_with("MAIL"),
                "MAIL sent without TLS: {line}"
            );
            for tok in &tokens {
                assert!(!line.contains(tok.as_str()), "token sent without TLS");
            }
        }
    }
}

/// A downgrade that goes further: something in the path strips STARTTLS *and* offers
/// `AUTH XOAUTH2` in clear, which the server would take (a client below proves it). The agent
/// sends no AUTH line and no token, every time, and says `starttls_missing` (verdict
/// `starttls_stripped`); the simulator's transcript of every connection is the evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downgrade_offering_auth_in_clear_gets_no_auth_and_no_token() {
    use base64::Engine;
    use tokio::io::AsyncWriteExt;

    let w = world().await;
    let addr = w
        .sim
        .start_smtp(Some(SmtpFault::AuthInClear))
        .await
        .unwrap();
    w.sim.add_mailbox("plain@contoso.com", &[&client_id(APP)]);
    w.sim.add_mailbox("healthy@contoso.com", &[&client_id(APP)]);
    let yaml = apps(&w, "{ schedule: 1s, timeout: 2s }")
        + &mailbox("plain", "mail-app", "127.0.0.1", addr.port(), "")
        + &mailbox(
            "healthy",
            "mail-app",
            "127.0.0.1",
            w.sim.smtp_addr.port(),
            "",
        );
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "three refusals while a token is in the cache",
        |t| {
            value(
                t,
                "smtp_oauth_check_failures_total",
                &[("target", "plain"), ("reason", "starttls_missing")],
            )
            .unwrap_or(0.0)
                >= 3.0
                && value(t, "smtp_oauth_check_success", &[("target", "healthy")]) == Some(1.0)
        },
    )
    .await;
    agent.stop().await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_verdict",
            &[
                ("target", "plain"),
                ("step", "network"),
                ("cause", "starttls_stripped")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    let tokens = w.sim.issued_tokens();
    assert!(!tokens.is_empty(), "the healthy mailbox got a token");
    let runs = value(
        &text,
        "smtp_oauth_check_runs_total",
        &[("target", "plain"), ("result", "failure")],
    )
    .unwrap();
    let transcripts: Vec<_> = w
        .sim
        .smtp_transcripts()
        .into_iter()
        .filter(|t| t.listener == Some(addr))
        .collect();
    // One connection per run (the last may have come after the scrape).
    assert!(
        transcripts.len() as f64 >= runs && runs >= 3.0,
        "{} connections, {runs} runs",
        transcripts.len()
    );
    let mut lines = 0;
    for t in &transcripts {
        // EHLO, then the agent hangs up: nothing else.
        assert_eq!(t.lines.len(), 1, "{:?}", t.lines);
        assert!(t.lines[0].starts_with("EHLO "), "{:?}", t.lines);
        for line in &t.lines {
            lines += 1;
            let upper = line.to_ascii_uppercase();
            assert!(!upper.starts_with("AUTH"), "AUTH sent in clear: {line}");
            assert!(!upper.starts_with("MAIL"), "MAIL sent in clear: {line}");
            for tok in &tokens {
                let sig = tok.rsplit('.').next().unwrap();
                assert!(!line.contains(sig), "a token went out in clear");
            }
        }
    }
    assert_eq!(lines, transcripts.len());

    // The trap is real: the listener takes AUTH XOAUTH2 in clear, with a valid token.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut s = tokio::io::BufReader::new(tcp);
    let banner = read_reply(&mut s).await;
    s.get_mut()
        .write_all(b"EHLO client.example\r\n")
        .await
        .unwrap();
    let ehlo = read_reply(&mut s).await;
    assert!(
        ehlo.contains("AUTH LOGIN XOAUTH2") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    let blob = base64::engine::general_purpose::STANDARD.encode(format!(
        "user=plain@contoso.com\x01auth=Bearer {}\x01\x01",
        tokens[0]
    ));
    s.get_mut()
        .write_all(format!("AUTH XOAUTH2 {blob}\r\n").as_bytes())
        .await
        .unwrap();
    let auth = read_reply(&mut s).await;
    assert!(auth.starts_with("235 "), "{banner}{ehlo}{auth}");
}

/// One SMTP reply, all its lines, as a client reads it.
async fn read_reply(s: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(s.read_line(&mut line).await.unwrap() > 0, "closed: {all}");
        all += &line;
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return all;
        }
    }
}

/// Runs one mailbox of `mail-app` against its own listener with `fault` until its first result;
/// returns the scrape and the listener's address (for its transcripts).
async fn first_result(
    w: &World,
    fault: SmtpFault,
    name: &str,
    smtp: &str,
) -> (String, std::net::SocketAddr) {
    let addr = w.sim.start_smtp(Some(fault)).await.unwrap();
    w.sim
        .add_mailbox(&format!("{name}@contoso.com"), &[&client_id(APP)]);
    let yaml = apps(w, smtp) + &mailbox(name, "mail-app", "127.0.0.1", addr.port(), "");
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "the check's first result",
        |t| value(t, "smtp_oauth_check_success", &[("target", name)]).is_some(),
    )
    .await;
    agent.stop().await;
    (text, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_line_costs_bounded_memory_and_ends_in_protocol_error() {
    let w = world().await;
    let (text, _) = first_result(
        &w,
        SmtpFault::EndlessLine,
        "flood",
        "{ schedule: 1s, timeout: 10s }",
    )
    .await;
    assert_reason(&text, "smtp", "flood", "protocol_error");
    // The reader gives up after 4 KiB and hangs up: the run ends at once, well within the 10 s
    // timeout, and the server got rid of no more than what socket buffers hold. A reader without
    // a bound would have taken gigabytes until the deadline.
    let d = value(
        &text,
        "smtp_oauth_check_duration_seconds",
        &[("target", "flood")],
    )
    .unwrap();
    assert!(d < 2.0, "took {d}s");
    let runs = value(
        &text,
        "smtp_oauth_check_runs_total",
        &[("target", "flood"), ("result", "failure")],
    )
    .unwrap();
    let streamed = w.sim.smtp_bytes_streamed();
    assert!(
        (streamed as f64) < runs * 32.0 * 1024.0 * 1024.0,
        "{streamed} bytes went out to {runs} runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_injected_before_the_tls_handshake_is_refused() {
    let w = world().await;
    let (text, addr) = first_result(
        &w,
        SmtpFault::StartTlsInjection,
        "injected",
        "{ schedule: 1s, timeout: 5s }",
    )
    .await;
    assert_reason(&text, "smtp", "injected", "protocol_error");
    assert_eq!(
        value(
            &text,
            "smtp_oauth_smtp_status_code",
            &[("target", "injected"), ("phase", "starttls")]
        ),
        Some(0.0)
    );
    // RFC 3207 section 5: nothing of the plaintext phase is trusted, and nothing more is sent.
    let transcripts: Vec<_> = w
        .sim
        .smtp_transcripts()
        .into_iter()
        .filter(|t| t.listener == Some(addr))
        .collect();
    assert!(!transcripts.is_empty(), "the listener saw no connection");
    for t in &transcripts {
        assert_eq!(
            t.lines.last().map(String::as_str),
            Some("STARTTLS"),
            "{:?}",
            t.lines
        );
        assert!(t
            .lines
            .iter()
            .all(|l| !l.to_ascii_uppercase().starts_with("AUTH")));
    }
}

/// Ten mailboxes of `mail-app`, all with FullAccess, on the simulator's healthy listener.
fn ten_mailboxes(w: &World, app: &str) -> String {
    let mut yaml = String::new();
    for i in 0..10 {
        w.sim.add_mailbox(&format!("mb{i}@contoso.com"), &[app]);
        yaml += &mailbox(
            &format!("mb{i}"),
            "mail-app",
            "127.0.0.1",
            w.sim.smtp_addr.port(),
            "",
        );
    }
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mailboxes_share_one_token_per_lifetime() {
    let w = world().await;
    let app = client_id(APP);
    // Every token request is slow, so the ten first runs all want the token at the same time.
    w.sim
        .set_token_fault(&app, Some(TokenFault::Slow(Duration::from_millis(500))));
    w.sim.set_token_lifetime(Some(Duration::from_secs(3600)));
    let mut yaml = apps(&w, "{ schedule: 1s, timeout: 5s }")
        .replace("startup_spread: 200ms", "startup_spread: 1ms");
    yaml += &ten_mailboxes(&w, &app);
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "three successful runs of each mailbox",
        |t| {
            (0..10).all(|i| {
                value(
                    t,
                    "smtp_oauth_check_runs_total",
                    &[("target", &format!("mb{i}")), ("result", "success")],
                )
                .unwrap_or(0.0)
                    >= 3.0
            })
        },
    )
    .await;
    assert_eq!(w.sim.token_requests(&app), 1, "30 SMTP runs, one token");
    assert_eq!(
        value(
            &text,
            "smtp_oauth_token_requests_by_app_total",
            &[
                ("target", "mail-app"),
                ("resource", "exchange"),
                ("result", "success")
            ]
        ),
        Some(1.0)
    );
    agent.stop().await;

    // With a five-second lifetime the cache refreshes ahead of expiry: one request per lifetime.
    let w = world().await;
    let app = client_id(APP);
    w.sim.set_token_lifetime(Some(Duration::from_secs(5)));
    let mut yaml = apps(&w, "{ schedule: 1s, timeout: 5s }");
    yaml += &ten_mailboxes(&w, &app);
    let agent = w.agent(&yaml).await;
    let requested = |t: &str| {
        value(
            t,
            "smtp_oauth_token_requests_by_app_total",
            &[
                ("target", "mail-app"),
                ("resource", "exchange"),
                ("result", "success"),
            ],
        )
    };
    // Three tokens, each counted by the agent as the simulator counted its requests.
    let text = wait_for(&agent, Duration::from_secs(20), "three tokens", |t| {
        let n = w.sim.token_requests(&app);
        n >= 3 && requested(t) == Some(n as f64)
    })
    .await;
    // Refresh happens a tenth of the lifetime early, so one token serves 4.5 s: requests are
    // never closer than that (less what the request itself takes), however many runs want one.
    let times = w.sim.token_request_times(&app);
    assert_eq!(Some(times.len() as f64), requested(&text));
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(4000),
            "a token requested {gap:?} after the one before"
        );
    }
    // ... and never an expired token: every run succeeded.
    for i in 0..10 {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_check_runs_total",
                &[("target", &format!("mb{i}")), ("result", "failure")]
            ),
            Some(0.0),
            "{text}"
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_outlives_the_check_that_started_it() {
    let w = world().await;
    let app = client_id(APP);
    // The token endpoint answers after 2.5 s; each SMTP run gives up after 1.5 s.
    w.sim
        .set_token_fault(&app, Some(TokenFault::Slow(Duration::from_millis(2500))));
    w.sim.add_mailbox("slow-token@contoso.com", &[&app]);
    let yaml = apps(&w, "{ schedule: 1s, timeout: 1500ms }")
        + &mailbox(
            "slow-token",
            "mail-app",
            "127.0.0.1",
            w.sim.smtp_addr.port(),
            "",
        );
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(15),
        "a success after the slow refresh",
        |t| {
            value(
                t,
                "smtp_oauth_check_runs_total",
                &[("target", "slow-token"), ("result", "success")],
            )
            .unwrap_or(0.0)
                >= 1.0
        },
    )
    .await;
    agent.stop().await;
    // The first run timed out waiting, but its refresh went on and filled the cache: one request.
    assert!(
        value(
            &text,
            "smtp_oauth_check_failures_total",
            &[("target", "slow-token"), ("reason", "timeout")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert_eq!(w.sim.token_requests(&app), 1);
}
