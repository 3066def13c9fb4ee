//! `/status` and `/`: the query (`app`, `severity`, `offset`, `limit`) read into a page of the
//! status document, and each page rendered at most once a second, one render at a time, its
//! bytes shared by every request that asks for it meanwhile (as `/metrics` shares its page).
//! Four clients asking at once for the 10,000-mailbox fleet's status cost one page of at most
//! 500 targets, not four documents of the whole fleet (26.7 MB each).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Shared;
use crate::diagnosis::Severity;
use crate::plan::Plan;
use crate::status::Query;

/// How long a rendered page serves further requests.
const REUSE: Duration = Duration::from_secs(1);
/// Rendered pages kept at once (distinct queries within a second).
const KEPT: usize = 8;

/// What a page is rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `/status`.
    Json,
    /// `/`.
    Html,
}

struct Rendered {
    format: Format,
    query: Query,
    at: Instant,
    body: Bytes,
}

/// The pages rendered within the last second.
#[derive(Default)]
pub struct PageStore {
    pages: VecDeque<Rendered>,
}

impl PageStore {
    /// Forgets every page (a reload changed what they would say).
    pub fn clear(&mut self) {
        self.pages.clear();
    }
}

/// Reads a page's query: `app=NAME` (one app and its mailboxes), `severity=critical,warning`
/// (any of `ok`, `pending`, `warning`, `critical`), `offset=N`, `limit=N` (at most 500).
pub fn parse_query(query: Option<&str>, plan: &Plan) -> Result<Query, String> {
    let mut q = Query::default();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "app" if !v.is_empty() => {
                if plan.apps.iter().all(|a| a.name != v) {
                    let shown: String = v.chars().take(64).filter(|c| !c.is_control()).collect();
                    return Err(format!("unknown app {shown:?}"));
                }
                q.app = Some(v.into_owned());
            }
            "severity" => {
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let severity = Severity::ALL
                        .into_iter()
                        .find(|x| x.as_str() == s)
                        .ok_or_else(|| {
                            "severity: expected ok, pending, warning or critical (comma-separated)"
                                .to_string()
                        })?;
                    if !q.severities.contains(&severity) {
                        q.severities.push(severity);
                    }
                }
                q.severities.sort();
            }
            "offset" | "limit" => {
                let n: usize = v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{k}: expected a whole number"))?;
                if k == "offset" {
                    q.offset = n;
                } else {
                    q.limit = n;
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

/// The page for `query` as `format`: rendered now (off the async workers), or the one rendered
/// for the same query within the last second. `None` when rendering failed.
pub async fn page(shared: &Arc<Shared>, format: Format, query: Query) -> Option<Bytes> {
    let mut store = shared.pages.lock().await;
    store.pages.retain(|p| p.at.elapsed() <= REUSE);
    if let Some(p) = store
        .pages
        .iter()
        .find(|p| p.format == format && p.query == query)
    {
        return Some(p.body.clone());
    }
    let s = shared.clone();
    let q = query.clone();
    let body = tokio::task::spawn_blocking(move || {
        let plan = s.plan();
        let doc = crate::status::page(&plan, &s.state, &q);
        match format {
            Format::Json => serde_json::to_vec_pretty(&doc).ok(),
            Format::Html => Some(super::page::render(&doc, &s.telemetry_path).into_bytes()),
        }
    })
    .await
    .ok()
    .flatten()
    .map(Bytes::from)?;
    if store.pages.len() >= KEPT {
        store.pages.pop_front();
    }
    let at = Instant::now();
    store.pages.push_back(Rendered {
        format,
        query,
        at,
        body: body.clone(),
    });
    drop(store);
    // Once it can serve no more requests the page goes: between requests the agent holds no
    // copy of it.
    let s = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(REUSE).await;
        s.pages.lock().await.pages.retain(|p| p.at != at);
    });
    Some(body)
}
