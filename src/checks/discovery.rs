//! The inventory of a tenant's apps that can send SMTP (opt-in per app, read once per tenant):
//! every app that holds `SMTP.SendAsApp`, from the app role assignments of the Office 365
//! Exchange Online service principal, with the credentials of its service principal and (when
//! registered in the tenant) of its registration, and where the discovering app reads credential
//! activity, their last sign-ins. Apps already configured keep their own checks: the inventory
//! lists them and reads nothing more of them. Apps authorized by RBAC for Applications hold no
//! role assignment there, and are not found (Exchange alone knows them).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::activity::{self, KeyActivity, RawActivity};
use super::graph::{self, Registration};
use super::graph_call::{CallFailure, Graph, GraphError, PageError};
use super::{Context, Details, Failure, Outcome};
use crate::plan::Target;
use crate::reasons::{DiscoveryReason, Reason};

/// The application ID of Office 365 Exchange Online (the resource of `SMTP.SendAsApp`).
pub const EXCHANGE_ONLINE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";
/// The app role whose holders can send over SMTP with client credentials.
const SEND_AS_APP: &str = "SMTP.SendAsApp";
/// At most this many apps are inventoried (two Graph reads each): a tenant with more is
/// reported, not read without end.
pub const MAX_APPS: usize = 500;
/// Pages of role assignments (999 each) or of the activity report read at most.
const MAX_PAGES: usize = 20;

/// One app that can send SMTP.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredApp {
    /// Its application (client) ID: the `target` of its series when it is not configured.
    pub app_id: String,
    pub display_name: String,
    /// The configured app with this client ID (its own checks watch it); `None`: discovered.
    pub configured: Option<String>,
    /// Its credentials (discovered apps only), with their dates; `None` when they could not be
    /// read (the reason is in `note`).
    pub credentials: Option<Registration>,
    /// Their last sign-ins, where the activity is read.
    pub activity: Vec<KeyActivity>,
    /// Why something of it could not be read.
    pub note: Option<String>,
}

/// What an inventory run learned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiscoveryDetails {
    /// The tenant target.
    pub tenant: String,
    /// The app whose Graph token read it.
    pub reader: String,
    pub http_status: Option<u16>,
    /// Every app holding `SMTP.SendAsApp`, by display name.
    pub apps: Vec<DiscoveredApp>,
    /// Whether the activity was read for them (`Some(why)`: not available).
    pub activity_unavailable: Option<String>,
    /// Whether the discovering app reads credential activity at all.
    pub activity_read: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangePrincipal {
    id: String,
    #[serde(default)]
    app_roles: Vec<AppRole>,
}

#[derive(Debug, Deserialize)]
struct AppRole {
    id: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Assignment {
    #[serde(default)]
    app_role_id: Option<String>,
    #[serde(default)]
    principal_id: Option<String>,
    #[serde(default)]
    principal_display_name: Option<String>,
    #[serde(default)]
    principal_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Principal {
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

fn reason_of(e: &GraphError) -> Reason {
    match e.failure {
        CallFailure::Token(_) => DiscoveryReason::TokenUnavailable.into(),
        CallFailure::TooLarge => DiscoveryReason::InvalidResponse.into(),
        CallFailure::Status(403) => DiscoveryReason::PermissionMissing.into(),
        _ if e.throttled() => DiscoveryReason::Throttled.into(),
        _ => e
            .common_reason()
            .unwrap_or(DiscoveryReason::HttpError.into()),
    }
}

fn call_failed(e: &GraphError, d: DiscoveryDetails) -> Outcome {
    Outcome {
        failure: Some(e.failure(reason_of(e))),
        details: Details::Discovery(d),
        retry_after: e.retry_after,
    }
}

fn invalid(m: String, d: DiscoveryDetails) -> Outcome {
    Outcome::failure(
        Failure::new(DiscoveryReason::InvalidResponse, m),
        Details::Discovery(d),
    )
}

fn page_failed(e: PageError, d: DiscoveryDetails) -> Outcome {
    match e {
        PageError::Call(e) => call_failed(&e, d),
        PageError::Invalid(m) => invalid(m, d),
    }
}

/// Inventories the tenant's apps that can send SMTP.
pub async fn run(target: &Target, ctx: &Context, deadline: Instant) -> Outcome {
    let Some((tenant, read)) = target
        .tenant()
        .and_then(|t| Some((t, t.discovery.as_ref()?)))
    else {
        return Outcome::failure(
            Failure::new(
                crate::reasons::CommonReason::InternalError,
                "the inventory runs on tenants that enable it",
            ),
            Details::None,
        );
    };
    let mut d = DiscoveryDetails {
        tenant: tenant.name.clone(),
        reader: read.reader.name.clone(),
        activity_read: read.by.activity_check.enabled,
        ..DiscoveryDetails::default()
    };
    let graph = match Graph::connect(&read.reader, &ctx.tokens, deadline).await {
        Ok(g) => g,
        Err(e) => return call_failed(&e, d),
    };
    // 1. Exchange Online's service principal in the tenant, and the id of its SMTP.SendAsApp.
    let mut url = graph.url(
        "v1.0",
        &[&format!(
            "servicePrincipals(appId='{EXCHANGE_ONLINE_APP_ID}')"
        )],
    );
    url.query_pairs_mut().append_pair("$select", "id,appRoles");
    let exo = match graph.get(url).await {
        Ok(r) => r,
        // No Exchange Online in the tenant: nothing can send SMTP.
        Err(e) if e.status() == Some(404) && e.from_graph() => {
            d.http_status = Some(404);
            return Outcome::success(Details::Discovery(d));
        }
        Err(e) => {
            d.http_status = e.status();
            return call_failed(&e, d);
        }
    };
    d.http_status = Some(exo.status);
    let exo: ExchangePrincipal = match serde_json::from_slice(&exo.body) {
        Ok(x) => x,
        Err(e) => return invalid(format!("the Exchange Online service principal: {e}"), d),
    };
    let Some(role) = exo
        .app_roles
        .iter()
        .find(|r| r.value.as_deref() == Some(SEND_AS_APP))
        .map(|r| r.id.to_ascii_lowercase())
    else {
        return invalid(
            format!("the Exchange Online service principal has no app role {SEND_AS_APP}"),
            d,
        );
    };
    // 2. Who holds it.
    let mut url = graph.url("v1.0", &["servicePrincipals", &exo.id, "appRoleAssignedTo"]);
    url.query_pairs_mut().append_pair("$top", "999");
    let assignments: Vec<Assignment> = match graph.get_pages(url, MAX_PAGES).await {
        Ok(a) => a,
        Err(e) => return page_failed(e, d),
    };
    let mut holders: Vec<(String, String)> = assignments
        .into_iter()
        .filter(|a| {
            a.app_role_id
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(&role))
                && a.principal_type
                    .as_deref()
                    .is_none_or(|t| t.eq_ignore_ascii_case("ServicePrincipal"))
        })
        .filter_map(|a| {
            Some((
                a.principal_id?,
                a.principal_display_name.unwrap_or_default(),
            ))
        })
        .collect();
    holders.sort();
    holders.dedup_by(|a, b| a.0 == b.0);
    if holders.len() > MAX_APPS {
        return invalid(
            format!(
                "{} apps hold SMTP.SendAsApp, more than the {MAX_APPS} the inventory reads",
                holders.len()
            ),
            d,
        );
    }
    // 3. Each holder's service principal (its appId and credentials), and for those not
    //    configured, their registration.
    let now = Utc::now();
    for (principal, name) in holders {
        let mut url = graph.url("v1.0", &["servicePrincipals", &principal]);
        url.query_pairs_mut()
            .append_pair("$select", graph::SP_SELECT);
        let sp = match graph.get(url).await {
            Ok(r) => r,
            // Deleted since the assignment was listed.
            Err(e) if e.status() == Some(404) => continue,
            Err(e) => return call_failed(&e, d),
        };
        let p: Principal = match serde_json::from_slice(&sp.body) {
            Ok(p) => p,
            Err(e) => return invalid(format!("service principal {principal}: {e}"), d),
        };
        let Some(app_id) = p
            .app_id
            .map(|a| a.to_ascii_lowercase())
            .filter(|a| crate::plan::is_guid(a))
        else {
            return invalid(format!("service principal {principal} has no appId"), d);
        };
        let display_name = super::graph_call::clean(&p.display_name.unwrap_or(name));
        let configured = tenant.configured_as(&app_id).map(str::to_string);
        let mut app = DiscoveredApp {
            app_id: app_id.clone(),
            display_name,
            configured,
            credentials: None,
            activity: Vec::new(),
            note: None,
        };
        if app.configured.is_none() {
            let mut url = graph.url("v1.0", &[&format!("applications(appId='{app_id}')")]);
            url.query_pairs_mut().append_pair("$select", graph::SELECT);
            let registration = match graph.get(url).await {
                Ok(r) => Some(r.body),
                // A multi-tenant app registered in another tenant: its service principal's
                // credentials only.
                Err(e) if e.status() == Some(404) => None,
                Err(e) => return call_failed(&e, d),
            };
            match graph::read_credentials(&app_id, registration.as_deref(), &sp.body, now) {
                Ok(r) => app.credentials = Some(r),
                Err(m) => app.note = Some(m),
            }
        }
        d.apps.push(app);
    }
    d.apps
        .sort_by(|a, b| (&a.display_name, &a.app_id).cmp(&(&b.display_name, &b.app_id)));
    // 4. Their last sign-ins, all at once, where the discovering app reads activity.
    if d.activity_read && d.apps.iter().any(|a| a.configured.is_none()) {
        let url = activity::report_url(&graph, None);
        match graph.get_pages::<RawActivity>(url, MAX_PAGES).await {
            Ok(entries) => match activity::read_keys(entries, None) {
                Ok(mut by_app) => {
                    for a in d.apps.iter_mut().filter(|a| a.configured.is_none()) {
                        a.activity = by_app.remove(&a.app_id).unwrap_or_default();
                    }
                }
                Err(m) => return invalid(m, d),
            },
            Err(PageError::Call(e)) => match activity::unavailable(&e, &d.reader) {
                Some(why) => d.activity_unavailable = Some(why),
                None => return call_failed(&e, d),
            },
            Err(PageError::Invalid(m)) => return invalid(m, d),
        }
    }
    Outcome::success(Details::Discovery(d))
}

/// How many discovered credentials expire within `window` of `now` (and have not expired):
/// those in use lately (signed in within `used_within`) when the activity is read, else all.
pub fn expiring(
    d: &DiscoveryDetails,
    now: DateTime<Utc>,
    window: chrono::Duration,
    used_within: chrono::Duration,
) -> usize {
    let in_use = d.activity_read && d.activity_unavailable.is_none();
    d.apps
        .iter()
        .filter_map(|a| Some((a, a.credentials.as_ref()?)))
        .flat_map(|(a, r)| r.credentials.iter().map(move |c| (a, c)))
        .filter(|(a, c)| {
            let used = a
                .activity
                .iter()
                .find(|k| k.key_id.eq_ignore_ascii_case(&c.key_id))
                .and_then(|k| k.last_sign_in)
                .is_some_and(|t| now - t < used_within);
            (!in_use || used) && c.end.is_some_and(|e| e > now && e - now <= window)
        })
        .count()
}
