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
