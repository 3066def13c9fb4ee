//! Wires the parts together: the plan, token cache, check context, scheduler with its state sink,
//! and the HTTP endpoint. `main` and the tests start an [`Agent`] and stop it with its handle.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenCache;
use crate::checks::Context;
use crate::metrics::AgentInfo;
use crate::plan::{CurrentPlan, Plan};
use crate::scheduler::{ReloadSummary, Scheduler};
use crate::server::{self, web_config, ReloadRequest, Shared};
use crate::sink::StateSink;
use crate::state::StateStore;

/// Connections the endpoint keeps open at once by default: far above what scrapers need, low
/// enough to bound memory; when all are open, the one idle longest makes room for a new one.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long a stop waits for runs in progress before it abandons them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where and how the agent serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen_address: String,
    pub telemetry_path: String,
    /// The configuration file a reload re-reads (`None`: reloads fail).
    pub config_file: Option<PathBuf>,
    /// Whether `POST /-/reload` is allowed (`--web.enable-lifecycle`, as in Prometheus).
    pub enable_lifecycle: bool,
    /// TLS and basic auth for the endpoint (`--web.config.file`).
    pub web_config_file: Option<PathBuf>,
    /// Connections open at once (`--web.max-connections`).
    pub max_connections: usize,
    /// This replica's part of the fleet (`--shard.*`); `None`: all of it.
    pub shard: Option<crate::plan::Shard>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            listen_address: "127.0.0.1:0".into(),
            telemetry_path: "/metrics".into(),
            config_file: None,
            enable_lifecycle: false,
            web_config_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shard: None,
        }
    }
}

/// A running agent.
pub struct Agent {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    /// Owns the scheduler: reloads it, and stops it at shutdown.
    control: JoinHandle<()>,
}

impl Agent {
    /// Binds the endpoint and starts the scheduler on the plan.
    pub async fn start(plan: Plan, opts: &ServeOptions) -> anyhow::Result<Agent> {
        let plan = plan.sharded(opts.shard);
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
        let web = match opts.web_config_file.clone() {
            None => web_config::WebConfig::open(),
            Some(path) => tokio::task::spawn_blocking(move || web_config::WebConfig::load(&path))
                .await?
                .map_err(|e| anyhow::anyhow!("invalid web configuration: {e}"))?,
        };
        let tls = web.tls.is_some();
        let listener = server::bind(&opts.listen_address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen_address))?;
        let addr = listener.local_addr()?;
        let plan = Arc::new(plan);
        let current = Arc::new(CurrentPlan::new(plan.clone()));
        let tokens = Arc::new(TokenCache::new());
        let ctx = Arc::new(Context::new(tokens.clone()));
        let state = Arc::new(StateStore::new());
        state.retain(&plan);
        let sink = Arc::new(StateSink::new(current.clone(), state.clone()));
        sink.diagnose_all();
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
        let shared = Arc::new(Shared {
            plan: current,
            reload: reload_tx,
            enable_lifecycle: opts.enable_lifecycle,
            web: std::sync::RwLock::new(Arc::new(web)),
            web_watch: opts
                .web_config_file
                .clone()
                .map(server::web_watch::WebWatch::new),
            connections: server::connections::Connections::new(opts.max_connections),
            alerts: Mutex::new(Vec::new()),
            state: state.clone(),
            tokens: tokens.clone(),
            ctx: ctx.clone(),
            probes: Arc::new(tokio::sync::Semaphore::new(
                plan.settings.scheduler.max_concurrent_probes,
            )),
            probe_runs: Default::default(),
            probe_limit: Default::default(),
            agent: Mutex::new(AgentInfo {
                config_reload_successful: true,
                config_reload_success_at: Some(chrono::Utc::now()),
            }),
            telemetry_path: opts.telemetry_path.clone(),
            ready: Default::default(),
            page: Default::default(),
            pages: Default::default(),
        });
        let shutdown = CancellationToken::new();
        tracing::info!(
            apps = plan.apps.len(),
            mailboxes = plan.mailboxes.len(),
            jobs = plan.jobs.len(),
            listen_address = %addr,
            tls,
            shard = opts
                .shard
                .map(|s| format!("{}/{} by {:?}", s.index, s.count, s.by).to_lowercase())
                .unwrap_or_default()
                .as_str(),
            "starting smtp-oauth-exporter {}",
            env!("CARGO_PKG_VERSION")
        );
        let scheduler = Scheduler::start(&plan, ctx, sink.clone(), &shutdown);
        let control = tokio::spawn(control_loop(
            Control {
                shared: shared.clone(),
                scheduler,
                sink,
                config_file: opts.config_file.clone(),
                shard: opts.shard,
            },
            reload_rx,
            shutdown.clone(),
        ));
        let server = tokio::spawn(server::serve(listener, shared.clone(), shutdown.clone()));
        tokio::spawn(alerts_loop(
            shared.clone(),
            shutdown.clone(),
            format!("http://{addr}/"),
        ));
        shared.ready.store(true, Ordering::Relaxed);
        Ok(Agent {
            addr,
            shared,
            shutdown,
            server,
            control,
        })
    }

    /// The address the endpoint listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `/metrics` text, as a scrape would see it.
    pub fn render_metrics(&self) -> String {
        self.shared.render_metrics()
    }

    /// The status document, as `/status` serves it.
    pub fn status(&self) -> crate::status::Document {
        self.shared.status()
    }

    /// Stops the scheduler and the endpoint, within a bounded time.
    pub async fn stop(self) {
        self.shared.ready.store(false, Ordering::Relaxed);
        self.shutdown.cancel();
        let _ = tokio::time::timeout(STOP_GRACE * 2, self.control).await;
        let _ = tokio::time::timeout(STOP_GRACE, self.server).await;
    }

    /// Re-reads the configuration file and moves to it (what `SIGHUP` and `POST /-/reload`
    /// do); an invalid file keeps the running configuration.
    pub async fn reload(&self) -> Result<ReloadSummary, String> {
        self.shared.reload().await
    }

    /// The agent's own alerts firing now (`GET /alerts`).
    pub fn alerts(&self) -> Vec<crate::alerts::Alert> {
        self.shared.alerts.lock().expect("alerts lock").clone()
    }

    /// Runs until `signal` resolves, then stops.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down");
        self.stop().await;
    }
}

/// Evaluates the agent's own alerts every `alerts.evaluation_interval`, keeps the firing ones for
/// `GET /alerts`, and pushes them to Alertmanager when configured.
async fn alerts_loop(shared: Arc<Shared>, shutdown: CancellationToken, generator_url: String) {
    let pusher_for = |plan: &Plan| {
        plan.settings.alertmanager.clone().and_then(|s| {
            crate::alerts::push::Pusher::new(s)
                .map_err(|e| tracing::warn!(error = %e, "cannot set up the Alertmanager client"))
                .ok()
        })
    };
    let mut last = shared.plan();
    let mut pusher = pusher_for(&last);
    let mut tracker = crate::alerts::Tracker::default();
    let mut tick = crate::alerts::push::next_tick(last.settings.alert_evaluation_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let plan = shared.plan();
        if !Arc::ptr_eq(&plan, &last) {
            // Reloaded: new Alertmanager settings or interval; what fires carries over.
            if plan.settings.alert_evaluation_interval != last.settings.alert_evaluation_interval {
                tick = crate::alerts::push::next_tick(plan.settings.alert_evaluation_interval);
            }
            pusher = pusher_for(&plan);
            last = plan.clone();
        }
        let now = chrono::Utc::now();
        let agent = shared.agent.lock().expect("agent lock").clone();
        let candidates = shared.state.with_view(|v| {
            crate::alerts::evaluate(&plan, v, &agent, &plan.settings.alerts, now, &generator_url)
        });
        let update = tracker.update(candidates, now);
        *shared.alerts.lock().expect("alerts lock") = update.firing.clone();
        if let Some(p) = pusher.as_mut() {
            p.push(&update, now).await;
        }
    }
}

/// What a reload works on: the scheduler and the sink, owned by one task so reloads happen one
/// at a time.
struct Control {
    shared: Arc<Shared>,
    scheduler: Scheduler,
    sink: Arc<StateSink>,
    config_file: Option<PathBuf>,
    shard: Option<crate::plan::Shard>,
}

impl Control {
    async fn reload(&mut self) -> Result<ReloadSummary, String> {
        let Some(path) = self.config_file.clone() else {
            return Err("no configuration file to reload".into());
        };
        let loaded = crate::config::load_async(path.clone()).await;
        let now = chrono::Utc::now();
        let plan = match loaded {
            Ok(p) => Arc::new(p.sharded(self.shard)),
            Err(e) => {
                self.shared
                    .agent
                    .lock()
                    .expect("agent lock")
                    .config_reload_successful = false;
                tracing::error!(error = %e, "configuration reload failed: the previous configuration keeps running");
                return Err(e.to_string());
            }
        };
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
        // The plan first, so that the reports of the jobs started next are judged by it; then
        // the state and the token cache forget what left; then the scheduler.
        self.shared.plan.set(plan.clone());
        self.shared.state.retain(&plan);
        self.shared.tokens.retain(&plan);
        self.shared.probe_runs.retain(&plan);
        self.shared.ctx.canary.retain(|name| {
            plan.mailboxes
                .iter()
                .any(|m| m.name == name && m.canary.is_some())
        });
        self.shared.ctx.trace.retain(|tenant| {
            plan.tenants
                .iter()
                .any(|t| t.name.eq_ignore_ascii_case(tenant))
        });
        let summary = self.scheduler.reload(&plan);
        self.sink.diagnose_all();
        self.shared.page.lock().await.drop_page();
        self.shared.pages.lock().await.clear();
        {
            let mut agent = self.shared.agent.lock().expect("agent lock");
            agent.config_reload_successful = true;
            agent.config_reload_success_at = Some(now);
        }
        tracing::info!(
            file = %path.display(),
            apps = plan.apps.len(),
            mailboxes = plan.mailboxes.len(),
            kept = summary.kept,
            restarted = summary.restarted,
            added = summary.added,
            removed = summary.removed,
            "configuration reloaded"
        );
        Ok(summary)
    }
}

/// Serves reload requests one at a time until shutdown, then stops the scheduler.
async fn control_loop(
    mut control: Control,
    mut requests: tokio::sync::mpsc::Receiver<ReloadRequest>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = requests.recv() => match r {
                Some(answer) => {
                    let result = control.reload().await;
                    let _ = answer.send(result);
                }
                None => break,
            },
        }
    }
    control.scheduler.stop(STOP_GRACE).await;
}
