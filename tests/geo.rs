//! The committed `geodata/` as the service loads it: point lookup, postal codes, names,
//! territories, and that `geodata build` reproduces it byte for byte.

use sasnp::domain::{InseeCode, LatLon, Postcode};
use sasnp::geo::build::{self, BuildOptions, SPLIT_COMMUNES};
use sasnp::geo::{COMMUNES_FILE, Geography, PERIMETERS_FILE, TERRITORIES_FILE};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

const SOURCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/geodata-src");

fn geodata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata")
}

fn source_dir() -> PathBuf {
    let p = PathBuf::from(SOURCE_DIR);
    assert!(
        p.join("decoupage-administratif/communes.json").is_file(),
        "geodata sources not found at {} (expected ../shared/geodata-src next to the crate, see geodata/README.md)",
        p.display()
    );
    p
}

fn geo() -> &'static Geography {
    static G: OnceLock<Geography> = OnceLock::new();
    G.get_or_init(|| Geography::load(&geodata_dir()).expect("committed geodata loads"))
}

fn insee(s: &str) -> InseeCode {
    s.parse().unwrap()
}

fn pt(lat: f64, lon: f64) -> LatLon {
    LatLon::new(lat, lon).unwrap()
}

/// `insee → cpts_id` straight from the committed CSV text.
fn csv_membership() -> HashMap<String, String> {
    let text = std::fs::read_to_string(geodata_dir().join(PERIMETERS_FILE)).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            (f[4].to_string(), f[0].to_string())
        })
        .collect()
}

#[test]
fn every_interior_point_locates_back_to_its_commune_territory_and_department() {
    let g = geo();
    let cpts = csv_membership();
    assert_eq!(g.communes().len(), 1228);
    let mut checked = 0;
    for c in g.communes() {
        let l = g
            .locate(c.interior)
            .unwrap_or_else(|| panic!("{} {}: interior point not located", c.insee, c.name));
        let expected = c.polygon_of.as_ref().unwrap_or(&c.insee);
        assert_eq!(&l.commune.insee, expected, "{} {}", c.insee, c.name);
        assert_eq!(l.department, c.insee.department());
        assert_eq!(
            l.territory.map(|t| t.id.as_str()),
            cpts.get(l.commune.insee.as_str()).map(String::as_str)
        );
        if c.geometry.is_some() {
            checked += 1;
            assert_eq!(l.commune.name, c.name);
            assert_eq!(l.territory.map(|t| &t.id), c.cpts_id.as_ref());
        }
    }
    assert_eq!(
        checked, 1226,
        "every commune but the 2 split ones has its own polygon"
    );
}

#[test]
fn split_communes_share_their_parents_polygon() {
    let g = geo();
    for (child, parent) in SPLIT_COMMUNES {
        let c = g.commune(&insee(child)).unwrap();
        let p = g.commune(&insee(parent)).unwrap();
        assert!(c.geometry.is_none());
        assert_eq!(c.polygon_of.as_ref(), Some(&p.insee));
        assert_eq!(c.interior, p.interior);
        assert_eq!(g.locate(c.interior).unwrap().commune.insee, p.insee);
        assert_eq!(c.cpts_id, p.cpts_id, "same EPCI, same default territory");
        // still found by postal code and by name
        assert!(
            g.communes_by_postcode(&"85140".parse().unwrap())
                .iter()
                .any(|x| x.insee == c.insee)
        );
        assert_eq!(g.search_communes(&c.name, 1)[0].insee, c.insee);
    }
    assert_eq!(g.commune(&insee("85165")).unwrap().name, "L'Oie");
}

#[test]
fn nantes_point_is_nantes_in_loire_atlantique() {
    let l = geo().locate(pt(47.2184, -1.5536)).unwrap();
    assert_eq!(l.commune.insee.as_str(), "44109");
    assert_eq!(l.commune.name, "Nantes");
    assert_eq!(l.department, "44");
    assert!(l.territory.unwrap().communes.contains(&insee("44109")));
    let angers = geo().locate(pt(47.4784, -0.5632)).unwrap();
    assert_eq!(
        (angers.commune.name.as_str(), angers.department),
        ("Angers", "49")
    );
}

#[test]
fn points_outside_the_region_are_none() {
    let g = geo();
    for (what, lat, lon) in [
        ("Atlantic", 47.0, -3.0),
        ("Paris", 48.8566, 2.3522),
        ("Rennes", 48.1173, -1.6778),
        ("Bay of Biscay off Vendée", 46.5, -2.0),
    ] {
        assert!(g.locate(pt(lat, lon)).is_none(), "{what}");
        assert!(!g.region_contains(pt(lat, lon)), "{what}");
    }
    assert!(g.region_contains(pt(47.2184, -1.5536)));
    // L'Île-d'Yeu is an island, still in the region, and its own territory
    let yeu = g.commune(&insee("85113")).unwrap();
    let l = g.locate(yeu.interior).unwrap();
    assert_eq!(l.commune.insee.as_str(), "85113");
    assert_eq!(l.territory.unwrap().communes, vec![insee("85113")]);
}

#[test]
fn postcode_44000_is_nantes_only() {
    let v = geo().communes_by_postcode(&"44000".parse().unwrap());
    assert_eq!(
        v.iter().map(|c| c.insee.as_str()).collect::<Vec<_>>(),
        ["44109"]
    );
    assert!(
        geo()
            .communes_by_postcode(&"75001".parse().unwrap())
            .is_empty()
    );
}

#[test]
fn every_postcode_returns_all_its_communes_as_in_communes_json() {
    let text = std::fs::read_to_string(source_dir().join("decoupage-administratif/communes.json"))
        .unwrap();
    let raw: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in raw.iter().filter(|c| c["type"] == "commune-actuelle") {
        for pc in c["codesPostaux"].as_array().unwrap() {
            expected
                .entry(pc.as_str().unwrap().into())
                .or_default()
                .insert(c["code"].as_str().unwrap().into());
        }
    }
    assert_eq!(expected.len(), 306);
    let g = geo();
    for (pc, codes) in &expected {
        let got: BTreeSet<String> = g
            .communes_by_postcode(&pc.parse::<Postcode>().unwrap())
            .iter()
            .map(|c| c.insee.to_string())
            .collect();
        assert_eq!(&got, codes, "postal code {pc}");
    }
    // 85140 is shared by Essarts-en-Bocage and the two communes split out of it (and others)
    let shared = &expected["85140"];
    assert!(
        shared.len() >= 3
            && ["85084", "85165", "85212"]
                .iter()
                .all(|c| shared.contains(*c))
    );
    let got = g.communes_by_postcode(&"85140".parse().unwrap());
    assert_eq!(got.len(), shared.len());
    assert!(
        got.windows(2).all(|w| w[0].population >= w[1].population),
        "population descending"
    );
}

#[test]
fn name_search_and_address_resolution_on_real_data() {
    let g = geo();
    for q in ["saint nazaire", "Saint-Nazaire", "ST NAZAIRE"] {
        assert_eq!(g.search_communes(q, 5)[0].insee.as_str(), "44184", "{q}");
    }
    let sugg = g.search_communes("ange", 5);
    assert_eq!(sugg[0].name, "Angers", "prefix suggestions by population");
    assert!(sugg.len() > 1);
    assert_eq!(g.search_communes("44600", 5)[0].insee.as_str(), "44184");
    let r = |p: Option<&str>, c: Option<&str>| {
        let p: Option<Postcode> = p.map(|p| p.parse().unwrap());
        g.resolve_place(p.as_ref(), c).map(|c| c.insee.to_string())
    };
    assert_eq!(
        r(Some("44600"), Some("ST NAZAIRE")).as_deref(),
        Some("44184")
    );
    assert_eq!(
        r(Some("44000"), Some("Nantes Cedex 1")).as_deref(),
        Some("44109")
    );
    assert_eq!(
        r(Some("85140"), Some("Les Essarts")).as_deref(),
        Some("85084"),
        "délégué name"
    );
    assert_eq!(r(Some("85140"), Some("L'Oie")).as_deref(), Some("85165"));
    assert_eq!(
        r(None, Some("Champtoceaux")).as_deref(),
        Some("49126"),
        "former commune → Orée d'Anjou"
    );
    assert_eq!(
        r(Some("85140"), None),
        None,
        "85140 serves several communes"
    );
    assert_eq!(r(None, Some("Angers")).as_deref(), Some("49007"));
}

#[test]
fn every_commune_is_in_exactly_one_territory() {
    let g = geo();
    let mut count: HashMap<&InseeCode, usize> = HashMap::new();
    for t in g.territories() {
        assert!(
            !t.communes.is_empty() && !t.geometry.0.is_empty(),
            "{}",
            t.id
        );
        assert!(t.name.starts_with("CPTS "), "{}", t.name);
        assert!(sasnp::domain::DEPARTMENTS.contains(&t.department.as_str()));
        assert!(t.finess.is_none());
        for c in &t.communes {
            *count.entry(c).or_default() += 1;
        }
    }
    for c in g.communes() {
        assert_eq!(count.get(&c.insee), Some(&1), "{} {}", c.insee, c.name);
        let t = g.territory_of(&c.insee).unwrap();
        assert_eq!(Some(&t.id), c.cpts_id.as_ref());
        assert_eq!(g.territory(&t.id).unwrap().id, t.id);
    }
    assert_eq!(count.len(), 1228);
    // the territories feed served to the map
    let v: serde_json::Value = serde_json::from_str(g.territories_geojson()).unwrap();
    assert_eq!(
        v["features"].as_array().unwrap().len(),
        g.territories().len()
    );
    assert_eq!(v["features"][0]["geometry"]["type"], "MultiPolygon");
}

#[test]
fn build_reproduces_the_committed_files_byte_for_byte() {
    let src = source_dir();
    let tmp = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let summary = build::build(&src, tmp.path()).unwrap();
    eprintln!("build took {:?}\n{summary}", t0.elapsed());
    assert_eq!(summary.communes, 1228);
    assert_eq!(summary.communes_with_polygon, 1226);
    assert_eq!(summary.polygons_read, 1272);
    assert_eq!(summary.polygons_mapped, [1225, 41, 6]);
    for f in [COMMUNES_FILE, TERRITORIES_FILE, PERIMETERS_FILE] {
        let built = std::fs::read(tmp.path().join(f)).unwrap();
        let committed = std::fs::read(geodata_dir().join(f)).unwrap();
        assert!(
            built == committed,
            "{f} differs from what `geodata build` makes: rebuild and commit geodata/"
        );
    }
    // an existing (replaced) perimeters CSV is kept as is
    let csv = tmp.path().join(PERIMETERS_FILE);
    let small = "cpts_id;name;department;finess;insee\nx;CPTS X;44;;44109\n";
    std::fs::write(&csv, small).unwrap();
    let again = build::build(&src, tmp.path()).unwrap();
    assert_eq!(again.territories, 1);
    assert_eq!(again.communes_without_territory, 1227);
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), small);
    // unless asked to regenerate
    build::build_with(
        &src,
        tmp.path(),
        &BuildOptions {
            regenerate_perimeters: true,
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&csv).unwrap(),
        std::fs::read(geodata_dir().join(PERIMETERS_FILE)).unwrap()
    );
}

#[test]
fn a_replaced_perimeters_csv_changes_territory_lookups() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        geodata_dir().join(COMMUNES_FILE),
        tmp.path().join(COMMUNES_FILE),
    )
    .unwrap();
    // the committed (now stale) territories cache must be ignored
    std::fs::copy(
        geodata_dir().join(TERRITORIES_FILE),
        tmp.path().join(TERRITORIES_FILE),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join(PERIMETERS_FILE),
        "cpts_id;name;department;finess;insee\n\
         erdre-et-cens;CPTS Erdre et Cens;44;;44114\n\
         erdre-et-cens;CPTS Erdre et Cens;44;;44035\n\
         erdre-et-cens;CPTS Erdre et Cens;44;;44194\n\
         nantes-grand-ouest;CPTS Nantes Grand Ouest;44;440000000;44047\n\
         nantes-grand-ouest;CPTS Nantes Grand Ouest;44;440000000;44074\n\
         nantes-grand-ouest;CPTS Nantes Grand Ouest;44;440000000;44162\n",
    )
    .unwrap();
    let g = Geography::load(tmp.path()).unwrap();
    assert_eq!(g.territories().len(), 2);
    let orvault = g.commune(&insee("44114")).unwrap();
    assert_eq!(orvault.name, "Orvault");
    let l = g.locate(orvault.interior).unwrap();
    assert_eq!(l.territory.unwrap().name, "CPTS Erdre et Cens");
    assert_eq!(orvault.cpts_id.as_deref(), Some("erdre-et-cens"));
    let herblain = g
        .locate(g.commune(&insee("44162")).unwrap().interior)
        .unwrap();
    assert_eq!(herblain.commune.name, "Saint-Herblain");
    assert_eq!(herblain.territory.unwrap().id, "nantes-grand-ouest");
    assert_eq!(
        herblain.territory.unwrap().finess.as_deref(),
        Some("440000000")
    );
    // Nantes is in neither
    let nantes = g.locate(pt(47.2184, -1.5536)).unwrap();
    assert_eq!(nantes.commune.name, "Nantes");
    assert!(nantes.territory.is_none() && nantes.commune.cpts_id.is_none());
    assert!(g.territory_of(&insee("44109")).is_none());
    // outlines recomputed from the new members
    use geo::Contains;
    let t = g.territory("erdre-et-cens").unwrap();
    assert!(
        t.geometry
            .contains(&geo::Point::new(orvault.interior.lon, orvault.interior.lat))
    );
    let nantes_pt = geo::Point::new(-1.5536, 47.2184);
    assert!(!t.geometry.contains(&nantes_pt));
    let v: serde_json::Value = serde_json::from_str(g.territories_geojson()).unwrap();
    assert_eq!(v["features"][0]["properties"]["name"], "CPTS Erdre et Cens");
}

#[test]
fn load_errors_name_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(geodata_dir().join(COMMUNES_FILE)).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[9] = lines[9].replacen("\"population\":", "\"populatio\":", 1);
    std::fs::write(tmp.path().join(COMMUNES_FILE), lines.join("\n")).unwrap();
    std::fs::copy(
        geodata_dir().join(PERIMETERS_FILE),
        tmp.path().join(PERIMETERS_FILE),
    )
    .unwrap();
    let err = Geography::load(tmp.path()).err().unwrap().to_string();
    assert!(
        err.contains("communes.geojson") && err.contains("line 10"),
        "{err}"
    );

    std::fs::copy(
        geodata_dir().join(COMMUNES_FILE),
        tmp.path().join(COMMUNES_FILE),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join(PERIMETERS_FILE),
        "cpts_id;name;department;finess;insee\na;CPTS A;44;;99999\n",
    )
    .unwrap();
    let err = Geography::load(tmp.path()).err().unwrap().to_string();
    assert!(
        err.contains("cpts-perimeters.csv:2") && err.contains("99999"),
        "{err}"
    );

    std::fs::remove_file(tmp.path().join(PERIMETERS_FILE)).unwrap();
    let err = Geography::load(tmp.path()).err().unwrap().to_string();
    assert!(err.contains("cpts-perimeters.csv"), "{err}");
}

/// Rough timings (reported, never asserted): `cargo test --test geo timings -- --nocapture`.
#[test]
fn timings() {
    let t0 = Instant::now();
    let g = Geography::load(&geodata_dir()).unwrap();
    let load = t0.elapsed();
    let points: Vec<LatLon> = g.communes().iter().map(|c| c.interior).collect();
    let t1 = Instant::now();
    let mut found = 0;
    for _ in 0..10 {
        for p in &points {
            found += usize::from(g.locate(*p).is_some());
        }
    }
    let per_locate = t1.elapsed() / (10 * points.len() as u32);
    let t2 = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(g.search_communes("saint", 10));
    }
    let per_search = t2.elapsed() / 100;
    assert_eq!(found, 10 * points.len());
    eprintln!(
        "load {load:?}, locate {per_locate:?}/point, search_communes(\"saint\") {per_search:?}"
    );
}

/// Regenerates the committed `geodata/` (keeps its perimeters CSV):
/// `cargo test --test geo regenerate_geodata -- --ignored`.
#[test]
#[ignore]
fn regenerate_geodata() {
    let summary = build::build(&source_dir(), &geodata_dir()).unwrap();
    eprintln!("{summary}");
}
