//! The Prometheus metrics analysts (ARS, InterURPS, CPTS coordinators) read: supply, feed
//! freshness, operator activity, uploaded statistics, HTTP and database health.
//!
//! Rules kept here:
//! - [`Metrics`] owns its [`Registry`]; nothing is registered in the process-wide default one, so
//!   several servers (tests) live side by side;
//! - names follow the Prometheus conventions: `sasnp_` prefix, base units (`_seconds`), `_total`
//!   for counters, `_timestamp_seconds` for instants;
//! - every label value comes from a bounded set: CPTS ids of the loaded geography (anything else
//!   becomes `other`), departments, two-digit profession codes, reason/status codes that are
//!   constants of the code, source ids, route patterns (never raw paths). Free text never;
//! - supply, freshness and pool gauges are computed when scraped ([`Metrics::refresh`]) from the
//!   index snapshot and the sources table, so they are right after a restart and on every node;
//! - counters are per process: graph them with `rate()`/`increase()` summed over instances;
//! - the search hot path pays one histogram observation and a few counter increments.

use crate::index::SlotIndex;
use crate::ingest::IngestReport;
use crate::stats::{Indicator, Indicators, StatRecord};
use crate::store::sources::SourceRow;
use chrono::NaiveDate;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;

/// Supply horizons, in hours from now (labels `4h`, `24h`, `48h`, `72h`): cumulative windows.
pub const HORIZONS_H: [(i64, &str); 4] = [(4, "4h"), (24, "24h"), (48, "48h"), (72, "72h")];

/// Buckets for the sub-millisecond search (10 µs … 100 ms).
pub const SEARCH_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1,
];

/// Buckets for whole HTTP requests (10 µs … 10 s: feed uploads take seconds).
pub const HTTP_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Buckets for one feed ingestion (parse + store + index), 1 ms … 2 min.
pub const INGEST_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets for the number of results of one search.
pub const RESULT_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// Label for anything outside a bounded set.
pub const OTHER: &str = "other";

/// Pull-fetch error kinds accepted by [`Metrics::fetch_error`].
pub const FETCH_ERROR_KINDS: &[&str] = &["connect", "timeout", "http_status", "body", "manifest"];

/// One CPTS territory as the metrics know it.
#[derive(Debug, Clone)]
pub struct CptsInfo {
    pub id: String,
    pub department: String,
    pub name: String,
}

/// A summary of an [`IngestReport`], taken before the report moves into the store.
#[derive(Debug, Clone, Default)]
pub struct IngestSummary {
    pub received: u64,
    pub accepted: u64,
    pub dropped_past: u64,
    pub entered_in_error: u64,
    pub rejected: Vec<(&'static str, u64)>,
    pub warnings: Vec<(&'static str, u64)>,
}

impl IngestSummary {
    pub fn of(r: &IngestReport) -> Self {
        Self {
            received: r.received,
            accepted: r.accepted,
            dropped_past: r.dropped_past,
            entered_in_error: r.entered_in_error,
            rejected: r.rejected.iter().map(|(k, v)| (*k, *v)).collect(),
            warnings: r.warnings.iter().map(|(k, v)| (*k, *v)).collect(),
        }
    }
}

/// What a scrape needs besides the metrics themselves.
pub struct ScrapeInput<'a> {
    pub now: i64,
    pub index: &'a SlotIndex,
    /// The sources table (`None` when the database could not be read: source gauges keep their
    /// previous values).
    pub sources: Option<&'a [SourceRow]>,
    /// `(stale_after_s, fresh)` of a source row.
    pub freshness: &'a dyn Fn(&SourceRow) -> (i64, bool),
    /// Database pool `(in use, idle)`.
    pub pool: (u32, u32),
    /// Connections the pool failed to open since the start ([`crate::store::Db::connection_errors`]).
    pub connection_errors: u64,
    /// Current statistics records (recent periods), for the latest-period gauges (`None` when
    /// not readable: the gauges keep their previous values).
    pub stats: Option<&'a [StatRecord]>,
}

/// The latest period of each CPTS among `records` (current versions): the one ending last
/// (then starting last), with its "all professions" record when there is one, else the sum of
/// its per-profession records (a count is absent only when no record counted it; a median
/// delay is kept only from a single record).
pub fn latest_stats(records: &[StatRecord]) -> Vec<(String, NaiveDate, NaiveDate, Indicators)> {
    let mut latest: BTreeMap<&str, (NaiveDate, NaiveDate)> = BTreeMap::new();
    for r in records {
        let e = latest
            .entry(r.cpts_id.as_str())
            .or_insert((r.period_start, r.period_end));
        if (r.period_end, r.period_start) > (e.1, e.0) {
            *e = (r.period_start, r.period_end);
        }
    }
    latest
        .into_iter()
        .map(|(cpts, (start, end))| {
            let recs: Vec<&StatRecord> = records
                .iter()
                .filter(|r| r.cpts_id == cpts && r.period_start == start && r.period_end == end)
                .collect();
            let values = match recs.iter().find(|r| r.profession.is_none()) {
                Some(all) => all.indicators.clone(),
                None => {
                    let mut v = Indicators::default();
                    for i in Indicator::COUNTS {
                        let sum = recs
                            .iter()
                            .filter_map(|r| r.indicators.count(i))
                            .reduce(u64::saturating_add);
                        v.set_count(i, sum);
                    }
                    if let [one] = recs.as_slice() {
                        v.median_delay_hours = one.indicators.median_delay_hours;
                    }
                    v
                }
            };
            (cpts.to_string(), start, end, values)
        })
        .collect()
}

/// All the service's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    cpts: HashMap<String, CptsInfo>,
    departments: Vec<String>,
    /// Serialises scrapes (gauges are reset then refilled).
    scrape: std::sync::Mutex<()>,

    // --- HTTP and database ---
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    db_pool: IntGaugeVec,
    db_pool_max: IntGauge,
    db_connection_errors: IntCounter,

    // --- supply (scrape time) ---
    free_slots: IntGaugeVec,
    free_slot_hours: GaugeVec,
    stale_slots: IntGaugeVec,
    places: IntGaugeVec,
    index_slots: IntGauge,
    index_places: IntGauge,

    // --- feeds ---
    source_info: IntGaugeVec,
    source_last_attempt: IntGaugeVec,
    source_last_success: IntGaugeVec,
    source_stale_after: IntGaugeVec,
    source_stale: IntGaugeVec,
    source_last_ingest: IntGaugeVec,
    ingests: IntCounterVec,
    ingest_slots: IntCounterVec,
    ingest_rejections: IntCounterVec,
    ingest_warnings: IntCounterVec,
    ingest_feed_errors: IntCounterVec,
    fetch_errors: IntCounterVec,
    ingest_duration: HistogramVec,

    // --- search ---
    searches: IntCounterVec,
    search_duration: Histogram,
    search_results: Histogram,
    searches_empty: IntCounterVec,

    // --- holds and appointments ---
    holds: IntCounterVec,
    holds_expired: IntCounterVec,
    holds_released: IntCounter,
    appointments: IntCounterVec,
    outcomes: IntCounterVec,
    conflicts: IntCounterVec,

    // --- uploaded statistics ---
    stats_uploads: IntCounterVec,
    stats_indicator: GaugeVec,
    stats_period_start: IntGaugeVec,
    stats_period_end: IntGaugeVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn igauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    reg(
        r,
        GaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histo(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    reg(r, HistogramVec::new(opts, labels).expect("valid metric"))
}

/// `10`, `40`, `60`… (RPPS/ADELI profession codes are two digits); `unknown` when absent, else
/// `other`.
pub fn profession_label(p: Option<&str>) -> &str {
    match p {
        None => "unknown",
        Some(p) if p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()) => p,
        Some(_) => OTHER,
    }
}

/// Known HTTP methods, else `other`.
pub fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => OTHER,
    }
}

impl Metrics {
    /// Creates and registers every metric. `territories` bounds the `cpts` label and gives each
    /// CPTS its department.
    pub fn new(territories: impl IntoIterator<Item = CptsInfo>) -> Self {
        let r = Registry::new();
        let cpts: HashMap<String, CptsInfo> =
            territories.into_iter().map(|t| (t.id.clone(), t)).collect();

        let mut departments: Vec<String> = cpts.values().map(|c| c.department.clone()).collect();
        departments.sort();
        departments.dedup();
        let build = igauge(
            &r,
            "sasnp_build_info",
            "Build of the running service (value 1).",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let start = reg(
            &r,
            IntGauge::new(
                "sasnp_start_time_seconds",
                "When this process started (Unix time).",
            )
            .expect("valid metric"),
        );
        start.set(chrono::Utc::now().timestamp());
        let info = igauge(
            &r,
            "sasnp_cpts_info",
            "CPTS territories known to the service (value 1), with department and name.",
            &["cpts", "department", "name"],
        );
        for t in cpts.values() {
            info.with_label_values(&[t.id.as_str(), t.department.as_str(), t.name.as_str()])
                .set(1);
        }

        Self {
            http_requests: counter(&r, "sasnp_http_requests_total", "HTTP requests answered, by method, route pattern and status.", &["method", "route", "status"]),
            http_duration: histo(&r, "sasnp_http_request_duration_seconds", "HTTP request duration (whole request, in the service), by method and route pattern.", &["method", "route"], HTTP_BUCKETS),
            db_pool: igauge(&r, "sasnp_db_pool_connections", "Database pool connections by state (in_use, idle).", &["state"]),
            db_pool_max: reg(&r, IntGauge::new("sasnp_db_pool_max_connections", "Database pool size (configured maximum).").expect("valid metric")),
            db_connection_errors: reg(&r, IntCounter::new("sasnp_db_connection_errors_total", "Database connections the pool failed to open (it retries them).").expect("valid metric")),

            free_slots: igauge(&r, "sasnp_free_slots", "Free slots offered to operators (offered, not held or booked, fresh source, visible to the SAS) starting within the horizon, by CPTS, department, profession.", &["cpts", "department", "profession", "horizon"]),
            free_slot_hours: gauge(&r, "sasnp_free_slot_hours", "Hours of consultation in the free slots of sasnp_free_slots.", &["cpts", "department", "profession", "horizon"]),
            stale_slots: igauge(&r, "sasnp_stale_slots", "Future offered slots withheld from operators because their source is stale, by CPTS.", &["cpts"]),
            places: igauge(&r, "sasnp_places", "Consultation places in the index by CPTS and location precision (exact: coordinates from the feed; commune: commune centre from postcode/city).", &["cpts", "precision"]),
            index_slots: reg(&r, IntGauge::new("sasnp_index_slots", "Slots in the search index (any state).").expect("valid metric")),
            index_places: reg(&r, IntGauge::new("sasnp_index_places", "Places in the search index.").expect("valid metric")),

            source_info: igauge(&r, "sasnp_source_info", "Slot sources (value 1) with their CPTS, format and mode (push or pull).", &["source", "cpts", "format", "mode"]),
            source_last_attempt: igauge(&r, "sasnp_source_last_attempt_timestamp_seconds", "Last time a feed was received or fetched for the source (Unix time).", &["source", "cpts"]),
            source_last_success: igauge(&r, "sasnp_source_last_success_timestamp_seconds", "Last time the source's feed was applied successfully (Unix time).", &["source", "cpts"]),
            source_stale_after: igauge(&r, "sasnp_source_stale_after_seconds", "How long a source's data stays fresh after a success.", &["source", "cpts"]),
            source_stale: igauge(&r, "sasnp_source_stale", "1 when the source is stale (its slots are not offered), else 0.", &["source", "cpts"]),
            source_last_ingest: igauge(&r, "sasnp_source_last_ingest_slots", "Slots of the last feed applied for the source by this process, by outcome (received, accepted, rejected, dropped_past, entered_in_error).", &["source", "cpts", "outcome"]),
            ingests: counter(&r, "sasnp_ingests_total", "Feed ingestions by CPTS, format and result (ok, unreadable, store_error).", &["cpts", "format", "result"]),
            ingest_slots: counter(&r, "sasnp_ingest_slots_total", "Slots read in applied feeds by CPTS and outcome (accepted, rejected, dropped_past, entered_in_error).", &["cpts", "outcome"]),
            ingest_rejections: counter(&r, "sasnp_ingest_rejections_total", "Slots rejected at ingestion by CPTS and reason code.", &["cpts", "reason"]),
            ingest_warnings: counter(&r, "sasnp_ingest_warnings_total", "Ingestion warnings (slot kept) by CPTS and reason code.", &["cpts", "reason"]),
            ingest_feed_errors: counter(&r, "sasnp_ingest_feed_errors_total", "Feeds that could not be read at all, by CPTS and error code.", &["cpts", "code"]),
            fetch_errors: counter(&r, "sasnp_feed_fetch_errors_total", "Failed fetches of pulled feeds by CPTS and kind (connect, timeout, http_status, body, manifest).", &["cpts", "kind"]),
            ingest_duration: histo(&r, "sasnp_ingest_duration_seconds", "Time to apply one feed (parse, normalise, store, index), by format.", &["format"], INGEST_BUCKETS),

            searches: counter(&r, "sasnp_searches_total", "Operator searches answered, by the patient's department.", &["department"]),
            search_duration: reg(&r, Histogram::with_opts(HistogramOpts::new("sasnp_search_duration_seconds", "Time spent searching the index for one operator search (excludes HTTP and JSON).").buckets(SEARCH_BUCKETS.to_vec())).expect("valid metric")),
            search_results: reg(&r, Histogram::with_opts(HistogramOpts::new("sasnp_search_results", "Results returned per operator search.").buckets(RESULT_BUCKETS.to_vec())).expect("valid metric")),
            searches_empty: counter(&r, "sasnp_searches_without_result_total", "Searches with no result within the department's base radius (stage base_radius) and after all enlargements (stage enlarged), by department.", &["department", "stage"]),

            holds: counter(&r, "sasnp_holds_total", "Slot holds taken by operators, by CPTS of the slot.", &["cpts"]),
            holds_expired: counter(&r, "sasnp_holds_expired_total", "Holds that lapsed without confirmation, by CPTS of the slot.", &["cpts"]),
            holds_released: reg(&r, IntCounter::new("sasnp_holds_released_total", "Holds released by operators.").expect("valid metric")),
            appointments: counter(&r, "sasnp_appointments_total", "Appointments booked (holds confirmed), by CPTS and orientation category (001 PS, 002 plateforme, 003 SOS Médecins).", &["cpts", "orientation_category"]),
            outcomes: counter(&r, "sasnp_appointment_outcomes_total", "Appointment outcomes recorded, by CPTS and outcome (fulfilled, noshow, cancelled).", &["cpts", "outcome"]),
            conflicts: counter(&r, "sasnp_booking_conflicts_total", "Booking requests refused with 409 (slot unavailable, invalid transition), by action (hold, release, confirm, outcome).", &["action"]),

            stats_uploads: counter(&r, "sasnp_stats_uploads_total", "Statistics uploads by CPTS and result (ok, rejected).", &["cpts", "result"]),
            stats_indicator: gauge(&r, "sasnp_stats_indicator", "Latest uploaded period's value of each statistics indicator, by CPTS.", &["cpts", "indicator"]),
            stats_period_start: igauge(&r, "sasnp_stats_period_start_timestamp_seconds", "Start (00:00 Europe/Paris) of the latest uploaded statistics period, by CPTS.", &["cpts"]),
            stats_period_end: igauge(&r, "sasnp_stats_period_end_timestamp_seconds", "End (24:00 Europe/Paris of the last day) of the latest uploaded statistics period, by CPTS.", &["cpts"]),

            registry: r,
            departments,
            cpts,
            scrape: Default::default(),
        }
    }

    /// Metrics for the CPTS territories of `geo`.
    pub fn for_geography(geo: &crate::geo::Geography) -> Self {
        Self::new(geo.territories().iter().map(|t| CptsInfo {
            id: t.id.clone(),
            department: t.department.clone(),
            name: t.name.clone(),
        }))
    }

    /// The registry (to add metrics or gather them).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A CPTS id if the geography knows it, else `other`.
    pub fn cpts_label<'a>(&self, id: &'a str) -> &'a str {
        if self.cpts.contains_key(id) {
            id
        } else {
            OTHER
        }
    }

    fn department_of(&self, cpts: &str) -> &str {
        self.cpts.get(cpts).map_or(OTHER, |c| c.department.as_str())
    }

    // ----- HTTP -----

    /// One answered HTTP request. `route` is the matched pattern (`/v1/holds/{hold_id}`) or
    /// `unmatched`.
    pub fn http_request(
        &self,
        method: &'static str,
        route: &str,
        status: actix_web::http::StatusCode,
        elapsed: Duration,
    ) {
        let status = status.as_str();
        self.http_requests
            .with_label_values(&[method, route, status])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    // ----- search -----

    /// One answered search: index time, result count, results within the base radius.
    pub fn search(&self, department: &str, elapsed: Duration, results: usize, within_base: usize) {
        let dep = if self.departments.iter().any(|d| d == department) {
            department
        } else {
            OTHER
        };
        self.searches.with_label_values(&[dep]).inc();
        self.search_duration.observe(elapsed.as_secs_f64());
        self.search_results.observe(results as f64);
        if within_base == 0 {
            self.searches_empty
                .with_label_values(&[dep, "base_radius"])
                .inc();
        }
        if results == 0 {
            self.searches_empty
                .with_label_values(&[dep, "enlarged"])
                .inc();
        }
    }

    // ----- holds and appointments -----

    pub fn hold_taken(&self, cpts: &str) {
        self.holds.with_label_values(&[self.cpts_label(cpts)]).inc();
    }

    /// A hold lapsed (called by the hold-expiry sweeper, once per expired hold).
    pub fn hold_expired(&self, cpts: &str) {
        self.holds_expired
            .with_label_values(&[self.cpts_label(cpts)])
            .inc();
    }

    pub fn hold_released(&self) {
        self.holds_released.inc();
    }

    pub fn appointment_booked(&self, cpts: &str, orientation_category: &str) {
        let cat = match orientation_category {
            "001" | "002" | "003" => orientation_category,
            _ => OTHER,
        };
        self.appointments
            .with_label_values(&[self.cpts_label(cpts), cat])
            .inc();
    }

    pub fn appointment_outcome(&self, cpts: &str, outcome: &str) {
        let outcome = match outcome {
            "fulfilled" | "noshow" | "cancelled" => outcome,
            _ => OTHER,
        };
        self.outcomes
            .with_label_values(&[self.cpts_label(cpts), outcome])
            .inc();
    }

    /// A booking request answered 409; `action` is `hold`, `release`, `confirm` or `outcome`.
    pub fn booking_conflict(&self, action: &'static str) {
        self.conflicts.with_label_values(&[action]).inc();
    }

    // ----- feeds -----

    /// A feed applied: counters, per-source last-ingest gauges, duration.
    pub fn ingest_applied(
        &self,
        source: i64,
        cpts: &str,
        format: &'static str,
        s: &IngestSummary,
        elapsed: Duration,
    ) {
        let cpts = self.cpts_label(cpts);
        let source = source.to_string();
        self.ingests.with_label_values(&[cpts, format, "ok"]).inc();
        self.ingest_duration
            .with_label_values(&[format])
            .observe(elapsed.as_secs_f64());
        let rejected: u64 = s.rejected.iter().map(|(_, n)| n).sum();
        for (outcome, n) in [
            ("accepted", s.accepted),
            ("rejected", rejected),
            ("dropped_past", s.dropped_past),
            ("entered_in_error", s.entered_in_error),
        ] {
            self.ingest_slots
                .with_label_values(&[cpts, outcome])
                .inc_by(n);
            self.source_last_ingest
                .with_label_values(&[&source, cpts, outcome])
                .set(clamp(n));
        }
        self.source_last_ingest
            .with_label_values(&[&source, cpts, "received"])
            .set(clamp(s.received));
        for (reason, n) in &s.rejected {
            self.ingest_rejections
                .with_label_values(&[cpts, reason])
                .inc_by(*n);
        }
        for (reason, n) in &s.warnings {
            self.ingest_warnings
                .with_label_values(&[cpts, reason])
                .inc_by(*n);
        }
    }

    /// A feed that could not be read (`code` from `FeedError::code`) or stored (`store_error`).
    pub fn ingest_failed(
        &self,
        cpts: &str,
        format: &'static str,
        code: &'static str,
        elapsed: Duration,
    ) {
        let cpts = self.cpts_label(cpts);
        let result = if code == "store_error" {
            "store_error"
        } else {
            "unreadable"
        };
        self.ingests
            .with_label_values(&[cpts, format, result])
            .inc();
        self.ingest_duration
            .with_label_values(&[format])
            .observe(elapsed.as_secs_f64());
        if result == "unreadable" {
            self.ingest_feed_errors
                .with_label_values(&[cpts, code])
                .inc();
        }
    }

    /// A pulled feed could not be fetched; `kind` is one of [`FETCH_ERROR_KINDS`] (else `other`).
    pub fn fetch_error(&self, cpts: &str, kind: &str) {
        let kind = if FETCH_ERROR_KINDS.contains(&kind) {
            kind
        } else {
            OTHER
        };
        self.fetch_errors
            .with_label_values(&[self.cpts_label(cpts), kind])
            .inc();
    }

    // ----- uploaded statistics -----

    /// A statistics upload was stored (`ok`) or rejected.
    pub fn stats_upload(&self, cpts: &str, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.stats_uploads
            .with_label_values(&[self.cpts_label(cpts), result])
            .inc();
    }

    /// Publishes a CPTS's latest period (replacing the previous one): one gauge per indicator it
    /// counted (indicators it did not count are removed, never shown as 0). Each scrape already
    /// recomputes these from the stored records ([`latest_stats`]); this is for callers that
    /// want a value visible before the next scrape.
    pub fn set_latest_stats(
        &self,
        cpts: &str,
        period_start: chrono::NaiveDate,
        period_end: chrono::NaiveDate,
        values: &Indicators,
    ) {
        let cpts = self.cpts_label(cpts);
        for i in Indicator::ALL {
            let v = if i.is_count() {
                values.count(i).map(|n| n as f64)
            } else {
                values.median_delay_hours
            };
            match v {
                Some(v) => self
                    .stats_indicator
                    .with_label_values(&[cpts, i.name()])
                    .set(v),
                None => {
                    let _ = self.stats_indicator.remove_label_values(&[cpts, i.name()]);
                }
            }
        }
        self.stats_period_start
            .with_label_values(&[cpts])
            .set(paris_midnight(period_start));
        self.stats_period_end
            .with_label_values(&[cpts])
            .set(paris_midnight(period_end + chrono::Duration::days(1)));
    }

    /// Sets one indicator of a CPTS's latest period (for callers that hold values one by one).
    pub fn set_latest_stat(&self, cpts: &str, indicator: Indicator, value: f64) {
        self.stats_indicator
            .with_label_values(&[self.cpts_label(cpts), indicator.name()])
            .set(value);
    }

    // ----- scrape -----

    /// Recomputes the scrape-time gauges: supply from the index snapshot, sources, pool.
    pub fn refresh(&self, input: &ScrapeInput<'_>) {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let now = input.now;
        let snap = input.index.load();
        self.index_slots.set(snap.slot_count as i64);
        self.index_places.set(snap.places.len() as i64);

        // Supply: (cpts, profession) → per horizon (count, seconds).
        type Acc = [(i64, i64); HORIZONS_H.len()];
        let mut free: HashMap<(&str, &str), Acc> = HashMap::new();
        let mut stale: HashMap<&str, i64> = HashMap::new();
        let mut places: HashMap<(&str, &'static str), i64> = HashMap::new();
        let last = now + HORIZONS_H[HORIZONS_H.len() - 1].0 * 3600;
        for place in &snap.places {
            let cpts = self.cpts_label(&place.source.cpts_id);
            *places.entry((cpts, place.precision.as_str())).or_default() += 1;
            let fresh = place.source.is_fresh(now);
            // Slots are sorted by start: skip the past, stop at the last horizon.
            let first = place.slots.partition_point(|s| s.start <= now);
            for s in place.slots[first..].iter().take_while(|s| s.start < last) {
                if !s.offered
                    || !s.audience.visible_to_operators()
                    || input.index.is_taken(s.id, now)
                {
                    continue;
                }
                if !fresh {
                    *stale.entry(cpts).or_default() += 1;
                    continue;
                }
                let acc = free
                    .entry((cpts, profession_label(s.provider.profession.as_deref())))
                    .or_insert([(0, 0); HORIZONS_H.len()]);
                for (k, (h, _)) in HORIZONS_H.iter().enumerate() {
                    if s.start < now + h * 3600 {
                        acc[k].0 += 1;
                        acc[k].1 += (s.end - s.start).max(0);
                    }
                }
            }
        }
        self.free_slots.reset();
        self.free_slot_hours.reset();
        for ((cpts, prof), acc) in &free {
            let dep = self.department_of(cpts);
            for (k, (_, label)) in HORIZONS_H.iter().enumerate() {
                let labels = [*cpts, dep, *prof, *label];
                self.free_slots.with_label_values(&labels).set(acc[k].0);
                self.free_slot_hours
                    .with_label_values(&labels)
                    .set(acc[k].1 as f64 / 3600.0);
            }
        }
        self.stale_slots.reset();
        for (cpts, n) in stale {
            self.stale_slots.with_label_values(&[cpts]).set(n);
        }
        self.places.reset();
        for ((cpts, precision), n) in places {
            self.places.with_label_values(&[cpts, precision]).set(n);
        }

        if let Some(sources) = input.sources {
            for g in [
                &self.source_info,
                &self.source_last_attempt,
                &self.source_last_success,
                &self.source_stale_after,
                &self.source_stale,
            ] {
                g.reset();
            }
            for s in sources {
                let (id, cpts) = (s.id.to_string(), self.cpts_label(&s.cpts_id));
                let labels = [id.as_str(), cpts];
                let format = match s.format.as_str() {
                    f @ ("sas-fhir" | "smart-sl" | "csv") => f,
                    _ => OTHER,
                };
                let mode = if s.url.is_some() { "pull" } else { "push" };
                self.source_info
                    .with_label_values(&[id.as_str(), cpts, format, mode])
                    .set(1);
                if let Some(t) = s.last_attempt_at {
                    self.source_last_attempt.with_label_values(&labels).set(t);
                }
                if let Some(t) = s.last_success_at {
                    self.source_last_success.with_label_values(&labels).set(t);
                }
                let (stale_after, fresh) = (input.freshness)(s);
                self.source_stale_after
                    .with_label_values(&labels)
                    .set(stale_after);
                self.source_stale
                    .with_label_values(&labels)
                    .set(i64::from(!fresh));
            }
        }

        if let Some(records) = input.stats {
            self.stats_indicator.reset();
            self.stats_period_start.reset();
            self.stats_period_end.reset();
            for (cpts, start, end, values) in latest_stats(records) {
                self.set_latest_stats(&cpts, start, end, &values);
            }
        }

        let (busy, idle) = input.pool;
        self.db_pool
            .with_label_values(&["in_use"])
            .set(i64::from(busy));
        self.db_pool
            .with_label_values(&["idle"])
            .set(i64::from(idle));
        let seen = self.db_connection_errors.get();
        self.db_connection_errors
            .inc_by(input.connection_errors.saturating_sub(seen));
    }

    /// Sets the configured pool size.
    pub fn set_pool_max(&self, n: u32) {
        self.db_pool_max.set(i64::from(n));
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn paris_midnight(d: chrono::NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(chrono_tz::Europe::Paris).earliest())
        .map_or(0, |t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::new([CptsInfo {
            id: "CPTS-44-A".into(),
            department: "44".into(),
            name: "A".into(),
        }])
    }

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(profession_label(Some("10")), "10");
        assert_eq!(profession_label(Some("Médecin généraliste")), OTHER);
        assert_eq!(profession_label(None), "unknown");
        let m = metrics();
        assert_eq!(m.cpts_label("CPTS-44-A"), "CPTS-44-A");
        assert_eq!(m.cpts_label("anything a client wrote"), OTHER);
        m.search("99", Duration::from_micros(30), 0, 0);
        let text = m.render();
        assert!(
            text.contains("sasnp_searches_total{department=\"other\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn the_latest_period_prefers_the_all_professions_record() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let rec = |start: &str, end: &str, prof: Option<&str>, received: u64| StatRecord {
            cpts_id: "CPTS-44-A".into(),
            period_start: d(start),
            period_end: d(end),
            profession: prof.map(String::from),
            indicators: Indicators {
                requests_received: Some(received),
                ..Default::default()
            },
            line: 1,
        };
        let records = [
            rec("2026-10-01", "2026-10-31", Some("10"), 5),
            rec("2026-10-01", "2026-10-31", None, 9),
            rec("2026-09-01", "2026-09-30", None, 100),
        ];
        let got = latest_stats(&records);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].1, got[0].2), (d("2026-10-01"), d("2026-10-31")));
        assert_eq!(got[0].3.requests_received, Some(9));
    }

    #[test]
    fn latest_stats_replace_and_remove() {
        let m = metrics();
        let d = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
        let mut v = Indicators {
            requests_received: Some(12),
            median_delay_hours: Some(6.5),
            ..Default::default()
        };
        m.set_latest_stats("CPTS-44-A", d("2026-10-01"), d("2026-10-31"), &v);
        let text = m.render();
        assert!(
            text.contains(
                "sasnp_stats_indicator{cpts=\"CPTS-44-A\",indicator=\"requests_received\"} 12"
            ),
            "{text}"
        );
        assert!(
            text.contains("indicator=\"median_delay_hours\"} 6.5"),
            "{text}"
        );
        // 2026-10-01 00:00 Paris (+02:00)
        assert!(
            text.contains(
                "sasnp_stats_period_start_timestamp_seconds{cpts=\"CPTS-44-A\"} 1790805600"
            ),
            "{text}"
        );
        v.median_delay_hours = None;
        m.set_latest_stats("CPTS-44-A", d("2026-11-01"), d("2026-11-30"), &v);
        assert!(!m.render().contains("median_delay_hours"));
    }
}
