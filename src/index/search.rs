//! Nearest-free-slot search on a snapshot: no database, no allocation per visited slot.
//!
//! Places come out of the place tree by increasing great-circle distance, whole neighbourhoods
//! that cannot match the filters skipped on their summaries; for each place, the slots in the
//! time window are found by binary search in its compact keys and filtered on their packed
//! attributes, the slot itself is only read for a hit. The radius starts at the
//! department's default and grows by its step up to a cap until `limit` results are found; the
//! answer says how far it went.

use super::{
    Attrs, CODE_OVERFLOW, CodeBits, PlaceEntry, PlaceSummary, SlotEntry, SlotIndex, SlotKey,
    Snapshot, TimeKey, hour_mask, mode_bit,
};
use crate::domain::LatLon;
use crate::domain::slot::Modality;
use std::sync::Arc;

/// Whether surnuméraire (extra) slots are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Surnumeraire {
    #[default]
    Include,
    Only,
    Exclude,
}

/// Result order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Distance, then start.
    #[default]
    Distance,
    /// Start, then distance (within the radius reached).
    Soonest,
    /// Distance buckets of [`NEUTRAL_BUCKET_M`], shuffled within each bucket.
    Neutral,
}

/// Width of the equal-distance buckets shuffled by [`Order::Neutral`].
pub const NEUTRAL_BUCKET_M: f64 = 1000.0;

/// Radius policy: start, step, cap (metres).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radius {
    pub base_m: f64,
    pub step_m: f64,
    pub max_steps: u32,
}

impl Radius {
    pub fn cap_m(&self) -> f64 {
        self.base_m + self.step_m * f64::from(self.max_steps)
    }
    /// The radius after `k` enlargements.
    pub fn at(&self, k: u32) -> f64 {
        self.base_m + self.step_m * f64::from(k)
    }
    /// The smallest number of enlargements whose radius covers `d`.
    pub fn steps_for(&self, d: f64) -> u32 {
        if d <= self.base_m || self.step_m <= 0.0 {
            0
        } else {
            (((d - self.base_m) / self.step_m).ceil() as u32).min(self.max_steps)
        }
    }
}

/// What to look for.
#[derive(Debug, Clone)]
pub struct Query {
    pub origin: LatLon,
    pub radius: Radius,
    /// Start window `[from, to)`, epoch seconds. `from` is raised to `now`.
    pub from: i64,
    pub to: i64,
    pub now: i64,
    pub profession: Option<String>,
    pub specialty: Option<String>,
    /// Accepted modalities (empty: all).
    pub modalities: Vec<Modality>,
    pub surnumeraire: Surnumeraire,
    pub limit: usize,
    pub order: Order,
    /// Seed of the neutral shuffle.
    pub seed: u64,
}

/// One result, borrowed from the snapshot searched.
#[derive(Debug, Clone)]
pub struct Hit<'s> {
    pub place: &'s Arc<PlaceEntry>,
    pub slot: usize,
    pub distance_m: f64,
    /// The slot's start, copied from its key: sorting hits then reads no slot entry (each
    /// would be a cache miss through the place).
    pub start: i64,
}

impl Hit<'_> {
    pub fn slot(&self) -> &SlotEntry {
        &self.place.slots[self.slot]
    }
}

/// The answer.
#[derive(Debug, Clone)]
pub struct Found<'s> {
    pub hits: Vec<Hit<'s>>,
    /// Radius finally used, metres.
    pub radius_m: f64,
    /// Enlargement steps taken (0 = the default radius sufficed).
    pub steps: u32,
    /// Matching slots found within the base radius (before enlargement), counting at most
    /// `limit` per place (no more can be shown); zero means "nothing at the default radius".
    pub within_base: usize,
}

fn matches(q: &Query, s: &SlotEntry) -> bool {
    s.offered
        && s.audience.visible_to_operators()
        && match q.surnumeraire {
            Surnumeraire::Include => true,
            Surnumeraire::Only => s.surnumeraire,
            Surnumeraire::Exclude => !s.surnumeraire,
        }
        && (q.modalities.is_empty() || q.modalities.contains(&s.modality))
        && q.profession
            .as_deref()
            .is_none_or(|p| s.provider.profession.as_deref() == Some(p))
        && q.specialty
            .as_deref()
            .is_none_or(|p| s.provider.specialty.as_deref() == Some(p))
}

/// The query's filters as masks over [`PlaceSummary`] (a place failing them holds no match)
/// and over slot [`Attrs`].
#[derive(Clone)]
pub(crate) struct PlaceFilter {
    modalities: u8,
    surnumeraire: u8,
    profession: u64,
    specialty: u64,
    /// [`mode_bit`]s of the wanted code with each wanted modality (0: no such filter).
    profession_modes: u64,
    specialty_modes: u64,
    /// Code ids wanted (0: any).
    profession_id: u8,
    specialty_id: u8,
    /// The attributes decide the match alone (no wanted code shares the overflow id).
    exact: bool,
    from: i64,
    to: i64,
    /// A filter names a code no slot has: nothing can match.
    impossible: bool,
    /// Every source of the snapshot is fresh (no per-place check needed).
    all_fresh: bool,
    /// [`hour_mask`] of `[from, to)` and its origin.
    hours: u64,
    time_base: i64,
    /// A profession is named and its classes of the wanted modalities are rare: their keys
    /// are in [`Snapshot::by_class`].
    rare: bool,
}

impl PlaceFilter {
    pub(crate) fn new(snap: &Snapshot, q: &Query, from: i64) -> Self {
        let code = |bits: &CodeBits, c: &Option<String>| match c {
            None => Some(0),
            Some(c) => bits.get(c),
        };
        let profession = code(&snap.professions, &q.profession);
        let specialty = code(&snap.specialties, &q.specialty);
        let (profession_id, specialty_id) = (profession.unwrap_or(0), specialty.unwrap_or(0));
        let modalities = if q.modalities.is_empty() {
            u8::MAX
        } else {
            q.modalities.iter().fold(0, |m, x| m | 1 << *x as u8)
        };
        let modes = |id: u8| match id {
            0 => 0,
            id => (0..3)
                .filter(|m| modalities & 1 << m != 0)
                .fold(0, |acc, m| acc | mode_bit(id, m)),
        };
        PlaceFilter {
            modalities,
            profession_modes: modes(profession_id),
            specialty_modes: modes(specialty_id),
            surnumeraire: match q.surnumeraire {
                Surnumeraire::Include => 0b11,
                Surnumeraire::Only => 0b10,
                Surnumeraire::Exclude => 0b01,
            },
            profession: CodeBits::bit(profession_id),
            specialty: CodeBits::bit(specialty_id),
            profession_id,
            specialty_id,
            exact: profession_id != CODE_OVERFLOW && specialty_id != CODE_OVERFLOW,
            from,
            to: q.to,
            impossible: profession.is_none() || specialty.is_none() || from >= q.to,
            all_fresh: snap.source_list.len() <= 64
                && snap.source_list.iter().all(|s| s.is_fresh(q.now)),
            hours: hour_mask(snap.time_base, from, q.to),
            time_base: snap.time_base,
            rare: profession_id != 0
                && (0..3u16).all(|m| {
                    modalities & 1 << m == 0 || snap.is_rare(1 << m << 8 | u16::from(profession_id))
                }),
        }
    }

    /// The same filter for starts in `[from, to)`.
    fn within(&self, from: i64, to: i64) -> PlaceFilter {
        PlaceFilter {
            from,
            to,
            hours: hour_mask(self.time_base, from, to),
            ..self.clone()
        }
    }

    fn admits(&self, p: &PlaceSummary) -> bool {
        self.admits_before(p, self.to, self.hours)
    }

    /// [`Self::admits`] with starts before `to` instead of [`Self::to`] (`hours` its mask).
    fn admits_before(&self, p: &PlaceSummary, to: i64, hours: u64) -> bool {
        p.modalities & self.modalities != 0
            && p.surnumeraire & self.surnumeraire != 0
            && (self.profession == 0 || p.professions & self.profession != 0)
            && (self.specialty == 0 || p.specialties & self.specialty != 0)
            && (self.profession_modes == 0 || p.profession_modes & self.profession_modes != 0)
            && (self.specialty_modes == 0 || p.specialty_modes & self.specialty_modes != 0)
            && p.first_start < to
            && p.last_start >= self.from
            && (0..3).any(|m| self.modalities & 1 << m != 0 && p.hours[m] & hours != 0)
    }

    /// Whether a slot with these attributes matches (with [`Self::exact`]; otherwise it may).
    fn admits_slot(&self, a: Attrs) -> bool {
        a.modalities() & self.modalities != 0
            && a.surnumeraire() & self.surnumeraire != 0
            && (self.profession_id == 0 || a.profession() == self.profession_id)
            && (self.specialty_id == 0 || a.specialty() == self.specialty_id)
    }

    /// Sets `parts` to the keys of `group` (the keys of [`Snapshot::by_class`] starting at one
    /// instant) of this filter's classes ([`Self::rare`]): one slice per wanted modality, each
    /// sorted by place.
    fn classes_of<'g>(&self, group: &'g [TimeKey], parts: &mut Vec<&'g [TimeKey]>) {
        parts.clear();
        for m in 0..3u16 {
            if self.modalities & 1 << m == 0 {
                continue;
            }
            let class = 1 << m << 8 | u16::from(self.profession_id);
            let a = group.partition_point(|e| e.attrs.class() < class);
            let b = a + group[a..].partition_point(|e| e.attrs.class() == class);
            if b > a {
                parts.push(&group[a..b]);
            }
        }
    }

    /// Whether the source of place `pi` may be offered.
    fn fresh(&self, snap: &Snapshot, pi: usize, now: i64) -> bool {
        self.all_fresh || snap.is_fresh(pi, now)
    }

    /// Whether slot `s` with attributes `a` matches the query (offered and visible: it has a key).
    fn matches<'e>(&self, q: &Query, a: Attrs, s: impl FnOnce() -> &'e SlotEntry) -> bool {
        self.admits_slot(a) && (self.exact || matches(q, s()))
    }
}

/// How much of the time index (entries, and [`BLOCK_WORK`] per block looked up) a `soonest`
/// query may examine before it visits the places within the radius instead
/// ([`soonest_by_places`]; dense time ranges far from the patient).
pub const SOONEST_SCAN_CAP: usize = 100_000;

/// Instants at which the time scan looked up every block within the radius and still lacks
/// slots after which it visits the places instead, when at the rate found so far more than as
/// many instants again would be needed (a sparse filter: one or no slot per instant near the
/// patient).
const SPARSE_INSTANTS: usize = 2;

/// Runs `q` on `snap`, skipping slots `index` knows to be held or booked.
///
/// The radius is always decided by distance: the smallest step that holds `limit` matching
/// slots (or the cap). `distance` and `neutral` orders then take the nearest; `soonest` takes
/// the earliest-starting within that radius, found by scanning slots in start order, or, when
/// that finds too few too slowly, by visiting the places within the radius.
pub fn search<'s>(snap: &'s Snapshot, index: &SlotIndex, q: &Query) -> Found<'s> {
    let from = q.from.max(q.now + 1);
    let cap = q.radius.cap_m();
    let limit = q.limit.max(1);
    // Ranked by distance then start, a place never puts more than `limit` slots in the answer
    // (nor moves the `limit`-th distance that decides the radius); the neutral order shuffles
    // whole distance buckets, so it keeps them all.
    let per_place = match q.order {
        Order::Neutral => usize::MAX,
        Order::Distance | Order::Soonest => limit,
    };
    let filter = PlaceFilter::new(snap, q, from);
    let mut hits = nearest_hits(snap, index, q, &filter, cap, limit, per_place);
    let within_base = hits
        .iter()
        .filter(|h| h.distance_m <= q.radius.base_m)
        .count();
    let steps = if hits.len() >= limit {
        let mut ds: Vec<f64> = hits.iter().map(|h| h.distance_m).collect();
        ds.sort_by(f64::total_cmp);
        q.radius.steps_for(ds[limit - 1])
    } else {
        q.radius.max_steps
    };
    let radius_m = q.radius.at(steps);
    hits.retain(|h| h.distance_m <= radius_m);
    let by_distance = |a: &Hit, b: &Hit| {
        a.distance_m
            .total_cmp(&b.distance_m)
            .then(a.start.cmp(&b.start))
    };
    match q.order {
        Order::Distance => hits.sort_by(by_distance),
        Order::Neutral => {
            hits.sort_by(by_distance);
            // keep whole buckets: the last bucket is shuffled before the cut
            shuffle_buckets(&mut hits, q.seed);
        }
        Order::Soonest => {
            hits = soonest(
                snap,
                index,
                q,
                &filter,
                radius_m,
                limit,
                TIE_SCAN_MAX,
                SOONEST_SCAN_CAP,
            );
            hits.sort_by(|a, b| {
                a.start
                    .cmp(&b.start)
                    .then(a.distance_m.total_cmp(&b.distance_m))
            });
        }
    }
    hits.truncate(limit);
    Found {
        hits,
        radius_m,
        steps,
        within_base,
    }
}

/// The matching slots of the places nearest `q.origin` within `cap` metres (at most
/// `per_place` per place), place after place until `limit` are in, then the places at that
/// same distance (or, in neutral order, to the end of that distance bucket).
fn nearest_hits<'s>(
    snap: &'s Snapshot,
    index: &SlotIndex,
    q: &Query,
    filter: &PlaceFilter,
    cap: f64,
    limit: usize,
    per_place: usize,
) -> Vec<Hit<'s>> {
    let mut hits = Vec::with_capacity(2 * limit);
    if filter.impossible {
        return hits;
    }
    let mut bound = cap;
    for (pi, c2) in snap.nearest_admitted(q.origin, reach_c2(cap), |s| filter.admits(s)) {
        let d = super::chord2_to_m(c2);
        if d > bound {
            break;
        }
        scan_place(snap, pi, d, filter, q, index, per_place, &mut hits);
        if hits.len() >= limit && bound == cap {
            bound = match q.order {
                Order::Neutral => ((d / NEUTRAL_BUCKET_M).floor() + 1.0) * NEUTRAL_BUCKET_M,
                Order::Distance | Order::Soonest => d,
            };
        }
    }
    hits
}

/// Entries starting with the `limit`-th soonest hit that [`soonest_within`] still scans one by
/// one; beyond, the nearest slots starting then are found place by place instead.
const TIE_SCAN_MAX: usize = 256;

/// The matching slots within `radius_m` that may be among the `limit` soonest (the caller
/// sorts by start then distance and cuts): the time scan ([`soonest_within`]) up to `budget`,
/// then the places within the radius ([`soonest_by_places`]) for the starts it did not reach.
#[allow(clippy::too_many_arguments)]
fn soonest<'s>(
    snap: &'s Snapshot,
    index: &SlotIndex,
    q: &Query,
    filter: &PlaceFilter,
    radius_m: f64,
    limit: usize,
    tie_scan_max: usize,
    budget: usize,
) -> Vec<Hit<'s>> {
    match soonest_within(
        snap,
        index,
        q,
        filter,
        radius_m,
        limit,
        tie_scan_max,
        budget,
    ) {
        Scan::Done(hits) => hits,
        Scan::Unfinished { mut hits, next } => {
            let want = limit - hits.len();
            let rest = filter.within(next, filter.to);
            soonest_by_places(snap, index, q, &rest, radius_m, want, &mut hits);
            hits
        }
    }
}

/// What the time scan of [`soonest_within`] found.
enum Scan<'s> {
    /// Every matching slot that may be among the `limit` soonest (and maybe a few more).
    Done(Vec<Hit<'s>>),
    /// Over budget: every matching slot starting before `next` (fewer than `limit`); the
    /// others start at `next` or later.
    Unfinished { hits: Vec<Hit<'s>>, next: i64 },
}

/// The matching slots within `radius_m` that start before the `limit`-th earliest or with it
/// (the caller sorts by start then distance and cuts), instant by instant in start order: the
/// few slots starting at an instant are checked one by one, the many (more than
/// `tie_scan_max`) looked up block by block nearest first ([`nearest_starting_at`]); stops
/// [`Scan::Unfinished`] at the instant where more than `budget` work would have been done.
#[allow(clippy::too_many_arguments)]
fn soonest_within<'s>(
    snap: &'s Snapshot,
    index: &SlotIndex,
    q: &Query,
    filter: &PlaceFilter,
    radius_m: f64,
    limit: usize,
    tie_scan_max: usize,
    budget: usize,
) -> Scan<'s> {
    if filter.impossible {
        return Scan::Done(Vec::new());
    }
    let origin = super::to_xyz(q.origin);
    let max_c2 = super::m_to_chord2(radius_m);
    // the rare classes' own keys, split by class at each instant, or all keys by place
    let keys = if filter.rare {
        &snap.by_class
    } else {
        &snap.by_start
    };
    let mut pos = keys.partition_point(|e| e.start < filter.from);
    let mut hits: Vec<Hit> = Vec::with_capacity(limit);
    let mut work = 0;
    let mut sparse = 0;
    let reach = Reach32::new(origin, max_c2);
    let (mut parts, mut many) = (Vec::new(), Vec::new());
    let mut near: Vec<(f64, &TimeKey)> = Vec::new();
    while let Some(first) = keys.get(pos) {
        let at = first.start;
        if at >= filter.to {
            break;
        }
        let rest = &keys[pos..];
        let group = &rest[..gallop(rest, |e| e.start == at)];
        let want = limit - hits.len();
        let before = hits.len();
        // the entries of the wanted classes (a few, scanned one by one; many, looked up
        // block by block)
        if filter.rare && group.len() > tie_scan_max {
            filter.classes_of(group, &mut parts);
        } else {
            parts.clear();
            parts.push(group);
        }
        many.clear();
        near.clear();
        for &part in &parts {
            if part.len() > tie_scan_max {
                many.push(part);
                continue;
            }
            if work + part.len() > budget {
                hits.truncate(before);
                return Scan::Unfinished { hits, next: at };
            }
            work += part.len();
            for e in part {
                if !filter.admits_slot(e.attrs) || !reach.may_hold(e.xyz) {
                    continue;
                }
                let pi = e.place as usize;
                let p = snap.points[pi].xyz;
                let c2 = (p[0] - origin[0]).powi(2)
                    + (p[1] - origin[1]).powi(2)
                    + (p[2] - origin[2]).powi(2);
                if c2 <= max_c2 && filter.fresh(snap, pi, q.now) {
                    near.push((c2, e));
                }
            }
        }
        // only the `want` nearest of them that match and are free can be kept
        let mut rest = &mut near[..];
        let mut kept = 0;
        while kept < want && !rest.is_empty() {
            let k = (want - kept).min(rest.len());
            if k < rest.len() {
                rest.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
            }
            let (nearest, farther) = rest.split_at_mut(k);
            for &mut (c2, e) in nearest {
                let place = &snap.places[e.place as usize];
                let key = &snap.keys[e.key as usize];
                if filter.matches(q, e.attrs, || &place.slots[key.slot as usize])
                    && !index.is_taken(key.id, q.now)
                {
                    hits.push(Hit {
                        place,
                        slot: key.slot as usize,
                        distance_m: super::chord2_to_m(c2),
                        start: key.start,
                    });
                    kept += 1;
                }
            }
            rest = farther;
        }
        if !many.is_empty() {
            let near = nearest_starting_at(
                snap, index, q, filter, radius_m, &many, want, &mut work, budget,
            );
            let Some(near) = near else {
                hits.truncate(before);
                return Scan::Unfinished { hits, next: at };
            };
            hits.extend(near);
            if hits.len() < limit {
                // every block within the radius looked up for too few slots
                sparse += 1;
                // at this rate, more than SPARSE_INSTANTS more would be needed
                if sparse >= SPARSE_INSTANTS
                    && (limit - hits.len()) * sparse > SPARSE_INSTANTS * hits.len()
                {
                    return Scan::Unfinished { hits, next: at + 1 };
                }
            }
        }
        pos += group.len();
        if hits.len() >= limit {
            return Scan::Done(hits);
        }
    }
    Scan::Done(hits)
}

/// `items.partition_point(pred)`, searched from the front by doubling steps: cheaper than a
/// binary search when the answer is near the start — an instant's few slots, or a place's first
/// key from a window that starts now (at or before it): the first probe then answers instead
/// of a binary search's ≈ 5 dependent reads across the place's keys.
fn gallop<T>(items: &[T], pred: impl Fn(&T) -> bool) -> usize {
    let mut end = 1;
    while end <= items.len() && pred(&items[end - 1]) {
        end *= 2;
    }
    // items[..end / 2] all satisfy `pred`; items[end - 1], if any, does not
    let (lo, hi) = (end / 2, end.min(items.len()));
    lo + items[lo..hi].partition_point(pred)
}

/// The `want` nearest matching slots within `radius_m` among `group` (the time index's
/// entries starting at one instant, sorted by place), more when several tie in distance with
/// the last: blocks of places by increasing distance, each block's entries found by binary
/// search, until the next block is farther than the `want`-th slot found. Adds the entries and
/// blocks examined to `work`; `None` as soon as that exceeds `budget`.
#[allow(clippy::too_many_arguments)]
fn nearest_starting_at<'s>(
    snap: &'s Snapshot,
    index: &SlotIndex,
    q: &Query,
    filter: &PlaceFilter,
    radius_m: f64,
    parts: &[&[TimeKey]],
    want: usize,
    work: &mut usize,
    budget: usize,
) -> Option<Vec<Hit<'s>>> {
    let origin = super::to_xyz(q.origin);
    let max_c2 = super::m_to_chord2(radius_m);
    let at = parts[0][0].start;
    let when = filter.within(at, at + 1);
    let reach = Reach32::new(origin, max_c2);
    let mut found: Vec<(f64, Hit)> = Vec::new();
    let mut c2s: Vec<f64> = Vec::new();
    // the `want`-th smallest chord² found, as of `found.len() == counted`
    let (mut kth, mut counted) = (f64::INFINITY, 0);
    for (places, lb) in snap.nearest_blocks(q.origin, reach_c2(radius_m), |s| when.admits(s)) {
        if found.len() >= want && found.len() != counted {
            c2s.clear();
            c2s.extend(found.iter().map(|f| f.0));
            kth = *c2s.select_nth_unstable_by(want - 1, f64::total_cmp).1;
            counted = found.len();
        }
        if lb > kth {
            break;
        }
        *work += BLOCK_WORK;
        if *work > budget {
            return None;
        }
        for group in parts {
            let first = first_of_place(group, places.start);
            for e in &group[first..] {
                let pi = e.place as usize;
                if pi >= places.end {
                    break;
                }
                *work += 1;
                if !when.admits_slot(e.attrs) || !reach.may_hold(e.xyz) {
                    continue;
                }
                let p = snap.points[pi].xyz;
                let c2 = (p[0] - origin[0]).powi(2)
                    + (p[1] - origin[1]).powi(2)
                    + (p[2] - origin[2]).powi(2);
                if c2 > max_c2 || !when.fresh(snap, pi, q.now) {
                    continue;
                }
                let place = &snap.places[pi];
                let key = &snap.keys[e.key as usize];
                if when.matches(q, e.attrs, || &place.slots[key.slot as usize])
                    && !index.is_taken(key.id, q.now)
                {
                    let hit = Hit {
                        place,
                        slot: key.slot as usize,
                        distance_m: super::chord2_to_m(c2),
                        start: key.start,
                    };
                    found.push((c2, hit));
                }
            }
        }
    }
    Some(found.into_iter().map(|f| f.1).collect())
}

/// The index of the first entry of `part` (sorted by place) whose place is `place` or after:
/// a guess in proportion to the place numbers, then a search outwards from it (places hold
/// similar numbers of slots, so the guess is usually a few entries off; at worst this costs
/// twice a binary search).
fn first_of_place(part: &[TimeKey], place: usize) -> usize {
    let below = |i: usize| (part[i].place as usize) < place;
    let n = part.len();
    if n == 0 || !below(0) {
        return 0;
    }
    if below(n - 1) {
        return n;
    }
    // below(0), !below(n - 1): the answer is in 1..n
    let (lo, hi) = (part[0].place as usize, part[n - 1].place as usize);
    let guess = ((place - lo) as u64 * n as u64 / (hi - lo + 1) as u64) as usize;
    let guess = guess.clamp(1, n - 1);
    // widen [a, b] around the guess until below(a) and !below(b)
    let (mut a, mut b) = (guess - 1, guess);
    let mut step = 1;
    if below(guess) {
        a = guess;
        b = guess;
        while below(b) {
            a = b;
            b = (b + step).min(n - 1);
            step *= 2;
        }
    } else {
        while !below(a) {
            b = a;
            a = a.saturating_sub(step);
            step *= 2;
        }
    }
    a + 1 + part[a + 1..b].partition_point(|e| (e.place as usize) < place)
}

/// A test on the time index's rounded points ([`TimeKey::xyz`]) that never rejects a place
/// within the squared chord `max_c2` of `origin`: `f32` rounding moves each coordinate of a
/// unit vector by less than 6e-8, a difference by less than 1.2e-7 (and 6e-8 of itself), so
/// the chord by less than 3e-7 (and 6e-8 of itself), and the sum of squares by less than
/// 3e-7 of itself; the bound keeps 1e-6 on the chord and 1e-4 on its square.
#[derive(Clone, Copy)]
struct Reach32 {
    origin: [f32; 3],
    max_c2: f32,
}

impl Reach32 {
    fn new(origin: [f64; 3], max_c2: f64) -> Self {
        let c = max_c2.sqrt() + 1e-6;
        Reach32 {
            origin: origin.map(|v| v as f32),
            max_c2: (c * c * (1.0 + 1e-4)) as f32,
        }
    }

    /// Whether the place at `p` may be within the chord (`false`: it is certainly not).
    fn may_hold(&self, p: [f32; 3]) -> bool {
        let o = self.origin;
        (p[0] - o[0]).powi(2) + (p[1] - o[1]).powi(2) + (p[2] - o[2]).powi(2) <= self.max_c2
    }
}

/// What looking a block up costs, in time-index entries (a binary search and a tree step).
const BLOCK_WORK: usize = 16;

/// A squared chord a little beyond `m` metres, so that pruning on it never drops a place
/// that the metre comparison would keep.
fn reach_c2(m: f64) -> f64 {
    super::m_to_chord2(m) * (1.0 + 1e-9) + 1e-18
}

/// Adds to `hits` the matching slots within `radius_m` starting in
/// `[filter.from, filter.to)` that may be among the `want` soonest (the caller sorts by start
/// then distance and cuts): places nearest first, each one's keys in start order up to the
/// `want`-th soonest start found so far, which also narrows the window on which the place
/// tree skips places and whole neighbourhoods. For sparse filters (home visits by a médecin),
/// where the time scan would look up every block within the radius at instant after instant.
fn soonest_by_places<'s>(
    snap: &'s Snapshot,
    index: &SlotIndex,
    q: &Query,
    filter: &PlaceFilter,
    radius_m: f64,
    want: usize,
    hits: &mut Vec<Hit<'s>>,
) {
    if filter.impossible || want == 0 {
        return;
    }
    // Starts of the `want` soonest hits found (a max-heap), and the bound they set on useful
    // starts with its hour mask: places come nearest first, so a later slot starting with the
    // `want`-th would be cut.
    let mut soonest: std::collections::BinaryHeap<i64> =
        std::collections::BinaryHeap::with_capacity(want + 1);
    let cut = std::cell::Cell::new((filter.to, filter.hours));
    let admits = |s: &PlaceSummary| {
        let (to, hours) = cut.get();
        filter.admits_before(s, to, hours)
    };
    for (pi, c2) in snap.nearest_admitted(q.origin, reach_c2(radius_m), admits) {
        let d = super::chord2_to_m(c2);
        if d > radius_m {
            break;
        }
        if !filter.fresh(snap, pi, q.now) {
            continue;
        }
        let keys = snap.keys_of(pi);
        let first = gallop(keys, |k| k.start < filter.from);
        let place = &snap.places[pi];
        for k in &keys[first..] {
            if k.start >= cut.get().0 {
                break;
            }
            if let Some(hit) = offered(place, k, d, filter, q, index) {
                hits.push(hit);
                soonest.push(k.start);
                if soonest.len() > want {
                    soonest.pop();
                }
                if soonest.len() == want {
                    let to = *soonest.peek().expect("want > 0");
                    cut.set((to, hour_mask(filter.time_base, filter.from, to)));
                }
            }
        }
    }
}

/// Adds the first `max` matching, untaken slots of a fresh place starting in
/// `[filter.from, filter.to)`.
#[allow(clippy::too_many_arguments)]
fn scan_place<'s>(
    snap: &'s Snapshot,
    pi: usize,
    d: f64,
    filter: &PlaceFilter,
    q: &Query,
    index: &SlotIndex,
    max: usize,
    hits: &mut Vec<Hit<'s>>,
) {
    if !filter.fresh(snap, pi, q.now) {
        return;
    }
    let keys = snap.keys_of(pi);
    let first = gallop(keys, |k| k.start < filter.from);
    let place = &snap.places[pi];
    let mut added = 0;
    for k in &keys[first..] {
        if k.start >= filter.to || added >= max {
            break;
        }
        if let Some(hit) = offered(place, k, d, filter, q, index) {
            hits.push(hit);
            added += 1;
        }
    }
}

/// Key `k` of `place` (at `d` metres) as a hit, when its slot matches the query and no
/// operator holds or booked it.
#[inline]
fn offered<'s>(
    place: &'s Arc<PlaceEntry>,
    k: &SlotKey,
    d: f64,
    filter: &PlaceFilter,
    q: &Query,
    index: &SlotIndex,
) -> Option<Hit<'s>> {
    if !filter.matches(q, k.attrs, || &place.slots[k.slot as usize]) || index.is_taken(k.id, q.now)
    {
        return None;
    }
    Some(Hit {
        place,
        slot: k.slot as usize,
        distance_m: d,
        start: k.start,
    })
}

/// Shuffles hits within each [`NEUTRAL_BUCKET_M`] distance bucket (hits sorted by distance).
fn shuffle_buckets(hits: &mut [Hit], seed: u64) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut start = 0;
    while start < hits.len() {
        let bucket = (hits[start].distance_m / NEUTRAL_BUCKET_M).floor();
        let end = start
            + hits[start..]
                .iter()
                .take_while(|h| (h.distance_m / NEUTRAL_BUCKET_M).floor() == bucket)
                .count();
        hits[start..end].shuffle(&mut rng);
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::slot::{AudienceSet, LocationPrecision};
    use crate::index::{PlaceEntry, Provider, SlotEntry, SourceMeta};
    use std::collections::HashMap;
    use std::sync::atomic::AtomicI64;

    const NOW: i64 = 1_000_000;

    /// A place of `source` with only a position and its slots.
    fn place(
        id: i64,
        source: &Arc<SourceMeta>,
        position: LatLon,
        slots: Vec<SlotEntry>,
    ) -> Arc<PlaceEntry> {
        Arc::new(PlaceEntry {
            id,
            source: source.clone(),
            position,
            precision: LocationPrecision::Exact,
            name: None,
            address: None,
            postcode: None,
            city: None,
            insee: None,
            slots,
            json: Default::default(),
        })
    }

    fn snapshot() -> (Snapshot, Arc<SourceMeta>) {
        let source = Arc::new(SourceMeta {
            id: 1,
            cpts_id: "c".into(),
            name: "s".into(),
            last_success_at: AtomicI64::new(NOW),
            stale_after_s: 86_400,
        });
        let provider = Arc::new(Provider {
            profession: Some("10".into()),
            ..Default::default()
        });
        let mut id = 0;
        // 60 places on a line eastwards from (47.0, -1.0), 1 km apart, 8 slots each at
        // staggered starts so that the soonest are not the nearest.
        let places = (0..60)
            .map(|k| {
                let slots = (0..8)
                    .map(|j| {
                        id += 1;
                        let start = NOW + 600 + ((k * 37 + j * 911) % 5000) * 60;
                        SlotEntry {
                            id,
                            start,
                            end: start + 1200,
                            modality: if j % 3 == 0 {
                                Modality::HomeVisit
                            } else {
                                Modality::Ambulatory
                            },
                            audience: AudienceSet(0),
                            surnumeraire: j == 7,
                            offered: j != 5,
                            capacity: 1,
                            provider: provider.clone(),
                            external_id: format!("{k}-{j}").into(),
                            booking_url: None,
                            appointment_type: None,
                        }
                    })
                    .collect::<Vec<_>>();
                let mut slots = slots;
                slots.sort_by_key(|s| (s.start, s.id));
                place(
                    k,
                    &source,
                    LatLon::new(47.0, -1.0 + k as f64 * 0.01317).unwrap(),
                    slots,
                )
            })
            .collect();
        (
            Snapshot::new(places, HashMap::from([(1, source.clone())])),
            source,
        )
    }

    fn query(order: Order, limit: usize) -> Query {
        Query {
            origin: LatLon::new(47.0, -1.0).unwrap(),
            radius: Radius {
                base_m: 10_000.0,
                step_m: 5_000.0,
                max_steps: 4,
            },
            from: NOW,
            to: NOW + 72 * 3600,
            now: NOW,
            profession: None,
            specialty: None,
            modalities: vec![],
            surnumeraire: Surnumeraire::Include,
            limit,
            order,
            seed: 1,
        }
    }

    /// Every matching slot within the radius, by brute force.
    fn brute(snap: &Snapshot, index: &SlotIndex, q: &Query, radius: f64) -> Vec<(i64, f64)> {
        let mut all = Vec::new();
        for p in &snap.places {
            let d = q.origin.distance_m(p.position);
            for s in &p.slots {
                if d <= radius
                    && s.start > q.now
                    && s.start < q.to
                    && matches(q, s)
                    && !index.is_taken(s.id, q.now)
                {
                    all.push((s.start, d));
                }
            }
        }
        all
    }

    /// `soonest` with this tie threshold and work budget (0: the places within the radius
    /// only), sorted by start then distance and cut at `limit`.
    #[allow(clippy::too_many_arguments)]
    fn soonest_by<'s>(
        snap: &'s Snapshot,
        index: &SlotIndex,
        q: &Query,
        filter: &PlaceFilter,
        radius_m: f64,
        limit: usize,
        tie_scan_max: usize,
        budget: usize,
    ) -> Vec<Hit<'s>> {
        let mut hits = soonest(
            snap,
            index,
            q,
            filter,
            radius_m,
            limit,
            tie_scan_max,
            budget,
        );
        hits.sort_by(|a, b| {
            a.slot()
                .start
                .cmp(&b.slot().start)
                .then(a.distance_m.total_cmp(&b.distance_m))
        });
        hits.truncate(limit);
        hits
    }

    #[test]
    fn distance_order_is_nearest_then_start_and_the_radius_grows_only_as_needed() {
        let (snap, _) = snapshot();
        let index = SlotIndex::default();
        let q = query(Order::Distance, 10);
        let found = search(&snap, &index, &q);
        assert_eq!(found.hits.len(), 10);
        assert_eq!(found.steps, 0, "10 slots within 10 km");
        let mut expected = brute(&snap, &index, &q, found.radius_m);
        expected.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let got: Vec<i64> = found.hits.iter().map(|h| h.slot().start).collect();
        assert_eq!(
            got,
            expected.iter().take(10).map(|e| e.0).collect::<Vec<_>>()
        );
        // 100 wanted: 7 offered per km, one step (15 km) holds them
        assert_eq!(search(&snap, &index, &query(Order::Distance, 100)).steps, 1);
        // 300 wanted: not even within the 30 km cap; the radius grows to the cap
        let q = query(Order::Distance, 300);
        let found = search(&snap, &index, &q);
        assert_eq!(found.steps, 4);
        assert_eq!(
            found.hits.len(),
            brute(&snap, &index, &q, 30_000.0).len(),
            "every slot within the cap"
        );
        assert!(found.hits.len() < 300);
        assert_eq!(found.radius_m, 30_000.0);
    }

    #[test]
    fn soonest_matches_brute_force_by_time_scan_by_places_and_switching_between() {
        let (snap, _) = snapshot();
        let index = SlotIndex::default();
        index.mark_taken(3, i64::MAX);
        for limit in [1, 5, 10, 40] {
            let mut q = query(Order::Soonest, limit);
            q.modalities = vec![Modality::Ambulatory];
            let found = search(&snap, &index, &q);
            let mut expected = brute(&snap, &index, &q, found.radius_m);
            expected.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let starts = |hits: &[Hit]| hits.iter().map(|h| h.slot().start).collect::<Vec<_>>();
            let want: Vec<i64> = expected.iter().take(limit).map(|e| e.0).collect();
            assert_eq!(starts(&found.hits), want, "limit {limit}");
            let filter = PlaceFilter::new(&snap, &q, q.now + 1);
            for tie_scan_max in [0, TIE_SCAN_MAX] {
                for budget in [0, 1, 5, 17, 40, 100, 300, usize::MAX] {
                    let hits = soonest_by(
                        &snap,
                        &index,
                        &q,
                        &filter,
                        found.radius_m,
                        limit,
                        tie_scan_max,
                        budget,
                    );
                    assert_eq!(
                        starts(&hits),
                        want,
                        "limit {limit}, ties {tie_scan_max}, budget {budget}"
                    );
                }
            }
        }
    }

    #[test]
    fn taken_stale_and_filtered_slots_are_never_returned() {
        let (snap, source) = snapshot();
        let index = SlotIndex::default();
        let first = search(&snap, &index, &query(Order::Distance, 1)).hits[0]
            .slot()
            .id;
        index.mark_taken(first, NOW + 300);
        assert_ne!(
            search(&snap, &index, &query(Order::Distance, 1)).hits[0]
                .slot()
                .id,
            first
        );
        let mut q = query(Order::Distance, 1);
        q.now = NOW + 301;
        q.from = NOW + 301;
        let after_expiry = search(&snap, &index, &q).hits[0].slot().id;
        assert_eq!(
            after_expiry, first,
            "an expired hold no longer hides the slot"
        );
        let mut q = query(Order::Distance, 50);
        q.surnumeraire = Surnumeraire::Only;
        assert!(
            search(&snap, &index, &q)
                .hits
                .iter()
                .all(|h| h.slot().surnumeraire)
        );
        q.surnumeraire = Surnumeraire::Exclude;
        q.profession = Some("60".into());
        assert!(search(&snap, &index, &q).hits.is_empty());
        source
            .last_success_at
            .store(NOW - 86_400, std::sync::atomic::Ordering::Relaxed);
        assert!(
            search(&snap, &index, &query(Order::Distance, 10))
                .hits
                .is_empty(),
            "stale source"
        );
    }

    /// 400 places on a grid, every one with a slot at the same instant: the nearest of them
    /// are found by the block-by-block lookup exactly as by brute force, from many points.
    #[test]
    fn slots_starting_together_are_taken_nearest_first_block_by_block() {
        let (_, source) = snapshot();
        let provider = Arc::new(Provider::default());
        let at = NOW + 3600;
        let places: Vec<Arc<PlaceEntry>> = (0..400)
            .map(|k| {
                let slots = (0..2)
                    .map(|j| SlotEntry {
                        id: k * 2 + j + 1,
                        start: at + j * 600 * (k % 3),
                        end: at + 1200,
                        modality: Modality::Ambulatory,
                        audience: AudienceSet(0),
                        surnumeraire: false,
                        offered: true,
                        capacity: 1,
                        provider: provider.clone(),
                        external_id: format!("{k}-{j}").into(),
                        booking_url: None,
                        appointment_type: None,
                    })
                    .collect();
                let position = LatLon::new(
                    47.0 + (k / 20) as f64 * 0.01,
                    -1.0 + (k % 20) as f64 * 0.013,
                );
                place(k, &source, position.unwrap(), slots)
            })
            .collect();
        let snap = Snapshot::new(places, HashMap::from([(1, source)]));
        let index = SlotIndex::default();
        index.mark_taken(2 * 37 + 1, i64::MAX);
        for (n, limit) in (1..40).step_by(3).enumerate() {
            let mut q = query(Order::Soonest, limit);
            q.origin = LatLon::new(47.013 + n as f64 * 0.011, -0.99 + n as f64 * 0.017).unwrap();
            let filter = PlaceFilter::new(&snap, &q, q.now + 1);
            let mut want = brute(&snap, &index, &q, 12_000.0);
            want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            want.truncate(limit);
            // block by block only, places only, and switching from one to the other
            for budget in [usize::MAX, 0, 200] {
                let got = soonest_by(&snap, &index, &q, &filter, 12_000.0, limit, 0, budget);
                assert_eq!(got.len(), want.len(), "limit {limit}, budget {budget}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.slot().start, w.0, "limit {limit}, budget {budget}");
                    assert!((g.distance_m - w.1).abs() < 1.0, "limit {limit}");
                }
            }
        }
    }

    /// The rounded-point test never rejects a place within the chord, near its edge least of
    /// all, at radii from 100 m to 200 km.
    #[test]
    fn the_rounded_point_test_keeps_every_place_within_reach() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..20_000 {
            let o = LatLon::new(rng.random_range(41.0..51.0), rng.random_range(-5.0..9.0)).unwrap();
            let r = [100.0, 1_000.0, 10_000.0, 200_000.0][rng.random_range(0..4)];
            let max_c2 = crate::index::m_to_chord2(r);
            let reach = Reach32::new(crate::index::to_xyz(o), max_c2);
            // a point at about the radius, a little within or beyond
            let d = r * rng.random_range(0.999..1.001) / 111_000.0;
            let a = rng.random_range(0.0..std::f64::consts::TAU);
            let p = LatLon::new(
                o.lat + d * a.sin(),
                o.lon + d * a.cos() / o.lat.to_radians().cos(),
            );
            let (p, o) = (crate::index::to_xyz(p.unwrap()), crate::index::to_xyz(o));
            let c2 = (p[0] - o[0]).powi(2) + (p[1] - o[1]).powi(2) + (p[2] - o[2]).powi(2);
            if c2 <= max_c2 {
                assert!(
                    reach.may_hold(p.map(|v| v as f32)),
                    "{r} m: {c2} <= {max_c2}"
                );
            }
        }
    }

    /// The guessed search for a place's first key agrees with a binary search, on parts where
    /// places hold very different numbers of keys.
    #[test]
    fn the_first_key_of_a_place_is_found_from_a_guess() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..300 {
            let mut part: Vec<TimeKey> = (0..rng.random_range(1..200))
                .map(|_| {
                    // most keys in a few places
                    let place = if rng.random_bool(0.5) {
                        rng.random_range(0..5)
                    } else {
                        rng.random_range(0..1000)
                    };
                    TimeKey {
                        start: 0,
                        xyz: [0.0; 3],
                        place,
                        key: 0,
                        attrs: Attrs(0),
                    }
                })
                .collect();
            part.sort_by_key(|k| k.place);
            for place in 0..1002 {
                let want = part.partition_point(|k| (k.place as usize) < place);
                assert_eq!(first_of_place(&part, place), want, "place {place}");
            }
        }
    }

    #[test]
    fn the_first_key_from_an_instant_is_where_a_binary_search_puts_it() {
        use crate::index::SlotKey;
        // every length up to 40 (empty, powers of two and their neighbours), starts with
        // repeats, and instants before, between, on and after them
        for len in 0..=40usize {
            let keys: Vec<SlotKey> = (0..len)
                .map(|i| SlotKey {
                    start: 100 + (i as i64 / 3) * 10,
                    id: i as i64,
                    slot: i as u32,
                    attrs: Attrs(0),
                })
                .collect();
            for from in 90..=(100 + len as i64 * 4 + 10) {
                assert_eq!(
                    gallop(&keys, |k| k.start < from),
                    keys.partition_point(|k| k.start < from),
                    "len {len}, from {from}"
                );
            }
        }
    }

    #[test]
    fn an_hour_mask_holds_the_hour_of_every_start_in_its_window_and_no_other() {
        use crate::index::hour_bit;
        let base = NOW;
        for (from, to) in [
            (NOW, NOW + 1),
            (NOW + 1799, NOW + 4 * 3600),
            (NOW + 20 * 3600, NOW + 90 * 3600),
            (NOW - 7200, NOW + 60),
        ] {
            let mask = hour_mask(base, from, to);
            for t in (from.max(base)..to).step_by(97) {
                assert_ne!(mask & hour_bit(base, t), 0, "{from}..{to}: {t}");
            }
            for k in 0..63 {
                // hour k (from base) wholly before or after the window: not in the mask
                let (lo, hi) = (base + k * 3600, base + (k + 1) * 3600);
                if hi <= from || lo >= to {
                    assert_eq!(mask & 1 << k, 0, "{from}..{to}: hour {k}");
                }
            }
        }
        assert_eq!(hour_mask(base, NOW + 10, NOW + 10), 0);
        assert_eq!(
            hour_mask(base, NOW - 100, NOW),
            0,
            "before the earliest start"
        );
    }

    #[test]
    fn neutral_keeps_the_nearest_buckets_and_only_reorders_within_them() {
        let (snap, _) = snapshot();
        let index = SlotIndex::default();
        let d = search(&snap, &index, &query(Order::Distance, 12));
        let n = search(&snap, &index, &query(Order::Neutral, 12));
        let bucket = |h: &Hit| (h.distance_m / NEUTRAL_BUCKET_M).floor() as i64;
        let nb: Vec<i64> = n.hits.iter().map(bucket).collect();
        assert!(nb.windows(2).all(|w| w[0] <= w[1]), "buckets stay in order");
        assert_eq!(d.hits.iter().map(bucket).collect::<Vec<_>>(), nb);
    }

    /// Places that differ in what they offer (so that per-place summaries skip some), random
    /// queries: every answer equals brute force, in both orders, radius included.
    #[test]
    fn random_queries_on_varied_places_match_brute_force() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(11);
        let source = Arc::new(SourceMeta {
            id: 1,
            cpts_id: "c".into(),
            name: "s".into(),
            last_success_at: AtomicI64::new(NOW),
            stale_after_s: 86_400,
        });
        let providers: Vec<Arc<Provider>> = [
            ("10", Some("SM54")),
            ("10", Some("SM26")),
            ("60", None),
            ("40", None),
            // rare: its classes have their own time keys (`Snapshot::by_class`)
            ("50", None),
        ]
        .iter()
        .map(|(p, s)| {
            Arc::new(Provider {
                profession: Some(p.to_string()),
                specialty: s.map(String::from),
                ..Default::default()
            })
        })
        .collect();
        let mods = [
            Modality::Ambulatory,
            Modality::HomeVisit,
            Modality::Teleconsultation,
        ];
        let mut id = 0;
        let places: Vec<Arc<PlaceEntry>> = (0..300)
            .map(|k| {
                // each place: one provider, one or two modalities, slots in a sub-range of 72 h
                let provider = if rng.random_bool(0.08) {
                    providers[4].clone()
                } else {
                    providers[rng.random_range(0..4)].clone()
                };
                let place_mods = [mods[rng.random_range(0..3)], mods[rng.random_range(0..3)]];
                let (lo, hi) = {
                    let a = rng.random_range(0..72 * 60);
                    let b = rng.random_range(0..72 * 60);
                    (a.min(b), a.max(b) + 1)
                };
                // most places start on the hour or every six hours, so that many slots tie
                let grid = [60, 3600, 6 * 3600][rng.random_range(0..3)];
                let mut slots: Vec<SlotEntry> = (0..rng.random_range(0..12))
                    .map(|_| {
                        id += 1;
                        let start = NOW - 3600 + rng.random_range(lo..hi) * 60 / grid * grid;
                        SlotEntry {
                            id,
                            start,
                            end: start + 900,
                            modality: place_mods[rng.random_range(0..2)],
                            audience: AudienceSet(if rng.random_bool(0.1) { 2 } else { 0 }),
                            surnumeraire: rng.random_bool(0.15),
                            offered: rng.random_bool(0.85),
                            capacity: 1,
                            provider: provider.clone(),
                            external_id: format!("{id}").into(),
                            booking_url: None,
                            appointment_type: None,
                        }
                    })
                    .collect();
                slots.sort_by_key(|s| (s.start, s.id));
                let position = LatLon::new(
                    47.0 + rng.random_range(-0.3..0.3),
                    -1.0 + rng.random_range(-0.4..0.4),
                )
                .unwrap();
                place(k, &source, position, slots)
            })
            .collect();
        let snap = Snapshot::new(places, HashMap::from([(1, source)]));
        let index = SlotIndex::default();
        for _ in 0..40 {
            index.mark_taken(rng.random_range(1..=id), i64::MAX);
        }
        let mut by_blocks = 0;
        let mut by_class = 0;
        for n in 0..400 {
            let mut q = query(
                if n % 3 == 0 {
                    Order::Soonest
                } else {
                    Order::Distance
                },
                rng.random_range(1..25),
            );
            q.origin = LatLon::new(
                47.0 + rng.random_range(-0.3..0.3),
                -1.0 + rng.random_range(-0.4..0.4),
            )
            .unwrap();
            q.from = NOW + rng.random_range(0..48) * 3600;
            q.to = q.from + rng.random_range(1..30) * 3600;
            q.profession = [None, Some("10"), Some("60"), Some("99"), Some("50")]
                [rng.random_range(0..5)]
            .map(String::from);
            q.specialty =
                [None, None, Some("SM54"), Some("SM26")][rng.random_range(0..4)].map(String::from);
            q.modalities = match rng.random_range(0..4) {
                0 => vec![],
                1 => vec![Modality::HomeVisit],
                2 => vec![Modality::Teleconsultation, Modality::HomeVisit],
                _ => vec![Modality::Ambulatory],
            };
            q.surnumeraire = [
                Surnumeraire::Include,
                Surnumeraire::Only,
                Surnumeraire::Exclude,
            ][rng.random_range(0..3)];
            let found = search(&snap, &index, &q);
            let within = |r: f64| {
                brute(&snap, &index, &q, r)
                    .into_iter()
                    .filter(|(start, _)| *start >= q.from)
                    .collect::<Vec<_>>()
            };
            let steps = (0..=q.radius.max_steps)
                .find(|k| within(q.radius.at(*k)).len() >= q.limit)
                .unwrap_or(q.radius.max_steps);
            assert_eq!(found.steps, steps, "query {n}: {q:?}");
            let mut expected = within(found.radius_m);
            match q.order {
                Order::Soonest => expected.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))),
                _ => expected.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0))),
            }
            expected.truncate(q.limit);
            let got: Vec<(i64, f64)> = found
                .hits
                .iter()
                .map(|h| (h.slot().start, h.distance_m))
                .collect();
            // the start a hit carries (what the sorts read) is its slot's
            assert!(
                found.hits.iter().all(|h| h.start == h.slot().start),
                "query {n}"
            );
            assert_eq!(got.len(), expected.len(), "query {n}: {q:?}");
            for (g, e) in got.iter().zip(&expected) {
                assert_eq!(g.0, e.0, "query {n}: {q:?}");
                assert!((g.1 - e.1).abs() < 1.0, "query {n}: {q:?}");
            }
            if q.order == Order::Soonest {
                // so does the visit of the places within the radius, the time scan looking up
                // every instant block by block, and the time scan stopped on the way
                let filter = PlaceFilter::new(&snap, &q, q.from.max(q.now + 1));
                let r = found.radius_m;
                let limit = q.limit;
                let by =
                    |ties, budget| soonest_by(&snap, &index, &q, &filter, r, limit, ties, budget);
                let by_places = by(0, 0);
                let ties = by(0, usize::MAX);
                let switched = by(0, rng.random_range(1..400));
                // instants split by class, the few of a class one by one, the many by blocks
                let mixed = by(rng.random_range(1..4), usize::MAX);
                let mixed_switched = by(rng.random_range(1..4), rng.random_range(1..400));
                // a rare class's own keys (by class) give what all keys (by place) give
                by_class += usize::from(filter.rare);
                let mut all_keys = filter.clone();
                all_keys.rare = false;
                let by_place = soonest_by(&snap, &index, &q, &all_keys, r, limit, 1, usize::MAX);
                let mut scan = soonest_within(&snap, &index, &q, &filter, r, limit, 0, 400);
                if let Scan::Unfinished { hits, next } = &mut scan {
                    by_blocks += usize::from(!hits.is_empty());
                    assert!(hits.iter().all(|h| h.slot().start < *next));
                }
                for (path, hits) in [
                    ("places", &by_places),
                    ("ties by distance", &ties),
                    ("switched", &switched),
                    ("mixed", &mixed),
                    ("mixed, switched", &mixed_switched),
                    ("all keys", &by_place),
                ] {
                    assert_eq!(hits.len(), expected.len(), "{path}, query {n}");
                    for (g, e) in hits.iter().zip(&expected) {
                        assert_eq!(g.slot().start, e.0, "{path}, query {n}");
                        assert!((g.distance_m - e.1).abs() < 1.0, "{path}, query {n}");
                    }
                }
            }
        }
        assert!(
            by_class >= 10,
            "only {by_class} soonest queries for rare classes"
        );
        assert!(
            by_blocks >= 10,
            "only {by_blocks} soonest queries switched after finding some"
        );
    }
}
