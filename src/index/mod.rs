//! The in-memory search index: a packed tree of places ([`tree`], on 3-D unit-sphere
//! coordinates so that Euclidean order is great-circle order, each node carrying what its places
//! offer), each place holding its slots sorted by start, mirrored by compact keys (start, id,
//! filter attributes) laid out place after place in spatial order.
//!
//! Rules kept here:
//! - readers never lock: they load an immutable [`Snapshot`] (`ArcSwap`); writers build a new
//!   one (reusing unchanged places) and swap it in, after the database committed;
//! - operator state (held until / booked) lives in a separate concurrent map, [`SlotIndex::taken`],
//!   updated after each committed hold, confirmation, release or cancellation, so a hold costs no
//!   snapshot rebuild and survives feed refreshes; the database stays the judge of every hold;
//! - a node applies its own writes at once and the other nodes' through [`sync`] (a periodic
//!   read of the database), so nodes sharing one database converge within an interval;
//! - the index never decides a booking: a slot it shows may still be refused with 409.

pub mod load;
pub mod search;
pub mod sync;
mod tree;

use crate::domain::LatLon;
use crate::domain::slot::{AudienceSet, LocationPrecision, Modality};
use arc_swap::ArcSwap;
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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

/// Bit of the code-interning masks meaning "some code beyond the first 63".
const OVERFLOW_BIT: u64 = 1 << 63;

/// Code id shared by every code beyond the first 254 (ids start at 1; 0 means "no code").
pub(crate) const CODE_OVERFLOW: u8 = u8::MAX;

/// Small interned code sets (professions, specialties): an id per code for the slot keys, and a
/// 64-bit mask bit per id for the place summaries.
#[derive(Debug, Default)]
pub(crate) struct CodeBits(HashMap<String, u8>);

impl CodeBits {
    fn intern(&mut self, code: &str) -> u8 {
        if let Some(id) = self.0.get(code) {
            return *id;
        }
        let id = (self.0.len() + 1).min(usize::from(CODE_OVERFLOW)) as u8;
        self.0.insert(code.to_string(), id);
        id
    }
    /// The id of `code`; `None` when no slot of the snapshot has it.
    pub(crate) fn get(&self, code: &str) -> Option<u8> {
        self.0.get(code).copied()
    }
    /// The summary mask bit of an id (0 for "no code").
    pub(crate) fn bit(id: u8) -> u64 {
        match id {
            0 => 0,
            1..=63 => 1 << (id - 1),
            _ => OVERFLOW_BIT,
        }
    }
}

/// Number of [`Attrs::class`] values (modality bit 0–2, shifted by 8, and a profession id).
const CLASSES: usize = 8 << 8;

/// A class with at most 1/`RARE_SHARE` of the keys is rare (see [`Snapshot::by_class`]).
const RARE_SHARE: usize = 16;

/// What a search filters a slot on, packed: bits 0–2 the modality (`1 << modality as u8`),
/// bits 3–4 surnuméraire (bit 3: not, bit 4: is), bits 8–15 the profession's code id, bits
/// 16–23 the specialty's ([`CodeBits`]; 0 when none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attrs(pub(crate) u32);

impl Attrs {
    fn of(s: &SlotEntry, professions: &mut CodeBits, specialties: &mut CodeBits) -> Self {
        let code =
            |bits: &mut CodeBits, c: &Option<String>| c.as_deref().map_or(0, |c| bits.intern(c));
        Attrs(
            1 << s.modality as u8
                | 1 << (3 + u8::from(s.surnumeraire))
                | u32::from(code(professions, &s.provider.profession)) << 8
                | u32::from(code(specialties, &s.provider.specialty)) << 16,
        )
    }
    pub(crate) fn modalities(self) -> u8 {
        (self.0 & 0b111) as u8
    }
    pub(crate) fn surnumeraire(self) -> u8 {
        ((self.0 >> 3) & 0b11) as u8
    }
    pub(crate) fn profession(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub(crate) fn specialty(self) -> u8 {
        (self.0 >> 16) as u8
    }
    /// The modality and profession, by which [`Snapshot::by_class`] orders the keys of an
    /// instant.
    pub(crate) fn class(self) -> u16 {
        u16::from(self.modalities()) << 8 | u16::from(self.profession())
    }
}

/// The bit of a (code id, modality) pair in [`PlaceSummary::profession_modes`] and
/// [`PlaceSummary::specialty_modes`]: ids 1–21 have their own three bits, any other id
/// (none, or beyond 21) shares bit 63.
pub(crate) fn mode_bit(code: u8, modality: u32) -> u64 {
    match code {
        1..=21 => 1 << ((u32::from(code) - 1) * 3 + modality),
        _ => 1 << 63,
    }
}

/// A slot that may be offered (offered by its feed, visible to operators), as a search scans
/// it: a place's keys are consecutive in [`Snapshot::keys`], sorted by start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotKey {
    pub start: i64,
    /// The slot's id (for the operator-state overlay).
    pub id: i64,
    /// Its index in the place's `slots`.
    pub slot: u32,
    pub attrs: Attrs,
}

/// The same slots across the whole snapshot in start order, for "soonest" queries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeKey {
    pub start: i64,
    /// The place's unit-sphere point, rounded (to pass by far places without looking their
    /// point up: see `search::Reach32`).
    pub xyz: [f32; 3],
    pub place: u32,
    /// The slot's key in [`Snapshot::keys`] (its id and index in the place's `slots`, looked
    /// up for a match only).
    pub key: u32,
    pub attrs: Attrs,
}

/// What a place may offer, so a search can pass it by without touching its slots: only
/// slots offered by their feed and visible to operators count. Nodes of the place tree carry
/// the union of their places' summaries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlaceSummary {
    /// Bit per [`Modality`] (`1 << modality as u8`).
    pub modalities: u8,
    /// Bit 0: has a slot that is not surnuméraire; bit 1: has a surnuméraire slot.
    pub surnumeraire: u8,
    /// Interned profession / specialty codes present ([`CodeBits::bit`]).
    pub professions: u64,
    pub specialties: u64,
    /// (profession, modality) and (specialty, modality) pairs present ([`mode_bit`]): a
    /// cabinet whose médecin consults at the practice and whose infirmier visits at home does
    /// not offer home visits by a médecin.
    pub profession_modes: u64,
    pub specialty_modes: u64,
    /// Earliest and latest start of those slots (an empty place has `first > last`).
    pub first_start: i64,
    pub last_start: i64,
    /// Per modality (index `modality as u8`), the hours ([`hour_bit`]) in which those slots
    /// start: an infirmier's home visits all tomorrow say nothing for the next four hours.
    pub hours: [u64; 3],
}

/// Bit of the hour of `start` counted from the snapshot's earliest start `base`; hours from
/// the 63rd on share bit 63.
pub(crate) fn hour_bit(base: i64, start: i64) -> u64 {
    1 << (start.saturating_sub(base) / 3600).clamp(0, 63)
}

/// The [`hour_bit`]s of the starts in `[from, to)`.
pub(crate) fn hour_mask(base: i64, from: i64, to: i64) -> u64 {
    if to <= from || to.saturating_sub(1) < base {
        return 0;
    }
    let lo = (from.saturating_sub(base) / 3600).clamp(0, 63);
    let hi = (to.saturating_sub(1).saturating_sub(base) / 3600).clamp(0, 63);
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

impl PlaceSummary {
    pub(crate) const EMPTY: PlaceSummary = PlaceSummary {
        modalities: 0,
        surnumeraire: 0,
        professions: 0,
        specialties: 0,
        profession_modes: 0,
        specialty_modes: 0,
        first_start: i64::MAX,
        last_start: i64::MIN,
        hours: [0; 3],
    };

    fn of(keys: &[SlotKey], base: i64) -> Self {
        let mut sum = Self::EMPTY;
        for k in keys {
            sum.modalities |= k.attrs.modalities();
            sum.surnumeraire |= k.attrs.surnumeraire();
            sum.professions |= CodeBits::bit(k.attrs.profession());
            sum.specialties |= CodeBits::bit(k.attrs.specialty());
            let m = u32::from(k.attrs.modalities()).trailing_zeros();
            sum.profession_modes |= mode_bit(k.attrs.profession(), m);
            sum.specialty_modes |= mode_bit(k.attrs.specialty(), m);
            sum.hours[m as usize] |= hour_bit(base, k.start);
            sum.first_start = sum.first_start.min(k.start);
            sum.last_start = sum.last_start.max(k.start);
        }
        sum
    }

    pub(crate) fn union(&self, o: &PlaceSummary) -> PlaceSummary {
        PlaceSummary {
            modalities: self.modalities | o.modalities,
            surnumeraire: self.surnumeraire | o.surnumeraire,
            professions: self.professions | o.professions,
            specialties: self.specialties | o.specialties,
            profession_modes: self.profession_modes | o.profession_modes,
            specialty_modes: self.specialty_modes | o.specialty_modes,
            first_start: self.first_start.min(o.first_start),
            last_start: self.last_start.max(o.last_start),
            hours: [0, 1, 2].map(|m| self.hours[m] | o.hours[m]),
        }
    }
}

/// What a nearest-first walk reads of a place: its unit-sphere point and where its keys are,
/// side by side (two places per cache line), so that reaching a place's keys costs no further
/// look-up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlacePoint {
    pub xyz: [f64; 3],
    /// `keys[first..end]` of [`Snapshot::keys`].
    pub first: u32,
    pub end: u32,
}

/// An immutable view of all places and slots.
#[derive(Default)]
pub struct Snapshot {
    /// Places in spatial order (along a Hilbert curve); the internal arrays share it.
    pub places: Vec<Arc<PlaceEntry>>,
    tree: tree::PlaceTree,
    /// Points and key ranges of `places`, same order.
    pub(crate) points: Vec<PlacePoint>,
    /// Every key by start, for "soonest" queries.
    pub(crate) by_start: Vec<TimeKey>,
    /// The keys of the rare [`Attrs::class`]es (at most 1/[`RARE_SHARE`] of the keys each)
    /// by start, class, then place: a query for a rare class (home visits by a médecin) finds
    /// its few keys of an instant side by side instead of looking them up among all.
    pub(crate) by_class: Vec<TimeKey>,
    /// Bit per rare class ([`Snapshot::is_rare`]).
    rare: [u64; CLASSES / 64],
    pub sources: HashMap<i64, Arc<SourceMeta>>,
    /// The distinct sources of `places` ([`Snapshot::place_sources`]).
    pub(crate) source_list: Vec<Arc<SourceMeta>>,
    pub slot_count: usize,
    /// Per place (same order as `places`): what it may offer.
    pub(crate) summaries: Vec<PlaceSummary>,
    /// Per place: its source's index in `source_list` (whose freshness rules it).
    pub(crate) place_sources: Vec<u32>,
    /// The slots that may be offered, place after place, each place's by start.
    pub(crate) keys: Vec<SlotKey>,
    /// The earliest start of `keys` (origin of [`PlaceSummary::hours`]).
    pub(crate) time_base: i64,
    pub(crate) professions: CodeBits,
    pub(crate) specialties: CodeBits,
}

impl Snapshot {
    /// Orders the places spatially, packs the place tree and builds the key arrays.
    pub fn new(places: Vec<Arc<PlaceEntry>>, sources: HashMap<i64, Arc<SourceMeta>>) -> Self {
        let order = tree::hilbert_order(
            &places
                .iter()
                .map(|p| (p.position.lat, p.position.lon))
                .collect::<Vec<_>>(),
        );
        let mut slots: Vec<Option<Arc<PlaceEntry>>> = places.into_iter().map(Some).collect();
        let places: Vec<Arc<PlaceEntry>> = order.iter().filter_map(|&i| slots[i].take()).collect();
        let slot_count = places.iter().map(|p| p.slots.len()).sum();
        let (mut professions, mut specialties) = (CodeBits::default(), CodeBits::default());
        let mut source_list: Vec<Arc<SourceMeta>> = Vec::new();
        let mut source_ids: HashMap<*const SourceMeta, u32> = HashMap::new();
        let mut keys = Vec::with_capacity(slot_count);
        let mut points = Vec::with_capacity(places.len());
        let mut place_sources = Vec::with_capacity(places.len());
        for p in &places {
            let first = keys.len();
            keys.extend(
                p.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.offered && s.audience.visible_to_operators())
                    .map(|(i, s)| SlotKey {
                        start: s.start,
                        id: s.id,
                        slot: i as u32,
                        attrs: Attrs::of(s, &mut professions, &mut specialties),
                    }),
            );
            keys[first..].sort_by_key(|k| k.start);
            let source = *source_ids.entry(Arc::as_ptr(&p.source)).or_insert_with(|| {
                source_list.push(p.source.clone());
                (source_list.len() - 1) as u32
            });
            points.push(PlacePoint {
                xyz: to_xyz(p.position),
                first: first as u32,
                end: keys.len() as u32,
            });
            place_sources.push(source);
        }
        let time_base = keys.iter().map(|k| k.start).min().unwrap_or(0);
        let summaries: Vec<PlaceSummary> = points
            .iter()
            .map(|h| PlaceSummary::of(&keys[h.first as usize..h.end as usize], time_base))
            .collect();
        let mut by_start: Vec<TimeKey> = points
            .iter()
            .enumerate()
            .flat_map(|(pi, h)| {
                let (at, keys) = (h.xyz.map(|v| v as f32), &keys);
                (h.first..h.end).map(move |key| TimeKey {
                    start: keys[key as usize].start,
                    xyz: at,
                    place: pi as u32,
                    key,
                    attrs: keys[key as usize].attrs,
                })
            })
            .collect();
        by_start.sort_unstable_by_key(|k| (k.start, k.place, k.key));
        let mut counts = vec![0usize; CLASSES];
        for k in &keys {
            counts[usize::from(k.attrs.class())] += 1;
        }
        let mut rare = [0u64; CLASSES / 64];
        for (class, n) in counts.iter().enumerate() {
            if n * RARE_SHARE <= keys.len() {
                rare[class / 64] |= 1 << (class % 64);
            }
        }
        let mut by_class: Vec<TimeKey> = by_start
            .iter()
            .filter(|k| class_bit(&rare, k.attrs.class()))
            .copied()
            .collect();
        by_class.sort_unstable_by_key(|k| (k.start, k.attrs.class(), k.place, k.key));
        Snapshot {
            tree: tree::PlaceTree::new(&points, &summaries),
            points,
            by_start,
            by_class,
            rare,
            places,
            sources,
            source_list,
            slot_count,
            summaries,
            place_sources,
            keys,
            time_base,
            professions,
            specialties,
        }
    }

    /// Places by increasing distance from `origin`, with their distance in metres.
    pub fn nearest(&self, origin: LatLon) -> impl Iterator<Item = (&Arc<PlaceEntry>, f64)> + '_ {
        self.nearest_admitted(origin, f64::INFINITY, |_| true)
            .map(|(i, c2)| (&self.places[i], chord2_to_m(c2)))
    }

    /// Indices of the places whose summary `admits` accepts, by increasing distance from
    /// `origin` up to the squared chord `max_c2`, with their squared chord.
    pub(crate) fn nearest_admitted<'a, F: Fn(&PlaceSummary) -> bool + 'a>(
        &'a self,
        origin: LatLon,
        max_c2: f64,
        admits: F,
    ) -> impl Iterator<Item = (usize, f64)> + 'a {
        self.tree.nearest(
            &self.points,
            &self.summaries,
            to_xyz(origin),
            max_c2,
            admits,
            false,
        )
    }

    /// Like [`Self::nearest_admitted`] for blocks of consecutive places: each block's place
    /// indices with a lower bound of their squared chords, by increasing bound.
    pub(crate) fn nearest_blocks<'a, F: Fn(&PlaceSummary) -> bool + 'a>(
        &'a self,
        origin: LatLon,
        max_c2: f64,
        admits: F,
    ) -> impl Iterator<Item = (std::ops::Range<usize>, f64)> + 'a {
        let n = self.places.len();
        self.tree
            .nearest(
                &self.points,
                &self.summaries,
                to_xyz(origin),
                max_c2,
                admits,
                true,
            )
            .map(move |(b, c2)| (b * tree::FANOUT..((b + 1) * tree::FANOUT).min(n), c2))
    }

    /// Whether the source of place `pi` may be offered at `now`.
    pub(crate) fn is_fresh(&self, pi: usize, now: i64) -> bool {
        self.source_list[self.place_sources[pi] as usize].is_fresh(now)
    }

    /// Whether the keys of `class` ([`Attrs::class`]) are in [`Snapshot::by_class`].
    pub(crate) fn is_rare(&self, class: u16) -> bool {
        class_bit(&self.rare, class)
    }

    /// The keys of place `pi`, by start.
    pub(crate) fn keys_of(&self, pi: usize) -> &[SlotKey] {
        let h = self.points[pi];
        &self.keys[h.first as usize..h.end as usize]
    }
}

/// Whether `class`'s bit is set in `bits` (one bit per [`Attrs::class`]).
fn class_bit(bits: &[u64; CLASSES / 64], class: u16) -> bool {
    usize::from(class) < CLASSES && bits[usize::from(class) / 64] & 1 << (class % 64) != 0
}

/// Words of [`SlotIndex::taken_bits`]: 2^14 × 64 = 2^20 bits (128 KiB), so that with thousands
/// of held or booked slots the bit of a free slot is almost always clear.
const TAKEN_WORDS: usize = 1 << 14;

/// The word and bit of `slot_id` in [`SlotIndex::taken_bits`] (Fibonacci hashing: ids are
/// consecutive integers, their products spread over the top bits).
fn taken_bit(slot_id: i64) -> (usize, u64) {
    let h = (slot_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - 20);
    ((h / 64) as usize, 1 << (h % 64))
}

/// The operator-state changes this node made itself since the last [`sync`] round began
/// (tracked once a sync has run). A sync round reads slot rows, then sets the overlay from
/// them; a change this node committed and marked in between is newer than what that round
/// read, so the round leaves the slot alone and reads it again on its next tick
/// ([`SlotIndex::sync_mark`]).
#[derive(Debug, Default)]
struct LocalMarks {
    track: bool,
    /// Counts the marks made.
    generation: u64,
    /// slot id → the generation of its last mark.
    slots: HashMap<i64, u64>,
}

impl LocalMarks {
    fn note(&mut self, slot_id: i64) {
        if self.track {
            self.generation += 1;
            self.slots.insert(slot_id, self.generation);
        }
    }
}

/// The live index: the current snapshot plus operator state.
pub struct SlotIndex {
    snapshot: ArcSwap<Snapshot>,
    /// slot id → unavailable until (epoch seconds; `i64::MAX` when booked). Looked up for every
    /// matching slot a search visits, hence the fast integer hash (ids are not attacker-chosen).
    taken: DashMap<i64, i64, FxBuildHasher>,
    /// One bit per hash of the slot ids in `taken` ([`taken_bit`]): a search asks the map only
    /// about slots whose bit is set, so the free slots it visits (nearly all) cost one read of
    /// a small array instead of a map look-up. A bit may be set for a slot that is free (ids
    /// sharing it, or freed since), never clear for one in `taken`.
    taken_bits: Box<[AtomicU64]>,
    /// Serialises the writers of `taken` and `taken_bits`, and keeps what [`sync`] must not
    /// undo: see [`LocalMarks`].
    taken_write: std::sync::Mutex<LocalMarks>,
    writer: std::sync::Mutex<()>,
    /// Held while a source's entries are rebuilt after its snapshot committed (see
    /// [`load::reload_source_from_feed`]), so two reloads of this index never interleave.
    reload: std::sync::Mutex<()>,
    /// Source id → the snapshot sequence its entries were read at (see [`load`]): what
    /// [`sync`] compares with the database's to find the sources another node refreshed.
    source_seqs: std::sync::Mutex<HashMap<i64, i64>>,
    /// Source id → snapshots this node is storing and will install itself (see
    /// [`SlotIndex::storing`]): [`sync`] leaves those sources alone meanwhile.
    storing: std::sync::Mutex<HashMap<i64, usize>>,
}

/// A snapshot this node is storing (see [`SlotIndex::storing`]); dropped once it is installed
/// or has failed.
pub struct Storing<'a> {
    index: &'a SlotIndex,
    source_id: i64,
}

impl Drop for Storing<'_> {
    fn drop(&mut self) {
        let mut storing = self.index.storing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = storing.get_mut(&self.source_id) {
            *n -= 1;
            if *n == 0 {
                storing.remove(&self.source_id);
            }
        }
    }
}

impl Default for SlotIndex {
    fn default() -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            taken: DashMap::default(),
            taken_bits: (0..TAKEN_WORDS).map(|_| AtomicU64::new(0)).collect(),
            taken_write: Default::default(),
            writer: Default::default(),
            reload: Default::default(),
            source_seqs: Default::default(),
            storing: Default::default(),
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

    /// The snapshot sequence of `source_id` the index shows (0: none of its snapshots).
    pub fn source_seq(&self, source_id: i64) -> i64 {
        let seqs = self.source_seqs.lock().unwrap_or_else(|e| e.into_inner());
        seqs.get(&source_id).copied().unwrap_or(0)
    }

    /// Marks a snapshot of `source_id` as being stored by this node, from before its write
    /// transaction until it is installed: between its commit and its install, the database's
    /// sequence is ahead of the index's, and [`sync`] would otherwise read the whole source
    /// back (seconds for a large one) while this node installs it from the feed.
    pub fn storing(&self, source_id: i64) -> Storing<'_> {
        *self
            .storing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(source_id)
            .or_insert(0) += 1;
        Storing {
            index: self,
            source_id,
        }
    }

    /// Whether this node is storing a snapshot of `source_id` ([`Self::storing`]).
    pub fn is_storing(&self, source_id: i64) -> bool {
        self.storing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&source_id)
    }

    /// Records that the index shows snapshot `seq` of `source_id` (or a later one: a reader of
    /// the source row before its slots may name an older sequence than the rows it read, never
    /// a newer one). Sequences only go up.
    pub fn note_source_seq(&self, source_id: i64, seq: i64) {
        let mut seqs = self.source_seqs.lock().unwrap_or_else(|e| e.into_inner());
        let known = seqs.entry(source_id).or_insert(seq);
        *known = (*known).max(seq);
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
        let previous = self.snapshot.swap(Arc::new(Snapshot::new(all, sources)));
        drop(old);
        // The new snapshot is in place: the replaced entries (a million slots for a large
        // source) are freed on another thread instead of delaying the writer's answer.
        let _ = std::thread::Builder::new()
            .name("snapshot-free".into())
            .spawn(move || drop(previous));
    }

    /// Marks a slot unavailable until `until` (a hold) or for good (`i64::MAX`, booked).
    pub fn mark_taken(&self, slot_id: i64, until: i64) {
        let mut w = self.taken_write.lock().unwrap_or_else(|e| e.into_inner());
        w.note(slot_id);
        self.set_taken(slot_id, until);
    }

    /// The caller holds `taken_write`.
    fn set_taken(&self, slot_id: i64, until: i64) {
        // the bit first: a search that finds the entry always finds its bit
        self.set_taken_bit(slot_id);
        self.taken.insert(slot_id, until);
    }

    /// The generation of this node's marks so far, taken by a [`sync`] round before it reads
    /// slot rows (and from then on, this node's marks are tracked).
    pub fn local_generation(&self) -> u64 {
        let mut w = self.taken_write.lock().unwrap_or_else(|e| e.into_inner());
        w.track = true;
        w.generation
    }

    /// Sets a slot's operator state as a [`sync`] round read it (`until`: `None` free, else
    /// taken until then), unless this node marked the slot after `generation` (the round's
    /// [`Self::local_generation`]): then returns `false` and changes nothing.
    pub fn sync_mark(&self, slot_id: i64, until: Option<i64>, generation: u64) -> bool {
        let w = self.taken_write.lock().unwrap_or_else(|e| e.into_inner());
        if w.slots.get(&slot_id).is_some_and(|g| *g > generation) {
            return false;
        }
        match until {
            Some(until) => self.set_taken(slot_id, until),
            None => {
                if self.taken.remove(&slot_id).is_some() {
                    self.rebuild_taken_bits();
                }
            }
        }
        true
    }

    /// Forgets the marks up to `generation`: the [`sync`] round that took it has ended, so
    /// every later round reads rows at least as new as them.
    pub fn forget_local_marks(&self, generation: u64) {
        let mut w = self.taken_write.lock().unwrap_or_else(|e| e.into_inner());
        w.slots.retain(|_, g| *g > generation);
    }

    fn set_taken_bit(&self, slot_id: i64) {
        let (word, bit) = taken_bit(slot_id);
        self.taken_bits[word].fetch_or(bit, Ordering::Release);
    }

    /// Makes a slot available again (hold released, appointment cancelled).
    pub fn mark_free(&self, slot_id: i64) {
        let mut w = self.taken_write.lock().unwrap_or_else(|e| e.into_inner());
        w.note(slot_id);
        if self.taken.remove(&slot_id).is_some() {
            self.rebuild_taken_bits();
        }
    }

    /// Whether a slot is held or booked at `now`.
    pub fn is_taken(&self, slot_id: i64, now: i64) -> bool {
        let (word, bit) = taken_bit(slot_id);
        self.taken_bits[word].load(Ordering::Acquire) & bit != 0
            && self.taken.get(&slot_id).is_some_and(|u| *u > now)
    }

    /// Drops expired holds from the overlay (they already no longer count).
    pub fn sweep(&self, now: i64) -> usize {
        let _w = self.taken_write.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.taken.len();
        self.taken.retain(|_, until| *until > now);
        let dropped = before - self.taken.len();
        if dropped > 0 {
            self.rebuild_taken_bits();
        }
        dropped
    }

    /// Sets `taken_bits` to exactly the bits of `taken` (the caller holds `taken_write`).
    /// Word by word: a search reading a word meanwhile sees the old or the new one, and both
    /// hold the bits of every slot still taken.
    fn rebuild_taken_bits(&self) {
        let mut words = vec![0u64; TAKEN_WORDS];
        for e in self.taken.iter() {
            let (word, bit) = taken_bit(*e.key());
            words[word] |= bit;
        }
        for (a, w) in self.taken_bits.iter().zip(words) {
            a.store(w, Ordering::Release);
        }
    }

    /// Replaces the operator-state overlay (start-up, or resynchronisation with the database).
    pub fn reset_taken(&self, entries: impl IntoIterator<Item = (i64, i64)>) {
        let fresh: Vec<(i64, i64)> = entries.into_iter().collect();
        let _w = self.taken_write.lock().unwrap_or_else(|e| e.into_inner());
        for (k, _) in &fresh {
            self.set_taken_bit(*k);
        }
        self.taken.clear();
        for (k, v) in fresh {
            self.taken.insert(k, v);
        }
        self.rebuild_taken_bits();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync round's read never undoes a mark this node made after the round began; marks
    /// made before it, and the round's reads of other slots, apply; a round that ended lets
    /// the next one set the slot.
    #[test]
    fn a_sync_round_never_undoes_a_newer_local_mark() {
        let index = SlotIndex::default();
        index.mark_taken(1, 500); // before any sync: not tracked
        let round = index.local_generation();
        // read by the round: slot 1 free, slot 2 held until 900; meanwhile this node holds 1
        index.mark_taken(1, 700);
        assert!(!index.sync_mark(1, None, round), "the local hold is newer");
        assert!(index.is_taken(1, 600));
        assert!(index.sync_mark(2, Some(900), round));
        assert!(index.is_taken(2, 800));
        index.forget_local_marks(round);
        // the next round reads slot 1 again (held until 700) and may set it
        let next = index.local_generation();
        assert!(index.sync_mark(1, Some(700), next));
        index.forget_local_marks(next);
        // a local release after a round began is kept against that round's "held"
        let third = index.local_generation();
        index.mark_free(2);
        assert!(!index.sync_mark(2, Some(900), third));
        assert!(!index.is_taken(2, 800));
        index.forget_local_marks(third);
        assert!(index.sync_mark(2, None, index.local_generation()));
    }

    /// `is_taken` answers as the plain map would, whatever was marked, freed, swept or reset
    /// (ids in a range much wider than the taken set: most bits clear, some shared).
    #[test]
    fn the_taken_bits_never_hide_a_taken_slot_and_free_slots_stay_free() {
        let index = SlotIndex::default();
        let mut expected: HashMap<i64, i64> = HashMap::new();
        let check = |index: &SlotIndex, expected: &HashMap<i64, i64>, now: i64| {
            for id in -50..300_000i64 {
                let want = expected.get(&id).is_some_and(|u| *u > now);
                assert_eq!(index.is_taken(id, now), want, "slot {id} at {now}");
            }
        };
        for id in (0..200_000).step_by(97) {
            let until = if id % 2 == 0 {
                i64::MAX
            } else {
                1_000 + id % 500
            };
            index.mark_taken(id, until);
            expected.insert(id, until);
        }
        check(&index, &expected, 1_000);
        for id in (0..200_000).step_by(97 * 3) {
            index.mark_free(id);
            expected.remove(&id);
        }
        index.mark_free(5); // never taken
        check(&index, &expected, 1_000);
        let dropped = index.sweep(1_250);
        let before = expected.len();
        expected.retain(|_, u| *u > 1_250);
        assert_eq!(dropped, before - expected.len());
        check(&index, &expected, 1_250);
        let fresh: Vec<(i64, i64)> = (0..1_000).map(|k| (k * 301 + 7, i64::MAX)).collect();
        index.reset_taken(fresh.clone());
        expected = fresh.into_iter().collect();
        check(&index, &expected, 1_250);
    }
}
