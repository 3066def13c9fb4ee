//! SMTP sessions per mailbox: at most [`PER_MAILBOX`] at once, whoever opens them (the SMTP
//! check, the canary, a probe). Exchange Online allows 3 concurrent connections per mailbox and
//! refuses a fourth with `432 4.3.2`; the application that really sends mail needs the third.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Sessions of one mailbox open at once.
pub const PER_MAILBOX: usize = 2;

/// The sessions open per mailbox address (lower case).
#[derive(Default)]
pub struct Sessions {
    by_address: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A session's place: given back when dropped.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

impl Sessions {
    /// Waits for a place for a session of `address` until `deadline` (`None`: none came).
    pub async fn acquire(&self, address: &str, deadline: Instant) -> Option<Turn> {
        let semaphore = {
            let mut map = self.by_address.lock().expect("sessions lock");
            // Places nobody holds or waits for are dropped: the map stays the size of what is
            // in flight, not of the fleet.
            if map.len() > 64 {
                map.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < PER_MAILBOX);
            }
            map.entry(address.to_ascii_lowercase())
                .or_insert_with(|| Arc::new(Semaphore::new(PER_MAILBOX)))
                .clone()
        };
        match tokio::time::timeout_at(deadline, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Some(Turn { _permit: permit }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn two_sessions_per_mailbox_whatever_the_case_of_its_address() {
        let s = Sessions::default();
        let soon = || Instant::now() + Duration::from_millis(10);
        let a = s.acquire("Invoices@contoso.com", soon()).await;
        let b = s.acquire("invoices@contoso.com", soon()).await;
        assert!(a.is_some() && b.is_some());
        assert!(s.acquire("INVOICES@contoso.com", soon()).await.is_none());
        assert!(s.acquire("scans@contoso.com", soon()).await.is_some());
        drop(a);
        assert!(s.acquire("invoices@contoso.com", soon()).await.is_some());
    }
}
