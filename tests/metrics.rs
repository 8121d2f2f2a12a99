//! `/metrics`: values after known actions, label hygiene, token protection.

mod common;

use common::{Place, Row, TestApp, csv_feed, spawn_app, spawn_app_with};
use sasnp::domain::Role;
use serde_json::json;
use std::collections::BTreeMap;

const AT_NANTES: &str = "lat=47.2184&lon=-1.5536&limit=50";

/// One sample of the text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    out
}

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("numeric value"),
            }
        })
        .collect()
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// Sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    Scrape(parse(&res.text().await.unwrap()))
}

/// Three future slots at Nantes (11:00 and 14:30 today, 09:30 tomorrow; "now" is 10:00 Paris),
/// one at Saint-Nazaire the day after tomorrow, and one line with a bad time.
fn feed() -> String {
    let mut rows = vec![
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 14:30", Place::NantesCentre),
        Row::new("c", "2026-11-24 09:30", Place::Reze),
        Row::new("d", "2026-11-25 10:00", Place::SaintNazaire),
        Row::new("bad", "2026-11-32 10:00", Place::NantesCentre),
    ];
    rows[3].profession = "60";
    rows[3].minutes = 30;
    csv_feed(&rows)
}

async fn setup() -> (TestApp, String, i64, String) {
    let app = spawn_app().await;
    let cpts = app.nantes_cpts();
    let publisher = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    let source = app.csv_source(&publisher, &cpts).await;
    let (s, report) = app.push_csv(&publisher, source, feed()).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["accepted"], 4, "{report}");
    let operator = app.token("osnp-1", Role::Operator, None).await;
    (app, cpts, source, operator)
}

#[tokio::test]
async fn supply_and_feed_gauges_follow_the_ingested_feed() {
    let (app, cpts, source, _) = setup().await;
    let m = scrape(&app).await;
    let c = cpts.as_str();
    assert_eq!(m.sum("sasnp_free_slots", &[("horizon", "72h")]), 4.0);
    assert_eq!(
        m.sum(
            "sasnp_free_slots",
            &[("horizon", "72h"), ("cpts", c), ("department", "44")]
        ),
        4.0
    );
    assert_eq!(
        m.sum("sasnp_free_slots", &[("horizon", "4h")]),
        1.0,
        "11:00 only"
    );
    assert_eq!(
        m.sum("sasnp_free_slots", &[("horizon", "24h")]),
        3.0,
        "11:00 + 14:30 + tomorrow 09:30"
    );
    assert_eq!(m.sum("sasnp_free_slots", &[("horizon", "48h")]), 3.0);
    assert_eq!(
        m.sum(
            "sasnp_free_slots",
            &[("horizon", "72h"), ("profession", "60")]
        ),
        1.0
    );
    let hours = m.sum("sasnp_free_slot_hours", &[("horizon", "72h")]);
    assert!((hours - (3.0 * 20.0 + 30.0) / 60.0).abs() < 1e-9, "{hours}");
    assert_eq!(
        m.sum("sasnp_places", &[("cpts", c), ("precision", "exact")]),
        3.0
    );
    assert_eq!(m.sum("sasnp_index_slots", &[]), 4.0);
    assert_eq!(m.sum("sasnp_stale_slots", &[]), 0.0);
    // the source
    let sid = source.to_string();
    let s = [("source", sid.as_str()), ("cpts", c)];
    let now = common::default_now().timestamp() as f64;
    assert_eq!(
        m.sum(
            "sasnp_source_info",
            &[("source", &sid), ("format", "csv"), ("mode", "push")]
        ),
        1.0
    );
    assert_eq!(
        m.sum("sasnp_source_last_success_timestamp_seconds", &s),
        now
    );
    assert_eq!(
        m.sum("sasnp_source_last_attempt_timestamp_seconds", &s),
        now
    );
    assert_eq!(m.sum("sasnp_source_stale_after_seconds", &s), 86_400.0);
    assert_eq!(m.sum("sasnp_source_stale", &s), 0.0);
    assert_eq!(
        m.sum(
            "sasnp_source_last_ingest_slots",
            &[("source", &sid), ("outcome", "accepted")]
        ),
        4.0
    );
    assert_eq!(
        m.sum(
            "sasnp_source_last_ingest_slots",
            &[("source", &sid), ("outcome", "received")]
        ),
        5.0
    );
    assert_eq!(
        m.sum(
            "sasnp_source_last_ingest_slots",
            &[("source", &sid), ("outcome", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_ingests_total",
            &[("cpts", c), ("format", "csv"), ("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_ingest_slots_total",
            &[("cpts", c), ("outcome", "accepted")]
        ),
        4.0
    );
    assert_eq!(
        m.sum(
            "sasnp_ingest_rejections_total",
            &[("cpts", c), ("reason", "invalid_time")]
        ),
        1.0
    );
    assert_eq!(
        m.sum("sasnp_ingest_duration_seconds_count", &[("format", "csv")]),
        1.0
    );
    // CPTS and pool
    assert_eq!(
        m.sum("sasnp_cpts_info", &[("cpts", c), ("department", "44")]),
        1.0
    );
    assert_eq!(m.sum("sasnp_db_pool_max_connections", &[]), 4.0);
    assert!(m.has("sasnp_db_pool_connections"));
    assert_eq!(m.sum("sasnp_db_connection_errors_total", &[]), 0.0);

    // An unreadable feed changes nothing but is counted.
    let publisher = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    let (status, _) = app.push_csv(&publisher, source, String::new()).await;
    assert_eq!(status, 422);
    let m = scrape(&app).await;
    assert_eq!(
        m.sum(
            "sasnp_ingests_total",
            &[("cpts", c), ("result", "unreadable")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_ingest_feed_errors_total",
            &[("cpts", c), ("code", "empty_feed")]
        ),
        1.0
    );
    assert_eq!(m.sum("sasnp_free_slots", &[("horizon", "72h")]), 4.0);

    // A day later without a refresh the source is stale: its slots leave the supply.
    app.clock.advance(chrono::Duration::hours(25));
    let m = scrape(&app).await;
    assert_eq!(m.sum("sasnp_source_stale", &s), 1.0);
    assert_eq!(m.sum("sasnp_free_slots", &[]), 0.0);
    assert_eq!(
        m.sum("sasnp_stale_slots", &[("cpts", c)]),
        1.0,
        "only the slot of the 25th is still ahead"
    );
}

#[tokio::test]
async fn searches_are_counted_timed_and_empty_ones_flagged() {
    let (app, _, _, op) = setup().await;
    let before = scrape(&app).await;
    assert_eq!(before.sum("sasnp_searches_total", &[]), 0.0);
    let (s, body) = app.search(&op, AT_NANTES).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["count"], 3, "{body}");
    // Nothing for kinés (profession 70) anywhere: empty before and after enlargement.
    let (s, body) = app.search(&op, &format!("{AT_NANTES}&profession=70")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["count"], 0);
    let m = scrape(&app).await;
    assert_eq!(m.sum("sasnp_searches_total", &[("department", "44")]), 2.0);
    assert_eq!(m.sum("sasnp_search_duration_seconds_count", &[]), 2.0);
    assert_eq!(
        m.sum("sasnp_search_duration_seconds_bucket", &[("le", "+Inf")]),
        2.0
    );
    assert_eq!(m.sum("sasnp_search_results_count", &[]), 2.0);
    assert_eq!(m.sum("sasnp_search_results_sum", &[]), 3.0);
    assert_eq!(
        m.sum(
            "sasnp_searches_without_result_total",
            &[("department", "44"), ("stage", "enlarged")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_searches_without_result_total",
            &[("department", "44"), ("stage", "base_radius")]
        ),
        1.0
    );
    // HTTP metrics by route pattern
    assert_eq!(
        m.sum(
            "sasnp_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/v1/search"),
                ("status", "200")
            ]
        ),
        2.0
    );
    assert_eq!(
        m.sum(
            "sasnp_http_request_duration_seconds_count",
            &[("route", "/v1/search")]
        ),
        2.0
    );
    // the finest bucket is 10 µs
    assert!(
        m.0.iter().any(
            |s| s.name == "sasnp_search_duration_seconds_bucket" && s.labels["le"] == "0.00001"
        )
    );
}

#[tokio::test]
async fn routes_are_patterns_never_raw_paths() {
    let (app, _, source, _) = setup().await;
    let admin = app.admin_token.clone();
    assert_eq!(
        app.get(&format!("/v1/sources/{source}"), Some(&admin))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get("/v1/sources/987654", Some(&admin)).await.status(),
        404
    );
    assert_eq!(app.get("/no/such/path/12345", None).await.status(), 404);
    let res = app.get("/metrics", None).await;
    let text = res.text().await.unwrap();
    assert!(
        !text.contains("987654") && !text.contains("12345"),
        "raw paths leak into labels"
    );
    let m = Scrape(parse(&text));
    assert_eq!(
        m.sum(
            "sasnp_http_requests_total",
            &[("route", "/v1/sources/{id}"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_http_requests_total",
            &[("route", "/v1/sources/{id}"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_http_requests_total",
            &[("route", "/v1/sources/{id}/slots"), ("method", "PUT")]
        ),
        1.0
    );
}

#[tokio::test]
async fn holds_bookings_conflicts_and_outcomes_are_counted() {
    let (app, cpts, _, op) = setup().await;
    let c = cpts.as_str();
    let a = app.slot_id_near_nantes(&op, "a").await;
    let (s, h) = app
        .post_json(&op, &format!("/v1/slots/{a}/hold"), json!({}))
        .await;
    assert_eq!(s, 201, "{h}");
    let m = scrape(&app).await;
    assert_eq!(m.sum("sasnp_holds_total", &[("cpts", c)]), 1.0);
    assert_eq!(
        m.sum("sasnp_free_slots", &[("horizon", "72h")]),
        3.0,
        "a held slot is not free"
    );
    // a second hold of the same slot: 409
    let op2 = app.token("osnp-2", Role::Operator, None).await;
    let (s, _) = app
        .post_json(&op2, &format!("/v1/slots/{a}/hold"), json!({}))
        .await;
    assert_eq!(s, 409);
    let hold_id = h["hold_id"].as_str().unwrap();
    let (s, appt) = app
        .post_json(
            &op,
            &format!("/v1/holds/{hold_id}/confirm"),
            json!({"orientation_category": "003"}),
        )
        .await;
    assert_eq!(s, 201, "{appt}");
    // confirming twice: 409
    let (s, _) = app
        .post_json(
            &op,
            &format!("/v1/holds/{hold_id}/confirm"),
            json!({"orientation_category": "003"}),
        )
        .await;
    assert_eq!(s, 409);
    let id = appt["appointment_id"].as_i64().unwrap();
    let res = app
        .client
        .patch(app.url(&format!("/v1/appointments/{id}")))
        .bearer_auth(&op)
        .json(&json!({"status": "cancelled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let m = scrape(&app).await;
    assert_eq!(
        m.sum("sasnp_booking_conflicts_total", &[("action", "hold")]),
        1.0
    );
    assert_eq!(
        m.sum("sasnp_booking_conflicts_total", &[("action", "confirm")]),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_appointments_total",
            &[("cpts", c), ("orientation_category", "003")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_appointment_outcomes_total",
            &[("cpts", c), ("outcome", "cancelled")]
        ),
        1.0
    );
    assert_eq!(
        m.sum("sasnp_free_slots", &[("horizon", "72h")]),
        4.0,
        "a cancelled future slot is free again"
    );
    assert_eq!(
        m.sum(
            "sasnp_http_requests_total",
            &[("route", "/v1/slots/{slot_id}/hold"), ("status", "409")]
        ),
        1.0
    );
}

#[tokio::test]
async fn expired_and_released_holds_are_counted() {
    let (app, cpts, _, op) = setup().await;
    let (a, b) = (
        app.slot_id_near_nantes(&op, "a").await,
        app.slot_id_near_nantes(&op, "b").await,
    );
    let (s, _) = app
        .post_json(&op, &format!("/v1/slots/{a}/hold"), json!({}))
        .await;
    assert_eq!(s, 201);
    let (s, hb) = app
        .post_json(&op, &format!("/v1/slots/{b}/hold"), json!({}))
        .await;
    assert_eq!(s, 201);
    let res = app
        .client
        .delete(app.url(&format!("/v1/holds/{}", hb["hold_id"].as_str().unwrap())))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    app.clock.advance(chrono::Duration::seconds(301));
    // the background sweeper may have run already; either way the expiry is counted once
    sasnp::tasks::expire_holds_once(&app.state).await.unwrap();
    sasnp::tasks::expire_holds_once(&app.state).await.unwrap();
    let m = scrape(&app).await;
    assert_eq!(m.sum("sasnp_holds_expired_total", &[("cpts", &cpts)]), 1.0);
    assert_eq!(m.sum("sasnp_holds_released_total", &[]), 1.0);
    assert_eq!(m.sum("sasnp_holds_total", &[]), 2.0);
}

/// A canonical statistics file for `cpts`: September for all professions, October per
/// profession (10 and 60).
fn stats_csv(cpts: &str) -> String {
    format!(
        "cpts_id,period_start,period_end,profession,requests_received,requests_handled,requests_from_regulation,consultations_done,redirected_emergency,redirected_other,no_shows,slots_offered,slots_used,participating_professionals,median_delay_hours\n\
         {cpts},2026-09-01,2026-09-30,,100,90,20,80,1,2,3,100,90,10,20\n\
         {cpts},2026-10-01,2026-10-31,10,120,110,30,97,3,4,2,150,130,12,18.5\n\
         {cpts},2026-10-01,2026-10-31,60,20,18,,,,,,,,3,6\n"
    )
}

async fn upload_stats(app: &TestApp, token: &str, body: String) -> (u16, serde_json::Value) {
    let res = app
        .client
        .post(app.url("/v1/stats/uploads?preset=canonical"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

#[tokio::test]
async fn uploaded_statistics_publish_the_latest_period() {
    let (app, cpts, _, _) = setup().await;
    let coordinator = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    let (s, body) = upload_stats(&app, &coordinator, stats_csv(&cpts)).await;
    assert_eq!(s, 201, "{body}");
    // a file with a period in the future is rejected whole
    let bad = stats_csv(&cpts).replace("2026-10-31", "2027-10-31");
    let (s, body) = upload_stats(&app, &coordinator, bad).await;
    assert_eq!(s, 422, "{body}");
    let m = scrape(&app).await;
    let ind = |name: &'static str| {
        m.sum(
            "sasnp_stats_indicator",
            &[("cpts", &cpts), ("indicator", name)],
        )
    };
    // October, summed over the two professions; a count nobody gave stays absent
    assert_eq!(ind("requests_received"), 140.0);
    assert_eq!(ind("consultations_done"), 97.0);
    assert_eq!(ind("participating_professionals"), 15.0);
    assert!(
        !m.0.iter()
            .any(|s| s.name == "sasnp_stats_indicator"
                && s.labels["indicator"] == "median_delay_hours"),
        "a median delay is not summed across professions"
    );
    // 2026-10-01 00:00 Paris (+02:00) .. 2026-11-01 00:00 Paris (+01:00)
    assert_eq!(
        m.sum(
            "sasnp_stats_period_start_timestamp_seconds",
            &[("cpts", &cpts)]
        ),
        1_790_805_600.0
    );
    assert_eq!(
        m.sum(
            "sasnp_stats_period_end_timestamp_seconds",
            &[("cpts", &cpts)]
        ),
        1_793_487_600.0
    );
    assert_eq!(
        m.sum(
            "sasnp_stats_uploads_total",
            &[("cpts", &cpts), ("result", "ok")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "sasnp_stats_uploads_total",
            &[("cpts", &cpts), ("result", "rejected")]
        ),
        1.0
    );
    // labels stay bounded whatever a caller passes
    app.state.metrics.stats_upload("not-a-cpts", false);
    let m = scrape(&app).await;
    assert_eq!(
        m.sum(
            "sasnp_stats_uploads_total",
            &[("cpts", "other"), ("result", "rejected")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_metrics_token_protects_the_endpoint() {
    let app = spawn_app_with(|s| s.metrics_token = Some("scrape-me".into())).await;
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(app.get("/metrics", Some("scrape-you")).await.status(), 401);
    // an account token is not the metrics token
    assert_eq!(
        app.get("/metrics", Some(&app.admin_token)).await.status(),
        401
    );
    let res = app.get("/metrics", Some("scrape-me")).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("sasnp_build_info"));
}

#[tokio::test]
async fn every_label_value_comes_from_a_bounded_set() {
    let (app, _, _, op) = setup().await;
    let _ = app.search(&op, AT_NANTES).await;
    let m = scrape(&app).await;
    let territories: std::collections::HashSet<&str> = app
        .state
        .geo
        .territories()
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    for s in &m.0 {
        assert!(s.name.starts_with("sasnp_"), "{}", s.name);
        if let Some(c) = s.labels.get("cpts") {
            assert!(territories.contains(c.as_str()) || c == "other", "{s:?}");
        }
        if let Some(d) = s.labels.get("department") {
            assert!(
                ["44", "49", "53", "72", "85", "other"].contains(&d.as_str()),
                "{s:?}"
            );
        }
        if let Some(r) = s.labels.get("route") {
            assert!(r.starts_with('/') || r == "unmatched", "{s:?}");
        }
    }
}

async fn hold(app: &TestApp, op: &str, slot: i64) -> (u16, serde_json::Value) {
    app.post_json(op, &format!("/v1/slots/{slot}/hold"), json!({}))
        .await
}

/// `sasnp_…` metric names mentioned in `text`.
fn metric_names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("sasnp_") {
        let boundary = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if boundary {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

fn collect_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition" | "query", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// Every dashboard is valid JSON and every metric its queries (and the alert rules) use is
/// exported by a real scrape after exercising the service.
#[tokio::test]
async fn dashboards_and_alerts_use_only_exported_metrics() {
    let (app, cpts, source, op) = setup().await;
    // exercise every metric family
    let publisher = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    assert_eq!(app.push_csv(&publisher, source, String::new()).await.0, 422);
    let (s, report) = app
        .push_csv(&publisher, source, feed().replace(";44400;", ";4440X;"))
        .await;
    assert_eq!(s, 200);
    assert!(
        !report["warnings"].as_object().unwrap().is_empty(),
        "{report}"
    );
    let (a, b, c) = (
        app.slot_id_near_nantes(&op, "a").await,
        app.slot_id_near_nantes(&op, "b").await,
        app.slot_id_near_nantes(&op, "c").await,
    );
    let (_, ha) = hold(&app, &op, a).await;
    assert_eq!(hold(&app, &op, a).await.0, 409);
    let (s, appt) = app
        .post_json(
            &op,
            &format!("/v1/holds/{}/confirm", ha["hold_id"].as_str().unwrap()),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_eq!(s, 201);
    let id = appt["appointment_id"].as_i64().unwrap();
    let res = app
        .client
        .patch(app.url(&format!("/v1/appointments/{id}")))
        .bearer_auth(&op)
        .json(&json!({"status": "cancelled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, hb) = hold(&app, &op, b).await;
    let res = app
        .client
        .delete(app.url(&format!("/v1/holds/{}", hb["hold_id"].as_str().unwrap())))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    hold(&app, &op, c).await;
    let _ = app.search(&op, &format!("{AT_NANTES}&profession=70")).await;
    let coordinator = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    assert_eq!(
        upload_stats(&app, &coordinator, stats_csv(&cpts)).await.0,
        201
    );
    // no pulled source here: the poller's counter is exercised directly
    app.state.metrics.fetch_error(&cpts, "timeout");
    let mut exported: std::collections::BTreeSet<String> =
        scrape(&app).await.0.into_iter().map(|s| s.name).collect();
    app.clock.advance(chrono::Duration::hours(25));
    sasnp::tasks::expire_holds_once(&app.state).await.unwrap();
    exported.extend(scrape(&app).await.0.into_iter().map(|s| s.name));

    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut dashboards = 0;
    for entry in std::fs::read_dir(deploy.join("grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        dashboards += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            json["uid"].is_string() && json["panels"].is_array(),
            "{}",
            path.display()
        );
        let mut queries = Vec::new();
        collect_queries(&json, &mut queries);
        assert!(!queries.is_empty(), "{}", path.display());
        for q in &queries {
            for name in metric_names_in(q) {
                assert!(
                    exported.contains(&name),
                    "{}: `{name}` is not exported (query: {q})",
                    path.display()
                );
            }
        }
    }
    assert!(dashboards >= 4);
    let rules = std::fs::read_to_string(deploy.join("sasnp.rules.yml")).unwrap();
    let used = metric_names_in(&rules);
    assert!(used.len() > 5);
    for name in used {
        assert!(
            exported.contains(&name),
            "sasnp.rules.yml: `{name}` is not exported"
        );
    }
}

/// A new SQLite file opens its whole pool without a failed connection. Each pool connection
/// used to switch the file to WAL itself; on a new file the pool's first connections raced for
/// that exclusive lock and some failed at once ("database is locked", logged by the pool and
/// retried), about one start in six.
#[cfg(feature = "sqlite")]
#[test]
fn a_new_sqlite_database_opens_its_pool_without_a_failed_connection() {
    let mut failures = 0;
    for _ in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("new.db").display());
        let db = sasnp::store::Db::connect(&url, 8, std::time::Duration::from_secs(5)).unwrap();
        failures += db.connection_errors();
        // and the file is in WAL mode (readers never wait for a snapshot's writer)
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Mode {
            #[diesel(sql_type = diesel::sql_types::Text)]
            journal_mode: String,
        }
        let mut c = diesel::SqliteConnection::establish(sasnp::store::sqlite_path(&url)).unwrap();
        let mode: Mode = diesel::sql_query("PRAGMA journal_mode")
            .get_result(&mut c)
            .unwrap();
        assert_eq!(mode.journal_mode, "wal");
    }
    assert_eq!(failures, 0, "pool connections that failed to open");
}
