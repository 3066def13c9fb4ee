//! Microsoft 365 service health (opt-in per app, with `ServiceHealth.Read.All`): the open issues
//! of the app's tenant for the services the chain depends on (Exchange Online, Microsoft Entra),
//! from `GET {graph}/v1.0/admin/serviceAnnouncement/issues`. The diagnosis names an open incident
//! when a check of that tenant fails for a transient, network or unexplained reason.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::graph_call::{CallFailure, Graph, GraphError};
use super::{Context, Details, Failure, Outcome};
use crate::plan::Target;
use crate::reasons::{HealthReason, Reason};

/// At most this many issues are kept from one read (a tenant has a handful).
const MAX_ISSUES: usize = 200;

/// The services whose issues matter to the chain: the `service` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// SMTP submission, mailboxes, mail flow.
    ExchangeOnline,
    /// Sign-in and tokens (formerly Azure Active Directory).
    MicrosoftEntra,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::ExchangeOnline => "exchange_online",
            Service::MicrosoftEntra => "microsoft_entra",
        }
    }

    /// Graph's `service` text → the service, for those that matter (in any letter case).
    fn from_graph(s: &str) -> Option<Service> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exchange online" => Some(Service::ExchangeOnline),
            "microsoft entra" | "microsoft entra id" | "azure active directory" => {
                Some(Service::MicrosoftEntra)
            }
            _ => None,
        }
    }
}

/// Graph's `serviceHealthStatus` values (the `status` label in snake case; others: `other`),
/// each with whether an issue in it may explain a failure now. Graph's enum is camelCase but
/// Microsoft's own example answers in PascalCase (`ServiceRestored`): compared in any case.
/// Over, or never real: `serviceOperational`, `serviceRestored`, `postIncidentReviewPublished`,
/// `falsePositive`, `resolved`, `resolvedExternal`, `mitigated`, `mitigatedExternal`.
const STATUSES: [(&str, bool); 18] = [
    ("serviceOperational", false),
    ("investigating", true),
    ("restoringService", true),
    ("verifyingService", true),
    ("serviceRestored", false),
    ("postIncidentReviewPublished", false),
    ("serviceDegradation", true),
    ("serviceInterruption", true),
    ("extendedRecovery", true),
    ("falsePositive", false),
    ("investigationSuspended", true),
    ("resolved", false),
    ("mitigatedExternal", false),
    ("mitigated", false),
    ("resolvedExternal", false),
    ("confirmed", true),
    ("reported", true),
    // Graph's evolvable-enum sentinel: a status newer than this list; treated as open.
    ("unknownFutureValue", true),
];

/// The status as a label value (snake case, `other` for one not in the list), and whether an
/// issue in it is still open.
fn status_of(s: &str) -> (String, bool) {
    let Some((name, open)) = STATUSES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
    else {
        return ("other".into(), true);
    };
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    (out, *open)
}

/// One open issue of a monitored service.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Issue {
    /// Such as `EX123456` (letters and digits only).
    pub id: String,
    pub service: Service,
    /// `incident` (users affected) or `advisory`.
    pub incident: bool,
    /// The `status` label value (snake case, or `other`).
    pub status: String,
    /// For people only (`/status`, `/`, the log): never a label.
    pub title: String,
    pub impact: String,
    pub start: Option<DateTime<Utc>>,
}

impl Issue {
    pub fn classification(&self) -> &'static str {
        if self.incident {
            "incident"
        } else {
            "advisory"
        }
    }
}

/// What a health read learned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthDetails {
    pub tenant: String,
    pub http_status: Option<u16>,
    /// Open issues of the monitored services.
    pub issues: Vec<Issue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIssue {
    #[serde(default)]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    classification: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    is_resolved: bool,
    #[serde(default)]
    start_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    impact_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IssueList {
    value: Vec<RawIssue>,
}

/// Text from outside for people: printable, bounded.
fn clean(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

/// The open issues of the monitored services in a reply body.
pub fn read_issues(body: &[u8]) -> Result<Vec<Issue>, String> {
    let list: IssueList =
        serde_json::from_slice(body).map_err(|e| format!("not Graph's issue list: {e}"))?;
    let mut out = Vec::new();
    for r in list.value.into_iter().filter(|r| !r.is_resolved) {
        let Some(service) = Service::from_graph(&r.service) else {
            continue;
        };
        // A false positive or a restored service explains nothing, whatever isResolved says.
        let (status, open) = status_of(&r.status);
        if !open {
            continue;
        }
        let id_ok =
            !r.id.is_empty() && r.id.len() <= 20 && r.id.chars().all(|c| c.is_ascii_alphanumeric());
        if !id_ok {
            return Err(format!(
                "an issue id that is not an id: {:?}",
                clean(&r.id, 40)
            ));
        }
        out.push(Issue {
            id: r.id,
            service,
            incident: r.classification.eq_ignore_ascii_case("incident"),
            status,
            title: clean(&r.title, 300),
            impact: clean(r.impact_description.as_deref().unwrap_or_default(), 600),
            start: r.start_date_time,
        });
        if out.len() >= MAX_ISSUES {
            break;
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn failed(reason: impl Into<Reason>, message: impl Into<String>, d: HealthDetails) -> Outcome {
    Outcome::failure(Failure::new(reason, message), Details::Health(d))
}

/// Reads the open issues of the app's tenant.
pub async fn run(target: &Target, ctx: &Context, deadline: Instant) -> Outcome {
    let app = target.app();
    let mut d = HealthDetails {
        tenant: app.tenant.clone(),
        ..HealthDetails::default()
    };
    let graph = match Graph::connect(app, &ctx.tokens, deadline).await {
        Ok(g) => g,
        Err(e) => return error_outcome(&e, d),
    };
    let mut url = graph.url("v1.0", &["admin", "serviceAnnouncement", "issues"]);
    url.set_query(Some("$filter=isResolved%20eq%20false"));
    let resp = match graph.get(url).await {
        Ok(r) => r,
        Err(e) => {
            d.http_status = e.status();
            return error_outcome(&e, d);
        }
    };
    d.http_status = Some(resp.status);
    match read_issues(&resp.body) {
        Ok(issues) => {
            d.issues = issues;
            Outcome::success(Details::Health(d))
        }
        Err(m) => failed(HealthReason::InvalidResponse, m, d),
    }
}

/// A failed Graph call in the health check's reasons.
fn error_outcome(e: &GraphError, d: HealthDetails) -> Outcome {
    let reason: Reason = match e.failure {
        CallFailure::Token(_) => HealthReason::TokenUnavailable.into(),
        CallFailure::TooLarge => HealthReason::InvalidResponse.into(),
        CallFailure::Status(403) => HealthReason::PermissionMissing.into(),
        _ if e.throttled() => HealthReason::Throttled.into(),
        _ => e.common_reason().unwrap_or(HealthReason::HttpError.into()),
    };
    Outcome {
        failure: Some(e.failure(reason)),
        details: Details::Health(d),
        retry_after: e.retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_issues_of_monitored_services_are_kept_with_fixed_labels() {
        let body = br#"{"value":[
            {"id":"EX123456","title":"Delays","service":"Exchange Online","classification":"incident","status":"serviceDegradation","isResolved":false,"startDateTime":"2026-11-28T10:00:00Z","impactDescription":"Users may see delays"},
            {"id":"EX1","title":"Old","service":"Exchange Online","classification":"incident","status":"serviceRestored","isResolved":true},
            {"id":"TM9","title":"Teams","service":"Microsoft Teams","classification":"incident","status":"investigating","isResolved":false},
            {"id":"AD77","title":"Sign-in","service":"Microsoft Entra","classification":"advisory","status":"somethingNew","isResolved":false}
        ]}"#;
        let issues = read_issues(body).unwrap();
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].id, "AD77");
        assert_eq!(issues[0].service, Service::MicrosoftEntra);
        assert_eq!(issues[0].classification(), "advisory");
        assert_eq!(issues[0].status, "other");
        assert_eq!(issues[1].status, "service_degradation");
        assert!(issues[1].incident);
        assert!(
            read_issues(br#"{"value":[{"id":"EX 1\"}","service":"Exchange Online"}]}"#).is_err()
        );
        // Microsoft's own example answers in PascalCase; a false positive or a restored
        // service explains nothing, even while isResolved is still false.
        let pascal = br#"{"value":[
            {"id":"EX2","title":"t","service":"Exchange Online","classification":"Incident","status":"ServiceDegradation","isResolved":false},
            {"id":"EX3","title":"t","service":"EXCHANGE ONLINE","classification":"Incident","status":"FalsePositive","isResolved":false},
            {"id":"EX4","title":"t","service":"Exchange Online","classification":"Incident","status":"ServiceRestored","isResolved":false},
            {"id":"EX5","title":"t","service":"Exchange Online","classification":"incident","status":"unknownFutureValue","isResolved":false}
        ]}"#;
        let issues = read_issues(pascal).unwrap();
        let ids: Vec<&str> = issues.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["EX2", "EX5"]);
        assert!(issues[0].incident);
        assert_eq!(issues[0].status, "service_degradation");
        assert_eq!(issues[1].status, "unknown_future_value");
        assert!(read_issues(b"<html>").is_err());
    }
}
