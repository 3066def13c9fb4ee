//! The simulated message trace of Exchange Online over Graph v1.0:
//! `GET /v1.0/admin/exchange/tracing/messageTraces` with `$filter` (`receivedDateTime ge … and
//! receivedDateTime le …`, both bounds, at most 10 days wide, at most 90 days back; `eq` on
//! `senderAddress`, `recipientAddress`, `messageId`, `status`; without dates, the last 48 hours),
//! `$top` (1 to 5,000, default 1,000) and paging by `@odata.nextLink`, and
//! `…/messageTraces/{id}/getDetailsByRecipient(recipientAddress='…')`. For a token with
//! `ExchangeMessageTrace.Read.All`, in a tenant with the service principal of Microsoft's message
//! trace app (else 401 "Service principal-less Authentication failed"), at most 100 requests per 5
//! minutes per tenant (then 429 with `Retry-After`). Rows come from what the SMTP listeners accept
//! (one per recipient, the status from the sender's [`Delivery`](super::Delivery)) and from
//! scripted history.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::graph_call::{begin, comparisons, percent_decode, query_params, FaultReplies};
use super::reply::{
    graph_error, json, time, with_ids, with_retry_after, HttpsState, Ids, SimResponse,
};
use super::{Directory, ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL};

/// At most this many rows are kept (the oldest go).
const ROWS_KEPT: usize = 200_000;
/// Microsoft's limit: 100 requests per 5 minutes per tenant.
const LIMIT: usize = 100;
const LIMIT_WINDOW: Duration = Duration::from_secs(300);

/// A message of the trace, for one recipient (as Graph lists them).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEntry {
    pub sender: String,
    pub recipient: String,
    pub message_id: String,
    pub received: DateTime<Utc>,
    /// Graph's status: `delivered`, `failed`, `quarantined`, `filteredAsSpam`, `pending`,
    /// `expanded`, `gettingStatus`, `recalled`.
    pub status: String,
    pub subject: String,
    /// For a failed one: what the recipient's side answered (its detail event).
    pub detail: Option<String>,
}

/// A row as the simulator keeps it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub tenant_id: String,
    pub id: String,
    pub entry: TraceEntry,
}

/// Adds rows to a tenant's trace.
pub(super) fn add(
    d: &mut Directory,
    tenant_id: &str,
    entries: impl IntoIterator<Item = TraceEntry>,
) {
    for mut entry in entries {
        // Message trace's times are whole seconds.
        entry.received =
            DateTime::from_timestamp(entry.received.timestamp(), 0).unwrap_or(entry.received);
        if d.trace_rows.len() >= ROWS_KEPT {
            d.trace_rows.pop_front();
        }
        d.trace_rows.push_back(Row {
            tenant_id: tenant_id.to_ascii_lowercase(),
            id: uuid::Uuid::new_v4().to_string(),
            entry,
        });
    }
}

/// The rows of a message the SMTP listener accepted now from `sender` (the authenticated
/// mailbox of an app of `tenant_id`): one per recipient, its status from the sender's delivery.
pub(super) fn accepted(
    d: &mut Directory,
    tenant_id: &str,
    sender: &str,
    recipients: &[String],
    data: &str,
) {
    let (message_id, subject) = super::mailbox::headers(data);
    let (status, detail) = match super::mailbox::delivery_of(d, sender) {
        super::Delivery::Inbox(_) => ("delivered", None),
        super::Delivery::Junk(_) => ("filteredAsSpam", None),
        super::Delivery::Lost => ("pending", None),
        super::Delivery::Quarantine => ("quarantined", None),
        super::Delivery::Bounce(reply) => ("failed", Some(reply)),
        super::Delivery::Reject { .. } => return,
    };
    let now = d.now();
    let rows: Vec<TraceEntry> = recipients
        .iter()
        .map(|r| TraceEntry {
            sender: sender.to_string(),
            recipient: r.clone(),
            message_id: message_id.clone().unwrap_or_default(),
            received: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
            status: status.to_string(),
            subject: subject.clone(),
            detail: detail.clone(),
        })
        .collect();
    add(d, tenant_id, rows);
}

fn forbidden(ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "Missing role permissions on the request. API requires one of 'ExchangeMessageTrace.Read.All'.",
        ids,
    )
}

fn bad_request(message: &str, ids: &Ids) -> SimResponse {
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", message, ids)
}

/// The rows a `$filter` selects, or why it is refused.
fn select<'a>(
    rows: &'a VecDeque<Row>,
    tenant: &str,
    filter: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<&'a Row>, String> {
    let clauses = match filter {
        None => Vec::new(),
        Some(f) => comparisons(f).ok_or("Invalid filter clause.")?,
    };
    let (mut from, mut to) = (None, None);
    let mut eq: Vec<(String, String)> = Vec::new();
    for (prop, op, lit) in clauses {
        match (prop.as_str(), op.as_str()) {
            ("receivedDateTime", "ge" | "le") => {
                let t = DateTime::parse_from_rfc3339(&lit)
                    .map_err(|_| format!("Invalid date '{lit}'."))?
                    .with_timezone(&Utc);
                if op == "ge" {
                    from = Some(t);
                } else {
                    to = Some(t);
                }
            }
            ("senderAddress" | "recipientAddress" | "messageId" | "status" | "id", "eq") => {
                eq.push((prop, lit))
            }
            _ => {
                return Err(format!(
                    "The filter on '{prop}' with '{op}' is not supported."
                ))
            }
        }
    }
    let (from, to) = match (from, to) {
        (None, None) => (now - chrono::Duration::hours(48), now),
        (Some(f), Some(t)) => (f, t),
        _ => return Err("Specify both a start and an end date for receivedDateTime.".into()),
    };
    if to - from > chrono::Duration::days(10) {
        return Err("The time range can't be more than 10 days.".into());
    }
    if from < now - chrono::Duration::days(90) {
        return Err("The start date can't be more than 90 days ago.".into());
    }
    if to > now + chrono::Duration::minutes(5) {
        return Err("The end date can't be later than now.".into());
    }
    Ok(rows
        .iter()
        .filter(|r| r.tenant_id == tenant)
        .filter(|r| r.entry.received >= from && r.entry.received <= to)
        .filter(|r| {
            eq.iter().all(|(p, v)| match p.as_str() {
                "senderAddress" => r.entry.sender.eq_ignore_ascii_case(v),
                "recipientAddress" => r.entry.recipient.eq_ignore_ascii_case(v),
                "messageId" => r.entry.message_id == *v,
                "status" => r.entry.status.eq_ignore_ascii_case(v),
                _ => r.id == *v,
            })
        })
        .collect())
}

fn row_json(r: &Row) -> Value {
    json!({
        "id": r.id,
        "senderAddress": r.entry.sender,
        "recipientAddress": r.entry.recipient,
        "messageId": r.entry.message_id,
        "receivedDateTime": time(r.entry.received),
        "subject": r.entry.subject,
        "size": 4096,
        "fromIP": "192.0.2.10",
        "toIP": "",
        "status": r.entry.status,
    })
}

/// Answers `messageTraces` and `messageTraces/{id}/getDetailsByRecipient(…)`.
pub async fn handle(
    state: &HttpsState,
    rest: &[&str],
    query: Option<&str>,
    headers: &HeaderMap,
) -> SimResponse {
    let replies = FaultReplies {
        forbidden: &forbidden,
        not_found: &|ids: &Ids| graph_error(StatusCode::NOT_FOUND, "NotFound", "Not found.", ids),
        malformed: "{\"value\":[{\"senderAddress\":",
    };
    let call = match begin(state, headers, replies, |d, _| d.trace_calls += 1).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ids = &call.ids;
    if !call.has_role(&[ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL]) {
        return forbidden(ids);
    }
    let tenant = call.claims.tid.clone();
    let mut d = state.directory.lock().expect("sim lock");
    if d.trace_unprincipled.contains(&tenant) {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "UnknownError",
            "Service principal-less Authentication failed: the tenant has no service principal of application 8bd644d1-64a1-4d4b-ae52-2e0cbf64e373.",
            ids,
        );
    }
    // 100 requests per 5 minutes per tenant.
    let now_i = tokio::time::Instant::now();
    let sent = d.trace_limit.entry(tenant.clone()).or_default();
    while sent.front().is_some_and(|t| now_i - *t >= LIMIT_WINDOW) {
        sent.pop_front();
    }
    if sent.len() >= LIMIT {
        let wait = (sent[0] + LIMIT_WINDOW).saturating_duration_since(now_i);
        d.trace_throttled += 1;
        return with_retry_after(
            graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests: message trace takes 100 requests per 5 minutes per tenant.",
                ids,
            ),
            wait.as_secs().max(1),
        );
    }
    sent.push_back(now_i);
    let now = d.now();
    match rest {
        [] => {}
        [id, function] => {
            let Some(recipient) = percent_decode(function).and_then(|f| {
                f.strip_prefix("getDetailsByRecipient(recipientAddress='")?
                    .strip_suffix("')")
                    .map(str::to_string)
            }) else {
                return bad_request("Unknown function.", ids);
            };
            let Some(row) = d
                .trace_rows
                .iter()
                .find(|r| r.tenant_id == tenant && r.id == *id)
            else {
                return graph_error(StatusCode::NOT_FOUND, "NotFound", "Not found.", ids);
            };
            let e = &row.entry;
            let mut events = vec![json!({
                "id": row.id, "messageId": e.message_id, "dateTime": time(e.received),
                "event": "Receive", "action": "", "description": "Message received by: SIM01.prod.outlook.office365.com",
                "data": "",
            })];
            let (event, description) = match e.status.to_ascii_lowercase().as_str() {
                "delivered" => (
                    "Deliver",
                    "The message was successfully delivered.".to_string(),
                ),
                "failed" => (
                    "Fail",
                    e.detail
                        .clone()
                        .unwrap_or_else(|| "The message failed.".into()),
                ),
                "quarantined" => ("Quarantine", "The message was quarantined.".to_string()),
                "filteredasspam" => (
                    "Deliver",
                    "The message was delivered to the Junk Email folder.".to_string(),
                ),
                _ => ("Pending", "The message is pending delivery.".to_string()),
            };
            let _ = recipient;
            events.push(json!({
                "id": row.id, "messageId": e.message_id, "dateTime": time(e.received),
                "event": event, "action": "", "description": description, "data": "",
            }));
            return with_ids(json(StatusCode::OK, &json!({ "value": events })), ids);
        }
        _ => return bad_request("Unknown segment.", ids),
    }
    let params = query_params(query);
    let param = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
    let top = match param("$top") {
        None => 1000,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=5000).contains(&n) => n,
            _ => return bad_request(&format!("Invalid value '{v}' for query option $top."), ids),
        },
    };
    let page_size = top.min(d.trace_page_cap.max(1));
    let skip: usize = param("$skiptoken")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rows = match select(&d.trace_rows, &tenant, param("$filter"), now) {
        Ok(r) => r,
        Err(m) => return bad_request(&m, ids),
    };
    let total = rows.len();
    let page: Vec<Value> = rows
        .iter()
        .skip(skip)
        .take(page_size)
        .map(|r| row_json(r))
        .collect();
    drop(d);
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#admin/exchange/tracing/messageTraces",
        "value": page,
    });
    if skip + page_size < total {
        let mut link = url::Url::parse(
            "https://graph.microsoft.com/v1.0/admin/exchange/tracing/messageTraces",
        )
        .expect("a static URL");
        {
            let mut q = link.query_pairs_mut();
            for (k, v) in params.iter().filter(|(k, _)| k != "$skiptoken") {
                q.append_pair(k, v);
            }
            q.append_pair("$skiptoken", &(skip + page_size).to_string());
        }
        body["@odata.nextLink"] = json!(link.to_string());
    }
    with_ids(json(StatusCode::OK, &body), ids)
}
