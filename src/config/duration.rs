//! Durations in the Prometheus style (`30s`, `5m`, `1h30m`, `500ms`) and check schedules
//! (an interval or a cron expression).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Parses a Prometheus-style duration: one or more `<number><unit>` with units
/// `ms`, `s`, `m`, `h`, `d`, `w`, largest first (`1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || {
        format!("invalid duration {text:?}: expected a number and a unit (ms, s, m, h, d, w), such as 30s, 5m or 1h30m")
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut rest = s;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let units: [(&str, u64); 6] = [
            ("ms", 1),
            ("s", 1_000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
            ("w", 604_800_000),
        ];
        let (rank, (unit, ms)) = units
            .iter()
            .enumerate()
            .find(|(_, (u, _))| rest.starts_with(u))
            .ok_or_else(err)?;
        // Units go from largest to smallest, each at most once ("1h30m", not "30m1h").
        if rank >= last_rank {
            return Err(err());
        }
        last_rank = rank;
        rest = &rest[unit.len()..];
        total = n
            .checked_mul(*ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(Duration::from_millis(total))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, unit));
            ms %= size;
        }
    }
    out
}

/// When a check runs: every fixed interval, or at the times of a cron expression.
#[derive(Clone)]
pub enum Schedule {
    Every(Duration),
    /// A cron expression; five fields (minute first) get a leading `0` seconds field.
    Cron {
        expr: String,
        schedule: Box<cron::Schedule>,
    },
}

impl Schedule {
    /// The typical gap between two runs, used to bound jitter.
    pub fn typical_interval(&self) -> Duration {
        match self {
            Schedule::Every(d) => *d,
            Schedule::Cron { schedule, .. } => {
                let mut it = schedule.upcoming(chrono::Utc);
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(60)),
                    _ => Duration::from_secs(60),
                }
            }
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", format_duration(*d)),
            Schedule::Cron { expr, .. } => write!(f, "cron {expr:?}"),
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Schedule::Every(a), Schedule::Every(b)) => a == b,
            (Schedule::Cron { expr: a, .. }, Schedule::Cron { expr: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let fields = t.split_whitespace().count();
        if fields <= 1 {
            let d = parse_duration(t).map_err(|_| {
                format!("invalid schedule {text:?}: expected an interval such as 5m or a cron expression such as \"*/5 * * * *\"")
            })?;
            if d < Duration::from_secs(1) {
                return Err(format!(
                    "invalid schedule {text:?}: the interval must be at least 1s"
                ));
            }
            return Ok(Schedule::Every(d));
        }
        if !(5..=7).contains(&fields) {
            return Err(format!(
                "invalid schedule {text:?}: expected an interval such as 5m or a cron expression of 5 fields such as \"*/5 * * * *\" (found {fields} fields)"
            ));
        }
        // The cron crate wants seconds first (6 or 7 fields); accept the classic 5-field form too.
        let expr = if fields == 5 {
            format!("0 {t}")
        } else {
            t.to_string()
        };
        let schedule = cron::Schedule::from_str(&expr).map_err(|_| {
            format!("invalid cron expression {text:?}: expected 5 fields \"minute hour day-of-month month day-of-week\" (or 6-7 with seconds first), such as \"*/5 * * * *\"")
        })?;
        Ok(Schedule::Cron {
            expr: t.to_string(),
            schedule: Box::new(schedule),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("30m1h").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn schedules() {
        assert_eq!(
            "5m".parse::<Schedule>().unwrap(),
            Schedule::Every(Duration::from_secs(300))
        );
        let c: Schedule = "*/5 * * * *".parse().unwrap();
        assert_eq!(c.typical_interval(), Duration::from_secs(300));
        assert!("every day".parse::<Schedule>().is_err());
    }
}
