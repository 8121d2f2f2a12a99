//! Holds, confirmations, outcomes, expiry, the refresh rule, and the 64-operator race.

mod common;

use common::{Place, Row, TestApp, csv_feed, result_ids, spawn_app, spawn_app_with};
use sasnp::domain::Role;
use serde_json::json;

const AT_NANTES: &str = "lat=47.2184&lon=-1.5536&limit=50";

async fn setup(rows: &[Row<'_>]) -> (TestApp, String, i64, String) {
    setup_with(rows, |_| {}).await
}

/// [`setup`] with the settings tweaked.
async fn setup_with(
    rows: &[Row<'_>],
    tweak: impl FnOnce(&mut sasnp::config::Settings),
) -> (TestApp, String, i64, String) {
    let app = spawn_app_with(tweak).await;
    let cpts = app.nantes_cpts();
    let publisher = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    let source = app.csv_source(&publisher, &cpts).await;
    let (s, report) = app.push_csv(&publisher, source, csv_feed(rows)).await;
    assert_eq!(s, 200, "{report}");
    let operator = app.token("osnp-1", Role::Operator, None).await;
    (app, publisher, source, operator)
}

fn two_slots() -> Vec<Row<'static>> {
    vec![
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 11:30", Place::NantesCentre),
    ]
}

async fn hold(app: &TestApp, op: &str, slot: i64) -> (u16, serde_json::Value) {
    app.post_json(op, &format!("/v1/slots/{slot}/hold"), json!({}))
        .await
}

#[tokio::test]
async fn a_held_slot_vanishes_for_everyone_and_a_second_hold_conflicts() {
    let (app, _, _, op1) = setup(&two_slots()).await;
    let op2 = app.token("osnp-2", Role::Operator, None).await;
    let a = app.slot_id_near_nantes(&op1, "a").await;
    let (s, h) = hold(&app, &op1, a).await;
    assert_eq!(s, 201, "{h}");
    assert_eq!(h["slot_id"], a);
    // default TTL 5 min from 10:00 Paris
    assert_eq!(h["expires_at"], "2026-11-23T10:05:00+01:00");
    assert_eq!(result_ids(&app.search(&op2, AT_NANTES).await.1), ["b"]);
    assert_eq!(result_ids(&app.search(&op1, AT_NANTES).await.1), ["b"]);
    let (s, body) = hold(&app, &op2, a).await;
    assert_eq!(s, 409);
    assert_eq!(body["code"], "slot_unavailable");
    assert!(
        body["detail"].as_str().unwrap().contains("holding"),
        "{body}"
    );
    // someone else's hold cannot be released or confirmed
    let hold_id = h["hold_id"].as_str().unwrap();
    let res = app
        .client
        .delete(app.url(&format!("/v1/holds/{hold_id}")))
        .bearer_auth(&op2)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let (s, _) = app
        .post_json(
            &op2,
            &format!("/v1/holds/{hold_id}/confirm"),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_eq!(s, 403);
    // release → back in search, and holdable again
    let res = app
        .client
        .delete(app.url(&format!("/v1/holds/{hold_id}")))
        .bearer_auth(&op1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(result_ids(&app.search(&op2, AT_NANTES).await.1), ["a", "b"]);
    let res = app
        .client
        .delete(app.url(&format!("/v1/holds/{hold_id}")))
        .bearer_auth(&op1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        409,
        "a released hold cannot be released twice"
    );
    assert_eq!(hold(&app, &op2, a).await.0, 201);
    assert_eq!(hold(&app, &op2, 999_999).await.0, 404);
}

/// Another connection that keeps the database's write lock (as a long snapshot write does)
/// until dropped: SQLite's `BEGIN IMMEDIATE`; on PostgreSQL, `holds` locked against writers.
fn hold_the_write_lock(db_url: &str) -> Box<dyn std::any::Any> {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    #[cfg(feature = "postgres")]
    if db_url.starts_with("postgres") {
        let mut c = diesel::PgConnection::establish(db_url).unwrap();
        c.batch_execute("BEGIN; LOCK TABLE holds IN EXCLUSIVE MODE")
            .unwrap();
        return Box::new(c);
    }
    let path = db_url.strip_prefix("sqlite://").unwrap_or(db_url);
    let mut c = diesel::SqliteConnection::establish(path).unwrap();
    c.batch_execute("BEGIN IMMEDIATE").unwrap();
    Box::new(c)
}

#[tokio::test]
async fn an_expiry_round_with_no_lapsed_hold_does_not_wait_for_a_writer() {
    let (app, _, _, op1) = setup(&two_slots()).await;
    let a = app.slot_id_near_nantes(&op1, "a").await;
    assert_eq!(hold(&app, &op1, a).await.0, 201);
    let writer = hold_the_write_lock(&app.db_url);
    // nothing has lapsed: the round answers from a read, while the writer keeps its lock
    // (it used to open a write transaction first and fail with "database is locked")
    let round = sasnp::tasks::expire_holds_once(&app.state).await;
    assert!(matches!(&round, Ok(v) if v.is_empty()), "{round:?}");
    drop(writer);
    // once lapsed, the next round expires it
    app.clock.advance(chrono::Duration::seconds(301));
    let expired = sasnp::tasks::expire_holds_once(&app.state).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].1, a);
}

#[tokio::test]
async fn an_expired_hold_frees_the_slot_and_cannot_be_confirmed() {
    let (app, _, _, op1) = setup(&two_slots()).await;
    let op2 = app.token("osnp-2", Role::Operator, None).await;
    let a = app.slot_id_near_nantes(&op1, "a").await;
    let (_, h) = hold(&app, &op1, a).await;
    let hold_id = h["hold_id"].as_str().unwrap().to_string();
    app.clock.advance(chrono::Duration::seconds(301));
    assert_eq!(result_ids(&app.search(&op2, AT_NANTES).await.1), ["a", "b"]);
    // The sweeper records the expiry once, with the holder as actor. (The background sweeper
    // may have run first: then this round finds nothing, and the record is already there.)
    let expired = sasnp::tasks::expire_holds_once(&app.state).await.unwrap();
    assert!(
        expired.is_empty() || (expired.len() == 1 && expired[0].0 == hold_id && expired[0].1 == a)
    );
    assert!(
        sasnp::tasks::expire_holds_once(&app.state)
            .await
            .unwrap()
            .is_empty()
    );
    let h2 = hold_id.clone();
    let (status, events): (String, Vec<(String, Option<i64>)>) = app
        .state
        .db
        .run(move |c| {
            use sasnp::store::schema::{audit_events, holds};
            let status =
                sasnp::db_run!(c, |c| holds::table.find(&h2).select(holds::status).first(c))?;
            let events = sasnp::db_run!(c, |c| audit_events::table
                .filter(audit_events::hold_id.eq(&h2))
                .filter(audit_events::action.eq("expire"))
                .select((audit_events::action, audit_events::account_id))
                .load(c))?;
            Ok((status, events))
        })
        .await
        .unwrap();
    assert_eq!(status, "expired");
    assert_eq!(events.len(), 1, "one expiry recorded");
    assert!(events[0].1.is_some(), "with the holder as actor");
    let (s, body) = app
        .post_json(
            &op1,
            &format!("/v1/holds/{hold_id}/confirm"),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("expired"));
    // another operator takes it; the first one's old hold stays dead
    assert_eq!(hold(&app, &op2, a).await.0, 201);
    let (s, _) = app
        .post_json(
            &op1,
            &format!("/v1/holds/{hold_id}/confirm"),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn confirm_books_the_slot_and_outcomes_follow_the_rules() {
    let (app, _, _, op) = setup(&two_slots()).await;
    let a = app.slot_id_near_nantes(&op, "a").await;
    let (_, h) = hold(&app, &op, a).await;
    let hold_id = h["hold_id"].as_str().unwrap();
    // validation: category and pseudonymous reference
    for body in [
        json!({"orientation_category": "004"}),
        json!({"orientation_category": "001", "patient_ref": "Jean Dupont"}),
        json!({"orientation_category": "001", "patient_ref": "185057800608491"}),
    ] {
        let (s, _) = app
            .post_json(&op, &format!("/v1/holds/{hold_id}/confirm"), body.clone())
            .await;
        assert_eq!(s, 422, "{body}");
    }
    let (s, appt) = app
        .post_json(
            &op,
            &format!("/v1/holds/{hold_id}/confirm"),
            json!({"orientation_category": "002", "patient_ref": "C15-2026-000123"}),
        )
        .await;
    assert_eq!(s, 201, "{appt}");
    assert_eq!(appt["status"], "booked");
    assert_eq!(appt["orientation_category"], "002");
    assert_eq!(appt["start"], "2026-11-23T11:00:00+01:00");
    let id = appt["appointment_id"].as_i64().unwrap();
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["b"]);
    assert_eq!(
        hold(&app, &op, a).await.0,
        409,
        "a booked slot cannot be held"
    );
    let (s, _) = app
        .post_json(
            &op,
            &format!("/v1/holds/{hold_id}/confirm"),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_eq!(s, 409, "a hold is confirmed once");
    // listed, with its CPTS
    let (_, list) = app
        .get_json("/v1/appointments?from=2026-11-23&to=2026-11-24", Some(&op))
        .await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["appointments"][0]["cpts_id"], app.nantes_cpts());
    let patch = |status: &'static str| {
        let app = &app;
        let op = op.clone();
        async move {
            let res = app
                .client
                .patch(app.url(&format!("/v1/appointments/{id}")))
                .bearer_auth(&op)
                .json(&json!({"status": status}))
                .send()
                .await
                .unwrap();
            (
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    assert_eq!(patch("noshow").await.0, 409, "no-show before the start");
    assert_eq!(patch("lost").await.0, 422);
    // cancelling a future appointment frees the slot
    let (s, body) = patch("cancelled").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["a", "b"]);
    assert_eq!(patch("fulfilled").await.0, 409, "cancelled is final");
    // a second booking of the same slot, then fulfilled after its start
    let (_, h) = hold(&app, &op, a).await;
    let (_, appt) = app
        .post_json(
            &op,
            &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
            json!({"orientation_category": "001"}),
        )
        .await;
    let id2 = appt["appointment_id"].as_i64().unwrap();
    app.clock.advance(chrono::Duration::hours(2));
    let res = app
        .client
        .patch(app.url(&format!("/v1/appointments/{id2}")))
        .bearer_auth(&op)
        .json(&json!({"status": "fulfilled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // the audit trail names the acting account for every step
    let db = app.state.db.clone();
    let actions: Vec<(String, Option<i64>)> = db
        .run(|c| {
            use sasnp::store::schema::audit_events::dsl::*;
            Ok(sasnp::db_run!(c, |c| audit_events
                .order(id)
                .select((action, account_id))
                .load(c))?)
        })
        .await
        .unwrap();
    let names: Vec<&str> = actions.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "hold",
            "confirm",
            "cancelled",
            "hold",
            "confirm",
            "fulfilled"
        ]
    );
    assert!(actions.iter().all(|(_, acc)| acc.is_some()));
}

#[tokio::test]
async fn a_refresh_never_frees_a_booked_or_held_slot_and_reports_withdrawn_bookings() {
    let (app, publisher, source, op) = setup(&two_slots()).await;
    let a = app.slot_id_near_nantes(&op, "a").await;
    let b = app.slot_id_near_nantes(&op, "b").await;
    let (_, h) = hold(&app, &op, a).await;
    app.post_json(
        &op,
        &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
        json!({"orientation_category": "001"}),
    )
    .await;
    let (_, hb) = hold(&app, &op, b).await;
    // The publisher still says both are free: they stay taken here.
    let (s, _) = app
        .push_csv(&publisher, source, csv_feed(&two_slots()))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        result_ids(&app.search(&op, AT_NANTES).await.1),
        Vec::<String>::new()
    );
    assert_eq!(
        slot_id_after_refresh(&app, &op, b, &hb).await,
        201,
        "the hold still works after the refresh"
    );
    // The publisher drops both: the booked and the held one are kept and reported.
    let (s, report) = app
        .push_csv(
            &publisher,
            source,
            csv_feed(&[Row::new("c", "2026-11-23 12:00", Place::NantesCentre)]),
        )
        .await;
    assert_eq!(s, 200);
    let mut withdrawn: Vec<String> =
        serde_json::from_value(report["booked_or_held_slots_withdrawn"].clone()).unwrap();
    withdrawn.sort();
    assert_eq!(withdrawn, ["a", "b"]);
    assert_eq!(report["removed"], 0);
    let (_, list) = app.get_json("/v1/appointments", Some(&op)).await;
    assert_eq!(
        list["appointments"][0]["status"], "booked",
        "the appointment survives"
    );
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["c"]);
}

#[tokio::test]
async fn a_held_slot_that_leaves_the_feed_cannot_be_booked_until_it_comes_back() {
    let (app, publisher, source, op) = setup(&two_slots()).await;
    let b = app.slot_id_near_nantes(&op, "b").await;
    let (_, h) = hold(&app, &op, b).await;
    let only_a = &two_slots()[..1];
    let (s, report) = app.push_csv(&publisher, source, csv_feed(only_a)).await;
    assert_eq!(s, 200);
    assert_eq!(report["booked_or_held_slots_withdrawn"], json!(["b"]));
    assert_eq!(report["unchanged"], 1, "{report}");
    assert_eq!(
        slot_id_after_refresh(&app, &op, b, &h).await,
        409,
        "a withdrawn slot is not booked"
    );
    // Back in the feed, unchanged otherwise: the same row, no longer withdrawn.
    let (s, report) = app
        .push_csv(&publisher, source, csv_feed(&two_slots()))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            &report["inserted"],
            &report["updated"],
            &report["unchanged"]
        ),
        (&json!(0), &json!(1), &json!(1)),
        "{report}"
    );
    assert_eq!(report["booked_or_held_slots_withdrawn"], json!([]));
    assert_eq!(slot_id_after_refresh(&app, &op, b, &h).await, 201);
}

/// Confirms the hold `h` on `slot` after a refresh; returns the status.
async fn slot_id_after_refresh(app: &TestApp, op: &str, _slot: i64, h: &serde_json::Value) -> u16 {
    let (s, _) = app
        .post_json(
            op,
            &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
            json!({"orientation_category": "003"}),
        )
        .await;
    s
}

/// 64 operators race for 10 slots (hold, then confirm): exactly 10 appointments, no slot twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_operators_racing_for_ten_slots_book_each_once() {
    let starts = [
        "2026-11-23 11:00",
        "2026-11-23 11:20",
        "2026-11-23 11:40",
        "2026-11-23 12:00",
        "2026-11-23 12:20",
        "2026-11-23 14:00",
        "2026-11-23 14:20",
        "2026-11-23 14:40",
        "2026-11-23 15:00",
        "2026-11-23 15:20",
    ];
    let ids: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    let rows: Vec<Row<'_>> = ids
        .iter()
        .zip(starts)
        .map(|(id, st)| Row::new(id, st, Place::NantesCentre))
        .collect();
    let (app, _, _, _) = setup(&rows).await;
    let mut tokens = Vec::new();
    for i in 0..64 {
        tokens.push(app.token(&format!("racer-{i}"), Role::Operator, None).await);
    }
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            // each operator searches, then tries the slots from a different starting point
            let (_, body) = app.search(&token, AT_NANTES).await;
            let slots: Vec<i64> = body["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["slot_id"].as_i64().unwrap())
                .collect();
            for k in 0..slots.len() {
                let slot = slots[(i + k) % slots.len()];
                let (s, h) = app
                    .post_json(&token, &format!("/v1/slots/{slot}/hold"), json!({}))
                    .await;
                if s == 201 {
                    let (s, appt) = app
                        .post_json(
                            &token,
                            &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
                            json!({"orientation_category": "001"}),
                        )
                        .await;
                    assert_eq!(s, 201, "{appt}");
                    return Some(slot);
                }
                assert_eq!(s, 409, "{h}");
            }
            None
        }));
    }
    let mut booked = Vec::new();
    for t in tasks {
        if let Some(slot) = t.await.unwrap() {
            booked.push(slot);
        }
    }
    booked.sort();
    let before = booked.len();
    booked.dedup();
    assert_eq!(before, 10, "exactly ten operators booked");
    assert_eq!(booked.len(), 10, "no slot was booked twice");
    let (_, list) = app
        .get_json("/v1/appointments", Some(&app.admin_token))
        .await;
    assert_eq!(list["count"], 10);
    let mut slots: Vec<i64> = list["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slot_id"].as_i64().unwrap())
        .collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), 10);
    assert_eq!(app.search(&app.admin_token, AT_NANTES).await.1["count"], 0);
}

/// The id of the stored slot published as `external` — also one a search does not show, as a
/// client that kept or guessed an id would have it.
async fn stored_slot_id(app: &TestApp, external: &str) -> i64 {
    let external = external.to_string();
    app.state
        .db
        .run(move |c| {
            use sasnp::store::schema::slots;
            Ok(sasnp::db_run!(c, |c| slots::table
                .filter(slots::external_id.eq(&external))
                .select(slots::id)
                .first::<i64>(c))?)
        })
        .await
        .unwrap()
}

/// Asserts a 409 `slot_unavailable` whose detail contains `why`.
fn assert_unavailable((s, body): (u16, serde_json::Value), why: &str) {
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["code"], "slot_unavailable", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains(why),
        "`{why}` not in {body}"
    );
}

const TYPE_CRENEAU: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau";

/// A SAS FHIR bundle of one place at Nantes centre, each slot `(id, start UTC, audiences)`
/// 20 minutes long and free.
fn fhir_bundle(slots: &[(&str, &str, &[&str])]) -> String {
    let mut entry = vec![
        json!({"resource": {"resourceType": "Schedule", "id": "sch", "actor": [{"reference": "Location/loc"}]}}),
        json!({"resource": {"resourceType": "Location", "id": "loc", "name": "Cabinet Graslin",
            "position": {"latitude": 47.2184, "longitude": -1.5536},
            "address": {"line": ["2 rue Crébillon"], "postalCode": "44000", "city": "Nantes"}}}),
    ];
    for (id, start, audiences) in slots {
        let start: chrono::DateTime<chrono::Utc> = start.parse().unwrap();
        let end = start + chrono::Duration::minutes(20);
        let security: Vec<_> = audiences
            .iter()
            .map(|a| json!({"system": TYPE_CRENEAU, "code": a}))
            .collect();
        entry.push(json!({"resource": {"resourceType": "Slot", "id": id,
            "meta": {"security": security},
            "schedule": {"reference": "Schedule/sch"}, "status": "free",
            "start": start.to_rfc3339(), "end": end.to_rfc3339()}}));
    }
    json!({"resourceType": "Bundle", "type": "collection", "entry": entry}).to_string()
}

async fn push_fhir(app: &TestApp, token: &str, source: i64, body: String) -> serde_json::Value {
    let (status, report) = app.push(token, source, "application/fhir+json", body).await;
    assert_eq!(status, 200, "{report}");
    report
}

/// A slot published for professionals only (`meta.security` PRO) is neither shown nor held by
/// id; a slot whose audience a refresh narrows to PRO while held cannot be booked.
#[tokio::test]
async fn a_pro_only_slot_is_not_offered_and_cannot_be_held_or_booked() {
    let (app, publisher, source, op) = setup(&[]).await;
    // 10:00 UTC = 11:00 Paris
    let feed = |snp_audience: &'static [&'static str]| {
        fhir_bundle(&[
            ("pro", "2026-11-23T10:00:00Z", &["PRO"]),
            ("pro-snp", "2026-11-23T10:30:00Z", &["PRO", "SNP"]),
            ("snp", "2026-11-23T11:00:00Z", snp_audience),
            ("public", "2026-11-23T11:30:00Z", &["PUBLIC"]),
            ("none", "2026-11-23T12:00:00Z", &[]),
        ])
    };
    let report = push_fhir(&app, &publisher, source, feed(&["SNP"])).await;
    assert_eq!(report["accepted"], 5, "{report}");
    assert_eq!(
        result_ids(&app.search(&op, AT_NANTES).await.1),
        ["pro-snp", "snp", "public", "none"],
        "PRO-only is not offered; PRO with SNP, PUBLIC or no audience is"
    );
    let pro = stored_slot_id(&app, "pro").await;
    assert_unavailable(hold(&app, &op, pro).await, "professionals only");
    for visible in ["pro-snp", "public", "none"] {
        let id = app.slot_id_near_nantes(&op, visible).await;
        assert_eq!(hold(&app, &op, id).await.0, 201, "{visible}");
    }
    // Held, then the publisher restricts it to professionals: the booking is refused.
    let snp = app.slot_id_near_nantes(&op, "snp").await;
    let (s, h) = hold(&app, &op, snp).await;
    assert_eq!(s, 201, "{h}");
    push_fhir(&app, &publisher, source, feed(&["PRO"])).await;
    let (s, body) = app
        .post_json(
            &op,
            &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_unavailable((s, body), "professionals");
    let (_, list) = app.get_json("/v1/appointments", Some(&op)).await;
    assert_eq!(list["count"], 0, "nothing was booked");
}

/// A pushed source is stale 24 h after its last push: from that instant (as search reckons
/// it) its slots cannot be held; a new push makes them holdable again.
#[tokio::test]
async fn a_slot_of_a_stale_pushed_source_is_not_offered_and_cannot_be_held() {
    let rows = [
        Row::new("a", "2026-11-25 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-25 11:30", Place::NantesCentre),
    ];
    let (app, publisher, source, op) = setup(&rows).await;
    let a = app.slot_id_near_nantes(&op, "a").await;
    let b = app.slot_id_near_nantes(&op, "b").await;
    // one second before the limit: still fresh
    app.clock
        .advance(chrono::Duration::hours(24) - chrono::Duration::seconds(1));
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["a", "b"]);
    assert_eq!(hold(&app, &op, a).await.0, 201);
    // at the limit: stale for search and for holds
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.search(&op, AT_NANTES).await.1["count"], 0);
    assert_unavailable(
        hold(&app, &op, b).await,
        "source `Agenda CPTS` of this slot is stale (last refreshed 2026-11-23T10:00:00+01:00)",
    );
    // the publisher pushes again: fresh, holdable
    let (s, _) = app.push_csv(&publisher, source, csv_feed(&rows)).await;
    assert_eq!(s, 200);
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["b"]);
    assert_eq!(hold(&app, &op, b).await.0, 201);
}

/// A polled source is stale after `pull_stale_factor` (3) poll intervals without success.
#[tokio::test]
async fn a_slot_of_a_stale_polled_source_cannot_be_held() {
    let app = spawn_app().await;
    let cpts = app.nantes_cpts();
    let publisher = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    let op = app.token("osnp-1", Role::Operator, None).await;
    // nothing listens on port 9: its polls fail, which never refreshes the data
    let (s, src) = app
        .post_json(
            &publisher,
            "/v1/sources",
            json!({"name": "Agenda polled", "format": "csv", "cpts": cpts,
                   "url": "http://127.0.0.1:9/slots.csv", "poll_interval_s": 60}),
        )
        .await;
    assert_eq!(s, 201, "{src}");
    let source = src["id"].as_i64().unwrap();
    let rows = [
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 11:30", Place::NantesCentre),
    ];
    let (s, report) = app.push_csv(&publisher, source, csv_feed(&rows)).await;
    assert_eq!(s, 200, "{report}");
    let a = app.slot_id_near_nantes(&op, "a").await;
    let b = app.slot_id_near_nantes(&op, "b").await;
    app.clock.advance(chrono::Duration::seconds(179));
    assert_eq!(hold(&app, &op, a).await.0, 201, "fresh for 3 × 60 s");
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(app.search(&op, AT_NANTES).await.1["count"], 0);
    assert_unavailable(hold(&app, &op, b).await, "is stale");
}

/// Busy at the publisher, withdrawn from the feed, started: none can be held by id.
#[tokio::test]
async fn slots_the_publisher_does_not_offer_or_that_started_cannot_be_held() {
    let rows = [
        Row::new("a", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("b", "2026-11-23 11:30", Place::NantesCentre),
        Row {
            status: "occupe",
            ..Row::new("busy", "2026-11-23 12:00", Place::NantesCentre)
        },
    ];
    let (app, publisher, source, op) = setup(&rows).await;
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["a", "b"]);
    let busy = stored_slot_id(&app, "busy").await;
    assert_unavailable(hold(&app, &op, busy).await, "taken at its publisher");
    // b leaves the feed while held; released, it stays withdrawn
    let b = app.slot_id_near_nantes(&op, "b").await;
    let (_, h) = hold(&app, &op, b).await;
    let (s, _) = app.push_csv(&publisher, source, csv_feed(&rows[..1])).await;
    assert_eq!(s, 200);
    let res = app
        .client
        .delete(app.url(&format!("/v1/holds/{}", h["hold_id"].as_str().unwrap())))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(result_ids(&app.search(&op, AT_NANTES).await.1), ["a"]);
    assert_unavailable(hold(&app, &op, b).await, "withdrawn by its publisher");
    // a starts at 11:00 Paris: from that instant it cannot be held
    let a = app.slot_id_near_nantes(&op, "a").await;
    app.clock.advance(chrono::Duration::hours(1));
    assert_eq!(app.search(&op, AT_NANTES).await.1["count"], 0);
    assert_unavailable(hold(&app, &op, a).await, "already started");
}

/// Holds then confirms `slot`; returns the appointment id.
async fn book(app: &TestApp, op: &str, slot: i64) -> i64 {
    let (s, h) = hold(app, op, slot).await;
    assert_eq!(s, 201, "{h}");
    let (s, appt) = app
        .post_json(
            op,
            &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_eq!(s, 201, "{appt}");
    appt["appointment_id"].as_i64().unwrap()
}

async fn set_status(app: &TestApp, op: &str, id: i64, status: &str) -> (u16, serde_json::Value) {
    let res = app
        .client
        .patch(app.url(&format!("/v1/appointments/{id}")))
        .bearer_auth(op)
        .json(&json!({"status": status}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The CPTS ids of an appointment list, in order (or the status when refused).
async fn listed_cpts(app: &TestApp, token: &str, query: &str) -> Result<Vec<String>, u16> {
    let (s, body) = app
        .get_json(&format!("/v1/appointments{query}"), Some(token))
        .await;
    if s != 200 {
        return Err(s);
    }
    Ok(body["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["cpts_id"].as_str().unwrap().to_string())
        .collect())
}

/// Operators list every CPTS or filter one; a `cpts` account sees its own CPTS only, and is
/// refused another's; analysts are refused.
#[tokio::test]
async fn the_appointment_list_follows_the_callers_role() {
    let (app, _, _, op) = setup(&two_slots()).await;
    let nantes = app.nantes_cpts();
    // a second CPTS, in Angers, publishing one slot there
    let angers_point = sasnp::domain::LatLon::new(47.4739, -0.5517).unwrap();
    let angers = app
        .state
        .geo
        .locate(angers_point)
        .unwrap()
        .territory
        .unwrap()
        .id
        .clone();
    assert_ne!(angers, nantes);
    let angers_publisher = app.token("cpts-angers", Role::Cpts, Some(&angers)).await;
    let angers_source = app.csv_source(&angers_publisher, &angers).await;
    let angers_csv = "slot_id;debut;duree;profession;lieu;adresse;code_postal;ville;latitude;longitude;modalite\r\n\
                      ang;2026-11-23 12:00;20;10;Cabinet du Ralliement;1 place du Ralliement;49100;Angers;47,4739;-0,5517;AMB\r\n";
    let (s, report) = app
        .push_csv(&angers_publisher, angers_source, angers_csv.to_string())
        .await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["accepted"], 1, "{report}");
    let (_, found) = app.search(&op, "lat=47.4739&lon=-0.5517").await;
    let ang = found["results"][0]["slot_id"].as_i64().unwrap();
    book(&app, &op, ang).await;
    book(&app, &op, app.slot_id_near_nantes(&op, "a").await).await;

    let (n, a) = (nantes.clone(), angers.clone());
    assert_eq!(
        listed_cpts(&app, &op, "").await,
        Ok(vec![n.clone(), a.clone()])
    );
    assert_eq!(
        listed_cpts(&app, &op, &format!("?cpts={n}")).await,
        Ok(vec![n.clone()])
    );
    assert_eq!(
        listed_cpts(&app, &op, &format!("?cpts={a}")).await,
        Ok(vec![a.clone()])
    );
    assert_eq!(
        listed_cpts(&app, &app.admin_token, &format!("?cpts={a}")).await,
        Ok(vec![a.clone()])
    );
    // a CPTS coordinator: own CPTS with or without the filter, another CPTS refused
    let coord = app.token("coord-nantes", Role::Cpts, Some(&nantes)).await;
    assert_eq!(listed_cpts(&app, &coord, "").await, Ok(vec![n.clone()]));
    assert_eq!(
        listed_cpts(&app, &coord, &format!("?cpts={n}")).await,
        Ok(vec![n.clone()])
    );
    let (s, body) = app
        .get_json(&format!("/v1/appointments?cpts={a}"), Some(&coord))
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(&a), "{body}");
    // a `cpts` account with no CPTS (made outside the API) sees nothing, not every CPTS
    let orphan = app.token("coord-none", Role::Cpts, None).await;
    assert_eq!(listed_cpts(&app, &orphan, "").await, Err(403));
    let analyst = app.token("ars", Role::Analyst, None).await;
    assert_eq!(listed_cpts(&app, &analyst, "").await, Err(403));
    assert_eq!(
        listed_cpts(&app, &analyst, &format!("?cpts={n}")).await,
        Err(403)
    );
    // from/to select on the start
    assert_eq!(
        listed_cpts(&app, &op, "?from=2026-11-23T11:30:00%2B01:00&to=2026-11-24").await,
        Ok(vec![a.clone()])
    );
    let (s, body) = app
        .get_json("/v1/appointments?from=tomorrow", Some(&op))
        .await;
    assert_eq!(s, 400);
    assert!(body["detail"].as_str().unwrap().contains("from"), "{body}");
}

/// After the start: `noshow` is recorded; cancelling then does not free the slot (it started).
#[tokio::test]
async fn after_the_start_noshow_is_recorded_and_a_cancellation_frees_nothing() {
    let (app, _, _, op) = setup(&two_slots()).await;
    let a = app.slot_id_near_nantes(&op, "a").await;
    let b = app.slot_id_near_nantes(&op, "b").await;
    let ida = book(&app, &op, a).await;
    let idb = book(&app, &op, b).await;
    // 11:10 Paris: a (11:00–11:20) is under way, b (11:30) has not started
    app.clock.advance(chrono::Duration::minutes(70));
    assert_eq!(
        set_status(&app, &op, idb, "noshow").await.0,
        409,
        "b has not started"
    );
    let (s, body) = set_status(&app, &op, ida, "noshow").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "noshow");
    assert_eq!(body["updated_at"], "2026-11-23T11:10:00+01:00");
    let (s, body) = set_status(&app, &op, ida, "fulfilled").await;
    assert_eq!(s, 409, "noshow is final: {body}");
    assert_eq!(body["code"], "invalid_transition");
    // cancelling a started appointment keeps its slot taken
    app.clock.advance(chrono::Duration::minutes(25)); // 11:35: b started
    let (s, body) = set_status(&app, &op, idb, "cancelled").await;
    assert_eq!(s, 200, "{body}");
    let still_linked: Option<i64> = app
        .state
        .db
        .run(move |c| {
            use sasnp::store::schema::slots;
            Ok(sasnp::db_run!(c, |c| slots::table
                .find(b)
                .select(slots::appointment_id)
                .first(c))?)
        })
        .await
        .unwrap();
    assert_eq!(still_linked, Some(idb), "the started slot is not freed");
    assert_unavailable(hold(&app, &op, b).await, "already booked");
    let (_, list) = app.get_json("/v1/appointments", Some(&op)).await;
    let statuses: Vec<&str> = list["appointments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["noshow", "cancelled"]);
}

/// Separators do not hide a NIR; opaque references and UUIDs pass and are stored as given.
#[tokio::test]
async fn a_nir_with_separators_is_refused_and_opaque_references_pass() {
    let (app, _, _, op) = setup(&two_slots()).await;
    let a = app.slot_id_near_nantes(&op, "a").await;
    let (_, h) = hold(&app, &op, a).await;
    let confirm = format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap());
    for nir in [
        "1 85 05 78 006 084 91",
        "1-85-05-78-006-084-91",
        "1.85.05.78.006.084.91",
        "1_85_05_78_006_084_91",
        "2-85-05-2A-006-084-91",
        "1-85-05-78-006-084",
    ] {
        let (s, body) = app
            .post_json(
                &op,
                &confirm,
                json!({"orientation_category": "001", "patient_ref": nir}),
            )
            .await;
        assert_eq!(s, 422, "{nir}: {body}");
        assert_eq!(body["code"], "invalid_patient_ref");
        assert!(body["detail"].as_str().unwrap().contains("patient_ref"));
    }
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let (s, appt) = app
        .post_json(
            &op,
            &confirm,
            json!({"orientation_category": "001", "patient_ref": uuid}),
        )
        .await;
    assert_eq!(s, 201, "{appt}");
    assert_eq!(appt["patient_ref"], uuid);
    let b = app.slot_id_near_nantes(&op, "b").await;
    let (_, h) = hold(&app, &op, b).await;
    let (s, appt) = app
        .post_json(
            &op,
            &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
            json!({"orientation_category": "001", "patient_ref": "C15-2026-000123"}),
        )
        .await;
    assert_eq!(s, 201, "{appt}");
    assert_eq!(appt["patient_ref"], "C15-2026-000123");
}

/// A configured hold TTL (120 s) sets `expires_at` and the instant the slot comes back.
#[tokio::test]
async fn a_configured_hold_ttl_is_applied_end_to_end() {
    let (app, _, _, op1) = setup_with(&two_slots(), |s| s.hold_ttl_s = 120).await;
    let op2 = app.token("osnp-2", Role::Operator, None).await;
    let a = app.slot_id_near_nantes(&op1, "a").await;
    let (s, h) = hold(&app, &op1, a).await;
    assert_eq!(s, 201);
    assert_eq!(h["expires_at"], "2026-11-23T10:02:00+01:00");
    app.clock.advance(chrono::Duration::seconds(119));
    assert_eq!(result_ids(&app.search(&op2, AT_NANTES).await.1), ["b"]);
    assert_unavailable(hold(&app, &op2, a).await, "holding");
    app.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(result_ids(&app.search(&op2, AT_NANTES).await.1), ["a", "b"]);
    let (s, body) = app
        .post_json(
            &op1,
            &format!("/v1/holds/{}/confirm", h["hold_id"].as_str().unwrap()),
            json!({"orientation_category": "001"}),
        )
        .await;
    assert_unavailable((s, body), "expired");
    let (s, h2) = hold(&app, &op2, a).await;
    assert_eq!(s, 201, "{h2}");
    assert_eq!(h2["expires_at"], "2026-11-23T10:04:00+01:00");
}
