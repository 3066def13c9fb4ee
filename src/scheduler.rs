//! Runs every (check, target) on its own schedule: one timer task over a queue of due times and a
//! task per run in progress (no task per idle job, no thread per target), a stable per-target
//! phase so big fleets spread out, a bound on concurrent runs, a timeout on each run, and a
//! prompt stop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checks::{self, Context, RunOptions};
use crate::plan::Schedule;
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

/// Gap between first Graph reads after start, per Graph job of one tenant (see
/// `Jobs::add_all`): a read is two requests (the application and its service principal), and
/// Graph allows about 150 credential reads a minute per tenant.
const GRAPH_START_GAP: Duration = Duration::from_secs(1);

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
/// without Retry-After), this long. Each service throttles on its own: Entra ID's throttling of
/// an app holds back its token check (SMTP runs keep using the cached token), Graph's holds
/// back its Graph reads (credentials, service health, credential activity), and Exchange's holds back the mailbox it
/// throttled. The rest of the agent goes on.
const THROTTLE_QUIET: Duration = Duration::from_secs(60);

/// The service a throttled check was held back by (one quiet period per app and service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Throttler {
    Entra,
    Graph,
}

impl Throttler {
    /// The service whose throttling of an app holds back a check of this kind (`None`: only
    /// the run's own Retry-After holds it back).
    fn of(kind: CheckKind) -> Option<Throttler> {
        match kind {
            CheckKind::Token => Some(Throttler::Entra),
            CheckKind::Graph | CheckKind::Health | CheckKind::Activity | CheckKind::Discovery => {
                Some(Throttler::Graph)
            }
            // Message trace throttles per tenant, apart from Graph's other reads: only its own
            // Retry-After holds it back.
            CheckKind::Smtp | CheckKind::Canary | CheckKind::Traffic => None,
        }
    }
}

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

/// Per app and service: until when the app's checks that use the service hold back because
/// the service throttled one of them.
#[derive(Default)]
pub struct Quiet(std::sync::Mutex<HashMap<(String, Throttler), Instant>>);

impl Quiet {
    fn until(&self, app: &str, kind: CheckKind) -> Option<Instant> {
        let service = Throttler::of(kind)?;
        self.0
            .lock()
            .expect("quiet lock")
            .get(&(app.to_string(), service))
            .copied()
    }

    fn hold(&self, app: &str, kind: CheckKind, until: Instant) {
        let Some(service) = Throttler::of(kind) else {
            return;
        };
        let mut map = self.0.lock().expect("quiet lock");
        let now = Instant::now();
        map.retain(|_, t| *t > now);
        let t = map.entry((app.to_string(), service)).or_insert(until);
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

/// The running scheduler: one timer task hands due jobs to a task per run; everything stops
/// when it is stopped or the shutdown token fires.
pub struct Scheduler {
    core: Arc<Core>,
    cancel: CancellationToken,
    /// The timer task (it owns the runs in progress); taken by [`Scheduler::stop`].
    timer: Option<tokio::task::JoinHandle<()>>,
}

/// Dropped without [`Scheduler::stop`] (a test, a failed start): every run stops at once.
impl Drop for Scheduler {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

/// What the timer task and every run share.
struct Core {
    ctx: Arc<Context>,
    sink: Arc<dyn Sink>,
    quiet: Quiet,
    /// Phases count from here, so a job kept or restarted by a reload keeps its phase.
    origin: Instant,
    jobs: std::sync::Mutex<Jobs>,
    /// Tells the timer task that the earliest due time may have changed.
    wake: Notify,
}

/// The jobs, waiting or running, and when each is due next. A waiting job is an entry in the
/// table and one in the queue, about two hundred bytes: 12,000 jobs do not need 12,000 tasks
/// (each as large as its future, a kilobyte), only the runs in progress do.
struct Jobs {
    settings: SchedulerSettings,
    /// One bound per check kind: 10,000 SMTP runs stuck on an unreachable host must not keep
    /// the token checks (which would show the cause) waiting behind them.
    slots: HashMap<CheckKind, Arc<Semaphore>>,
    /// Slots of jobs by index (`None`: removed, the index free for reuse).
    table: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_key: HashMap<JobKey, usize>,
    /// (due, index, generation), earliest first; an entry whose slot has another generation
    /// (restarted or removed since) is skipped.
    queue: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_gen: u64,
}

struct Slot {
    job: Arc<Job>,
    timing: Timing,
    gen: u64,
    /// Transient failures in a row (Graph retries back off with them).
    failures: u32,
    /// The run in progress, to stop it when the job is restarted or removed.
    run: Option<CancellationToken>,
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

impl Core {
    /// The job table. A panic while it was held (none is known) must not stop every other job
    /// as well: the table is consistent between statements, so a poisoned lock is taken over.
    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Jobs {
    /// Drops the queue entries of jobs restarted or removed since they were queued, once they
    /// outnumber the live ones: a reload every minute that restarts Graph jobs (due every six
    /// hours) must not pile up entries until their old due times.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.by_key.len() + 64 {
            let table = &self.table;
            self.queue.retain(|Reverse((_, index, gen))| {
                table[*index].as_ref().is_some_and(|s| s.gen == *gen)
            });
        }
    }

    /// Adds `jobs` (or replaces them, by key), their first runs spread after `from` (the
    /// start, or a reload).
    fn add_all(&mut self, jobs: &[&Job], origin: Instant, from: Instant) {
        // Graph's limits are per tenant: a thousand apps of one tenant spread their first reads
        // over a thousand seconds, a thousand apps of a thousand tenants within startup_spread.
        let mut graph_jobs: std::collections::HashMap<&str, u32> = Default::default();
        for j in jobs.iter().filter(|j| j.kind == CheckKind::Graph) {
            *graph_jobs
                .entry(j.target.app().tenant.as_str())
                .or_default() += 1;
        }
        for job in jobs {
            let key = job.key();
            let timing = Timing {
                origin,
                hash: stable_hash(&key),
                schedule: job.settings.schedule.clone(),
            };
            let spread = match job.kind {
                // Graph allows about 150 credential reads a minute per tenant: after a start,
                // spread a tenant's first reads at one a second rather than into one
                // startup_spread.
                CheckKind::Graph => self.settings.startup_spread.max(
                    GRAPH_START_GAP
                        * graph_jobs
                            .get(job.target.app().tenant.as_str())
                            .copied()
                            .unwrap_or(1),
                ),
                _ => self.settings.startup_spread,
            };
            let first = timing.first_after(from, spread);
            self.remove(&key);
            let gen = self.next_gen;
            self.next_gen += 1;
            let slot = Slot {
                job: Arc::new((*job).clone()),
                timing,
                gen,
                failures: 0,
                run: None,
            };
            let index = match self.free.pop() {
                Some(i) => {
                    self.table[i] = Some(slot);
                    i
                }
                None => {
                    self.table.push(Some(slot));
                    self.table.len() - 1
                }
            };
            self.by_key.insert(key, index);
            self.queue.push(Reverse((first, index, gen)));
        }
    }

    /// Removes a job, stopping its run if one is in progress.
    fn remove(&mut self, key: &JobKey) -> bool {
        let Some(index) = self.by_key.remove(key) else {
            return false;
        };
        if let Some(run) = self.table[index].take().and_then(|s| s.run) {
            run.cancel();
        }
        self.free.push(index);
        true
    }

    fn slot(&mut self, index: usize, gen: u64) -> Option<&mut Slot> {
        self.table
            .get_mut(index)
            .and_then(Option::as_mut)
            .filter(|s| s.gen == gen)
    }

    /// The digest of the job scheduled under this key, if any (a reload keeps the job when the
    /// new plan's is the same).
    fn digest(&self, key: &JobKey) -> Option<[u8; 32]> {
        let index = *self.by_key.get(key)?;
        self.table[index].as_ref().map(|s| s.job.digest)
    }
}

impl Scheduler {
    /// Schedules every job of the plan. Their reports go to `sink`.
    pub fn start(
        plan: &Plan,
        ctx: Arc<Context>,
        sink: Arc<dyn Sink>,
        shutdown: &CancellationToken,
    ) -> Self {
        let settings = plan.settings.scheduler.clone();
        let origin = Instant::now();
        let mut jobs = Jobs {
            slots: semaphores(&settings),
            settings,
            table: Vec::with_capacity(plan.jobs.len()),
            free: Vec::new(),
            by_key: HashMap::with_capacity(plan.jobs.len()),
            queue: BinaryHeap::with_capacity(plan.jobs.len()),
            next_gen: 0,
        };
        jobs.add_all(&plan.jobs.iter().collect::<Vec<_>>(), origin, origin);
        let core = Arc::new(Core {
            ctx,
            sink,
            quiet: Quiet::default(),
            origin,
            jobs: std::sync::Mutex::new(jobs),
            wake: Notify::new(),
        });
        let cancel = shutdown.child_token();
        let timer = tokio::spawn(timer(core.clone(), cancel.clone()));
        Self {
            core,
            cancel,
            timer: Some(timer),
        }
    }

    /// Moves to a new plan: jobs with the same key and digest keep running untouched (their
    /// phase, their state); changed ones stop and start again, as do new ones, with a first run
    /// within the startup spread; removed ones stop. A change of `max_concurrent_checks`
    /// restarts every job on the new bound.
    pub fn reload(&mut self, plan: &Plan) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let mut jobs = self.core.jobs();
        let rebound =
            plan.settings.scheduler.max_concurrent_checks != jobs.settings.max_concurrent_checks;
        if rebound {
            jobs.slots = semaphores(&plan.settings.scheduler);
        }
        jobs.settings = plan.settings.scheduler.clone();
        let mut start = Vec::new();
        for job in &plan.jobs {
            match jobs.digest(&job.key()) {
                Some(d) if d == job.digest && !rebound => summary.kept += 1,
                // Changed, or every job on a new bound.
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
        let gone: Vec<JobKey> = jobs
            .by_key
            .keys()
            .filter(|k| plan.job(k).is_none())
            .cloned()
            .collect();
        for key in gone {
            if jobs.remove(&key) {
                summary.removed += 1;
            }
        }
        let origin = self.core.origin;
        jobs.add_all(&start, origin, Instant::now());
        jobs.compact();
        drop(jobs);
        self.core.wake.notify_one();
        summary
    }

    /// Entries in the due-time queue, stale ones included (their bound is tested).
    pub fn queued(&self) -> usize {
        self.core.jobs().queue.len()
    }

    /// Stops every run, waiting at most `grace` for runs in progress to notice.
    pub async fn stop(mut self, grace: Duration) {
        self.cancel.cancel();
        if let Some(mut timer) = self.timer.take() {
            if tokio::time::timeout(grace, &mut timer).await.is_err() {
                // Dropping the runs' set aborts them.
                timer.abort();
            }
        }
    }
}

/// The timer task: sleeps until the earliest due job, starts a run for each due job (each in
/// its own task, which puts the job back in the queue when it is done), and on stop waits for
/// the runs in progress to notice.
async fn timer(core: Arc<Core>, cancel: CancellationToken) {
    let mut runs = JoinSet::new();
    loop {
        // Finished runs' tasks are reaped here: the set holds only runs in progress.
        while runs.try_join_next().is_some() {}
        let wake = core.wake.notified();
        let due = {
            let jobs = core.jobs();
            jobs.queue.peek().map(|Reverse((t, _, _))| *t)
        };
        let sleep = async {
            match due {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = wake => continue,
            _ = sleep => {}
        }
        let now = Instant::now();
        let mut jobs = core.jobs();
        while let Some(Reverse((t, index, gen))) = jobs.queue.peek().copied() {
            if t > now {
                break;
            }
            jobs.queue.pop();
            let Some(slot) = jobs.slot(index, gen) else {
                continue;
            };
            // The service this job uses throttles its app: wait with it (spread a little, so
            // the app's jobs do not all come back at the same instant).
            let app = slot.job.target.app();
            if let Some(until) = core
                .quiet
                .until(&app.name, slot.job.kind)
                .filter(|u| *u > now)
            {
                let back = until + fraction_of(Duration::from_secs(5), slot.timing.hash);
                jobs.queue.push(Reverse((back, index, gen)));
                continue;
            }
            // A canary sends a message each run: never two closer than its schedule, whatever
            // started this one (the start, a reload that restarted the job, a probe).
            if slot.job.kind == CheckKind::Canary {
                let interval = slot.job.settings.schedule.typical_interval();
                let next = core.ctx.canary.next_send(slot.job.target.name(), interval);
                if let Some(next) = next.filter(|n| *n > now) {
                    jobs.queue.push(Reverse((next, index, gen)));
                    continue;
                }
            }
            let run = cancel.child_token();
            slot.run = Some(run.clone());
            let job = slot.job.clone();
            let permits = jobs.slots[&job.kind].clone();
            runs.spawn(run_once(core.clone(), job, index, gen, t, permits, run));
        }
    }
    // Stopping: every run's token is a child of `cancel`, so each ends at its next step.
    while runs.join_next().await.is_some() {}
}

/// One run of a job that was due at `due`: wait for a slot of its kind, run, report, and put
/// the job back in the queue for its next run (unless a reload restarted or removed it).
async fn run_once(
    core: Arc<Core>,
    job: Arc<Job>,
    index: usize,
    gen: u64,
    due: Instant,
    permits: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let permit = tokio::select! {
        _ = cancel.cancelled() => return,
        p = permits.acquire_owned() => match p { Ok(p) => p, Err(_) => return },
    };
    core.sink
        .scheduled(job.kind, Instant::now().saturating_duration_since(due));
    // Boxed: a check's future (a TLS session, buffers) is kilobytes, and runs waiting for a
    // slot need not carry it.
    let opts = RunOptions::default();
    let run = Box::pin(checks::run(&job, &core.ctx, &opts));
    let report = tokio::select! {
        _ = cancel.cancelled() => return,
        r = run => r,
    };
    drop(permit);
    let retry_after = report.retry_after;
    let (transient, throttled) = report.failure.as_ref().map_or((false, false), |f| {
        (f.reason.is_transient(), f.reason.is_throttled())
    });
    core.sink.accept(&job, report);
    let now = Instant::now();
    // Throttled: Entra ID throttles the app's token requests, Graph its Graph reads, so the
    // app's checks that use that service hold back; Exchange throttles a mailbox (3
    // connections each), so that mailbox does.
    let hold = throttled.then(|| retry_after.unwrap_or(THROTTLE_QUIET));
    if let (Some(wait), true) = (hold, job.kind.is_per_app()) {
        core.quiet
            .hold(&job.target.app().name, job.kind, now + wait);
    }
    let mut jobs = core.jobs();
    let Some(slot) = jobs.slot(index, gen) else {
        return;
    };
    slot.run = None;
    slot.failures = if transient { slot.failures + 1 } else { 0 };
    let mut next = slot.timing.next(now);
    if let Some(wait) = retry_delay(job.kind, slot.failures, retry_after, slot.timing.hash) {
        next = next.min(now + wait);
    }
    if let Some(wait) = retry_after.or(hold) {
        // Honour the server's Retry-After: never come back sooner than it asked.
        next = next.max(now + wait);
    }
    jobs.queue.push(Reverse((next, index, gen)));
    drop(jobs);
    core.wake.notify_one();
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
