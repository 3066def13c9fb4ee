//! Every documented reason of every check, produced over a socket: a table with one scenario
//! per (check, reason) that scripts the simulator into it and asserts it on `/metrics`, and a
//! completeness test that the table covers every reason of `src/reasons.rs` (the README's reason
//! tables are generated from the same enums), in both directions. The SMTP check's
//! `message_rejected` comes only from `check --send-test-to` and has its own test;
//! `internal_error` only from a bug, `local_resources` only from the agent's own host (its test
//! pins the open file limit). Also: the
//! AADSTS table of the reference, row by row, mapped and then produced over a socket, and the
//! token without `SMTP.SendAsApp`.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::plan::CheckKind;
use smtp_oauth_exporter::reasons::{Reason, Step, TokenReason};
use smtp_oauth_exporter::sim::{
    CertFault, Delivery, GraphFault, NetFault, SimApp, SmtpFault, SmtpStep, TokenFault,
};

use crate::common::*;
use crate::faults::{run_table, Fault, Row, Setup};

/// Reasons no server can produce: the table's completeness test accepts them without a row.
const NO_SCENARIO: [(&str, &str); 4] = [
    (
        "internal_error",
        "a bug in the agent (a panic) fails the run: a server that could cause it would have found a bug (its_path_is_labelled_internal_error tests the label)",
    ),
    (
        "local_resources",
        "no server can make the agent's host run out of descriptors: resources::out_of_file_descriptors_is_the_agents_fault_not_a_firewall runs the binary under a low open file limit",
    ),
    (
        "message_rejected",
        "the SMTP check never sends a message: `check --send-test-to` does, and its own test runs the command over the simulator (the canary's row covers the canary)",
    ),
    (
        "budget_exhausted",
        "the agent's own budget of message trace: a window of more pages than 100 requests in 5 minutes allow; traffic::a_window_larger_than_the_budget_stops_at_a_hundred_requests spends it over the simulator",
    ),
];

fn aadsts(status: u16, error: &str, code: u32) -> Fault {
    Fault::Token(TokenFault::Aadsts {
        status,
        error: error.into(),
        code,
    })
}

/// One scenario per reason of each check: the token, SMTP and Graph checks' below, the canary's,
/// service health's and credential activity's the first fault matrix row giving each.
pub fn table() -> Vec<Row> {
    let mut rows = core_table();
    let mut seen: BTreeSet<(CheckKind, &str)> = BTreeSet::new();
    rows.extend(
        crate::faults::matrix()
            .into_iter()
            .filter(|r| {
                matches!(
                    r.check,
                    CheckKind::Canary
                        | CheckKind::Health
                        | CheckKind::Activity
                        | CheckKind::Traffic
                        | CheckKind::Discovery
                )
            })
            .filter(|r| seen.insert((r.check, r.reason))),
    );
    rows
}

fn core_table() -> Vec<Row> {
    use CheckKind::{Graph, Smtp, Token};
    let t = |name, f, reason| Row::new(Token, name, f, reason);
    let s = |name, f, reason| Row::new(Smtp, name, f, reason);
    let g = |name, f, reason| Row::new(Graph, name, f, reason);
    vec![
        t("secret-expired", Fault::Token(TokenFault::ExpiredSecret), "secret_expired").aadsts("7000222"),
        t("secret-invalid", Fault::Token(TokenFault::InvalidSecret), "secret_invalid").aadsts("7000215"),
        t("credential-missing", aadsts(401, "invalid_client", 7000218), "credential_missing").aadsts("7000218"),
        t("assertion-invalid", aadsts(401, "invalid_client", 700027), "assertion_invalid").aadsts("700027"),
        t("app-not-found", Fault::Token(TokenFault::UnknownApp), "app_not_found").aadsts("700016"),
        t("app-disabled", aadsts(400, "unauthorized_client", 7000112), "app_disabled").aadsts("7000112"),
        t("no-enterprise-app", aadsts(400, "invalid_client", 7000229), "service_principal_missing").aadsts("7000229"),
        t("tenant-not-found", Fault::Token(TokenFault::UnknownTenant), "tenant_not_found").aadsts("90002"),
        t("invalid-scope", aadsts(400, "invalid_scope", 70011), "invalid_scope").aadsts("70011"),
        t("resource-not-found", aadsts(400, "invalid_resource", 500011), "resource_not_found").aadsts("500011"),
        t("consent-missing", aadsts(400, "invalid_grant", 65001), "consent_missing").aadsts("65001"),
        t("conditional-access", aadsts(400, "invalid_grant", 53003), "conditional_access").aadsts("53003"),
        t("throttled", Fault::Token(TokenFault::TooManyRequests { retry_after_seconds: 1 }), "throttled"),
        t("http-error", Fault::Token(TokenFault::ServerError), "http_error"),
        t("invalid-response", Fault::Token(TokenFault::MalformedJson), "invalid_response"),
        t("other", aadsts(400, "invalid_request", 9_999_999), "other"),
        t("dns", Fault::Dns, "dns"),
        t("connect-refused", Fault::Net(NetFault::Refuse), "connect_refused"),
        t("timeout", Fault::Net(NetFault::Silence), "timeout"),
        t("tls-handshake", Fault::Net(NetFault::NotTls("SSH-2.0-OpenSSH_9.6\r\n".into())), "tls_handshake"),
        t("tls-cert-invalid", Fault::Net(NetFault::Certificate(CertFault::Untrusted)), "tls_cert_invalid"),
        s("starttls-missing", Fault::Smtp(SmtpFault::NoStartTls), "starttls_missing"),
        s("xoauth2-not-offered", Fault::Smtp(SmtpFault::NoXoauth2), "xoauth2_not_offered"),
        s("auth-rejected", Fault::Setup(Setup::NoFullAccess), "auth_rejected"),
        s("smtp-auth-disabled", Fault::Setup(Setup::MailboxSmtpAuthOff), "smtp_auth_disabled"),
        s(
            "tls-version",
            Fault::Smtp(SmtpFault::Reply {
                at: SmtpStep::EhloAfterTls,
                code: 421,
                text: "4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.".into(),
            }),
            "tls_version",
        ),
        s(
            "throttled",
            Fault::Smtp(SmtpFault::Reply {
                at: SmtpStep::Auth,
                code: 432,
                text: "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded".into(),
            }),
            "throttled",
        ),
        s("send-as-denied", Fault::Smtp(SmtpFault::DenyMailFrom), "send_as_denied"),
        s(
            "sender-restricted",
            Fault::Delivery(Delivery::Reject {
                at: SmtpStep::MailFrom,
                code: 550,
                text: "5.1.8 Access denied, bad outbound sender".into(),
            }),
            "sender_restricted",
        ),
        s(
            "tenant-sending-blocked",
            Fault::Delivery(Delivery::Reject {
                at: SmtpStep::MailFrom,
                code: 550,
                text: "5.7.705 Access denied, tenant has exceeded threshold".into(),
            }),
            "tenant_sending_blocked",
        ),
        s("protocol-error", Fault::Smtp(SmtpFault::GarbageBanner), "protocol_error"),
        s("token-unavailable", Fault::Token(TokenFault::ExpiredSecret), "token_unavailable").aadsts("7000222"),
        s("dns", Fault::Dns, "dns"),
        s("connect-refused", Fault::Net(NetFault::Refuse), "connect_refused"),
        s("timeout", Fault::Net(NetFault::Silence), "timeout"),
        s("tls-handshake", Fault::Smtp(SmtpFault::StartTlsThenGarbage), "tls_handshake"),
        s("tls-cert-invalid", Fault::Smtp(SmtpFault::ExpiredCertificate), "tls_cert_invalid"),
        g("graph-permission-missing", Fault::Setup(Setup::NoGraphRole), "graph_permission_missing"),
        g("app-not-found", Fault::Graph(GraphFault::NotFound), "app_not_found"),
        g("throttled", Fault::Graph(GraphFault::TooManyRequests { retry_after_seconds: 1 }), "throttled"),
        g("http-error", Fault::Graph(GraphFault::ServerError), "http_error"),
        g("invalid-response", Fault::Graph(GraphFault::MalformedJson), "invalid_response"),
        g("token-unavailable", Fault::Token(TokenFault::InvalidSecret), "token_unavailable").aadsts("7000215"),
        g("dns", Fault::Dns, "dns"),
        g("connect-refused", Fault::Net(NetFault::Refuse), "connect_refused"),
        g("timeout", Fault::Net(NetFault::Silence), "timeout"),
        g("tls-handshake", Fault::Net(NetFault::NotTls("HTTP/1.0 200 OK\r\n\r\n".into())), "tls_handshake"),
        g("tls-cert-invalid", Fault::Net(NetFault::Certificate(CertFault::SelfSigned)), "tls_cert_invalid"),
    ]
}

/// (check, reason) of every reason of every check kind, from the code's reason enums.
fn every_reason() -> BTreeSet<(CheckKind, &'static str)> {
    CheckKind::ALL
        .into_iter()
        .flat_map(|k| Reason::of(k).into_iter().map(move |r| (k, r.as_str())))
        .collect()
}

#[test]
fn the_table_covers_every_reason_of_every_check_and_nothing_else() {
    let rows = table();
    let covered: BTreeSet<(CheckKind, &str)> = rows.iter().map(|r| (r.check, r.reason)).collect();
    assert_eq!(covered.len(), rows.len(), "one row per (check, reason)");
    let all = every_reason();
    let exempt: BTreeSet<&str> = NO_SCENARIO.iter().map(|(r, _)| *r).collect();
    let missing: Vec<_> = all
        .iter()
        .filter(|(_, r)| !exempt.contains(r))
        .filter(|k| !covered.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "reasons no scenario produces: {missing:?}"
    );
    let unknown: Vec<_> = covered.iter().filter(|k| !all.contains(k)).collect();
    assert!(
        unknown.is_empty(),
        "rows for reasons the code does not have: {unknown:?}"
    );
    // The exempt reasons are reasons of the code, and of the checks their tests produce.
    for (r, _) in NO_SCENARIO {
        assert!(all.iter().any(|(_, l)| *l == r), "{r} is no reason");
    }
    assert!(all.contains(&(CheckKind::Smtp, "message_rejected")));
    // The README's tables are generated from the same enums: each reason is in its check's.
    let tables = smtp_oauth_exporter::reasons::markdown_tables();
    for (kind, label) in &all {
        let start = tables
            .find(&format!("(`check=\"{kind}\"`)"))
            .expect("a table per check");
        let end = tables[start..]
            .find("\n\n")
            .map_or(tables.len(), |e| start + e);
        assert!(
            tables[start..end].contains(&format!("| `{label}` |")),
            "{kind}: {label} is not in its README table"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_reason_of_every_check_is_produced_over_a_socket() {
    run_table(&table(), false).await;
}

/// `message_rejected`: the server refuses the test message of `check --send-test-to` at RCPT TO
/// or at DATA; the JSON output carries the reason, the phase and the reply, and nothing was
/// queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_test_message_is_message_rejected() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    w.sim
        .add_app(SimApp::new(TENANT, &id, "mailer").with_secret(
            "Rej~secret-value",
            None,
            now,
            now + chrono::Duration::days(90),
        ));
    let file = w.file("s.secret", "Rej~secret-value");
    let mut mailboxes = String::new();
    let cases = [
        (
            "rcpt",
            SmtpStep::RcptTo,
            550,
            "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        ),
        (
            "data",
            SmtpStep::Data,
            554,
            "5.7.1 Message rejected as spam by Content Filtering",
        ),
    ];
    for (name, at, code, text) in &cases {
        let addr = w
            .sim
            .start_smtp(Some(SmtpFault::Reply {
                at: *at,
                code: *code,
                text: text.to_string(),
            }))
            .await
            .unwrap();
        w.sim.add_mailbox(&format!("{name}@contoso.com"), &[&id]);
        mailboxes += &format!(
            "  - {{ name: {name}, app: mailer, address: {name}@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
            addr.port()
        );
    }
    let config = w.file(
        "c.yml",
        &format!(
            "defaults:\n  checks:\n    smtp: {{ timeout: 5s }}\napps:\n{}mailboxes:\n{mailboxes}",
            secret_app(&w, "mailer", &id, &file, "")
        ),
    );
    for (name, _, code, _) in &cases {
        let (out, err, status) = run_binary_async(&[
            "check",
            name,
            "--send-test-to",
            "helpdesk@contoso.com",
            "--output",
            "json",
            "--config.file",
            &config,
        ])
        .await;
        assert_eq!(status, 1, "{name}: {out}{err}");
        let doc: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}{err}"));
        let smtp = &doc["mailboxes"][0]["checks"]["smtp"];
        assert_eq!(smtp["reason"], "message_rejected", "{name}: {smtp}");
        assert_eq!(smtp["smtp"]["failed_phase"], "send", "{name}: {smtp}");
        assert_eq!(smtp["smtp"]["reply"]["code"], *code, "{name}: {smtp}");
    }
    assert!(w.sim.messages().is_empty(), "nothing was queued");
}

/// `internal_error` is what a bug gives: here a job that cannot be (an SMTP check of an app),
/// run through the one entry point every run takes.
#[tokio::test]
async fn its_path_is_labelled_internal_error() {
    use smtp_oauth_exporter::checks::{self, Context, RunOptions};
    use smtp_oauth_exporter::plan::{Job, Target};
    let w = World::new().await;
    let plan = w.config(&format!(
        "apps:\n{}",
        secret_app(&w, "app", &client_id(1), &w.file("s", "x"), "")
    ));
    let app = plan.apps[0].clone();
    let settings = Job::new(CheckKind::Token, Target::App(app.clone()))
        .unwrap()
        .settings;
    let job = Job {
        kind: CheckKind::Smtp,
        target: Target::App(app),
        settings,
        digest: [0; 32],
    };
    let ctx = Context::new(std::sync::Arc::new(
        smtp_oauth_exporter::auth::TokenCache::new(),
    ));
    let report = checks::run(&job, &ctx, &RunOptions::default()).await;
    assert_eq!(report.reason().map(|r| r.as_str()), Some("internal_error"));
    assert!(report.reason().unwrap().is_transient());
}

/// The AADSTS table of the reference (`tests/testdata/reference/aadsts.md`, a verbatim copy of
/// shared/reference/microsoft-365.md's), row by row: (codes, meaning, setup step).
fn reference_rows() -> Vec<(Vec<u32>, String, String)> {
    let text = std::fs::read_to_string("tests/testdata/reference/aadsts.md").unwrap();
    let rows: Vec<(Vec<u32>, String, String)> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| AADSTS"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let codes = cells[0]
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            (codes, cells[1].to_string(), cells[2].to_string())
        })
        .collect();
    // The copy is the reference's table, when the reference is at hand.
    if let Ok(reference) = std::fs::read_to_string("/work/shared/reference/microsoft-365.md") {
        for l in text.lines().filter(|l| l.starts_with('|')) {
            assert!(reference.contains(l), "the reference has no row {l}");
        }
    }
    rows
}

/// The reason each row of the reference means, by its meaning column.
const MEANING: [(&str, &str); 13] = [
    ("client secret expired", "secret_expired"),
    ("invalid client secret", "secret_invalid"),
    ("neither secret nor assertion sent", "credential_missing"),
    ("client assertion signature invalid", "assertion_invalid"),
    ("application not found", "app_not_found"),
    ("application disabled", "app_disabled"),
    ("tenant not found", "tenant_not_found"),
    ("invalid scope", "invalid_scope"),
    ("resource principal not found", "resource_not_found"),
    ("consent missing", "consent_missing"),
    ("blocked by Conditional Access", "conditional_access"),
    ("tenant throttled", "throttled"),
    (
        "the client application is missing a service principal",
        "service_principal_missing",
    ),
];

fn step_of(reference: &str) -> Step {
    match reference.split_whitespace().next().unwrap_or("") {
        "1" => Step::AppRegistration,
        "2" => Step::Credential,
        "3" => Step::ApiPermission,
        "4" => Step::ExchangeAccess,
        "5" => Step::ClientConfig,
        _ if reference == "tenant policy" => Step::Policy,
        _ if reference == "transient" => Step::Transient,
        other => panic!("unknown step {other:?}"),
    }
}

/// Every code maps to the reason its meaning names, at the reference's setup step.
#[test]
fn every_aadsts_code_of_the_reference_maps_to_its_reason_and_step() {
    let rows = reference_rows();
    assert_eq!(rows.len(), MEANING.len(), "{rows:?}");
    let mut codes = 0;
    for (row_codes, meaning, step) in &rows {
        let want = MEANING
            .iter()
            .find(|(m, _)| meaning.starts_with(m))
            .unwrap_or_else(|| panic!("no reason for the meaning {meaning:?}"))
            .1;
        for code in row_codes {
            codes += 1;
            let r = TokenReason::from_aadsts(*code)
                .unwrap_or_else(|| panic!("AADSTS{code} ({meaning}) maps to no reason"));
            assert_eq!(r.as_str(), want, "AADSTS{code} ({meaning})");
            assert_eq!(r.info().step, step_of(step), "AADSTS{code} ({meaning})");
            // The README's evidence column names the code.
            assert!(
                r.info().evidence.contains(&code.to_string()),
                "AADSTS{code}: {:?}",
                r.info().evidence
            );
        }
    }
    assert_eq!(codes, 20);
    assert_eq!(TokenReason::from_aadsts(9_999_999), None);
}

/// ... and over a socket: the token endpoint answers each code, the metric carries its reason
/// and the code as the `aadsts` label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aadsts_code_of_the_reference_gives_its_reason_over_a_socket() {
    let mut rows = Vec::new();
    for (codes, _, _) in reference_rows() {
        for code in codes {
            let reason = TokenReason::from_aadsts(code).unwrap().as_str();
            rows.push(
                Row::new(
                    CheckKind::Token,
                    &format!("aadsts-{code}"),
                    aadsts(400, "invalid_request", code),
                    reason,
                )
                .aadsts(&code.to_string()),
            );
        }
    }
    assert_eq!(rows.len(), 20);
    run_table(&rows, false).await;
}

/// Consent revoked is no token error: Entra ID issues a token without `SMTP.SendAsApp`. The
/// token check succeeds and says the role is missing, SMTP AUTH is refused (535 5.7.3), and the
/// verdict of the mailbox and of an app without mailbox is `consent_missing` (step 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_smtp_send_as_app_is_consent_missing() {
    let w = World::new().await;
    let now = Utc::now();
    let file = w.file("s.secret", "Cns~secret-value");
    let mut yaml = String::from(
        "scheduler: { startup_spread: 200ms }\ndefaults:\n  checks:\n    token: { schedule: 1s, timeout: 2s }\n    smtp: { schedule: 1s, timeout: 4s }\n    graph: { enabled: false }\napps:\n",
    );
    for (n, name) in [(1, "with-mailbox"), (2, "alone")] {
        let id = client_id(n);
        w.sim.add_app(
            SimApp::new(TENANT, &id, name)
                .with_secret(
                    "Cns~secret-value",
                    None,
                    now,
                    now + chrono::Duration::days(90),
                )
                .without_consent(),
        );
        yaml += &secret_app(&w, name, &id, &file, "    authorization: classic\n");
    }
    w.sim.add_mailbox("invoices@contoso.com", &[&client_id(1)]);
    yaml += &format!(
        "mailboxes:\n  - {{ name: invoices, app: with-mailbox, address: invoices@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
        w.sim.smtp_addr.port()
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(&agent, Duration::from_secs(15), "the verdicts", |t| {
        ["invoices", "alone"].iter().all(|target| {
            value(
                t,
                "smtp_oauth_verdict",
                &[
                    ("target", target),
                    ("step", "3"),
                    ("cause", "consent_missing"),
                ],
            ) == Some(1.0)
        })
    })
    .await;
    for app in ["with-mailbox", "alone"] {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_check_success",
                &[("check", "token"), ("target", app)]
            ),
            Some(1.0),
            "{app}"
        );
        assert_eq!(
            value(
                &text,
                "smtp_oauth_token_smtp_role_present",
                &[("target", app)]
            ),
            Some(0.0),
            "{app}"
        );
    }
    assert_reason(&text, "smtp", "invoices", "auth_rejected");
    agent.stop().await;
}
