//! The inventory of a tenant's apps that can send SMTP, against the simulator over real
//! sockets: the holders of `SMTP.SendAsApp` found through the Office 365 Exchange Online service
//! principal's app role assignments (paged; an app without consent, one on RBAC for
//! Applications and one with another role only left out), the configured ones left to their own
//! checks, the discovered ones' credentials and last sign-ins exported under their client ID and
//! marked discovered on `/metrics`, `/status` and the page, and the summary "N apps can send
//! SMTP; M credentials in use expire this month".

use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::sim::{SimApp, ROLE_APPLICATION_READ_ALL, ROLE_AUDIT_LOG_READ_ALL};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_that_can_send_smtp_are_found_and_their_credentials_watched() {
    let w = World::new().await;
    let now = Utc::now();
    let days = chrono::Duration::days;
    // The configured app that inventories its tenant (and reads credential activity).
    let reader = w.app_with_secret(1, "directory", "Dr1~the-directory-readers-secret");
    {
        let mut d = w.sim.directory.lock().unwrap();
        let a = d.apps.get_mut(&client_id(1)).unwrap();
        a.graph_roles = vec![
            ROLE_APPLICATION_READ_ALL.into(),
            ROLE_AUDIT_LOG_READ_ALL.into(),
        ];
    }
    // Three apps nobody configured that hold SMTP.SendAsApp: one signed in an hour ago with a
    // secret that expires in 20 days, one whose only secret (on its service principal) is
    // unused for 100 days, one with a certificate and no sign-in.
    w.sim.add_app(
        SimApp::new(TENANT, &client_id(2), "Intranet portal").with_secret(
            "In2~intranet",
            Some("intranet-2024"),
            now - days(345),
            now + days(20) + chrono::Duration::hours(1),
        ),
    );
    w.sim.set_sign_in(
        &client_id(2),
        "intranet-2024",
        now - chrono::Duration::hours(1),
    );
    w.sim.add_app(
        SimApp::new(TENANT, &client_id(3), "Fax gateway").with_service_principal_secret(
            "Fx3~fax",
            Some("fax"),
            now - days(400),
            now + days(200),
        ),
    );
    w.sim.set_sign_in(&client_id(3), "fax", now - days(100));
    w.sim.add_app(
        SimApp::new(TENANT, &client_id(4), "Scanner").with_certificate(
            smtp_oauth_exporter::sim::app_certificate("scanner.example").cert_der,
            Some("CN=scanner.example"),
            now - days(10),
            now + days(300),
        ),
    );
    // Not senders: no consent; RBAC for Applications (no role to hold); another role only.
    w.sim
        .add_app(SimApp::new(TENANT, &client_id(5), "No consent").without_consent());
    w.sim.add_app(
        SimApp::new(TENANT, &client_id(6), "Notifier").with_rbac_scope(&["a@contoso.com"]),
    );
    let mut full_access = SimApp::new(TENANT, &client_id(7), "Full access only");
    full_access.exchange_roles = vec!["full_access_as_app".into()];
    w.sim.add_app(full_access);
    // Two role assignments a page: four pages.
    w.sim.set_discovery_page_cap(2);
    let yaml = format!(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: {{ schedule: 1m }}\napps:\n{reader}    checks:\n      discovery: {{ enabled: true, schedule: 1s, timeout: 10s }}\n      activity: {{ enabled: true, schedule: 1m }}\n"
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(&agent, Duration::from_secs(20), "the inventory", |t| {
        t.contains("smtp_oauth_discovered_app_info{")
    })
    .await;
    let apps = |configured: &str| {
        value(
            &text,
            "smtp_oauth_smtp_send_apps",
            &[("target", TENANT), ("configured", configured)],
        )
    };
    assert_eq!(apps("true"), Some(1.0), "{text}");
    assert_eq!(apps("false"), Some(3.0), "{text}");
    for (n, name) in [(2, "Intranet portal"), (3, "Fax gateway"), (4, "Scanner")] {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_discovered_app_info",
                &[
                    ("target", &client_id(n)),
                    ("tenant", TENANT),
                    ("display_name", name)
                ]
            ),
            Some(1.0),
            "{name}"
        );
    }
    for n in [5, 6, 7] {
        assert!(!text.contains(&client_id(n)), "{n} holds no SMTP.SendAsApp");
    }
    // Their credentials, registration and service principal alike, under their client ID.
    let intranet_key = w.sim.key_id(&client_id(2), "intranet-2024").unwrap();
    assert!(value(
        &text,
        "smtp_oauth_credential_expiry_timestamp_seconds",
        &[("target", &client_id(2)), ("key_id", &intranet_key)]
    )
    .is_some());
    let fax_key = w.sim.key_id(&client_id(3), "fax").unwrap();
    assert!(value(
        &text,
        "smtp_oauth_credential_expiry_timestamp_seconds",
        &[
            ("target", &client_id(3)),
            ("key_id", &fax_key),
            ("origin", "service_principal")
        ]
    )
    .is_some());
    let last = value(
        &text,
        "smtp_oauth_credential_last_sign_in_timestamp_seconds",
        &[("target", &client_id(2)), ("key_id", &intranet_key)],
    )
    .unwrap();
    assert!((last - (now - chrono::Duration::hours(1)).timestamp() as f64).abs() < 2.0);
    // Nothing about a credential in use for an app the agent does not sign in as.
    assert!(!text.contains(&format!(
        "smtp_oauth_credential_in_use_found{{target=\"{}\"",
        client_id(2)
    )));
    // The configured app keeps its own checks: no credential series of its under the inventory.
    assert!(!text.contains(&format!("target=\"{}\"", client_id(1))));

    // /status: the summary, each app marked discovered or configured.
    let status = agent.status();
    let inv = &status.discovery[0];
    assert_eq!(inv.tenant, TENANT);
    assert_eq!(
        inv.summary,
        "4 apps can send SMTP (1 configured); 1 credential in use expires this month"
    );
    let intranet = inv.apps.iter().find(|a| a.app_id == client_id(2)).unwrap();
    assert!(intranet.discovered && intranet.configured.is_none());
    assert_eq!(intranet.credentials[0].state, "active");
    let fax = inv.apps.iter().find(|a| a.app_id == client_id(3)).unwrap();
    assert_eq!(fax.credentials[0].state, "stale");
    let me = inv.apps.iter().find(|a| a.app_id == client_id(1)).unwrap();
    assert_eq!(me.configured.as_deref(), Some("directory"));
    assert!(me.credentials.is_empty(), "its own checks read those");

    // The page: the summary and the discovered apps, marked so.
    let html = reqwest::get(format!("http://{}/", agent.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(
            "4 apps can send SMTP (1 configured); 1 credential in use expires this month"
        ),
        "{html}"
    );
    assert!(html.contains(&format!(
        "data-app-id=\"{}\" data-discovered=\"true\"",
        client_id(2)
    )));
    assert!(html.contains(&format!(
        "data-app-id=\"{}\" data-discovered=\"false\"",
        client_id(1)
    )));
    assert!(
        w.sim.discovery_requests() >= 4 + 3,
        "paged, and one per holder"
    );
    agent.stop().await;
}
