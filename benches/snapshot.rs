//! End to end: a 1M-slot SMART SL snapshot pushed over HTTP (parse → database → searchable),
//! on SQLite and, when `SASNP_BENCH_PG_URL` is set, on PostgreSQL, with nothing else running;
//! then the same snapshot into a second source while a thread searches the server's own index
//! (the first upload's slots) flat out, from before the upload until its answer: search latency
//! during the ingest against idle (and that ingest's time, the search thread holding a core).
//!
//! `cargo bench --all-features --bench snapshot` (`SASNP_BENCH_SLOTS=…` to change the size,
//! `SASNP_BENCH_LOG=sasnp=debug` to print the phases of each ingest, `SASNP_BENCH_AGAIN=1` to
//! time a second upload of the same snapshot into a source that has its rows (nothing to
//! write), `SASNP_BENCH_AGAIN=moved` the same slots all moved by 15 minutes (every row
//! rewritten);
//! `SASNP_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test` adds PostgreSQL: a scratch
//! database is created and dropped).

#[path = "search.rs"]
#[allow(dead_code)]
mod search_bench;

use sasnp::config::Settings;
use sasnp::domain::Role;
use sasnp::geo::Geography;
use sasnp::index::search::search;
use sasnp::ingest::generate::{GenSpec, to_ndjson};
use sasnp::startup::Application;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn p99(mut v: Vec<Duration>) -> (Duration, Duration, usize) {
    v.sort();
    let n = v.len();
    (v[n / 2], v[(n * 99 / 100).min(n - 1)], n)
}

async fn run(
    label: &str,
    database_url: String,
    body: actix_web::web::Bytes,
    again: Option<actix_web::web::Bytes>,
    slots: usize,
) {
    let settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url,
        log: "warn".into(),
        workers: Some(1),
        ..Default::default()
    };
    let app = Application::build(settings).await.expect("app");
    let port = app.port();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let geo = Geography::load(&Geography::default_dir()).unwrap();
    let cpts = state.geo.territories()[0].id.clone();
    let (_, token) = state
        .db
        .run(|c| sasnp::store::accounts::create_or_reuse(c, "bench", Role::Admin, None, 0))
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let new_source = |name: &'static str| {
        let req = client
            .post(format!("{base}/v1/sources"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": name, "format": "smart-sl", "cpts": cpts}));
        async move {
            let source: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
            source["id"].as_i64().unwrap()
        }
    };
    let put = |id: i64, body: actix_web::web::Bytes| {
        let req = client
            .put(format!("{base}/v1/sources/{id}/slots"))
            .bearer_auth(&token)
            .header("Content-Type", "application/x-ndjson")
            .body(body);
        async move {
            let t = Instant::now();
            let res = req.send().await.unwrap();
            let status = res.status();
            let report: serde_json::Value = res.json().await.unwrap();
            let took = t.elapsed();
            assert_eq!(status, 200, "{report}");
            (report, took)
        }
    };
    // First the snapshot alone (the end-to-end figure), then the same snapshot into a second
    // source while a thread searches the server's own index flat out (the latency figure):
    // that thread takes one of the machine's cores for the whole ingest.
    let alone_id = new_source("bench-alone").await;
    let (_, alone) = put(alone_id, body.clone()).await;
    let searchable_alone = state.index.load().slot_count;
    let id = new_source("bench").await;
    // The searches run on the live index (the first upload's slots), each loading the current
    // snapshot as a request does, so that the swap at the end of the ingest is measured too;
    // the operator queries of `benches/search.rs`, moved to the feed's hours.
    let shift = chrono::Utc::now().timestamp() - search_bench::NOW;
    let qs: Vec<sasnp::index::search::Query> = search_bench::queries(&geo, 5_000, 1)
        .into_iter()
        .map(|mut q| {
            q.now += shift;
            q.from += shift;
            q.to += shift;
            q
        })
        .collect();
    let measure = |stop: Arc<AtomicBool>,
                   live: actix_web::web::Data<sasnp::http::AppState>,
                   qs: Vec<sasnp::index::search::Query>| {
        std::thread::spawn(move || {
            let (mut times, mut hits) = (Vec::new(), 0usize);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) || times.len() < 200_000 {
                let q = &qs[i % qs.len()];
                let t = Instant::now();
                let snap = live.index.load();
                hits += std::hint::black_box(search(&snap, &live.index, q))
                    .hits
                    .len();
                times.push(t.elapsed());
                i += 1;
            }
            (times, hits)
        })
    };
    let stop = Arc::new(AtomicBool::new(true));
    let (idle, idle_hits) = measure(stop.clone(), state.clone(), qs.clone())
        .join()
        .unwrap();
    eprintln!(
        "{label}: idle searches found {:.1} slots each on average",
        idle_hits as f64 / idle.len() as f64
    );
    let stop = Arc::new(AtomicBool::new(false));
    let busy = measure(stop.clone(), state.clone(), qs.clone());
    let (report, took) = put(id, body).await;
    stop.store(true, Ordering::Relaxed);
    let (busy, _) = busy.join().unwrap();
    let searchable = state.index.load().slot_count - searchable_alone;
    assert_eq!(
        searchable, searchable_alone,
        "both uploads make the same slots searchable"
    );
    if let Some(body) = again {
        // A second snapshot into a source that has its rows (not the first load's plain
        // insert).
        let (report, took) = put(id, body).await;
        eprintln!(
            "{label}: the second snapshot took {took:.2?} (inserted {}, updated {}, unchanged {}, removed {})",
            report["inserted"], report["updated"], report["unchanged"], report["removed"]
        );
    }
    let (ip50, ip99, _) = p99(idle);
    let (bp50, bp99, bn) = p99(busy);
    println!(
        "| {label} | {slots} | {} | {searchable_alone} | **{alone:.2?}** | {:.0} | {took:.2?} | {ip50:.2?} / {ip99:.2?} | {bp50:.2?} / {bp99:.2?} ({bn} searches) | {:.2} |",
        report["accepted"],
        slots as f64 / alone.as_secs_f64(),
        bp99.as_secs_f64() / ip99.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches`: nothing to list
    }
    // Phase timings (parse, store, index) go to stderr: `SASNP_BENCH_LOG=sasnp=debug`.
    if let Ok(filter) = std::env::var("SASNP_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let slots: usize = std::env::var("SASNP_BENCH_SLOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // One runtime per backend, dropped after its run: the server it spawned (and its pool)
    // goes with it, before the scratch database is dropped.
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let start = chrono::Utc::now();
    let t = Instant::now();
    let geo = Geography::load(&Geography::default_dir()).unwrap();
    let feed =
        sasnp::ingest::generate::generate_on(&GenSpec::new(11, slots, slots / 50, start), &geo);
    let body = actix_web::web::Bytes::from(to_ndjson(&feed));
    let again = match std::env::var("SASNP_BENCH_AGAIN").as_deref() {
        Err(_) => None,
        Ok("moved") => {
            let later = start + chrono::Duration::minutes(15);
            let moved = sasnp::ingest::generate::generate_on(
                &GenSpec::new(11, slots, slots / 50, later),
                &geo,
            );
            Some(actix_web::web::Bytes::from(to_ndjson(&moved)))
        }
        Ok(_) => Some(body.clone()),
    };
    eprintln!(
        "generated {} slots, {} MB of NDJSON in {:.2?}",
        feed.slots.len(),
        body.len() / 1_000_000,
        t.elapsed()
    );
    println!(
        "| backend | slots sent | accepted | searchable after | PUT → searchable, alone | slots/s | PUT → searchable, searches running | search p50/p99 idle | p50/p99 during ingest | p99 ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    runtime().block_on(run(
        "SQLite",
        url,
        body.clone(),
        again.clone(),
        feed.slots.len(),
    ));
    #[cfg(feature = "postgres")]
    if let Ok(base) = std::env::var("SASNP_BENCH_PG_URL") {
        use diesel::{Connection, connection::SimpleConnection};
        let name = format!("sasnp_bench_{}", std::process::id());
        let mut admin = diesel::PgConnection::establish(&base).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (prefix, _) = base.rsplit_once('/').unwrap();
        runtime().block_on(run(
            "PostgreSQL",
            format!("{prefix}/{name}"),
            body,
            again,
            feed.slots.len(),
        ));
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    }
}
