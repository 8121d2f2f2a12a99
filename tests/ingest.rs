//! Feed ingestion against the official examples (ANS SAS IG, SMART Scheduling Links), the
//! CSV fixtures, and one test per rejection reason and warning.
//!
//! The resolver is injected: these tests use `SampleResolver` (25 real towns); the same
//! assertions hold on the service's geography for the addresses used here.

use chrono::{DateTime, TimeZone, Utc};
use sasnp::domain::slot::{
    AppointmentType, Audience, FeedStatus, LocationPrecision, Modality, StructureKind,
};
use sasnp::ingest::sample::SampleResolver;
use sasnp::ingest::{
    FeedError, FeedFormat, IngestContext, IngestOutcome, PlaceResolver, ingest, reason,
};
use serde_json::{Value, json};
use std::path::PathBuf;

fn specs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/specs")
}

fn read_spec(rel: &str) -> Vec<u8> {
    std::fs::read(specs().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn run(format: FeedFormat, bytes: &[u8], now: &str) -> IngestOutcome {
    run_with(format, bytes, now, &SampleResolver::default())
}

fn run_with(
    format: FeedFormat,
    bytes: &[u8],
    now: &str,
    resolver: &dyn PlaceResolver,
) -> IngestOutcome {
    let ctx = IngestContext::new(utc(now), resolver);
    let out = ingest(format, bytes, &ctx).unwrap_or_else(|e| panic!("{e}"));
    check_accounting(&out);
    out
}

/// Every slot read is counted exactly once.
fn check_accounting(out: &IngestOutcome) {
    let r = &out.report;
    assert_eq!(
        r.received,
        r.accepted + r.dropped_past + r.entered_in_error + r.rejected_total(),
        "accounting: {r:#?}"
    );
    assert_eq!(r.accepted as usize, out.feed.slots.len());
    for s in &out.feed.slots {
        assert!(
            out.feed.places.iter().any(|p| p.key == s.place_key),
            "slot {} has no place",
            s.external_id
        );
    }
}

/// Rewrites every address of a FHIR document (bundle or NDJSON line) with `f(city)`.
fn rewrite_addresses(v: &mut Value, f: &dyn Fn(&str) -> (&'static str, &'static str)) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(addr)) = m.get_mut("address") {
                let city = addr
                    .get("city")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let (pc, c) = f(&city);
                addr.insert("postalCode".into(), json!(pc));
                addr.insert("city".into(), json!(c));
            }
            for x in m.values_mut() {
                rewrite_addresses(x, f);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_addresses(x, f)),
        _ => {}
    }
}

// ------------------------------------------------------------------------------------------
// ANS SAS FHIR: official examples
// ------------------------------------------------------------------------------------------

const CPTS: &str = "sas-fhir-ig/example/Bundle-ExampleBundleCPTS.json";
const PSINDIV: &str = "sas-fhir-ig/example/Bundle-ExampleBundlePSIndiv.json";
const SOS: &str = "sas-fhir-ig/example/Bundle-ExampleBundleAgregateurSOS.json";

/// The official examples are addressed outside Pays de la Loire (Aussonne 31, Agen 47,
/// Rennes 35, Lorient 56): every slot parses and is rejected `outside_region`, no place kept.
#[test]
fn official_sas_examples_outside_region_are_rejected_exactly() {
    for (file, now, n) in [
        (CPTS, "2024-06-12T08:00:00Z", 1),
        (PSINDIV, "2021-11-04T08:00:00Z", 4),
        (SOS, "2023-08-18T06:00:00Z", 4),
    ] {
        let out = run(FeedFormat::SasFhir, &read_spec(file), now);
        let r = &out.report;
        assert_eq!(r.received, n, "{file}");
        assert_eq!(r.accepted, 0, "{file}");
        assert_eq!(r.rejected_for(reason::OUTSIDE_REGION), n, "{file}: {r:#?}");
        assert_eq!(r.rejected_total(), n, "{file}");
        assert!(out.feed.places.is_empty());
        let ex = &r.examples[reason::OUTSIDE_REGION][0];
        assert!(
            ex.resource.as_deref().unwrap().starts_with("Slot/Example"),
            "{ex:?}"
        );
        assert!(ex.message.contains("outside Pays de la Loire"), "{ex:?}");
    }
}

fn relocated(file: &str, f: &dyn Fn(&str) -> (&'static str, &'static str)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&read_spec(file)).unwrap();
    rewrite_addresses(&mut v, f);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn sas_cpts_example_relocated_to_nantes() {
    let bytes = relocated(CPTS, &|_| ("44000", "Nantes"));
    let out = run(FeedFormat::SasFhir, &bytes, "2024-06-12T08:00:00Z");
    assert_eq!(out.report.accepted, 1, "{:#?}", out.report);
    assert_eq!(out.feed.places.len(), 1);
    let place = &out.feed.places[0];
    assert_eq!(&*place.key, "https://editeur.com|123456789");
    assert_eq!(place.precision, LocationPrecision::Commune);
    assert_eq!(place.insee.as_ref().unwrap().as_str(), "44109");
    assert_eq!(place.address.as_deref(), Some("25 CHEMIN DE MOUNESTIE"));
    let s = &out.feed.slots[0];
    assert_eq!(s.external_id, "ExampleSlotCPTS1");
    assert_eq!(s.start, utc("2024-06-12T14:40:00Z"));
    assert_eq!(s.end, utc("2024-06-12T15:00:00Z"));
    assert_eq!(s.status, FeedStatus::Free);
    let p = s.practitioner.as_ref().unwrap();
    assert_eq!(p.national_id.as_deref(), Some("810002909371"));
    assert_eq!(p.name.as_deref(), Some("Pierre Foret"));
    assert_eq!(p.specialty.as_deref(), Some("SM54"));
    let st = s.structure.as_ref().unwrap();
    assert_eq!(st.kind, StructureKind::Cpts);
    assert_eq!(st.national_id.as_deref(), Some("1950047225"));
    assert_eq!(st.name.as_deref(), Some("CPTS AXE MAJEUR"));
    assert_eq!(s.modality, Modality::Ambulatory);
    assert_eq!(s.appointment_type, Some(AppointmentType::Routine));
    assert!(s.audience.contains(Audience::Public) && s.audience.contains(Audience::Cpts));
    assert!(!s.audience.contains(Audience::Pro));
    assert_eq!(
        s.booking_url.as_deref(),
        Some("https://exemple.com/rdv/com/")
    );
    assert_eq!(s.booking_phone.as_deref(), Some("+33561855977"));
    assert_eq!(s.capacity, 1);
    assert!(out.report.warnings.is_empty(), "{:#?}", out.report.warnings);
}

#[test]
fn sas_psindiv_example_relocated_to_angers() {
    let bytes = relocated(PSINDIV, &|_| ("49000", "Angers"));
    let out = run(FeedFormat::SasFhir, &bytes, "2021-11-04T08:00:00Z");
    assert_eq!(out.report.accepted, 4, "{:#?}", out.report);
    // ExampleLocation3 is contained twice with the same identifier: one place.
    assert_eq!(out.feed.places.len(), 2);
    let by_id = |id: &str| out.feed.slots.iter().find(|s| s.external_id == id).unwrap();
    let s1 = by_id("ExampleSlotPSIndiv1");
    assert_eq!(s1.modality, Modality::Ambulatory); // AMB listed before VR
    assert_eq!(
        s1.practitioner.as_ref().unwrap().name.as_deref(),
        Some("Sébastien THOMAS")
    );
    assert_eq!(
        s1.practitioner.as_ref().unwrap().national_id.as_deref(),
        Some("810100050075")
    );
    assert!(
        s1.structure.is_none(),
        "a PS practising alone offers no structure"
    );
    let s2 = by_id("ExampleSlotPSIndiv2");
    assert_eq!(s2.appointment_type, Some(AppointmentType::Walkin));
    assert!(s2.audience.contains(Audience::Pro) && !s2.audience.contains(Audience::Public));
    assert_eq!(s2.booking_url, None);
    assert_eq!(s2.booking_phone, None);
    assert_ne!(s1.place_key, s2.place_key);
    let s4 = by_id("ExampleSlotPSIndiv4");
    assert_eq!(s4.modality, Modality::HomeVisit);
    assert_eq!(
        s4.practitioner.as_ref().unwrap().national_id.as_deref(),
        Some("810002673899")
    );
    assert_eq!(
        s4.practitioner.as_ref().unwrap().specialty.as_deref(),
        Some("SM41")
    );
    assert_eq!(s4.booking_phone.as_deref(), Some("+33658913859"));
    assert_eq!(s4.place_key, s1.place_key);
    assert_eq!(
        by_id("ExampleSlotPSIndiv3").modality,
        Modality::Teleconsultation
    );
}

#[test]
fn sas_sos_example_relocated_to_laval_and_le_mans() {
    let bytes = relocated(SOS, &|city| {
        if city == "RENNES" {
            ("53000", "Laval")
        } else {
            ("72000", "Le Mans")
        }
    });
    let out = run(FeedFormat::SasFhir, &bytes, "2023-08-18T06:00:00Z");
    assert_eq!(out.report.accepted, 4, "{:#?}", out.report);
    assert_eq!(out.feed.places.len(), 3);
    let by_id = |id: &str| out.feed.slots.iter().find(|s| s.external_id == id).unwrap();
    let s1 = by_id("ExampleSlotSOS1");
    assert!(s1.practitioner.is_none());
    let st = s1.structure.as_ref().unwrap();
    assert_eq!(st.kind, StructureKind::Sos);
    assert_eq!(st.national_id.as_deref(), Some("334173748400020"));
    assert_eq!(st.name.as_deref(), Some("SOS Médecins de Rennes"));
    assert_eq!(
        s1.booking_url.as_deref(),
        Some("http://www.editeur.com/agenda-pfg/creneau1")
    );
    assert_eq!(s1.booking_phone.as_deref(), Some("+33193246789"));
    assert!(s1.audience.contains(Audience::Snp));
    assert_eq!(&*s1.place_key, "Location/1111111111");
    let place = out
        .feed
        .places
        .iter()
        .find(|p| &*p.key == "Location/1111111111")
        .unwrap();
    assert_eq!(
        place.name.as_deref(),
        Some("Centre de consultation Rennes Nord")
    );
    assert_eq!(place.insee.as_ref().unwrap().as_str(), "53130");
    let s4 = by_id("ExampleSlotSOS4");
    assert_eq!(
        s4.structure.as_ref().unwrap().national_id.as_deref(),
        Some("392080466300010")
    );
    assert_eq!(&*s4.place_key, "Location/3333333333");
    assert_eq!(
        by_id("ExampleSlotSOS3").modality,
        Modality::Teleconsultation
    );
}

#[test]
fn sas_bundle_unreadable_files_are_feed_errors() {
    let ctx_resolver = SampleResolver::default();
    let ctx = IngestContext::new(utc("2024-01-01T00:00:00Z"), &ctx_resolver);
    let e = ingest(
        FeedFormat::SasFhir,
        b"{\n  \"resourceType\": \"Bundle\",\n  \"entry\": [ oops ]\n}",
        &ctx,
    )
    .unwrap_err();
    assert!(matches!(e, FeedError::Json { line: 3, .. }), "{e}");
    assert!(e.to_string().starts_with("line 3, column"), "{e}");
    let e = ingest(
        FeedFormat::SasFhir,
        br#"{"resourceType":"Slot","id":"x"}"#,
        &ctx,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("expected a FHIR Bundle, found resourceType `Slot`"),
        "{e}"
    );
    let e = ingest(
        FeedFormat::SasFhir,
        br#"{"resourceType":"Bundle","type":"document"}"#,
        &ctx,
    )
    .unwrap_err();
    assert_eq!(e.code(), "unexpected_document");
    assert_eq!(
        ingest(FeedFormat::SasFhir, b"  \n", &ctx).unwrap_err(),
        FeedError::Empty
    );
    let e = ingest(FeedFormat::SasFhir, b"\xff\xfe{}", &ctx).unwrap_err();
    assert_eq!(e.code(), "invalid_json");
}

#[test]
fn sas_empty_searchset_is_an_empty_feed() {
    let out = run(
        FeedFormat::SasFhir,
        br#"{"resourceType":"Bundle","type":"searchset","total":0}"#,
        "2024-01-01T00:00:00Z",
    );
    assert_eq!(out.report.received, 0);
    assert!(out.feed.slots.is_empty());
}

// ------------------------------------------------------------------------------------------
// Rejection reasons and warnings, one test each (built on a minimal SAS bundle)
// ------------------------------------------------------------------------------------------

const NOW: &str = "2026-03-01T00:00:00Z";

/// A SOS-shaped bundle: one Location (`loc`) and Schedule `sch`, plus the given slots.
fn bundle(location: Value, slots: Vec<Value>) -> Vec<u8> {
    let mut entry = vec![
        json!({"resource": {"resourceType":"Schedule","id":"sch","actor":[{"reference":"Location/loc"}]}}),
        json!({"resource": location}),
    ];
    entry.extend(slots.into_iter().map(|s| json!({ "resource": s })));
    serde_json::to_vec(&json!({"resourceType":"Bundle","type":"collection","entry":entry})).unwrap()
}

fn nantes_location() -> Value {
    json!({"resourceType":"Location","id":"loc","name":"MSP Nantes Nord","address":{"line":["1 rue X"],"postalCode":"44300","city":"Nantes"}})
}

fn slot(id: &str, start: &str, end: &str) -> Value {
    json!({"resourceType":"Slot","id":id,"schedule":{"reference":"Schedule/sch"},"status":"free","start":start,"end":end})
}

fn one(slot: Value) -> IngestOutcome {
    run(
        FeedFormat::SasFhir,
        &bundle(nantes_location(), vec![slot]),
        NOW,
    )
}

fn assert_rejected(out: &IngestOutcome, code: &str) {
    assert_eq!(
        out.report.rejected_for(code),
        1,
        "{code}: {:#?}",
        out.report
    );
    assert_eq!(out.report.accepted, 0);
    assert!(!out.report.examples[code].is_empty());
}

#[test]
fn reason_nonexistent_local_time_spring_gap() {
    let out = one(slot("a", "2026-03-29T02:30:00", "2026-03-29T03:30:00"));
    assert_rejected(&out, reason::NONEXISTENT_LOCAL_TIME);
    let ex = &out.report.examples[reason::NONEXISTENT_LOCAL_TIME][0];
    assert_eq!(ex.resource.as_deref(), Some("Slot/a"));
    assert!(ex.message.contains("2026-03-29T02:30:00"), "{ex:?}");
}

#[test]
fn warning_ambiguous_local_time_takes_the_earlier_offset() {
    let b = bundle(
        nantes_location(),
        vec![slot("a", "2026-10-25T02:30:00", "2026-10-25T02:50:00")],
    );
    let out = run(FeedFormat::SasFhir, &b, "2026-10-20T00:00:00Z");
    assert_eq!(out.report.accepted, 1, "{:#?}", out.report);
    assert_eq!(out.report.warnings_for(reason::AMBIGUOUS_LOCAL_TIME), 2);
    let s = &out.feed.slots[0];
    assert_eq!(s.start, utc("2026-10-25T00:30:00Z"));
    assert_eq!(s.end, utc("2026-10-25T00:50:00Z"));
}

#[test]
fn reason_invalid_time() {
    assert_rejected(
        &one(slot("a", "2026-03-10 demain", "2026-03-10T10:00:00Z")),
        reason::INVALID_TIME,
    );
}

#[test]
fn reason_end_before_start() {
    assert_rejected(
        &one(slot("a", "2026-03-10T10:00:00Z", "2026-03-10T09:00:00Z")),
        reason::END_BEFORE_START,
    );
    assert_rejected(
        &one(slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:00:00Z")),
        reason::END_BEFORE_START,
    );
}

#[test]
fn reason_duration_out_of_range() {
    assert_rejected(
        &one(slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:04:00Z")),
        reason::DURATION_OUT_OF_RANGE,
    );
    assert_rejected(
        &one(slot("a", "2026-03-10T08:00:00Z", "2026-03-10T20:01:00Z")),
        reason::DURATION_OUT_OF_RANGE,
    );
    assert_eq!(
        one(slot("a", "2026-03-10T08:00:00Z", "2026-03-10T20:00:00Z"))
            .report
            .accepted,
        1
    );
    assert_eq!(
        one(slot("a", "2026-03-10T08:00:00Z", "2026-03-10T08:05:00Z"))
            .report
            .accepted,
        1
    );
}

#[test]
fn past_slots_are_dropped_not_rejected() {
    let out = one(slot("a", "2026-02-28T23:00:00Z", "2026-03-01T00:00:00Z"));
    assert_eq!(out.report.dropped_past, 1);
    assert!(out.report.rejected.is_empty());
    // A slot in progress at `now` is kept.
    assert_eq!(
        one(slot("a", "2026-02-28T23:50:00Z", "2026-03-01T00:10:00Z"))
            .report
            .accepted,
        1
    );
}

#[test]
fn reason_beyond_horizon() {
    assert_rejected(
        &one(slot("a", "2026-06-01T10:00:00Z", "2026-06-01T10:20:00Z")),
        reason::BEYOND_HORIZON,
    );
    assert_eq!(
        one(slot("a", "2026-05-29T10:00:00Z", "2026-05-29T10:20:00Z"))
            .report
            .accepted,
        1
    );
}

#[test]
fn reason_unknown_place() {
    let loc = json!({"resourceType":"Location","id":"loc","address":{"postalCode":"44999","city":"Nulle-Part"}});
    let out = run(
        FeedFormat::SasFhir,
        &bundle(
            loc,
            vec![slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z")],
        ),
        NOW,
    );
    assert_rejected(&out, reason::UNKNOWN_PLACE);
    let loc = json!({"resourceType":"Location","id":"loc","name":"sans adresse"});
    let out = run(
        FeedFormat::SasFhir,
        &bundle(
            loc,
            vec![slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z")],
        ),
        NOW,
    );
    assert_rejected(&out, reason::UNKNOWN_PLACE);
}

#[test]
fn reason_outside_region_by_position_and_by_postcode() {
    let loc = json!({"resourceType":"Location","id":"loc","position":{"latitude":48.1173,"longitude":-1.6778}});
    let slots = vec![
        slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z"),
        slot("b", "2026-03-10T10:20:00Z", "2026-03-10T10:40:00Z"),
    ];
    let out = run(FeedFormat::SasFhir, &bundle(loc, slots), NOW);
    assert_eq!(
        out.report.rejected_for(reason::OUTSIDE_REGION),
        2,
        "counted per slot"
    );
    let loc = json!({"resourceType":"Location","id":"loc","address":{"postalCode":"35000","city":"Rennes"}});
    let out = run(
        FeedFormat::SasFhir,
        &bundle(
            loc,
            vec![slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z")],
        ),
        NOW,
    );
    assert_rejected(&out, reason::OUTSIDE_REGION);
}

#[test]
fn exact_positions_are_kept_and_mismatches_warned() {
    // In Nantes, address says Nantes: exact, no warning.
    let loc = json!({"resourceType":"Location","id":"loc","position":{"latitude":47.2184,"longitude":-1.5536},"address":{"postalCode":"44000","city":"Nantes"}});
    let out = run(
        FeedFormat::SasFhir,
        &bundle(
            loc,
            vec![slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z")],
        ),
        NOW,
    );
    assert_eq!(out.report.accepted, 1);
    assert!(out.report.warnings.is_empty());
    assert_eq!(out.feed.places[0].precision, LocationPrecision::Exact);
    assert_eq!(out.feed.places[0].position.lat, 47.2184);
    // In Angers, address says Nantes: kept at the given position, warned once per place.
    let loc = json!({"resourceType":"Location","id":"loc","position":{"latitude":47.4784,"longitude":-0.5632},"address":{"postalCode":"44000","city":"Nantes"}});
    let slots = vec![
        slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z"),
        slot("b", "2026-03-10T10:20:00Z", "2026-03-10T10:40:00Z"),
    ];
    let out = run(FeedFormat::SasFhir, &bundle(loc, slots), NOW);
    assert_eq!(out.report.accepted, 2);
    assert_eq!(out.report.warnings_for(reason::POSITION_MISMATCH), 1);
    assert_eq!(out.feed.places[0].insee.as_ref().unwrap().as_str(), "49007");
    let ex = &out.report.examples[reason::POSITION_MISMATCH][0];
    assert_eq!(ex.resource.as_deref(), Some("Location/loc"));
}

#[test]
fn reason_duplicate_id_keeps_the_first() {
    let out = run(
        FeedFormat::SasFhir,
        &bundle(
            nantes_location(),
            vec![
                slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z"),
                slot("a", "2026-03-10T11:00:00Z", "2026-03-10T11:20:00Z"),
            ],
        ),
        NOW,
    );
    assert_eq!(out.report.accepted, 1);
    assert_eq!(out.report.rejected_for(reason::DUPLICATE_ID), 1);
    assert_eq!(out.feed.slots[0].start, utc("2026-03-10T10:00:00Z"));
}

#[test]
fn reason_missing_field() {
    let mut s = slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s.as_object_mut().unwrap().remove("end");
    assert_rejected(&one(s), reason::MISSING_FIELD);
    let mut s = slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s.as_object_mut().unwrap().remove("id");
    assert_rejected(&one(s), reason::MISSING_FIELD);
    let mut s = slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s.as_object_mut().unwrap().remove("schedule");
    assert_rejected(&one(s), reason::MISSING_FIELD);
}

#[test]
fn reason_invalid_value() {
    let mut s = slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s["start"] = json!(20260310);
    let out = one(s);
    assert_rejected(&out, reason::INVALID_VALUE);
    assert_eq!(
        out.report.examples[reason::INVALID_VALUE][0]
            .resource
            .as_deref(),
        Some("Slot/a")
    );
}

#[test]
fn reason_unknown_status_and_entered_in_error() {
    let mut s = slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s["status"] = json!("maybe");
    assert_rejected(&one(s), reason::UNKNOWN_STATUS);
    let mut s = slot("gone", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s["status"] = json!("entered-in-error");
    let out = one(s);
    assert_eq!(out.removed_ids, vec!["gone".to_string()]);
    assert_eq!(out.report.entered_in_error, 1);
    let mut s = slot("b", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s["status"] = json!("busy-tentative");
    assert_eq!(one(s).feed.slots[0].status, FeedStatus::Busy);
}

#[test]
fn reason_unresolved_reference() {
    let mut s = slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s["schedule"] = json!({"reference":"Schedule/nope"});
    assert_rejected(&one(s), reason::UNRESOLVED_REFERENCE);
    let mut s = slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s["serviceType"] = json!([{"extension":[{"url":"http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType","valueReference":{"reference":"HealthcareService/nope"}}]}]);
    assert_rejected(&one(s), reason::UNRESOLVED_REFERENCE);
}

#[test]
fn warnings_ignored_value_and_unrecognised_identifier_and_invalid_resource() {
    let mut s = slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z");
    s["meta"] = json!({"security":[{"code":"VIP"}]});
    let out = one(s);
    assert_eq!(out.report.accepted, 1);
    assert_eq!(out.report.warnings_for(reason::IGNORED_VALUE), 1);

    let loc = json!({"resourceType":"Location","id":"loc","address":{"postalCode":"4400","city":"Nantes"},"managingOrganization":{"reference":"Organization/o"}});
    let org = json!({"resourceType":"Organization","id":"o","name":"MSP","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.2","value":"12"}]});
    let mut b: Value = serde_json::from_slice(&bundle(
        loc,
        vec![slot("a", "2026-03-10T10:00:00Z", "2026-03-10T10:20:00Z")],
    ))
    .unwrap();
    b["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "resource": org }));
    b["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({"resource":{"resourceType":"Practitioner","id":"p","name":42}}));
    let out = run(FeedFormat::SasFhir, &serde_json::to_vec(&b).unwrap(), NOW);
    assert_eq!(out.report.accepted, 1, "{:#?}", out.report);
    assert_eq!(
        out.report.warnings_for(reason::IGNORED_VALUE),
        1,
        "bad postcode ignored, city used"
    );
    assert_eq!(out.report.warnings_for(reason::UNRECOGNISED_IDENTIFIER), 1);
    assert_eq!(out.report.warnings_for(reason::INVALID_RESOURCE), 1);
    assert_eq!(
        out.feed.slots[0].structure.as_ref().unwrap().kind,
        StructureKind::Other
    );
}

#[test]
fn examples_are_capped_at_100_per_reason() {
    let slots = (0..150)
        .map(|i| slot(&format!("s{i}"), "bad", "bad"))
        .collect();
    let out = run(FeedFormat::SasFhir, &bundle(nantes_location(), slots), NOW);
    assert_eq!(out.report.rejected_for(reason::INVALID_TIME), 150);
    assert_eq!(out.report.examples[reason::INVALID_TIME].len(), 100);
}

#[test]
fn report_serializes_for_coordinators() {
    let out = one(slot("a", "2026-03-29T02:30:00", "2026-03-29T03:30:00"));
    let v = serde_json::to_value(&out.report).unwrap();
    assert_eq!(v["rejected"]["nonexistent_local_time"], 1);
    assert_eq!(
        v["examples"]["nonexistent_local_time"][0]["resource"],
        "Slot/a"
    );
    assert_eq!(v["updated"], 0);
    let _ = Utc.timestamp_opt(0, 0);
}

// ------------------------------------------------------------------------------------------
// SMART Scheduling Links
// ------------------------------------------------------------------------------------------

const SSL: &str = "smart-scheduling-links/examples";

/// locations + schedules + both slot weeks, as one stream (the files lack a final newline).
fn smart_example() -> Vec<String> {
    let mut lines = Vec::new();
    for f in [
        "locations.ndjson",
        "schedules.ndjson",
        "slots-2021-W09.ndjson",
        "slots-2021-W10.ndjson",
    ] {
        let text = String::from_utf8(read_spec(&format!("{SSL}/{f}"))).unwrap();
        lines.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    lines
}

#[test]
fn smart_manifest_parses() {
    let m =
        sasnp::ingest::smart::parse_manifest(&read_spec(&format!("{SSL}/$bulk-publish"))).unwrap();
    assert_eq!(m.transaction_time, utc("2021-04-22T14:28:21.582Z"));
    assert_eq!(m.outputs.len(), 7);
    assert_eq!(m.urls("Slot").count(), 5);
    assert_eq!(m.outputs[2].states, vec!["MA".to_string()]);
    let order = m.fetch_order();
    assert!(order[0].ends_with("locations.ndjson") && order[1].ends_with("schedules.ndjson"));
    let e = sasnp::ingest::smart::parse_manifest(br#"{"output":[]}"#).unwrap_err();
    assert!(e.to_string().contains("transactionTime"), "{e}");
    let e = sasnp::ingest::smart::parse_manifest(br#"{"transactionTime":"yesterday","output":[]}"#)
        .unwrap_err();
    assert_eq!(e.code(), "unexpected_document");
}

/// The SMART example is in Massachusetts, addresses only: its US ZIP codes read as postcodes
/// of departments 01/02, so all 140 slots are `outside_region`.
#[test]
fn smart_example_outside_region_is_rejected_exactly() {
    let body = smart_example().join("\n");
    let out = run(FeedFormat::SmartSl, body.as_bytes(), "2021-02-28T00:00:00Z");
    assert_eq!(out.report.received, 140);
    assert_eq!(
        out.report.rejected_for(reason::OUTSIDE_REGION),
        140,
        "{:#?}",
        out.report
    );
    assert_eq!(out.report.accepted, 0);
    let ex = &out.report.examples[reason::OUTSIDE_REGION][0];
    assert_eq!(ex.line, Some(21)); // 10 locations + 10 schedules, then the first slot
    assert_eq!(ex.resource.as_deref(), Some("Slot/20"));
}

/// The same stream with each clinic moved into a Pays de la Loire town (position added) and
/// the lines shuffled: every slot is accepted with its SMART extensions.
#[test]
fn smart_example_relocated_in_any_order() {
    let towns = sasnp::ingest::sample::TOWNS;
    let mut lines: Vec<String> = smart_example()
        .into_iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(&l).unwrap();
            if v["resourceType"] == "Location" {
                let i: usize = v["id"].as_str().unwrap().parse().unwrap();
                v["position"] =
                    json!({"latitude": towns[i].lat + 0.001, "longitude": towns[i].lon});
            }
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    lines.reverse(); // slots first, locations last
    let body = lines.join("\r\n") + "\r\n\r\n";
    let out = run(FeedFormat::SmartSl, body.as_bytes(), "2021-02-28T00:00:00Z");
    assert_eq!(out.report.accepted, 140, "{:#?}", out.report);
    assert_eq!(out.feed.places.len(), 10);
    assert!(
        out.feed
            .places
            .iter()
            .all(|p| p.precision == LocationPrecision::Exact)
    );
    let s = out
        .feed
        .slots
        .iter()
        .find(|s| s.external_id == "20")
        .unwrap();
    assert_eq!(&*s.place_key, "Location/0");
    assert_eq!(s.capacity, 100);
    assert_eq!(
        s.booking_url.as_deref(),
        Some("https://ehr-portal.example.org/bookings?slot=1000000")
    );
    assert_eq!(s.booking_phone.as_deref(), Some("0000000000"));
    assert_eq!(s.start, utc("2021-03-01T14:00:00Z"));
    assert_eq!(s.end, utc("2021-03-01T23:00:00Z"));
    assert_eq!(s.modality, Modality::Ambulatory);
    let boston = out
        .feed
        .places
        .iter()
        .find(|p| &*p.key == "Location/0")
        .unwrap();
    assert_eq!(boston.insee.as_ref().unwrap().as_str(), towns[0].insee);
    assert_eq!(boston.name.as_deref(), Some("SMART Vaccine Clinic Boston"));
    // The US address disagrees with the position but names no commune: no mismatch warning.
    assert!(out.report.warnings.is_empty(), "{:#?}", out.report.warnings);
}

#[test]
fn smart_practitioner_role_schedules() {
    let body = [
        json!({"resourceType":"Schedule","id":"s1","actor":[{"reference":"Location/l1"},{"reference":"PractitionerRole/r1"}]}),
        json!({"resourceType":"PractitionerRole","id":"r1","practitioner":{"reference":"Practitioner/p1","display":"Dr Anne Morin","identifier":{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"10101010101"}},
               "code":[{"coding":[{"system":"https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante","code":"10"}]}],
               "specialty":[{"coding":[{"code":"SM54"}]}],"telecom":[{"system":"phone","value":"02 41 00 00 00"}]}),
        json!({"resourceType":"Location","id":"l1","name":"Cabinet","address":{"postalCode":"49100","city":"Angers"}}),
        json!({"resourceType":"Slot","id":"x","schedule":{"reference":"Schedule/s1"},"status":"busy-tentative","start":"2026-03-10T10:00:00+01:00","end":"2026-03-10T10:15:00+01:00"}),
    ]
    .iter()
    .map(|v| v.to_string())
    .collect::<Vec<_>>()
    .join("\n");
    let out = run(FeedFormat::SmartSl, body.as_bytes(), NOW);
    assert_eq!(out.report.accepted, 1, "{:#?}", out.report);
    let s = &out.feed.slots[0];
    assert_eq!(s.status, FeedStatus::Busy);
    let p = s.practitioner.as_ref().unwrap();
    assert_eq!(p.national_id.as_deref(), Some("810101010101"));
    assert_eq!(p.name.as_deref(), Some("Dr Anne Morin"));
    assert_eq!(p.profession.as_deref(), Some("10"));
    assert_eq!(p.specialty.as_deref(), Some("SM54"));
    assert_eq!(s.booking_phone.as_deref(), Some("+33241000000"));
    assert_eq!(out.feed.places[0].precision, LocationPrecision::Commune);
}

#[test]
fn smart_malformed_lines() {
    let resolver = SampleResolver::default();
    let ctx = IngestContext::new(utc(NOW), &resolver);
    let body =
        "{\"resourceType\":\"Location\",\"id\":\"1\"}\n\n{\"resourceType\":\"Slot\",\"id\":\"a\",";
    let e = ingest(FeedFormat::SmartSl, body.as_bytes(), &ctx).unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    assert!(e.to_string().starts_with("line 3, column"), "{e}");
    let e = ingest(FeedFormat::SmartSl, b"{\"a\":1}\n\xff\n", &ctx).unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    // Valid JSON, wrong shape: one rejection, named by line.
    let body = "{\"resourceType\":\"Slot\",\"id\":\"a\",\"start\":5}\n{\"resourceType\":\"Schedule\",\"id\":\"s\",\"actor\":7}";
    let out = ingest(FeedFormat::SmartSl, body.as_bytes(), &ctx).unwrap();
    assert_eq!(out.report.rejected_for(reason::INVALID_VALUE), 1);
    assert_eq!(out.report.examples[reason::INVALID_VALUE][0].line, Some(1));
    assert_eq!(out.report.warnings_for(reason::INVALID_RESOURCE), 1);
    assert_eq!(
        out.report.examples[reason::INVALID_RESOURCE][0].line,
        Some(2)
    );
}

// ------------------------------------------------------------------------------------------
// CSV
// ------------------------------------------------------------------------------------------

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .unwrap()
}

#[test]
fn csv_french_excel_export_windows_1252() {
    let bytes = fixture("slots-excel-fr-1252.csv");
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the fixture must stay Windows-1252"
    );
    let out = run(FeedFormat::Csv, &bytes, "2026-05-04T06:00:00Z");
    let r = &out.report;
    assert_eq!(r.received, 7);
    assert_eq!(r.accepted, 7, "{r:#?}");
    assert_eq!(r.unknown_columns, vec!["Commentaire".to_string()]);
    assert!(r.warnings.is_empty(), "{:#?}", r.warnings);
    assert_eq!(out.feed.places.len(), 4);
    let by_id = |id: &str| out.feed.slots.iter().find(|s| s.external_id == id).unwrap();
    let s1 = by_id("C-0001");
    assert_eq!(s1.start, utc("2026-05-04T07:00:00Z"));
    assert_eq!(s1.end, utc("2026-05-04T07:15:00Z"));
    let p = s1.practitioner.as_ref().unwrap();
    assert_eq!(p.national_id.as_deref(), Some("810003456789"));
    assert_eq!(p.name.as_deref(), Some("Dr Hélène Bézier"));
    assert_eq!(p.profession.as_deref(), Some("10"));
    assert_eq!(p.specialty.as_deref(), Some("SM54"));
    assert_eq!(
        s1.booking_url.as_deref(),
        Some("https://rdv.exemple.fr/c/0001")
    );
    assert_eq!(s1.booking_phone.as_deref(), Some("+33240112233"));
    assert!(!s1.surnumeraire);
    assert!(by_id("C-0002").surnumeraire);
    assert_eq!(by_id("C-0002").place_key, s1.place_key);
    assert_eq!(by_id("C-0003").status, FeedStatus::Busy);
    assert_eq!(by_id("C-0004").modality, Modality::HomeVisit);
    assert_eq!(by_id("C-0005").modality, Modality::Teleconsultation);
    let s6 = by_id("C-0006");
    assert_eq!(s6.practitioner.as_ref().unwrap().national_id, None);
    assert_eq!(
        s6.practitioner.as_ref().unwrap().name.as_deref(),
        Some("Mme Gaëlle Près")
    );
    assert_eq!(s6.booking_phone.as_deref(), Some("+33243000000"));
    assert_eq!(
        by_id("C-0007")
            .practitioner
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("Dr Jérôme Cœur")
    );
    let nantes = out
        .feed
        .places
        .iter()
        .find(|p| p.key == s1.place_key)
        .unwrap();
    assert_eq!(nantes.precision, LocationPrecision::Exact);
    assert_eq!((nantes.position.lat, nantes.position.lon), (47.226, -1.566));
    assert_eq!(
        nantes.name.as_deref(),
        Some("Cabinet médical des Hauts-Pavés")
    );
    let angers = out
        .feed
        .places
        .iter()
        .find(|p| p.key == by_id("C-0004").place_key)
        .unwrap();
    assert_eq!(angers.precision, LocationPrecision::Commune);
    assert_eq!(angers.address.as_deref(), Some("3 place de l'Église"));
    assert_eq!(angers.insee.as_ref().unwrap().as_str(), "49007");
}

#[test]
fn csv_comma_utf8_bom_lf() {
    let out = run(
        FeedFormat::Csv,
        &fixture("slots-utf8-bom-comma.csv"),
        "2026-05-04T06:00:00Z",
    );
    let r = &out.report;
    assert_eq!(r.accepted, 3, "{r:#?}");
    assert_eq!(r.unknown_columns, vec!["note".to_string()]);
    assert_eq!(out.feed.places.len(), 2);
    let s1 = &out.feed.slots[0];
    assert_eq!(s1.external_id, "S1");
    assert_eq!(s1.start, utc("2026-05-04T07:00:00Z"));
    let st = s1.structure.as_ref().unwrap();
    assert_eq!(
        (st.kind, st.national_id.as_deref(), st.name.as_deref()),
        (
            StructureKind::Cpts,
            Some("1950047225"),
            Some("CPTS Estuaire")
        )
    );
    let place = out
        .feed
        .places
        .iter()
        .find(|p| p.key == s1.place_key)
        .unwrap();
    assert_eq!(
        place.address.as_deref(),
        Some("5 rue de la Paix, bâtiment B")
    );
    assert_eq!(place.insee.as_ref().unwrap().as_str(), "44184");
    let s2 = &out.feed.slots[1];
    assert_eq!(s2.status, FeedStatus::Busy);
    assert!(s2.surnumeraire);
    let s3 = &out.feed.slots[2];
    assert_eq!(s3.start, utc("2026-05-05T08:00:00Z"));
    assert_eq!(s3.modality, Modality::Teleconsultation);
    assert!(s3.practitioner.is_none() && s3.structure.is_none());
    assert_eq!(s3.booking_phone.as_deref(), Some("+33251000000"));
}

fn csv(body: &str, now: &str) -> IngestOutcome {
    run(FeedFormat::Csv, body.as_bytes(), now)
}

const CSV_HEAD: &str = "id;debut;fin;cp;ville;modalite;latitude;longitude;duree\n";

#[test]
fn csv_reasons_name_the_line() {
    let body = format!(
        "{CSV_HEAD}\
         a;29/03/2026 02:30;29/03/2026 03:30;44000;Nantes;;;;\n\
         b;2026-03-10 10:00;;44000;Nantes;;;;abc\n\
         c;2026-03-10 10:00;2026-03-10 10:20;44000;Nantes;en visio;;;\n\
         d;2026-03-10 10:00;2026-03-10 10:20;44000;Nantes;;47,2;;\n\
         e;2026-03-10 10:00;2026-03-10 10:20;44000;Nantes;;47,2;abc;\n\
         a;2026-03-10 11:00;2026-03-10 11:20;44000;Nantes;;;;\n\
         ;2026-03-10 11:00;2026-03-10 11:20;44000;Nantes;;;;\n\
         f;2026-03-10 11:00;;44000;Nantes;;;;20\n\
         g;2026-03-10 11:00;2026-03-10 11:20;;;;;;\n"
    );
    let out = csv(&body, NOW);
    let r = &out.report;
    assert_eq!(r.received, 9);
    assert_eq!(r.accepted, 1, "{r:#?}");
    assert_eq!(out.feed.slots[0].external_id, "f");
    assert_eq!(
        out.feed.slots[0].end - out.feed.slots[0].start,
        chrono::Duration::minutes(20)
    );
    let line_of = |code: &str| {
        r.examples[code]
            .iter()
            .map(|e| e.line.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(line_of(reason::NONEXISTENT_LOCAL_TIME), vec![2]);
    assert_eq!(line_of(reason::INVALID_VALUE), vec![3, 4, 5, 6]);
    assert_eq!(line_of(reason::DUPLICATE_ID), vec![7]);
    assert_eq!(line_of(reason::MISSING_FIELD), vec![8]);
    assert_eq!(line_of(reason::UNKNOWN_PLACE), vec![10]);
}

#[test]
fn csv_ambiguous_autumn_time() {
    let out = csv(
        &format!("{CSV_HEAD}a;25/10/2026 02:30;25/10/2026 02:45;44000;Nantes;;;;\n"),
        "2026-10-20T00:00:00Z",
    );
    assert_eq!(out.report.accepted, 1);
    assert_eq!(out.report.warnings_for(reason::AMBIGUOUS_LOCAL_TIME), 2);
    assert_eq!(out.feed.slots[0].start, utc("2026-10-25T00:30:00Z"));
}

#[test]
fn csv_unreadable_files_are_feed_errors() {
    let resolver = SampleResolver::default();
    let ctx = IngestContext::new(utc(NOW), &resolver);
    let err = |body: &[u8]| ingest(FeedFormat::Csv, body, &ctx).unwrap_err();
    let e = err(b"\r\nid;debut;fin\r\n");
    assert_eq!((e.code(), e.line()), ("invalid_csv", Some(1)));
    assert!(e.to_string().contains("no header row"), "{e}");
    let e = err(b"foo;bar\n1;2\n");
    assert!(e.to_string().contains("names no known column"), "{e}");
    let e = err(b"id;fin\n1;2\n");
    assert!(e.to_string().contains("start (debut, date_debut)"), "{e}");
    assert_eq!(err(b""), FeedError::Empty);
}

// ------------------------------------------------------------------------------------------
// Generator round trips
// ------------------------------------------------------------------------------------------

use sasnp::ingest::generate::{GenSpec, generate, to_csv, to_fhir_bundle, to_ndjson};

fn gen_spec() -> GenSpec {
    GenSpec::new(42, 3_000, 80, utc("2026-05-04T06:00:00Z"))
}

#[test]
fn generator_is_deterministic_and_realistic() {
    let a = generate(&gen_spec());
    let b = generate(&gen_spec());
    assert_eq!(a, b);
    assert_ne!(
        a,
        generate(&GenSpec {
            seed: 43,
            ..gen_spec()
        })
    );
    assert_eq!(a.slots.len(), 3_000);
    assert_eq!(a.places.len(), 80);
    let start = utc("2026-05-04T06:00:00Z");
    for s in &a.slots {
        assert!(
            s.start >= start && s.start < start + chrono::Duration::hours(72),
            "{}",
            s.start
        );
        let d = (s.end - s.start).num_minutes();
        assert!((10..=30).contains(&d));
        assert!(
            s.practitioner
                .as_ref()
                .unwrap()
                .national_id
                .as_ref()
                .unwrap()
                .starts_with('8')
        );
    }
    let hh = a
        .slots
        .iter()
        .filter(|s| s.modality == Modality::HomeVisit)
        .count();
    let sur = a.slots.iter().filter(|s| s.surnumeraire).count();
    assert!(hh > 100 && sur > 100, "{hh} {sur}");
    // Nantes, the largest town, has the most places.
    let nantes = a
        .places
        .iter()
        .filter(|p| p.city.as_deref() == Some("Nantes"))
        .count();
    assert!(nantes >= 10, "{nantes}");
}

#[test]
fn round_trip_fhir_and_ndjson_give_back_the_generated_feed() {
    let generated = generate(&gen_spec());
    for (format, bytes) in [
        (FeedFormat::SasFhir, to_fhir_bundle(&generated)),
        (FeedFormat::SmartSl, to_ndjson(&generated)),
    ] {
        let out = run(format, &bytes, "2026-05-04T06:00:00Z");
        assert_eq!(out.report.accepted, 3_000, "{format}: {:#?}", out.report);
        assert!(
            out.report.warnings.is_empty(),
            "{format}: {:#?}",
            out.report.warnings
        );
        assert_eq!(out.feed.slots, generated.slots, "{format}");
        assert_eq!(out.feed.places.len(), generated.places.len());
        for want in &generated.places {
            let got = out.feed.places.iter().find(|p| p.key == want.key).unwrap();
            assert!(got.insee.is_some());
            assert_eq!(
                sasnp::domain::slot::Place {
                    insee: None,
                    ..got.clone()
                },
                *want
            );
        }
    }
}

#[test]
fn round_trip_csv_both_dialects() {
    let generated = generate(&gen_spec());
    for delimiter in [b';', b','] {
        let bytes = to_csv(&generated, delimiter);
        let out = run(FeedFormat::Csv, &bytes, "2026-05-04T06:00:00Z");
        assert_eq!(out.report.accepted, 3_000, "{:#?}", out.report);
        assert!(
            out.report.warnings.is_empty() && out.report.unknown_columns.is_empty(),
            "{:#?}",
            out.report
        );
        assert_eq!(out.feed.places.len(), generated.places.len());
        for (got, want) in out.feed.slots.iter().zip(&generated.slots) {
            assert_eq!(
                sasnp::domain::slot::Slot {
                    place_key: want.place_key.clone(),
                    ..got.clone()
                },
                *want
            );
            let gp = out
                .feed
                .places
                .iter()
                .find(|p| p.key == got.place_key)
                .unwrap();
            let wp = generated
                .places
                .iter()
                .find(|p| p.key == want.place_key)
                .unwrap();
            assert_eq!(
                (&gp.name, &gp.address, &gp.postcode, &gp.city, gp.position),
                (&wp.name, &wp.address, &wp.postcode, &wp.city, wp.position)
            );
        }
    }
}
