//! What the application itself sends, in the verdict of a watched mailbox: silent for longer
//! than it should be, too many of its messages failed or quarantined, or its tenant's trace not
//! readable.

use super::{Cause, Finding, Inputs};
use crate::checks::traffic::TraceStatus;
use crate::plan::CheckKind;

/// A duration in the largest unit that keeps it readable: `26 h`, `3 days`, `40 min`.
pub(super) fn human(d: chrono::Duration) -> String {
    let m = d.num_minutes();
    if m < 120 {
        format!("{m} min")
    } else if m < 72 * 60 {
        format!("{} h", m / 60)
    } else {
        format!("{} days", m / 1440)
    }
}

/// The findings about a watched mailbox's traffic.
pub(super) fn findings<'a>(i: &Inputs<'a>) -> Vec<Finding<'a>> {
    let mut out = Vec::new();
    let Some(t) = i.traffic else {
        return out;
    };
    // The trace read failing: what it sends is not watched (its last facts stay).
    if let Some(f) = i.traffic_check.and_then(|r| r.failure.as_ref()) {
        out.push(Finding {
            extra: vec![("{reason_fix}", f.reason.info().remediation.to_string())],
            ..Finding::new(Cause::TrafficUnavailable, Some(CheckKind::Traffic), Some(f))
        });
    }
    if t.silent(i.now) {
        let quiet = t.quiet_since().unwrap_or(i.now);
        let expected = t
            .expect_within
            .and_then(|e| chrono::Duration::from_std(e).ok())
            .unwrap_or_default();
        out.push(Finding {
            extra: vec![
                ("{silence}", human(i.now - quiet)),
                ("{expected}", human(expected)),
                (
                    "{last_message}",
                    match t.last_message {
                        Some(l) => {
                            format!(" (its last message at {})", l.format("%Y-%m-%d %H:%M UTC"))
                        }
                        None => " (no message since the agent started watching it)".to_string(),
                    },
                ),
            ],
            ..Finding::new(Cause::TrafficSilent, Some(CheckKind::Traffic), None)
        });
    }
    if let Some(share) = t.failed_share(i.now) {
        if share > i.settings.traffic_failed_share {
            let day = t.last_day(i.now);
            out.push(Finding {
                extra: vec![
                    ("{share}", format!("{:.0}%", share * 100.0)),
                    ("{total}", day.iter().sum::<u64>().to_string()),
                    ("{failed}", day[TraceStatus::Failed.index()].to_string()),
                    (
                        "{quarantined}",
                        day[TraceStatus::Quarantined.index()].to_string(),
                    ),
                ],
                ..Finding::new(Cause::TrafficFailing, Some(CheckKind::Traffic), None)
            });
        }
    }
    out
}
