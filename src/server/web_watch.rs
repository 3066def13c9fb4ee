//! The web configuration follows its files: each incoming connection may look (at most once a
//! second, off the async workers) whether a file changed, and a valid change applies to the next
//! connections (a renewed certificate serves within a second of being written, as
//! exporter-toolkit re-reads it per connection). An invalid change is logged once and the
//! previous configuration stays.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::web_config::WebConfig;
use super::Shared;

/// How often the files are looked at, at most.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Where the web configuration comes from, and when it was last looked at.
pub struct WebWatch {
    file: PathBuf,
    /// Milliseconds since the watch began, of the last look.
    last_look: AtomicU64,
    looking: AtomicBool,
    began: std::time::Instant,
    /// The files' times when a change was found invalid: the same change is not tried again.
    refused: Mutex<Option<Vec<Option<SystemTime>>>>,
}

impl WebWatch {
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            last_look: AtomicU64::new(0),
            looking: AtomicBool::new(false),
            began: std::time::Instant::now(),
            refused: Mutex::new(None),
        }
    }
}

/// Looks for a change of the web configuration's files, unless it was looked for within the
/// last second; returns at once (the look runs on the blocking pool).
pub fn look(shared: &Arc<Shared>) {
    let Some(watch) = shared.web_watch.as_ref() else {
        return;
    };
    let now = watch.began.elapsed().as_millis() as u64;
    let last = watch.last_look.load(Ordering::Relaxed);
    if now < last + LOOK_EVERY.as_millis() as u64
        || watch
            .last_look
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        || watch.looking.swap(true, Ordering::Acquire)
    {
        return;
    }
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        reload_if_changed(&shared);
        if let Some(w) = shared.web_watch.as_ref() {
            w.looking.store(false, Ordering::Release);
        }
    });
}

fn reload_if_changed(shared: &Shared) {
    let Some(watch) = shared.web_watch.as_ref() else {
        return;
    };
    let current = shared.web();
    if !current.changed() {
        return;
    }
    let stamps = current.stamps_now();
    let mut refused = watch.refused.lock().expect("web watch lock");
    if refused.as_ref() == Some(&stamps) {
        return;
    }
    match WebConfig::load(&watch.file) {
        Ok(w) => {
            *shared.web.write().expect("web config lock") = Arc::new(w);
            *refused = None;
            tracing::info!(file = %watch.file.display(), "web configuration reloaded");
        }
        Err(e) => {
            *refused = Some(stamps);
            tracing::error!(error = %e, "invalid web configuration: the previous one stays");
        }
    }
}
