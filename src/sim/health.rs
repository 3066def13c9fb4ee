//! The simulated Microsoft 365 service health API: `GET /v1.0/admin/serviceAnnouncement/issues`
//! (and `/issues/{id}`) for a token with the application role `ServiceHealth.Read.All`, serving
//! the issues of the token's tenant (resolved ones included, as Graph keeps them), with `$filter`
//! of `prop eq value` comparisons joined by `and` (such as `isResolved eq false`) and `$top`.

use chrono::{DateTime, Utc};
use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::graph_call::{begin, eq_clauses, percent_decode, query_params, FaultReplies, Literal};
use super::reply::{graph_error, json, time, with_ids, HttpsState, Ids, SimResponse};
use super::ROLE_SERVICE_HEALTH_READ_ALL;

/// A Microsoft 365 service health issue (Graph's `serviceHealthIssue`).
#[derive(Debug, Clone)]
pub struct HealthIssue {
    /// Such as `EX123456`.
    pub id: String,
    /// Such as `Exchange Online`, `Microsoft Entra`.
    pub service: String,
    /// `incident` or `advisory`.
    pub classification: String,
    /// `investigating`, `serviceDegradation`, `serviceInterruption`, `restoringService`,
    /// `extendedRecovery`, `serviceRestored`, ...
    pub status: String,
    pub title: String,
    pub impact_description: String,
    pub feature: String,
    pub feature_group: String,
    pub start: DateTime<Utc>,
}

impl HealthIssue {
    /// An Exchange Online incident degrading mail delivery, started at `start`.
    pub fn exchange_incident(id: &str, title: &str, start: DateTime<Utc>) -> Self {
        Self {
            id: id.into(),
            service: "Exchange Online".into(),
            classification: "incident".into(),
            status: "serviceDegradation".into(),
            title: title.into(),
            impact_description:
                "Users may experience delays when sending or receiving email messages.".into(),
            feature: "E-Mail timely delivery".into(),
            feature_group: "E-Mail and calendar access".into(),
            start,
        }
    }
}

/// An issue as the simulator keeps it: its tenant, and when it was last changed or resolved.
#[derive(Debug, Clone)]
pub(super) struct IssueState {
    pub tenant_id: String,
    pub issue: HealthIssue,
    pub last_modified: DateTime<Utc>,
    pub resolved: Option<DateTime<Utc>>,
}

impl IssueState {
    fn json(&self) -> Map<String, Value> {
        let i = &self.issue;
        let mut o = Map::new();
        o.insert("startDateTime".into(), json!(time(i.start)));
        o.insert("endDateTime".into(), json!(self.resolved.map(time)));
        o.insert(
            "lastModifiedDateTime".into(),
            json!(time(self.last_modified)),
        );
        o.insert("title".into(), json!(i.title));
        o.insert("id".into(), json!(i.id));
        o.insert("impactDescription".into(), json!(i.impact_description));
        o.insert("classification".into(), json!(i.classification));
        o.insert("origin".into(), json!("microsoft"));
        o.insert("status".into(), json!(i.status));
        o.insert("service".into(), json!(i.service));
        o.insert("feature".into(), json!(i.feature));
        o.insert("featureGroup".into(), json!(i.feature_group));
        o.insert("isResolved".into(), json!(self.resolved.is_some()));
        o.insert("highImpact".into(), Value::Null);
        o.insert("details".into(), json!([]));
        o.insert("posts".into(), json!([]));
        o
    }
}

/// The properties a `$filter` may compare.
const FILTERABLE: [&str; 10] = [
    "id",
    "title",
    "service",
    "status",
    "classification",
    "origin",
    "feature",
    "featureGroup",
    "isResolved",
    "impactDescription",
];

fn forbidden(ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "Access is denied to the requested resource. The user might not have enough permission.",
        ids,
    )
}

fn not_found(ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested resource does not exist.",
        ids,
    )
}

fn bad_request(message: &str, ids: &Ids) -> SimResponse {
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", message, ids)
}

fn ok_json(value: Value, ids: &Ids) -> SimResponse {
    with_ids(json(StatusCode::OK, &value), ids)
}

/// Answers a request under `/v1.0/admin/serviceAnnouncement/`; `rest` is the path after it.
pub async fn handle(
    state: &HttpsState,
    rest: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
) -> SimResponse {
    let call = match begin(
        state,
        headers,
        FaultReplies {
            forbidden: &forbidden,
            not_found: &not_found,
            malformed: "{\"value\":[{\"id\":\"EX",
        },
        |d, caller| *d.health_requests.entry(caller.to_string()).or_default() += 1,
    )
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ids = &call.ids;
    let one = match rest {
        ["issues"] => None,
        ["issues", id] => match percent_decode(id) {
            Some(id) => Some(id),
            None => return bad_request("Invalid percent-encoding in the request URL.", ids),
        },
        _ => return not_found(ids),
    };
    if !call.has_role(&[ROLE_SERVICE_HEALTH_READ_ALL]) {
        return forbidden(ids);
    }
    let issues: Vec<Map<String, Value>> = {
        let d = state.directory.lock().expect("sim lock");
        d.health_issues
            .iter()
            .filter(|s| s.tenant_id == call.claims.tid)
            .filter(|s| one.as_ref().is_none_or(|id| &s.issue.id == id))
            .map(IssueState::json)
            .collect()
    };
    let context = "https://graph.microsoft.com/v1.0/$metadata#admin/serviceAnnouncement/issues";
    if one.is_some() {
        return match issues.into_iter().next() {
            Some(mut o) => {
                o.insert("@odata.context".into(), json!(format!("{context}/$entity")));
                ok_json(Value::Object(o), ids)
            }
            None => not_found(ids),
        };
    }
    let params = query_params(query);
    let clauses = match params.iter().find(|(k, _)| k == "$filter") {
        None => Vec::new(),
        Some((_, f)) => match eq_clauses(f) {
            Some(c) => c,
            None => return bad_request(&format!("Invalid filter clause: {f:?}."), ids),
        },
    };
    if let Some((prop, _)) = clauses
        .iter()
        .find(|(p, _)| !FILTERABLE.contains(&p.as_str()))
    {
        return bad_request(
            &format!("Could not find a property named '{prop}' on type 'microsoft.graph.serviceHealthIssue'."),
            ids,
        );
    }
    let top = match super::graph_call::top(&params) {
        Ok(t) => t,
        Err(m) => return bad_request(&m, ids),
    };
    let select = super::graph_call::select(&params);
    let value: Vec<Value> = issues
        .into_iter()
        .filter(|o| {
            clauses.iter().all(|(prop, lit)| match lit {
                Literal::Str(s) => o.get(prop).and_then(Value::as_str) == Some(s.as_str()),
                Literal::Bool(b) => o.get(prop).and_then(Value::as_bool) == Some(*b),
            })
        })
        .take(top.unwrap_or(usize::MAX))
        .map(|mut o| {
            if let Some(fields) = &select {
                o.retain(|k, _| k == "id" || fields.iter().any(|f| f == k));
            }
            Value::Object(o)
        })
        .collect();
    ok_json(json!({ "@odata.context": context, "value": value }), ids)
}
