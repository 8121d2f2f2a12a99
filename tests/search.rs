//! Operator search over pushed feeds: location forms, filters, radius enlargement, freshness,
//! and what holds and bookings do to the results.

mod common;

use common::{Place, Row, TestApp, csv_feed, result_ids, spawn_app};
use sasnp::domain::Role;

/// Nantes-centre query used throughout.
const AT_NANTES: &str = "lat=47.2184&lon=-1.5536";

async fn setup() -> (TestApp, String, i64, String) {
    let app = spawn_app().await;
    let cpts = app.nantes_cpts();
    let publisher = app.token("cpts-nantes", Role::Cpts, Some(&cpts)).await;
    let source = app.csv_source(&publisher, &cpts).await;
    let operator = app.token("osnp", Role::Operator, None).await;
    (app, publisher, source, operator)
}

fn base_rows() -> Vec<Row<'static>> {
    vec![
        Row::new("centre-1100", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("centre-1000", "2026-11-23 10:40", Place::NantesCentre),
        Row {
            modality: "domicile",
            ..Row::new("reze-1200", "2026-11-23 12:00", Place::Reze)
        },
        Row {
            profession: "60",
            specialty: "",
            ..Row::new("herblain-ide", "2026-11-23 13:00", Place::SaintHerblain)
        },
        Row {
            surnumeraire: true,
            ..Row::new("herblain-sus", "2026-11-23 18:30", Place::SaintHerblain)
        },
        Row::new("carquefou-demain", "2026-11-24 09:00", Place::SuceSurErdre),
        Row::new("nazaire", "2026-11-23 11:00", Place::SaintNazaire),
        Row {
            status: "occupe",
            ..Row::new("centre-busy", "2026-11-23 10:30", Place::NantesCentre)
        },
        // already over at 10:00 Paris: dropped
        Row::new("centre-past", "2026-11-23 08:00", Place::NantesCentre),
    ]
}

#[tokio::test]
async fn pushed_csv_is_searchable_by_distance_then_start() {
    let (app, publisher, source, op) = setup().await;
    let (s, report) = app
        .push_csv(&publisher, source, csv_feed(&base_rows()))
        .await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["received"], 9);
    assert_eq!(report["accepted"], 8, "{report}");
    assert_eq!(report["dropped_past"], 1);
    assert_eq!(report["inserted"], 8);
    let (s, body) = app.search(&op, &format!("{AT_NANTES}&limit=20")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["patient"]["commune"]["insee"], "44109");
    assert_eq!(body["patient"]["department"], "44");
    assert_eq!(body["base_radius_km"], 10.0);
    // busy, past and Saint-Nazaire (50 km > 10 km cap? no: cap is 30 km for 44) are absent
    assert_eq!(
        result_ids(&body),
        [
            "centre-1000",
            "centre-1100",
            "reze-1200",
            "herblain-ide",
            "herblain-sus",
            "carquefou-demain"
        ]
    );
    let first = &body["results"][0];
    assert_eq!(first["start"], "2026-11-23T10:40:00+01:00");
    assert_eq!(first["end"], "2026-11-23T11:00:00+01:00");
    assert_eq!(first["distance_km"], 0.0);
    assert_eq!(first["place"]["precision"], "exact");
    assert_eq!(first["place"]["insee"], "44109");
    assert_eq!(first["practitioner"]["specialty"], "SM54");
    assert_eq!(first["cpts"]["id"], app.nantes_cpts());
    assert_eq!(first["booking_url"], "https://rdv.example/centre-1000");
    assert_eq!(first["source"]["fresh"], true);
    // Fewer than `limit` results: the radius grew to the cap (10 km + 4 × 5 km).
    assert_eq!(body["radius_km"], 30.0);
    assert_eq!(body["enlargement_steps"], 4);
    // Six results wanted: Sucé-sur-Erdre (≈ 14.2 km) is the sixth, one step (15 km) suffices.
    let (_, body) = app.search(&op, &format!("{AT_NANTES}&limit=6")).await;
    assert_eq!(body["count"], 6);
    assert_eq!(body["radius_km"], 15.0);
    assert_eq!(body["enlargement_steps"], 1);
    // Five wanted: all within the default 10 km.
    let (_, body) = app.search(&op, &format!("{AT_NANTES}&limit=5")).await;
    assert_eq!(body["radius_km"], 10.0);
    assert_eq!(body["enlargement_steps"], 0);
    // soonest order
    let (_, body) = app
        .search(&op, &format!("{AT_NANTES}&order=soonest&limit=3"))
        .await;
    assert_eq!(
        result_ids(&body),
        ["centre-1000", "centre-1100", "reze-1200"]
    );
}

#[tokio::test]
async fn filters_narrow_the_results() {
    let (app, publisher, source, op) = setup().await;
    app.push_csv(&publisher, source, csv_feed(&base_rows()))
        .await;
    let ids = |q: &'static str| {
        let app = &app;
        let op = op.clone();
        async move {
            result_ids(
                &app.search(&op, &format!("{AT_NANTES}&limit=50&{q}"))
                    .await
                    .1,
            )
        }
    };
    assert_eq!(ids("profession=60").await, ["herblain-ide"]);
    assert_eq!(ids("specialty=SM54&modality=HH").await, ["reze-1200"]);
    assert_eq!(
        ids("modality=HH,AMB&profession=10&window=0-4h").await,
        ["centre-1000", "centre-1100", "reze-1200"]
    );
    assert_eq!(ids("surnumeraire=only").await, ["herblain-sus"]);
    assert!(
        !ids("surnumeraire=exclude")
            .await
            .contains(&"herblain-sus".to_string())
    );
    assert_eq!(ids("window=24-48h").await, Vec::<String>::new());
    assert_eq!(ids("window=12-24h").await, ["carquefou-demain"]);
    assert_eq!(
        ids("from=2026-11-23T12:30:00%2B01:00&to=2026-11-23T19:00:00%2B01:00").await,
        ["herblain-ide", "herblain-sus"]
    );
    assert_eq!(ids("limit=2").await, ["centre-1000", "centre-1100"]);
    // bad parameters are named
    for (q, field) in [
        ("modality=XX", "modality"),
        ("window=1-2h", "window"),
        ("limit=0", "limit"),
        ("surnumeraire=maybe", "surnumeraire"),
        ("order=random", "order"),
        ("radius_km=-3", "radius_km"),
        ("colour=blue", "colour"),
        ("window=0-4h&from=2026-11-23T12:30:00Z", "window"),
    ] {
        let (s, body) = app.search(&op, &format!("{AT_NANTES}&{q}")).await;
        assert_eq!(s, 400, "{q}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(field),
            "{q}: {body}"
        );
    }
}

#[tokio::test]
async fn location_by_commune_postcode_or_name_and_ambiguity() {
    let (app, publisher, source, op) = setup().await;
    app.push_csv(&publisher, source, csv_feed(&base_rows()))
        .await;
    let (s, body) = app.search(&op, "commune=44109").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["patient"]["commune"]["name"], "Nantes");
    let (s, by_pc) = app.search(&op, "postcode=44000").await;
    assert_eq!(s, 200);
    assert_eq!(result_ids(&by_pc), result_ids(&body));
    let (s, by_name) = app.search(&op, "q=nantes").await;
    assert_eq!(s, 200);
    assert_eq!(result_ids(&by_name), result_ids(&body));
    // A postal code covering several communes: 422 with the candidates, no guess.
    let shared = app
        .state
        .geo
        .communes()
        .iter()
        .flat_map(|c| c.postcodes.iter())
        .find(|pc| app.state.geo.communes_by_postcode(pc).len() >= 2)
        .unwrap()
        .clone();
    let (s, body) = app.search(&op, &format!("q={shared}")).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["code"], "ambiguous_location");
    assert_eq!(
        body["candidates"].as_array().unwrap().len(),
        app.state.geo.communes_by_postcode(&shared).len()
    );
    let (s, body) = app.search(&op, "q=saint").await;
    assert_eq!(s, 422);
    assert!(body["candidates"].as_array().unwrap().len() > 1);
    let (s, _) = app.search(&op, "q=zzzzzz").await;
    assert_eq!(s, 422);
    let (s, _) = app.search(&op, "commune=99999").await;
    assert_eq!(s, 422);
    let (s, _) = app.search(&op, "").await;
    assert_eq!(s, 400);
    let (s, _) = app.search(&op, "lat=48.8566&lon=2.3522").await;
    assert_eq!(s, 422, "Paris is outside the region");
}

#[tokio::test]
async fn radius_enlarges_step_by_step_up_to_the_cap() {
    let (app, publisher, source, op) = setup().await;
    app.push_csv(
        &publisher,
        source,
        csv_feed(&[Row::new("nazaire", "2026-11-23 11:00", Place::SaintNazaire)]),
    )
    .await;
    // 44: 10 km + 5 km steps, cap 30 km: Saint-Nazaire (≈ 50 km) is out of reach.
    let (_, body) = app.search(&op, AT_NANTES).await;
    assert_eq!(body["count"], 0);
    assert_eq!(body["radius_km"], 30.0);
    assert_eq!(body["enlargement_steps"], 4);
    // A larger base radius reaches it without enlargement.
    let (_, body) = app
        .search(&op, &format!("{AT_NANTES}&radius_km=60&limit=1"))
        .await;
    assert_eq!(result_ids(&body), ["nazaire"]);
    assert_eq!(body["enlargement_steps"], 0);
    // From Saint-Nazaire itself it is the nearest.
    let (_, body) = app.search(&op, "commune=44184").await;
    assert_eq!(result_ids(&body), ["nazaire"]);
}

#[tokio::test]
async fn stale_sources_disappear_from_search() {
    let (app, publisher, source, op) = setup().await;
    app.push_csv(
        &publisher,
        source,
        csv_feed(&[Row::new("demain", "2026-11-24 15:00", Place::NantesCentre)]),
    )
    .await;
    assert_eq!(app.search(&op, AT_NANTES).await.1["count"], 1);
    // a pushed source is stale 24 h after its last push
    app.clock.advance(chrono::Duration::hours(25));
    assert_eq!(app.search(&op, AT_NANTES).await.1["count"], 0);
    let (_, src) = app
        .get_json(&format!("/v1/sources/{source}"), Some(&publisher))
        .await;
    assert_eq!(src["stale"], true);
}

#[tokio::test]
async fn operators_and_analysts_cannot_push_and_cpts_cannot_search() {
    let (app, publisher, source, op) = setup().await;
    let (s, _) = app.push_csv(&op, source, csv_feed(&base_rows())).await;
    assert_eq!(s, 403);
    let (s, _) = app.search(&publisher, AT_NANTES).await;
    assert_eq!(s, 403);
    let (s, _) = app.get_json(&format!("/v1/search?{AT_NANTES}"), None).await;
    assert_eq!(s, 401);
}

/// One result in full, as an operator's tool reads it; text with quotes, backslashes and accents
/// comes back intact; a place renamed by the next snapshot shows its new name at once.
#[tokio::test]
async fn a_result_in_full_and_text_written_exactly() {
    let (app, publisher, source, op) = setup().await;
    let csv = |place: &str| {
        format!(
            "slot_id;debut;duree;rpps;praticien;profession;specialite;lieu;adresse;code_postal;ville;latitude;longitude;modalite;lien;telephone\r\n\
             s1;2026-11-23 11:00;20;10000000001;\"Dr Zoé \"\"Doc\"\" L'Hôte\";10;SM54;{place};2 rue Crébillon \\ bis;44000;Nantes;47,2184;-1,5536;AMB;https://rdv.example/s1?a=1&b=\"2\";02 40 00 00 01\r\n"
        )
    };
    let (s, report) = app
        .push_csv(&publisher, source, csv("\"Cabinet \"\"Graslin\"\"\""))
        .await;
    assert_eq!(s, 200, "{report}");
    let (s, body) = app.search(&op, &format!("{AT_NANTES}&limit=1")).await;
    assert_eq!(s, 200, "{body}");
    let id = body["results"][0]["slot_id"].clone();
    let place_id = body["results"][0]["place"]["id"].clone();
    assert_eq!(
        body["results"][0],
        serde_json::json!({
            "slot_id": id,
            "external_id": "s1",
            "start": "2026-11-23T11:00:00+01:00",
            "end": "2026-11-23T11:20:00+01:00",
            "distance_km": 0.0,
            "place": {
                "id": place_id, "name": "Cabinet \"Graslin\"", "address": "2 rue Crébillon \\ bis",
                "postcode": "44000", "city": "Nantes", "insee": "44109",
                "lat": 47.2184, "lon": -1.5536, "precision": "exact"
            },
            "practitioner": {
                "id": "810000000001", "name": "Dr Zoé \"Doc\" L'Hôte",
                "profession": "10", "specialty": "SM54"
            },
            "structure": null,
            "cpts": {"id": app.nantes_cpts(), "name": body["patient"]["cpts"]["name"]},
            "modality": "AMB",
            "appointment_type": null,
            "surnumeraire": false,
            "capacity": 1,
            "booking_url": "https://rdv.example/s1?a=1&b=\"2\"",
            "booking_phone": "+33240000001",
            "source": {
                "id": source, "name": "Agenda CPTS",
                "last_success_at": "2026-11-23T10:00:00+01:00", "fresh": true
            }
        })
    );
    assert_eq!(body["window"]["from"], "2026-11-23T10:00:00+01:00");
    assert_eq!(body["window"]["to"], "2026-11-26T10:00:00+01:00");
    // the next snapshot renames the place: the answer follows at once
    let (s, report) = app
        .push_csv(&publisher, source, csv("Cabinet Graslin\tNord"))
        .await;
    assert_eq!(s, 200, "{report}");
    let (_, body) = app.search(&op, &format!("{AT_NANTES}&limit=1")).await;
    assert_eq!(body["results"][0]["place"]["name"], "Cabinet Graslin\tNord");
}

/// The ids found by `query` (plus `&limit=50` unless it sets one) around Nantes centre.
async fn ids_at_nantes(app: &TestApp, op: &str, query: &str) -> Vec<String> {
    let limit = if query.contains("limit=") {
        ""
    } else {
        "&limit=50"
    };
    let (s, body) = app.search(op, &format!("{AT_NANTES}&{query}{limit}")).await;
    assert_eq!(s, 200, "{query}: {body}");
    result_ids(&body)
}

/// Pushes `rows` to a fresh app's Nantes source; returns the app and an operator token.
async fn pushed(rows: &[Row<'_>]) -> (TestApp, String) {
    let (app, publisher, source, op) = setup().await;
    let (s, report) = app.push_csv(&publisher, source, csv_feed(rows)).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["accepted"], rows.len(), "{report}");
    (app, op)
}

/// Each SAS bucket selects the slots starting in `[now + a, now + b)`: a slot starting on a
/// boundary belongs to the later bucket; one at now + 72 h to none.
#[tokio::test]
async fn each_window_bucket_selects_exactly_the_slots_starting_in_it() {
    // now: Monday 2026-11-23 10:00 Paris
    let (app, op) = pushed(&[
        Row::new("b0", "2026-11-23 13:59", Place::NantesCentre),
        Row::new("b4", "2026-11-23 14:00", Place::NantesCentre),
        Row::new("b8", "2026-11-23 18:00", Place::NantesCentre),
        Row::new("b12", "2026-11-23 22:00", Place::NantesCentre),
        Row::new("b24-", "2026-11-24 09:59", Place::NantesCentre),
        Row::new("b24", "2026-11-24 10:00", Place::NantesCentre),
        Row::new("b48", "2026-11-25 10:00", Place::NantesCentre),
        Row::new("b72-", "2026-11-26 09:59", Place::NantesCentre),
        Row::new("b72", "2026-11-26 10:00", Place::NantesCentre),
    ])
    .await;
    for (window, expected) in [
        ("0-4h", &["b0"][..]),
        ("4-8h", &["b4"]),
        ("8-12h", &["b8"]),
        ("12-24h", &["b12", "b24-"]),
        ("24-48h", &["b24"]),
        ("48-72h", &["b48", "b72-"]),
    ] {
        assert_eq!(
            ids_at_nantes(&app, &op, &format!("window={window}")).await,
            expected,
            "{window}"
        );
    }
    // without a window: the next 72 hours
    assert_eq!(
        ids_at_nantes(&app, &op, "").await,
        ["b0", "b4", "b8", "b12", "b24-", "b24", "b48", "b72-"]
    );
    // the buckets move with the clock: at 14:00, b4 starts now and is no longer offered,
    // b8 (18:00) starts in 4 hours
    app.clock.advance(chrono::Duration::hours(4));
    assert_eq!(
        ids_at_nantes(&app, &op, "window=0-4h").await,
        Vec::<String>::new()
    );
    assert_eq!(ids_at_nantes(&app, &op, "window=4-8h").await, ["b8"]);
}

#[tokio::test]
async fn ten_results_by_default_and_at_most_a_hundred() {
    let starts: Vec<String> = (0..12)
        .map(|i| format!("2026-11-23 {}:{:02}", 11 + i / 3, (i % 3) * 20))
        .collect();
    let ids: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    let rows: Vec<Row<'_>> = ids
        .iter()
        .zip(&starts)
        .map(|(id, st)| Row::new(id, st, Place::NantesCentre))
        .collect();
    let (app, op) = pushed(&rows).await;
    let (s, body) = app.search(&op, AT_NANTES).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["count"], 10);
    assert_eq!(result_ids(&body), ids[..10]);
    let (s, body) = app.search(&op, &format!("{AT_NANTES}&limit=100")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(result_ids(&body), ids);
    let (s, body) = app.search(&op, &format!("{AT_NANTES}&limit=101")).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["code"], "invalid_parameter");
    assert!(
        body["detail"].as_str().unwrap().contains("`limit`"),
        "{body}"
    );
}

/// `neutral` keeps distance buckets of 1 km in order and shuffles within each, the same way
/// for the same `seed`.
#[tokio::test]
async fn neutral_order_shuffles_within_distance_buckets_reproducibly_by_seed() {
    let (app, op) = pushed(&[
        Row::new("n1", "2026-11-23 11:00", Place::NantesCentre),
        Row::new("n2", "2026-11-23 11:20", Place::NantesCentre),
        Row::new("n3", "2026-11-23 11:40", Place::NantesCentre),
        Row::new("n4", "2026-11-23 12:00", Place::NantesCentre),
        Row::new("r1", "2026-11-23 11:00", Place::Reze),
        Row::new("r2", "2026-11-23 11:20", Place::Reze),
        Row::new("h1", "2026-11-23 10:30", Place::SaintHerblain),
    ])
    .await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mut orders = std::collections::HashSet::new();
    for seed in 1..=20 {
        let q = format!("order=neutral&seed={seed}");
        let ids = ids_at_nantes(&app, &op, &q).await;
        assert_eq!(ids.len(), 7, "{q}: {ids:?}");
        assert_eq!(sorted(ids[..4].to_vec()), ["n1", "n2", "n3", "n4"], "{q}");
        assert_eq!(sorted(ids[4..6].to_vec()), ["r1", "r2"], "{q}");
        assert_eq!(ids[6], "h1", "{q}");
        assert_eq!(
            ids_at_nantes(&app, &op, &q).await,
            ids,
            "same seed, same order"
        );
        orders.insert(ids);
    }
    assert!(
        orders.len() > 1,
        "twenty seeds gave one order: not shuffled"
    );
    let (s, body) = app
        .search(&op, &format!("{AT_NANTES}&order=neutral&seed=abc"))
        .await;
    assert_eq!(s, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("`seed`"),
        "{body}"
    );
}

#[tokio::test]
async fn soonest_puts_a_farther_earlier_slot_before_a_nearer_later_one() {
    let (app, op) = pushed(&[
        Row::new("near-late", "2026-11-23 15:00", Place::NantesCentre),
        Row::new("far-early", "2026-11-23 11:00", Place::Reze),
    ])
    .await;
    assert_eq!(
        ids_at_nantes(&app, &op, "").await,
        ["near-late", "far-early"]
    );
    assert_eq!(
        ids_at_nantes(&app, &op, "order=distance").await,
        ["near-late", "far-early"]
    );
    assert_eq!(
        ids_at_nantes(&app, &op, "order=soonest").await,
        ["far-early", "near-late"]
    );
}

#[tokio::test]
async fn specialty_modality_and_surnumeraire_filters_alone() {
    let (app, op) = pushed(&[
        Row::new("gp", "2026-11-23 11:00", Place::NantesCentre),
        Row {
            specialty: "SM40",
            ..Row::new("paed", "2026-11-23 11:00", Place::NantesCentre)
        },
        Row {
            modality: "domicile",
            ..Row::new("home", "2026-11-23 11:20", Place::NantesCentre)
        },
        Row {
            modality: "VR",
            ..Row::new("video", "2026-11-23 11:40", Place::NantesCentre)
        },
        Row {
            surnumeraire: true,
            ..Row::new("extra", "2026-11-23 12:00", Place::NantesCentre)
        },
    ])
    .await;
    // specialty alone; codes are read case-insensitively
    assert_eq!(ids_at_nantes(&app, &op, "specialty=SM40").await, ["paed"]);
    assert_eq!(ids_at_nantes(&app, &op, "specialty=sm40").await, ["paed"]);
    assert!(
        !ids_at_nantes(&app, &op, "specialty=SM54")
            .await
            .contains(&"paed".to_string())
    );
    assert_eq!(
        ids_at_nantes(&app, &op, "specialty=SM99").await,
        Vec::<String>::new()
    );
    // a repeated modality is the same as a list
    let listed = ids_at_nantes(&app, &op, "modality=HH,AMB").await;
    assert_eq!(listed, ["gp", "paed", "home", "extra"]);
    assert_eq!(
        ids_at_nantes(&app, &op, "modality=HH&modality=AMB").await,
        listed
    );
    assert_eq!(ids_at_nantes(&app, &op, "modality=VR").await, ["video"]);
    // surnuméraire: include is the default, stated or not
    let all = ["gp", "paed", "home", "video", "extra"];
    assert_eq!(ids_at_nantes(&app, &op, "").await, all);
    assert_eq!(ids_at_nantes(&app, &op, "surnumeraire=include").await, all);
    assert_eq!(
        ids_at_nantes(&app, &op, "surnumeraire=only").await,
        ["extra"]
    );
    assert_eq!(
        ids_at_nantes(&app, &op, "surnumeraire=exclude").await,
        ["gp", "paed", "home", "video"]
    );
}

/// Only slots starting after now are offered: not one starting this very second, nor one
/// that started a minute ago (still in progress, so still stored).
#[tokio::test]
async fn only_slots_starting_after_now_are_offered() {
    let (app, op) = pushed(&[
        Row::new("s1000", "2026-11-23 10:00", Place::NantesCentre),
        Row::new("s1005", "2026-11-23 10:05", Place::NantesCentre),
        Row::new("s1006", "2026-11-23 10:06", Place::NantesCentre),
    ])
    .await;
    assert_eq!(ids_at_nantes(&app, &op, "").await, ["s1005", "s1006"]);
    app.clock.advance(chrono::Duration::minutes(5));
    assert_eq!(ids_at_nantes(&app, &op, "").await, ["s1006"]);
    assert_eq!(ids_at_nantes(&app, &op, "window=0-4h").await, ["s1006"]);
    app.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(ids_at_nantes(&app, &op, "").await, Vec::<String>::new());
    // an explicit `from` in the past does not bring them back
    assert_eq!(
        ids_at_nantes(&app, &op, "from=2026-11-23T09:00:00%2B01:00").await,
        Vec::<String>::new()
    );
}

/// A CSV feed of one slot per `(id, start, (name, address, postcode, city, lat, lon))`.
fn csv_at(rows: &[(&str, &str, [&str; 6])]) -> String {
    let mut out = String::from(
        "slot_id;debut;duree;statut;profession;specialite;lieu;adresse;code_postal;ville;latitude;longitude;modalite\r\n",
    );
    for (id, start, [name, addr, pc, city, lat, lon]) in rows {
        out.push_str(&format!(
            "{id};{start};20;libre;10;SM54;{name};{addr};{pc};{city};{lat};{lon};AMB\r\n"
        ));
    }
    out
}

/// Mayenne (53): 30 km, then steps of 15 km up to 90 km. From Laval, Gorron (≈ 39 km) needs
/// one step; 49, 72 and 85 start at 20 km (cap 60 km).
#[tokio::test]
async fn radius_defaults_follow_the_patients_department() {
    let app = spawn_app().await;
    let op = app.token("osnp", Role::Operator, None).await;
    let laval = sasnp::domain::LatLon::new(48.0707, -0.7734).unwrap();
    let cpts = app
        .state
        .geo
        .locate(laval)
        .unwrap()
        .territory
        .unwrap()
        .id
        .clone();
    let publisher = app.token("cpts-laval", Role::Cpts, Some(&cpts)).await;
    let source = app.csv_source(&publisher, &cpts).await;
    let feed = csv_at(&[
        (
            "laval",
            "2026-11-23 15:00",
            [
                "Cabinet de la Trinité",
                "1 place de la Trinité",
                "53000",
                "Laval",
                "48.0707",
                "-0.7734",
            ],
        ),
        (
            "gorron",
            "2026-11-23 11:00",
            [
                "MSP de Gorron",
                "2 rue de la Mairie",
                "53120",
                "Gorron",
                "48.4207",
                "-0.8055",
            ],
        ),
    ]);
    let (s, report) = app.push_csv(&publisher, source, feed).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["accepted"], 2, "{report}");
    let at_laval = "lat=48.0707&lon=-0.7734";
    let (s, body) = app.search(&op, &format!("{at_laval}&limit=1")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["patient"]["department"], "53");
    assert_eq!(body["base_radius_km"], 30.0);
    assert_eq!(body["max_radius_km"], 90.0);
    assert_eq!(body["radius_km"], 30.0);
    assert_eq!(body["enlargement_steps"], 0);
    assert_eq!(result_ids(&body), ["laval"]);
    let (_, body) = app.search(&op, &format!("{at_laval}&limit=2")).await;
    assert_eq!(result_ids(&body), ["laval", "gorron"]);
    assert_eq!(body["radius_km"], 45.0);
    assert_eq!(body["enlargement_steps"], 1);
    let d = body["results"][1]["distance_km"].as_f64().unwrap();
    assert!((30.0..45.0).contains(&d), "Gorron at {d} km");
    // Angers (49), Le Mans (72), La Roche-sur-Yon (85): 20 km + 10 km steps
    for (point, dep) in [
        ("lat=47.4739&lon=-0.5517", "49"),
        ("lat=48.0061&lon=0.1996", "72"),
        ("lat=46.6705&lon=-1.4269", "85"),
    ] {
        let (s, body) = app.search(&op, point).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["patient"]["department"], dep);
        assert_eq!(body["base_radius_km"], 20.0, "{dep}");
        assert_eq!(body["max_radius_km"], 60.0, "{dep}");
        // nothing published there: the radius grew to the cap
        assert_eq!(body["radius_km"], 60.0, "{dep}");
        assert_eq!(body["enlargement_steps"], 4, "{dep}");
    }
}
