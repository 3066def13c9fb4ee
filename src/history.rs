//! What the agent keeps of each target over time, beyond its last run: each watched mailbox's
//! traffic from message trace (counts by status since the agent started, the newest message,
//! the last 24 hours by the hour), and each verdict target's recent runs with the verdict after
//! each (its heartbeat bar). Bounded: 25 hourly entries per watched mailbox, [`BEATS_KEPT`] runs
//! per target of 5 bytes each (under 2 MB at 10,000 mailboxes).

use std::collections::HashMap;
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
    /// Unix seconds (fits until 2106).
    pub at: u32,
    pub cause: Cause,
}

impl Beat {
    pub fn at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(i64::from(self.at), 0).unwrap_or_default()
    }
}

/// A target's recent runs: a ring of [`BEATS_KEPT`] marks kept in one allocation (124 bytes;
/// a `VecDeque` of them and its header took 70 % more at 10,000 mailboxes).
#[derive(Debug, Clone)]
pub struct Beats {
    at: [u32; BEATS_KEPT],
    cause: [Cause; BEATS_KEPT],
    /// Marks held, and where the next one goes.
    len: u8,
    next: u8,
}

impl Default for Beats {
    fn default() -> Self {
        Self {
            at: [0; BEATS_KEPT],
            cause: [Cause::Pending; BEATS_KEPT],
            len: 0,
            next: 0,
        }
    }
}

impl Beats {
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The marks, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Beat> + '_ {
        let first = (usize::from(self.next) + BEATS_KEPT - self.len()) % BEATS_KEPT;
        (0..self.len()).map(move |i| {
            let j = (first + i) % BEATS_KEPT;
            Beat {
                at: self.at[j],
                cause: self.cause[j],
            }
        })
    }

    fn last_index(&self) -> Option<usize> {
        (self.len > 0).then(|| (usize::from(self.next) + BEATS_KEPT - 1) % BEATS_KEPT)
    }

    fn push(&mut self, b: Beat) {
        let j = usize::from(self.next);
        self.at[j] = b.at;
        self.cause[j] = b.cause;
        self.next = u8::try_from((j + 1) % BEATS_KEPT).unwrap_or(0);
        self.len = self.len.saturating_add(1).min(BEATS_KEPT as u8);
    }
}

/// Everything kept over time, by target name.
#[derive(Debug, Default)]
pub struct History {
    /// Watched mailboxes' traffic.
    pub traffic: HashMap<String, MailboxTraffic>,
    /// Each verdict target's recent runs.
    pub beats: HashMap<Box<str>, Box<Beats>>,
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
        if !self.beats.contains_key(target) {
            self.beats.insert(target.into(), Box::default());
        }
        let Some(b) = self.beats.get_mut(target) else {
            return;
        };
        match b.last_index() {
            Some(j) if b.at[j] > at => {}
            // The same run again (a sibling's or the app's report re-diagnosed it): its
            // latest verdict.
            Some(j) if b.at[j] == at => b.cause[j] = cause,
            _ => b.push(Beat { at, cause }),
        }
    }

    /// Keeps the mailboxes the plan watches, with their expectations.
    pub fn retain(&mut self, plan: &Plan) {
        let targets: std::collections::HashSet<String> = plan
            .verdict_targets()
            .map(|t| t.name().to_string())
            .collect();
        self.beats.retain(|t, _| targets.contains(&**t));
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
        assert_eq!(h.beats["m"].len(), 1);
        assert_eq!(h.beats["m"].iter().next().unwrap().cause, Cause::Ok);
        // An older run's report arriving late changes nothing.
        h.beat("m", Some(t0 - chrono::Duration::seconds(5)), Cause::Timeout);
        assert_eq!(h.beats["m"].len(), 1);
        for i in 0..10_000 {
            for r in 1..=40 {
                h.beat(
                    &format!("mb-{i}"),
                    Some(t0 + chrono::Duration::seconds(r * 300)),
                    Cause::Ok,
                );
            }
        }
        assert!(h
            .beats
            .iter()
            .all(|(k, b)| b.len() == if k.starts_with("mb-") { BEATS_KEPT } else { 1 }));
        // Oldest first, the last BEATS_KEPT runs.
        let at: Vec<_> = h.beats["mb-7"].iter().map(|b| b.at()).collect();
        let want: Vec<_> = (40 - BEATS_KEPT as i64 + 1..=40)
            .map(|r| t0 + chrono::Duration::seconds(r * 300))
            .collect();
        assert_eq!(at, want);
        // 5 bytes a mark: the bars of 10,000 mailboxes hold under 2 MB with the table.
        assert_eq!(std::mem::size_of::<Beats>(), 124);
        let table = h.beats.capacity() * (std::mem::size_of::<(Box<str>, Box<Beats>)>() + 1);
        let bytes: usize = table
            + h.beats
                .keys()
                .map(|k| k.len() + std::mem::size_of::<Beats>())
                .sum::<usize>();
        assert!(bytes < 2 * 1024 * 1024, "{bytes} bytes");
    }
}
