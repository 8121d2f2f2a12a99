//! The in-memory search index: an R-tree of places (rstar, bulk-loaded, on 3-D unit-sphere
//! coordinates so that Euclidean order is great-circle order), each place holding its slots
//! sorted by start.
//!
//! Rules kept here:
//! - readers never lock: they load an immutable [`Snapshot`] (`ArcSwap`); writers build a new
//!   one (reusing unchanged places) and swap it in, after the database committed;
//! - operator state (held until / booked) lives in a separate concurrent map, [`SlotIndex::taken`],
//!   updated after each committed hold, confirmation, release or cancellation, so a hold costs no
//!   snapshot rebuild and survives feed refreshes; the database stays the judge of every hold;
//! - the index never decides a booking: a slot it shows may still be refused with 409.

pub mod load;
pub mod search;

use crate::domain::LatLon;
use crate::domain::slot::{AudienceSet, LocationPrecision, Modality};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use rstar::RTree;
use rstar::primitives::GeomWithData;
use rustc_hash::FxBuildHasher;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

/// A JSON rendering of an immutable index entry, made on first use and kept: the search answer
/// copies it instead of serialising the same place or practitioner again for every result.
/// It never takes part in comparisons, hashing or clones (a clone starts empty).
#[derive(Default)]
pub struct JsonCache(OnceLock<Box<[Box<RawValue>]>>);

impl JsonCache {
    /// The cached JSON values, made by `render` the first time.
    pub fn get_or(&self, render: impl FnOnce() -> Vec<Box<RawValue>>) -> &[Box<RawValue>] {
        self.0.get_or_init(|| render().into_boxed_slice())
    }
}

impl Clone for JsonCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}
impl PartialEq for JsonCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for JsonCache {}
impl std::hash::Hash for JsonCache {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}
impl std::fmt::Debug for JsonCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonCache")
    }
}

/// Who offers a slot: shared by all the slots of one practitioner/structure at one place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Provider {
    pub practitioner_id: Option<String>,
    pub practitioner_name: Option<String>,
    pub profession: Option<String>,
    pub specialty: Option<String>,
    pub structure_kind: Option<String>,
    pub structure_id: Option<String>,
    pub structure_name: Option<String>,
    pub booking_phone: Option<String>,
    /// `[practitioner, structure]` as the search answer shows them (see `http::search_json`).
    pub json: JsonCache,
}

/// One slot as the index holds it (compact: per-slot strings are only its id and link).
#[derive(Debug, Clone)]
pub struct SlotEntry {
    /// Database id (the public slot id).
    pub id: i64,
    /// Start and end, seconds since the epoch (UTC).
    pub start: i64,
    pub end: i64,
    pub modality: Modality,
    pub audience: AudienceSet,
    pub surnumeraire: bool,
    /// Offered by its feed (status free, still in the feed).
    pub offered: bool,
    pub capacity: u32,
    pub provider: Arc<Provider>,
    pub external_id: Box<str>,
    pub booking_url: Option<Box<str>>,
    pub appointment_type: Option<&'static str>,
}

/// A source's freshness, shared by its places; updated in place when a fetch confirms the data.
#[derive(Debug)]
pub struct SourceMeta {
    pub id: i64,
    pub cpts_id: String,
    pub name: String,
    /// Last successful refresh (epoch seconds), 0 when never.
    pub last_success_at: AtomicI64,
    /// How long data stays fresh after a success, seconds.
    pub stale_after_s: i64,
}

impl SourceMeta {
    /// Whether the source's slots may be offered at `now`.
    pub fn is_fresh(&self, now: i64) -> bool {
        let last = self.last_success_at.load(Ordering::Relaxed);
        last > 0 && now < last.saturating_add(self.stale_after_s)
    }
}

/// A consultation place and its slots, sorted by start.
#[derive(Debug)]
pub struct PlaceEntry {
    pub id: i64,
    pub source: Arc<SourceMeta>,
    pub position: LatLon,
    pub precision: LocationPrecision,
    pub name: Option<String>,
    pub address: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    pub insee: Option<String>,
    pub slots: Vec<SlotEntry>,
    /// The place as the search answer shows it (see `http::search_json`).
    pub json: JsonCache,
}

/// Unit-sphere coordinates of a position.
pub fn to_xyz(p: LatLon) -> [f64; 3] {
    let (lat, lon) = (p.lat.to_radians(), p.lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// Great-circle metres for a squared chord between unit vectors.
pub fn chord2_to_m(chord2: f64) -> f64 {
    2.0 * crate::domain::EARTH_RADIUS_M * (chord2.sqrt() / 2.0).min(1.0).asin()
}

/// Squared chord for a great-circle distance in metres.
pub fn m_to_chord2(m: f64) -> f64 {
    let c = 2.0
        * (m / (2.0 * crate::domain::EARTH_RADIUS_M))
            .min(std::f64::consts::FRAC_PI_2)
            .sin();
    c * c
}

type PlacePoint = GeomWithData<[f64; 3], u32>;

/// Bit of the code-interning masks meaning "some code beyond the first 63".
const OVERFLOW_BIT: u64 = 1 << 63;

/// Small interned code sets (professions, specialties) as 64-bit masks.
#[derive(Debug, Default)]
pub(crate) struct CodeBits(HashMap<String, u64>);

impl CodeBits {
    fn intern(&mut self, code: &str) -> u64 {
        if let Some(b) = self.0.get(code) {
            return *b;
        }
        let next = self.0.len();
        let bit = if next < 63 { 1 << next } else { OVERFLOW_BIT };
        self.0.insert(code.to_string(), bit);
        bit
    }
    /// The bit of `code`; `None` when no slot of the snapshot has it.
    pub(crate) fn get(&self, code: &str) -> Option<u64> {
        self.0.get(code).copied()
    }
}

/// What a place may offer, so a search can pass it by without touching its slots: only
/// slots offered by their feed and visible to operators count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlaceSummary {
    /// Bit per [`Modality`] (`1 << modality as u8`).
    pub modalities: u8,
    /// Bit 0: has a slot that is not surnuméraire; bit 1: has a surnuméraire slot.
    pub surnumeraire: u8,
    /// Interned profession / specialty codes present ([`CodeBits`]).
    pub professions: u64,
    pub specialties: u64,
    /// Earliest and latest start of those slots (an empty place has `first > last`).
    pub first_start: i64,
    pub last_start: i64,
}

impl PlaceSummary {
    fn of(place: &PlaceEntry, professions: &mut CodeBits, specialties: &mut CodeBits) -> Self {
        let mut sum = PlaceSummary {
            modalities: 0,
            surnumeraire: 0,
            professions: 0,
            specialties: 0,
            first_start: i64::MAX,
            last_start: i64::MIN,
        };
        for s in place
            .slots
            .iter()
            .filter(|s| s.offered && s.audience.visible_to_operators())
        {
            sum.modalities |= 1 << s.modality as u8;
            sum.surnumeraire |= 1 << u8::from(s.surnumeraire);
            if let Some(p) = &s.provider.profession {
                sum.professions |= professions.intern(p);
            }
            if let Some(p) = &s.provider.specialty {
                sum.specialties |= specialties.intern(p);
            }
            sum.first_start = sum.first_start.min(s.start);
            sum.last_start = sum.last_start.max(s.start);
        }
        sum
    }
}

/// An immutable view of all places and slots.
#[derive(Default)]
pub struct Snapshot {
    pub places: Vec<Arc<PlaceEntry>>,
    tree: RTree<PlacePoint>,
    /// Unit-sphere coordinates of `places`, same order.
    pub(crate) xyz: Vec<[f64; 3]>,
    /// Every slot by start: `(start, place index, slot index)`, for "soonest" queries.
    pub(crate) by_start: Vec<(i64, u32, u32)>,
    pub sources: HashMap<i64, Arc<SourceMeta>>,
    pub slot_count: usize,
    /// Per place (same order as `places`): what it may offer.
    pub(crate) summaries: Vec<PlaceSummary>,
    pub(crate) professions: CodeBits,
    pub(crate) specialties: CodeBits,
}

impl Snapshot {
    /// Bulk-loads the R-tree over `places` and sorts the time index.
    pub fn new(places: Vec<Arc<PlaceEntry>>, sources: HashMap<i64, Arc<SourceMeta>>) -> Self {
        let xyz: Vec<[f64; 3]> = places.iter().map(|p| to_xyz(p.position)).collect();
        let points: Vec<PlacePoint> = xyz
            .iter()
            .enumerate()
            .map(|(i, p)| GeomWithData::new(*p, i as u32))
            .collect();
        let slot_count = places.iter().map(|p| p.slots.len()).sum();
        let mut by_start = Vec::with_capacity(slot_count);
        for (pi, p) in places.iter().enumerate() {
            by_start.extend(
                p.slots
                    .iter()
                    .enumerate()
                    .map(|(si, s)| (s.start, pi as u32, si as u32)),
            );
        }
        by_start.sort_unstable();
        let (mut professions, mut specialties) = (CodeBits::default(), CodeBits::default());
        let summaries = places
            .iter()
            .map(|p| PlaceSummary::of(p, &mut professions, &mut specialties))
            .collect();
        Snapshot {
            tree: RTree::bulk_load(points),
            xyz,
            by_start,
            places,
            sources,
            slot_count,
            summaries,
            professions,
            specialties,
        }
    }

    /// Places by increasing distance from `origin`, with their distance in metres.
    pub fn nearest(&self, origin: LatLon) -> impl Iterator<Item = (&Arc<PlaceEntry>, f64)> + '_ {
        self.nearest_indexed(origin)
            .map(|(i, d)| (&self.places[i], d))
    }

    /// Place indices by increasing distance from `origin`, with their distance in metres.
    pub(crate) fn nearest_indexed(
        &self,
        origin: LatLon,
    ) -> impl Iterator<Item = (usize, f64)> + '_ {
        self.tree
            .nearest_neighbor_iter_with_distance_2(&to_xyz(origin))
            .map(|(pt, d2)| (pt.data as usize, chord2_to_m(d2)))
    }
}

/// The live index: the current snapshot plus operator state.
pub struct SlotIndex {
    snapshot: ArcSwap<Snapshot>,
    /// slot id → unavailable until (epoch seconds; `i64::MAX` when booked). Looked up for every
    /// matching slot a search visits, hence the fast integer hash (ids are not attacker-chosen).
    taken: DashMap<i64, i64, FxBuildHasher>,
    writer: std::sync::Mutex<()>,
    /// Held while a source's entries are rebuilt after its snapshot committed (see
    /// [`load::reload_source_from_feed`]), so two reloads of this index never interleave.
    reload: std::sync::Mutex<()>,
}

impl Default for SlotIndex {
    fn default() -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            taken: DashMap::default(),
            writer: Default::default(),
            reload: Default::default(),
        }
    }
}

impl SlotIndex {
    /// The current snapshot (cheap; never blocks).
    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Serialises snapshot reloads of this index (the guard ends the reload).
    pub fn reload_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reload.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces everything (start-up).
    pub fn replace_all(&self, snap: Snapshot) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.snapshot.store(Arc::new(snap));
    }

    /// Replaces one source's places (after its snapshot committed), keeping all others.
    pub fn replace_source(&self, source: Arc<SourceMeta>, places: Vec<Arc<PlaceEntry>>) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot.load();
        let id = source.id;
        let mut all: Vec<Arc<PlaceEntry>> = old
            .places
            .iter()
            .filter(|p| p.source.id != id)
            .cloned()
            .collect();
        all.extend(places);
        let mut sources = old.sources.clone();
        sources.insert(id, source);
        self.snapshot.store(Arc::new(Snapshot::new(all, sources)));
    }

    /// Marks a slot unavailable until `until` (a hold) or for good (`i64::MAX`, booked).
    pub fn mark_taken(&self, slot_id: i64, until: i64) {
        self.taken.insert(slot_id, until);
    }

    /// Makes a slot available again (hold released, appointment cancelled).
    pub fn mark_free(&self, slot_id: i64) {
        self.taken.remove(&slot_id);
    }

    /// Whether a slot is held or booked at `now`.
    pub fn is_taken(&self, slot_id: i64, now: i64) -> bool {
        self.taken.get(&slot_id).is_some_and(|u| *u > now)
    }

    /// Drops expired holds from the overlay (they already no longer count).
    pub fn sweep(&self, now: i64) -> usize {
        let before = self.taken.len();
        self.taken.retain(|_, until| *until > now);
        before - self.taken.len()
    }

    /// Replaces the operator-state overlay (start-up, or resynchronisation with the database).
    pub fn reset_taken(&self, entries: impl IntoIterator<Item = (i64, i64)>) {
        let fresh: Vec<(i64, i64)> = entries.into_iter().collect();
        self.taken.clear();
        for (k, v) in fresh {
            self.taken.insert(k, v);
        }
    }
}
