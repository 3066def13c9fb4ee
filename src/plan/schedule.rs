//! Time in the agent's words: durations in the Prometheus style (`30s`, `5m`, `1h30m`, `500ms`),
//! check schedules (an interval or a cron expression), and whole days left until a date.

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

/// Parses an ISO 8601 duration as Microsoft Graph writes one (`P90D`, `P1Y`, `PT12H`,
/// `P1DT2H30M`): a year counts 365 days and a month 30 (lifetimes, not calendar dates). `None`
/// for anything else.
pub fn parse_iso8601_duration(text: &str) -> Option<Duration> {
    let rest = text.trim().strip_prefix(['P', 'p'])?;
    if rest.is_empty() {
        return None;
    }
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (rest, None),
    };
    fn part(s: &str, units: &[(char, u64)]) -> Option<u64> {
        let mut total = 0u64;
        let mut n = String::new();
        let mut rank = 0;
        for c in s.chars() {
            if c.is_ascii_digit() {
                n.push(c);
                continue;
            }
            let i = units
                .iter()
                .skip(rank)
                .position(|(u, _)| u.eq_ignore_ascii_case(&c))?;
            let secs = units[rank + i].1;
            rank += i + 1;
            let v: u64 = std::mem::take(&mut n).parse().ok()?;
            total = total.checked_add(v.checked_mul(secs)?)?;
        }
        n.is_empty().then_some(total)
    }
    let d = part(
        date,
        &[
            ('Y', 365 * 86_400),
            ('M', 30 * 86_400),
            ('W', 7 * 86_400),
            ('D', 86_400),
        ],
    )?;
    let t = match time {
        Some(t) => part(t, &[('H', 3_600), ('M', 60), ('S', 1)])?,
        None => 0,
    };
    Some(Duration::from_secs(d.checked_add(t)?))
}

/// Whole days until `t`, rounded down: 6.5 days left is 6 (inside a "below 7" range), and
/// anything past is negative.
pub fn days_until(t: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> i64 {
    (t - now).num_seconds().div_euclid(86_400)
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
            // Classic crontab: minute first, day-of-week 0-7 with 0 and 7 = Sunday. The cron crate
            // wants seconds first and counts 1 = Sunday, so the day-of-week field goes by name.
            let parts: Vec<&str> = t.split_whitespace().collect();
            let dow = crontab_day_of_week(parts[4])
                .map_err(|e| format!("invalid cron expression {text:?}: {e}"))?;
            format!(
                "0 {} {} {} {} {dow}",
                parts[0], parts[1], parts[2], parts[3]
            )
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

/// Rewrites a crontab day-of-week field (numbers 0-7, 0 and 7 = Sunday; ranges, lists, steps)
/// with day names, which the cron crate reads unambiguously.
fn crontab_day_of_week(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let day = |d: &str| -> Result<String, String> {
        match d.parse::<usize>() {
            Ok(n) if n < NAMES.len() => Ok(NAMES[n].to_string()),
            Ok(_) => Err(format!("day of week {d} is out of range 0-7")),
            Err(_) => Ok(d.to_string()), // a name, or *
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let mut out = match range.split_once('-') {
            // "5-0" (Friday to Sunday) is written 5-7 in crontab; SUN as an upper bound wraps.
            Some((a, b)) => format!(
                "{}-{}",
                day(a)?,
                if b == "0" { "SUN".into() } else { day(b)? }
            ),
            None => day(range)?,
        };
        if let Some(s) = step {
            out = format!("{out}/{s}");
        }
        items.push(out);
    }
    Ok(items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations() {
        let d = |s| parse_iso8601_duration(s).map(|d| d.as_secs());
        assert_eq!(d("P90D"), Some(90 * 86_400));
        assert_eq!(d("P1Y"), Some(365 * 86_400));
        assert_eq!(d("P2W"), Some(14 * 86_400));
        assert_eq!(d("PT12H"), Some(12 * 3_600));
        assert_eq!(d("P1DT2H30M"), Some(86_400 + 2 * 3_600 + 30 * 60));
        for bad in ["", "P", "PT", "90D", "P1H", "PD", "P1D2", "P1M1Y", "Pmonth"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

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
    fn crontab_days_of_week_mean_what_crontab_means() {
        use chrono::{Datelike, TimeZone, Weekday};
        let next_days = |expr: &str| -> Vec<Weekday> {
            let Schedule::Cron { schedule, .. } = expr.parse::<Schedule>().unwrap() else {
                panic!("not cron")
            };
            let start = chrono::Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(); // a Sunday
            schedule
                .after(&start)
                .take(7)
                .map(|t| t.weekday())
                .collect()
        };
        assert_eq!(next_days("0 9 * * 1"), vec![Weekday::Mon; 7]);
        assert_eq!(next_days("0 9 * * 0")[0], Weekday::Sun);
        assert_eq!(next_days("0 9 * * 7")[0], Weekday::Sun);
        assert_eq!(
            next_days("0 9 * * 1-5")[..5],
            [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri
            ]
        );
        assert_eq!(next_days("0 9 * * 6,0")[..2], [Weekday::Sun, Weekday::Sat]);
        assert_eq!(next_days("0 9 * * MON")[0], Weekday::Mon);
        assert!("0 9 * * 8".parse::<Schedule>().is_err());
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
