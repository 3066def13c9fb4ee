//! Message trace's budget per tenant (100 requests per 5 minutes, shared by the reads and the
//! canary's look-ups) and where each tenant's next read starts.

use super::*;

/// Graph's message trace takes at most 100 requests per 5 minutes per tenant.
pub const BUDGET_REQUESTS: usize = 100;
pub const BUDGET_WINDOW: Duration = Duration::from_secs(300);
/// Where the next read starts, per tenant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    pub(super) next_from: DateTime<Utc>,
    /// The widest window the next read takes: halved when the budget ran out, doubled back.
    pub(super) span: chrono::Duration,
}

#[derive(Debug, Default)]
pub(super) struct Budget {
    pub(super) sent: VecDeque<Instant>,
    /// Graph asked for quiet (Retry-After) until then.
    pub(super) hold: Option<Instant>,
}

/// What the traffic check and the canary's look-ups share across runs, by tenant (lower case):
/// the request budget of message trace, and where each tenant's next read starts.
#[derive(Default)]
pub struct TraceLedger {
    pub(super) budget: Mutex<HashMap<String, Budget>>,
    pub(super) cursors: Mutex<HashMap<String, Cursor>>,
}

impl TraceLedger {
    /// Takes one request of the tenant's budget: `Err(until)` when 100 were made in the last
    /// 5 minutes or Graph asked to wait (until when one may be made).
    pub fn take(&self, tenant: &str) -> Result<(), Instant> {
        let now = Instant::now();
        let mut map = self.budget.lock().expect("trace ledger lock");
        let b = map.entry(tenant.to_ascii_lowercase()).or_default();
        if let Some(h) = b.hold.filter(|h| *h > now) {
            return Err(h);
        }
        while b.sent.front().is_some_and(|t| now - *t >= BUDGET_WINDOW) {
            b.sent.pop_front();
        }
        if b.sent.len() >= BUDGET_REQUESTS {
            return Err(b.sent[0] + BUDGET_WINDOW);
        }
        b.sent.push_back(now);
        Ok(())
    }

    /// Graph asked for quiet: no request for the tenant until then.
    pub fn hold(&self, tenant: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut map = self.budget.lock().expect("trace ledger lock");
        let b = map.entry(tenant.to_ascii_lowercase()).or_default();
        b.hold = Some(b.hold.map_or(until, |h| h.max(until)));
    }

    /// Requests made for the tenant in the last 5 minutes.
    pub fn used(&self, tenant: &str) -> usize {
        let now = Instant::now();
        self.budget
            .lock()
            .expect("trace ledger lock")
            .get(&tenant.to_ascii_lowercase())
            .map_or(0, |b| {
                b.sent.iter().filter(|t| now - **t < BUDGET_WINDOW).count()
            })
    }

    pub(super) fn cursor(&self, tenant: &str) -> Option<Cursor> {
        self.cursors
            .lock()
            .expect("trace ledger lock")
            .get(&tenant.to_ascii_lowercase())
            .copied()
    }

    pub(super) fn set_cursor(&self, tenant: &str, c: Cursor) {
        self.cursors
            .lock()
            .expect("trace ledger lock")
            .insert(tenant.to_ascii_lowercase(), c);
    }

    /// Forgets the tenants no longer read (after a reload).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.cursors
            .lock()
            .expect("trace ledger lock")
            .retain(|t, _| keep(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_a_hundred_requests_in_any_five_minutes() {
        let l = TraceLedger::default();
        for _ in 0..BUDGET_REQUESTS {
            assert!(l.take("Contoso.onmicrosoft.com").is_ok());
        }
        let until = l.take("contoso.onmicrosoft.com").unwrap_err();
        assert_eq!(until - Instant::now(), BUDGET_WINDOW);
        assert!(l.take("fabrikam.onmicrosoft.com").is_ok(), "per tenant");
        tokio::time::advance(BUDGET_WINDOW).await;
        assert!(l.take("contoso.onmicrosoft.com").is_ok());
        assert_eq!(l.used("contoso.onmicrosoft.com"), 1);
        // Graph's Retry-After holds the tenant.
        l.hold("contoso.onmicrosoft.com", Duration::from_secs(30));
        assert!(l.take("contoso.onmicrosoft.com").is_err());
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(l.take("contoso.onmicrosoft.com").is_ok());
    }
}
