//! The delivery canary (opt-in per mailbox): one small message over the mailbox's authenticated
//! SMTP session (the SMTP check's own code), then found in the canary mailbox with the reader
//! app's Graph token by its `internetMessageId` (never a listing of the mailbox), its folder
//! (Inbox or Junk Email) and delivery latency noted, and deleted for good (`permanentDelete`,
//! where the cloud has it; elsewhere DELETE twice, through Deleted Items). Messages of earlier
//! runs that were not found or not deleted in time are looked for again and deleted when they
//! turn up, for a day.
//! Facts: `shared/reference/microsoft-365.md`, "Delivery canary and service health".

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::graph_call::{CallFailure, Graph, GraphError};
use super::smtp::{self, SmtpDetails};
use super::{Context, Details, Failure, Outcome};
use crate::http_client::BoundedResponse;
use crate::plan::{Canary, Cloud, Target};
use crate::reasons::{CanaryReason, CommonReason, Reason};

/// How long a message not found in its run is looked for by later runs.
const KEEP_PENDING: chrono::Duration = chrono::Duration::hours(24);
/// At most this many earlier messages are kept per mailbox, and looked for per run.
const MAX_PENDING: usize = 16;
const CLEANUP_PER_RUN: usize = 3;
/// Ids that stay when a message moves (to Deleted Items, or by a user or a rule), so that a
/// message found once can be deleted later.
const IMMUTABLE_IDS: &str = "IdType=\"ImmutableId\"";
/// Polling for the message: 1 s, then doubling, at most 15 s apart.
const FIRST_POLL: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_secs(15);
/// The last search starts this long before the canary's timeout: time for Graph to answer.
const LAST_SEARCH_LEAD: Duration = Duration::from_secs(1);
/// At most this much of the timeout (and a quarter of what is left after sending) is kept for
/// looking a lost message up in message trace.
const TRACE_LOOKUP_RESERVE: Duration = Duration::from_secs(3);

/// A message sent and not found (yet).
#[derive(Debug, Clone)]
struct Pending {
    to: String,
    message_id: String,
    sent_at: DateTime<Utc>,
}

/// What the canary remembers across runs, by mailbox, for as long as the agent runs (reloads
/// included): messages sent but not found in their run, to delete once they arrive, and when
/// the last message was sent, so that no path (a start, a reload that restarts the job, a
/// probe) sends two closer than the canary's schedule.
#[derive(Default)]
pub struct Ledger {
    pending: Mutex<HashMap<String, Vec<Pending>>>,
    last_sent: Mutex<HashMap<String, Instant>>,
}

impl Ledger {
    /// Notes that a run of `mailbox`'s canary starts sending now.
    fn sending(&self, mailbox: &str) {
        self.last_sent
            .lock()
            .expect("canary ledger lock")
            .insert(mailbox.to_string(), Instant::now());
    }

    /// The earliest time `mailbox`'s canary may send again, `interval` after its last message
    /// (`None`: it has sent none in this agent's life).
    pub fn next_send(&self, mailbox: &str, interval: Duration) -> Option<Instant> {
        self.last_sent
            .lock()
            .expect("canary ledger lock")
            .get(mailbox)
            .map(|t| *t + interval)
    }

    fn add(&self, mailbox: &str, p: Pending) {
        let mut map = self.pending.lock().expect("canary ledger lock");
        let list = map.entry(mailbox.to_string()).or_default();
        list.push(p);
        if list.len() > MAX_PENDING {
            list.remove(0);
        }
    }

    /// The oldest few still worth looking for; those past [`KEEP_PENDING`] are dropped.
    fn take(&self, mailbox: &str, now: DateTime<Utc>) -> Vec<Pending> {
        let mut map = self.pending.lock().expect("canary ledger lock");
        let Some(list) = map.get_mut(mailbox) else {
            return Vec::new();
        };
        list.retain(|p| now - p.sent_at < KEEP_PENDING);
        let n = list.len().min(CLEANUP_PER_RUN);
        let taken = list.drain(..n).collect();
        if list.is_empty() {
            map.remove(mailbox);
        }
        taken
    }

    /// Forgets the mailboxes that no longer have a canary (after a reload).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.pending
            .lock()
            .expect("canary ledger lock")
            .retain(|mailbox, _| keep(mailbox));
        self.last_sent
            .lock()
            .expect("canary ledger lock")
            .retain(|mailbox, _| keep(mailbox));
    }

    /// How many messages of a mailbox are still looked for.
    pub fn pending(&self, mailbox: &str) -> usize {
        self.pending
            .lock()
            .expect("canary ledger lock")
            .get(mailbox)
            .map_or(0, Vec::len)
    }
}

/// Where the message was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Graph's `receivedDateTime`: when Exchange delivered it.
    pub received: DateTime<Utc>,
    /// When this run first saw it.
    pub first_seen: DateTime<Utc>,
    /// In Junk Email (else Inbox or another folder).
    pub junk: bool,
    pub deleted: bool,
}

/// What a canary run learned.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryDetails {
    /// The SMTP session that sent the message (phases, endpoint, the reply to DATA).
    pub smtp: SmtpDetails,
    pub to: String,
    pub reader: String,
    /// The `Message-ID` sent, once the server accepted the message.
    pub message_id: Option<String>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub found: Option<Found>,
    /// Graph searches made for it.
    pub polls: u32,
    /// Messages of earlier runs found and deleted in this run.
    pub cleaned_up: u32,
    /// Not found in time: where message trace says it stopped (when the tenant's trace is
    /// read, `checks.traffic`).
    /// (Boxed: every report's details are as large as their largest kind.)
    pub trace: Option<Box<super::traffic::TraceLookup>>,
}

impl CanaryDetails {
    /// Accepted after DATA → `receivedDateTime`, in seconds (never negative: clocks differ).
    pub fn delivery_seconds(&self) -> Option<f64> {
        let f = self.found.as_ref()?;
        let d = (f.received - self.accepted_at?).num_milliseconds().max(0);
        Some(d as f64 / 1000.0)
    }

    /// Accepted after DATA → first seen by this run, in seconds.
    pub fn seen_seconds(&self) -> Option<f64> {
        let f = self.found.as_ref()?;
        let d = (f.first_seen - self.accepted_at?).num_milliseconds().max(0);
        Some(d as f64 / 1000.0)
    }
}

fn failed(reason: impl Into<Reason>, message: impl Into<String>, d: CanaryDetails) -> Outcome {
    Outcome::failure(Failure::new(reason, message), Details::Canary(Box::new(d)))
}

/// One message of Graph's reply to the search.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    id: String,
    #[serde(default)]
    internet_message_id: Option<String>,
    received_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    parent_folder_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MessageList {
    value: Vec<Message>,
}

#[derive(Debug, Deserialize)]
struct Folder {
    id: String,
}

/// The canary mailbox as its reader sees it through Graph.
#[derive(Clone, Copy)]
struct Reader<'a> {
    graph: &'a Graph<'a>,
    to: &'a str,
}

/// A failure of one Graph call, in the canary's reasons: its reason, the text for the log,
/// Retry-After, the HTTP status.
struct CallError {
    reason: Reason,
    message: String,
    retry_after: Option<Duration>,
    status: Option<u16>,
}

impl CallError {
    fn new(reason: impl Into<Reason>, message: String) -> Self {
        Self {
            reason: reason.into(),
            message,
            retry_after: None,
            status: None,
        }
    }

    /// Graph asked for quiet: no more calls in this run.
    fn throttled(&self) -> bool {
        self.retry_after.is_some() || self.reason.is_throttled()
    }

    /// What a failed Graph call means for the canary. The callers say what a 404 means for
    /// them (the search: no such user).
    fn of(e: GraphError) -> Self {
        let reason: Reason = match &e.failure {
            // Out of time before the next call: the message did not turn up in time.
            CallFailure::DeadlinePassed => CanaryReason::NotDelivered.into(),
            CallFailure::TooLarge => CanaryReason::GraphInvalidResponse.into(),
            CallFailure::Status(401 | 403) => CanaryReason::ReaderPermissionMissing.into(),
            CallFailure::Status(404) => CanaryReason::RecipientNotFound.into(),
            _ if e.throttled() => CanaryReason::GraphThrottled.into(),
            _ => e.common_reason().unwrap_or(CanaryReason::GraphError.into()),
        };
        Self {
            reason,
            status: e.status(),
            retry_after: e.retry_after,
            message: e.message,
        }
    }
}

impl Reader<'_> {
    /// `{graph}/v1.0/users/{to}/…`, the address one percent-encoded path segment.
    fn url(&self, rest: &[&str]) -> url::Url {
        let mut segments = vec!["users", self.to];
        segments.extend_from_slice(rest);
        self.graph.url("v1.0", &segments)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: url::Url,
    ) -> Result<BoundedResponse, CallError> {
        self.graph.call(method, url).await.map_err(CallError::of)
    }

    /// The messages of `to` with this `internetMessageId`: the only search the canary makes.
    async fn search(&self, message_id: &str) -> Result<Vec<Message>, CallError> {
        let mut url = self.url(&["messages"]);
        // OData string literal: quotes doubled.
        let filter = format!("internetMessageId eq '{}'", message_id.replace('\'', "''"));
        url.query_pairs_mut()
            .append_pair("$filter", &filter)
            .append_pair(
                "$select",
                "id,internetMessageId,receivedDateTime,parentFolderId",
            );
        let resp = self.call(reqwest::Method::GET, url).await?;
        let list: MessageList = serde_json::from_slice(&resp.body).map_err(|e| {
            CallError::new(
                CanaryReason::GraphInvalidResponse,
                format!("the message search reply is not Graph's JSON: {e}"),
            )
        })?;
        Ok(list
            .value
            .into_iter()
            .filter(|m| {
                m.internet_message_id
                    .as_deref()
                    .is_none_or(|id| id == message_id)
            })
            .collect())
    }

    async fn junk_folder_id(&self) -> Result<String, CallError> {
        let mut url = self.url(&["mailFolders", "junkemail"]);
        url.query_pairs_mut().append_pair("$select", "id");
        let resp = self
            .call(reqwest::Method::GET, url)
            .await
            .map_err(|mut e| {
                // The user exists (the search found the message): not the recipient's fault.
                if e.status == Some(404) {
                    e.reason = CanaryReason::GraphError.into();
                }
                e
            })?;
        serde_json::from_slice::<Folder>(&resp.body)
            .map(|f| f.id)
            .map_err(|e| {
                CallError::new(
                    CanaryReason::GraphInvalidResponse,
                    format!("the Junk Email folder reply is not Graph's JSON: {e}"),
                )
            })
    }

    /// Deletes a message for good: `POST .../permanentDelete` (Recoverable Items, purged by
    /// Exchange), which only the global cloud's Graph has; elsewhere `DELETE` twice, the first
    /// moving the message to Deleted Items and the second from there to Recoverable Items (the
    /// immutable id stays through the move). A message already gone counts as deleted.
    /// <https://learn.microsoft.com/graph/api/message-permanentdelete> (national clouds: none),
    /// <https://learn.microsoft.com/graph/outlook-immutable-id>.
    async fn delete(&self, id: &str) -> Result<(), CallError> {
        let url = self.url(&["messages", id]);
        let gone = |r: Result<BoundedResponse, CallError>| match r {
            Err(e) if e.status == Some(404) => Ok(()),
            r => r.map(|_| ()),
        };
        if self.graph.reader().cloud == Cloud::Global {
            let url = self.url(&["messages", id, "permanentDelete"]);
            return gone(self.call(reqwest::Method::POST, url).await);
        }
        gone(self.call(reqwest::Method::DELETE, url.clone()).await)?;
        gone(self.call(reqwest::Method::DELETE, url).await)
    }
}

/// Runs the canary of a mailbox: send, find, note, delete.
pub async fn run(target: &Target, ctx: &Context, deadline: Instant) -> Outcome {
    let Some(m) = target.mailbox() else {
        return Outcome::failure(
            Failure::new(CommonReason::InternalError, "the canary runs on mailboxes"),
            Details::None,
        );
    };
    let Some(canary) = m.canary.as_ref() else {
        return Outcome::failure(
            Failure::new(
                CommonReason::InternalError,
                format!("mailbox {:?} has no canary", m.name),
            ),
            Details::None,
        );
    };
    let Canary { to, reader, .. } = canary;
    // The SMTP session may take the check's time but half: the other half is for delivery.
    let now = Instant::now();
    let send_deadline = now + deadline.saturating_duration_since(now) / 2;
    ctx.canary.sending(&m.name);
    let sent = smtp::run_and_send(target, ctx, send_deadline, to).await;
    let Details::Smtp(smtp) = sent.details else {
        return Outcome {
            details: Details::None,
            ..sent
        };
    };
    let mut d = CanaryDetails {
        to: to.to_string(),
        reader: reader.name.clone(),
        message_id: smtp.sent.as_ref().map(|s| s.message_id.clone()),
        accepted_at: smtp.sent.as_ref().map(|s| s.accepted_at),
        smtp,
        found: None,
        polls: 0,
        cleaned_up: 0,
        trace: None,
    };
    if let Some(f) = sent.failure {
        return Outcome {
            failure: Some(f),
            details: Details::Canary(Box::new(d)),
            retry_after: sent.retry_after,
        };
    }
    let (Some(message_id), Some(accepted_at)) = (d.message_id.clone(), d.accepted_at) else {
        return failed(
            CommonReason::InternalError,
            "the session ended without sending",
            d,
        );
    };
    let pending = Pending {
        to: to.to_string(),
        message_id: message_id.clone(),
        sent_at: accepted_at,
    };

    // With the tenant's trace read, a few seconds stay for looking a lost message up there.
    let search_deadline = match canary.trace_reader {
        Some(_) => {
            let left = deadline.saturating_duration_since(Instant::now());
            deadline - (left / 4).min(TRACE_LOOKUP_RESERVE)
        }
        None => deadline,
    };
    let graph = match Graph::connect(reader, &ctx.tokens, search_deadline).await {
        Ok(g) => g.prefer(IMMUTABLE_IDS),
        Err(e) => {
            ctx.canary.add(&m.name, pending);
            let reason: Reason = match e.failure {
                CallFailure::Token(_) => CanaryReason::ReaderTokenUnavailable.into(),
                _ => CommonReason::Timeout.into(),
            };
            return Outcome {
                failure: Some(e.failure(reason)),
                details: Details::Canary(Box::new(d)),
                retry_after: e.retry_after,
            };
        }
    };
    let graph = Reader { graph: &graph, to };
    let outcome = find(&graph, &message_id, &mut d).await;
    if let (Err(e), Some(trace_reader)) = (&outcome, &canary.trace_reader) {
        if e.reason == Reason::Canary(CanaryReason::NotDelivered) {
            d.trace = Some(Box::new(
                super::traffic::lookup(
                    ctx,
                    trace_reader,
                    &m.app.tenant,
                    &message_id,
                    to,
                    accepted_at,
                    deadline,
                )
                .await,
            ));
        }
    }
    // Not found, or found and not deleted: a later run deletes it.
    if d.found.as_ref().is_none_or(|f| !f.deleted) {
        ctx.canary.add(&m.name, pending);
    }
    // Earlier runs' messages that arrived late: delete them now (best effort, bounded), unless
    // Graph asked for quiet.
    let mut quiet = outcome.as_ref().is_err_and(CallError::throttled);
    for p in ctx.canary.take(&m.name, Utc::now()) {
        if quiet || Instant::now() >= deadline {
            ctx.canary.add(&m.name, p);
            continue;
        }
        let graph = Reader { to: &p.to, ..graph };
        let done = match graph.search(&p.message_id).await {
            Ok(found) if !found.is_empty() => {
                let mut all = true;
                for msg in found {
                    match graph.delete(&msg.id).await {
                        Ok(()) => d.cleaned_up += 1,
                        Err(e) => {
                            quiet |= e.throttled();
                            all = false;
                        }
                    }
                }
                all
            }
            Ok(_) => false,
            Err(e) => {
                quiet |= e.throttled();
                false
            }
        };
        if !done {
            ctx.canary.add(&m.name, p);
        }
    }
    match outcome {
        Ok(()) => match &d.found {
            Some(f) if f.junk => failed(
                CanaryReason::DeliveredToJunk,
                format!(
                    "{message_id} was delivered to the Junk Email folder of {to} after {:.1} s",
                    d.delivery_seconds().unwrap_or_default()
                ),
                d,
            ),
            _ => Outcome::success(Details::Canary(Box::new(d))),
        },
        Err(e) => {
            let mut message = e.message;
            if let Some(t) = &d.trace {
                message += &format!("; message trace: {}", t.words());
            }
            Outcome {
                failure: Some(Failure::new(e.reason, message)),
                details: Details::Canary(Box::new(d)),
                retry_after: e.retry_after,
            }
        }
    }
}

/// Polls for the message until it is there or the deadline passes, then notes its folder and
/// deletes it.
async fn find(g: &Reader<'_>, message_id: &str, d: &mut CanaryDetails) -> Result<(), CallError> {
    let mut wait = FIRST_POLL;
    let mut last_look = false;
    let msg = loop {
        d.polls += 1;
        let found = g.search(message_id).await?;
        if let Some(m) = found.into_iter().next() {
            break m;
        }
        let now = Instant::now();
        let deadline = g.graph.deadline();
        if now + wait >= deadline && !last_look {
            // One more search at the timeout itself (less the time a search takes), so that a
            // message arriving after the last regular poll is not reported lost before time.
            let last = deadline.checked_sub(LAST_SEARCH_LEAD).unwrap_or(now);
            if last > now {
                last_look = true;
                tokio::time::sleep_until(last).await;
                continue;
            }
        }
        if now + wait >= deadline {
            return Err(CallError::new(
                CanaryReason::NotDelivered,
                format!(
                    "{message_id} was accepted at {} but is not in {} after {} searches",
                    d.accepted_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    g.to,
                    d.polls
                ),
            ));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_POLL);
    };
    let first_seen = Utc::now();
    let junk = match &msg.parent_folder_id {
        Some(folder) => *folder == g.junk_folder_id().await?,
        None => false,
    };
    d.found = Some(Found {
        received: msg.received_date_time.unwrap_or(first_seen),
        first_seen,
        junk,
        deleted: false,
    });
    g.delete(&msg.id).await?;
    if let Some(f) = d.found.as_mut() {
        f.deleted = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_is_bounded_and_forgets_after_a_day() {
        let l = Ledger::default();
        let now = Utc::now();
        for i in 0..(MAX_PENDING + 5) {
            l.add(
                "m",
                Pending {
                    to: "m@x".into(),
                    message_id: format!("<{i}@x>"),
                    sent_at: now,
                },
            );
        }
        assert_eq!(l.pending("m"), MAX_PENDING);
        let taken = l.take("m", now);
        assert_eq!(taken.len(), CLEANUP_PER_RUN);
        assert_eq!(taken[0].message_id, "<5@x>", "the oldest kept first");
        assert!(l.take("m", now + KEEP_PENDING).is_empty());
        assert_eq!(l.pending("m"), 0);
    }

    #[test]
    fn latency_is_from_acceptance_and_never_negative() {
        let t = Utc::now();
        let mut d = CanaryDetails {
            smtp: SmtpDetails {
                app: String::new(),
                address: String::new(),
                phases: Vec::new(),
                host: String::new(),
                port: 587,
                failed_phase: None,
                failed_reply: None,
                tls: None,
                insecure_skip_verify: false,
                token_has_role: None,
                sent: None,
            },
            to: "a@b".into(),
            reader: "r".into(),
            message_id: Some("<x@y>".into()),
            accepted_at: Some(t),
            found: Some(Found {
                received: t + chrono::Duration::milliseconds(2500),
                first_seen: t + chrono::Duration::seconds(4),
                junk: false,
                deleted: true,
            }),
            polls: 2,
            cleaned_up: 0,
            trace: None,
        };
        assert_eq!(d.delivery_seconds(), Some(2.5));
        assert_eq!(d.seen_seconds(), Some(4.0));
        d.found.as_mut().unwrap().received = t - chrono::Duration::seconds(3);
        assert_eq!(d.delivery_seconds(), Some(0.0));
    }
}
