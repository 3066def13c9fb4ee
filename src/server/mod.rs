//! The HTTP endpoint (hyper): `/metrics`, `/probe`, `/status`, `/alerts`, the status page `/`,
//! `/-/healthy`, `/-/ready` and `/-/reload`, optionally over TLS with basic auth
//! (`--web.config.file`), with bounded connections, header size and time. It reads state;
//! protocol work happens in the checks, which `/probe` runs through the same `checks::run` as
//! the scheduler.

pub mod connections;
mod page;
pub mod pages;
mod probe;
pub mod probe_runs;
pub mod rate_limit;
mod runbooks;
pub mod web_config;
pub mod web_watch;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenCache;
use crate::checks::Context;
use crate::metrics::{self, AgentInfo};
use crate::plan::{CurrentPlan, Plan};
use crate::state::StateStore;

/// A reload request (`POST /-/reload`, SIGHUP): the answer goes back on the channel.
pub type ReloadRequest =
    tokio::sync::oneshot::Sender<Result<crate::scheduler::ReloadSummary, String>>;

/// Everything the endpoint reads.
pub struct Shared {
    /// The plan in force (a reload swaps it).
    pub plan: Arc<CurrentPlan>,
    /// Where reload requests go (the agent's control task; it also ends when this closes).
    pub reload: tokio::sync::mpsc::Sender<ReloadRequest>,
    /// `POST /-/reload` allowed (`--web.enable-lifecycle`).
    pub enable_lifecycle: bool,
    /// TLS and basic auth (`--web.config.file`; open without it), swapped when its files change.
    pub web: std::sync::RwLock<Arc<web_config::WebConfig>>,
    /// Where the web configuration comes from (`None`: open, nothing to follow).
    pub web_watch: Option<web_watch::WebWatch>,
    /// The open connections (at most `--web.max-connections`; the idlest makes room).
    pub connections: Arc<connections::Connections>,
    /// The agent's own alerts firing at the last evaluation (`GET /alerts`).
    pub alerts: Mutex<Vec<crate::alerts::Alert>>,
    pub state: Arc<StateStore>,
    pub tokens: Arc<TokenCache>,
    /// What `/probe` runs checks with.
    pub ctx: Arc<Context>,
    /// Bounds concurrent `/probe` runs.
    pub probes: Arc<tokio::sync::Semaphore>,
    /// The probes' latest results and runs in flight.
    pub probe_runs: Arc<probe_runs::ProbeRuns>,
    /// The runs probes may start per second.
    pub probe_limit: rate_limit::RateLimit,
    pub agent: Mutex<AgentInfo>,
    pub telemetry_path: String,
    pub ready: AtomicBool,
    /// The last rendered page: scrapes arriving together share one render (a 10,000-mailbox
    /// page is 6 MB; rendering it per request would let parallel scrapes exhaust memory).
    pub page: tokio::sync::Mutex<PageCache>,
    /// The `/status` and `/` pages rendered within the last second, shared the same way.
    pub pages: tokio::sync::Mutex<pages::PageStore>,
}

/// The rendered `/metrics` page while it serves scrapes, and the size of the last one.
#[derive(Default)]
pub struct PageCache {
    page: Option<Page>,
    /// The last page's length, the next buffer's size: kept when the page itself is dropped.
    last_len: usize,
}

impl PageCache {
    /// Drops the page (a reload changed what it would say); its size still sizes the next.
    pub fn drop_page(&mut self) {
        self.page = None;
    }
}

/// A rendered `/metrics` page and when it was made.
pub struct Page {
    at: std::time::Instant,
    text: Bytes,
    gzip: Option<Bytes>,
}

/// How long a rendered page serves further scrapes.
const PAGE_REUSE: Duration = Duration::from_secs(1);

impl Shared {
    /// The whole `/metrics` page.
    pub fn render_metrics(&self) -> String {
        self.render_metrics_sized(0)
    }

    /// The page, into a buffer of `capacity` bytes (the last page's size).
    fn render_metrics_sized(&self, capacity: usize) -> String {
        let plan = self.plan();
        let page = metrics::PageSettings {
            detail: plan.settings.metrics.detail,
            stale_intervals: plan.settings.alerts.stale_intervals,
            now: chrono::Utc::now(),
        };
        let agent = self.agent.lock().expect("agent lock").clone();
        // Per-app request counts only with detail (`token_requests_by_app_total`).
        let tokens = if page.detail {
            self.tokens.stats()
        } else {
            self.tokens.totals()
        };
        self.state
            .with_view(|v| metrics::render(&agent, v, &tokens, page, capacity))
    }

    /// The plan in force.
    pub fn plan(&self) -> Arc<Plan> {
        self.plan.get()
    }

    /// Asks the agent to reload its configuration and waits for the outcome.
    pub async fn reload(&self) -> Result<crate::scheduler::ReloadSummary, String> {
        let (answer, outcome) = tokio::sync::oneshot::channel();
        self.reload
            .send(answer)
            .await
            .map_err(|_| "the agent is stopping".to_string())?;
        outcome
            .await
            .unwrap_or_else(|_| Err("the agent is stopping".into()))
    }

    /// The web configuration in force.
    pub fn web(&self) -> Arc<web_config::WebConfig> {
        self.web.read().expect("web config lock").clone()
    }

    /// The status document of every target.
    pub fn status(&self) -> crate::status::Document {
        crate::status::document(&self.plan(), &self.state, None)
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("static response parts")
}

/// The page for one scrape: rendered at most once per [`PAGE_REUSE`], one render at a time, off
/// the async workers; gzip made once per page when a scraper asks for it.
async fn metrics_page(shared: &Arc<Shared>, gzip: bool) -> Option<(Bytes, bool)> {
    let mut cache = shared.page.lock().await;
    if cache
        .page
        .as_ref()
        .is_none_or(|p| p.at.elapsed() > PAGE_REUSE)
    {
        let s = shared.clone();
        // The last page's size, and a little room to grow: one allocation, not a dozen.
        let capacity = cache.last_len + cache.last_len / 16;
        // Drop the old page first: two 6 MB pages need not live at once.
        cache.page = None;
        let text = tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let text = s.render_metrics_sized(capacity);
            tracing::debug!(
                bytes = text.len(),
                seconds = start.elapsed().as_secs_f64(),
                "rendered /metrics"
            );
            text
        })
        .await
        .ok()?;
        let at = std::time::Instant::now();
        cache.last_len = text.len();
        cache.page = Some(Page {
            at,
            text: Bytes::from(text),
            gzip: None,
        });
        // Once it can serve no more scrapes, the page goes: between scrapes (15 s or more
        // apart) the agent holds no copy of it.
        let s = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PAGE_REUSE).await;
            let mut cache = s.page.lock().await;
            if cache.page.as_ref().is_some_and(|p| p.at == at) {
                cache.page = None;
            }
        });
    }
    let p = cache.page.as_mut()?;
    if !gzip {
        return Some((p.text.clone(), false));
    }
    if p.gzip.is_none() {
        let text = p.text.clone();
        p.gzip = tokio::task::spawn_blocking(move || gzip_bytes(&text))
            .await
            .ok()
            .flatten()
            .map(Bytes::from);
    }
    match &p.gzip {
        Some(g) => Some((g.clone(), true)),
        None => Some((p.text.clone(), false)),
    }
}

/// Whether the client takes gzip (Prometheus asks for it; 10,000 mailboxes make 20 MB of text).
fn accepts_gzip(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT_ENCODING)
        .iter()
        .any(|v| {
            v.to_str().unwrap_or("").split(',').any(|part| {
                let mut it = part.split(';');
                let coding = it.next().unwrap_or("").trim();
                let refused = it.any(|p| p.trim().replace(' ', "") == "q=0");
                coding.eq_ignore_ascii_case("gzip") && !refused
            })
        })
}

fn gzip_bytes(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::fast(),
    );
    e.write_all(data).ok()?;
    e.finish().ok()
}

/// `POST` (or `PUT`) `/-/reload`, as Prometheus: only with `--web.enable-lifecycle`; 200 once
/// the new configuration runs, 500 with the error when it is invalid (the old one keeps
/// running).
async fn reload(shared: &Shared) -> Response<Body> {
    if !shared.enable_lifecycle {
        return reply(
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            "Lifecycle API is not enabled (--web.enable-lifecycle).\n",
        );
    }
    match shared.reload().await {
        Ok(s) => reply(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!(
                "configuration reloaded: {} jobs kept, {} restarted, {} added, {} removed\n",
                s.kept, s.restarted, s.added, s.removed
            ),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("failed to reload config: {e}\n"),
        ),
    }
}

/// Authentication (every path but `/-/healthy`, when basic auth is configured), then the
/// route; the web configuration's extra headers on every response.
async fn handle(
    shared: Arc<Shared>,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let web = shared.web();
    let mut resp = if req.uri().path() != "/-/healthy"
        && !web
            .authorized(req.headers().get(hyper::header::AUTHORIZATION))
            .await
    {
        let mut r = reply(
            StatusCode::UNAUTHORIZED,
            "text/plain; charset=utf-8",
            "Unauthorized\n",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            "Basic realm=\"smtp-oauth-exporter\", charset=\"UTF-8\""
                .parse()
                .expect("static header"),
        );
        r
    } else {
        route(shared, peer, req).await
    };
    for (k, v) in &web.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    Ok(resp)
}

async fn route(
    shared: Arc<Shared>,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.uri().path() == "/-/reload" {
        return match *req.method() {
            Method::POST | Method::PUT => reload(&shared).await,
            _ => {
                let mut r = reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain; charset=utf-8",
                    "Method not allowed: POST /-/reload\n",
                );
                r.headers_mut().insert(
                    hyper::header::ALLOW,
                    "POST, PUT".parse().expect("static header"),
                );
                r
            }
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "Method not allowed\n",
        );
        r.headers_mut().insert(
            hyper::header::ALLOW,
            "GET, HEAD".parse().expect("static header"),
        );
        return r;
    }
    let path = req.uri().path().to_string();
    let resp = if path == shared.telemetry_path {
        match metrics_page(&shared, accepts_gzip(req.headers())).await {
            Some((body, gzip)) => {
                let mut r = reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    body,
                );
                let h = r.headers_mut();
                h.insert(
                    hyper::header::VARY,
                    "Accept-Encoding".parse().expect("static header"),
                );
                if gzip {
                    h.insert(
                        hyper::header::CONTENT_ENCODING,
                        "gzip".parse().expect("static header"),
                    );
                }
                r
            }
            // An empty 200 would make every series vanish at once; say that it failed.
            None => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "cannot render the metrics\n",
            ),
        }
    } else {
        match path.as_str() {
            "/" | "/status" => {
                let (format, content_type) = if path == "/" {
                    (pages::Format::Html, "text/html; charset=utf-8")
                } else {
                    (pages::Format::Json, "application/json")
                };
                match pages::parse_query(req.uri().query(), &shared.plan()) {
                    Err(m) => reply(
                        StatusCode::BAD_REQUEST,
                        "text/plain; charset=utf-8",
                        m + "\n",
                    ),
                    Ok(q) => match pages::page(&shared, format, q).await {
                        Some(body) => reply(StatusCode::OK, content_type, body),
                        None => reply(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "text/plain; charset=utf-8",
                            "cannot render the status\n",
                        ),
                    },
                }
            }
            "/alerts" => {
                let alerts = shared.alerts.lock().expect("alerts lock").clone();
                match serde_json::to_vec_pretty(&alerts) {
                    Ok(body) => reply(StatusCode::OK, "application/json", body),
                    Err(_) => reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "text/plain; charset=utf-8",
                        "cannot render the alerts\n",
                    ),
                }
            }
            "/probe" => probe::handle(&shared, peer, req.uri().query(), req.headers()).await,
            crate::alerts::RUNBOOKS_PATH => {
                reply(StatusCode::OK, "text/html; charset=utf-8", runbooks::page())
            }
            "/-/healthy" => reply(StatusCode::OK, "text/plain; charset=utf-8", "Healthy\n"),
            "/-/ready" => {
                if shared.ready.load(Ordering::Relaxed) {
                    reply(StatusCode::OK, "text/plain; charset=utf-8", "Ready\n")
                } else {
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain; charset=utf-8",
                        "Not ready\n",
                    )
                }
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "Not found\n",
            ),
        }
    };
    resp
}

/// How long a client may take to send a request's headers (also while a kept-alive connection
/// idles), and to finish a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection may say nothing at all (no request byte, no TLS hello): a client
/// that means to ask does so at once (Prometheus in well under a millisecond).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection is closed (gracefully) after this long, however busy: no client holds a place
/// for ever.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
/// Request line and headers together; beyond it the request gets 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The listen queue: a burst of connections (2,000 opened at once) waits there for the accept
/// loop instead of having its SYNs dropped, which costs a client a 1 s retransmission (the
/// kernel caps it at `net.core.somaxconn`, 4,096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the endpoint's address (`host:port`; a name is resolved, its first address taken).
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's TcpListener::bind does on Unix: a restarted agent rebinds at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until `shutdown` fires. Every connection is accepted at once; when
/// `--web.max-connections` are open, the one idle longest (no request in progress: silent,
/// mid-headers, mid-handshake or between requests) is closed to make room, so idle and slow
/// clients cannot keep a scrape out or even delay it. A connection that says nothing is closed
/// after [`FIRST_BYTE_TIMEOUT`], one slow to finish its headers or its TLS handshake after
/// [`HEADER_TIMEOUT`].
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        let admitted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = shared.connections.admit() => a,
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors: the idlest connection gives its own back for the
                    // next accept (the scrape may be waiting in the listen queue).
                    let local = crate::net::local_resources(&e);
                    if local {
                        shared.connections.evict_idlest();
                    }
                    if !failing {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        failing = true;
                    }
                    drop(admitted);
                    let pause = if local { 10 } else { 100 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    continue;
                }
            },
        };
        failing = false;
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(connection(stream, peer, admitted, shared, shutdown));
    }
}

/// One accepted connection: its first byte (or its place is given up), the TLS handshake when
/// configured, then HTTP/1.1 until it ends, is closed to make room, ages out or the agent stops.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    admitted: connections::Admitted,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut first = [0u8; 1];
    let said = tokio::select! {
        _ = admitted.evicted.cancelled() => false,
        _ = shutdown.cancelled() => false,
        r = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)) => {
            matches!(r, Ok(Ok(n)) if n > 0)
        }
    };
    if !said {
        return;
    }
    // A renewed certificate or a new user applies from the next connections.
    web_watch::look(&shared);
    let admitted = Arc::new(admitted);
    match shared.web().tls.clone() {
        None => serve_connection(stream, peer, admitted, shared, shutdown).await,
        Some(tls) => {
            let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
            tokio::select! {
                _ = admitted.evicted.cancelled() => {}
                r = tokio::time::timeout(HEADER_TIMEOUT, accept) => match r {
                    Ok(Ok(s)) => serve_connection(s, peer, admitted, shared, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    admitted: Arc<connections::Admitted>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let evicted = admitted.evicted.clone();
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let admitted = admitted.clone();
        async move {
            // A whole request: the connection is busy (never closed to make room) until the
            // answer is made.
            admitted.busy();
            let resp = handle(shared, peer.ip(), req).await;
            admitted.idle();
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let age = tokio::time::sleep(MAX_CONNECTION_AGE);
    tokio::pin!(age);
    tokio::select! {
        _ = conn.as_mut() => return,
        // Idle, and its place given to a new connection: closed at once.
        _ = evicted.cancelled() => return,
        _ = shutdown.cancelled() => {}
        _ = &mut age => {}
    }
    // Let the request in progress finish (bounded), then close.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(HEADER_TIMEOUT, conn).await;
}
