//! A snapshot written by the store (bulk paths: a first snapshot inserted directly — `COPY` on
//! PostgreSQL, prepared 256-row `INSERT`s on SQLite and one-row ones for the rest —, the changed
//! rows of later ones through a staging table and one `UPDATE … FROM`) keeps every text
//! exactly, and the index built from the feed right after the commit is the one a full reload
//! from the database gives.

mod common;

use common::{TestApp, spawn_app};
use sasnp::clock::Clock;
use sasnp::domain::LatLon;
use sasnp::domain::slot::{
    AppointmentType, AudienceSet, FeedStatus, LocationPrecision, Modality, NormalizedFeed, Place,
    Practitioner, Slot, Structure, StructureKind,
};
use sasnp::index::SlotIndex;
use std::sync::Arc;

/// Texts that need escaping in PostgreSQL's text `COPY` format or in SQL, and empty/absent
/// values (NULLs).
const AWKWARD: &[&str] = &[
    "tab\there",
    "new\nline and\r\nCRLF",
    "back\\slash \\N \\. end\\",
    "quotes ' \" `; -- DROP TABLE slots;",
    "accents é à ç, emoji 🩺, NUL-free",
    "",
];

fn feed(now: chrono::DateTime<chrono::Utc>, n: usize) -> NormalizedFeed {
    let places: Vec<Place> = (0..3)
        .map(|i| Place {
            key: format!("Location/{}{}", AWKWARD[i], i).into(),
            name: Some(AWKWARD[(i + 1) % AWKWARD.len()].to_string()),
            address: (i != 2).then(|| AWKWARD[(i + 2) % AWKWARD.len()].to_string()),
            postcode: Some("44000".parse().unwrap()),
            city: Some("Nantes".into()),
            insee: Some("44109".parse().unwrap()),
            position: LatLon::new(47.2184 + i as f64 * 0.001, -1.5536).unwrap(),
            precision: LocationPrecision::Exact,
        })
        .collect();
    let slots = (0..n)
        .map(|i| {
            let text = |k: usize| AWKWARD[(i + k) % AWKWARD.len()].to_string();
            let start = now + chrono::Duration::minutes(60 + 20 * i as i64);
            Slot {
                external_id: format!("{}#{i}", AWKWARD[i % AWKWARD.len()]),
                start,
                end: start + chrono::Duration::minutes(20),
                status: if i % 4 == 0 {
                    FeedStatus::Busy
                } else {
                    FeedStatus::Free
                },
                place_key: places[i % 3].key.clone(),
                practitioner: (i % 5 != 0).then(|| {
                    Arc::new(Practitioner {
                        national_id: Some(format!("8{:011}", i)),
                        name: Some(text(0)),
                        profession: (i % 2 == 0).then(|| "10".to_string()),
                        specialty: None,
                    })
                }),
                structure: (i % 3 == 0).then(|| {
                    Arc::new(Structure {
                        kind: StructureKind::Cpts,
                        national_id: None,
                        name: Some(text(1)),
                    })
                }),
                modality: [
                    Modality::Ambulatory,
                    Modality::HomeVisit,
                    Modality::Teleconsultation,
                ][i % 3],
                appointment_type: (i % 2 == 1).then_some(AppointmentType::Walkin),
                audience: AudienceSet((i % 16) as u8),
                surnumeraire: i % 7 == 0,
                booking_url: (i % 4 != 1).then(|| format!("https://rdv.example/{}", text(2))),
                booking_phone: (i % 3 != 2).then(|| Arc::from(text(3))),
                capacity: 1 + (i % 3) as u32,
            }
        })
        .collect();
    NormalizedFeed { places, slots }
}

/// Stores `feed` as the new snapshot of `source` and refreshes the index, as a `PUT` does.
fn store_as_put(
    c: &mut sasnp::store::DbConn,
    st: &sasnp::http::AppState,
    source: i64,
    feed: &NormalizedFeed,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<
    (
        sasnp::store::slots::SnapshotOutcome,
        sasnp::ingest::apply::Phases,
    ),
    sasnp::store::StoreError,
> {
    let row = sasnp::store::sources::get(c, source)?;
    sasnp::ingest::apply::store_snapshot(c, &st.settings, &st.index, &row, feed, &[], now, &|_| {
        "{}".into()
    })
}

/// A comparable rendering of one source's index entries.
fn entries(index: &SlotIndex, source: i64) -> Vec<String> {
    let snap = index.load();
    let mut out: Vec<String> = snap
        .places
        .iter()
        .filter(|p| p.source.id == source)
        .map(|p| {
            format!(
                "{} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                p.id,
                p.position,
                p.precision,
                p.name,
                p.address,
                p.postcode,
                p.city,
                p.insee,
                p.slots
            )
        })
        .collect();
    out.sort();
    out
}

/// A running app with one source (CSV, made by the admin) of the Nantes CPTS:
/// `(app, cpts, source id)`.
async fn app_with_source() -> (TestApp, String, i64) {
    let app = spawn_app().await;
    let cpts = app.nantes_cpts();
    let source = app.csv_source(&app.admin_token, &cpts).await;
    (app, cpts, source)
}

#[tokio::test]
async fn texts_survive_the_bulk_write_and_the_index_from_the_feed_equals_a_reload() {
    let (app, _, source) = app_with_source().await;
    let now = app.clock.now();
    let state = app.state.clone();
    // 600 rows: two full 256-row statements on SQLite and 88 single rows; then 560 of them,
    // every one 5 minutes later, so all are staged (two full statements, 48 single rows).
    for (round, n, later) in [(0, 600, 0), (1, 560, 5)] {
        let feed = feed(now + chrono::Duration::minutes(later), n);
        let (st, f) = (state.clone(), feed.clone());
        let (outcome, rows) = state
            .db
            .run_long(move |c| {
                // As a `PUT` applies it: the first round inserts into a source with no rows,
                // the second compares with the first's rows. Both build the index entries from
                // the feed beside the write.
                let (o, phases) = store_as_put(c, &st, source, &f, now)?;
                assert_eq!(phases.first, round == 0, "round {round}");
                let rows = sasnp::store::slots::load_for_index(c, Some(source), now.timestamp())?;
                Ok((o, rows))
            })
            .await
            .unwrap();
        assert_eq!(outcome.ids.slots.len(), n, "round {round}");
        let counts = (outcome.inserted, outcome.updated, outcome.unchanged);
        let removed = outcome.removed;
        if round == 0 {
            assert_eq!((counts, removed), ((600, 0, 0), 0));
        } else {
            assert_eq!((counts, removed), ((0, 560, 0), 40));
        }
        let (places, slots) = rows;
        // Every text as written (the second round shrinks the feed: vanished free slots go).
        assert_eq!(slots.len(), n, "round {round}");
        for s in &feed.slots {
            let r = slots
                .iter()
                .find(|r| r.external_id == s.external_id)
                .unwrap_or_else(|| panic!("round {round}: {:?} stored", s.external_id));
            let pr = s.practitioner.as_deref();
            assert_eq!(r.id, outcome.ids.slots[&s.external_id]);
            assert_eq!(
                r.practitioner_name.as_deref(),
                pr.and_then(|p| p.name.as_deref())
            );
            assert_eq!(
                r.profession.as_deref(),
                pr.and_then(|p| p.profession.as_deref())
            );
            assert_eq!(r.specialty, None);
            assert_eq!(
                r.structure_name.as_deref(),
                s.structure.as_ref().and_then(|x| x.name.as_deref())
            );
            assert_eq!(r.structure_id, None);
            assert_eq!(r.booking_url, s.booking_url);
            assert_eq!(r.booking_phone.as_deref(), s.booking_phone.as_deref());
            assert_eq!(
                (r.start_at, r.end_at),
                (s.start.timestamp(), s.end.timestamp())
            );
            assert_eq!(r.capacity as u32, s.capacity);
            assert_eq!(r.audience as u8, s.audience.0);
            assert_eq!(r.feed_status, s.status.as_str());
            assert_eq!(r.modality, s.modality.code());
            assert_eq!(
                r.appointment_type.as_deref(),
                s.appointment_type.map(|a| a.code())
            );
            assert_eq!(r.surnumeraire, s.surnumeraire);
            assert_eq!(
                r.practitioner_id.as_deref(),
                pr.and_then(|p| p.national_id.as_deref())
            );
            assert_eq!(
                r.structure_kind.as_deref(),
                s.structure.as_ref().map(|x| x.kind.code())
            );
            assert_eq!(r.place_id, outcome.ids.places[&*s.place_key]);
            assert_eq!(r.removed_from_feed_at, None);
        }
        for p in &feed.places {
            let id = outcome.ids.places[&*p.key];
            let r = places.iter().find(|r| r.id == id).unwrap();
            assert_eq!((&r.name, &r.address), (&p.name, &p.address));
        }
        // The index built from the feed is the one a reload from the database builds, and
        // the source is fresh in it (searchable).
        let meta = state.index.load().sources[&source].clone();
        assert!(meta.is_fresh(now.timestamp()), "round {round}");
        let from_feed = entries(&state.index, source);
        assert_eq!(from_feed.len(), 3);
        let st = state.clone();
        let reloaded = state
            .db
            .run(move |c| {
                let index = SlotIndex::default();
                sasnp::index::load::reload_source(
                    c,
                    &st.settings,
                    &index,
                    source,
                    now.timestamp(),
                )?;
                Ok(entries(&index, source))
            })
            .await
            .unwrap();
        assert_eq!(from_feed, reloaded, "round {round}");
    }
}

/// A snapshot that keeps 300 of a source's 2 600 rows: the others are deleted (in
/// several statements on SQLite), the kept ones are not written, one changed slot is, and the
/// index built beside the write is the one a reload builds.
#[tokio::test]
async fn a_snapshot_that_drops_most_rows_removes_them_all_and_writes_only_what_changed() {
    let (app, _, source) = app_with_source().await;
    let now = app.clock.now();
    let state = app.state.clone();
    let (st, big, small) = (state.clone(), feed(now, 2600), feed(now, 300));
    let mut changed = small.clone();
    changed.slots[7].start += chrono::Duration::minutes(5);
    changed.slots[7].end += chrono::Duration::minutes(5);
    let outcomes = state
        .db
        .run_long(move |c| {
            let mut out = Vec::new();
            for f in [&big, &small, &small, &changed] {
                let (o, _) = store_as_put(c, &st, source, f, now)?;
                out.push((o.inserted, o.updated, o.unchanged, o.removed));
            }
            Ok(out)
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            (2600, 0, 0, 0),
            (0, 0, 300, 2300),
            (0, 0, 300, 0),
            (0, 1, 299, 0)
        ]
    );
    let st = state.clone();
    let (rows, reloaded) = state
        .db
        .run(move |c| {
            let rows = sasnp::store::slots::load_for_index(c, Some(source), now.timestamp())?.1;
            let index = SlotIndex::default();
            sasnp::index::load::reload_source(c, &st.settings, &index, source, now.timestamp())?;
            Ok((rows, entries(&index, source)))
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 300);
    assert_eq!(entries(&state.index, source), reloaded);
}

/// Entries built beside a first snapshot are only put in place while that snapshot is still
/// the source's latest: installed after a later snapshot, they give way to a reload from the
/// database (the index never goes back to an older state).
#[tokio::test]
async fn entries_built_beside_a_snapshot_that_is_no_longer_the_latest_are_not_installed() {
    let (app, _, source) = app_with_source().await;
    let now = app.clock.now();
    let state = app.state.clone();
    let st = state.clone();
    let (installed, stored) = state
        .db
        .run_long(move |c| {
            let row = sasnp::store::sources::get(c, source)?;
            // Snapshot 1 (12 slots) is written; entries for an older state (40 slots, ids
            // as the store would give them) are then offered with its predecessor's `seq`.
            let (o, _) = store_as_put(c, &st, source, &feed(now, 12), now)?;
            let old_feed = feed(now, 40);
            let ids = sasnp::store::slots::WrittenIds {
                places: o.ids.places.clone(),
                slots: old_feed
                    .slots
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.external_id.clone(), 1_000_000 + i as i64))
                    .collect(),
            };
            let first = sasnp::index::load::prepare_first(
                &st.settings,
                &row,
                &old_feed,
                &ids,
                now.timestamp(),
            );
            sasnp::index::load::install_first(
                c,
                &st.settings,
                &st.index,
                o.seq - 1,
                first,
                now.timestamp(),
            )?;
            let installed = entries(&st.index, source);
            let index = SlotIndex::default();
            sasnp::index::load::reload_source(c, &st.settings, &index, source, now.timestamp())?;
            Ok((installed, entries(&index, source)))
        })
        .await
        .unwrap();
    assert_eq!(installed, stored);
    let slots: usize = state
        .index
        .load()
        .places
        .iter()
        .filter(|p| p.source.id == source)
        .map(|p| p.slots.len())
        .sum();
    assert_eq!(slots, 12);
}

/// Two uploads of a source that has no slots yet, at the same time: both apply, one after the
/// other (neither fails on the unique key of the first-snapshot path), and the source ends with
/// the snapshot that committed last. (Whether they actually overlap depends on scheduling; when
/// they do not, the test still holds.)
#[tokio::test]
async fn two_concurrent_first_snapshots_of_a_source_both_apply_one_after_the_other() {
    let (app, cpts, source) = app_with_source().await;
    let now = app.clock.now();
    let put = |n: usize| {
        // Places of their own, so that neither upload waits on the other's places.
        let mut f = feed(now, n);
        for p in &mut f.places {
            p.key = format!("{}/{n}", p.key).into();
        }
        for s in &mut f.slots {
            s.place_key = format!("{}/{n}", s.place_key).into();
        }
        let (state, cpts) = (app.state.clone(), cpts.clone());
        async move {
            state
                .db
                .run_long(move |c| {
                    let (o, _) = sasnp::store::slots::replace_snapshot_beside(
                        c,
                        source,
                        &cpts,
                        &f,
                        &[],
                        now,
                        &|_| "{}".into(),
                        &|_, _| (),
                    )?;
                    Ok((o.seq, n))
                })
                .await
        }
    };
    let (a, b) = tokio::join!(put(30), put(20));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut seqs = [a.0, b.0];
    seqs.sort();
    assert_eq!(seqs, [1, 2], "one after the other");
    let last = if a.0 == 2 { a.1 } else { b.1 };
    let rows = app
        .state
        .db
        .run(move |c| sasnp::store::slots::load_for_index(c, Some(source), now.timestamp()))
        .await
        .unwrap();
    assert_eq!(rows.1.len(), last);
}
