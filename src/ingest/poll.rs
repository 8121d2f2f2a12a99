//! Pulled sources: a background scheduler fetches each source with a `url` every
//! `poll_interval_s`, politely, and applies what it gets as a snapshot.
//!
//! Rules kept here:
//! - one source's failure never blocks another: each fetch runs on its own task, at most
//!   [`MAX_CONCURRENT_FETCHES`] at once, each bounded by timeouts;
//! - a failed fetch keeps the previous snapshot, records `last_error`, and is retried with
//!   exponential backoff (doubling from the poll interval, capped at 1 h) and ±20 % jitter;
//! - SMART Scheduling Links politeness: never more than once a minute per source
//!   (`poll_interval_s` ≥ 60), `Cache-Control: max-age` of the manifest defers the next fetch,
//!   `If-None-Match`/`If-Modified-Since` are sent and a `304` confirms the data fresh. `_since`
//!   (incremental) is not used: a source's slots are replaced as a whole snapshot, which needs
//!   the full data set each time;
//! - for `smart-sl` the URL is the `$bulk-publish` manifest; its Location, Schedule,
//!   PractitionerRole, Slot (and any other) files are fetched and read as one NDJSON stream. For `sas-fhir`
//!   and `csv` the URL returns the feed itself.

use super::FeedFormat;
use crate::http::AppState;
use crate::store::sources::SourceRow;
use actix_web::web;
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fetches running at once across all sources.
pub const MAX_CONCURRENT_FETCHES: usize = 4;
/// Longest wait after repeated failures.
pub const MAX_BACKOFF_S: i64 = 3600;

/// Per-source scheduling state (in memory: a restart polls every source at once).
#[derive(Debug, Clone, Copy, Default)]
struct Due {
    next_at: i64,
    failures: u32,
    running: bool,
}

/// The poller: its HTTP client and the schedule.
pub struct Poller {
    client: reqwest::Client,
    due: Mutex<HashMap<i64, Due>>,
    permits: tokio::sync::Semaphore,
}

impl Default for Poller {
    fn default() -> Self {
        Self {
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(120))
                .user_agent(concat!(
                    "sasnp/",
                    env!("CARGO_PKG_VERSION"),
                    " (SAS Pays de la Loire)"
                ))
                .build()
                .expect("HTTP client"),
            due: Mutex::new(HashMap::new()),
            permits: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("manifest: {0}")]
    Manifest(super::FeedError),
    #[error(transparent)]
    Apply(#[from] super::apply::ApplyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl FetchError {
    /// The `kind` label of `sasnp_feed_fetch_errors_total` (`None`: not a fetch failure).
    pub fn metric_kind(&self) -> Option<&'static str> {
        match self {
            Self::Http { source, .. } if source.is_timeout() => Some("timeout"),
            Self::Http { source, .. } if source.is_connect() => Some("connect"),
            Self::Http { .. } => Some("body"),
            Self::Status { .. } => Some("http_status"),
            Self::Manifest(_) => Some("manifest"),
            Self::Apply(_) | Self::Store(_) => None,
        }
    }
}

/// What one poll of one source did.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    /// A new snapshot was applied.
    Applied,
    /// `304 Not Modified`: the data is confirmed fresh.
    NotModified,
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Option<i64> {
    let cc = headers.get(reqwest::header::CACHE_CONTROL)?.to_str().ok()?;
    cc.split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.trim().parse().ok())
}

fn header(
    headers: &reqwest::header::HeaderMap,
    name: reqwest::header::HeaderName,
) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Poller {
    async fn get(&self, url: &str) -> Result<reqwest::Response, FetchError> {
        let res = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::Http {
                url: url.into(),
                source: e,
            })?;
        if !res.status().is_success() {
            return Err(FetchError::Status {
                url: url.into(),
                status: res.status().as_u16(),
            });
        }
        Ok(res)
    }

    /// Fetches and applies one source now. Returns what happened and the server's `max-age`.
    pub async fn poll_source(
        &self,
        state: &web::Data<AppState>,
        source: &SourceRow,
    ) -> Result<(Polled, Option<i64>), FetchError> {
        let url = source.url.clone().unwrap_or_default();
        let format: FeedFormat = source.format.parse().unwrap_or(FeedFormat::Csv);
        let mut req = self.client.get(&url);
        if let Some(etag) = &source.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &source.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
        let res = req.send().await.map_err(|e| FetchError::Http {
            url: url.clone(),
            source: e,
        })?;
        let age = max_age(res.headers());
        let id = source.id;
        let now = state.clock.now().timestamp();
        if res.status() == reqwest::StatusCode::NOT_MODIFIED {
            state
                .db
                .run(move |c| crate::store::sources::record_unchanged(c, id, now))
                .await?;
            if let Some(meta) = state.index.load().sources.get(&id) {
                meta.last_success_at
                    .store(now, std::sync::atomic::Ordering::Relaxed);
            }
            return Ok((Polled::NotModified, age));
        }
        if !res.status().is_success() {
            return Err(FetchError::Status {
                url,
                status: res.status().as_u16(),
            });
        }
        let (etag, last_modified) = (
            header(res.headers(), reqwest::header::ETAG),
            header(res.headers(), reqwest::header::LAST_MODIFIED),
        );
        let body = res.bytes().await.map_err(|e| FetchError::Http {
            url: url.clone(),
            source: e,
        })?;
        let body =
            match format {
                FeedFormat::SmartSl
                    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
                        && !looks_like_ndjson(&body) =>
                {
                    let manifest =
                        super::smart::parse_manifest(&body).map_err(FetchError::Manifest)?;
                    let mut all = Vec::new();
                    // Every output the manifest lists (Location, Schedule, Slot,
                    // PractitionerRole, and the SAS resources a publisher may add):
                    // references resolve once everything is read.
                    {
                        for file in manifest.outputs.iter().map(|o| o.url.as_str()) {
                            let part = self.get(file).await?.bytes().await.map_err(|e| {
                                FetchError::Http {
                                    url: file.into(),
                                    source: e,
                                }
                            })?;
                            all.extend_from_slice(&part);
                            if !all.ends_with(b"\n") {
                                all.push(b'\n');
                            }
                        }
                    }
                    web::Bytes::from(all)
                }
                _ => body,
            };
        super::apply::apply(state, source, format, body).await?;
        state
            .db
            .run(move |c| {
                crate::store::sources::record_validators(
                    c,
                    id,
                    etag.as_deref(),
                    last_modified.as_deref(),
                )
            })
            .await?;
        Ok((Polled::Applied, age))
    }

    /// Polls every pulled source that is due at the clock's now, each on its own task; returns
    /// the ids started.
    pub async fn poll_due(
        self: &Arc<Self>,
        state: &web::Data<AppState>,
    ) -> Result<Vec<i64>, crate::store::StoreError> {
        let now = state.clock.now().timestamp();
        let sources = state
            .db
            .run(|c| crate::store::sources::list(c, None))
            .await?;
        let mut started = Vec::new();
        for s in sources.into_iter().filter(|s| s.url.is_some()) {
            {
                let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
                let d = due.entry(s.id).or_default();
                if d.running || d.next_at > now {
                    continue;
                }
                d.running = true;
            }
            started.push(s.id);
            let (me, state) = (self.clone(), state.clone());
            tokio::spawn(async move {
                let _permit = me.permits.acquire().await;
                let result = me.poll_source(&state, &s).await;
                me.finish(&state, &s, result).await;
            });
        }
        Ok(started)
    }

    async fn finish(
        &self,
        state: &web::Data<AppState>,
        s: &SourceRow,
        result: Result<(Polled, Option<i64>), FetchError>,
    ) {
        let now = state.clock.now().timestamp();
        let interval = s.poll_interval_s.unwrap_or(300).max(60);
        let next = match &result {
            Ok((_, age)) => {
                self.update(s.id, |d| d.failures = 0);
                now + interval.max(age.unwrap_or(0))
            }
            Err(e) => {
                tracing::warn!(source = s.id, error = %e, "poll failed");
                if let Some(kind) = e.metric_kind() {
                    state.metrics.fetch_error(&s.cpts_id, kind);
                }
                if !matches!(e, FetchError::Apply(_)) {
                    // apply() already recorded feed errors; record transport/status errors here
                    let (id, msg) = (s.id, e.to_string());
                    let _ = state
                        .db
                        .run(move |c| crate::store::sources::record_failure(c, id, now, &msg, None))
                        .await;
                }
                let failures = self.update(s.id, |d| d.failures += 1);
                let backoff = interval
                    .saturating_mul(1 << failures.min(10))
                    .min(MAX_BACKOFF_S);
                let jitter = rand::rng().random_range(-0.2..=0.2) * backoff as f64;
                now + (backoff as f64 + jitter) as i64
            }
        };
        self.update(s.id, |d| {
            d.next_at = next;
            d.running = false;
        });
    }

    fn update(&self, id: i64, f: impl FnOnce(&mut Due)) -> u32 {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let d = due.entry(id).or_default();
        f(d);
        d.failures
    }

    /// When a source will next be fetched (epoch seconds), if scheduled.
    pub fn next_at(&self, id: i64) -> Option<i64> {
        self.due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|d| d.next_at)
    }

    /// Whether a fetch of this source is running.
    pub fn is_running(&self, id: i64) -> bool {
        self.due
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .is_some_and(|d| d.running)
    }
}

/// NDJSON (one resource per line) rather than a manifest object.
fn looks_like_ndjson(body: &[u8]) -> bool {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .nth(1)
        .is_some()
}

/// Starts the scheduler loop.
pub fn spawn(state: web::Data<AppState>, poller: Arc<Poller>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(state.settings.poll_tick_s.max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = poller.poll_due(&state).await {
                tracing::warn!(error = %e, "poll scheduler round failed");
            }
        }
    })
}
