//! Both of Microsoft's SMTP authorization models over real sockets: the classic one (the
//! `SMTP.SendAsApp` permission with admin consent, FullAccess on each mailbox) and Exchange RBAC
//! for Applications (no API permission, a role assignment scoped to the mailboxes, a token without
//! `roles`). A correctly set-up RBAC app is `ok` in every sample and raises no alert; a refusal
//! names the fix of the model in use, never "add SMTP.SendAsApp" to an app that signs in without
//! it (`shared/reference/microsoft-365.md`, "Two authorization models").

use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::sim::{SimApp, ROLE_SMTP};

use crate::common::*;

/// A configuration with fast token and SMTP checks, Graph off, for the apps and mailboxes given.
fn config(w: &World, apps: &str, mailboxes: &[(&str, &str, &str)]) -> String {
    let mut yaml = format!(
        "scheduler: {{ startup_spread: 200ms }}\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    smtp: {{ schedule: 1s, timeout: 2s }}\n    graph: {{ enabled: false }}\nalerts:\n  failing_for: 1s\n  evaluation_interval: 200ms\napps:\n{apps}mailboxes:\n"
    );
    for (name, app, address) in mailboxes {
        yaml += &format!(
            "  - {{ name: {name}, app: {app}, address: {address}, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
            w.sim.smtp_addr.port()
        );
    }
    yaml
}

/// An app registered in the simulator as `app`, its secret in a file; `extra` lines go into
/// its configuration block.
fn app(w: &World, n: u32, name: &str, sim_app: SimApp, extra: &str) -> String {
    let secret = format!("Rb{n}~secret-value");
    let now = Utc::now();
    w.sim
        .add_app(sim_app.with_secret(&secret, None, now, now + chrono::Duration::days(300)));
    let file = w.file(&format!("{name}.secret"), &secret);
    secret_app(w, name, &client_id(n), &file, extra)
}

/// The text of advice to add the role: what must never reach an app that signs in without it.
fn advises_the_role(text: &str) -> bool {
    text.contains("SMTP.SendAsApp > Add permissions")
        || text.contains("Application permissions > SMTP.SendAsApp")
}

/// RBAC for Applications set up as Microsoft documents it: no API permission, a role
/// assignment scoped to both mailboxes. Before, the verdict flipped to `consent_missing` every
/// time the token check ran after an SMTP run, and the SendAsApp alert fired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rbac_app_is_ok_in_every_sample_and_raises_no_alert() {
    let w = World::new().await;
    let id = client_id(1);
    let apps = app(
        &w,
        1,
        "notifier",
        SimApp::new(TENANT, &id, "notifier")
            .with_rbac_scope(&["notify@contoso.com", "digest@contoso.com"]),
        "",
    );
    w.sim.add_mailbox("notify@contoso.com", &[]);
    w.sim.add_mailbox("digest@contoso.com", &[]);
    // The token check runs twice as often as SMTP: most of the time the newest token is newer
    // than the last SMTP run, which is when the verdict used to turn critical.
    let yaml = config(
        &w,
        &apps,
        &[
            ("notify", "notifier", "notify@contoso.com"),
            ("digest", "notifier", "digest@contoso.com"),
        ],
    )
    .replace("smtp: { schedule: 1s", "smtp: { schedule: 2s");
    let agent = w.agent(&yaml).await;
    wait_for(&agent, Duration::from_secs(10), "both mailboxes ok", |t| {
        ["notify", "digest"]
            .iter()
            .all(|m| value(t, "smtp_oauth_verdict", &[("target", m), ("cause", "ok")]) == Some(1.0))
    })
    .await;
    // Several intervals of both checks (1 s each), sampled five times a second: every sample
    // says ok, and no alert is ever listed.
    let start = std::time::Instant::now();
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let text = scrape(&agent).await;
        for m in ["notify", "digest"] {
            assert_eq!(
                value(
                    &text,
                    "smtp_oauth_verdict",
                    &[("target", m), ("cause", "ok")]
                ),
                Some(1.0),
                "sample {samples}: {m} is not ok:\n{text}"
            );
        }
        assert_eq!(
            value(
                &text,
                "smtp_oauth_token_smtp_role_present",
                &[("target", "notifier")]
            ),
            Some(0.0),
            "the token carries no role, and that is right"
        );
        let alerts = agent.alerts();
        assert!(alerts.is_empty(), "sample {samples}: {alerts:?}");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(samples >= 20, "{samples} samples");
    let text = scrape(&agent).await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_app_authorization_info",
            &[
                ("target", "notifier"),
                ("setting", "auto"),
                ("model", "app_rbac")
            ]
        ),
        Some(1.0),
        "the model in use is exported:\n{text}"
    );
    // Runs of both checks happened meanwhile: the evidence was fresh, not one early success.
    let runs = |check: &str| {
        value(
            &text,
            "smtp_oauth_check_runs_total",
            &[
                ("check", check),
                ("target", "notifier"),
                ("result", "success"),
            ],
        )
        .unwrap_or(0.0)
    };
    assert!(runs("token") >= 5.0, "{text}");
    agent.stop().await;
}

/// One mailbox outside the role assignment's scope while another authenticates: the verdict
/// names the scope, and its fix never advises the role (which would break the working one).
/// Before: `consent_missing`, "add SMTP.SendAsApp and grant consent".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_outside_the_rbac_scope_is_named_and_never_told_to_add_the_role() {
    let w = World::new().await;
    let id = client_id(1);
    let apps = app(
        &w,
        1,
        "notifier",
        SimApp::new(TENANT, &id, "notifier").with_rbac_scope(&["notify@contoso.com"]),
        "",
    );
    w.sim.add_mailbox("notify@contoso.com", &[]);
    w.sim.add_mailbox("digest@contoso.com", &[]);
    let agent = w
        .agent(&config(
            &w,
            &apps,
            &[
                ("notify", "notifier", "notify@contoso.com"),
                ("digest", "notifier", "digest@contoso.com"),
            ],
        ))
        .await;
    wait_for(&agent, Duration::from_secs(10), "the scope verdict", |t| {
        value(
            t,
            "smtp_oauth_verdict",
            &[
                ("target", "digest"),
                ("step", "4"),
                ("cause", "rbac_mailbox_out_of_scope"),
            ],
        ) == Some(1.0)
            && value(
                t,
                "smtp_oauth_verdict",
                &[("target", "notify"), ("cause", "ok")],
            ) == Some(1.0)
    })
    .await;
    let status = agent.status();
    let digest = status
        .mailboxes
        .iter()
        .find(|m| m.name == "digest")
        .unwrap();
    let v = digest.verdict.as_ref().unwrap();
    assert!(
        v.remediation.contains("Test-ServicePrincipalAuthorization")
            && v.remediation.contains("digest@contoso.com"),
        "{v:?}"
    );
    assert!(!advises_the_role(&v.remediation), "{v:?}");
    // The agent's own alert pages on what fails (SMTP AUTH), with the cause's text.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alerts = agent.alerts();
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a.labels["alertname"].as_str())
        .collect();
    assert_eq!(names, ["SmtpOAuthSmtpAuthFailing"], "{alerts:?}");
    assert_eq!(alerts[0].labels["cause"], "rbac_mailbox_out_of_scope");
    assert!(!advises_the_role(&alerts[0].annotations["description"]));
    agent.stop().await;
}

/// A token without the role and every mailbox refused, on `auto`: either model's grant may be
/// missing, so the verdict names both fixes with their read-only checks. Before: only the
/// classic fix, as `consent_missing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roles_less_token_refused_everywhere_names_both_models() {
    let w = World::new().await;
    let id = client_id(1);
    let apps = app(
        &w,
        1,
        "scanner",
        SimApp::new(TENANT, &id, "scanner").without_consent(),
        "",
    );
    w.sim.add_mailbox("scans@contoso.com", &[&id]);
    let agent = w
        .agent(&config(
            &w,
            &apps,
            &[("scans", "scanner", "scans@contoso.com")],
        ))
        .await;
    wait_for(&agent, Duration::from_secs(10), "the verdict", |t| {
        value(
            t,
            "smtp_oauth_verdict",
            &[
                ("target", "scans"),
                ("step", "4"),
                ("cause", "send_authorization_missing"),
            ],
        ) == Some(1.0)
    })
    .await;
    let status = agent.status();
    let v = status.mailboxes[0].verdict.as_ref().unwrap();
    for both in [
        "New-ManagementRoleAssignment",
        "Test-ServicePrincipalAuthorization",
        "Add-MailboxPermission",
        "Get-MailboxPermission",
        "SMTP.SendAsApp, Grant admin consent",
    ] {
        assert!(v.remediation.contains(both), "{both}: {v:?}");
    }
    // The app-level SendAsApp alert stays quiet on `auto`: the SMTP alert pages.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let names: Vec<String> = agent
        .alerts()
        .iter()
        .map(|a| a.labels["alertname"].clone())
        .collect();
    assert_eq!(names, ["SmtpOAuthSmtpAuthFailing"]);
    agent.stop().await;
}

/// `authorization: app_rbac`: a roles-less token is expected; no role assignment at all names
/// the assignment; a token that carries the role is a warning while FullAccess lets the mailbox
/// in, and critical where it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_rbac_setting_names_the_assignment_and_warns_of_the_role() {
    let w = World::new().await;
    w.sim.set_token_lifetime(Some(Duration::from_secs(3)));
    let rbac = "    authorization: app_rbac\n";
    let mut apps = app(
        &w,
        1,
        "unassigned",
        SimApp::new(TENANT, &client_id(1), "unassigned").without_consent(),
        rbac,
    );
    // Still carrying the role (consent never removed): FullAccess decides.
    apps += &app(
        &w,
        2,
        "with-role",
        SimApp::new(TENANT, &client_id(2), "with-role")
            .with_rbac_scope(&["a@contoso.com", "b@contoso.com"]),
        rbac,
    );
    w.sim.set_exchange_roles(&client_id(2), &[ROLE_SMTP]);
    w.sim.add_mailbox("u@contoso.com", &[]);
    w.sim.add_mailbox("a@contoso.com", &[&client_id(2)]);
    w.sim.add_mailbox("b@contoso.com", &[]);
    let agent = w
        .agent(&config(
            &w,
            &apps,
            &[
                ("u", "unassigned", "u@contoso.com"),
                ("a", "with-role", "a@contoso.com"),
                ("b", "with-role", "b@contoso.com"),
            ],
        ))
        .await;
    let cases = [
        ("u", "4", "rbac_assignment_missing", "critical"),
        ("a", "3", "sendasapp_in_rbac_app", "warning"),
        ("b", "3", "sendasapp_forces_full_access", "critical"),
    ];
    let text = wait_for(&agent, Duration::from_secs(10), "the verdicts", |t| {
        cases.iter().all(|(m, step, cause, severity)| {
            value(
                t,
                "smtp_oauth_verdict",
                &[
                    ("target", m),
                    ("step", step),
                    ("cause", cause),
                    ("severity", severity),
                ],
            ) == Some(1.0)
        })
    })
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_app_authorization_info",
            &[
                ("target", "with-role"),
                ("setting", "app_rbac"),
                ("model", "classic")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    let status = agent.status();
    for m in &status.mailboxes {
        let v = m.verdict.as_ref().unwrap();
        assert!(!advises_the_role(&v.remediation), "{}: {v:?}", m.name);
    }
    let b = status.mailboxes.iter().find(|m| m.name == "b").unwrap();
    assert!(b
        .verdict
        .as_ref()
        .unwrap()
        .remediation
        .contains("Remove permission"));
    // Removing the role (as the fix says) lets both mailboxes in by the role assignment.
    // (Tokens live 3 s here, so the next one comes soon.)
    w.sim.set_exchange_roles(&client_id(2), &[]);
    wait_for(&agent, Duration::from_secs(15), "both ok", |t| {
        ["a", "b"]
            .iter()
            .all(|m| value(t, "smtp_oauth_verdict", &[("target", m), ("cause", "ok")]) == Some(1.0))
    })
    .await;
    agent.stop().await;
}
