//! The shared token cache: one entry per (token URL, tenant, client ID, scope), refreshed ahead of
//! expiry, never serving an expired token, with one request in flight per entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use super::client::{request_token, AccessToken, Resource};
use super::error::TokenError;
use crate::plan::App;
use crate::reasons::CommonReason;

/// What identifies a token: apps with the same endpoint, tenant, client ID, scope and
/// credential share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    pub token_url: String,
    pub tenant: String,
    pub client_id: String,
    pub scope: String,
    /// SHA-256 of the credential (see `Credential::fingerprint`), never the credential itself.
    pub credential: [u8; 32],
}

impl TokenKey {
    pub fn new(app: &App, resource: Resource) -> Self {
        Self {
            token_url: app.token_url(),
            tenant: app.tenant.clone(),
            client_id: app.client_id.clone(),
            scope: resource.scope(app),
            credential: app.credential.fingerprint(),
        }
    }
}

/// After a failed request, readers get the same error for this long instead of asking again,
/// so a broken endpoint sees one request per app per backoff, not one per check.
const FAILURE_BACKOFF: Duration = Duration::from_secs(30);
/// A `Retry-After` longer than this is not honoured for cache readers (a day-long backoff would
/// hide a recovered endpoint); the token check itself still runs on its schedule.
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(300);

/// Refresh this long before expiry: a tenth of the lifetime, at most five minutes.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).min(Duration::from_secs(300))
}

type TokenResult = Result<AccessToken, TokenError>;
/// A refresh in flight: a detached task whose result every waiter shares.
type Inflight = Shared<BoxFuture<'static, TokenResult>>;

#[derive(Default)]
struct Slot {
    token: Option<AccessToken>,
    failure: Option<(Instant, TokenError)>,
    inflight: Option<Inflight>,
}

impl Slot {
    /// Takes a request's result. The token requested last wins, whatever its lifetime: Entra ID
    /// picks lifetimes at random (60 to 90 minutes), so keeping the longest-lived token could
    /// keep the `roles` of before a consent change for an hour and a half. A refresh and the
    /// token check may finish in either order, so the request start decides, not the arrival.
    /// A failure starts the backoff.
    fn store(&mut self, r: &TokenResult) {
        match r {
            Ok(t) => {
                if self
                    .token
                    .as_ref()
                    .is_none_or(|old| old.requested_at <= t.requested_at)
                {
                    self.token = Some(t.clone());
                }
                self.failure = None;
            }
            Err(e) => self.failure = Some((Instant::now(), e.clone())),
        }
    }

    /// The cached token while it has not expired (it may be inside its refresh margin).
    fn unexpired(&self, now: Instant) -> Option<AccessToken> {
        self.token.as_ref().filter(|t| now < t.expires_at).cloned()
    }
}

struct Entry {
    slot: Mutex<Slot>,
    app_name: String,
    resource: Resource,
    requests_ok: AtomicU64,
    requests_failed: AtomicU64,
}

impl Entry {
    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().expect("token cache slot lock")
    }
}

/// Counters of one cache entry, for the metrics module.
#[derive(Debug, Clone)]
pub struct EntryStats {
    pub app: String,
    pub resource: Resource,
    pub requests_ok: u64,
    pub requests_failed: u64,
}

/// Tokens shared by every check that uses the same app.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<TokenKey, Arc<Entry>>>,
    /// Request counts of entries a reload dropped (a rotated secret, a removed app), by app
    /// name and resource, so that the counters never go down; removed apps under "".
    retired: Mutex<HashMap<(String, Resource), (u64, u64)>>,
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&self, app: &App, resource: Resource) -> Arc<Entry> {
        let key = TokenKey::new(app, resource);
        let mut map = self.entries.lock().expect("token cache lock");
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(Entry {
                    slot: Mutex::new(Slot::default()),
                    app_name: app.name.clone(),
                    resource,
                    requests_ok: AtomicU64::new(0),
                    requests_failed: AtomicU64::new(0),
                })
            })
            .clone()
    }

    async fn request(entry: &Entry, app: &App, resource: Resource) -> TokenResult {
        let r = request_token(
            app,
            &app.net.http,
            &resource.scope(app),
            app.token_check.timeout,
        )
        .await;
        match &r {
            Ok(_) => entry.requests_ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => entry.requests_failed.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    /// Starts a refresh as its own task: a caller that gives up (its check timed out) does not
    /// cancel it, so a slow endpoint still fills the cache for the next caller.
    fn spawn_refresh(entry: Arc<Entry>, app: Arc<App>, resource: Resource) -> Inflight {
        let task = tokio::spawn(async move {
            let r = Self::request(&entry, &app, resource).await;
            let mut slot = entry.slot();
            slot.inflight = None;
            slot.store(&r);
            r
        });
        async move {
            task.await.unwrap_or_else(|_| {
                Err(TokenError::new(
                    CommonReason::InternalError,
                    "the token request task failed",
                ))
            })
        }
        .boxed()
        .shared()
    }

    /// A valid token for the app: the cached one while it is outside its refresh margin,
    /// otherwise a new one. Concurrent callers share the one request in flight.
    pub async fn get(&self, app: &Arc<App>, resource: Resource) -> TokenResult {
        let entry = self.entry(app, resource);
        let refresh = {
            let mut slot = entry.slot();
            let now = Instant::now();
            if let Some(t) = &slot.token {
                if now + refresh_margin(t.lifetime) < t.expires_at {
                    return Ok(t.clone());
                }
            }
            if let Some((at, err)) = &slot.failure {
                let wait = err
                    .retry_after
                    .unwrap_or(FAILURE_BACKOFF)
                    .clamp(FAILURE_BACKOFF, MAX_FAILURE_BACKOFF);
                if now < *at + wait {
                    // Inside the refresh margin an unexpired token is still better than an error.
                    return slot.unexpired(now).ok_or_else(|| err.clone());
                }
            }
            match &slot.inflight {
                Some(f) => f.clone(),
                None => {
                    let f = Self::spawn_refresh(entry.clone(), app.clone(), resource);
                    slot.inflight = Some(f.clone());
                    f
                }
            }
        };
        match refresh.await {
            Ok(t) => Ok(t),
            // Never an expired token, but an unexpired one rather than an error.
            Err(e) => entry.slot().unexpired(Instant::now()).ok_or(e),
        }
    }

    /// Drops the cached token if it is still `rejected` (a resource answered 401 to it: revoked,
    /// or signed before a key rollover), so that the next reader gets a new one. A newer token
    /// stored meanwhile stays.
    pub fn invalidate(&self, app: &App, resource: Resource, rejected: &AccessToken) {
        let entry = self.entry(app, resource);
        let mut slot = entry.slot();
        if slot
            .token
            .as_ref()
            .is_some_and(|t| t.requested_at == rejected.requested_at)
        {
            slot.token = None;
        }
    }

    /// Always asks the endpoint (the token check measures exactly that); a new token refills the cache.
    pub async fn fetch(&self, app: &Arc<App>, resource: Resource) -> TokenResult {
        let entry = self.entry(app, resource);
        let r = Self::request(&entry, app, resource).await;
        entry.slot().store(&r);
        r
    }

    /// The request counters summed by resource alone (app ""), as [`TokenCache::stats`] without
    /// the per-app sums: what `/metrics` needs without `metrics.detail`. At 10,000 apps the
    /// per-app sums cost a scrape 20,000 name copies and ordered inserts under the cache lock.
    pub fn totals(&self) -> Vec<EntryStats> {
        self.sums(false)
    }

    /// Request counts by app and resource (entries of apps no longer configured summed under
    /// the app name ""), sorted.
    pub fn stats(&self) -> Vec<EntryStats> {
        self.sums(true)
    }

    /// The request counters of retired and live entries, summed by app and resource, or by
    /// resource alone (every app named "", which allocates nothing).
    fn sums(&self, per_app: bool) -> Vec<EntryStats> {
        let app = |name: &str| {
            if per_app {
                name.to_string()
            } else {
                String::new()
            }
        };
        let mut sums: BTreeMap<(String, Resource), (u64, u64)> = BTreeMap::new();
        for ((name, resource), (ok, failed)) in
            self.retired.lock().expect("token cache lock").iter()
        {
            let s = sums.entry((app(name), *resource)).or_default();
            s.0 += ok;
            s.1 += failed;
        }
        for e in self.entries.lock().expect("token cache lock").values() {
            let s = sums.entry((app(&e.app_name), e.resource)).or_default();
            s.0 += e.requests_ok.load(Ordering::Relaxed);
            s.1 += e.requests_failed.load(Ordering::Relaxed);
        }
        sums.into_iter()
            .map(|((app, resource), (ok, failed))| EntryStats {
                app,
                resource,
                requests_ok: ok,
                requests_failed: failed,
            })
            .collect()
    }

    /// Drops the entries no app of `plan` uses (after a reload: a rotated secret, a removed app,
    /// another tenant), keeping their request counts. Entries still in use keep their token.
    pub fn retain(&self, plan: &crate::plan::Plan) {
        let mut keep = std::collections::HashSet::new();
        let names: std::collections::HashSet<&str> =
            plan.apps.iter().map(|a| a.name.as_str()).collect();
        for app in &plan.apps {
            keep.insert(TokenKey::new(app, Resource::Exchange));
            keep.insert(TokenKey::new(&app.graph_reader_or_self(), Resource::Graph));
        }
        let mut map = self.entries.lock().expect("token cache lock");
        let mut retired = self.retired.lock().expect("token cache lock");
        map.retain(|k, e| {
            if keep.contains(k) {
                return true;
            }
            let app = if names.contains(e.app_name.as_str()) {
                e.app_name.clone()
            } else {
                String::new()
            };
            let s = retired.entry((app, e.resource)).or_default();
            s.0 += e.requests_ok.load(Ordering::Relaxed);
            s.1 += e.requests_failed.load(Ordering::Relaxed);
            false
        });
        // Counts kept for an app that has since left go to "" as well.
        let gone: Vec<(String, Resource)> = retired
            .keys()
            .filter(|(a, _)| !a.is_empty() && !names.contains(a.as_str()))
            .cloned()
            .collect();
        for k in gone {
            if let Some(v) = retired.remove(&k) {
                let s = retired.entry((String::new(), k.1)).or_default();
                s.0 += v.0;
                s.1 += v.1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client_id: &str, scope: &str) -> TokenKey {
        TokenKey {
            token_url: "https://login.example/t/oauth2/v2.0/token".into(),
            tenant: "t".into(),
            client_id: client_id.into(),
            scope: scope.into(),
            credential: [0; 32],
        }
    }

    #[test]
    fn totals_are_the_per_app_counts_summed_by_resource() {
        let cache = TokenCache::new();
        let entries = [
            ("a", Resource::Exchange, 3, 1),
            ("a", Resource::Graph, 2, 0),
            ("b", Resource::Exchange, 5, 4),
            ("c", Resource::Graph, 0, 7),
        ];
        for (i, (app, resource, ok, failed)) in entries.into_iter().enumerate() {
            cache.entries.lock().unwrap().insert(
                key(&format!("client-{i}"), resource.as_str()),
                Arc::new(Entry {
                    slot: Mutex::default(),
                    app_name: app.into(),
                    resource,
                    requests_ok: AtomicU64::new(ok),
                    requests_failed: AtomicU64::new(failed),
                }),
            );
        }
        cache
            .retired
            .lock()
            .unwrap()
            .insert((String::new(), Resource::Exchange), (10, 20));
        let mut want: BTreeMap<Resource, (u64, u64)> = BTreeMap::new();
        for s in cache.stats() {
            let w = want.entry(s.resource).or_default();
            w.0 += s.requests_ok;
            w.1 += s.requests_failed;
        }
        assert_eq!(
            want,
            BTreeMap::from([(Resource::Exchange, (18, 25)), (Resource::Graph, (2, 7))])
        );
        let got: BTreeMap<Resource, (u64, u64)> = cache
            .totals()
            .into_iter()
            .map(|s| {
                assert_eq!(s.app, "", "totals name no app");
                (s.resource, (s.requests_ok, s.requests_failed))
            })
            .collect();
        assert_eq!(got, want);
    }
}
