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
//!   `If-None-Match`/`If-Modified-Since` are sent and a `304` confirms the data fresh;
//! - for `smart-sl` the URL is the `$bulk-publish` manifest; its Location, Schedule,
//!   PractitionerRole, Slot (and any other) files are fetched and read as one NDJSON stream. For `sas-fhir`
//!   and `csv` the URL returns the feed itself.
//!
//! `_since` (SMART SL incremental fetches). A source's slots are always replaced as a whole
//! snapshot, so changes are merged into the last full data set before they are applied:
//! - after a successful manifest pull, the poller keeps in memory the NDJSON lines of all its
//!   files keyed by (`resourceType`, `id`), and the manifest's `transactionTime`. The next poll
//!   asks the manifest with `_since=<transactionTime>`;
//! - **detection**: servers may ignore `_since`. The answer is taken as changes only when the
//!   manifest's `request` (its own URL) carries a `_since` no later than the one asked; with no
//!   `_since` there (or no readable `request`) the files are the full data set, as without
//!   `_since`. An echoed `_since` later than asked, or unreadable, fails the poll (changes may
//!   be missing). Limit: a server that honours `_since` without echoing it in `request` is read
//!   as publishing only its changes as a full set (the other slots are withdrawn until the next
//!   poll); one that ignores `_since` but echoes it is read as publishing changes (slots it
//!   dropped stay until the next full fetch);
//! - **merge**: a resource of the changes replaces the kept line of the same (`resourceType`,
//!   `id`), new ones are added; a Slot sent back `entered-in-error` is thereby removed by the
//!   parser's usual rule. The merged set is applied through the same full-snapshot path (one
//!   transaction, same report — its line numbers count lines of the merged stream);
//! - **full fetches** (no `_since`): the first poll after a start, any poll after a failed one
//!   (a failure forgets the kept set), and at least every [`FULL_REFRESH_S`]: resources a
//!   publisher deleted without an `entered-in-error` line vanish at the latest then. Applied
//!   changes clear the stored HTTP validators (those of the changes do not describe the full
//!   set, those of the last full set no longer describe what is held): until a full set is
//!   read again requests are unconditional, so a `304` cannot skip a full refresh. Each
//!   applied change set re-applies the whole merged set (it saves transfer, not ingest work);
//! - **memory**: a data set is kept only when each line is JSON with a `resourceType` and an
//!   `id`, no key repeats, and the lines weigh at most [`MAX_KEPT_BYTES`]; otherwise `_since`
//!   is not sent and every poll is full.

use super::FeedFormat;
use crate::http::AppState;
use crate::store::sources::SourceRow;
use actix_web::web;
use chrono::{DateTime, Utc};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fetches running at once across all sources.
pub const MAX_CONCURRENT_FETCHES: usize = 4;
/// Longest wait after repeated failures.
pub const MAX_BACKOFF_S: i64 = 3600;
/// Longest time between two full fetches (without `_since`) of a SMART SL source.
pub const FULL_REFRESH_S: i64 = 3600;
/// Most bytes of NDJSON lines kept per source to merge `_since` changes into (64 MiB).
pub const MAX_KEPT_BYTES: usize = 64 << 20;

/// Per-source scheduling state (in memory: a restart polls every source at once).
#[derive(Debug, Clone, Copy, Default)]
struct Due {
    next_at: i64,
    failures: u32,
    running: bool,
}

/// The last full data set of a SMART SL pull, kept to merge `_since` changes into.
struct Kept {
    /// The manifest URL it came from (another URL starts afresh).
    url: String,
    /// The manifest's `transactionTime`: the next poll asks for changes since then.
    transaction_time: DateTime<Utc>,
    /// When the last full fetch was applied (clock, epoch seconds).
    full_at: i64,
    lines: KeptLines,
}

/// NDJSON lines keyed by (`resourceType`, `id`), in the order first seen.
#[derive(Debug, Default)]
struct KeptLines {
    lines: Vec<Box<str>>,
    by_key: HashMap<(Box<str>, Box<str>), usize>,
    /// Lines of a change set without a key: applied as they are (the parser words the problem),
    /// never kept.
    unkeyed: Vec<Box<str>>,
    /// Approximate memory held.
    bytes: usize,
}

#[derive(serde::Deserialize)]
struct LineKey<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
}

/// Bookkeeping bytes counted per kept line beside its text and key.
const LINE_OVERHEAD: usize = 64;

impl KeptLines {
    /// The non-blank lines of an NDJSON body, without their line ends.
    fn lines_of(body: &[u8]) -> impl Iterator<Item = &[u8]> {
        let body = super::strip_bom(body);
        body.split(|b| *b == b'\n')
            .map(<[u8]>::trim_ascii)
            .filter(|l| !l.is_empty())
    }

    fn key(line: &str) -> Option<(Box<str>, Box<str>)> {
        let k: LineKey<'_> = serde_json::from_str(line).ok()?;
        Some((k.resource_type.into(), k.id.into()))
    }

    /// Puts `line` under its key (replacing the line kept there); `false` when it has no key.
    fn upsert(&mut self, line: &str) -> bool {
        let Some(key) = Self::key(line) else {
            self.unkeyed.push(line.into());
            return false;
        };
        self.bytes += line.len() + LINE_OVERHEAD;
        match self.by_key.get(&key) {
            Some(&i) => {
                self.bytes -= self.lines[i].len() + LINE_OVERHEAD;
                self.lines[i] = line.into();
            }
            None => {
                self.bytes += key.0.len() + key.1.len();
                self.by_key.insert(key, self.lines.len());
                self.lines.push(line.into());
            }
        }
        true
    }

    /// A full data set to keep, or `None` when it cannot serve as a base for changes: a line
    /// that is not UTF-8 JSON with a `resourceType` and an `id`, a key seen twice, or more
    /// than `cap` bytes.
    fn full(body: &[u8], cap: usize) -> Option<Self> {
        let mut set = Self::default();
        for line in Self::lines_of(body) {
            let line = std::str::from_utf8(line).ok()?;
            let before = set.lines.len();
            if !set.upsert(line) || set.lines.len() == before || set.bytes > cap {
                return None;
            }
        }
        Some(set)
    }

    /// Merges a change set; returns whether the result may still be kept (every line had a
    /// key, and the set weighs at most `cap` bytes). The merge itself is always complete.
    fn merge(&mut self, changes: &[u8], cap: usize) -> bool {
        let mut keyed = true;
        for line in Self::lines_of(changes) {
            keyed &= match std::str::from_utf8(line) {
                Ok(line) => self.upsert(line),
                Err(_) => {
                    // the parser reports the bytes as not UTF-8 (the feed is refused)
                    self.unkeyed
                        .push(String::from_utf8_lossy(line).into_owned().into());
                    false
                }
            };
        }
        keyed && self.bytes <= cap
    }

    /// The set as one NDJSON stream.
    fn to_ndjson(&self) -> Vec<u8> {
        let size = self
            .lines
            .iter()
            .chain(&self.unkeyed)
            .map(|l| l.len() + 1)
            .sum();
        let mut out = Vec::with_capacity(size);
        for l in self.lines.iter().chain(&self.unkeyed) {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

/// `url` asking for changes since `t` (an existing `_since` is replaced; the rest of the URL is
/// kept as written).
fn with_since(url: &str, t: DateTime<Utc>) -> Option<String> {
    let mut u = reqwest::Url::parse(url).ok()?;
    let since: String = form_urlencoded::byte_serialize(
        t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            .as_bytes(),
    )
    .collect();
    let kept: Vec<&str> = u
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("_since=") && *p != "_since")
        .collect();
    let query = kept
        .into_iter()
        .chain(std::iter::once(format!("_since={since}").as_str()))
        .collect::<Vec<_>>()
        .join("&");
    u.set_query(Some(&query));
    Some(u.into())
}

/// The `_since` a manifest's `request` carries, if any.
fn echoed_since(request: &str) -> Option<String> {
    reqwest::Url::parse(request)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "_since")
        .map(|(_, v)| v.into_owned())
}

/// Whether a manifest answering a request with `_since=asked` lists changes (`true`) or the
/// full data set (`false`); an error when its echoed `_since` is unreadable or later than asked.
fn answers_changes(
    manifest: &super::smart::Manifest,
    asked: Option<DateTime<Utc>>,
) -> Result<bool, FetchError> {
    let (Some(asked), Some(echo)) = (asked, manifest.request.as_deref().and_then(echoed_since))
    else {
        return Ok(false);
    };
    match DateTime::parse_from_rfc3339(echo.trim()) {
        Ok(t) if t <= asked => Ok(true),
        _ => Err(FetchError::Manifest(super::FeedError::shape(
            None,
            format!(
                "asked for changes since {}, the manifest answers changes since `{echo}`",
                asked.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            ),
        ))),
    }
}

/// The poller: its HTTP client, the schedule, and the data sets kept for `_since`.
pub struct Poller {
    client: reqwest::Client,
    due: Mutex<HashMap<i64, Due>>,
    permits: tokio::sync::Semaphore,
    kept: Mutex<HashMap<i64, Kept>>,
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
            kept: Mutex::new(HashMap::new()),
        }
    }
}

/// Why a fetch failed. The URL is shown without its query string (a publisher may put an
/// access key there, and the message goes to the log and to the source's `last_error`); the
/// `reqwest` error is kept without its URL for the same reason.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {}: {source}", without_query(url))]
    Http { url: String, source: reqwest::Error },
    #[error("GET {}: HTTP {status}", without_query(url))]
    Status { url: String, status: u16 },
    #[error("manifest: {0}")]
    Manifest(super::FeedError),
    #[error(transparent)]
    Apply(#[from] super::apply::ApplyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// `url` up to its query string, which is replaced by `?…`.
fn without_query(url: &str) -> std::borrow::Cow<'_, str> {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?…").into(),
        None => url.into(),
    }
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
                source: e.without_url(),
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
        let id = source.id;
        let now = state.clock.now().timestamp();
        // Taken out for the poll: put back only when it succeeds, so a failed or partial poll
        // forgets it and the next one is full.
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .filter(|k| format == FeedFormat::SmartSl && k.url == url);
        let full_due = kept
            .as_ref()
            .is_none_or(|k| now.saturating_sub(k.full_at) >= FULL_REFRESH_S);
        let since = kept
            .as_ref()
            .filter(|_| !full_due)
            .map(|k| k.transaction_time);
        let fetch_url = since
            .and_then(|t| with_since(&url, t))
            .unwrap_or_else(|| url.clone());
        let mut req = self.client.get(&fetch_url);
        if let Some(etag) = &source.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &source.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
        let res = req.send().await.map_err(|e| FetchError::Http {
            url: url.clone(),
            source: e.without_url(),
        })?;
        let age = max_age(res.headers());
        if res.status() == reqwest::StatusCode::NOT_MODIFIED {
            state
                .db
                .run(move |c| crate::store::sources::record_unchanged(c, id, now))
                .await?;
            if let Some(meta) = state.index.load().sources.get(&id) {
                meta.last_success_at
                    .store(now, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(mut k) = kept {
                if full_due {
                    // the full set is unchanged since the fetch whose validators were sent,
                    // and changes since then would have cleared them: the kept set is it
                    k.full_at = now;
                }
                self.keep(id, k);
            }
            return Ok((Polled::NotModified, age));
        }
        if !res.status().is_success() {
            return Err(FetchError::Status {
                url,
                status: res.status().as_u16(),
            });
        }
        let (mut etag, mut last_modified) = (
            header(res.headers(), reqwest::header::ETAG),
            header(res.headers(), reqwest::header::LAST_MODIFIED),
        );
        let body = res.bytes().await.map_err(|e| FetchError::Http {
            url: url.clone(),
            source: e.without_url(),
        })?;
        let mut next_kept = None;
        let body = match format {
            FeedFormat::SmartSl
                if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
                    && !looks_like_ndjson(&body) =>
            {
                let manifest = super::smart::parse_manifest(&body).map_err(FetchError::Manifest)?;
                let changes = answers_changes(&manifest, since)?;
                let mut all = Vec::new();
                // Every output the manifest lists (Location, Schedule, Slot,
                // PractitionerRole, and the SAS resources a publisher may add):
                // references resolve once everything is read.
                for file in manifest.outputs.iter().map(|o| o.url.as_str()) {
                    let part =
                        self.get(file)
                            .await?
                            .bytes()
                            .await
                            .map_err(|e| FetchError::Http {
                                url: file.into(),
                                source: e.without_url(),
                            })?;
                    all.extend_from_slice(&part);
                    if !all.ends_with(b"\n") {
                        all.push(b'\n');
                    }
                }
                let (transaction_time, url) = (manifest.transaction_time, url.clone());
                let (body, lines, full_at) = match kept {
                    Some(mut k) if changes => {
                        // validators of the answer with `_since` do not describe the full
                        // set: forget them, the next full fetch is unconditional
                        (etag, last_modified) = (None, None);
                        tokio::task::spawn_blocking(move || {
                            let keep = k.lines.merge(&all, MAX_KEPT_BYTES);
                            let body = k.lines.to_ndjson();
                            (body, keep.then_some(k.lines), k.full_at)
                        })
                        .await
                    }
                    _ => {
                        tokio::task::spawn_blocking(move || {
                            let lines = KeptLines::full(&all, MAX_KEPT_BYTES);
                            (all, lines, now)
                        })
                        .await
                    }
                }
                .map_err(|e| super::apply::ApplyError::Task(e.to_string()))?;
                next_kept = lines.map(|lines| Kept {
                    url,
                    transaction_time,
                    full_at,
                    lines,
                });
                web::Bytes::from(body)
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
        if let Some(k) = next_kept {
            self.keep(id, k);
        }
        Ok((Polled::Applied, age))
    }

    fn keep(&self, id: i64, kept: Kept) {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, kept);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn a_fetch_error_never_shows_the_query_string() {
        let e = FetchError::Status {
            url: "https://agenda.example/feed.csv?key=s3cr3t&_since=x".into(),
            status: 401,
        };
        assert_eq!(
            e.to_string(),
            "GET https://agenda.example/feed.csv?…: HTTP 401"
        );
        // a connection refused (nothing listens on port 9 of loopback)
        let url = "http://127.0.0.1:9/feed.csv?key=s3cr3t";
        let err = reqwest::get(url).await.unwrap_err();
        let e = FetchError::Http {
            url: url.into(),
            source: err.without_url(),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("GET http://127.0.0.1:9/feed.csv?…: "),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(without_query("https://a.example/x"), "https://a.example/x");
    }

    const LOC: &str = r#"{"resourceType":"Location","id":"l1","name":"A"}"#;
    const S1: &str = r#"{"resourceType":"Slot","id":"1","status":"free"}"#;
    const S2: &str = r#"{"resourceType":"Slot","id":"2","status":"free"}"#;

    #[test]
    fn a_full_set_is_kept_only_when_every_line_has_a_unique_key_and_it_fits() {
        let body = format!("\u{feff}{LOC}\r\n\n{S1}\n  {S2}");
        let set = KeptLines::full(body.as_bytes(), MAX_KEPT_BYTES).unwrap();
        assert_eq!(
            String::from_utf8(set.to_ndjson()).unwrap(),
            format!("{LOC}\n{S1}\n{S2}\n")
        );
        // a Slot id may equal a Location id: the key is the pair
        let same_id = format!("{LOC}\n{}", S1.replace("\"1\"", "\"l1\""));
        assert!(KeptLines::full(same_id.as_bytes(), MAX_KEPT_BYTES).is_some());
        for bad in [
            format!("{S1}\n{S1}"),                                   // a key twice
            format!("{S1}\nnot json"),                               // not JSON
            format!("{S1}\n{{\"resourceType\":\"Slot\"}}"),          // no id
            format!("{S1}\n{{\"resourceType\":\"Slot\",\"id\":3}}"), // id not a string
        ] {
            assert!(
                KeptLines::full(bad.as_bytes(), MAX_KEPT_BYTES).is_none(),
                "{bad}"
            );
        }
        let body = format!("{LOC}\n{S1}\n{S2}");
        let fits = KeptLines::full(body.as_bytes(), MAX_KEPT_BYTES)
            .unwrap()
            .bytes;
        assert!(KeptLines::full(body.as_bytes(), fits).is_some());
        assert!(
            KeptLines::full(body.as_bytes(), fits - 1).is_none(),
            "over the cap"
        );
    }

    #[test]
    fn changes_replace_lines_by_type_and_id_and_add_new_ones() {
        let mut set =
            KeptLines::full(format!("{LOC}\n{S1}\n{S2}").as_bytes(), MAX_KEPT_BYTES).unwrap();
        let s1_busy = S1.replace("free", "busy");
        let s3 = S1.replace("\"1\"", "\"3\"");
        assert!(set.merge(format!("{s1_busy}\n{s3}\n").as_bytes(), MAX_KEPT_BYTES));
        assert_eq!(
            String::from_utf8(set.to_ndjson()).unwrap(),
            format!("{LOC}\n{s1_busy}\n{S2}\n{s3}\n")
        );
        let before = set.bytes;
        assert!(set.merge(S2.as_bytes(), MAX_KEPT_BYTES));
        assert_eq!(set.bytes, before, "a replaced line is not counted twice");
        // a line without key is applied as it is (the parser words it) but the set is not kept
        assert!(!set.merge(b"garbage\n", MAX_KEPT_BYTES));
        assert!(
            String::from_utf8(set.to_ndjson())
                .unwrap()
                .ends_with("garbage\n")
        );
        let mut set = KeptLines::full(S1.as_bytes(), MAX_KEPT_BYTES).unwrap();
        assert!(
            !set.merge(S2.as_bytes(), set.bytes),
            "over the cap once merged"
        );
    }

    #[test]
    fn since_is_added_to_the_manifest_url_in_the_timestamp_format() {
        let t = utc("2026-11-23T08:55:00Z");
        assert_eq!(
            with_since("https://pub.example/$bulk-publish", t).unwrap(),
            "https://pub.example/$bulk-publish?_since=2026-11-23T08%3A55%3A00Z"
        );
        assert_eq!(
            with_since(
                "https://pub.example/m?key=a%2Bb&_since=old",
                utc("2026-11-23T09:55:00.250+01:00")
            )
            .unwrap(),
            "https://pub.example/m?key=a%2Bb&_since=2026-11-23T08%3A55%3A00.250Z",
            "other parameters kept as written, an old _since replaced"
        );
    }

    #[test]
    fn a_manifest_answers_changes_only_when_it_echoes_since_no_later_than_asked() {
        let asked = utc("2026-11-23T08:55:00Z");
        let manifest = |request: Option<&str>| super::super::smart::Manifest {
            transaction_time: utc("2026-11-23T09:00:00Z"),
            request: request.map(str::to_string),
            outputs: Vec::new(),
        };
        let m = manifest(Some(
            "https://p.example/$bulk-publish?_since=2026-11-23T08%3A55%3A00Z",
        ));
        assert!(answers_changes(&m, Some(asked)).unwrap());
        assert!(!answers_changes(&m, None).unwrap(), "not asked: a full set");
        let earlier = manifest(Some(
            "https://p.example/$bulk-publish?_since=2026-11-23T09:00:00%2B02:00",
        ));
        assert!(
            answers_changes(&earlier, Some(asked)).unwrap(),
            "more changes than asked"
        );
        for full in [
            None,
            Some("https://p.example/$bulk-publish"),
            Some("not a url"),
        ] {
            assert!(
                !answers_changes(&manifest(full), Some(asked)).unwrap(),
                "{full:?}"
            );
        }
        for bad in ["_since=2026-11-23T08:55:01Z", "_since=yesterday"] {
            let m = manifest(Some(&format!("https://p.example/$bulk-publish?{bad}")));
            assert!(answers_changes(&m, Some(asked)).is_err(), "{bad}");
        }
    }
}
