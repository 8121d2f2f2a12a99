//! Deterministic synthetic slot feeds for Pays de la Loire, and writers that render any
//! [`NormalizedFeed`] in the three feed formats.
//!
//! Rules kept here: the same [`GenSpec`] always gives the same feed (seeded `StdRng`, no
//! clock, no I/O); every generated slot is acceptable to [`super::ingest`] with
//! `now = spec.start` on a resolver that knows the towns (so a round trip returns exactly the
//! generated count and fields); writers only emit what the readers map back (see
//! `tests/ingest.rs`, round-trip tests).
//!
//! What is generated: places clustered within 3 km of towns picked in proportion to their
//! population, 1–3 practitioners per place (fake RPPS with the SAS `8` prefix, French
//! names; médecins SM54, infirmiers, sages-femmes), 30 % of places in their town's CPTS,
//! modalities AMB 75 % / HH 15 % / VR 10 %, durations 10–30 min, starts over the next 72 h
//! during opening hours (08:00–20:00 Europe/Paris), 15 % busy, 10 % surnuméraires.

use super::fhir::{
    EXT_BOOKING_PHONE, EXT_SLOT_SERVICE_TYPE, EXT_SURNUMERAIRE, SYSTEM_ACT_CODE,
    SYSTEM_APPOINTMENT_TYPE, SYSTEM_PROFESSION, SYSTEM_SPECIALITE, SYSTEM_TYPE_CRENEAU,
};
use super::normalize::{OID_IDNPS, OID_IDNST, paris_to_utc};
use super::sample::TOWNS;
use crate::domain::slot::{
    AppointmentType, Audience, AudienceSet, FeedStatus, LocationPrecision, Modality,
    NormalizedFeed, Place, Practitioner, Slot, Structure, StructureKind,
};
use crate::domain::{LatLon, Postcode};
use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use chrono_tz::Europe::Paris;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// A town places are generated around: (name, postcode, interior point, population).
pub type GenTown = (String, Postcode, LatLon, u32);

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenSpec {
    pub seed: u64,
    /// Number of slots.
    pub slots: usize,
    /// Number of places (at least 1 is generated).
    pub places: usize,
    /// Slots start within `[start, start + 72 h)`; ingest with `now = start`.
    pub start: DateTime<Utc>,
    /// Towns weighted by population; [`GenSpec::default_towns`] when built with [`GenSpec::new`].
    pub towns: Vec<GenTown>,
}

impl GenSpec {
    /// A spec over the built-in towns of [`super::sample::TOWNS`].
    pub fn new(seed: u64, slots: usize, places: usize, start: DateTime<Utc>) -> Self {
        Self {
            seed,
            slots,
            places,
            start,
            towns: Self::default_towns(),
        }
    }

    /// 25 real towns of the five departments with their population.
    pub fn default_towns() -> Vec<GenTown> {
        TOWNS
            .iter()
            .map(|t| {
                let pc = t.postcodes[0].parse().expect("valid postcode");
                let p = LatLon::new(t.lat, t.lon).expect("valid position");
                (t.name.to_string(), pc, p, t.population)
            })
            .collect()
    }
}

/// A generated feed (already in the normalised model).
pub type GeneratedFeed = NormalizedFeed;

const FIRST_NAMES: &[&str] = &[
    "Camille",
    "Léa",
    "Manon",
    "Chloé",
    "Emma",
    "Inès",
    "Sarah",
    "Juliette",
    "Anaïs",
    "Hélène",
    "Claire",
    "Élodie",
    "Thomas",
    "Nicolas",
    "Julien",
    "Maxime",
    "Antoine",
    "Hugo",
    "Lucas",
    "Étienne",
    "François",
    "Jérôme",
    "Yann",
    "Gwenaël",
    "Loïc",
    "Mathilde",
    "Solène",
    "Benoît",
    "Aurélien",
    "Gaëlle",
];
const LAST_NAMES: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "Guérin",
    "Le Goff",
    "Le Gall",
    "Bréhier",
    "Chevalier",
    "Gautier",
    "Rivière",
    "Ménard",
];
const STREETS: &[&str] = &[
    "rue de la Paix",
    "avenue de la République",
    "rue Victor Hugo",
    "boulevard Jean Jaurès",
    "rue des Écoles",
    "place de l'Église",
    "rue du Général Leclerc",
    "allée des Tilleuls",
    "rue Pasteur",
    "rue de la Loire",
    "chemin des Vignes",
    "rue Saint-Michel",
];

/// Generates a feed (rules in the module doc).
pub fn generate(spec: &GenSpec) -> GeneratedFeed {
    generate_inner(spec, &|_| true)
}

/// Like [`generate`], but every place lies on land inside the region as `resolver` sees it
/// (a point drawn in the sea off Saint-Nazaire or Les Sables-d'Olonne is drawn again, up to
/// 50 times, then the town centre is used): a feed that must ingest without `outside_region`.
pub fn generate_on(spec: &GenSpec, resolver: &dyn super::PlaceResolver) -> GeneratedFeed {
    generate_inner(spec, &|p| resolver.commune_at(p).is_some())
}

fn generate_inner(spec: &GenSpec, accept: &dyn Fn(LatLon) -> bool) -> GeneratedFeed {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let towns: Vec<GenTown> = if spec.towns.is_empty() {
        GenSpec::default_towns()
    } else {
        spec.towns.clone()
    };
    let total_pop: u64 = towns.iter().map(|t| u64::from(t.3.max(1))).sum();
    let n_places = spec.places.max(1);
    struct GenPlace {
        phone: Option<Arc<str>>,
        practitioners: Vec<Arc<Practitioner>>,
        structure: Option<Arc<Structure>>,
    }
    let mut places = Vec::with_capacity(n_places);
    let mut gen_places = Vec::with_capacity(n_places);
    for i in 0..n_places {
        let mut pick = rng.random_range(0..total_pop);
        let ti = towns.iter().position(|t| {
            let w = u64::from(t.3.max(1));
            if pick < w {
                true
            } else {
                pick -= w;
                false
            }
        });
        let (town_name, postcode, center, _) = &towns[ti.unwrap_or(0)];
        // Uniform in a 3 km disc (equirectangular approximation is fine at this scale).
        let round6 = |x: f64| (x * 1e6).round() / 1e6;
        let mut position = *center;
        for _ in 0..50 {
            let r = 3_000.0 * rng.random::<f64>().sqrt();
            let a = rng.random::<f64>() * std::f64::consts::TAU;
            let dlat = r * a.cos() / 111_320.0;
            let dlon = r * a.sin() / (111_320.0 * center.lat.to_radians().cos());
            let p = LatLon::new(round6(center.lat + dlat), round6(center.lon + dlon))
                .expect("valid position");
            if accept(p) {
                position = p;
                break;
            }
        }
        let kind = rng.random_range(0..3);
        let name = match kind {
            0 => format!(
                "Cabinet médical {}",
                LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
            ),
            1 => format!("MSP {town_name} {}", i % 7 + 1),
            _ => format!("Centre de santé {town_name}"),
        };
        let address = format!(
            "{} {}",
            rng.random_range(1..200),
            STREETS[rng.random_range(0..STREETS.len())]
        );
        places.push(Place {
            key: format!("Location/p{i}").into(),
            name: Some(name),
            address: Some(address),
            postcode: Some(postcode.clone()),
            city: Some(town_name.clone()),
            insee: None,
            position,
            precision: LocationPrecision::Exact,
        });
        let ti = ti.unwrap_or(0);
        let structure = rng.random_bool(0.3).then(|| {
            Arc::new(Structure {
                kind: StructureKind::Cpts,
                national_id: Some(format!("1{:09}", 440_000_000 + ti as u64 * 1_013)),
                name: Some(format!("CPTS {town_name}")),
            })
        });
        let practitioners = (0..rng.random_range(1..=3))
            .map(|_| {
                let (profession, specialty) = match rng.random_range(0..10) {
                    0 => ("60", None),
                    1 => ("50", None),
                    _ => ("10", Some("SM54".to_string())),
                };
                Arc::new(Practitioner {
                    national_id: Some(format!("810{:09}", rng.random_range(0..1_000_000_000u64))),
                    name: Some(format!(
                        "{} {}",
                        FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
                        LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
                    )),
                    profession: Some(profession.to_string()),
                    specialty,
                })
            })
            .collect();
        let phone = rng
            .random_bool(0.8)
            .then(|| Arc::from(format!("+332{:08}", rng.random_range(0..100_000_000u64))));
        gen_places.push(GenPlace {
            phone,
            practitioners,
            structure,
        });
    }
    let mut slots = Vec::with_capacity(spec.slots);
    let start_min = spec.start.timestamp().div_euclid(300) * 300 + 300; // next 5-minute boundary
    for n in 0..spec.slots {
        let pi = rng.random_range(0..n_places);
        let gp = &gen_places[pi];
        let duration = Duration::minutes(5 * rng.random_range(2..=6));
        let start = loop {
            let t = start_min + 300 * rng.random_range(0..(72 * 12 - 6));
            let t = Utc.timestamp_opt(t, 0).single().expect("valid timestamp");
            let local = t.with_timezone(&Paris);
            let end_local = (t + duration).with_timezone(&Paris);
            if local.hour() >= 8
                && (end_local.hour() < 20 || (end_local.hour() == 20 && end_local.minute() == 0))
            {
                debug_assert!(
                    paris_to_utc(local.naive_local()).is_ok_and(|(u, amb)| u == t && !amb)
                );
                break t;
            }
        };
        let modality = match rng.random_range(0..20) {
            0..15 => Modality::Ambulatory,
            15..18 => Modality::HomeVisit,
            _ => Modality::Teleconsultation,
        };
        let mut audience = AudienceSet::default();
        audience.insert(Audience::Snp);
        if rng.random_bool(0.5) {
            audience.insert(Audience::Public);
        }
        if gp.structure.is_some() {
            audience.insert(Audience::Cpts);
        }
        let status = if rng.random_bool(0.15) {
            FeedStatus::Busy
        } else {
            FeedStatus::Free
        };
        let practitioner = gp.practitioners[rng.random_range(0..gp.practitioners.len())].clone();
        slots.push(Slot {
            external_id: format!("gen-{}-{n:07}", spec.seed),
            start,
            end: start + duration,
            status,
            place_key: places[pi].key.clone(),
            practitioner: Some(practitioner),
            structure: gp.structure.clone(),
            modality,
            appointment_type: Some(if rng.random_bool(0.9) {
                AppointmentType::Routine
            } else {
                AppointmentType::Walkin
            }),
            audience,
            surnumeraire: rng.random_bool(0.1),
            booking_url: Some(format!("https://rdv.exemple.fr/p{pi}/{n}")),
            booking_phone: gp.phone.clone(),
            capacity: 1,
        });
    }
    NormalizedFeed { places, slots }
}

// ---------------------------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------------------------

/// `Location.id` of a place: the key without its `Location/` prefix when it has one and is a
/// valid FHIR id, else `p{index}`.
fn location_id(place: &Place, index: usize) -> String {
    match place.key.strip_prefix("Location/") {
        Some(id)
            if !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
        {
            id.to_string()
        }
        _ => format!("p{index}"),
    }
}

/// The non-slot resources shared by the FHIR and NDJSON writers, and each slot's references.
struct Resources {
    others: Vec<Value>,
    /// Per slot: (Schedule id, HealthcareService id).
    refs: Vec<(String, Option<String>)>,
}

fn resources(feed: &NormalizedFeed) -> Resources {
    let mut others = Vec::new();
    let mut loc_ids: HashMap<&str, String> = HashMap::new();
    for (i, p) in feed.places.iter().enumerate() {
        let id = location_id(p, i);
        let mut loc = json!({"resourceType": "Location", "id": id,
            "position": {"latitude": p.position.lat, "longitude": p.position.lon}});
        if let Some(n) = &p.name {
            loc["name"] = json!(n);
        }
        let mut address = serde_json::Map::new();
        if let Some(a) = &p.address {
            address.insert("line".into(), json!([a]));
        }
        if let Some(c) = &p.city {
            address.insert("city".into(), json!(c));
        }
        if let Some(pc) = &p.postcode {
            address.insert("postalCode".into(), json!(pc.as_str()));
        }
        if !address.is_empty() {
            loc["address"] = Value::Object(address);
        }
        others.push(loc);
        loc_ids.insert(&*p.key, id);
    }
    type PractitionerKey<'f> = Option<(
        Option<&'f String>,
        Option<&'f String>,
        Option<&'f String>,
        Option<&'f String>,
    )>;
    let mut schedules: HashMap<(&str, PractitionerKey<'_>), String> = HashMap::new();
    let mut services: HashMap<(&str, Option<&String>, Option<&String>), String> = HashMap::new();
    let mut refs = Vec::with_capacity(feed.slots.len());
    for s in &feed.slots {
        let pkey = s.practitioner.as_ref().map(|p| {
            (
                p.national_id.as_ref(),
                p.name.as_ref(),
                p.profession.as_ref(),
                p.specialty.as_ref(),
            )
        });
        let sched_key = (&*s.place_key, pkey);
        let n = schedules.len();
        let sid = schedules
            .entry(sched_key)
            .or_insert_with(|| {
                let sid = format!("sch-{n}");
                let loc = loc_ids.get(&*s.place_key).cloned().unwrap_or_default();
                let mut actors = vec![json!({"reference": format!("Location/{loc}")})];
                if let Some(p) = &s.practitioner {
                    let rid = format!("role-{n}");
                    let mut pref = serde_json::Map::new();
                    if let Some(id) = &p.national_id {
                        pref.insert("identifier".into(), json!({"system": OID_IDNPS, "value": id}));
                    }
                    if let Some(name) = &p.name {
                        pref.insert("display".into(), json!(name));
                    }
                    let mut role = json!({"resourceType": "PractitionerRole", "id": rid, "practitioner": pref,
                        "location": [{"reference": format!("Location/{loc}")}]});
                    if let Some(code) = &p.profession {
                        role["code"] = json!([{"coding": [{"system": SYSTEM_PROFESSION, "code": code}]}]);
                    }
                    if let Some(sp) = &p.specialty {
                        role["specialty"] = json!([{"coding": [{"system": SYSTEM_SPECIALITE, "code": sp}]}]);
                    }
                    others.push(role);
                    actors.push(json!({"reference": format!("PractitionerRole/{rid}")}));
                }
                others.push(json!({"resourceType": "Schedule", "id": sid, "actor": actors}));
                sid
            })
            .clone();
        let hs = s
            .structure
            .as_ref()
            .filter(|st| st.kind == StructureKind::Cpts)
            .map(|st| {
                let k = services.len();
                services
                    .entry((st.kind.code(), st.national_id.as_ref(), st.name.as_ref()))
                    .or_insert_with(|| {
                        let (hid, oid) = (format!("hs-{k}"), format!("org-{k}"));
                        let mut org = json!({"resourceType": "Organization", "id": oid});
                        if let Some(id) = &st.national_id {
                            org["identifier"] = json!([{"system": OID_IDNST, "value": id}]);
                        }
                        if let Some(n) = &st.name {
                            org["name"] = json!(n);
                        }
                        others.push(org);
                        others.push(json!({"resourceType": "HealthcareService", "id": hid,
                        "providedBy": {"reference": format!("Organization/{oid}")}}));
                        hid
                    })
                    .clone()
            });
        refs.push((sid, hs));
    }
    Resources { others, refs }
}

/// One Slot resource. `sas` puts the booking URL in `comment` (SAS IG), else in the SMART
/// `booking-deep-link` extension.
fn slot_resource(s: &Slot, schedule: &str, hs: Option<&str>, sas: bool) -> Value {
    let mut service_type =
        vec![json!({"coding": [{"system": SYSTEM_ACT_CODE, "code": s.modality.code()}]})];
    if let Some(hs) = hs {
        service_type.push(json!({
            "extension": [{"url": EXT_SLOT_SERVICE_TYPE, "valueReference": {"reference": format!("HealthcareService/{hs}")}}],
            "coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement", "code": "604"}]
        }));
    }
    let mut v = json!({
        "resourceType": "Slot",
        "id": s.external_id,
        "schedule": {"reference": format!("Schedule/{schedule}")},
        "status": s.status.as_str(),
        "start": s.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "end": s.end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "serviceType": service_type,
    });
    if !s.audience.is_empty() {
        let codes: Vec<Value> = s
            .audience
            .codes()
            .into_iter()
            .map(|c| json!({"system": SYSTEM_TYPE_CRENEAU, "code": c}))
            .collect();
        v["meta"] = json!({ "security": codes });
    }
    if let Some(sp) = s.practitioner.as_ref().and_then(|p| p.specialty.as_ref()) {
        v["specialty"] = json!([{"coding": [{"system": SYSTEM_SPECIALITE, "code": sp}]}]);
    }
    if let Some(at) = s.appointment_type {
        v["appointmentType"] =
            json!({"coding": [{"system": SYSTEM_APPOINTMENT_TYPE, "code": at.code()}]});
    }
    let mut ext = Vec::new();
    if let Some(u) = &s.booking_url {
        if sas {
            v["comment"] = json!(u);
        } else {
            ext.push(json!({"url": super::fhir::EXT_BOOKING_DEEP_LINK, "valueUrl": u}));
        }
    }
    if let Some(p) = &s.booking_phone {
        ext.push(json!({"url": EXT_BOOKING_PHONE, "valueString": &**p}));
    }
    if s.capacity != 1 {
        ext.push(json!({"url": super::fhir::EXT_SLOT_CAPACITY, "valueInteger": s.capacity}));
    }
    if s.surnumeraire {
        ext.push(json!({"url": EXT_SURNUMERAIRE, "valueBoolean": true}));
    }
    if !ext.is_empty() {
        v["extension"] = Value::Array(ext);
    }
    v
}

/// A SAS FHIR `Bundle` (collection): Location, PractitionerRole, Schedule, Organization,
/// HealthcareService, then Slot entries.
pub fn to_fhir_bundle(feed: &NormalizedFeed) -> Vec<u8> {
    let res = resources(feed);
    let mut entry: Vec<Value> = res
        .others
        .into_iter()
        .map(|r| json!({ "resource": r }))
        .collect();
    for (s, (sid, hs)) in feed.slots.iter().zip(&res.refs) {
        entry.push(json!({"resource": slot_resource(s, sid, hs.as_deref(), true)}));
    }
    serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "collection", "entry": entry}))
        .expect("JSON")
}

/// SMART Scheduling Links NDJSON, one stream: the other resources, then one Slot per line
/// (`resourceType` first, as publishers write it).
pub fn to_ndjson(feed: &NormalizedFeed) -> Vec<u8> {
    let res = resources(feed);
    let mut out = Vec::with_capacity(feed.slots.len() * 420);
    for r in &res.others {
        serde_json::to_writer(&mut out, r).expect("JSON");
        out.push(b'\n');
    }
    for (s, (sid, hs)) in feed.slots.iter().zip(&res.refs) {
        // `resourceType` first, as publishers write it (and as the reader's fast path expects).
        let mut v = slot_resource(s, sid, hs.as_deref(), false);
        v.as_object_mut().expect("object").remove("resourceType");
        out.extend_from_slice(br#"{"resourceType":"Slot","#);
        let body = serde_json::to_vec(&v).expect("JSON");
        out.extend_from_slice(&body[1..]);
        out.push(b'\n');
    }
    out
}

/// CSV with the canonical column names. With `;` it looks like a French spreadsheet export
/// (local Europe/Paris `DD/MM/YYYY HH:MM[:SS]` times, decimal commas, CRLF); with `,` it uses
/// RFC 3339 UTC times and LF. Local times that are ambiguous (autumn overlap) are written
/// with their offset so the round trip stays exact.
pub fn to_csv(feed: &NormalizedFeed, delimiter: u8) -> Vec<u8> {
    let french = delimiter == b';';
    let mut w = ::csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(if french {
            ::csv::Terminator::CRLF
        } else {
            ::csv::Terminator::Any(b'\n')
        })
        .from_writer(Vec::with_capacity(feed.slots.len() * 300));
    let header = [
        "slot_id",
        "start",
        "end",
        "status",
        "practitioner_rpps",
        "practitioner_name",
        "profession",
        "specialty",
        "place_name",
        "address",
        "postcode",
        "city",
        "lat",
        "lon",
        "modality",
        "booking_url",
        "booking_phone",
        "surnumeraire",
        "structure_type",
        "structure_id",
        "structure_name",
        "appointment_type",
        "audience",
        "capacity",
    ];
    w.write_record(header).expect("in-memory write");
    let places: HashMap<&str, &Place> = feed.places.iter().map(|p| (&*p.key, p)).collect();
    let time = |t: DateTime<Utc>| -> String {
        if !french {
            return t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        }
        let local = t.with_timezone(&Paris);
        match paris_to_utc(local.naive_local()) {
            Ok((u, false)) if u == t => {
                if local.second() == 0 && local.nanosecond() == 0 {
                    local.format("%d/%m/%Y %H:%M").to_string()
                } else {
                    local.format("%d/%m/%Y %H:%M:%S").to_string()
                }
            }
            _ => local.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        }
    };
    let num = |x: f64| {
        if french {
            x.to_string().replace('.', ",")
        } else {
            x.to_string()
        }
    };
    for s in &feed.slots {
        let p = places.get(&*s.place_key);
        let pr = s.practitioner.as_ref();
        let st = s.structure.as_ref();
        let opt = |x: Option<&String>| x.cloned().unwrap_or_default();
        let record = [
            s.external_id.clone(),
            time(s.start),
            time(s.end),
            s.status.as_str().to_string(),
            opt(pr.and_then(|p| p.national_id.as_ref())),
            opt(pr.and_then(|p| p.name.as_ref())),
            opt(pr.and_then(|p| p.profession.as_ref())),
            opt(pr.and_then(|p| p.specialty.as_ref())),
            opt(p.and_then(|p| p.name.as_ref())),
            opt(p.and_then(|p| p.address.as_ref())),
            p.and_then(|p| p.postcode.as_ref())
                .map(|c| c.to_string())
                .unwrap_or_default(),
            opt(p.and_then(|p| p.city.as_ref())),
            p.filter(|p| p.precision == LocationPrecision::Exact)
                .map(|p| num(p.position.lat))
                .unwrap_or_default(),
            p.filter(|p| p.precision == LocationPrecision::Exact)
                .map(|p| num(p.position.lon))
                .unwrap_or_default(),
            s.modality.code().to_string(),
            opt(s.booking_url.as_ref()),
            s.booking_phone.as_deref().unwrap_or_default().to_string(),
            if s.surnumeraire { "oui" } else { "non" }.to_string(),
            st.map(|s| s.kind.code().to_string()).unwrap_or_default(),
            opt(st.and_then(|s| s.national_id.as_ref())),
            opt(st.and_then(|s| s.name.as_ref())),
            s.appointment_type
                .map(|a| a.code().to_string())
                .unwrap_or_default(),
            s.audience.codes().join(" "),
            s.capacity.to_string(),
        ];
        w.write_record(&record).expect("in-memory write");
    }
    w.into_inner().expect("in-memory write")
}
