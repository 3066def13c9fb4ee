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

/// Graph's message trace takes at most 100 requests per 5 minutes per tenant.
pub const BUDGET_REQUESTS: usize = 100;
pub const BUDGET_WINDOW: Duration = Duration::from_secs(300);
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
/// The Message-ID of a lost canary is looked up over this long before it was sent.
const LOOKUP_BEFORE: chrono::Duration = chrono::Duration::minutes(5);

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

/// Hours kept of a watched mailbox's traffic: the last day, and the one it starts in.
const HOURS_KEPT: i64 = 25;
/// The failed share of a mailbox's last 24 h counts from this many messages on (one failed
/// message of two says little).
pub const MIN_SHARE_MESSAGES: u64 = 10;

/// A watched mailbox's traffic as the trace reads showed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MailboxTraffic {
    /// Messages by status since the agent started watching (a counter each).
    pub totals: [u64; 7],
    /// The newest message seen.
    pub last_message: Option<DateTime<Utc>>,
    /// The start of the first window read for it: no message since then, when none was seen.
    pub since: Option<DateTime<Utc>>,
    /// Messages by the hour received (Unix seconds of its start), oldest first.
    hours: VecDeque<(i64, Counts)>,
    /// Its `expect_traffic_within`.
    pub expect_within: Option<Duration>,
}

impl MailboxTraffic {
    /// Messages of the last 24 hours by status (the hour of `now` and the 23 before).
    pub fn last_day(&self, now: DateTime<Utc>) -> [u64; 7] {
        let from = now.timestamp().div_euclid(3600) * 3600 - 23 * 3600;
        let mut out = [0u64; 7];
        for (_, c) in self.hours.iter().filter(|(h, _)| *h >= from) {
            for (o, n) in out.iter_mut().zip(c) {
                *o += u64::from(*n);
            }
        }
        out
    }

    /// The last 24 hours, one entry per hour (oldest first, empty hours included).
    pub fn hourly(&self, now: DateTime<Utc>) -> Vec<(i64, Counts)> {
        let last = now.timestamp().div_euclid(3600) * 3600;
        (0..24)
            .rev()
            .map(|k| {
                let h = last - k * 3600;
                let c = self
                    .hours
                    .iter()
                    .find(|(x, _)| *x == h)
                    .map(|(_, c)| *c)
                    .unwrap_or_default();
                (h, c)
            })
            .collect()
    }

    /// Failed and quarantined messages as a share of the last 24 h's, from
    /// [`MIN_SHARE_MESSAGES`] messages on; `None` below.
    pub fn failed_share(&self, now: DateTime<Utc>) -> Option<f64> {
        let day = self.last_day(now);
        let total: u64 = day.iter().sum();
        let bad = day[TraceStatus::Failed.index()] + day[TraceStatus::Quarantined.index()];
        (total >= MIN_SHARE_MESSAGES).then(|| bad as f64 / total as f64)
    }

    /// The newest message, or the start of the watch when none was seen: nothing was sent
    /// since.
    pub fn quiet_since(&self) -> Option<DateTime<Utc>> {
        self.last_message.or(self.since)
    }

    /// Sent nothing for longer than its `expect_traffic_within` (never without one).
    pub fn silent(&self, now: DateTime<Utc>) -> bool {
        match (self.expect_within, self.quiet_since()) {
            (Some(e), Some(q)) => {
                now - q > chrono::Duration::from_std(e).unwrap_or(chrono::Duration::MAX)
            }
            _ => false,
        }
    }

    pub(crate) fn add(&mut self, hours: &[(i64, Counts)], newest: Option<DateTime<Utc>>) {
        for (h, c) in hours {
            for (t, n) in self.totals.iter_mut().zip(c) {
                *t += u64::from(*n);
            }
            match self.hours.iter_mut().find(|(x, _)| x == h) {
                Some((_, have)) => {
                    for (a, n) in have.iter_mut().zip(c) {
                        *a += n;
                    }
                }
                None => {
                    let at = self.hours.partition_point(|(x, _)| x < h);
                    self.hours.insert(at, (*h, *c));
                }
            }
        }
        self.last_message = self.last_message.max(newest);
    }

    /// Drops the hours older than a day before `now`.
    pub(crate) fn trim(&mut self, now: DateTime<Utc>) {
        let from = now.timestamp().div_euclid(3600) * 3600 - (HOURS_KEPT - 1) * 3600;
        while self.hours.front().is_some_and(|(h, _)| *h < from) {
            self.hours.pop_front();
        }
    }
}

/// Where the next read starts, per tenant.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    next_from: DateTime<Utc>,
    /// The widest window the next read takes: halved when the budget ran out, doubled back.
    span: chrono::Duration,
}

#[derive(Debug, Default)]
struct Budget {
    sent: VecDeque<Instant>,
    /// Graph asked for quiet (Retry-After) until then.
    hold: Option<Instant>,
}

/// What the traffic check and the canary's look-ups share across runs, by tenant (lower case):
/// the request budget of message trace, and where each tenant's next read starts.
#[derive(Default)]
pub struct TraceLedger {
    budget: Mutex<HashMap<String, Budget>>,
    cursors: Mutex<HashMap<String, Cursor>>,
}

impl TraceLedger {
    /// Takes one request of the tenant's budget: `Err(until)` when 100 were made in the last
    /// 5 minutes or Graph asked to wait (until when one may be made).
    pub fn take(&self, tenant: &str) -> Result<(), Instant> {
        let now = Instant::now();
        let mut map = self.budget.lock().expect("trace ledger lock");
        let b = map.entry(tenant.to_ascii_lowercase()).or_default();
        if let Some(h) = b.hold.filter(|h| *h > now) {
            return Err(h);
        }
        while b.sent.front().is_some_and(|t| now - *t >= BUDGET_WINDOW) {
            b.sent.pop_front();
        }
        if b.sent.len() >= BUDGET_REQUESTS {
            return Err(b.sent[0] + BUDGET_WINDOW);
        }
        b.sent.push_back(now);
        Ok(())
    }

    /// Graph asked for quiet: no request for the tenant until then.
    pub fn hold(&self, tenant: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut map = self.budget.lock().expect("trace ledger lock");
        let b = map.entry(tenant.to_ascii_lowercase()).or_default();
        b.hold = Some(b.hold.map_or(until, |h| h.max(until)));
    }

    /// Requests made for the tenant in the last 5 minutes.
    pub fn used(&self, tenant: &str) -> usize {
        let now = Instant::now();
        self.budget
            .lock()
            .expect("trace ledger lock")
            .get(&tenant.to_ascii_lowercase())
            .map_or(0, |b| {
                b.sent.iter().filter(|t| now - **t < BUDGET_WINDOW).count()
            })
    }

    fn cursor(&self, tenant: &str) -> Option<Cursor> {
        self.cursors
            .lock()
            .expect("trace ledger lock")
            .get(&tenant.to_ascii_lowercase())
            .copied()
    }

    fn set_cursor(&self, tenant: &str, c: Cursor) {
        self.cursors
            .lock()
            .expect("trace ledger lock")
            .insert(tenant.to_ascii_lowercase(), c);
    }

    /// Forgets the tenants no longer read (after a reload).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.cursors
            .lock()
            .expect("trace ledger lock")
            .retain(|t, _| keep(t));
    }
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

/// Where message trace says a message stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceLookup {
    /// Its row for the recipient: the status, and for a failed one what the recipient's side
    /// answered (the detail event's description).
    Found {
        status: TraceStatus,
        detail: Option<String>,
    },
    /// Not in the trace (yet).
    NotFound,
    /// The look-up failed (no permission, throttled, out of budget): why, for the log.
    Failed(String),
}

impl TraceLookup {
    /// Where it stopped, in words, for the verdict.
    pub fn words(&self) -> String {
        match self {
            TraceLookup::Found { status, detail } => {
                let what = match status {
                    TraceStatus::Delivered => "delivered (by the trace; not in the mailbox)",
                    TraceStatus::Failed => "failed",
                    TraceStatus::Quarantined => "quarantined",
                    TraceStatus::FilteredAsSpam => "filtered as spam",
                    TraceStatus::Pending => "still pending",
                    TraceStatus::Expanded => "expanded (a group: see its members' rows)",
                    TraceStatus::Other => "in a status the agent does not name",
                };
                match detail {
                    Some(d) => format!("{what}: {d}"),
                    None => what.to_string(),
                }
            }
            TraceLookup::NotFound => "not in the message trace yet".to_string(),
            TraceLookup::Failed(why) => format!("not known (the trace look-up failed: {why})"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DetailEvent {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Looks a message up in message trace by its Message-ID (sent at `sent_at` to `recipient`),
/// with `reader`'s Graph token, within the tenant's budget; for a failed one, its detail events
/// for what the recipient's side answered.
pub async fn lookup(
    ctx: &Context,
    reader: &Arc<App>,
    tenant: &str,
    message_id: &str,
    recipient: &str,
    sent_at: DateTime<Utc>,
    deadline: Instant,
) -> TraceLookup {
    let graph = match Graph::connect(reader, &ctx.tokens, deadline).await {
        Ok(g) => g,
        Err(e) => return TraceLookup::Failed(e.message),
    };
    let take = || {
        ctx.trace
            .take(tenant)
            .map_err(|_| "the tenant's message trace budget is spent".to_string())
    };
    if let Err(m) = take() {
        return TraceLookup::Failed(m);
    }
    let now = second(Utc::now());
    let filter = format!(
        "messageId eq '{}' and {}",
        message_id.replace('\'', "''"),
        window_filter(second(sent_at) - LOOKUP_BEFORE, now)
    );
    let resp = match graph.get(traces_url(&graph, &filter)).await {
        Ok(r) => r,
        Err(e) => {
            if let (true, Some(w)) = (e.throttled(), e.retry_after) {
                ctx.trace.hold(tenant, w);
            }
            return TraceLookup::Failed(e.message);
        }
    };
    let page: Page<Row> = match serde_json::from_slice(&resp.body) {
        Ok(p) => p,
        Err(e) => return TraceLookup::Failed(format!("not Graph's JSON: {e}")),
    };
    let row = page.value.into_iter().find(|r| {
        r.message_id.as_deref() == Some(message_id)
            && r.recipient_address
                .as_deref()
                .is_none_or(|a| a.eq_ignore_ascii_case(recipient))
    });
    let Some(row) = row else {
        return TraceLookup::NotFound;
    };
    let status = TraceStatus::from_graph(row.status.as_deref().unwrap_or(""));
    let mut detail = None;
    if let (TraceStatus::Failed, Some(id)) = (status, row.id.as_deref()) {
        if take().is_ok() {
            let segment = format!(
                "getDetailsByRecipient(recipientAddress='{}')",
                recipient.replace('\'', "''")
            );
            let url = graph.url(
                "v1.0",
                &[
                    "admin",
                    "exchange",
                    "tracing",
                    "messageTraces",
                    id,
                    &segment,
                ],
            );
            if let Ok(r) = graph.get(url).await {
                if let Ok(p) = serde_json::from_slice::<Page<DetailEvent>>(&r.body) {
                    detail = p
                        .value
                        .iter()
                        .rev()
                        .find(|e| {
                            e.event
                                .as_deref()
                                .is_some_and(|ev| ev.eq_ignore_ascii_case("fail"))
                        })
                        .or(p.value.last())
                        .and_then(|e| e.description.as_deref())
                        .map(clean);
                }
            }
        }
    }
    TraceLookup::Found { status, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_a_hundred_requests_in_any_five_minutes() {
        let l = TraceLedger::default();
        for _ in 0..BUDGET_REQUESTS {
            assert!(l.take("Contoso.onmicrosoft.com").is_ok());
        }
        let until = l.take("contoso.onmicrosoft.com").unwrap_err();
        assert_eq!(until - Instant::now(), BUDGET_WINDOW);
        assert!(l.take("fabrikam.onmicrosoft.com").is_ok(), "per tenant");
        tokio::time::advance(BUDGET_WINDOW).await;
        assert!(l.take("contoso.onmicrosoft.com").is_ok());
        assert_eq!(l.used("contoso.onmicrosoft.com"), 1);
        // Graph's Retry-After holds the tenant.
        l.hold("contoso.onmicrosoft.com", Duration::from_secs(30));
        assert!(l.take("contoso.onmicrosoft.com").is_err());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(l.take("contoso.onmicrosoft.com").is_ok());
    }

    fn counts(status: TraceStatus, n: u32) -> Counts {
        let mut c = Counts::default();
        c[status.index()] = n;
        c
    }

    #[test]
    fn a_day_of_traffic_by_the_hour_its_share_and_its_silence() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let hour = |ago: i64| (now.timestamp() / 3600 - ago) * 3600;
        let mut t = MailboxTraffic {
            expect_within: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        t.add(
            &[
                (hour(30), counts(TraceStatus::Delivered, 100)),
                (hour(2), counts(TraceStatus::Delivered, 18)),
                (hour(1), counts(TraceStatus::Quarantined, 2)),
            ],
            Some(now - chrono::Duration::minutes(90)),
        );
        t.add(&[(hour(1), counts(TraceStatus::Delivered, 5))], None);
        assert_eq!(t.totals[TraceStatus::Delivered.index()], 123);
        let day = t.last_day(now);
        assert_eq!(day.iter().sum::<u64>(), 25, "the hour of 30 h ago is out");
        assert_eq!(t.failed_share(now), Some(2.0 / 25.0));
        assert!(t.silent(now), "90 minutes without a message, 60 expected");
        t.trim(now);
        assert_eq!(t.hourly(now).len(), 24);
        assert_eq!(t.hourly(now)[22].1[TraceStatus::Delivered.index()], 5);
        // Below ten messages, no share.
        let few = MailboxTraffic::default();
        assert_eq!(few.failed_share(now), None);
        assert!(!few.silent(now), "no expectation, never silent");
    }

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
