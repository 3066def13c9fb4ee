//! What the application itself sends (opt-in per app, read once per tenant, global cloud): the
//! tenant's message trace over Graph v1.0, `GET {graph}/v1.0/admin/exchange/tracing/messageTraces`
//! with `receivedDateTime ge … and receivedDateTime le …` (both bounds, at most 10 days wide,
//! at most 90 days back), paged by `@odata.nextLink`, within 100 requests per 5 minutes per
//! tenant (the agent's own budget, shared with the canary's look-ups, and Graph's Retry-After).
//! Of each row (one per recipient) only the watched senders' status and time are kept: counts by
//! status and hour, and the newest message. Also the look-up of one lost canary message by its
//! Message-ID. Facts: `shared/reference/microsoft-365.md`, "What the application itself does".

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::graph_call::{clean, CallFailure, Graph, GraphError, Page};
use super::{Context, Details, Failure, Outcome};
use crate::plan::{App, Target};
use crate::reasons::{Reason, TrafficReason};

mod counts;
mod ledger;
mod lookup;

pub use counts::MailboxTraffic;
pub use ledger::TraceLedger;
use ledger::{Cursor, BUDGET_REQUESTS};
pub use lookup::{lookup, TraceLookup};

/// One query covers at most 10 days.
const MAX_SPAN: chrono::Duration = chrono::Duration::days(10);
/// The narrowest window a run falls back to when the budget runs out mid-window.
const MIN_SPAN: chrono::Duration = chrono::Duration::minutes(1);
/// The first read looks back at least a day (and twice the longest expected silence).
const FIRST_LOOKBACK: chrono::Duration = chrono::Duration::hours(24);
/// The trace lags behind the mail: a window ends this long before now (or a third of the
/// check's interval, when shorter), so that a row still on its way is read by the next one.
const MAX_LAG: Duration = Duration::from_secs(300);
/// Rows per page asked for (Graph: 1 to 5,000; 1,000 rows stay well under the 1 MiB bound on
/// a reply).
const PAGE_SIZE: u32 = 1000;
/// Message trace's statuses, as the `status` label (Graph's camelCase in snake case); those
/// without a label of their own (`gettingStatus`, `recalled`, newer ones) are `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceStatus {
    Delivered,
    Failed,
    Quarantined,
    FilteredAsSpam,
    Pending,
    Expanded,
    Other,
}

impl TraceStatus {
    pub const ALL: [TraceStatus; 7] = [
        TraceStatus::Delivered,
        TraceStatus::Failed,
        TraceStatus::Quarantined,
        TraceStatus::FilteredAsSpam,
        TraceStatus::Pending,
        TraceStatus::Expanded,
        TraceStatus::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TraceStatus::Delivered => "delivered",
            TraceStatus::Failed => "failed",
            TraceStatus::Quarantined => "quarantined",
            TraceStatus::FilteredAsSpam => "filtered_as_spam",
            TraceStatus::Pending => "pending",
            TraceStatus::Expanded => "expanded",
            TraceStatus::Other => "other",
        }
    }

    /// Graph's `status`, in any letter case.
    pub fn from_graph(s: &str) -> TraceStatus {
        match s.trim().to_ascii_lowercase().as_str() {
            "delivered" => TraceStatus::Delivered,
            "failed" => TraceStatus::Failed,
            "quarantined" => TraceStatus::Quarantined,
            "filteredasspam" => TraceStatus::FilteredAsSpam,
            "pending" => TraceStatus::Pending,
            "expanded" => TraceStatus::Expanded,
            _ => TraceStatus::Other,
        }
    }

    /// Its index in [`TraceStatus::ALL`] (the counts' order).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Counts by status, in the order of [`TraceStatus::ALL`].
pub type Counts = [u32; 7];

/// What one run read of a watched mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderTraffic {
    /// The mailbox (its name, the `target` label).
    pub mailbox: String,
    /// Messages by the hour they were received (Unix seconds of the hour's start), by status.
    pub hours: Vec<(i64, Counts)>,
    /// The newest message of the window.
    pub newest: Option<DateTime<Utc>>,
    /// Its `expect_traffic_within`.
    pub expect_within: Option<Duration>,
}

/// What a traffic run learned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrafficDetails {
    /// The tenant target.
    pub tenant: String,
    /// The app whose Graph token read the trace.
    pub reader: String,
    pub http_status: Option<u16>,
    /// The window read, both ends included; `None` when the run read none (nothing new yet, or
    /// it failed).
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Requests made (pages read).
    pub pages: u32,
    /// Rows read, of every sender of the tenant.
    pub rows: u64,
    /// Every watched mailbox, with what it sent in the window (nothing, too).
    pub senders: Vec<SenderTraffic>,
}

/// One row of message trace, as far as the agent reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    sender_address: Option<String>,
    #[serde(default)]
    recipient_address: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    received_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    status: Option<String>,
}

/// `…/messageTraces?$filter=…&$top=…`.
fn traces_url(graph: &Graph<'_>, filter: &str) -> url::Url {
    let mut url = graph.url("v1.0", &["admin", "exchange", "tracing", "messageTraces"]);
    url.query_pairs_mut()
        .append_pair("$filter", filter)
        .append_pair("$top", &PAGE_SIZE.to_string());
    url
}

/// `receivedDateTime ge {from} and receivedDateTime le {to}`, in whole seconds (ISO 8601).
fn window_filter(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let f = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "receivedDateTime ge {} and receivedDateTime le {}",
        f(from),
        f(to)
    )
}

/// Whole seconds: the trace's times and the windows' bounds.
fn second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Why a Graph call of message trace failed, in the traffic check's reasons.
fn reason_of(e: &GraphError) -> Reason {
    match e.failure {
        CallFailure::Token(_) => TrafficReason::TokenUnavailable.into(),
        CallFailure::TooLarge => TrafficReason::InvalidResponse.into(),
        CallFailure::Status(403) => TrafficReason::PermissionMissing.into(),
        CallFailure::Status(401) if e.message.contains("Service principal-less") => {
            TrafficReason::ServicePrincipalMissing.into()
        }
        _ if e.throttled() => TrafficReason::Throttled.into(),
        _ => e.common_reason().unwrap_or(TrafficReason::HttpError.into()),
    }
}

/// Reads the tenant's trace from where the last read ended (the first time, a day back or as
/// far as the longest expected silence) to a little before now.
pub async fn run(target: &Target, ctx: &Context, deadline: Instant) -> Outcome {
    let Some((tenant, read)) = target.tenant().and_then(|t| Some((t, t.traffic.as_ref()?))) else {
        return Outcome::failure(
            Failure::new(
                crate::reasons::CommonReason::InternalError,
                "the traffic check runs on tenants whose traffic is watched",
            ),
            Details::None,
        );
    };
    let mut d = TrafficDetails {
        tenant: tenant.name.clone(),
        reader: read.reader.name.clone(),
        senders: tenant
            .senders
            .iter()
            .map(|m| SenderTraffic {
                mailbox: m.name.clone(),
                hours: Vec::new(),
                newest: None,
                expect_within: m.traffic.as_ref().and_then(|t| t.expect_within),
            })
            .collect(),
        ..TrafficDetails::default()
    };
    let now = second(Utc::now());
    let lag = chrono::Duration::from_std(MAX_LAG.min(read.check.schedule.typical_interval() / 3))
        .unwrap_or_default();
    // Whole seconds, as the trace's times are: windows meet without a gap or an overlap.
    let end = second(now - lag);
    let cursor = ctx.trace.cursor(&tenant.name).unwrap_or_else(|| {
        let longest = tenant
            .senders
            .iter()
            .filter_map(|m| m.traffic.as_ref()?.expect_within)
            .max()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .unwrap_or_default();
        // Twice the longest expected silence: a mailbox already silent shows its last message.
        let back = FIRST_LOOKBACK.max(longest * 2).min(MAX_SPAN);
        Cursor {
            next_from: end - back,
            span: MAX_SPAN,
        }
    });
    // At most 90 days back, as Graph takes it.
    let from = cursor.next_from.max(now - chrono::Duration::days(89));
    let to = end.min(from + cursor.span);
    if to <= from {
        return Outcome::success(Details::Traffic(d));
    }
    let graph = match Graph::connect(&read.reader, &ctx.tokens, deadline).await {
        Ok(g) => g,
        Err(e) => return error_outcome(ctx, &tenant.name, &e, d),
    };
    // Watched addresses (lower case) → their mailboxes (two may share an address).
    let mut watched: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, m) in tenant.senders.iter().enumerate() {
        watched
            .entry(m.address.to_ascii_lowercase())
            .or_default()
            .push(i);
    }
    let mut hours: Vec<BTreeMap<i64, Counts>> = vec![BTreeMap::new(); tenant.senders.len()];
    let mut next = Some(traces_url(&graph, &window_filter(from, to)));
    while let Some(url) = next.take() {
        if let Err(until) = ctx.trace.take(&tenant.name) {
            // Out of budget mid-window: the next run reads a narrower one from the same start.
            ctx.trace.set_cursor(
                &tenant.name,
                Cursor {
                    next_from: from,
                    span: ((to - from) / 2).max(MIN_SPAN),
                },
            );
            let wait = until.saturating_duration_since(Instant::now());
            return Outcome {
                failure: Some(Failure::new(
                    TrafficReason::BudgetExhausted,
                    format!(
                        "message trace of tenant {} from {from} to {to}: {} requests in the last 5 minutes, the most Graph takes per tenant ({} pages of this window read); the next read takes a narrower window",
                        tenant.name, BUDGET_REQUESTS, d.pages
                    ),
                )),
                details: Details::Traffic(d),
                retry_after: Some(wait.max(Duration::from_secs(1))),
            };
        }
        d.pages += 1;
        let resp = match graph.get(url).await {
            Ok(r) => r,
            Err(e) => {
                d.http_status = e.status();
                return error_outcome(ctx, &tenant.name, &e, d);
            }
        };
        d.http_status = Some(resp.status);
        let page: Page<Row> = match serde_json::from_slice(&resp.body) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::failure(
                    Failure::new(
                        TrafficReason::InvalidResponse,
                        format!(
                            "message trace page {} is not Graph's JSON: {e} (request-id {})",
                            d.pages,
                            super::graph_call::request_id(&resp).unwrap_or_else(|| "none".into())
                        ),
                    ),
                    Details::Traffic(d),
                )
            }
        };
        for row in page.value {
            d.rows += 1;
            let Some(sender) = row.sender_address.as_deref() else {
                continue;
            };
            let Some(idx) = watched.get(&sender.trim().to_ascii_lowercase()) else {
                continue;
            };
            let Some(at) = row.received_date_time else {
                continue;
            };
            let status = TraceStatus::from_graph(row.status.as_deref().unwrap_or(""));
            let hour = at.timestamp().div_euclid(3600) * 3600;
            for &i in idx {
                hours[i].entry(hour).or_default()[status.index()] += 1;
                let s = &mut d.senders[i];
                s.newest = s.newest.max(Some(at));
            }
        }
        if let Some(link) = page.next_link {
            match graph.next_page_url(&link) {
                Ok(u) => next = Some(u),
                Err(m) => {
                    return Outcome::failure(
                        Failure::new(TrafficReason::InvalidResponse, m),
                        Details::Traffic(d),
                    )
                }
            }
        }
    }
    for (s, h) in d.senders.iter_mut().zip(hours) {
        s.hours = h.into_iter().collect();
    }
    d.window = Some((from, to));
    ctx.trace.set_cursor(
        &tenant.name,
        Cursor {
            next_from: to + chrono::Duration::seconds(1),
            span: (cursor.span * 2).min(MAX_SPAN),
        },
    );
    Outcome::success(Details::Traffic(d))
}

fn error_outcome(ctx: &Context, tenant: &str, e: &GraphError, d: TrafficDetails) -> Outcome {
    let reason = reason_of(e);
    if let (true, Some(w)) = (e.throttled(), e.retry_after) {
        // Graph's quiet holds for the canary's look-ups of the tenant too.
        ctx.trace.hold(tenant, w);
    }
    let mut f = e.failure(reason);
    if reason == Reason::Traffic(TrafficReason::PermissionMissing) {
        f.message += &format!(
            "; grant ExchangeMessageTrace.Read.All (application permission, admin consent) to app {:?}",
            d.reader
        );
    }
    Outcome {
        failure: Some(f),
        details: Details::Traffic(d),
        retry_after: e.retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_in_any_case_and_unknown_ones_are_other() {
        assert_eq!(
            TraceStatus::from_graph("FilteredAsSpam"),
            TraceStatus::FilteredAsSpam
        );
        assert_eq!(TraceStatus::from_graph("recalled"), TraceStatus::Other);
        assert_eq!(TraceStatus::from_graph("gettingStatus"), TraceStatus::Other);
        for (i, s) in TraceStatus::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }
}
