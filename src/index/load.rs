//! Building index entries from stored rows (start-up and after each committed snapshot).

use super::{PlaceEntry, Provider, SlotEntry, SlotIndex, Snapshot, SourceMeta};
use crate::config::Settings;
use crate::domain::LatLon;
use crate::domain::slot::{
    AppointmentType, AudienceSet, FeedStatus, LocationPrecision, Modality, NormalizedFeed,
};
use crate::store::slots::{PlaceRow, SlotRow, WrittenIds};
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
    let mut b = Builder::default();
    for r in slots {
        b.add_row(r);
    }
    (b.places(places, sources), b.taken)
}

/// Slot entries grouped by place, with providers shared by value.
#[derive(Default)]
struct Builder {
    by_place: HashMap<i64, Vec<SlotEntry>>,
    // `Provider`'s JSON cache has interior mutability but takes no part in its hash or equality
    #[allow(clippy::mutable_key_type)]
    providers: HashMap<Provider, Arc<Provider>>,
    taken: Vec<(i64, i64)>,
}

impl Builder {
    fn provider(&mut self, provider: Provider) -> Arc<Provider> {
        if let Some(p) = self.providers.get(&provider) {
            return p.clone();
        }
        let p = Arc::new(provider.clone());
        self.providers.insert(provider, p.clone());
        p
    }

    /// Operator state of a stored row.
    fn note_taken(&mut self, r: &SlotRow) {
        if r.appointment_id.is_some() {
            self.taken.push((r.id, i64::MAX));
        } else if let Some(until) = r.held_until {
            self.taken.push((r.id, until));
        }
    }

    fn add_row(&mut self, r: SlotRow) {
        self.note_taken(&r);
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
        let provider = self.provider(provider);
        let mut audience = AudienceSet::default();
        audience.0 = u8::try_from(r.audience).unwrap_or(0);
        self.by_place
            .entry(r.place_id)
            .or_default()
            .push(SlotEntry {
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

    /// Entries of the slots a snapshot wrote, from the feed and the row ids the store gave
    /// them (the same values as a round trip through the rows). Providers are shared per
    /// schedule in the feed: they are looked up by pointer first.
    fn add_feed(&mut self, feed: &NormalizedFeed, ids: &WrittenIds, now: i64) {
        type Key = (usize, usize, usize);
        let mut by_ptr: HashMap<Key, Arc<Provider>> = HashMap::new();
        for s in &feed.slots {
            let end = crate::store::to_epoch(s.end);
            // Slots the snapshot did not write (withdrawn `entered-in-error`) have no id.
            let (Some(&id), Some(&place_id)) = (
                ids.slots.get(s.external_id.as_str()),
                ids.places.get(&*s.place_key),
            ) else {
                continue;
            };
            if end <= now {
                continue;
            }
            let key = (
                s.practitioner
                    .as_ref()
                    .map_or(0, |p| Arc::as_ptr(p) as usize),
                s.structure.as_ref().map_or(0, |x| Arc::as_ptr(x) as usize),
                s.booking_phone
                    .as_ref()
                    .map_or(0, |x| Arc::as_ptr(x) as *const u8 as usize),
            );
            let provider = match by_ptr.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let pr = s.practitioner.as_deref();
                    let st = s.structure.as_deref();
                    let p = self.provider(Provider {
                        practitioner_id: pr.and_then(|p| p.national_id.clone()),
                        practitioner_name: pr.and_then(|p| p.name.clone()),
                        profession: pr.and_then(|p| p.profession.clone()),
                        specialty: pr.and_then(|p| p.specialty.clone()),
                        structure_kind: st.map(|x| x.kind.code().to_string()),
                        structure_id: st.and_then(|x| x.national_id.clone()),
                        structure_name: st.and_then(|x| x.name.clone()),
                        booking_phone: s.booking_phone.as_deref().map(str::to_string),
                        json: Default::default(),
                    });
                    by_ptr.insert(key, p.clone());
                    p
                }
            };
            // The same conversions as a round trip through the row.
            let capacity = i32::try_from(s.capacity).unwrap_or(i32::MAX);
            self.by_place.entry(place_id).or_default().push(SlotEntry {
                id,
                start: crate::store::to_epoch(s.start),
                end,
                modality: s.modality,
                audience: s.audience,
                surnumeraire: s.surnumeraire,
                offered: s.status == FeedStatus::Free,
                capacity: u32::try_from(capacity).unwrap_or(1),
                provider,
                external_id: s.external_id.as_str().into(),
                booking_url: s.booking_url.as_deref().map(Into::into),
                appointment_type: s.appointment_type.map(AppointmentType::code),
            });
        }
    }

    /// The place entries of `places` that have slots, each with its slots sorted by start.
    fn places(
        &mut self,
        places: Vec<PlaceRow>,
        sources: &HashMap<i64, Arc<SourceMeta>>,
    ) -> Vec<Arc<PlaceEntry>> {
        let mut out = Vec::with_capacity(places.len());
        for p in places {
            let (Some(source), Some(mut slots)) =
                (sources.get(&p.source_id), self.by_place.remove(&p.id))
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
                precision: LocationPrecision::parse(&p.precision)
                    .unwrap_or(LocationPrecision::Commune),
                name: p.name,
                address: p.address,
                postcode: p.postcode,
                city: p.city,
                insee: p.insee,
                slots,
                json: Default::default(),
            }));
        }
        out
    }
}

/// How long a source's data stays fresh: 24 h (configurable) after a push, or
/// `pull_stale_factor` poll intervals for a pulled source.
pub fn stale_after_s(row: &SourceRow, settings: &Settings) -> i64 {
    crate::store::sources::Staleness::of(settings).stale_after_s(row)
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
    let rows = crate::store::sources::list(conn, None)?;
    let sources: HashMap<i64, Arc<SourceMeta>> = rows
        .iter()
        .map(|r| (r.id, source_meta(r, settings)))
        .collect();
    let (places, slots) = crate::store::slots::load_for_index(conn, None, now)?;
    let (places, taken) = build_places(places, slots, &sources);
    let snap = Snapshot::new(places, sources);
    let n = snap.slot_count;
    index.replace_all(snap);
    index.reset_taken(taken);
    // Read before the slots: the rows may be of a later snapshot, never of an earlier one.
    for r in &rows {
        index.note_source_seq(r.id, r.snapshot_seq);
    }
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
    let lap = std::time::Instant::now();
    let (places, slots) = crate::store::slots::load_for_index(conn, Some(source_id), now)?;
    tracing::debug!(ms = lap.elapsed().as_millis() as u64, "reload: rows read");
    let (places, taken) = build_places(places, slots, &sources);
    tracing::debug!(
        ms = lap.elapsed().as_millis() as u64,
        "reload: entries built"
    );
    for (slot, until) in taken {
        index.mark_taken(slot, until);
    }
    index.replace_source(meta, places);
    // Read before the slots: the rows may be of a later snapshot, never of an earlier one.
    index.note_source_seq(row.id, row.snapshot_seq);
    Ok(())
}

/// The entries of the slots a snapshot writes into a source that had rows, built from the
/// feed and the row ids while the rows are written (see
/// [`crate::store::slots::replace_snapshot_beside`]) and completed by [`install`]
/// once the snapshot has committed.
pub struct FeedEntries(Builder);

/// Index entries built beside a snapshot's write: for a source's first snapshot, or for one
/// into a source that had rows.
pub enum Prepared {
    First(FirstSnapshot),
    Feed(FeedEntries),
}

/// Builds what the index needs of a snapshot while its rows are written (`had_rows`: whether
/// the source had rows before it).
pub fn prepare(
    settings: &Settings,
    source: &SourceRow,
    feed: &NormalizedFeed,
    ids: &WrittenIds,
    now: i64,
    had_rows: bool,
) -> Prepared {
    if had_rows {
        // The same values as a round trip through the rows.
        let mut b = Builder::default();
        b.add_feed(feed, ids, now);
        Prepared::Feed(FeedEntries(b))
    } else {
        Prepared::First(prepare_first(settings, source, feed, ids, now))
    }
}

/// Puts what [`prepare`] built in the index after snapshot `seq` of `source_id` committed.
pub fn install(
    conn: &mut DbConn,
    settings: &Settings,
    index: &SlotIndex,
    source_id: i64,
    seq: i64,
    prepared: Prepared,
    now: i64,
) -> Result<(), StoreError> {
    match prepared {
        Prepared::First(first) => install_first(conn, settings, index, seq, first, now),
        Prepared::Feed(entries) => {
            install_feed_entries(conn, settings, index, source_id, now, seq, entries)
        }
    }
}

/// Reloads one source right after its snapshot `seq` committed, with the entries of the slots
/// it wrote built from the feed ([`FeedEntries`]) instead of read back. Rows the snapshot did
/// not write but the index shows (not ended: history still running, held or booked slots that
/// left the feed) and the operator state are read.
///
/// Reloads are serialised, and one whose snapshot is no longer the source's latest falls back
/// to [`reload_source`]: the index never goes back to an older snapshot.
fn install_feed_entries(
    conn: &mut DbConn,
    settings: &Settings,
    index: &SlotIndex,
    source_id: i64,
    now: i64,
    seq: i64,
    entries: FeedEntries,
) -> Result<(), StoreError> {
    let _one_at_a_time = index.reload_guard();
    let row = crate::store::sources::get(conn, source_id)?;
    if row.snapshot_seq != seq {
        return reload_source(conn, settings, index, source_id, now);
    }
    let meta = source_meta(&row, settings);
    let sources = HashMap::from([(row.id, meta.clone())]);
    let lap = std::time::Instant::now();
    let (places, kept, written_taken) = crate::store::slots::index_extras(conn, source_id, now)?;
    tracing::debug!(ms = lap.elapsed().as_millis() as u64, "reload: extras read");
    let FeedEntries(mut b) = entries;
    for r in &written_taken {
        b.note_taken(r);
    }
    for r in kept {
        b.add_row(r);
    }
    let entries = b.places(places, &sources);
    tracing::debug!(
        ms = lap.elapsed().as_millis() as u64,
        "reload: entries built"
    );
    for (slot, until) in std::mem::take(&mut b.taken) {
        index.mark_taken(slot, until);
    }
    index.replace_source(meta, entries);
    index.note_source_seq(source_id, seq);
    Ok(())
}

/// The index entries of a source's first snapshot, built from the feed while its rows are
/// written (see [`crate::store::slots::replace_snapshot_beside`]) and put in place by
/// [`install_first`] once the snapshot has committed. A source with no rows has nothing else
/// to show: no history, no held or booked slot, no place of an earlier snapshot.
pub struct FirstSnapshot {
    meta: Arc<SourceMeta>,
    entries: Vec<Arc<PlaceEntry>>,
}

/// Builds [`FirstSnapshot`]: the places and slots the snapshot writes, as a reload from the
/// database would read them. `source` is the source's row before the snapshot (its freshness
/// is set at [`install_first`]).
pub fn prepare_first(
    settings: &Settings,
    source: &SourceRow,
    feed: &NormalizedFeed,
    ids: &WrittenIds,
    now: i64,
) -> FirstSnapshot {
    let meta = source_meta(source, settings);
    let sources = HashMap::from([(source.id, meta.clone())]);
    let mut b = Builder::default();
    b.add_feed(feed, ids, now);
    let places = feed
        .places
        .iter()
        .filter_map(|p| {
            Some(PlaceRow {
                id: *ids.places.get(&*p.key)?,
                source_id: source.id,
                name: p.name.clone(),
                address: p.address.clone(),
                postcode: p.postcode.as_ref().map(|x| x.as_str().to_string()),
                city: p.city.clone(),
                insee: p.insee.as_ref().map(|x| x.as_str().to_string()),
                lat: p.position.lat,
                lon: p.position.lon,
                precision: p.precision.as_str().to_string(),
            })
        })
        .collect();
    let entries = b.places(places, &sources);
    FirstSnapshot { meta, entries }
}

/// Puts a [`FirstSnapshot`] in the index after snapshot `seq` committed. When the source has
/// moved on meanwhile (a later snapshot, or its name, CPTS or freshness rule changed), the
/// source is reloaded from the database instead: the index never shows an older state.
pub fn install_first(
    conn: &mut DbConn,
    settings: &Settings,
    index: &SlotIndex,
    seq: i64,
    first: FirstSnapshot,
    now: i64,
) -> Result<(), StoreError> {
    let _one_at_a_time = index.reload_guard();
    let source_id = first.meta.id;
    let row = crate::store::sources::get(conn, source_id)?;
    let current = source_meta(&row, settings);
    let meta = first.meta;
    if row.snapshot_seq != seq
        || current.cpts_id != meta.cpts_id
        || current.name != meta.name
        || current.stale_after_s != meta.stale_after_s
    {
        return reload_source(conn, settings, index, source_id, now);
    }
    meta.last_success_at.store(
        current
            .last_success_at
            .load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );
    index.replace_source(meta, first.entries);
    index.note_source_seq(source_id, seq);
    Ok(())
}
