//! Token check over loopback: every scripted failure yields its reason, expiry follows
//! `expires_in`, a hung endpoint does not hold up another app, certificate credentials work.

use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::sim::{app_certificate, SimApp, TokenFault};

use crate::common::*;

const HEADER: &str = "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: { schedule: 1s, timeout: 2s }\n    graph: { enabled: false }\napps:\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scripted_failure_has_its_reason() {
    let w = World::new().await;
    let now = Utc::now();
    // (app name, fault, expected reason, expected AADSTS label)
    let cases: Vec<(&str, Option<TokenFault>, &str, &str)> = vec![
        (
            "scripted-expired",
            Some(TokenFault::ExpiredSecret),
            "secret_expired",
            "7000222",
        ),
        (
            "scripted-invalid",
            Some(TokenFault::InvalidSecret),
            "secret_invalid",
            "7000215",
        ),
        (
            "scripted-unknown-app",
            Some(TokenFault::UnknownApp),
            "app_not_found",
            "700016",
        ),
        (
            "scripted-unknown-tenant",
            Some(TokenFault::UnknownTenant),
            "tenant_not_found",
            "90002",
        ),
        ("http-500", Some(TokenFault::ServerError), "http_error", ""),
        (
            "slow",
            Some(TokenFault::Slow(Duration::from_secs(30))),
            "timeout",
            "",
        ),
        (
            "throttled",
            Some(TokenFault::TooManyRequests {
                retry_after_seconds: 120,
            }),
            "throttled",
            "",
        ),
        (
            "malformed",
            Some(TokenFault::MalformedJson),
            "invalid_response",
            "",
        ),
        // The same failures from the directory's data rather than a script:
        ("expired-by-date", None, "secret_expired", "7000222"),
        ("wrong-value", None, "secret_invalid", "7000215"),
        ("not-registered", None, "app_not_found", "700016"),
    ];
    let mut yaml = HEADER.to_string();
    for (i, (name, fault, _, _)) in cases.iter().enumerate() {
        let id = client_id(100 + i as u32);
        let value = format!("Sec~{name}-value");
        let end = if *name == "expired-by-date" {
            now - chrono::Duration::days(1)
        } else {
            now + chrono::Duration::days(90)
        };
        if *name != "not-registered" {
            w.sim.add_app(SimApp::new(TENANT, &id, name).with_secret(
                &value,
                Some(name),
                now - chrono::Duration::days(100),
                end,
            ));
        }
        w.sim.set_token_fault(&id, fault.clone());
        let sent = if *name == "wrong-value" {
            "Sec~someone-pasted-the-secret-id".to_string()
        } else {
            value
        };
        let file = w.file(&format!("{name}.secret"), &sent);
        yaml += &secret_app(&w, name, &id, &file, "");
    }
    // An unknown tenant from the data too: the app points at a tenant the directory lacks.
    let file = w.file("other-tenant.secret", "whatever");
    yaml += &format!(
        "  - name: wrong-tenant\n    tenant: fabrikam.onmicrosoft.com\n    client_id: {}\n    client_secret_file: {file}\n    {}\n",
        client_id(99),
        w.endpoints()
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "every app to have failed once",
        |t| {
            cases.iter().all(|(n, _, _, _)| {
                value(
                    t,
                    "smtp_oauth_check_success",
                    &[("check", "token"), ("target", n)],
                ) == Some(0.0)
            }) && value(t, "smtp_oauth_check_success", &[("target", "wrong-tenant")]) == Some(0.0)
        },
    )
    .await;
    for (name, _, reason, aadsts) in &cases {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_check_failure_info",
                &[
                    ("check", "token"),
                    ("target", name),
                    ("reason", reason),
                    ("aadsts", aadsts)
                ]
            ),
            Some(1.0),
            "{name}: expected reason {reason} aadsts {aadsts:?}\n{text}"
        );
        assert!(
            value(
                &text,
                "smtp_oauth_check_failures_total",
                &[("target", name), ("reason", reason)]
            )
            .unwrap_or(0.0)
                >= 1.0,
            "{name}"
        );
    }
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_failure_info",
            &[
                ("target", "wrong-tenant"),
                ("reason", "tenant_not_found"),
                ("aadsts", "90002")
            ]
        ),
        Some(1.0)
    );
    // The slow app failed on time, not after the simulator's 30 seconds.
    let d = value(
        &text,
        "smtp_oauth_check_duration_seconds",
        &[("target", "slow")],
    )
    .unwrap();
    assert!((1.9..5.0).contains(&d), "slow check took {d}s");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_sets_expiry_from_expires_in() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    w.sim.add_app(SimApp::new(TENANT, &id, "ok").with_secret(
        "Ok~value-1",
        None,
        now,
        now + chrono::Duration::days(30),
    ));
    w.sim.set_token_lifetime(Some(Duration::from_secs(4321)));
    let file = w.file("ok.secret", "Ok~value-1\n");
    // The token's lifetime is beyond the budget: metrics.detail shows it.
    let yaml = format!(
        "metrics: {{ detail: true }}\n{HEADER}{}",
        secret_app(&w, "ok", &id, &file, "")
    );
    let agent = w.agent(&yaml).await;
    let before = Utc::now().timestamp() as f64;
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "a successful token check",
        |t| value(t, "smtp_oauth_check_success", &[("target", "ok")]) == Some(1.0),
    )
    .await;
    let after = Utc::now().timestamp() as f64;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_token_lifetime_seconds",
            &[("target", "ok"), ("resource", "exchange")]
        ),
        Some(4321.0)
    );
    let expiry = value(
        &text,
        "smtp_oauth_token_expiry_timestamp_seconds",
        &[("target", "ok"), ("resource", "exchange")],
    )
    .unwrap();
    assert!(
        expiry >= before + 4321.0 - 2.0 && expiry <= after + 4321.0 + 1.0,
        "expiry {expiry} not now+4321 ({before}..{after})"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_token_smtp_role_present",
            &[("target", "ok")]
        ),
        Some(1.0)
    );
    assert!(value(
        &text,
        "smtp_oauth_check_last_success_timestamp_seconds",
        &[("check", "token"), ("target", "ok")]
    )
    .is_some());
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_token_endpoint_does_not_delay_another_app() {
    let w = World::new().await;
    let now = Utc::now();
    let (hung, fine) = (client_id(1), client_id(2));
    for id in [&hung, &fine] {
        w.sim.add_app(SimApp::new(TENANT, id, "x").with_secret(
            "Sec~same",
            None,
            now,
            now + chrono::Duration::days(30),
        ));
    }
    // The hung app's endpoint answers after ten minutes; its check times out after 5 seconds.
    w.sim
        .set_token_fault(&hung, Some(TokenFault::Slow(Duration::from_secs(600))));
    let file = w.file("s.secret", "Sec~same");
    let yaml = format!(
        "scheduler:\n  startup_spread: 100ms\n  max_concurrent_checks: 2\ndefaults:\n  checks:\n    graph: {{ enabled: false }}\napps:\n{}{}",
        secret_app(&w, "hung", &hung, &file, "    checks:\n      token: { schedule: 1s, timeout: 5s }\n"),
        secret_app(&w, "fine", &fine, &file, "    checks:\n      token: { schedule: 1s, timeout: 3s }\n"),
    );
    let agent = w.agent(&yaml).await;
    // While the first hung run is still waiting (it cannot end before 5 s), the other app runs
    // on its one-second schedule: three times before the hung app has any result.
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "three successful runs of the fine app",
        |t| {
            value(
                t,
                "smtp_oauth_check_runs_total",
                &[("target", "fine"), ("result", "success")],
            )
            .unwrap_or(0.0)
                >= 3.0
        },
    )
    .await;
    assert_eq!(
        value(&text, "smtp_oauth_check_success", &[("target", "hung")]),
        None,
        "the fine app was held up until the hung run ended:\n{text}"
    );
    assert!(
        value(
            &text,
            "smtp_oauth_check_duration_seconds",
            &[("target", "fine")]
        )
        .unwrap()
            < 1.0
    );
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "the hung app to time out",
        |t| {
            value(
                t,
                "smtp_oauth_check_failure_info",
                &[("target", "hung"), ("reason", "timeout")],
            ) == Some(1.0)
        },
    )
    .await;
    let d = value(
        &text,
        "smtp_oauth_check_duration_seconds",
        &[("target", "hung")],
    )
    .unwrap();
    assert!(
        (4.9..6.5).contains(&d),
        "hung check should end at its 5s timeout, took {d}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credentials_work_with_ps256_and_rs256() {
    let w = World::new().await;
    let now = Utc::now();
    let cert = app_certificate("cert-app");
    let other = app_certificate("not-registered");
    let (ps, rs, wrong) = (client_id(1), client_id(2), client_id(3));
    for id in [&ps, &rs, &wrong] {
        w.sim
            .add_app(SimApp::new(TENANT, id, "cert").with_certificate(
                cert.cert_der.clone(),
                None,
                now,
                now + chrono::Duration::days(30),
            ));
    }
    let crt = w.file("app.crt", &cert.cert_pem);
    let key = w.file("app.key", &cert.key_pem);
    let other_crt = w.file("other.crt", &other.cert_pem);
    let other_key = w.file("other.key", &other.key_pem);
    let app = |name: &str, id: &str, crt: &str, key: &str, alg: &str| {
        format!(
            "  - name: {name}\n    tenant: {TENANT_DOMAIN}\n    client_id: {id}\n    certificate: {{ cert_file: {crt}, key_file: {key}, algorithm: {alg} }}\n    {}\n",
            w.endpoints()
        )
    };
    let yaml = format!(
        "{HEADER}{}{}{}",
        app("ps256", &ps, &crt, &key, "PS256"),
        app("rs256", &rs, &crt, &key, "RS256"),
        // A certificate the app registration does not know: the assertion is refused.
        app("unknown-cert", &wrong, &other_crt, &other_key, "PS256"),
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "all three certificate apps to run twice",
        |t| {
            ["ps256", "rs256", "unknown-cert"].iter().all(|n| {
                let s = value(
                    t,
                    "smtp_oauth_check_runs_total",
                    &[("target", n), ("result", "success")],
                )
                .unwrap_or(0.0);
                let f = value(
                    t,
                    "smtp_oauth_check_runs_total",
                    &[("target", n), ("result", "failure")],
                )
                .unwrap_or(0.0);
                s + f >= 2.0
            })
        },
    )
    .await;
    // Two runs each: the second assertion carries a fresh jti (a replay would be refused).
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_runs_total",
            &[("target", "ps256"), ("result", "failure")]
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_runs_total",
            &[("target", "rs256"), ("result", "failure")]
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_failure_info",
            &[
                ("target", "unknown-cert"),
                ("reason", "assertion_invalid"),
                ("aadsts", "700027")
            ]
        ),
        Some(1.0)
    );
    agent.stop().await;
}

/// A broken network between the agent and Entra ID gets the SMTP check's reasons, not `other`:
/// a name that does not resolve, a port that refuses, and a certificate from an issuer the agent
/// does not trust (what a TLS-inspecting proxy looks like), which the verdict names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_failures_have_the_smtp_checks_reasons() {
    let w = World::new().await;
    let refusing = RefusingPort::new();
    let file = w.file("n.secret", "Net~secret");
    let base = w.sim.base_url();
    let app = |name: &str, n: u32, login: &str, ca: bool| {
        format!(
            "  - name: {name}\n    tenant: {TENANT}\n    client_id: {}\n    client_secret_file: {file}\n    login_url: {login}\n    graph_url: {base}\n{}",
            client_id(n),
            if ca {
                format!("    ca_file: {}\n", w.ca_file.display())
            } else {
                String::new()
            }
        )
    };
    let yaml = format!(
        "{HEADER}{}{}{}",
        app("no-dns", 1, "https://login.does-not-exist.invalid", true),
        app(
            "refused",
            2,
            &format!("https://127.0.0.1:{}", refusing.port),
            true
        ),
        // No ca_file: the simulator's certificate is from an issuer the agent does not trust.
        app("inspected", 3, &base, false),
    );
    let agent = w.agent(&yaml).await;
    let cases = [
        ("no-dns", "dns", "network", "dns_failure"),
        (
            "refused",
            "connect_refused",
            "network",
            "connection_refused",
        ),
        ("inspected", "tls_cert_invalid", "network", "tls_inspection"),
    ];
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "every app's token check to have failed",
        |t| {
            cases.iter().all(|(n, reason, ..)| {
                value(
                    t,
                    "smtp_oauth_check_failure_info",
                    &[("check", "token"), ("target", n), ("reason", reason)],
                ) == Some(1.0)
            })
        },
    )
    .await;
    for (n, _, step, cause) in cases {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_verdict",
                &[("target", n), ("step", step), ("cause", cause)]
            ),
            Some(1.0),
            "{n}: {text}"
        );
    }
    let status = agent.status();
    let inspected = status.apps.iter().find(|a| a.name == "inspected").unwrap();
    let v = inspected.verdict.as_ref().unwrap();
    assert!(
        v.remediation.contains("ca_file") && v.summary.contains("TLS-inspecting proxy"),
        "{v:?}"
    );
    agent.stop().await;
}

/// The newest token wins: an admin revokes consent for SMTP.SendAsApp, then grants it again,
/// while the agent runs with Entra's random token lifetimes (60 to 90 minutes), and the SMTP
/// result and the verdict follow each change within one token interval plus one SMTP interval
/// (1 s each here), every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_follows_consent_changes_within_one_token_and_one_smtp_interval() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    w.sim
        .add_app(SimApp::new(TENANT, &id, "consent").with_secret(
            "Cns~secret",
            None,
            now,
            now + chrono::Duration::days(30),
        ));
    w.sim.set_token_lifetime(None);
    w.sim.add_mailbox("invoices@contoso.com", &[&id]);
    let file = w.file("c.secret", "Cns~secret");
    let yaml = format!(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    smtp: {{ schedule: 1s, timeout: 2s }}\n    graph: {{ enabled: false }}\napps:\n{}mailboxes:\n  - {{ name: invoices, app: consent, address: invoices@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
        secret_app(&w, "consent", &id, &file, ""),
        w.sim.smtp_addr.port()
    );
    let agent = w.agent(&yaml).await;
    let healthy = |t: &str| {
        value(
            t,
            "smtp_oauth_check_success",
            &[("check", "smtp"), ("target", "invoices")],
        ) == Some(1.0)
            && value(
                t,
                "smtp_oauth_verdict",
                &[("target", "invoices"), ("cause", "ok")],
            ) == Some(1.0)
    };
    let revoked = |t: &str| {
        value(
            t,
            "smtp_oauth_check_failure_info",
            &[
                ("check", "smtp"),
                ("target", "invoices"),
                ("reason", "auth_rejected"),
            ],
        ) == Some(1.0)
            && value(
                t,
                "smtp_oauth_verdict",
                &[
                    ("target", "invoices"),
                    ("step", "3"),
                    ("cause", "consent_missing"),
                ],
            ) == Some(1.0)
    };
    wait_for(&agent, Duration::from_secs(10), "a healthy start", healthy).await;
    // One token interval and one SMTP interval, plus room for the runs themselves and the
    // scrape polling.
    let bound = Duration::from_secs(2) + Duration::from_millis(1500);
    for round in 0..3 {
        w.sim.set_exchange_roles(&id, &[]);
        let t = std::time::Instant::now();
        wait_for(&agent, Duration::from_secs(10), "consent revoked", revoked).await;
        let took = t.elapsed();
        assert!(
            took <= bound,
            "round {round}: revocation seen after {took:?}"
        );

        w.sim.set_exchange_roles(&id, &["SMTP.SendAsApp"]);
        let t = std::time::Instant::now();
        wait_for(&agent, Duration::from_secs(10), "consent granted", healthy).await;
        let took = t.elapsed();
        assert!(took <= bound, "round {round}: grant seen after {took:?}");
    }
    agent.stop().await;
}

/// An app registration without a service principal (Enterprise application) in its tenant:
/// since 2026-03-31 Entra ID refuses its tokens with AADSTS7000229. Its own reason, the code in
/// the `aadsts` label, and a verdict at step 1 that says to create the Enterprise application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_without_an_enterprise_application_is_service_principal_missing_at_step_1() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(7229);
    w.sim.add_app(
        SimApp::new(TENANT, &id, "orphan")
            .with_secret("Orp~secret", None, now, now + chrono::Duration::days(90))
            .without_entra_service_principal(),
    );
    let file = w.file("orphan.secret", "Orp~secret");
    let agent = w
        .agent(&format!(
            "{HEADER}{}",
            secret_app(&w, "orphan", &id, &file, "")
        ))
        .await;
    let text = wait_for(&agent, Duration::from_secs(20), "the token failure", |t| {
        value(
            t,
            "smtp_oauth_check_success",
            &[("check", "token"), ("target", "orphan")],
        ) == Some(0.0)
            && t.contains("cause=\"enterprise_app_missing\"")
    })
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_failure_info",
            &[
                ("check", "token"),
                ("target", "orphan"),
                ("reason", "service_principal_missing"),
                ("aadsts", "7000229")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_verdict",
            &[
                ("target", "orphan"),
                ("step", "1"),
                ("cause", "enterprise_app_missing")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    let status = reqwest::get(format!("http://{}/status", agent.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains("New-MgServicePrincipal -AppId"), "{status}");
    agent.stop().await;
}

/// Each national cloud's defaults, pinned by literal values (every other test overrides them
/// with the simulator's): the token endpoint, the Exchange and Graph scopes, the SMTP host and
/// the Graph read. From `shared/reference/microsoft-365.md`, "National clouds" (the DoD and
/// China SMTP hosts are marked unverified there).
#[test]
fn each_clouds_default_hosts_and_scopes_are_microsofts() {
    use smtp_oauth_exporter::auth::Resource;
    let cases = [
        (
            "global",
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "https://outlook.office365.com/.default",
            "https://graph.microsoft.com/.default",
            "smtp.office365.com",
        ),
        (
            "usgov",
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "https://outlook.office365.us/.default",
            "https://graph.microsoft.us/.default",
            "smtp.office365.us",
        ),
        (
            "usgov-dod",
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "https://outlook-dod.office365.us/.default",
            "https://dod-graph.microsoft.us/.default",
            "smtp.office365.us",
        ),
        (
            "china",
            "https://login.partner.microsoftonline.cn/contoso.onmicrosoft.com/oauth2/v2.0/token",
            "https://partner.outlook.cn/.default",
            "https://microsoftgraph.chinacloudapi.cn/.default",
            "smtp.partner.outlook.cn",
        ),
    ];
    for (cloud, token_url, exchange, graph, smtp_host) in cases {
        let yaml = format!(
            "apps:\n  - {{ name: a, tenant: contoso.onmicrosoft.com, client_id: {}, client_secret: \"Abc~x\", cloud: {cloud} }}\nmailboxes:\n  - {{ name: m, app: a, address: m@contoso.com }}\n",
            client_id(1)
        );
        let plan =
            smtp_oauth_exporter::config::from_yaml(&yaml, "t.yml", std::path::Path::new("."))
                .expect("valid");
        let app = &plan.apps[0];
        assert_eq!(app.token_url(), token_url, "{cloud}");
        assert_eq!(Resource::Exchange.scope(app), exchange, "{cloud}");
        assert_eq!(Resource::Graph.scope(app), graph, "{cloud}");
        assert_eq!(plan.mailboxes[0].smtp_host, smtp_host, "{cloud}");
        assert_eq!(plan.mailboxes[0].smtp_port, 587, "{cloud}");
        let graph_host = graph.trim_end_matches("/.default");
        assert_eq!(
            smtp_oauth_exporter::checks::graph::service_principal_url(app),
            format!(
                "{graph_host}/v1.0/servicePrincipals(appId='{}')?$select=id,appId,passwordCredentials,keyCredentials",
                client_id(1)
            ),
            "{cloud}"
        );
    }
}
