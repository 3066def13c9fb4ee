//! A watched mailbox's traffic as kept between reads: counts by status since the agent started,
//! the last 24 hours by the hour, the newest message.

use super::*;

/// Hours kept of a watched mailbox's traffic: the last day, and the one it starts in.
pub(super) const HOURS_KEPT: i64 = 25;
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
    pub(super) hours: VecDeque<(i64, Counts)>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
