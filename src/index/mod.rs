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
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

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
        Snapshot {
            tree: RTree::bulk_load(points),
            xyz,
            by_start,
            places,
            sources,
            slot_count,
        }
    }

    /// Places by increasing distance from `origin`, with their distance in metres.
    pub fn nearest(&self, origin: LatLon) -> impl Iterator<Item = (&Arc<PlaceEntry>, f64)> + '_ {
        self.tree
            .nearest_neighbor_iter_with_distance_2(&to_xyz(origin))
            .map(|(pt, d2)| (&self.places[pt.data as usize], chord2_to_m(d2)))
    }
}

/// The live index: the current snapshot plus operator state.
pub struct SlotIndex {
    snapshot: ArcSwap<Snapshot>,
    /// slot id → unavailable until (epoch seconds; `i64::MAX` when booked).
    taken: DashMap<i64, i64>,
    writer: std::sync::Mutex<()>,
}

impl Default for SlotIndex {
    fn default() -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            taken: DashMap::new(),
            writer: Default::default(),
        }
    }
}

impl SlotIndex {
    /// The current snapshot (cheap; never blocks).
    pub fn load(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
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
        let fresh: DashMap<i64, i64> = entries.into_iter().collect();
        self.taken.clear();
        for (k, v) in fresh {
            self.taken.insert(k, v);
        }
    }
}
