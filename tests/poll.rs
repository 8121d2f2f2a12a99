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
    let mut started = poller.poll_due(&app.state).await.unwrap();
    started.sort();
    assert_eq!(started, ids);
    wait(poller.clone(), ids.clone()).await;

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
