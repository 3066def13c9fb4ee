//! The open connections of the endpoint: at most `--web.max-connections` at once, and when they
//! are all open a new one takes the place of the connection idle longest (one that has sent no
//! complete request yet, or sits between requests), so clients that connect and say nothing, or
//! say it slowly, can never keep a scrape out. A connection is busy only while a request it sent
//! is being answered, and a busy one is never closed to make room.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The table of open connections.
pub struct Connections {
    cap: usize,
    inner: Mutex<Inner>,
    /// A connection closed, or one became idle: an admission waiting for room may go on.
    room: Notify,
}

#[derive(Default)]
struct Inner {
    next: u64,
    open: HashMap<u64, Conn>,
    /// Idle connections by the time they became idle, the longest idle first.
    idle: BTreeSet<(Instant, u64)>,
}

struct Conn {
    /// Cancelled when the connection is closed to make room.
    evict: CancellationToken,
    /// Since when it idles; `None` while a request is answered.
    idle_since: Option<Instant>,
}

/// One admitted connection: its place in the table, given back when it is dropped.
pub struct Admitted {
    table: Arc<Connections>,
    id: u64,
    /// Fires when the table closes this connection to make room for a new one.
    pub evicted: CancellationToken,
}

impl Connections {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
            room: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    /// Closes the connection idle longest, if any; whether one was.
    pub fn evict_idlest(&self) -> bool {
        let mut inner = self.lock();
        Self::evict_locked(&mut inner)
    }

    fn evict_locked(inner: &mut Inner) -> bool {
        let Some((since, id)) = inner.idle.pop_first() else {
            return false;
        };
        if let Some(c) = inner.open.remove(&id) {
            debug_assert_eq!(c.idle_since, Some(since));
            c.evict.cancel();
        }
        true
    }

    /// Admits a new connection (idle until it sends a request). With every place taken, the
    /// connection idle longest is closed for it; when every open connection is busy answering a
    /// request, this waits until one is not.
    pub async fn admit(self: &Arc<Self>) -> Admitted {
        loop {
            let room = self.room.notified();
            {
                let mut inner = self.lock();
                if inner.open.len() >= self.cap {
                    Self::evict_locked(&mut inner);
                }
                if inner.open.len() < self.cap {
                    let id = inner.next;
                    inner.next += 1;
                    let now = Instant::now();
                    let evict = CancellationToken::new();
                    inner.open.insert(
                        id,
                        Conn {
                            evict: evict.clone(),
                            idle_since: Some(now),
                        },
                    );
                    inner.idle.insert((now, id));
                    return Admitted {
                        table: self.clone(),
                        id,
                        evicted: evict,
                    };
                }
            }
            room.await;
        }
    }
}

impl Admitted {
    /// A request arrived whole: the connection is busy until [`Admitted::idle`].
    pub fn busy(&self) {
        let mut inner = self.table.lock();
        if let Some(since) = inner
            .open
            .get_mut(&self.id)
            .and_then(|c| c.idle_since.take())
        {
            inner.idle.remove(&(since, self.id));
        }
    }

    /// The answer is out: the connection idles (and may be closed to make room).
    pub fn idle(&self) {
        let mut inner = self.table.lock();
        let now = Instant::now();
        if let Some(c) = inner.open.get_mut(&self.id) {
            if c.idle_since.is_none() {
                c.idle_since = Some(now);
                inner.idle.insert((now, self.id));
            }
        }
        drop(inner);
        self.table.room.notify_waiters();
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        if let Some(c) = inner.open.remove(&self.id) {
            if let Some(since) = c.idle_since {
                inner.idle.remove(&(since, self.id));
            }
        }
        drop(inner);
        self.table.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_table_closes_the_longest_idle_never_a_busy_one() {
        let table = Connections::new(3);
        let a = table.admit().await;
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        let b = table.admit().await;
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        let c = table.admit().await;
        // `a` is answering a request: `b` is the idle one to go.
        a.busy();
        let d = table.admit().await;
        assert!(!a.evicted.is_cancelled());
        assert!(b.evicted.is_cancelled());
        assert_eq!(table.open(), 3);
        // Once every open connection is busy, a new one waits for room.
        c.busy();
        d.busy();
        let waiting = tokio::spawn({
            let table = table.clone();
            async move { table.admit().await }
        });
        tokio::time::advance(std::time::Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        c.idle();
        let e = waiting.await.unwrap();
        assert!(c.evicted.is_cancelled());
        assert!(e.id > d.id);
        drop((a, b, c, d));
        assert_eq!(table.open(), 1);
    }
}
