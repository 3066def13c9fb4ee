//! How many check runs `/probe` may start per second: one token bucket for all clients and one
//! per client address, each refilled at its rate and holding a burst of twice as many. A probe
//! answered from a recent result costs nothing; one that would run a check beyond either rate
//! gets 429 with the wait in `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Client buckets kept before full ones (clients that have not probed for a while) are dropped.
const MAX_CLIENTS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst(rate),
            at: now,
        }
    }

    /// The bucket refilled up to `now`.
    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst(rate));
        self.at = now;
    }

    /// How long until it holds a whole token (zero: it does).
    fn wait(&self, rate: f64) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate)
        }
    }
}

fn burst(rate: f64) -> f64 {
    (2.0 * rate).max(1.0)
}

/// The buckets of `/probe`.
pub struct RateLimit {
    inner: Mutex<Inner>,
}

struct Inner {
    global: Bucket,
    clients: HashMap<IpAddr, Bucket>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                global: Bucket {
                    tokens: f64::INFINITY,
                    at: Instant::now(),
                },
                clients: HashMap::new(),
            }),
        }
    }
}

impl RateLimit {
    /// Takes one run for `client` under the rates (runs per second; zero: no limit), or says how
    /// long to wait. A refused client takes nothing from the global bucket.
    pub fn take(&self, client: IpAddr, rate: f64, client_rate: f64) -> Result<(), Duration> {
        let client = client.to_canonical();
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("rate limit lock");
        if inner.clients.len() > MAX_CLIENTS {
            inner.clients.retain(|_, b| {
                let mut b = *b;
                b.refill(client_rate, now);
                b.tokens < burst(client_rate)
            });
        }
        let mut global = inner.global;
        global.refill(rate, now);
        let mut own = *inner
            .clients
            .get(&client)
            .unwrap_or(&Bucket::full(client_rate, now));
        own.refill(client_rate, now);
        let wait = [(rate, &global), (client_rate, &own)]
            .iter()
            .filter(|(r, _)| *r > 0.0)
            .map(|(r, b)| b.wait(*r))
            .max()
            .unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            inner.global = global;
            inner.clients.insert(client, own);
            return Err(wait);
        }
        if rate > 0.0 {
            global.tokens -= 1.0;
        }
        if client_rate > 0.0 {
            own.tokens -= 1.0;
        }
        inner.global = global;
        inner.clients.insert(client, own);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_gets_its_burst_then_its_rate_and_others_the_rest_of_the_global_one() {
        let limit = RateLimit::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        // Client rate 1/s: a burst of 2, then one a second.
        assert!(limit.take(a, 2.0, 1.0).is_ok());
        assert!(limit.take(a, 2.0, 1.0).is_ok());
        let wait = limit.take(a, 2.0, 1.0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Another client has its own bucket, within the global one (burst 4: 2 left).
        assert!(limit.take(b, 2.0, 1.0).is_ok());
        assert!(limit.take(b, 2.0, 1.0).is_ok());
        assert!(limit.take(b, 2.0, 1.0).is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limit.take(a, 2.0, 1.0).is_ok());
        // No limit at all.
        for _ in 0..100 {
            assert!(limit.take(a, 0.0, 0.0).is_ok());
        }
    }
}
