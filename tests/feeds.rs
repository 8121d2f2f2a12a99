//! Feed pushes over HTTP: snapshots replace atomically, failures change nothing, reports say
//! why, and a CPTS only reaches its own sources.

mod common;

use common::{Place, Row, TestApp, csv_feed, result_ids, spawn_app};
use sasnp::domain::Role;
use serde_json::json;

const AT_NANTES: &str = "lat=47.2184&lon=-1.5536&limit=50";

async fn setup() -> (TestApp, String, i64, String) {
    let app = spawn_app().await;
    let cpts = app.nantes_cpts();
    let publisher = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    let source = app.csv_source(&publisher, &cpts).await;
    let op = app.token("osnp", Role::Operator, None).await;
    (app, publisher, source, op)
}

#[tokio::test]
async fn a_second_snapshot_replaces_the_first() {
    let (app, publisher, source, op) = setup().await;
    let first = [
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 12:00", Place::Reze),
    ];
    let (_, r) = app.push_csv(&publisher, source, csv_feed(&first)).await;
    assert_eq!(
        (
            r["inserted"].as_u64(),
            r["updated"].as_u64(),
            r["removed"].as_u64()
        ),
        (Some(2), Some(0), Some(0))
    );
    let a_id = app.search(&op, AT_NANTES).await.1["results"][0]["slot_id"].clone();
    let second = [
        Row::new("a", "2026-11-23 11:10", Place::NantesCentre),
        Row::new("c", "2026-11-23 13:00", Place::SaintHerblain),
    ];
    let (_, r) = app.push_csv(&publisher, source, csv_feed(&second)).await;
    assert_eq!(
        (
            r["inserted"].as_u64(),
            r["updated"].as_u64(),
            r["removed"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{r}"
    );
    let (_, body) = app.search(&op, AT_NANTES).await;
    assert_eq!(result_ids(&body), ["a", "c"]);
    let now = app.clock_now();
    let (places, _) = app
        .state
        .db
        .run(move |c| sasnp::store::slots::load_for_index(c, Some(source), now))
        .await
        .unwrap();
    let mut names: Vec<_> = places.into_iter().filter_map(|p| p.name).collect();
    names.sort();
    assert_eq!(
        names.len(),
        2,
        "the place only b used is gone with it: {names:?}"
    );
    assert_eq!(
        body["results"][0]["start"], "2026-11-23T11:10:00+01:00",
        "the update is visible"
    );
    assert_eq!(
        body["results"][0]["slot_id"], a_id,
        "slot ids are stable across snapshots"
    );
    // the last report is kept for the coordinator
    let (s, report) = app
        .get_json(&format!("/v1/sources/{source}/report"), Some(&publisher))
        .await;
    assert_eq!(s, 200);
    assert_eq!(report, r);
}

/// `(inserted, updated, unchanged, removed)` of an ingest report.
fn counts(r: &serde_json::Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    (n("inserted"), n("updated"), n("unchanged"), n("removed"))
}

#[tokio::test]
async fn a_snapshot_writes_only_what_changed_and_counts_the_rest_unchanged() {
    let (app, publisher, source, op) = setup().await;
    let first = [
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 12:00", Place::Reze),
        Row::new("c", "2026-11-23 13:00", Place::SaintHerblain),
    ];
    let (_, r) = app.push_csv(&publisher, source, csv_feed(&first)).await;
    assert_eq!(counts(&r), (3, 0, 0, 0), "{r}");
    let (_, before) = app.search(&op, AT_NANTES).await;

    // The same agenda pushed again (a publisher that sends everything every day).
    let (_, r) = app.push_csv(&publisher, source, csv_feed(&first)).await;
    assert_eq!(counts(&r), (0, 0, 3, 0), "{r}");
    assert_eq!(
        app.search(&op, AT_NANTES).await.1["results"],
        before["results"],
        "same slots, same ids, same answer"
    );

    // One slot moved to another place, one gone, one new, one as it was.
    let second = [
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 12:00", Place::SaintHerblain),
        Row::new("d", "2026-11-23 14:00", Place::Reze),
    ];
    let (_, r) = app.push_csv(&publisher, source, csv_feed(&second)).await;
    assert_eq!(counts(&r), (1, 1, 1, 1), "{r}");
    let (_, body) = app.search(&op, AT_NANTES).await;
    assert_eq!(
        result_ids(&body),
        ["a", "d", "b"],
        "nearest first: b moved away"
    );
    let id_of = |body: &serde_json::Value, ext: &str| {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["external_id"] == ext)
            .map(|h| (h["slot_id"].clone(), h["place"]["name"].clone()))
            .unwrap()
    };
    assert_eq!(id_of(&body, "a"), id_of(&before, "a"));
    let (b_id, b_place) = id_of(&body, "b");
    assert_eq!(b_id, id_of(&before, "b").0, "a changed slot keeps its id");
    assert_ne!(b_place, id_of(&before, "b").1, "and shows its new place");

    // A slot that started is history: when it leaves the feed it is kept, not removed.
    app.clock.advance(chrono::Duration::minutes(65)); // 11:05 in Paris: `a` has started
    // (the lines of b and d as they were: `csv_feed` numbers practitioners by line)
    let without_a: String = csv_feed(&second)
        .split_inclusive("\r\n")
        .filter(|line| !line.starts_with("a;"))
        .collect();
    let (_, r) = app.push_csv(&publisher, source, without_a).await;
    assert_eq!(counts(&r), (0, 0, 2, 0), "{r}");
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["d", "b"]);
}

#[tokio::test]
async fn an_unreadable_upload_changes_nothing_and_says_why() {
    let (app, publisher, source, op) = setup().await;
    app.push_csv(
        &publisher,
        source,
        csv_feed(&[Row::new("a", "2026-11-23 11:00", Place::NantesCentre)]),
    )
    .await;
    let before = app.search(&op, AT_NANTES).await.1;
    // no slot id column: the whole file is unreadable
    let (s, body) = app
        .push_csv(
            &publisher,
            source,
            "debut;fin\r\n2026-11-23 12:00;2026-11-23 12:20\r\n".into(),
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["code"], "invalid_csv");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was changed")
    );
    // wrong content type
    let res = app
        .client
        .put(app.url(&format!("/v1/sources/{source}/slots")))
        .bearer_auth(&publisher)
        .header("Content-Type", "application/pdf")
        .body("%PDF")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    // FHIR that is not JSON
    let res = app
        .client
        .put(app.url(&format!("/v1/sources/{source}/slots")))
        .bearer_auth(&publisher)
        .header("Content-Type", "application/fhir+json")
        .body("{\"resourceType\": \"Bundle\", \"entry\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_json");
    assert_eq!(body["line"], 1);
    assert_eq!(
        app.search(&op, AT_NANTES).await.1["results"],
        before["results"],
        "previous data intact"
    );
    let (_, src) = app
        .get_json(&format!("/v1/sources/{source}"), Some(&publisher))
        .await;
    assert!(
        src["last_error"].as_str().unwrap().contains("JSON"),
        "{src}"
    );
    assert_eq!(
        src["stale"], false,
        "a failed attempt does not refresh, nor expire, the data"
    );
    let (_, report) = app
        .get_json(&format!("/v1/sources/{source}/report"), Some(&publisher))
        .await;
    assert_eq!(report["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn rejected_lines_are_reported_and_the_rest_is_applied() {
    let (app, publisher, source, op) = setup().await;
    let mut csv = csv_feed(&[
        Row::new("ok", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("ok", "2026-11-23 12:00", Place::NantesCentre),
        // inside the spring DST gap of 2027
        Row::new("gap", "2027-03-28 02:30", Place::NantesCentre),
        Row {
            minutes: 2,
            ..Row::new("short", "2026-11-23 13:00", Place::NantesCentre)
        },
    ]);
    csv.push_str("far;2026-11-23 11:00;20;libre;;;10;SM54;Cabinet;1 rue;75001;Paris;48,8566;2,3522;AMB;;;non\r\n");
    let (s, r) = app.push_csv(&publisher, source, csv).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["received"], 5);
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["rejected"]["duplicate_id"], 1);
    assert_eq!(r["rejected"]["nonexistent_local_time"], 1);
    assert_eq!(r["rejected"]["duration_out_of_range"], 1);
    assert_eq!(r["rejected"]["outside_region"], 1);
    assert_eq!(r["examples"]["duplicate_id"][0]["line"], 3, "{r}");
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["ok"]);
}

#[tokio::test]
async fn a_cpts_reaches_only_its_own_sources() {
    let (app, publisher_a, source_a, _) = setup().await;
    let other = app
        .state
        .geo
        .territories()
        .iter()
        .find(|t| t.id != app.nantes_cpts())
        .unwrap()
        .id
        .clone();
    let publisher_b = app.token("cpts-b", Role::Cpts, Some(&other)).await;
    let feed = csv_feed(&[Row::new("x", "2026-11-23 11:00", Place::NantesCentre)]);
    let (s, _) = app.push_csv(&publisher_b, source_a, feed.clone()).await;
    assert_eq!(s, 403, "CPTS B cannot push to CPTS A's source");
    let (s, _) = app
        .get_json(
            &format!("/v1/sources/{source_a}/report"),
            Some(&publisher_b),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .post_json(
            &publisher_b,
            "/v1/sources",
            json!({"name": "x", "format": "csv", "cpts": app.nantes_cpts()}),
        )
        .await;
    assert_eq!(s, 403, "nor create a source for it");
    let (_, mine) = app.get_json("/v1/sources", Some(&publisher_b)).await;
    assert_eq!(mine.as_array().unwrap().len(), 0);
    let (_, all) = app.get_json("/v1/sources", Some(&app.admin_token)).await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(app.push_csv(&publisher_a, source_a, feed).await.0, 200);
    assert_eq!(
        app.push_csv(&app.admin_token, source_a, csv_feed(&[]))
            .await
            .0,
        200,
        "an admin may push for any CPTS"
    );
    // source validation
    for (body, field) in [
        (json!({"name": "x", "format": "xml"}), "format"),
        (
            json!({"name": "x", "format": "csv", "url": "ftp://x"}),
            "url",
        ),
        (
            json!({"name": "x", "format": "csv", "url": "https://x.example/f.csv", "poll_interval_s": 10}),
            "poll_interval_s",
        ),
        (json!({"name": "", "format": "csv"}), "name"),
    ] {
        let (s, b) = app.post_json(&publisher_a, "/v1/sources", body).await;
        assert_eq!(s, 422, "{b}");
        assert!(b["detail"].as_str().unwrap().contains(field), "{b}");
    }
}

#[tokio::test]
async fn feeds_from_the_generator_ingest_exactly_in_every_format() {
    use sasnp::ingest::generate::{GenSpec, to_csv, to_fhir_bundle, to_ndjson};
    let (app, publisher, source, op) = setup().await;
    let spec = GenSpec::new(7, 300, 25, common::default_now());
    let generated = sasnp::ingest::generate::generate_on(&spec, app.state.geo.as_ref());
    let n = generated.slots.len() as u64;
    for (ct, body) in [
        ("application/fhir+json", to_fhir_bundle(&generated)),
        ("application/x-ndjson", to_ndjson(&generated)),
        ("text/csv", to_csv(&generated, b';')),
        ("text/csv; charset=utf-8", to_csv(&generated, b',')),
    ] {
        let (status, r) = app.push(&publisher, source, ct, body).await;
        assert_eq!(status, 200, "{ct}: {r}");
        assert_eq!(r["accepted"].as_u64(), Some(n), "{ct}: {r}");
    }
    let (_, body) = app.search(&op, "commune=44109&limit=100").await;
    assert!(body["count"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_cli_pushes_a_file_and_prints_the_report() {
    let (app, publisher, source, op) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agenda.csv");
    std::fs::write(
        &file,
        csv_feed(&[Row::new("cli-1", "2026-11-23 11:00", Place::NantesCentre)]),
    )
    .unwrap();
    let run = |token: String, file: std::path::PathBuf| {
        let server = app.address.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sasnp"))
                .args([
                    "feed",
                    "push",
                    "--source",
                    &source.to_string(),
                    "--format",
                    "csv",
                    "--server",
                    &server,
                ])
                .arg(&file)
                .env("SASNP_TOKEN", token)
                .output()
                .unwrap()
        })
    };
    let out = run(publisher.clone(), file.clone()).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["accepted"], 1);
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["cli-1"]);
    // refused (an operator token): non-zero exit, the problem printed
    let out = run(op.clone(), file).await.unwrap();
    assert!(!out.status.success());
    let problem: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(problem["status"], 403);
}

/// Runs `sql` (several statements) on the app's database.
fn execute_batch(app: &TestApp, sql: &str) {
    use diesel::connection::SimpleConnection;
    let mut c = app.state.db.conn().unwrap();
    sasnp::db_run!(&mut c, |c| c.batch_execute(sql)).unwrap();
}

/// The slot rows of `source` as `(external_id, start_at, end_at)`, and its places' names.
fn rows_of(app: &TestApp, source: i64) -> (Vec<(String, i64, i64)>, Vec<String>) {
    use sasnp::store::schema::{places, slots};
    let mut c = app.state.db.conn().unwrap();
    let slots = sasnp::db_run!(&mut c, |c| slots::table
        .filter(slots::source_id.eq(source))
        .select((slots::external_id, slots::start_at, slots::end_at))
        .order(slots::external_id)
        .load::<(String, i64, i64)>(c))
    .unwrap();
    let names = sasnp::db_run!(&mut c, |c| places::table
        .filter(places::source_id.eq(source))
        .select(places::name)
        .order(places::name)
        .load::<Option<String>>(c))
    .unwrap();
    (slots, names.into_iter().flatten().collect())
}

#[tokio::test]
async fn a_snapshot_the_database_refuses_midway_changes_nothing() {
    let (app, publisher, source, op) = setup().await;
    let first = [
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 12:00", Place::Reze),
        Row::new("s", "2026-11-23 13:00", Place::SaintHerblain),
    ];
    let (s, r) = app.push_csv(&publisher, source, csv_feed(&first)).await;
    assert_eq!(s, 200, "{r}");
    let rows_before = rows_of(&app, source);
    assert_eq!(rows_before.0.len(), 3);
    assert_eq!(rows_before.1.len(), 3);
    let search_before = app.search(&op, AT_NANTES).await.1;
    assert_eq!(result_ids(&search_before), ["a", "b", "s"]);
    let (_, src_before) = app
        .get_json(&format!("/v1/sources/{source}"), Some(&publisher))
        .await;

    // The database refuses to delete Saint-Herblain's place: the last write of a snapshot that
    // leaves it out, after its places, changed rows, new rows and removals were written.
    let refuse = match app.state.db.backend() {
        sasnp::store::Backend::Sqlite => {
            "CREATE TRIGGER refuse_place_delete BEFORE DELETE ON places \
             WHEN OLD.name = 'Cabinet Bourgonnière' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        }
        sasnp::store::Backend::Postgres => {
            "CREATE FUNCTION refuse_place_delete() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER refuse_place_delete BEFORE DELETE ON places FOR EACH ROW \
             WHEN (OLD.name = 'Cabinet Bourgonnière') EXECUTE FUNCTION refuse_place_delete();"
        }
    };
    execute_batch(&app, refuse);
    app.clock.advance(chrono::Duration::minutes(5));
    let second = [
        // changed (40 minutes), new place and new slot, b and s left out (removed)
        Row {
            minutes: 40,
            ..Row::new("a", "2026-11-23 11:00", Place::NantesCentre)
        },
        Row::new("c", "2026-11-23 14:00", Place::SuceSurErdre),
    ];
    let (s, body) = app.push_csv(&publisher, source, csv_feed(&second)).await;
    assert_eq!(s, 500, "{body}");
    assert_eq!(rows_of(&app, source), rows_before, "no row changed");
    assert_eq!(
        app.search(&op, AT_NANTES).await.1["results"],
        search_before["results"],
        "the index still serves the previous snapshot"
    );
    let (_, src) = app
        .get_json(&format!("/v1/sources/{source}"), Some(&publisher))
        .await;
    assert_eq!(src["last_success_at"], src_before["last_success_at"]);
    let error = src["last_error"].as_str().unwrap();
    assert!(error.contains("nothing was changed"), "{src}");
    assert!(
        !error.contains("refused by the test"),
        "no database text: {src}"
    );
    let (_, report) = app
        .get_json(&format!("/v1/sources/{source}/report"), Some(&publisher))
        .await;
    assert_eq!(report["error"]["code"], "store_error", "{report}");

    // The same snapshot once the database accepts it: applied whole.
    let drop = match app.state.db.backend() {
        sasnp::store::Backend::Sqlite => "DROP TRIGGER refuse_place_delete;",
        sasnp::store::Backend::Postgres => {
            "DROP TRIGGER refuse_place_delete ON places; DROP FUNCTION refuse_place_delete();"
        }
    };
    execute_batch(&app, drop);
    let (s, r) = app.push_csv(&publisher, source, csv_feed(&second)).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(counts(&r), (1, 1, 0, 2), "{r}");
    let (rows, names) = rows_of(&app, source);
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(rows[0].2 - rows[0].1, 40 * 60);
    assert_eq!(names, ["Cabinet Graslin", "Centre de santé de l'Erdre"]);
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["a", "c"]);
}

#[tokio::test]
async fn a_slot_withdrawn_as_entered_in_error_leaves_search() {
    use sasnp::ingest::generate::{GenSpec, to_ndjson};
    let (app, publisher, source, op) = setup().await;
    let spec = GenSpec::new(11, 200, 12, common::default_now());
    let generated = sasnp::ingest::generate::generate_on(&spec, app.state.geo.as_ref());
    let ndjson = String::from_utf8(to_ndjson(&generated)).unwrap();
    let (status, _) = app
        .push(&publisher, source, "application/x-ndjson", ndjson.clone())
        .await;
    assert_eq!(status, 200);
    const QUERY: &str = "commune=44109&limit=100&radius_km=60";
    let before = result_ids(&app.search(&op, QUERY).await.1);
    let gone = before.first().expect("generated slots near Nantes").clone();
    // The same feed with that slot's line withdrawn by its publisher.
    let mut withdrawn = 0;
    let changed: String = ndjson
        .lines()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["resourceType"] == "Slot" && v["id"] == gone.as_str() {
                v["status"] = json!("entered-in-error");
                withdrawn += 1;
            }
            v.to_string() + "\n"
        })
        .collect();
    assert_eq!(withdrawn, 1, "the slot's line is in the feed");
    let (status, r) = app
        .push(&publisher, source, "application/x-ndjson", changed)
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["entered_in_error"], 1, "{r}");
    assert_eq!(r["removed"], 1, "{r}");
    assert_eq!(
        r["accepted"].as_u64(),
        Some(generated.slots.len() as u64 - 1)
    );
    let after = result_ids(&app.search(&op, QUERY).await.1);
    assert!(!after.contains(&gone), "{gone} still offered");
    assert_eq!(
        after.len(),
        before.len() - usize::from(before.len() < 100),
        "only that slot left"
    );
}

#[tokio::test]
async fn the_report_counts_every_rejection_and_keeps_a_hundred_examples_per_reason() {
    let (app, publisher, source, op) = setup().await;
    // 151 lines with the same slot id: the first is kept, 150 are refused.
    let rows: Vec<Row> = (0..151)
        .map(|_| Row::new("same", "2026-11-23 11:00", Place::NantesCentre))
        .collect();
    let (s, r) = app.push_csv(&publisher, source, csv_feed(&rows)).await;
    assert_eq!(s, 200, "{r}");
    let (_, stored) = app
        .get_json(&format!("/v1/sources/{source}/report"), Some(&publisher))
        .await;
    for report in [&r, &stored] {
        assert_eq!(report["received"], 151, "{report}");
        assert_eq!(report["accepted"], 1);
        assert_eq!(report["rejected"]["duplicate_id"], 150);
        let examples = report["examples"]["duplicate_id"].as_array().unwrap();
        assert_eq!(examples.len(), 100);
        // lines numbered from the header (line 1): the kept row is line 2
        assert_eq!(examples[0]["line"], 3);
        assert_eq!(examples[99]["line"], 102);
    }
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["same"]);
}
