//! What the agent keeps of each target over time, beyond its last run: each watched mailbox's
//! traffic from message trace (counts by status since the agent started, the newest message,
//! the last 24 hours by the hour), and each verdict target's recent runs with the verdict after
//! each (its heartbeat bar). Bounded: 25 hourly entries per watched mailbox, [`BEATS_KEPT`] runs
//! per target of 8 bytes each (under 3 MB at 10,000 mailboxes).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::checks::traffic::MailboxTraffic;
use crate::checks::traffic::TrafficDetails;
use crate::diagnosis::Cause;
use crate::plan::Plan;

/// Runs kept per target for its heartbeat bar.
pub const BEATS_KEPT: usize = 24;

/// One run of a target as its heartbeat bar shows it: when it started, and the verdict after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Unix seconds (fits until 2106): 8 bytes a beat with the cause.
    pub at: u32,
    pub cause: Cause,
}

impl Beat {
    pub fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(i64::from(self.at), 0).unwrap_or_default()
    }
}

/// A target's recent runs, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Beats {
    pub marks: VecDeque<Beat>,
}

/// Everything kept over time, by target name.
#[derive(Debug, Default)]
pub struct History {
    /// Watched mailboxes' traffic.
    pub traffic: HashMap<String, MailboxTraffic>,
    /// Each verdict target's recent runs.
    pub beats: HashMap<String, Beats>,
}

impl History {
    /// Adds what a traffic run read to its mailboxes' traffic.
    pub fn record_traffic(&mut self, d: &TrafficDetails, now: DateTime<Utc>) {
        let Some((from, _)) = d.window else {
            return;
        };
        for s in &d.senders {
            let t = self.traffic.entry(s.mailbox.clone()).or_default();
            t.expect_within = s.expect_within;
            t.since = Some(t.since.map_or(from, |x| x.min(from)));
            t.add(&s.hours, s.newest);
            t.trim(now);
        }
    }

    /// Notes a target's verdict after its own run that started at `run` (its SMTP check or
    /// canary; an app's token check): one mark per run, however often the verdict is made.
    pub fn beat(&mut self, target: &str, run: Option<DateTime<Utc>>, cause: Cause) {
        let Some(at) = run.and_then(|r| u32::try_from(r.timestamp()).ok()) else {
            return;
        };
        let b = self
            .beats
            .entry(target.to_string())
            .or_insert_with(|| Beats {
                marks: VecDeque::with_capacity(BEATS_KEPT),
            });
        match b.marks.back_mut() {
            Some(last) if last.at > at => {}
            // The same run again (a sibling's or the app's report re-diagnosed it): its
            // latest verdict.
            Some(last) if last.at == at => last.cause = cause,
            _ => {
                if b.marks.len() == BEATS_KEPT {
                    b.marks.pop_front();
                }
                b.marks.push_back(Beat { at, cause });
            }
        }
    }

    /// Keeps the mailboxes the plan watches, with their expectations.
    pub fn retain(&mut self, plan: &Plan) {
        let targets: std::collections::HashSet<String> = plan
            .verdict_targets()
            .map(|t| t.name().to_string())
            .collect();
        self.beats.retain(|t, _| targets.contains(t));
        let watched: HashMap<&str, Option<Duration>> = plan
            .mailboxes
            .iter()
            .filter_map(|m| Some((m.name.as_str(), m.traffic.as_ref()?.expect_within)))
            .collect();
        self.traffic.retain(|m, _| watched.contains_key(m.as_str()));
        for (m, e) in watched {
            if let Some(t) = self.traffic.get_mut(m) {
                t.expect_within = e;
            } else {
                let mut t = MailboxTraffic::default();
                t.expect_within = e;
                self.traffic.insert(m.to_string(), t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mark_per_run_and_a_bounded_bar_at_ten_thousand_mailboxes() {
        let mut h = History::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        h.beat("m", Some(t0), Cause::Pending);
        // The same run re-diagnosed: its latest verdict, no second mark.
        h.beat("m", Some(t0), Cause::Ok);
        h.beat("m", None, Cause::Timeout);
        assert_eq!(h.beats["m"].marks.len(), 1);
        assert_eq!(h.beats["m"].marks[0].cause, Cause::Ok);
        // An older run's report arriving late changes nothing.
        h.beat("m", Some(t0 - chrono::Duration::seconds(5)), Cause::Timeout);
        assert_eq!(h.beats["m"].marks.len(), 1);
        for i in 0..10_000 {
            for r in 1..=40 {
                h.beat(
                    &format!("mb-{i}"),
                    Some(t0 + chrono::Duration::seconds(r * 300)),
                    Cause::Ok,
                );
            }
        }
        assert!(h.beats.values().all(|b| b.marks.len() <= BEATS_KEPT));
        assert_eq!(
            h.beats["mb-7"].marks.back().unwrap().at(),
            t0 + chrono::Duration::seconds(40 * 300)
        );
        // 8 bytes a mark: the bars of 10,000 mailboxes hold under 3 MB with their queues.
        assert_eq!(std::mem::size_of::<Beat>(), 8);
        let bytes: usize = h
            .beats
            .iter()
            .map(|(k, b)| k.capacity() + b.marks.capacity() * std::mem::size_of::<Beat>() + 64)
            .sum();
        assert!(bytes < 3 * 1024 * 1024, "{bytes} bytes");
    }
}
