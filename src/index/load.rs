//! Building index entries from stored rows (start-up and after each committed snapshot).

use super::{PlaceEntry, Provider, SlotEntry, SlotIndex, Snapshot, SourceMeta};
use crate::config::Settings;
use crate::domain::LatLon;
use crate::domain::slot::{AppointmentType, AudienceSet, LocationPrecision, Modality};
use crate::store::slots::{PlaceRow, SlotRow};
use crate::store::sources::SourceRow;
use crate::store::{DbConn, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

/// Places with their slots (sorted by start), and the operator state found in the rows
/// (`(slot id, unavailable until)`). Places of unknown sources, or with no slot, are left out.
pub fn build_places(
    places: Vec<PlaceRow>,
    slots: Vec<SlotRow>,
    sources: &HashMap<i64, Arc<SourceMeta>>,
) -> (Vec<Arc<PlaceEntry>>, Vec<(i64, i64)>) {
    let mut by_place: HashMap<i64, Vec<SlotEntry>> = HashMap::new();
    // `Provider`'s JSON cache has interior mutability but takes no part in its hash or equality
    #[allow(clippy::mutable_key_type)]
    let mut providers: HashMap<Provider, Arc<Provider>> = HashMap::new();
    let mut taken = Vec::new();
    for r in slots {
        if r.appointment_id.is_some() {
            taken.push((r.id, i64::MAX));
        } else if let Some(until) = r.held_until {
            taken.push((r.id, until));
        }
        let provider = Provider {
            practitioner_id: r.practitioner_id,
            practitioner_name: r.practitioner_name,
            profession: r.profession,
            specialty: r.specialty,
            structure_kind: r.structure_kind,
            structure_id: r.structure_id,
            structure_name: r.structure_name,
            booking_phone: r.booking_phone,
            json: Default::default(),
        };
        let provider = providers
            .entry(provider.clone())
            .or_insert_with(|| Arc::new(provider))
            .clone();
        let mut audience = AudienceSet::default();
        audience.0 = u8::try_from(r.audience).unwrap_or(0);
        by_place.entry(r.place_id).or_default().push(SlotEntry {
            id: r.id,
            start: r.start_at,
            end: r.end_at,
            modality: Modality::parse(&r.modality).unwrap_or(Modality::Ambulatory),
            audience,
            surnumeraire: r.surnumeraire,
            offered: r.feed_status == "free" && r.removed_from_feed_at.is_none(),
            capacity: u32::try_from(r.capacity).unwrap_or(1),
            provider,
            external_id: r.external_id.into_boxed_str(),
            booking_url: r.booking_url.map(String::into_boxed_str),
            appointment_type: r
                .appointment_type
                .as_deref()
                .and_then(AppointmentType::parse)
                .map(AppointmentType::code),
        });
    }
    let mut out = Vec::with_capacity(places.len());
    for p in places {
        let (Some(source), Some(mut slots)) = (sources.get(&p.source_id), by_place.remove(&p.id))
        else {
            continue;
        };
        slots.sort_by_key(|s| (s.start, s.id));
        let Ok(position) = LatLon::new(p.lat, p.lon) else {
            continue;
        };
        out.push(Arc::new(PlaceEntry {
            id: p.id,
            source: source.clone(),
            position,
            precision: LocationPrecision::parse(&p.precision).unwrap_or(LocationPrecision::Commune),
            name: p.name,
            address: p.address,
            postcode: p.postcode,
            city: p.city,
            insee: p.insee,
            slots,
            json: Default::default(),
        }));
    }
    (out, taken)
}

/// How long a source's data stays fresh: 24 h (configurable) after a push, or
/// `pull_stale_factor` poll intervals for a pulled source.
pub fn stale_after_s(row: &SourceRow, settings: &Settings) -> i64 {
    match (row.url.as_deref(), row.poll_interval_s) {
        (Some(_), Some(every)) if every > 0 => {
            every.saturating_mul(i64::from(settings.pull_stale_factor))
        }
        _ => i64::try_from(settings.push_stale_after_s).unwrap_or(i64::MAX),
    }
}

/// Index metadata of a stored source.
pub fn source_meta(row: &SourceRow, settings: &Settings) -> Arc<SourceMeta> {
    Arc::new(SourceMeta {
        id: row.id,
        cpts_id: row.cpts_id.clone(),
        name: row.name.clone(),
        last_success_at: AtomicI64::new(row.last_success_at.unwrap_or(0)),
        stale_after_s: stale_after_s(row, settings),
    })
}

/// Rebuilds the whole index from the database (start-up).
pub fn rebuild_all(
    conn: &mut DbConn,
    settings: &Settings,
    index: &SlotIndex,
    now: i64,
) -> Result<usize, StoreError> {
    let sources: HashMap<i64, Arc<SourceMeta>> = crate::store::sources::list(conn, None)?
        .iter()
        .map(|r| (r.id, source_meta(r, settings)))
        .collect();
    let (places, slots) = crate::store::slots::load_for_index(conn, None, now)?;
    let (places, taken) = build_places(places, slots, &sources);
    let snap = Snapshot::new(places, sources);
    let n = snap.slot_count;
    index.replace_all(snap);
    index.reset_taken(taken);
    Ok(n)
}

/// Reloads one source after its snapshot committed.
pub fn reload_source(
    conn: &mut DbConn,
    settings: &Settings,
    index: &SlotIndex,
    source_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    let row = crate::store::sources::get(conn, source_id)?;
    let meta = source_meta(&row, settings);
    let sources = HashMap::from([(row.id, meta.clone())]);
    let (places, slots) = crate::store::slots::load_for_index(conn, Some(source_id), now)?;
    let (places, taken) = build_places(places, slots, &sources);
    for (slot, until) in taken {
        index.mark_taken(slot, until);
    }
    index.replace_source(meta, places);
    Ok(())
}
