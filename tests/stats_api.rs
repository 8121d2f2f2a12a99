//! The statistics surface end to end: uploads (validated whole, stored as versions), reads,
//! CSV export, the figures sasnp computes itself, and the `sasnp stats upload` command.
//! Runs on SQLite, and on PostgreSQL with `TEST_DATABASE_URL`.

mod common;

use common::{TestApp, spawn_app};
use sasnp::domain::Role;
use serde_json::{Value, json};

// Real territories of geodata/cpts-perimeters.csv (checked by `fixture_cpts_ids_exist`).
const NANTES: &str = "cpts-244400404"; // 44
const ERDRE: &str = "cpts-244400503"; // 44
const SAUMUR: &str = "cpts-200071876"; // 49
const LAVAL: &str = "cpts-200083392"; // 53
const SEVRE_LOIRE: &str = "cpts-200067866"; // 44

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/stats/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn post_upload(
    app: &TestApp,
    token: &str,
    query: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let res = app
        .client
        .post(app.url(&format!("/v1/stats/uploads?{query}")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn upload_csv(app: &TestApp, token: &str, preset: &str, body: &[u8]) -> (u16, Value) {
    post_upload(
        app,
        token,
        &format!("preset={preset}"),
        "text/csv",
        body.to_vec(),
    )
    .await
}

/// Nothing at all is stored: no upload, no record.
async fn assert_nothing_stored(app: &TestApp, case: &str) {
    let (s, list) = app
        .get_json("/v1/stats/uploads", Some(&app.admin_token))
        .await;
    assert_eq!(s, 200, "{case}");
    assert_eq!(list["uploads"], json!([]), "{case}: an upload was stored");
    let (s, read) = app
        .get_json("/v1/stats?group_by=cpts", Some(&app.admin_token))
        .await;
    assert_eq!(s, 200, "{case}");
    assert_eq!(read["rows"], json!([]), "{case}: records were stored");
}

fn reasons_at(body: &Value) -> Vec<(Option<u64>, String)> {
    body["problems"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|p| {
            (
                p["line"].as_u64(),
                p["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn ind<'a>(row: &'a Value, name: &str) -> &'a Value {
    &row["indicators"][name]
}

#[tokio::test]
async fn fixture_cpts_ids_exist() {
    let app = spawn_app().await;
    for id in [NANTES, ERDRE, SAUMUR, LAVAL, SEVRE_LOIRE] {
        assert!(app.state.geo.territory(id).is_some(), "{id}");
    }
    assert_eq!(app.state.geo.territory(SAUMUR).unwrap().department, "49");
    assert_eq!(app.state.geo.territory(LAVAL).unwrap().department, "53");
}

#[tokio::test]
async fn upload_stores_records_and_lists_the_upload() {
    let app = spawn_app().await;
    let (s, body) = upload_csv(
        &app,
        &app.admin_token,
        "canonical",
        &fixture("pdl-canonical.csv"),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["dry_run"], false);
    assert_eq!(body["summary"]["records"], 5);
    assert_eq!(body["summary"]["new"], 5);
    assert_eq!(body["summary"]["replaced"], 0);
    assert_eq!(body["records"][0]["cpts_id"], NANTES);
    assert_eq!(body["records"][0]["line"], 2);
    assert_eq!(body["records"][0]["action"], "new");
    assert_eq!(body["records"][0]["version"], 1);
    assert_eq!(body["records"][0]["indicators"]["requests_received"], 412);
    let id = body["upload"]["id"].as_i64().unwrap();
    assert_eq!(body["upload"]["account"], "test-admin");
    assert_eq!(body["upload"]["preset"], "canonical");
    assert_eq!(body["upload"]["uploaded_at"], "2026-11-23T09:00:00Z");

    let (s, list) = app
        .get_json("/v1/stats/uploads", Some(&app.admin_token))
        .await;
    assert_eq!(s, 200);
    let ups = list["uploads"].as_array().unwrap();
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0]["id"], id);
    assert_eq!(ups[0]["record_count"], 5);
    assert_eq!(ups[0]["content_type"], "csv");
    assert_eq!(ups[0]["cpts"], json!([SAUMUR, LAVAL, NANTES, ERDRE]));

    let (s, detail) = app
        .get_json(&format!("/v1/stats/uploads/{id}"), Some(&app.admin_token))
        .await;
    assert_eq!(s, 200);
    assert_eq!(detail["records"].as_array().unwrap().len(), 5);
    assert_eq!(detail["records"][0]["current"], true);
    assert_eq!(detail["records"][0]["history"].as_array().unwrap().len(), 1);
    let (s, _) = app
        .get_json("/v1/stats/uploads/9999", Some(&app.admin_token))
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn json_upload_is_accepted() {
    let app = spawn_app().await;
    let body = json!({"records": [
        {"cpts_id": LAVAL, "period_start": "2026-09-01", "period_end": "2026-09-30",
         "requests_received": 10, "requests_handled": 9, "median_delay_hours": null}
    ]});
    let (s, res) = post_upload(
        &app,
        &app.admin_token,
        "preset=canonical",
        "application/json",
        body.to_string(),
    )
    .await;
    assert_eq!(s, 201, "{res}");
    assert_eq!(res["upload"]["content_type"], "json");
    let (_, read) = app
        .get_json(&format!("/v1/stats?cpts={LAVAL}"), Some(&app.admin_token))
        .await;
    assert_eq!(ind(&read["rows"][0], "requests_received")["sum"], 10);
}

#[tokio::test]
async fn invalid_file_lists_every_problem_and_stores_nothing() {
    let app = spawn_app().await;
    let (s, body) = upload_csv(
        &app,
        &app.admin_token,
        "canonical",
        &fixture("pdl-invalid.csv"),
    )
    .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["code"], "upload_rejected");
    assert_eq!(body["errors"], 3);
    let problems = body["problems"].as_array().unwrap();
    let unknown = problems
        .iter()
        .find(|p| p["reason"] == "unknown_cpts")
        .unwrap();
    assert_eq!(unknown["line"], 3);
    assert_eq!(unknown["column"], "cpts_id");
    assert_eq!(unknown["severity"], "error");
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("cpts-inconnue")
    );
    let reasons = reasons_at(&body);
    assert!(reasons.contains(&(Some(4), "handled_exceeds_received".into())));
    assert!(reasons.contains(&(Some(5), "not_a_number".into())));
    let nan = problems
        .iter()
        .find(|p| p["reason"] == "not_a_number")
        .unwrap();
    assert_eq!(nan["column"], "requests_received");
    // Line 2 is valid, but the file is refused whole.
    assert_nothing_stored(&app, "pdl-invalid.csv").await;
    // The same file in a dry run: the same answer.
    let (s, _) = post_upload(
        &app,
        &app.admin_token,
        "preset=canonical&dry_run=true",
        "text/csv",
        fixture("pdl-invalid.csv"),
    )
    .await;
    assert_eq!(s, 422);
    assert_nothing_stored(&app, "pdl-invalid.csv dry run").await;
}

/// One case per validation rule: each is refused with its reason at its line, and nothing is
/// stored — checked through the API after each refusal.
#[tokio::test]
async fn every_validation_rule_refuses_and_stores_nothing() {
    let app = spawn_app().await;
    let head = "cpts_id,period_start,period_end,profession,requests_received,requests_handled,requests_from_regulation,slots_offered";
    let ok_row = format!("{ERDRE},2026-09-01,2026-09-30,,10,9,2,5");
    let csv = |rows: &[String]| {
        let mut s = format!("{head}\n{ok_row}\n");
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        s
    };
    // (case, preset, content type, body, expected reason, expected line)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        String,
        &'static str,
        Option<u64>,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown cpts",
            "canonical",
            "text/csv",
            csv(&["cpts-nope,2026-09-01,2026-09-30,,10,9,2,5".into()]),
            "unknown_cpts",
            Some(3),
        ),
        (
            "handled > received",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-01,2026-09-30,,10,11,2,5")]),
            "handled_exceeds_received",
            Some(3),
        ),
        (
            "regulation > received",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-01,2026-09-30,,10,9,12,5")]),
            "regulation_exceeds_received",
            Some(3),
        ),
        (
            "not a number",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-01,2026-09-30,,dix,9,2,5")]),
            "not_a_number",
            Some(3),
        ),
        (
            "not an integer",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-01,2026-09-30,,10.5,9,2,5")]),
            "not_an_integer",
            Some(3),
        ),
        (
            "negative",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-01,2026-09-30,,10,9,2,-5")]),
            "negative_number",
            Some(3),
        ),
        (
            "impossible date",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-02-31,2026-03-31,,10,9,2,5")]),
            "invalid_date",
            Some(3),
        ),
        (
            "end before start",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-30,2026-09-01,,10,9,2,5")]),
            "period_end_before_start",
            Some(3),
        ),
        (
            "period too long",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2025-01-01,2026-06-30,,10,9,2,5")]),
            "period_too_long",
            Some(3),
        ),
        (
            "period in the future",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-12-01,2026-12-31,,10,9,2,5")]),
            "period_in_future",
            Some(3),
        ),
        (
            "duplicate key",
            "canonical",
            "text/csv",
            csv(&[format!("{ERDRE},2026-09-01,2026-09-30,,11,9,2,5")]),
            "duplicate_key",
            Some(3),
        ),
        (
            "no indicator",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-01,2026-09-30,,,,,")]),
            "no_indicator",
            Some(3),
        ),
        (
            "invalid profession",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-01,2026-09-30,plombier,10,9,2,5")]),
            "invalid_profession",
            Some(3),
        ),
        (
            "missing value",
            "canonical",
            "text/csv",
            csv(&[",2026-09-01,2026-09-30,,10,9,2,5".into()]),
            "missing_value",
            Some(3),
        ),
        (
            "extra fields",
            "canonical",
            "text/csv",
            csv(&[format!("{NANTES},2026-09-01,2026-09-30,,10,9,2,5,7")]),
            "extra_fields",
            Some(3),
        ),
        (
            "missing column",
            "canonical",
            "text/csv",
            format!("cpts_id,period_start,requests_received\n{NANTES},2026-09-01,4\n"),
            "missing_column",
            Some(1),
        ),
        (
            "unknown column",
            "canonical",
            "text/csv",
            format!(
                "cpts_id,period_start,period_end,requests_received,satisfaction\n{NANTES},2026-09-01,2026-09-30,4,5\n"
            ),
            "unknown_column",
            Some(1),
        ),
        (
            "duplicate column",
            "canonical",
            "text/csv",
            format!(
                "cpts_id,period_start,period_end,requests_received,Requests_Received\n{NANTES},2026-09-01,2026-09-30,4,5\n"
            ),
            "duplicate_column",
            Some(1),
        ),
        (
            "empty file",
            "canonical",
            "text/csv",
            format!("{head}\n"),
            "empty_file",
            None,
        ),
        (
            "invalid json",
            "canonical",
            "application/json",
            "[{\"cpts_id\": ".into(),
            "invalid_json",
            None,
        ),
        (
            "json for a spreadsheet preset",
            "fr-tableur",
            "application/json",
            format!(
                "[{{\"cpts_id\": \"{NANTES}\", \"period_start\": \"2026-09-01\", \"period_end\": \"2026-09-30\", \"requests_received\": 1}}]"
            ),
            "invalid_json",
            None,
        ),
        (
            "json record: unknown cpts and bad number",
            "canonical",
            "application/json",
            format!(
                "[{{\"cpts_id\": \"{NANTES}\", \"period_start\": \"2026-09-01\", \"period_end\": \"2026-09-30\", \"requests_received\": 1}},\
                  {{\"cpts_id\": \"cpts-x\", \"period_start\": \"2026-09-01\", \"period_end\": \"2026-09-30\", \"requests_received\": 1}}]"
            ),
            "unknown_cpts",
            Some(2),
        ),
        (
            "fr-tableur impossible date",
            "fr-tableur",
            "text/csv",
            format!(
                "CPTS;Début période;Fin période;Demandes reçues\n{NANTES};01/09/2026;30/09/2026;3\n{ERDRE};31/02/2026;30/03/2026;4\n"
            ),
            "invalid_date",
            Some(3),
        ),
        (
            "mensuel-large unknown indicator",
            "mensuel-large",
            "text/csv",
            format!(
                "cpts;indicateur;2026-09;2026-10\n{NANTES};Demandes reçues;150;162\n{NANTES};Demandes traitées;140;158\n"
            ),
            "unknown_indicator",
            Some(3),
        ),
        (
            "mensuel-large duplicate row",
            "mensuel-large",
            "text/csv",
            format!(
                "cpts;indicateur;2026-09;2026-10\n{NANTES};Demandes reçues;150;162\n{NANTES};Demandes reçues;1;2\n"
            ),
            "duplicate_row",
            Some(3),
        ),
        (
            "mensuel-large month in the future",
            "mensuel-large",
            "text/csv",
            format!("cpts;indicateur;2026-10;2026-12\n{NANTES};Demandes reçues;150;162\n"),
            "period_in_future",
            Some(2),
        ),
    ];
    for (case, preset, ct, body, reason, line) in cases {
        for dry in [true, false] {
            let (s, res) = post_upload(
                &app,
                &app.admin_token,
                &format!("preset={preset}&dry_run={dry}"),
                ct,
                body.clone(),
            )
            .await;
            assert_eq!(s, 422, "{case}: {res}");
            assert_eq!(res["code"], "upload_rejected", "{case}");
            let found = reasons_at(&res);
            assert!(
                found.iter().any(|(l, r)| r == reason && *l == line),
                "{case}: expected {reason} at {line:?}, got {found:?}"
            );
            assert_nothing_stored(&app, case).await;
        }
    }
}

#[tokio::test]
async fn request_errors_are_problem_json() {
    let app = spawn_app().await;
    let csv = fixture("pdl-canonical.csv");
    let (s, b) = post_upload(
        &app,
        &app.admin_token,
        "preset=nope",
        "text/csv",
        csv.clone(),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("unknown_preset")));
    let (s, b) = post_upload(&app, &app.admin_token, "", "text/csv", csv.clone()).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("missing_preset")));
    let (s, b) = post_upload(
        &app,
        &app.admin_token,
        "preset=canonical",
        "application/xml",
        csv.clone(),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (415, Some("unsupported_content_type"))
    );
    let big = vec![b'a'; sasnp::http::stats::MAX_UPLOAD_BYTES + 1];
    let (s, b) = post_upload(&app, &app.admin_token, "preset=canonical", "text/csv", big).await;
    assert_eq!((s, b["code"].as_str()), (413, Some("upload_too_large")));
    let res = app
        .client
        .post(app.url("/v1/stats/uploads?preset=canonical"))
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let (s, b) = app
        .get_json("/v1/stats?group_by=week", Some(&app.admin_token))
        .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_group_by")));
    let (s, b) = app
        .get_json("/v1/stats?cpts=cpts-nope", Some(&app.admin_token))
        .await;
    assert_eq!((s, b["code"].as_str()), (422, Some("unknown_cpts")));
    let (s, b) = app
        .get_json(
            "/v1/stats?from=2026-10-01&to=2026-09-01",
            Some(&app.admin_token),
        )
        .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_period")));
    let (s, b) = app
        .get_json("/v1/stats/computed", Some(&app.admin_token))
        .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("missing_period")));
    assert_nothing_stored(&app, "request errors").await;
}

#[tokio::test]
async fn cpts_account_uploads_and_reads_only_its_own_cpts() {
    let app = spawn_app().await;
    let nantes = app.token("coord-nantes", Role::Cpts, Some(NANTES)).await;
    let erdre = app.token("coord-erdre", Role::Cpts, Some(ERDRE)).await;

    // A row of another CPTS: the whole file is refused, the line named, nothing stored.
    let mixed = format!(
        "cpts_id,period_start,period_end,requests_received\n\
         {NANTES},2026-09-01,2026-09-30,10\n\
         {ERDRE},2026-09-01,2026-09-30,20\n"
    );
    let (s, body) = upload_csv(&app, &nantes, "canonical", mixed.as_bytes()).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(
        reasons_at(&body),
        vec![(Some(3), "cpts_not_allowed".to_string())]
    );
    assert!(
        body["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains(ERDRE)
    );
    assert_nothing_stored(&app, "cpts_not_allowed").await;

    // Its own rows are accepted.
    let own = format!(
        "cpts_id,period_start,period_end,requests_received\n{NANTES},2026-09-01,2026-09-30,10\n"
    );
    let (s, body) = upload_csv(&app, &nantes, "canonical", own.as_bytes()).await;
    assert_eq!(s, 201, "{body}");
    let nantes_upload = body["upload"]["id"].as_i64().unwrap();
    let other = format!(
        "cpts_id,period_start,period_end,requests_received\n{ERDRE},2026-09-01,2026-09-30,20\n"
    );
    let (s, body) = upload_csv(&app, &erdre, "canonical", other.as_bytes()).await;
    assert_eq!(s, 201, "{body}");
    let erdre_upload = body["upload"]["id"].as_i64().unwrap();

    // Reads: its own by default, another CPTS is 403.
    let (s, read) = app.get_json("/v1/stats?group_by=cpts", Some(&nantes)).await;
    assert_eq!(s, 200);
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["group"]["cpts_id"], NANTES);
    for path in [
        format!("/v1/stats?cpts={ERDRE}"),
        format!("/v1/stats?cpts={NANTES},{ERDRE}"),
        format!("/v1/stats.csv?cpts={ERDRE}"),
        format!("/v1/stats/uploads?cpts={ERDRE}"),
        format!("/v1/stats/uploads/{erdre_upload}"),
        format!("/v1/stats/computed?cpts={ERDRE}&from=2026-11-01&to=2026-11-30"),
    ] {
        let (s, b) = app.get_json(&path, Some(&nantes)).await;
        assert_eq!(s, 403, "{path}: {b}");
    }
    let (s, list) = app.get_json("/v1/stats/uploads", Some(&nantes)).await;
    assert_eq!(s, 200);
    let ids: Vec<i64> = list["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![nantes_upload]);
    let (s, _) = app
        .get_json(&format!("/v1/stats/uploads/{nantes_upload}"), Some(&nantes))
        .await;
    assert_eq!(s, 200);
    // Department filter cannot widen the scope.
    let (_, read) = app
        .get_json("/v1/stats?department=44&group_by=cpts", Some(&nantes))
        .await;
    assert_eq!(read["rows"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn analyst_reads_but_cannot_upload_and_operator_sees_nothing() {
    let app = spawn_app().await;
    let analyst = app.token("ars", Role::Analyst, None).await;
    let operator = app.token("osnp", Role::Operator, None).await;
    let csv = fixture("pdl-canonical.csv");
    for t in [&analyst, &operator] {
        let (s, _) = upload_csv(&app, t, "canonical", &csv).await;
        assert_eq!(s, 403);
        let (s, _) = post_upload(
            &app,
            t,
            "preset=canonical&dry_run=true",
            "text/csv",
            csv.clone(),
        )
        .await;
        assert_eq!(s, 403);
    }
    assert_nothing_stored(&app, "analyst/operator upload").await;
    let (s, _) = upload_csv(&app, &app.admin_token, "canonical", &csv).await;
    assert_eq!(s, 201);
    for path in [
        "/v1/stats?group_by=cpts",
        "/v1/stats.csv",
        "/v1/stats/uploads",
        "/v1/stats/uploads/1",
    ] {
        let (s, _) = app.get_json(path, Some(&analyst)).await;
        assert_eq!(s, 200, "{path}");
        let (s, _) = app.get_json(path, Some(&operator)).await;
        assert_eq!(s, 403, "{path}");
    }
    let (_, read) = app
        .get_json("/v1/stats?group_by=cpts", Some(&analyst))
        .await;
    assert_eq!(read["rows"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn reupload_replaces_figures_and_keeps_history() {
    let app = spawn_app().await;
    let nantes = app.token("coord-nantes", Role::Cpts, Some(NANTES)).await;
    let erdre = app.token("coord-erdre", Role::Cpts, Some(ERDRE)).await;
    let (s, first) = upload_csv(
        &app,
        &app.admin_token,
        "canonical",
        &fixture("pdl-canonical.csv"),
    )
    .await;
    assert_eq!(s, 201);
    let first_id = first["upload"]["id"].as_i64().unwrap();

    app.clock.advance(chrono::Duration::days(1));
    // Médecins corrected (412 → 500), infirmiers sent again unchanged.
    let again = format!(
        "cpts_id,period_start,period_end,profession,requests_received,requests_handled,consultations_done,redirected_emergency,redirected_other,no_shows,participating_professionals,median_delay_hours\n\
         {NANTES},2026-09-01,2026-09-30,10,500,389,351,12,18,8,23,18.5\n\
         {NANTES},2026-09-01,2026-09-30,60,86,84,80,1,2,1,9,6\n"
    );
    let (s, second) = upload_csv(&app, &nantes, "canonical", again.as_bytes()).await;
    assert_eq!(s, 201, "{second}");
    let second_id = second["upload"]["id"].as_i64().unwrap();
    assert_eq!(second["summary"]["new"], 0);
    assert_eq!(second["summary"]["replaced"], 2);
    assert_eq!(
        second["summary"]["unchanged"], 1,
        "profession 60 is sent unchanged"
    );
    assert_eq!(second["records"][0]["previous"]["identical"], false);
    assert_eq!(second["records"][1]["previous"]["identical"], true);
    let prev = &second["records"][0]["previous"];
    assert_eq!(prev["version"], 1);
    assert_eq!(prev["upload_id"], first_id);
    assert_eq!(prev["account"], "test-admin");
    assert_eq!(prev["uploaded_at"], "2026-11-23T09:00:00Z");
    assert_eq!(second["records"][0]["version"], 2);
    assert_eq!(second["records"][0]["action"], "replace");

    // The read sees the new figures only.
    let (_, read) = app
        .get_json(&format!("/v1/stats?cpts={NANTES}"), Some(&app.admin_token))
        .await;
    let row = &read["rows"][0];
    assert_eq!(row["records"], 2);
    assert_eq!(ind(row, "requests_received")["sum"], 586);
    // slots_offered was in version 1 only: the replaced record no longer counts it.
    assert_eq!(ind(row, "slots_offered")["records"], 0);
    assert_eq!(ind(row, "slots_offered")["sum"], Value::Null);

    // The same file once more: identical, version 3.
    app.clock.advance(chrono::Duration::hours(2));
    let (s, third) = upload_csv(&app, &nantes, "canonical", again.as_bytes()).await;
    assert_eq!(s, 201);
    assert_eq!(third["summary"]["unchanged"], 2);
    assert_eq!(third["records"][1]["previous"]["identical"], true);
    assert_eq!(third["records"][1]["version"], 3);
    let third_id = third["upload"]["id"].as_i64().unwrap();

    // History: every upload listed newest first, each key's versions reachable.
    let (_, list) = app
        .get_json("/v1/stats/uploads", Some(&app.admin_token))
        .await;
    let ups = list["uploads"].as_array().unwrap();
    assert_eq!(ups.len(), 3);
    assert_eq!(ups[0]["id"], third_id);
    assert_eq!(ups[0]["account"], "coord-nantes");
    assert_eq!(ups[0]["uploaded_at"], "2026-11-24T11:00:00Z");
    assert_eq!(ups[1]["replaced_count"], 2);
    assert_eq!(ups[2]["id"], first_id);
    let (_, list) = app.get_json("/v1/stats/uploads", Some(&erdre)).await;
    assert_eq!(
        list["uploads"].as_array().unwrap().len(),
        1,
        "erdre sees the first upload only"
    );

    let (s, detail) = app
        .get_json(&format!("/v1/stats/uploads/{second_id}"), Some(&nantes))
        .await;
    assert_eq!(s, 200);
    let rec = &detail["records"][0];
    assert_eq!(rec["version"], 2);
    assert_eq!(rec["current"], false);
    assert_eq!(rec["superseded_by"], third_id);
    let history = rec["history"].as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["version"], 1);
    assert_eq!(history[0]["account"], "test-admin");
    assert_eq!(history[0]["superseded_by"], second_id);
    assert_eq!(history[0]["indicators"]["requests_received"], 412);
    assert_eq!(history[1]["indicators"]["requests_received"], 500);
    assert_eq!(history[1]["account"], "coord-nantes");
    assert_eq!(history[2]["superseded_by"], Value::Null);

    // The first upload, seen by Erdre: only Erdre's record.
    let (s, detail) = app
        .get_json(&format!("/v1/stats/uploads/{first_id}"), Some(&erdre))
        .await;
    assert_eq!(s, 200);
    let recs = detail["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["cpts_id"], ERDRE);
    assert_eq!(recs[0]["current"], true);
}

#[tokio::test]
async fn dry_run_answers_the_would_be_result_and_stores_nothing() {
    let app = spawn_app().await;
    let csv = fixture("pdl-canonical.csv");
    let (s, body) = post_upload(
        &app,
        &app.admin_token,
        "preset=canonical&dry_run=true",
        "text/csv",
        csv.clone(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["upload"], Value::Null);
    assert_eq!(body["summary"]["new"], 5);
    assert_eq!(body["records"].as_array().unwrap().len(), 5);
    assert_nothing_stored(&app, "dry run").await;

    let (s, _) = upload_csv(&app, &app.admin_token, "canonical", &csv).await;
    assert_eq!(s, 201);
    let changed = format!(
        "cpts_id,period_start,period_end,requests_received\n\
         {ERDRE},2026-09-01,2026-09-30,999\n\
         {ERDRE},2026-08-01,2026-08-31,50\n"
    );
    let (s, body) = post_upload(
        &app,
        &app.admin_token,
        "preset=canonical&dry_run=true",
        "text/csv",
        changed,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["summary"]["new"], 1);
    assert_eq!(body["summary"]["replaced"], 1);
    assert_eq!(body["records"][0]["action"], "replace");
    assert_eq!(body["records"][0]["previous"]["version"], 1);
    assert_eq!(body["records"][0]["previous"]["identical"], false);
    assert_eq!(body["records"][1]["action"], "new");
    let (_, list) = app
        .get_json("/v1/stats/uploads", Some(&app.admin_token))
        .await;
    assert_eq!(list["uploads"].as_array().unwrap().len(), 1);
    let (_, read) = app
        .get_json(&format!("/v1/stats?cpts={ERDRE}"), Some(&app.admin_token))
        .await;
    assert_eq!(ind(&read["rows"][0], "requests_received")["sum"], 205);
}

#[tokio::test]
async fn aggregates_by_cpts_department_region_are_hand_computed() {
    let app = spawn_app().await;
    let (s, _) = upload_csv(
        &app,
        &app.admin_token,
        "canonical",
        &fixture("pdl-canonical.csv"),
    )
    .await;
    assert_eq!(s, 201);
    let get = |q: &str| {
        let q = q.to_string();
        let app = &app;
        async move {
            let (s, b) = app
                .get_json(&format!("/v1/stats?{q}"), Some(&app.admin_token))
                .await;
            assert_eq!(s, 200, "{q}: {b}");
            b
        }
    };
    let sept = "from=2026-09-01&to=2026-09-30";

    // Departments (September: Laval's October record lies outside).
    let b = get(&format!("{sept}&group_by=department")).await;
    assert_eq!(b["group_by"], json!(["department"]));
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["group"]["department"], "44");
    assert_eq!(rows[0]["records"], 3);
    assert_eq!(
        ind(&rows[0], "requests_received"),
        &json!({"sum": 703, "records": 3})
    );
    assert_eq!(
        ind(&rows[0], "requests_from_regulation"),
        &json!({"sum": 158, "records": 2})
    );
    assert_eq!(
        ind(&rows[0], "slots_offered"),
        &json!({"sum": 650, "records": 2})
    );
    // (18.5×351 + 6×80 + 22.25×176) / (351+80+176) = 10889.5 / 607
    assert_eq!(
        ind(&rows[0], "median_delay_hours"),
        &json!({"value": 17.94, "records": 3, "weighting": "consultations_done"})
    );
    assert_eq!(rows[1]["group"]["department"], "49");
    assert_eq!(
        ind(&rows[1], "requests_received"),
        &json!({"sum": 150, "records": 1})
    );
    assert_eq!(
        ind(&rows[1], "requests_from_regulation"),
        &json!({"sum": null, "records": 0})
    );
    assert_eq!(ind(&rows[1], "median_delay_hours")["value"], 20.5);

    // Region: (10889.5 + 20.5×128) / (607+128) = 13513.5 / 735
    let b = get(&format!("{sept}&group_by=region")).await;
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["group"]["region"], "52");
    assert_eq!(rows[0]["records"], 4);
    assert_eq!(ind(&rows[0], "requests_received")["sum"], 853);
    assert_eq!(ind(&rows[0], "median_delay_hours")["value"], 18.39);

    // CPTS: Nantes = 412 + 86; delay (18.5×351 + 6×80) / 431.
    let b = get(&format!("{sept}&group_by=cpts")).await;
    let rows = b["rows"].as_array().unwrap();
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["group"]["cpts_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![SAUMUR, NANTES, ERDRE]);
    assert_eq!(rows[1]["group"]["cpts_name"], "CPTS Nantes Métropole");
    assert_eq!(ind(&rows[1], "requests_received")["sum"], 498);
    assert_eq!(ind(&rows[1], "median_delay_hours")["value"], 16.18);

    // No window: every record; the total row without group_by.
    let b = get("").await;
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["group"], json!({}));
    assert_eq!(rows[0]["records"], 5);
    assert_eq!(ind(&rows[0], "requests_received")["sum"], 953);

    // A record counts only when its whole period lies inside [from, to].
    let b = get("from=2026-09-01&to=2026-10-15").await;
    assert_eq!(ind(&b["rows"][0], "requests_received")["sum"], 853);
    let b = get("from=2026-09-02&to=2026-10-31").await;
    assert_eq!(ind(&b["rows"][0], "requests_received")["sum"], 100);

    // Department filter, several group dimensions, profession groups.
    let b = get("department=49&group_by=cpts").await;
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["group"]["cpts_id"], SAUMUR);
    let b = get("group_by=cpts,period").await;
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["group"]["period_start"], "2026-09-01");
    assert_eq!(rows[0]["group"]["period_end"], "2026-09-30");
    let b = get("group_by=profession").await;
    let rows = b["rows"].as_array().unwrap();
    let by_prof: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| {
            (
                r["group"]["profession"].clone(),
                ind(r, "requests_received")["sum"].clone(),
            )
        })
        .collect();
    assert_eq!(
        by_prof,
        vec![
            (Value::Null, json!(455)),
            (json!("10"), json!(412)),
            (json!("60"), json!(86))
        ]
    );
    let b = get(&format!("cpts={NANTES},{SAUMUR}&group_by=department")).await;
    assert_eq!(b["rows"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn csv_export_canonical_and_french() {
    let app = spawn_app().await;
    let (s, _) = upload_csv(
        &app,
        &app.admin_token,
        "canonical",
        &fixture("pdl-canonical.csv"),
    )
    .await;
    assert_eq!(s, 201);
    let res = app
        .get(
            "/v1/stats.csv?from=2026-09-01&to=2026-09-30&group_by=department",
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = res.text().await.unwrap();
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("department,records,requests_received,requests_received_records")
    );
    let l44 = lines.next().unwrap();
    assert!(l44.starts_with("44,3,703,3,"), "{l44}");
    assert!(l44.ends_with(",17.94,3,consultations_done"), "{l44}");

    let res = app
        .get(
            "/v1/stats.csv?from=2026-09-01&to=2026-09-30&group_by=department&sep=;",
            Some(&app.admin_token),
        )
        .await;
    let bytes = res.bytes().await.unwrap();
    assert!(bytes.starts_with("\u{feff}".as_bytes()));
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        text.contains("Département;Lignes;Demandes reçues"),
        "{text}"
    );
    assert!(text.contains("\r\n44;3;703;3;"), "{text}");
    assert!(
        text.contains(";17,94;3;consultations réalisées\r\n"),
        "{text}"
    );
    let (s, b) = app
        .get_json("/v1/stats.csv?sep=|", Some(&app.admin_token))
        .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_sep")));
}

#[tokio::test]
async fn schema_json_is_served() {
    let app = spawn_app().await;
    let res = app.get("/v1/stats/schema.json", None).await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/schema+json");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(v["properties"]["cpts_id"].is_object());
}

#[tokio::test]
async fn fr_tableur_with_cpts_names_resolves_ids() {
    let app = spawn_app().await;
    let (s, body) = upload_csv(
        &app,
        &app.admin_token,
        "fr-tableur",
        &fixture("pdl-fr-tableur.csv"),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["records"][0]["cpts_id"], SEVRE_LOIRE);
    assert_eq!(body["records"][0]["profession"], "10");
    assert_eq!(body["records"][0]["indicators"]["requests_received"], 1234);
    assert_eq!(body["records"][1]["cpts_id"], ERDRE);
    assert_eq!(body["records"][1]["indicators"]["median_delay_hours"], 26.0);
    let (_, read) = app
        .get_json(
            &format!("/v1/stats?cpts={SEVRE_LOIRE}"),
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(ind(&read["rows"][0], "requests_received")["sum"], 1234);
    // The scope check applies to the resolved id: Erdre's coordinator cannot send Sèvre et Loire.
    let erdre = app.token("coord-erdre", Role::Cpts, Some(ERDRE)).await;
    let (s, body) = upload_csv(&app, &erdre, "fr-tableur", &fixture("pdl-fr-tableur.csv")).await;
    assert_eq!(s, 422);
    let p = &body["problems"][0];
    assert_eq!(
        (p["line"].as_u64(), p["column"].as_str()),
        (Some(2), Some("CPTS"))
    );
    assert_eq!(p["reason"], "cpts_not_allowed");
}

/// Inserts a little of sasnp's own activity with plain SQL (valid on both backends).
async fn seed_activity(app: &TestApp) {
    use chrono::TimeZone;
    let t = |y, mo, d, h, mi| {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp()
    };
    let admin = "(SELECT id FROM accounts WHERE name = 'test-admin')";
    let mut sql = format!(
        "INSERT INTO sources (id, cpts_id, name, format, created_at, snapshot_seq) VALUES (1, '{NANTES}', 's', 'csv', 0, 1);
         INSERT INTO places (id, source_id, place_key, lat, lon, precision, snapshot_seq) VALUES (1, 1, 'p', 47.2, -1.55, 'exact', 1);"
    );
    // id, cpts, start, minutes, appointment id
    let slots = [
        (1, NANTES, t(2026, 11, 23, 9, 0), 30, None), // 10:00 Paris, in
        (2, NANTES, t(2026, 11, 23, 22, 30), 20, Some(2)), // 23:30 Paris on the 23rd, in
        (3, NANTES, t(2026, 11, 23, 23, 15), 15, None), // 00:15 Paris on the 24th, out
        (4, NANTES, t(2026, 11, 22, 22, 45), 15, None), // 23:45 Paris on the 22nd, out
        (5, ERDRE, t(2026, 11, 23, 14, 0), 60, Some(1)), // in
    ];
    for (id, cpts, start, minutes, appt) in slots {
        let appt = appt.map_or("NULL".to_string(), |a: i64| a.to_string());
        sql.push_str(&format!(
            "INSERT INTO slots (id, source_id, external_id, place_id, cpts_id, start_at, end_at, feed_status, modality, audience, surnumeraire, capacity, snapshot_seq, appointment_id)
             VALUES ({id}, 1, 'e{id}', 1, '{cpts}', {start}, {}, 'free', 'in-person', 1, FALSE, 1, 1, {appt});",
            start + minutes * 60
        ));
    }
    for (id, slot, status) in [
        ("h1", 1, "released"),
        ("h2", 5, "confirmed"),
        ("h3", 3, "active"),
        ("h4", 2, "confirmed"),
    ] {
        sql.push_str(&format!(
            "INSERT INTO holds (id, slot_id, account_id, created_at, expires_at, status) VALUES ('{id}', {slot}, {admin}, 0, 0, '{status}');"
        ));
    }
    for (id, slot, hold, cpts, cat, status, start) in [
        (
            1,
            5,
            "h2",
            ERDRE,
            "001",
            "fulfilled",
            t(2026, 11, 23, 14, 0),
        ),
        (2, 2, "h4", NANTES, "003", "noshow", t(2026, 11, 23, 22, 30)),
    ] {
        sql.push_str(&format!(
            "INSERT INTO appointments (id, slot_id, hold_id, account_id, cpts_id, orientation_category, status, start_at, end_at, created_at, updated_at)
             VALUES ({id}, {slot}, '{hold}', {admin}, '{cpts}', '{cat}', '{status}', {start}, {start}, 0, 0);"
        ));
    }
    app.state
        .db
        .run(move |c| {
            sasnp::db_run!(c, |c| diesel::connection::SimpleConnection::batch_execute(
                c, &sql
            ))?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn computed_figures_from_sasnp_data_and_search_tally() {
    use sasnp::stats::tally::SearchTally;
    let app = spawn_app().await;
    seed_activity(&app).await;
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let tally = std::sync::Arc::new(SearchTally::new());
    tally.record(Some(NANTES), "44", day, true, false);
    tally.record(Some(NANTES), "44", day, true, false);
    tally.record(Some(NANTES), "44", day, true, true);
    tally.record(None, "49", day, true, true);
    tally.record(Some(NANTES), "44", day.succ_opt().unwrap(), false, false); // outside the window
    tally.flush(&app.state.db).await;
    assert_eq!(tally.pending(), 0);
    tally.record(Some(NANTES), "44", day, false, false);
    tally.flush(&app.state.db).await; // adds to the stored counts

    // An uploaded record of the same day, to reconcile with (period not over: a warning).
    let csv = format!(
        "cpts_id,period_start,period_end,slots_offered,slots_used\n{NANTES},2026-11-23,2026-11-23,5,1\n"
    );
    let (s, up) = upload_csv(&app, &app.admin_token, "canonical", csv.as_bytes()).await;
    assert_eq!(s, 201, "{up}");
    assert_eq!(up["warnings"][0]["reason"], "period_not_over");

    let (s, b) = app
        .get_json(
            "/v1/stats/computed?from=2026-11-23&to=2026-11-23&department=44",
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["source"], "computed");
    let rows = b["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["department"] == "44"));
    let row = |id: &str| rows.iter().find(|r| r["cpts_id"] == id).unwrap().clone();
    let n = row(NANTES);
    let c = &n["computed"];
    assert_eq!(
        c["slots"],
        json!({"count": 2, "hours": 0.83, "booked_through_sasnp": 1})
    );
    assert_eq!(c["holds"]["count"], 2);
    assert_eq!(
        c["holds"]["by_status"],
        json!({"active": 0, "confirmed": 1, "expired": 0, "released": 1})
    );
    assert_eq!(c["appointments"]["count"], 1);
    assert_eq!(c["appointments"]["by_status"]["noshow"], 1);
    assert_eq!(
        c["appointments"]["by_orientation_category"],
        json!({"001": 0, "002": 0, "003": 1})
    );
    assert_eq!(
        c["searches"],
        json!({"searches": 4, "no_result_base": 3, "no_result_final": 1})
    );
    assert_eq!(
        ind(&n["uploaded"], "slots_offered"),
        &json!({"sum": 5, "records": 1})
    );
    let e = row(ERDRE);
    assert_eq!(
        e["computed"]["slots"],
        json!({"count": 1, "hours": 1.0, "booked_through_sasnp": 1})
    );
    assert_eq!(e["computed"]["appointments"]["by_status"]["fulfilled"], 1);
    assert_eq!(
        e["computed"]["appointments"]["by_orientation_category"]["001"],
        1
    );
    assert_eq!(e["uploaded"], Value::Null);
    let other = row(SEVRE_LOIRE);
    assert_eq!(other["computed"]["slots"]["count"], 0);
    // Department 44 filter: the search outside territories was in 49.
    assert_eq!(b["searches_outside_cpts"], json!([]));

    let (_, b) = app
        .get_json(
            "/v1/stats/computed?from=2026-11-01&to=2026-11-30",
            Some(&app.admin_token),
        )
        .await;
    assert_eq!(
        b["searches_outside_cpts"],
        json!([{"department": "49", "searches": {"searches": 1, "no_result_base": 1, "no_result_final": 1}}])
    );
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), app.state.geo.territories().len());
    let n = rows.iter().find(|r| r["cpts_id"] == NANTES).unwrap();
    assert_eq!(n["computed"]["slots"]["count"], 4);
    assert_eq!(n["computed"]["holds"]["count"], 3);
    assert_eq!(n["computed"]["searches"]["searches"], 5);

    // A CPTS account: its own row only, no region-wide searches.
    let nantes = app.token("coord-nantes", Role::Cpts, Some(NANTES)).await;
    let (s, b) = app
        .get_json(
            "/v1/stats/computed?from=2026-11-01&to=2026-11-30",
            Some(&nantes),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["rows"].as_array().unwrap().len(), 1);
    assert_eq!(b["searches_outside_cpts"], json!([]));
    let analyst = app.token("ars", Role::Analyst, None).await;
    let (s, _) = app
        .get_json(
            "/v1/stats/computed?from=2026-11-01&to=2026-11-30",
            Some(&analyst),
        )
        .await;
    assert_eq!(s, 200);
}

async fn run_cli(args: Vec<String>, env: Vec<(&'static str, String)>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sasnp"))
            .args(&args)
            .envs(env)
            .env_remove("SASNP_CONFIG")
            .env_remove("SASNP_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn cli_upload_prints_a_report_and_fails_on_refusal() {
    let app = spawn_app().await;
    let nantes = app.token("coord-nantes", Role::Cpts, Some(NANTES)).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("septembre.csv");
    std::fs::write(
        &good,
        format!("cpts_id,period_start,period_end,requests_received,requests_handled\n{NANTES},2026-09-01,2026-09-30,40,38\n"),
    )
    .unwrap();
    let bad = dir.path().join("invalide.csv");
    std::fs::write(&bad, fixture("pdl-invalid.csv")).unwrap();
    let base = |file: &std::path::Path| {
        vec![
            "stats".to_string(),
            "upload".into(),
            file.display().to_string(),
            "--preset".into(),
            "canonical".into(),
            "--server".into(),
            app.address.clone(),
        ]
    };

    // Dry run, token from the environment: nothing stored.
    let mut args = base(&good);
    args.push("--dry-run".into());
    let (ok, out, err) = run_cli(args, vec![("SASNP_TOKEN", nantes.clone())]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Simulation"), "{out}");
    assert!(out.contains("1 nouveau(x)"), "{out}");
    assert_nothing_stored(&app, "cli dry run").await;

    // Real upload.
    let mut args = base(&good);
    args.extend(["--token".into(), nantes.clone()]);
    let (ok, out, err) = run_cli(args, vec![]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Accepté : dépôt n°"), "{out}");
    assert!(
        out.contains(&format!(
            "{NANTES} du 01/09/2026 au 30/09/2026, toutes professions : nouveau"
        )),
        "{out}"
    );
    let (_, list) = app
        .get_json("/v1/stats/uploads", Some(&app.admin_token))
        .await;
    assert_eq!(list["uploads"].as_array().unwrap().len(), 1);

    // Invalid file: every problem printed, non-zero exit, nothing more stored.
    let mut args = base(&bad);
    args.extend(["--token".into(), nantes.clone()]);
    let (ok, out, err) = run_cli(args, vec![]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("REFUSÉ : 5 erreur(s)"), "{out}");
    assert!(out.contains("ligne 3, colonne « cpts_id »"), "{out}");
    assert!(out.contains("[unknown_cpts]"), "{out}");
    assert!(out.contains("ligne 4, colonne « cpts_id »"), "{out}");
    assert!(out.contains("[cpts_not_allowed]"), "{out}");
    assert!(
        out.contains("ligne 5, colonne « requests_received »"),
        "{out}"
    );
    assert!(err.contains("refusé"), "{err}");
    let (_, list) = app
        .get_json("/v1/stats/uploads", Some(&app.admin_token))
        .await;
    assert_eq!(list["uploads"].as_array().unwrap().len(), 1);

    // A bad token: non-zero, the server's reason printed.
    let mut args = base(&good);
    args.extend(["--token".into(), "sasnp_nope".into()]);
    let (ok, out, _) = run_cli(args, vec![]).await;
    assert!(!ok);
    assert!(out.contains("HTTP 401"), "{out}");
}

#[tokio::test]
async fn concurrent_uploads_of_one_key_each_get_a_version() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for n in 0..6u32 {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/v1/stats/uploads?preset=canonical"),
            app.admin_token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let body = format!(
                "cpts_id,period_start,period_end,requests_received\n{NANTES},2026-09-01,2026-09-30,{n}\n"
            );
            let res = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", "text/csv")
                .body(body)
                .send()
                .await
                .unwrap();
            res.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let (_, list) = app
        .get_json("/v1/stats/uploads", Some(&app.admin_token))
        .await;
    let newest = list["uploads"][0]["id"].as_i64().unwrap();
    assert_eq!(list["uploads"].as_array().unwrap().len(), 6);
    let (_, detail) = app
        .get_json(
            &format!("/v1/stats/uploads/{newest}"),
            Some(&app.admin_token),
        )
        .await;
    let history = detail["records"][0]["history"].as_array().unwrap();
    let versions: Vec<i64> = history
        .iter()
        .map(|h| h["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    let current = history
        .iter()
        .filter(|h| h["superseded_by"].is_null())
        .count();
    assert_eq!(current, 1);
    let (_, read) = app
        .get_json(&format!("/v1/stats?cpts={NANTES}"), Some(&app.admin_token))
        .await;
    assert_eq!(read["rows"][0]["records"], 1);
}
