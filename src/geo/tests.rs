//! Behaviour of search, resolve and locate on a small synthetic geography.

use super::*;
use geo::{Rect, coord};

fn square(x: f64, y: f64) -> MultiPolygon<f64> {
    MultiPolygon(vec![
        Rect::new(coord! { x: x, y: y }, coord! { x: x + 1.0, y: y + 1.0 }).to_polygon(),
    ])
}

fn commune(
    insee: &str,
    name: &str,
    pcs: &[&str],
    population: u32,
    sq: Option<(f64, f64)>,
) -> Commune {
    let (x, y) = sq.unwrap_or((4.0, 0.0));
    Commune {
        insee: insee.parse().unwrap(),
        name: name.into(),
        department: insee[..2].into(),
        postcodes: pcs.iter().map(|p| p.parse().unwrap()).collect(),
        population,
        interior: LatLon::new(y + 0.5, x + 0.5).unwrap(),
        cpts_id: None,
        aliases: Vec::new(),
        geometry: sq.map(|(x, y)| square(x, y)),
        polygon_of: if sq.is_none() {
            Some("85084".parse().unwrap())
        } else {
            None
        },
    }
}

fn sample() -> Geography {
    let mut essarts = commune(
        "85084",
        "Essarts-en-Bocage",
        &["85140"],
        6851,
        Some((4.0, 0.0)),
    );
    essarts.aliases = vec!["Boulogne".into(), "Les Essarts".into()];
    let communes = vec![
        commune(
            "44109",
            "Nantes",
            &["44000", "44100", "44200", "44300"],
            320_000,
            Some((0.0, 0.0)),
        ),
        commune("44143", "Rezé", &["44400"], 42_000, Some((1.0, 0.0))),
        commune(
            "44184",
            "Saint-Nazaire",
            &["44600"],
            72_000,
            Some((2.0, 0.0)),
        ),
        commune(
            "44185",
            "Saint-Nicolas-de-Redon",
            &["44460"],
            3_300,
            Some((3.0, 0.0)),
        ),
        commune("44125", "Le Pin", &["44540"], 700, Some((0.0, 1.0))),
        commune(
            "49007",
            "Angers",
            &["49000", "49100"],
            155_000,
            Some((1.0, 1.0)),
        ),
        commune("49240", "Le Pin", &["49540"], 500, Some((2.0, 1.0))),
        essarts,
        commune("85165", "L'Oie", &["85140"], 1250, None),
        commune("85212", "Sainte-Florence", &["85140"], 1359, None),
    ];
    let mut communes = communes;
    communes.sort_by(|a, b| a.insee.cmp(&b.insee));
    let t = |id: &str, members: &[&str]| Territory {
        id: id.into(),
        name: format!("CPTS {id}"),
        department: members[0][..2].into(),
        finess: None,
        communes: members.iter().map(|m| m.parse().unwrap()).collect(),
        geometry: MultiPolygon(vec![]),
    };
    let territories = vec![
        t("estuaire", &["44109", "44143", "44184"]),
        t("bocage", &["85084", "85165", "85212"]),
    ];
    Geography::assemble(communes, territories)
}

fn names(v: &[&Commune]) -> Vec<String> {
    v.iter().map(|c| c.name.clone()).collect()
}

fn pc(s: &str) -> Postcode {
    s.parse().unwrap()
}

#[test]
fn name_search_ignores_accents_case_hyphens_and_ranks_exact_first() {
    let g = sample();
    for q in [
        "saint nazaire",
        "SAINT-NAZAIRE",
        "St Nazaire",
        "  saint_nazaire ",
    ] {
        assert_eq!(g.search_communes(q, 5)[0].insee.as_str(), "44184", "{q}");
    }
    assert_eq!(names(&g.search_communes("reze", 5)), ["Rezé"]);
    // prefix: population descending
    assert_eq!(
        names(&g.search_communes("saint n", 5)),
        ["Saint-Nazaire", "Saint-Nicolas-de-Redon"]
    );
    // exact before prefix even when the prefix match is bigger
    assert_eq!(names(&g.search_communes("le pin", 5)), ["Le Pin", "Le Pin"]);
    // a word inside the name comes after prefix matches
    assert_eq!(names(&g.search_communes("nazaire", 5)), ["Saint-Nazaire"]);
    // former names find the current commune
    assert_eq!(
        names(&g.search_communes("les essarts", 5)),
        ["Essarts-en-Bocage"]
    );
    assert_eq!(
        names(&g.search_communes("boulogne", 5)),
        ["Essarts-en-Bocage"]
    );
    assert!(g.search_communes("paris", 5).is_empty());
    assert!(g.search_communes("", 5).is_empty());
    assert!(g.search_communes("-'", 5).is_empty());
    assert_eq!(g.search_communes("saint", 1).len(), 1);
}

#[test]
fn postal_code_search_exact_prefix_and_insee() {
    let g = sample();
    assert_eq!(names(&g.search_communes("44000", 10)), ["Nantes"]);
    assert_eq!(
        names(&g.search_communes("85140", 10)),
        ["Essarts-en-Bocage", "Sainte-Florence", "L'Oie"]
    );
    assert_eq!(
        names(&g.search_communes("44", 10)),
        [
            "Nantes",
            "Saint-Nazaire",
            "Rezé",
            "Saint-Nicolas-de-Redon",
            "Le Pin"
        ]
    );
    assert_eq!(names(&g.search_communes("446", 10)), ["Saint-Nazaire"]);
    assert_eq!(
        names(&g.search_communes("44184", 10)),
        ["Saint-Nazaire"],
        "an INSEE code when no postal code"
    );
    assert!(g.search_communes("4", 10).is_empty());
    assert!(g.search_communes("75001", 10).is_empty());
    assert_eq!(names(&g.communes_by_postcode(&pc("85140"))).len(), 3);
}

#[test]
fn resolve_place_rules() {
    let g = sample();
    let r = |p: Option<&str>, c: Option<&str>| {
        let p = p.map(pc);
        g.resolve_place(p.as_ref(), c).map(|c| c.insee.to_string())
    };
    assert_eq!(
        r(Some("44000"), Some("NANTES CEDEX 1")).as_deref(),
        Some("44109")
    );
    assert_eq!(r(Some("85140"), Some("L'Oie")).as_deref(), Some("85165"));
    assert_eq!(
        r(Some("85140"), Some("Ste Florence")).as_deref(),
        Some("85212")
    );
    assert_eq!(
        r(Some("85140"), Some("Les Essarts")).as_deref(),
        Some("85084"),
        "former name"
    );
    assert_eq!(r(Some("85140"), None), None, "3 communes share 85140");
    assert_eq!(
        r(Some("85140"), Some("La Merlatière")),
        None,
        "ambiguous postcode, unknown city"
    );
    assert_eq!(r(Some("44000"), None).as_deref(), Some("44109"));
    assert_eq!(
        r(Some("44400"), Some("La Houssais")).as_deref(),
        Some("44143"),
        "hamlet in city field"
    );
    assert_eq!(
        r(Some("44000"), Some("Rezé")).as_deref(),
        Some("44143"),
        "city wins over a wrong postcode"
    );
    assert_eq!(
        r(Some("44035"), Some("Nantes Cedex")).as_deref(),
        Some("44109"),
        "CEDEX postcode"
    );
    assert_eq!(
        r(Some("75001"), Some("Rezé")),
        None,
        "postcode of another department"
    );
    assert_eq!(r(None, Some("reze")).as_deref(), Some("44143"));
    assert_eq!(r(None, Some("Le Pin")), None, "two communes named Le Pin");
    assert_eq!(r(None, None), None);
}

#[test]
fn locate_and_territories() {
    let g = sample();
    let at = |lat: f64, lon: f64| {
        g.locate(LatLon::new(lat, lon).unwrap())
            .map(|l| l.commune.insee.to_string())
    };
    assert_eq!(at(0.5, 0.5).as_deref(), Some("44109"));
    assert_eq!(
        at(0.5, 4.5).as_deref(),
        Some("85084"),
        "split communes answer their parent"
    );
    assert_eq!(
        at(0.5, 1.0).as_deref(),
        Some("44109"),
        "a shared border goes to the lower INSEE code"
    );
    assert_eq!(at(5.0, 5.0), None);
    assert!(!g.region_contains(LatLon::new(-0.5, 0.5).unwrap()));
    let l = g.locate(LatLon::new(0.5, 1.5).unwrap()).unwrap();
    assert_eq!((l.commune.name.as_str(), l.department), ("Rezé", "44"));
    assert_eq!(l.territory.unwrap().id, "estuaire");
    assert!(
        g.locate(LatLon::new(1.5, 1.5).unwrap())
            .unwrap()
            .territory
            .is_none()
    );
    let oie = g.commune(&"85165".parse().unwrap()).unwrap();
    assert_eq!(oie.cpts_id.as_deref(), Some("bocage"));
    assert_eq!(
        g.territory_of(&"85212".parse().unwrap()).unwrap().id,
        "bocage"
    );
    assert_eq!(g.territory("estuaire").unwrap().communes.len(), 3);
    assert!(g.territory("nope").is_none());
    let v: serde_json::Value = serde_json::from_str(g.territories_geojson()).unwrap();
    assert_eq!(v["features"][1]["properties"]["id"], "bocage");
}

#[test]
fn geography_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Geography>();
}

#[test]
fn the_grid_in_front_of_the_locator_gives_the_exact_answer_everywhere() {
    // the committed geography of the region: real polygons, holes, enclaves and coastlines
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata");
    let g = Geography::load(&dir).expect("committed geodata loads");
    // a fine lattice over the region and its surroundings (cells are 0.01°: several points per
    // cell, some on cell edges), asked twice: first when cells are filled, then from them
    let points: Vec<(f64, f64)> = (0..=420)
        .flat_map(|i| {
            (0..=300).map(move |j| (-2.75 + i as f64 * 0.00873, 46.2 + j as f64 * 0.00857))
        })
        .collect();
    let mut cached_cells = 0;
    for round in 0..2 {
        for &(lon, lat) in &points {
            assert_eq!(
                g.locator.locate(lon, lat),
                g.locator.locate_exactly(lon, lat),
                "round {round}, ({lon}, {lat})"
            );
        }
        if round == 1 {
            cached_cells = g.locator.settled_cells();
        }
    }
    // the grid is in use: most cells of the region are away from any commune boundary
    assert!(cached_cells > 10_000, "{cached_cells} settled cells");
    // points on a boundary: every vertex of a few communes' polygons
    for c in g.communes().iter().take(40) {
        for poly in c.geometry.iter().flat_map(|mp| &mp.0) {
            for p in poly.exterior().points() {
                assert_eq!(
                    g.locator.locate(p.x(), p.y()),
                    g.locator.locate_exactly(p.x(), p.y())
                );
            }
        }
    }
}
