//! The status document's view of what is kept over time: a target's recent runs (its heartbeat
//! bar) and a watched mailbox's traffic from message trace.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One run in a target's heartbeat bar: when, and the verdict after it.
#[derive(Debug, Clone, Serialize)]
pub struct RunMark {
    pub at: DateTime<Utc>,
    pub severity: &'static str,
    pub cause: &'static str,
}

pub(super) fn recent_runs(h: &crate::history::History, name: &str) -> Vec<RunMark> {
    h.beats
        .get(name)
        .map(|b| {
            b.iter()
                .map(|m| RunMark {
                    at: m.at(),
                    severity: m.cause.severity().as_str(),
                    cause: m.cause.label(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a watched mailbox sent, from message trace.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficStatus {
    /// The tenant target whose trace read it.
    pub tenant: String,
    /// Messages of the last 24 hours, in all and by status (one per recipient).
    pub last_24h: u64,
    pub last_24h_by_status: BTreeMap<&'static str, u64>,
    /// Since the agent started watching, by status.
    pub totals: BTreeMap<&'static str, u64>,
    /// The newest message seen.
    pub last_message: Option<DateTime<Utc>>,
    /// The start of the first window read (no message since, when `last_message` is `null`).
    pub watched_since: Option<DateTime<Utc>>,
    pub expect_within_seconds: Option<u64>,
    /// Sent nothing for longer than its `expect_traffic_within`.
    pub silent: bool,
    /// Failed and quarantined share of the last 24 h (from 10 messages on).
    pub failed_share: Option<f64>,
    /// The last 24 hours by the hour, oldest first: `{hour, messages, failed}` (failed counts
    /// failed and quarantined ones).
    pub hourly: Vec<HourTraffic>,
    /// In words: "sent 312 in 24 h, 3 quarantined".
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HourTraffic {
    pub hour: DateTime<Utc>,
    pub messages: u64,
    pub failed: u64,
}

/// A watched mailbox's traffic, from the state's history.
pub(super) fn traffic_status(
    m: &crate::plan::Mailbox,
    t: Option<&crate::history::MailboxTraffic>,
    now: DateTime<Utc>,
) -> Option<TrafficStatus> {
    use crate::checks::traffic::TraceStatus;
    let watch = m.traffic.as_ref()?;
    let t = t.cloned().unwrap_or_default();
    let day = t.last_day(now);
    let by = |counts: &[u64; 7]| -> BTreeMap<&'static str, u64> {
        TraceStatus::ALL
            .iter()
            .filter(|s| counts[s.index()] > 0)
            .map(|s| (s.as_str(), counts[s.index()]))
            .collect()
    };
    let last_24h: u64 = day.iter().sum();
    let mut summary = format!("sent {last_24h} in 24 h");
    for s in TraceStatus::ALL
        .iter()
        .filter(|s| **s != TraceStatus::Delivered)
    {
        let n = day[s.index()];
        if n > 0 {
            summary += &format!(", {n} {}", s.as_str().replace('_', " "));
        }
    }
    let hourly = t
        .hourly(now)
        .into_iter()
        .map(|(h, c)| HourTraffic {
            hour: DateTime::from_timestamp(h, 0).unwrap_or(now),
            messages: c.iter().map(|n| u64::from(*n)).sum(),
            failed: u64::from(c[TraceStatus::Failed.index()])
                + u64::from(c[TraceStatus::Quarantined.index()]),
        })
        .collect();
    Some(TrafficStatus {
        tenant: watch.tenant.clone(),
        last_24h,
        last_24h_by_status: by(&day),
        totals: by(&t.totals),
        last_message: t.last_message,
        watched_since: t.since,
        expect_within_seconds: watch.expect_within.map(|d| d.as_secs()),
        silent: t.silent(now),
        failed_share: t.failed_share(now),
        hourly,
        summary,
    })
}
