//! The status document's inventories: per tenant, the apps that can send SMTP and their
//! credentials (`checks.discovery`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::CredentialActivity;

/// A tenant's apps that hold `SMTP.SendAsApp`, from its last successful inventory.
#[derive(Debug, Clone, Serialize)]
pub struct TenantDiscovery {
    pub tenant: String,
    /// When it was read.
    pub read_at: DateTime<Utc>,
    /// "14 apps can send SMTP (2 configured); 3 credentials in use expire this month".
    pub summary: String,
    pub apps_can_send: usize,
    pub configured: usize,
    /// Credentials of the discovered apps expiring within 30 days: those signed in with lately
    /// when the activity is read, else all.
    pub credentials_expiring: usize,
    /// Whether the counts above know which credentials are in use (credential activity read).
    pub activity: bool,
    pub activity_unavailable: Option<String>,
    pub apps: Vec<DiscoveredAppStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiscoveredAppStatus {
    pub app_id: String,
    pub display_name: String,
    /// The configured app (watched by its own checks); `null`: discovered, watched by the
    /// inventory alone.
    pub configured: Option<String>,
    pub discovered: bool,
    /// A discovered app's credentials with their last sign-ins.
    pub credentials: Vec<CredentialActivity>,
    pub next_expiry: Option<DateTime<Utc>>,
    /// What could not be read of it.
    pub note: Option<String>,
}

pub(super) fn discovery_status(
    d: &crate::checks::discovery::DiscoveryDetails,
    read_at: DateTime<Utc>,
    settings: &crate::plan::DiagnosisSettings,
    now: DateTime<Utc>,
) -> TenantDiscovery {
    let window =
        |x: std::time::Duration| chrono::Duration::from_std(x).unwrap_or(chrono::Duration::MAX);
    let activity = d.activity_read && d.activity_unavailable.is_none();
    let expiring = crate::checks::discovery::expiring(
        d,
        now,
        chrono::Duration::days(30),
        window(settings.credential_used_within),
    );
    let configured = d.apps.iter().filter(|a| a.configured.is_some()).count();
    let state = |last| {
        if activity {
            super::credentials::activity_state(last, settings, now)
        } else {
            "unknown"
        }
    };
    let apps = d
        .apps
        .iter()
        .map(|a| {
            let reg = a.credentials.as_ref();
            DiscoveredAppStatus {
                app_id: a.app_id.clone(),
                display_name: a.display_name.clone(),
                configured: a.configured.clone(),
                discovered: a.configured.is_none(),
                credentials: reg
                    .map(|r| r.credentials.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        let last = a
                            .activity
                            .iter()
                            .find(|k| k.key_id.eq_ignore_ascii_case(&c.key_id))
                            .and_then(|k| k.last_sign_in);
                        CredentialActivity::of(c, last, false, state(last))
                    })
                    .collect(),
                next_expiry: reg.and_then(|r| r.next_expiry),
                note: a.note.clone(),
            }
        })
        .collect();
    TenantDiscovery {
        tenant: d.tenant.clone(),
        read_at,
        summary: format!(
            "{} app{} can send SMTP ({configured} configured); {expiring} credential{} {}expire{} this month",
            d.apps.len(),
            if d.apps.len() == 1 { "" } else { "s" },
            if expiring == 1 { "" } else { "s" },
            if activity { "in use " } else { "" },
            if expiring == 1 { "s" } else { "" },
        ),
        apps_can_send: d.apps.len(),
        configured,
        credentials_expiring: expiring,
        activity,
        activity_unavailable: d.activity_unavailable.clone(),
        apps,
    }
}
