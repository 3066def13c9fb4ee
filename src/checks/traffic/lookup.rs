//! The look-up of one lost canary message in the trace by its Message-ID: where it stopped
//! (quarantined, filtered as spam, failed with the recipient's reply, still pending).

use super::*;

/// The Message-ID of a lost canary is looked up over this long before it was sent.
pub(super) const LOOKUP_BEFORE: chrono::Duration = chrono::Duration::minutes(5);

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
pub(super) struct DetailEvent {
    #[serde(default)]
    pub(super) event: Option<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
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
