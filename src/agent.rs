//! Wires the parts together: the plan, token cache, check context, scheduler with its state sink,
//! and the HTTP endpoint. `main` and the tests start an [`Agent`] and stop it with its handle.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenCache;
use crate::checks::Context;
use crate::metrics::AgentInfo;
use crate::plan::Plan;
use crate::scheduler::Scheduler;
use crate::server::{self, Shared};
use crate::sink::StateSink;
use crate::state::StateStore;

/// How long a stop waits for runs in progress before it abandons them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where and how the agent serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen_address: String,
    pub telemetry_path: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            listen_address: "127.0.0.1:0".into(),
            telemetry_path: "/metrics".into(),
        }
    }
}

/// A running agent.
pub struct Agent {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    scheduler: Scheduler,
}

impl Agent {
    /// Binds the endpoint and starts the scheduler on the plan.
    pub async fn start(plan: Plan, opts: &ServeOptions) -> anyhow::Result<Agent> {
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
        let listener = TcpListener::bind(&opts.listen_address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen_address))?;
        let addr = listener.local_addr()?;
        let plan = Arc::new(plan);
        let tokens = Arc::new(TokenCache::new());
        let ctx = Arc::new(Context::new(tokens.clone()));
        let state = Arc::new(StateStore::new());
        state.retain(&plan);
        let sink = Arc::new(StateSink {
            plan: plan.clone(),
            state: state.clone(),
        });
        sink.diagnose_all();
        let shared = Arc::new(Shared {
            plan: RwLock::new(plan.clone()),
            alerts: Mutex::new(Vec::new()),
            state: state.clone(),
            tokens: tokens.clone(),
            ctx: ctx.clone(),
            probes: Arc::new(tokio::sync::Semaphore::new(
                plan.settings.scheduler.max_concurrent_probes,
            )),
            agent: Mutex::new(AgentInfo {
                config_reload_successful: true,
                config_reload_success_at: Some(chrono::Utc::now()),
            }),
            telemetry_path: opts.telemetry_path.clone(),
            ready: Default::default(),
            page: Default::default(),
        });
        let shutdown = CancellationToken::new();
        tracing::info!(
            apps = plan.apps.len(),
            mailboxes = plan.mailboxes.len(),
            jobs = plan.jobs.len(),
            listen_address = %addr,
            "starting smtp-oauth-exporter {}",
            env!("CARGO_PKG_VERSION")
        );
        let scheduler = Scheduler::start(&plan, ctx, sink, &shutdown);
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
            scheduler,
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
        self.scheduler.stop(STOP_GRACE).await;
        let _ = tokio::time::timeout(STOP_GRACE, self.server).await;
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
    let first = shared.plan();
    let mut pusher = first.settings.alertmanager.clone().and_then(|s| {
        crate::alerts::push::Pusher::new(s)
            .map_err(|e| tracing::warn!(error = %e, "cannot set up the Alertmanager client"))
            .ok()
    });
    let mut tracker = crate::alerts::Tracker::default();
    let mut tick = crate::alerts::push::next_tick(first.settings.alert_evaluation_interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let plan = shared.plan();
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
