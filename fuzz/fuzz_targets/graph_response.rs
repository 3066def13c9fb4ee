//! Microsoft Graph's reply to the credential check's GET: `checks::graph::read_reply`, what
//! `graph::run` does with the reply. A 200 is read as the application object (secrets and
//! certificates, their dates, expiry, which one the agent signs in with, by secret hint or
//! certificate thumbprint); anything else is mapped to a reason with Graph's error body and
//! `Retry-After`.
//!
//! Input: byte 0 picks the HTTP status, the app (client secret or certificate) and the
//! `Retry-After` / `request-id` headers; byte 1 the time of the run; the rest is the body.
#![no_main]

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, Utc};
use libfuzzer_sys::fuzz_target;
use smtp_oauth_exporter::checks::graph::{self, CredentialType, GraphDetails};
use smtp_oauth_exporter::checks::Details;
use smtp_oauth_exporter::http_client::BoundedResponse;
use smtp_oauth_exporter::plan::App;
use smtp_oauth_exporter::reasons::{GraphReason, Reason};

const STATUSES: [u16; 8] = [200, 200, 200, 200, 403, 404, 429, 503];
const OTHER_STATUSES: [u16; 4] = [500, 401, 400, 302];
const URL: &str = "https://graph.microsoft.com/v1.0/applications(appId='x')?$select=id";

/// Two apps as the shipped example configures them: `billing` signs in with a client secret
/// (hint `pas`), `scanner` with a certificate (SHA-1 D82B39C3A2E0446EACB845DDCBD03FFD6C100E4D).
fn apps() -> &'static [Arc<App>; 2] {
    static APPS: OnceLock<[Arc<App>; 2]> = OnceLock::new();
    APPS.get_or_init(|| {
        let yaml = "apps:
  - name: billing
    tenant: contoso.onmicrosoft.com
    client_id: 1f0c5a7e-2b8d-4e51-9a3c-6d2f8b1e4a70
    client_secret_file: secrets/billing.secret
  - name: scanner
    tenant: 8c3dd2f5-7f41-4d39-a9f6-3f1d8e2b6c10
    client_id: 2a9d6b1c-3e7f-4a82-b5d4-7e3a9c2f5b81
    certificate:
      cert_file: secrets/scanner.crt
      key_file: secrets/scanner.key
";
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let plan = smtp_oauth_exporter::config::from_yaml(yaml, "fuzz.yml", &base)
            .expect("the fuzz configuration loads");
        [plan.apps[0].clone(), plan.apps[1].clone()]
    })
}

fuzz_target!(|data: &[u8]| {
    let [select, when, body @ ..] = data else {
        return;
    };
    let status = if select & 0x80 == 0 {
        STATUSES[usize::from(select & 7)]
    } else {
        OTHER_STATUSES[usize::from(select & 3)]
    };
    let app = &apps()[usize::from((select >> 3) & 1)];
    let mut headers = http::HeaderMap::new();
    match (select >> 4) & 3 {
        1 => drop(headers.insert("retry-after", http::HeaderValue::from_static("30"))),
        2 => drop(headers.insert(
            "retry-after",
            http::HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        )),
        3 => drop(headers.insert(
            "request-id",
            http::HeaderValue::from_static("7d0e4a6b-1c2f-4e3d-9a8b-5c6d7e8f9a0b"),
        )),
        _ => {}
    }
    // From 2024-06 to about 2029: before, among and after the seeds' dates.
    let now = DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::days(i64::from(*when) * 7);
    let resp = BoundedResponse {
        status,
        headers,
        body: body.to_vec(),
    };
    let details = GraphDetails {
        reader: app.name.clone(),
        ..GraphDetails::default()
    };
    let outcome = graph::read_reply(app, &app.name, URL, &resp, details, now);
    let Details::Graph(details) = &outcome.details else {
        panic!("not Graph details: {:?}", outcome.details);
    };
    assert_eq!(details.http_status, Some(status));
    match &outcome.failure {
        Some(f) => {
            assert!(details.registration.is_none());
            let _ = f.reason.as_str();
            assert!(status != 200 || f.reason == Reason::from(GraphReason::InvalidResponse));
        }
        None => {
            assert_eq!(status, 200);
            let reg = details.registration.as_ref().expect("a registration");
            let in_use = reg.credentials.iter().filter(|c| c.in_use).count();
            assert_eq!(reg.in_use_matches, in_use);
            assert_eq!(reg.hint_ambiguous, in_use > 1);
            assert_eq!(reg.in_use().is_some(), in_use == 1);
            let ends = reg.credentials.iter().filter_map(|c| c.end);
            assert_eq!(reg.earliest_expiry, ends.clone().min());
            assert_eq!(reg.next_expiry, ends.filter(|e| *e > now).min());
            // Secrets first, then certificates; keyIds usable as label values and unique per kind.
            let kinds: Vec<CredentialType> = reg.credentials.iter().map(|c| c.kind).collect();
            assert!(kinds.is_sorted());
            let mut seen = HashSet::new();
            for c in &reg.credentials {
                assert!(!c.key_id.is_empty() && c.key_id.len() <= 128);
                assert!(!c.key_id.chars().any(char::is_control));
                assert!(seen.insert((c.kind, c.key_id.as_str())));
            }
        }
    }
});
