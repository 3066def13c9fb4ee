//! Runs every (check, target) on its own schedule: one lightweight tokio task per job (no thread
//! per target), a stable per-target phase so big fleets spread out, a bound on concurrent runs,
//! a timeout on each run, and a prompt stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checks::{self, Context, RunOptions};
use crate::config::Schedule;
use crate::plan::{CheckKind, Job, JobKey, Plan, SchedulerSettings};
use crate::sink::Sink;

/// FNV-1a: a hash that is stable across builds and runs, so a target keeps its phase.
fn stable_hash(key: &JobKey) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for byte in key
        .kind
        .as_str()
        .bytes()
        .chain([0u8])
        .chain(key.target.bytes())
    {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn fraction_of(d: Duration, hash: u64) -> Duration {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(hash % ms)
    }
}

/// When a job runs, from a fixed origin (the scheduler's start) so phases stay put.
#[derive(Debug, Clone)]
struct Timing {
    origin: Instant,
    hash: u64,
    schedule: Schedule,
}

/// Gap between first Graph reads after start, per Graph job (see `Scheduler::start`).
const GRAPH_START_GAP: Duration = Duration::from_millis(500);

/// Cron runs get a small jitter too, so that many targets on `*/5 * * * *` do not fire at once.
const MAX_CRON_JITTER: Duration = Duration::from_secs(30);

/// A Graph read that failed for a transient reason (throttled, a server error, a timeout) is
/// tried again before its next slot (6 hours by default), so expiry data never goes stale for
/// hours: after `Retry-After` when the server gave one, else after 30 s, doubling with each
/// failure in a row; never sooner than 1 s nor later than 15 minutes, plus up to a tenth of
/// jitter; and never later than the regular slot.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(15 * 60);

/// When Microsoft throttles without saying for how long (an SMTP 432 or 4.7.x, an AADSTS90055
/// without Retry-After), this long: an app whose token or Graph read is throttled holds all of
/// its checks back; a mailbox whose SMTP session is throttled holds back itself. The rest of the
/// agent goes on.
const THROTTLE_QUIET: Duration = Duration::from_secs(60);

/// How soon a failed job runs again, if sooner than its regular slot (see [`RETRY_FIRST`]).
fn retry_delay(
    kind: CheckKind,
    failures: u32,
    retry_after: Option<Duration>,
    hash: u64,
) -> Option<Duration> {
    if kind != CheckKind::Graph || failures == 0 {
        return None;
    }
    let backoff = RETRY_FIRST.saturating_mul(1 << (failures - 1).min(10));
    let wait = retry_after.unwrap_or(backoff).clamp(RETRY_MIN, RETRY_MAX);
    let jitter = fraction_of(wait / 10, hash.rotate_left(failures));
    Some(wait + jitter)
}

/// Per app: until when its checks hold back because Microsoft throttled one of them.
#[derive(Default)]
pub struct Quiet(std::sync::Mutex<HashMap<String, Instant>>);

impl Quiet {
    fn until(&self, app: &str) -> Option<Instant> {
        self.0.lock().expect("quiet lock").get(app).copied()
    }

    fn hold(&self, app: &str, until: Instant) {
        let mut map = self.0.lock().expect("quiet lock");
        let now = Instant::now();
        map.retain(|_, t| *t > now);
        let t = map.entry(app.to_string()).or_insert(until);
        *t = (*t).max(until);
    }
}

impl Timing {
    /// First run after `from` (the start, or the reload that started the job): within the
    /// startup spread, so metrics appear soon.
    fn first_after(&self, from: Instant, spread: Duration) -> Instant {
        let spread = spread.min(self.schedule.typical_interval());
        from + fraction_of(spread, self.hash)
    }

    /// The next run strictly after `after`.
    fn next(&self, after: Instant) -> Instant {
        match &self.schedule {
            Schedule::Every(interval) => {
                // Slots at origin + phase + k * interval; skip slots closer than half an interval,
                // so the run after the startup run is not squeezed in right behind it.
                let phase = fraction_of(*interval, self.hash);
                let earliest = after + *interval / 2;
                let since = earliest.saturating_duration_since(self.origin + phase);
                let k = since.as_nanos().div_ceil(interval.as_nanos().max(1)) as u32;
                let slot = self.origin + phase + *interval * k;
                if slot <= after {
                    slot + *interval
                } else {
                    slot
                }
            }
            Schedule::Cron { schedule, .. } => {
                let jitter = fraction_of(
                    MAX_CRON_JITTER.min(self.schedule.typical_interval() / 10),
                    self.hash,
                );
                let now_wall = chrono::Utc::now();
                let wait = schedule
                    .after(&now_wall)
                    .next()
                    .and_then(|t| (t - now_wall).to_std().ok())
                    .unwrap_or(Duration::from_secs(3600));
                let base = Instant::now() + wait + jitter;
                base.max(after + Duration::from_millis(1))
            }
        }
    }
}

/// The running scheduler: its tasks stop when it is stopped or the shutdown token fires.
pub struct Scheduler {
    tasks: JoinSet<()>,
    cancel: CancellationToken,
    /// The job each task runs (by key) with its digest and its own stop token.
    running: HashMap<JobKey, Running>,
    /// Phases count from here, so a job kept or restarted by a reload keeps its phase.
    origin: Instant,
    settings: SchedulerSettings,
    /// One bound per check kind: 10,000 SMTP runs stuck on an unreachable host must not keep
    /// the token checks (which would show the cause) waiting behind them.
    slots: HashMap<CheckKind, Arc<Semaphore>>,
    env: Arc<Env>,
}

/// What every job's task shares: where checks run, where reports go, which apps hold back.
struct Env {
    ctx: Arc<Context>,
    sink: Arc<dyn Sink>,
    quiet: Quiet,
}

struct Running {
    digest: [u8; 32],
    cancel: CancellationToken,
}

/// What a reload did to the running jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Same key, same set-up: still running, phase and state untouched.
    pub kept: usize,
    /// Same key, changed set-up: stopped and started again (first run soon).
    pub restarted: usize,
    pub added: usize,
    pub removed: usize,
}

fn semaphores(settings: &SchedulerSettings) -> HashMap<CheckKind, Arc<Semaphore>> {
    CheckKind::ALL
        .iter()
        .map(|k| (*k, Arc::new(Semaphore::new(settings.max_concurrent_checks))))
        .collect()
}

impl Scheduler {
    /// Starts one task per job of the plan. Their reports go to `sink`.
    pub fn start(
        plan: &Plan,
        ctx: Arc<Context>,
        sink: Arc<dyn Sink>,
        shutdown: &CancellationToken,
    ) -> Self {
        let settings = plan.settings.scheduler.clone();
        let mut s = Self {
            tasks: JoinSet::new(),
            cancel: shutdown.child_token(),
            running: HashMap::new(),
            origin: Instant::now(),
            slots: semaphores(&settings),
            settings,
            env: Arc::new(Env {
                ctx,
                sink,
                quiet: Quiet::default(),
            }),
        };
        let origin = s.origin;
        s.spawn_all(plan.jobs.iter(), origin);
        s
    }

    /// Starts `jobs`, their first runs spread after `from` (the start, or a reload).
    fn spawn_all<'a>(&mut self, jobs: impl Iterator<Item = &'a Job> + Clone, from: Instant) {
        let graph_jobs = jobs.clone().filter(|j| j.kind == CheckKind::Graph).count();
        for job in jobs {
            let key = job.key();
            let timing = Timing {
                origin: self.origin,
                hash: stable_hash(&key),
                schedule: job.settings.schedule.clone(),
            };
            let spread = match job.kind {
                // Graph allows about 150 credential reads a minute per tenant: after a start,
                // spread the first reads at two a second rather than into one startup_spread.
                CheckKind::Graph => self
                    .settings
                    .startup_spread
                    .max(GRAPH_START_GAP * graph_jobs as u32),
                _ => self.settings.startup_spread,
            };
            let first = timing.first_after(from, spread);
            let cancel = self.cancel.child_token();
            self.running.insert(
                key.clone(),
                Running {
                    digest: job.digest,
                    cancel: cancel.clone(),
                },
            );
            self.tasks.spawn(job_loop(
                job.clone(),
                timing,
                first,
                self.env.clone(),
                self.slots[&key.kind].clone(),
                cancel,
            ));
        }
    }

    /// Moves to a new plan: jobs with the same key and digest keep running untouched (their
    /// phase, their state); changed ones stop and start again, as do new ones, with a first run
    /// within the startup spread; removed ones stop. A change of `max_concurrent_checks`
    /// restarts every job on the new bound.
    pub fn reload(&mut self, plan: &Plan) -> ReloadSummary {
        while self.tasks.try_join_next().is_some() {}
        let mut summary = ReloadSummary::default();
        if plan.settings.scheduler.max_concurrent_checks != self.settings.max_concurrent_checks {
            self.slots = semaphores(&plan.settings.scheduler);
            for (_, r) in self.running.drain() {
                r.cancel.cancel();
            }
        }
        self.settings = plan.settings.scheduler.clone();
        let old = std::mem::take(&mut self.running);
        let mut start = Vec::new();
        for job in &plan.jobs {
            match old.get(&job.key()) {
                Some(r) if r.digest == job.digest => summary.kept += 1,
                Some(_) => {
                    summary.restarted += 1;
                    start.push(job);
                }
                None => {
                    summary.added += 1;
                    start.push(job);
                }
            }
        }
        for (key, r) in old {
            match plan.job(&key) {
                Some(j) if j.digest == r.digest => {
                    self.running.insert(key, r);
                }
                Some(_) => r.cancel.cancel(),
                None => {
                    summary.removed += 1;
                    r.cancel.cancel();
                }
            }
        }
        self.spawn_all(start.into_iter(), Instant::now());
        summary
    }

    /// Stops every task, waiting at most `grace` for runs in progress to notice.
    pub async fn stop(mut self, grace: Duration) {
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

async fn job_loop(
    job: Job,
    timing: Timing,
    first: Instant,
    env: Arc<Env>,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let Env { ctx, sink, quiet } = &*env;
    let opts = RunOptions::default();
    let app = job.target.app().name.clone();
    let mut next = first;
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        // The app is being throttled: wait with it (spread a little, so its jobs do not all
        // come back at the same instant).
        if let Some(until) = quiet.until(&app).filter(|t| *t > Instant::now()) {
            next = until + fraction_of(Duration::from_secs(5), timing.hash);
            continue;
        }
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        sink.scheduled(job.kind, Instant::now().saturating_duration_since(next));
        // Boxed: a task's future is as large as its largest state, and a check's (a TLS
        // session, buffers) is kilobytes. Boxed, the 10,000 idle tasks of a large fleet stay a
        // few hundred bytes each, and the check's memory exists only while it runs.
        let run = Box::pin(checks::run(&job, ctx, &opts));
        let report = tokio::select! {
            _ = cancel.cancelled() => return,
            r = run => r,
        };
        drop(permit);
        let retry_after = report.retry_after;
        let (transient, throttled) = report.failure.as_ref().map_or((false, false), |f| {
            (f.reason.is_transient(), f.reason.is_throttled())
        });
        sink.accept(&job, report);
        let now = Instant::now();
        // Throttled: Entra ID and Graph throttle the app (its tenant), so all of the app's checks
        // hold back; Exchange throttles a mailbox (3 connections each), so that mailbox does.
        let hold = throttled.then(|| retry_after.unwrap_or(THROTTLE_QUIET));
        if let (Some(wait), true) = (hold, job.kind.is_per_app()) {
            quiet.hold(&app, now + wait);
        }
        failures = if transient { failures + 1 } else { 0 };
        next = timing.next(now);
        if let Some(wait) = retry_delay(job.kind, failures, retry_after, timing.hash) {
            next = next.min(now + wait);
        }
        if let Some(wait) = retry_after.or(hold) {
            // Honour the server's Retry-After: never come back sooner than it asked.
            next = next.max(now + wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_retries_back_off_within_bounds_and_follow_retry_after() {
        let secs = |failures, ra: Option<u64>| {
            retry_delay(
                CheckKind::Graph,
                failures,
                ra.map(Duration::from_secs),
                12345,
            )
            .map(|d| d.as_secs_f64())
        };
        // No retry for other kinds, nor after a success.
        assert_eq!(retry_delay(CheckKind::Token, 1, None, 1), None);
        assert_eq!(secs(0, None), None);
        // 30 s doubling, capped at 15 minutes, each with at most a tenth more of jitter.
        let mut prev = 0.0;
        for n in 1..=12u32 {
            let d = secs(n, None).unwrap();
            let base = (30.0 * 2f64.powi(n as i32 - 1)).min(900.0);
            assert!(d >= base && d <= base * 1.1, "failure {n}: {d}");
            assert!(d >= prev / 1.1, "never shorter by more than jitter");
            prev = d;
        }
        // Retry-After decides, within [1 s, 15 min].
        let d = secs(1, Some(2)).unwrap();
        assert!((2.0..=2.2).contains(&d), "{d}");
        assert!(secs(3, Some(0)).unwrap() >= 1.0);
        assert!(secs(1, Some(86_400)).unwrap() <= 990.0);
    }

    #[test]
    fn phases_spread_and_stay_stable() {
        let origin = Instant::now();
        let interval = Duration::from_secs(300);
        let mut firsts = Vec::new();
        for i in 0..1000 {
            let key = JobKey {
                kind: CheckKind::Token,
                target: format!("app-{i}"),
            };
            let t = Timing {
                origin,
                hash: stable_hash(&key),
                schedule: Schedule::Every(interval),
            };
            let n1 = t.next(origin + Duration::from_secs(1));
            let n2 = t.next(n1);
            assert_eq!(n2 - n1, interval, "steady runs are one interval apart");
            firsts.push((n1 - origin).as_secs() % 300);
        }
        // 1,000 targets over 300 one-second buckets: no second holds more than a few dozen.
        let mut buckets = [0u32; 300];
        for s in firsts {
            buckets[s as usize] += 1;
        }
        assert!(
            buckets.iter().max().copied().unwrap_or(0) < 15,
            "{buckets:?}"
        );
        let key = JobKey {
            kind: CheckKind::Token,
            target: "x".into(),
        };
        assert_eq!(stable_hash(&key), stable_hash(&key.clone()));
    }
}
