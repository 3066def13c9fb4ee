//! The built-in demo: starts the simulator, fills its directory with apps and mailboxes (healthy
//! and broken), and writes a configuration that points the agent at it, all on loopback.

use chrono::{Duration as Days, Utc};

use crate::config::Config;
use crate::sim::{app_certificate, SimApp, Simulator, ROLE_APPLICATION_READ_ALL};

/// A running demo: the simulator and the configuration for the agent.
pub struct Demo {
    pub sim: Simulator,
    pub config: Config,
    /// Holds the CA file, secret files and certificate the configuration names.
    _dir: tempfile::TempDir,
}

const TENANT: &str = "8c3dd2f5-7f41-4d39-a9f6-3f1d8e2b6c10";
const BILLING: &str = "1f0c5a7e-2b8d-4e51-9a3c-6d2f8b1e4a70";
const SCANNER: &str = "2a9d6b1c-3e7f-4a82-b5d4-7e3a9c2f5b81";
const LEGACY: &str = "3b8e7c2d-4f6a-4b93-86e5-8f4b0d3a6c92";
const TYPO: &str = "4c7f8d3e-5a5b-4ca4-97f6-9a5c1e4b7da3";

impl Demo {
    pub async fn start() -> anyhow::Result<Demo> {
        let sim = Simulator::start().await?;
        let dir = tempfile::tempdir()?;
        let now = Utc::now();
        sim.add_tenant(TENANT, &["contoso.onmicrosoft.com"]);

        // Healthy app with a client secret that expires in 20 days, an older secret that is not
        // the one in use (it expires sooner: only the in-use series tells them apart) and a
        // certificate. It may read app registrations in Graph, its own and those of the apps
        // that name it as graph_reader.
        let billing_secret = "Bq8~demo-billing-secret-value-0001";
        let billing_cert = app_certificate("billing.contoso.example");
        sim.add_app(
            SimApp::new(TENANT, BILLING, "Billing (ERP invoices)")
                .with_secret(
                    billing_secret,
                    Some("erp-2025"),
                    now - Days::days(700),
                    now + Days::days(20),
                )
                .with_secret(
                    "Wn2~demo-billing-old-secret-0000",
                    Some("erp-2024"),
                    now - Days::days(725),
                    now + Days::days(5),
                )
                .with_certificate(
                    billing_cert.cert_der,
                    Some("CN=billing.contoso.example"),
                    now - Days::days(30),
                    now + Days::days(335),
                )
                .with_graph_role(ROLE_APPLICATION_READ_ALL),
        );
        // Healthy app with a certificate credential, but no Graph permission and no reader:
        // its Graph check fails with graph_permission_missing.
        let cert = app_certificate("scanner.contoso.example");
        sim.add_app(
            SimApp::new(TENANT, SCANNER, "Scan to mail").with_certificate(
                cert.cert_der.clone(),
                Some("scanner-cert"),
                now - Days::days(10),
                now + Days::days(355),
            ),
        );
        // The secret expired: AADSTS7000222.
        sim.add_app(SimApp::new(TENANT, LEGACY, "Legacy ERP").with_secret(
            "Lx3~demo-legacy-secret-value-0003",
            Some("legacy"),
            now - Days::days(731),
            now - Days::days(1),
        ));
        // The admin pasted the secret's ID instead of its value: AADSTS7000215.
        sim.add_app(
            SimApp::new(TENANT, TYPO, "Document management").with_secret(
                "Dm5~demo-dms-secret-value-0004",
                Some("dms"),
                now - Days::days(30),
                now + Days::days(700),
            ),
        );
        sim.add_mailbox("invoices@contoso.com", &[BILLING]);
        // Step 4 was never done for the scanner: no FullAccess, so AUTH fails 535 5.7.3.
        sim.add_mailbox("scans@contoso.com", &[]);

        let write = |name: &str, text: &str| -> anyhow::Result<String> {
            let p = dir.path().join(name);
            std::fs::write(&p, text)?;
            Ok(p.display().to_string())
        };
        let ca = write("sim-ca.pem", &sim.ca_pem)?;
        let billing_file = write("billing.secret", billing_secret)?;
        let legacy_file = write("legacy.secret", "Lx3~demo-legacy-secret-value-0003")?;
        let typo_file = write("dms.secret", "6f1e2d3c-secret-id-not-the-value")?;
        let cert_file = write("scanner.crt", &cert.cert_pem)?;
        let key_file = write("scanner.key", &cert.key_pem)?;
        let base = sim.base_url();
        let yaml = format!(
            r#"
scheduler:
  startup_spread: 3s
defaults:
  checks:
    token: {{ schedule: 30s, timeout: 10s }}
    smtp: {{ schedule: 30s, timeout: 10s }}
    graph: {{ schedule: 1m, timeout: 10s }}
apps:
  - name: billing
    tenant: contoso.onmicrosoft.com
    client_id: {BILLING}
    client_secret_file: {billing_file}
    login_url: {base}
    graph_url: {base}
    ca_file: {ca}
  - name: scanner
    tenant: {TENANT}
    client_id: {SCANNER}
    certificate: {{ cert_file: {cert_file}, key_file: {key_file} }}
    login_url: {base}
    graph_url: {base}
    ca_file: {ca}
  - name: legacy-erp
    tenant: {TENANT}
    client_id: {LEGACY}
    client_secret_file: {legacy_file}
    login_url: {base}
    graph_url: {base}
    ca_file: {ca}
    # Graph, read with billing's token, shows why the token fails: the secret in use expired.
    graph_reader: billing
  - name: dms
    tenant: {TENANT}
    client_id: {TYPO}
    client_secret_file: {typo_file}
    login_url: {base}
    graph_url: {base}
    ca_file: {ca}
    # Graph shows that the configured secret is none of the app's (in_use_found 0).
    graph_reader: billing
mailboxes:
  - name: invoices
    app: billing
    address: invoices@contoso.com
    smtp_host: 127.0.0.1
    smtp_port: {smtp_port}
  - name: scans
    app: scanner
    address: scans@contoso.com
    smtp_host: 127.0.0.1
    smtp_port: {smtp_port}
"#,
            smtp_port = sim.smtp_addr.port()
        );
        let config = Config::from_yaml(&yaml, "demo.yml", dir.path())?;
        Ok(Demo {
            sim,
            config,
            _dir: dir,
        })
    }
}
