//! Pulled sources: a real HTTP publisher on loopback, conditional requests, SMART manifests,
//! and failures that stay contained.

mod common;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::{Place, Row, csv_feed, result_ids, spawn_app};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Default)]
struct Publisher {
    csv: String,
    ndjson: Vec<(String, String)>, // (resourceType, lines)
    gets: AtomicUsize,
    not_modified: AtomicUsize,
    port: std::sync::OnceLock<u16>,
}

async fn feed_csv(req: HttpRequest, p: web::Data<Publisher>) -> HttpResponse {
    p.gets.fetch_add(1, Ordering::SeqCst);
    if req
        .headers()
        .get("If-None-Match")
        .and_then(|v| v.to_str().ok())
        == Some("\"v1\"")
    {
        p.not_modified.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::NotModified().finish();
    }
    HttpResponse::Ok()
        .insert_header(("ETag", "\"v1\""))
        .content_type("text/csv")
        .body(p.csv.clone())
}

async fn manifest(p: web::Data<Publisher>) -> HttpResponse {
    let port = p.port.get().copied().unwrap_or(0);
    let output: Vec<_> = p
        .ndjson
        .iter()
        .map(|(t, _)| json!({"type": t, "url": format!("http://127.0.0.1:{port}/data/{t}.ndjson")}))
        .collect();
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "max-age=120"))
        .json(json!({"transactionTime": "2026-11-23T08:55:00Z", "request": format!("http://127.0.0.1:{port}/$bulk-publish"), "output": output, "error": []}))
}

async fn data(path: web::Path<String>, p: web::Data<Publisher>) -> HttpResponse {
    let t = path.into_inner().trim_end_matches(".ndjson").to_string();
    match p.ndjson.iter().find(|(k, _)| *k == t) {
        Some((_, body)) => HttpResponse::Ok()
            .content_type("application/fhir+ndjson")
            .body(body.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn broken() -> HttpResponse {
    HttpResponse::InternalServerError().body("database down")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_sources_are_fetched_politely_and_failures_stay_contained() {
    let app = spawn_app().await;
    // The SMART SL publisher's NDJSON, split by resource type as a real $bulk-publish does.
    let spec = sasnp::ingest::generate::GenSpec::new(5, 40, 4, common::default_now());
    let gen_feed = sasnp::ingest::generate::generate_on(&spec, app.state.geo.as_ref());
    let all = String::from_utf8(sasnp::ingest::generate::to_ndjson(&gen_feed)).unwrap();
    let mut by_type: Vec<(String, String)> = Vec::new();
    for line in all.lines().filter(|l| !l.trim().is_empty()) {
        let t = serde_json::from_str::<serde_json::Value>(line).unwrap()["resourceType"]
            .as_str()
            .unwrap()
            .to_string();
        match by_type.iter_mut().find(|(k, _)| *k == t) {
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => by_type.push((t, format!("{line}\n"))),
        }
    }
    assert!(
        by_type.iter().any(|(t, _)| t == "Slot") && by_type.iter().any(|(t, _)| t == "Location")
    );
    let publisher = web::Data::new(Publisher {
        csv: csv_feed(&[Row::new(
            "pulled-1",
            "2026-11-23 11:00",
            Place::NantesCentre,
        )]),
        ndjson: by_type,
        ..Default::default()
    });
    let p2 = publisher.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(p2.clone())
            .route("/feed.csv", web::get().to(feed_csv))
            .route("/$bulk-publish", web::get().to(manifest))
            .route("/data/{file}", web::get().to(data))
            .route("/broken.csv", web::get().to(broken))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = server.addrs()[0].port();
    publisher.port.set(port).unwrap();
    tokio::spawn(server.run());

    let cpts = app.nantes_cpts();
    let admin = app.admin_token.clone();
    let mut ids = Vec::new();
    for (name, format, path) in [
        ("csv", "csv", "/feed.csv"),
        ("smart", "smart-sl", "/$bulk-publish"),
        ("broken", "csv", "/broken.csv"),
    ] {
        let (s, b) = app
            .post_json(&admin, "/v1/sources", json!({"name": name, "format": format, "cpts": cpts, "url": format!("http://127.0.0.1:{port}{path}"), "poll_interval_s": 60}))
            .await;
        assert_eq!(s, 201, "{b}");
        ids.push(b["id"].as_i64().unwrap());
    }
    let poller = app.state.poller.clone();
    let wait = |poller: Arc<sasnp::ingest::poll::Poller>, ids: Vec<i64>| async move {
        for _ in 0..200 {
            if ids.iter().all(|id| !poller.is_running(*id)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("polls did not finish");
    };
    let t0 = app.clock_now();
    // Each source is polled once: by this test's round, or by the scheduler's start-up round
    // when a loaded machine ran it late enough to see them.
    let polled = |poller: &sasnp::ingest::poll::Poller| {
        ids.iter()
            .all(|id| poller.next_at(*id).is_some_and(|t| t > t0))
    };
    for _ in 0..400 {
        poller.poll_due(&app.state).await.unwrap();
        wait(poller.clone(), ids.clone()).await;
        if polled(&poller) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(polled(&poller), "every source polled once");

    let op = app.token("osnp", sasnp::domain::Role::Operator, None).await;
    let (_, body) = app
        .search(&op, "lat=47.2184&lon=-1.5536&limit=100&radius_km=200")
        .await;
    let found = result_ids(&body);
    assert!(found.contains(&"pulled-1".to_string()), "{found:?}");
    let smart_slots = gen_feed.slots.len();
    let (_, report) = app
        .get_json(&format!("/v1/sources/{}/report", ids[1]), Some(&admin))
        .await;
    assert_eq!(
        report["accepted"].as_u64(),
        Some(smart_slots as u64),
        "{report}"
    );
    let (_, broken) = app
        .get_json(&format!("/v1/sources/{}", ids[2]), Some(&admin))
        .await;
    assert!(
        broken["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{broken}"
    );
    assert_eq!(broken["last_success_at"], serde_json::Value::Null);

    // Not due again before its interval (and the manifest's max-age of 120 s).
    assert!(poller.poll_due(&app.state).await.unwrap().is_empty());
    app.clock.advance(chrono::Duration::seconds(61));
    let started = poller.poll_due(&app.state).await.unwrap();
    assert_eq!(
        started,
        vec![ids[0]],
        "the CSV is due; SMART waits for max-age; the broken one backs off"
    );
    wait(poller.clone(), ids.clone()).await;
    assert_eq!(
        publisher.not_modified.load(Ordering::SeqCst),
        1,
        "If-None-Match sent, 304 honoured"
    );
    let (_, csv_src) = app
        .get_json(&format!("/v1/sources/{}", ids[0]), Some(&admin))
        .await;
    assert_eq!(
        csv_src["last_success_at"], "2026-11-23T10:01:01+01:00",
        "a 304 confirms freshness"
    );
    // one failure: twice the interval (120 s) ± 20 % jitter after the failed attempt
    let next = poller.next_at(ids[2]).unwrap();
    assert!(
        (t0 + 96..=t0 + 144).contains(&next),
        "backoff {} s",
        next - t0
    );
}

// ---------------------------------------------------------------------------------------------
// A scripted publisher: what it answers is changed between polls, and every request it receives
// is recorded (path, `_since`, conditional headers).

/// How the scripted publisher answers its next requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    /// The data, with the configured validators.
    Data,
    /// `500 Internal Server Error`.
    Error500,
    /// `200 OK` with a maintenance page instead of the feed.
    Garbage,
}

struct Script {
    answer: Answer,
    csv: String,
    etag: Option<&'static str>,
    last_modified: Option<&'static str>,
    /// SMART SL: the manifest's `transactionTime` and its full data set, by resource type.
    transaction_time: String,
    full: Vec<(String, String)>,
    /// SMART SL: when set, a manifest asked with `_since` lists these files (the changes) and
    /// echoes `_since` in `request`; when unset `_since` is ignored (full data, plain request).
    delta: Option<Vec<(String, String)>>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            answer: Answer::Data,
            csv: String::new(),
            etag: None,
            last_modified: None,
            transaction_time: "2026-11-23T08:55:00Z".into(),
            full: Vec::new(),
            delta: None,
        }
    }
}

/// One request the publisher received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    since: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
}

#[derive(Default)]
struct Scripted {
    script: std::sync::Mutex<Script>,
    seen: std::sync::Mutex<Vec<Seen>>,
    port: std::sync::OnceLock<u16>,
}

impl Scripted {
    fn edit(&self, f: impl FnOnce(&mut Script)) {
        f(&mut self.script.lock().unwrap());
    }
    /// The requests received so far for `path`.
    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.get().unwrap())
    }
}

fn record(req: &HttpRequest, p: &Scripted) -> Seen {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let since =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("_since").cloned());
    let seen = Seen {
        path: req.path().to_string(),
        since,
        if_none_match: h("If-None-Match"),
        if_modified_since: h("If-Modified-Since"),
    };
    p.seen.lock().unwrap().push(seen.clone());
    seen
}

/// Answers `body` as the script says, honouring the conditional headers of `seen`.
fn scripted_answer(s: &Script, seen: &Seen, content_type: &str, body: String) -> HttpResponse {
    match s.answer {
        Answer::Error500 => return HttpResponse::InternalServerError().body("database down"),
        Answer::Garbage => {
            return HttpResponse::Ok()
                .content_type(content_type)
                .body("<html><body>Maintenance en cours</body></html>");
        }
        Answer::Data => {}
    }
    let not_modified = match (s.etag, s.last_modified) {
        (Some(etag), _) => seen.if_none_match.as_deref() == Some(etag),
        (None, Some(lm)) => seen.if_modified_since.as_deref() == Some(lm),
        _ => false,
    };
    if not_modified {
        return HttpResponse::NotModified().finish();
    }
    let mut res = HttpResponse::Ok();
    if let Some(etag) = s.etag {
        res.insert_header(("ETag", etag));
    }
    if let Some(lm) = s.last_modified {
        res.insert_header(("Last-Modified", lm));
    }
    res.content_type(content_type).body(body)
}

async fn scripted_csv(req: HttpRequest, p: web::Data<Scripted>) -> HttpResponse {
    let seen = record(&req, &p);
    let s = p.script.lock().unwrap();
    scripted_answer(&s, &seen, "text/csv", s.csv.clone())
}

async fn scripted_manifest(req: HttpRequest, p: web::Data<Scripted>) -> HttpResponse {
    let seen = record(&req, &p);
    let s = p.script.lock().unwrap();
    let base = p.base();
    let (set, files, request) = match (&seen.since, &s.delta) {
        (Some(since), Some(delta)) => (
            "delta",
            delta,
            format!(
                "{base}/$bulk-publish?_since={}",
                form_urlencoded::byte_serialize(since.as_bytes()).collect::<String>()
            ),
        ),
        _ => ("full", &s.full, format!("{base}/$bulk-publish")),
    };
    let output: Vec<_> = files
        .iter()
        .map(|(t, _)| json!({"type": t, "url": format!("{base}/data/{set}/{t}.ndjson")}))
        .collect();
    let body = json!({"transactionTime": s.transaction_time, "request": request,
        "output": output, "error": []});
    scripted_answer(&s, &seen, "application/json", body.to_string())
}

async fn scripted_data(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    p: web::Data<Scripted>,
) -> HttpResponse {
    record(&req, &p);
    let (set, file) = path.into_inner();
    let t = file.trim_end_matches(".ndjson");
    let s = p.script.lock().unwrap();
    let files = if set == "delta" {
        s.delta.as_ref().unwrap_or(&s.full)
    } else {
        &s.full
    };
    match files.iter().find(|(k, _)| k == t) {
        Some((_, body)) => HttpResponse::Ok()
            .content_type("application/fhir+ndjson")
            .body(body.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}

/// Starts the scripted publisher on loopback; returns it and the handle that stops it.
fn start_scripted(script: Script) -> (web::Data<Scripted>, actix_web::dev::ServerHandle) {
    let p = web::Data::new(Scripted {
        script: std::sync::Mutex::new(script),
        ..Default::default()
    });
    let p2 = p.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(p2.clone())
            .route("/feed.csv", web::get().to(scripted_csv))
            .route("/$bulk-publish", web::get().to(scripted_manifest))
            .route("/data/{set}/{file}", web::get().to(scripted_data))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    p.port.set(server.addrs()[0].port()).unwrap();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (p, handle)
}

/// Creates a pulled source of `format` at `url`; returns its id.
async fn pulled_source(app: &common::TestApp, format: &str, url: &str, every: i64) -> i64 {
    let (s, b) = app
        .post_json(
            &app.admin_token,
            "/v1/sources",
            json!({"name": format!("pulled {format}"), "format": format, "cpts": app.nantes_cpts(),
                "url": url, "poll_interval_s": every}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b["id"].as_i64().unwrap()
}

/// Runs one scheduler round at the clock's now and waits for its fetches; returns the ids started.
async fn poll_round(app: &common::TestApp) -> Vec<i64> {
    let poller = app.state.poller.clone();
    let started = poller.poll_due(&app.state).await.unwrap();
    for _ in 0..400 {
        if started.iter().all(|id| !poller.is_running(*id)) {
            return started;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("polls did not finish");
}

/// The first poll of a new source, at the clock's now. The app's scheduler runs one round
/// when it starts: on a loaded machine that round may be the one that sees the new source.
async fn first_poll(app: &common::TestApp, id: i64) {
    let poller = app.state.poller.clone();
    for _ in 0..400 {
        poll_round(app).await;
        if !poller.is_running(id) && poller.next_at(id).is_some_and(|t| t > app.clock_now()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the first poll of source {id} did not finish");
}

/// Slot ids an operator finds around Nantes, sorted.
async fn found(app: &common::TestApp, op: &str) -> Vec<String> {
    let (s, body) = app
        .search(op, "lat=47.2184&lon=-1.5536&limit=100&radius_km=50")
        .await;
    assert_eq!(s, 200, "{body}");
    let mut ids = result_ids(&body);
    ids.sort();
    ids
}

async fn source(app: &common::TestApp, id: i64) -> serde_json::Value {
    let (s, b) = app
        .get_json(&format!("/v1/sources/{id}"), Some(&app.admin_token))
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

fn paris(t: i64) -> String {
    sasnp::http::search::paris(t)
}

fn two_slots() -> String {
    csv_feed(&[
        Row::new("a1", "2026-11-23 15:00", Place::NantesCentre),
        Row::new("a2", "2026-11-23 16:00", Place::Reze),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_after_a_good_one_keeps_the_data_and_backs_off() {
    // staleness out of the way: this test is about failures only
    let app = common::spawn_app_with(|s| s.pull_stale_factor = 1000).await;
    let (publisher, server) = start_scripted(Script {
        csv: two_slots(),
        etag: Some("\"v1\""),
        ..Default::default()
    });
    let id = pulled_source(&app, "csv", &format!("{}/feed.csv", publisher.base()), 60).await;
    let op = app.token("op", sasnp::domain::Role::Operator, None).await;
    let t0 = app.clock_now();
    first_poll(&app, id).await;
    assert_eq!(found(&app, &op).await, ["a1", "a2"]);
    let good = source(&app, id).await;
    assert_eq!(good["last_success_at"], paris(t0));
    assert_eq!(good["last_error"], serde_json::Value::Null);

    // A new version is published, but the server fails (500), then serves a maintenance page,
    // then is gone (connection refused): each time the data stays, the error is told, the
    // success is not moved, and the next attempt waits longer (2×, 4×, 8× the interval ± 20 %).
    publisher.edit(|s| {
        s.csv = csv_feed(&[Row::new("b1", "2026-11-23 17:00", Place::NantesCentre)]);
        s.etag = Some("\"v2\"");
    });
    let mut at = t0 + 60;
    for (n, answer) in [Answer::Error500, Answer::Garbage, Answer::Data]
        .into_iter()
        .enumerate()
    {
        if answer == Answer::Data {
            server.stop(true).await;
        } else {
            publisher.edit(|s| s.answer = answer);
        }
        app.clock
            .set(chrono::DateTime::from_timestamp(at - 1, 0).unwrap());
        assert!(poll_round(&app).await.is_empty(), "not due before {at}");
        app.clock
            .set(chrono::DateTime::from_timestamp(at, 0).unwrap());
        assert_eq!(poll_round(&app).await, vec![id], "due at {at}");
        assert_eq!(found(&app, &op).await, ["a1", "a2"], "after {answer:?}");
        let s = source(&app, id).await;
        let error = s["last_error"].as_str().unwrap_or_default().to_string();
        match n {
            0 => assert!(error.contains("HTTP 500"), "{s}"),
            1 => assert!(error.contains("no header row"), "{s}"),
            _ => assert!(error.starts_with("GET http://127.0.0.1:"), "{s}"),
        }
        assert_eq!(s["last_success_at"], paris(t0), "{s}");
        assert_eq!(s["last_attempt_at"], paris(at), "{s}");
        assert_eq!(s["stale"], false, "{s}");
        let backoff = 60 * (2 << n);
        let next = app.state.poller.next_at(id).unwrap();
        assert!(
            (at + backoff * 8 / 10..=at + backoff * 12 / 10).contains(&next),
            "failure {}: next attempt after {} s, not {backoff} ± 20 %",
            n + 1,
            next - at
        );
        at = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_source_goes_stale_after_three_intervals_without_success() {
    let app = spawn_app().await;
    let (publisher, _server) = start_scripted(Script {
        csv: two_slots(),
        ..Default::default()
    });
    let id = pulled_source(&app, "csv", &format!("{}/feed.csv", publisher.base()), 120).await;
    let op = app.token("op", sasnp::domain::Role::Operator, None).await;
    let t0 = app.clock_now();
    first_poll(&app, id).await;
    assert_eq!(found(&app, &op).await, ["a1", "a2"]);
    let s = source(&app, id).await;
    assert_eq!(
        (s["stale"].clone(), s["stale_after_s"].clone()),
        (json!(false), json!(360))
    );

    // The publisher breaks: attempts fail, the data stays offered until 3 × 120 s after the
    // last success, not a second more.
    publisher.edit(|s| s.answer = Answer::Error500);
    app.clock
        .set(chrono::DateTime::from_timestamp(t0 + 120, 0).unwrap());
    assert_eq!(poll_round(&app).await, vec![id]);
    app.clock
        .set(chrono::DateTime::from_timestamp(t0 + 359, 0).unwrap());
    assert_eq!(found(&app, &op).await, ["a1", "a2"], "just under the limit");
    assert_eq!(source(&app, id).await["stale"], false);
    app.clock
        .set(chrono::DateTime::from_timestamp(t0 + 360, 0).unwrap());
    assert!(
        found(&app, &op).await.is_empty(),
        "stale slots are withheld"
    );
    let s = source(&app, id).await;
    assert_eq!(s["stale"], true, "{s}");
    assert_eq!(s["last_success_at"], paris(t0));
    assert!(
        s["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{s}"
    );

    // The publisher recovers: the next successful poll (after the backoff) offers them again.
    publisher.edit(|s| s.answer = Answer::Data);
    let next = app.state.poller.next_at(id).unwrap().max(t0 + 400);
    app.clock
        .set(chrono::DateTime::from_timestamp(next, 0).unwrap());
    assert_eq!(poll_round(&app).await, vec![id]);
    assert_eq!(found(&app, &op).await, ["a1", "a2"]);
    let s = source(&app, id).await;
    assert_eq!(s["stale"], false, "{s}");
    assert_eq!(s["last_success_at"], paris(next), "{s}");
    assert_eq!(s["last_error"], serde_json::Value::Null, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_is_sent_back_and_a_304_confirms_freshness() {
    let app = spawn_app().await;
    const LM: &str = "Mon, 23 Nov 2026 08:30:00 GMT";
    let (publisher, _server) = start_scripted(Script {
        csv: two_slots(),
        last_modified: Some(LM),
        ..Default::default()
    });
    let id = pulled_source(&app, "csv", &format!("{}/feed.csv", publisher.base()), 60).await;
    let op = app.token("op", sasnp::domain::Role::Operator, None).await;
    let t0 = app.clock_now();
    first_poll(&app, id).await;
    assert_eq!(found(&app, &op).await, ["a1", "a2"]);
    let (_, report) = app
        .get_json(&format!("/v1/sources/{id}/report"), Some(&app.admin_token))
        .await;
    let first = publisher.seen("/feed.csv");
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].if_modified_since, None,
        "nothing to compare with yet"
    );
    assert_eq!(first[0].if_none_match, None);

    // Published again with the same Last-Modified: the poller asks with If-Modified-Since, gets
    // a 304, and the data is confirmed fresh without being read again.
    publisher.edit(|s| s.csv = csv_feed(&[Row::new("zz", "2026-11-23 17:00", Place::Reze)]));
    app.clock
        .set(chrono::DateTime::from_timestamp(t0 + 60, 0).unwrap());
    assert_eq!(poll_round(&app).await, vec![id]);
    let second = publisher.seen("/feed.csv");
    assert_eq!(second.len(), 2);
    assert_eq!(second[1].if_modified_since.as_deref(), Some(LM));
    assert_eq!(second[1].if_none_match, None, "no ETag was given");
    assert_eq!(found(&app, &op).await, ["a1", "a2"], "304: slots unchanged");
    let s = source(&app, id).await;
    assert_eq!(s["last_success_at"], paris(t0 + 60), "{s}");
    let (_, report2) = app
        .get_json(&format!("/v1/sources/{id}/report"), Some(&app.admin_token))
        .await;
    assert_eq!(report, report2, "no new snapshot was applied");

    // A newer Last-Modified: a 200, and the new data replaces the old.
    publisher.edit(|s| s.last_modified = Some("Mon, 23 Nov 2026 09:00:30 GMT"));
    app.clock
        .set(chrono::DateTime::from_timestamp(t0 + 120, 0).unwrap());
    assert_eq!(poll_round(&app).await, vec![id]);
    assert_eq!(
        publisher.seen("/feed.csv")[2].if_modified_since.as_deref(),
        Some(LM)
    );
    assert_eq!(found(&app, &op).await, ["zz"]);
}

// ---------------------------------------------------------------------------------------------
// SMART SL `_since`.

const T1: &str = "2026-11-23T08:55:00Z";
const T2: &str = "2026-11-23T09:00:30Z";

/// A free Slot line of the scripted clinic (`status` other than free when given).
fn slot(id: &str, start_hour: u32, status: &str) -> String {
    json!({"resourceType": "Slot", "id": id, "schedule": {"reference": "Schedule/s1"},
        "status": status, "start": format!("2026-11-23T{start_hour}:00:00+01:00"),
        "end": format!("2026-11-23T{start_hour}:20:00+01:00")})
    .to_string()
}

/// The NDJSON files of one SMART SL data set: a clinic in Nantes and `slots`.
fn smart_files(slots: &[String]) -> Vec<(String, String)> {
    let location = json!({"resourceType": "Location", "id": "l1", "name": "Cabinet Graslin",
        "address": {"line": ["2 rue Crébillon"], "postalCode": "44000", "city": "Nantes"},
        "position": {"latitude": 47.2184, "longitude": -1.5536}});
    let role = json!({"resourceType": "PractitionerRole", "id": "r1",
        "practitioner": {"display": "Dr Anne Morin"},
        "code": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante", "code": "10"}]}],
        "specialty": [{"coding": [{"code": "SM54"}]}]});
    let schedule = json!({"resourceType": "Schedule", "id": "s1",
        "actor": [{"reference": "Location/l1"}, {"reference": "PractitionerRole/r1"}]});
    vec![
        ("Location".into(), format!("{location}\n")),
        ("PractitionerRole".into(), format!("{role}\n")),
        ("Schedule".into(), format!("{schedule}\n")),
        (
            "Slot".into(),
            slots.iter().map(|s| format!("{s}\n")).collect(),
        ),
    ]
}

/// Only a Slot file: a change set touching slots only.
fn slot_changes(slots: &[String]) -> Vec<(String, String)> {
    vec![(
        "Slot".into(),
        slots.iter().map(|s| format!("{s}\n")).collect(),
    )]
}

/// (id, local start hour) of what an operator finds around Nantes, sorted.
async fn found_at(app: &common::TestApp, op: &str) -> Vec<(String, String)> {
    let (s, body) = app
        .search(op, "lat=47.2184&lon=-1.5536&limit=100&radius_km=50")
        .await;
    assert_eq!(s, 200, "{body}");
    let mut out: Vec<(String, String)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let start = r["start"].as_str().unwrap();
            (
                r["external_id"].as_str().unwrap().to_string(),
                start[11..13].to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn at(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(i, h)| (i.to_string(), h.to_string()))
        .collect()
}

/// The `_since` of each manifest request received so far.
fn sinces(p: &Scripted) -> Vec<Option<String>> {
    p.seen("/$bulk-publish")
        .into_iter()
        .map(|s| s.since)
        .collect()
}

async fn poll_at(app: &common::TestApp, t: i64, id: i64) {
    app.clock
        .set(chrono::DateTime::from_timestamp(t, 0).unwrap());
    assert_eq!(poll_round(app).await, vec![id], "due at {t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_changes_are_merged_into_the_last_full_set() {
    let app = common::spawn_app_with(|s| s.pull_stale_factor = 1000).await;
    let full = smart_files(&[
        slot("s1", 14, "free"),
        slot("s2", 15, "free"),
        slot("s3", 16, "free"),
    ]);
    let (publisher, _server) = start_scripted(Script {
        full: full.clone(),
        // honoured: s2 moved to 17:00, s4 new
        delta: Some(slot_changes(&[
            slot("s2", 17, "free"),
            slot("s4", 18, "free"),
        ])),
        ..Default::default()
    });
    let id = pulled_source(
        &app,
        "smart-sl",
        &format!("{}/$bulk-publish", publisher.base()),
        60,
    )
    .await;
    let op = app.token("op", sasnp::domain::Role::Operator, None).await;
    let t0 = app.clock_now();

    // First poll: full, no `_since`.
    first_poll(&app, id).await;
    assert_eq!(sinces(&publisher), [None]);
    assert_eq!(
        found_at(&app, &op).await,
        at(&[("s1", "14"), ("s2", "15"), ("s3", "16")])
    );

    // Second: asks changes since the first manifest's transactionTime; the changed and the new
    // slot join the unchanged ones.
    publisher.edit(|s| s.transaction_time = T2.into());
    poll_at(&app, t0 + 60, id).await;
    assert_eq!(sinces(&publisher), [None, Some(T1.into())]);
    assert_eq!(
        found_at(&app, &op).await,
        at(&[("s1", "14"), ("s2", "17"), ("s3", "16"), ("s4", "18")])
    );
    let (_, report) = app
        .get_json(&format!("/v1/sources/{id}/report"), Some(&app.admin_token))
        .await;
    assert_eq!(report["accepted"], 4, "{report}");
    assert_eq!(source(&app, id).await["last_success_at"], paris(t0 + 60));

    // Third: since the second manifest's time; s3 entered-in-error is withdrawn, the rest stays.
    publisher.edit(|s| {
        s.transaction_time = "2026-11-23T09:01:30Z".into();
        s.delta = Some(slot_changes(&[slot("s3", 16, "entered-in-error")]));
    });
    poll_at(&app, t0 + 120, id).await;
    assert_eq!(sinces(&publisher)[2].as_deref(), Some(T2));
    assert_eq!(
        found_at(&app, &op).await,
        at(&[("s1", "14"), ("s2", "17"), ("s4", "18")])
    );

    // A failed poll forgets the kept set: the next one is full again, and what the full set
    // holds is what is offered.
    publisher.edit(|s| s.answer = Answer::Error500);
    poll_at(&app, t0 + 180, id).await;
    assert_eq!(
        sinces(&publisher)[3].as_deref(),
        Some("2026-11-23T09:01:30Z")
    );
    publisher.edit(|s| s.answer = Answer::Data);
    let next = app.state.poller.next_at(id).unwrap();
    poll_at(&app, next, id).await;
    assert_eq!(sinces(&publisher)[4], None, "full after a failure");
    assert_eq!(
        found_at(&app, &op).await,
        at(&[("s1", "14"), ("s2", "15"), ("s3", "16")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_ignoring_since_is_read_as_a_full_set() {
    let app = spawn_app().await;
    let (publisher, _server) = start_scripted(Script {
        full: smart_files(&[
            slot("s1", 14, "free"),
            slot("s2", 15, "free"),
            slot("s3", 16, "free"),
        ]),
        delta: None,
        ..Default::default()
    });
    let id = pulled_source(
        &app,
        "smart-sl",
        &format!("{}/$bulk-publish", publisher.base()),
        60,
    )
    .await;
    let op = app.token("op", sasnp::domain::Role::Operator, None).await;
    let t0 = app.clock_now();
    first_poll(&app, id).await;
    assert_eq!(found_at(&app, &op).await.len(), 3);
    // s2 and s3 vanish from the full set, s4 appears; `_since` is asked but not echoed.
    publisher.edit(|s| {
        s.transaction_time = T2.into();
        s.full = smart_files(&[slot("s1", 14, "free"), slot("s4", 18, "free")]);
    });
    poll_at(&app, t0 + 60, id).await;
    assert_eq!(sinces(&publisher), [None, Some(T1.into())]);
    assert_eq!(found_at(&app, &op).await, at(&[("s1", "14"), ("s4", "18")]));
    // and the next poll asks since the new transactionTime
    poll_at(&app, t0 + 120, id).await;
    assert_eq!(sinces(&publisher)[2].as_deref(), Some(T2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_fetch_without_since_happens_every_hour() {
    let app = common::spawn_app_with(|s| s.pull_stale_factor = 1000).await;
    let (publisher, _server) = start_scripted(Script {
        full: smart_files(&[
            slot("s1", 14, "free"),
            slot("s2", 15, "free"),
            slot("s3", 16, "free"),
        ]),
        delta: Some(slot_changes(&[slot("s4", 18, "free")])),
        // one ETag per publication, on the full manifest and on the changes alike
        etag: Some("\"m1\""),
        ..Default::default()
    });
    let id = pulled_source(
        &app,
        "smart-sl",
        &format!("{}/$bulk-publish", publisher.base()),
        60,
    )
    .await;
    let op = app.token("op", sasnp::domain::Role::Operator, None).await;
    let t0 = app.clock_now();
    first_poll(&app, id).await;
    // The publisher drops s3 without an entered-in-error line: the changes do not say so.
    publisher.edit(|s| {
        s.transaction_time = T2.into();
        s.full = smart_files(&[
            slot("s1", 14, "free"),
            slot("s2", 15, "free"),
            slot("s4", 18, "free"),
        ]);
        s.etag = Some("\"m2\"");
    });
    poll_at(&app, t0 + 60, id).await;
    poll_at(&app, t0 + 3599, id).await;
    assert_eq!(sinces(&publisher), [None, Some(T1.into()), Some(T2.into())]);
    assert_eq!(
        found_at(&app, &op).await,
        at(&[("s1", "14"), ("s2", "15"), ("s3", "16"), ("s4", "18")]),
        "the dropped slot lingers until the full fetch"
    );
    // An hour after the last full fetch: full again, and the dropped slot is gone.
    poll_at(&app, t0 + 3600 + 59, id).await;
    assert_eq!(
        sinces(&publisher)[3],
        None,
        "full after {} s",
        sasnp::ingest::poll::FULL_REFRESH_S
    );
    assert_eq!(
        found_at(&app, &op).await,
        at(&[("s1", "14"), ("s2", "15"), ("s4", "18")])
    );
    // then changes again, since the full set's time
    poll_at(&app, t0 + 3600 + 119, id).await;
    assert_eq!(sinces(&publisher)[4].as_deref(), Some(T2));
    // The full set's ETag goes with the first request for changes; the changes' ETag does not
    // describe the full set, so it is not kept: the next requests are unconditional until a
    // full set is read again (sent back, the server's 304 would have kept the dropped slot).
    let inm: Vec<_> = publisher
        .seen("/$bulk-publish")
        .into_iter()
        .map(|s| s.if_none_match)
        .collect();
    assert_eq!(
        inm,
        [
            None,
            Some("\"m1\"".into()),
            None,
            None,
            Some("\"m2\"".into())
        ]
    );
}
