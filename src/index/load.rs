//! Building index entries from stored rows (start-up and after each committed snapshot).

use super::{PlaceEntry, Provider, SlotEntry, SourceMeta};
use crate::domain::LatLon;
use crate::domain::slot::{AppointmentType, AudienceSet, LocationPrecision, Modality};
use crate::store::slots::{PlaceRow, SlotRow};
use std::collections::HashMap;
use std::sync::Arc;

/// Places with their slots (sorted by start), and the operator state found in the rows
/// (`(slot id, unavailable until)`). Places of unknown sources, or with no slot, are left out.
pub fn build_places(
    places: Vec<PlaceRow>,
    slots: Vec<SlotRow>,
    sources: &HashMap<i64, Arc<SourceMeta>>,
) -> (Vec<Arc<PlaceEntry>>, Vec<(i64, i64)>) {
    let mut by_place: HashMap<i64, Vec<SlotEntry>> = HashMap::new();
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
        }));
    }
    (out, taken)
}
