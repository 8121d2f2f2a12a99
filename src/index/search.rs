//! Nearest-free-slot search on a snapshot: no database, no allocation per visited slot.
//!
//! Places come out of the R-tree by increasing great-circle distance; for each, the slots in
//! the time window are found by binary search and filtered. The radius starts at the
//! department's default and grows by its step up to a cap until `limit` results are found; the
//! answer says how far it went.

use super::{PlaceEntry, SlotEntry, SlotIndex, Snapshot};
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

/// One result.
#[derive(Debug, Clone)]
pub struct Hit {
    pub place: Arc<PlaceEntry>,
    pub slot: usize,
    pub distance_m: f64,
}

impl Hit {
    pub fn slot(&self) -> &SlotEntry {
        &self.place.slots[self.slot]
    }
}

/// The answer.
#[derive(Debug, Clone)]
pub struct Found {
    pub hits: Vec<Hit>,
    /// Radius finally used, metres.
    pub radius_m: f64,
    /// Enlargement steps taken (0 = the default radius sufficed).
    pub steps: u32,
    /// Results found within the base radius (before enlargement).
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

/// Runs `q` on `snap`, skipping slots `index` knows to be held or booked.
pub fn search(snap: &Snapshot, index: &SlotIndex, q: &Query) -> Found {
    let from = q.from.max(q.now + 1);
    let cap = q.radius.cap_m();
    let limit = q.limit.max(1);
    let mut hits: Vec<Hit> = Vec::new();
    // Once `limit` hits are in, the radius that holds them is fixed; keep visiting places up
    // to that radius (for `soonest`, later starts at farther places may still rank first; for
    // distance order, places at the very same distance are included too).
    let mut bound = cap;
    for (place, d) in snap.nearest(q.origin) {
        if d > bound {
            break;
        }
        if !place.source.is_fresh(q.now) {
            continue;
        }
        let slots = &place.slots;
        let first = slots.partition_point(|s| s.start < from);
        for (i, s) in slots[first..].iter().enumerate() {
            if s.start >= q.to {
                break;
            }
            if matches(q, s) && !index.is_taken(s.id, q.now) {
                hits.push(Hit {
                    place: place.clone(),
                    slot: first + i,
                    distance_m: d,
                });
            }
        }
        if hits.len() >= limit && bound == cap {
            bound = match q.order {
                Order::Distance => d,
                Order::Soonest | Order::Neutral => q.radius.at(q.radius.steps_for(d)),
            };
        }
    }
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
    match q.order {
        Order::Distance => hits.sort_by(|a, b| {
            a.distance_m
                .total_cmp(&b.distance_m)
                .then(a.slot().start.cmp(&b.slot().start))
        }),
        Order::Soonest => hits.sort_by(|a, b| {
            a.slot()
                .start
                .cmp(&b.slot().start)
                .then(a.distance_m.total_cmp(&b.distance_m))
        }),
        Order::Neutral => {
            hits.sort_by(|a, b| {
                a.distance_m
                    .total_cmp(&b.distance_m)
                    .then(a.slot().start.cmp(&b.slot().start))
            });
            hits.truncate(limit);
            shuffle_buckets(&mut hits, q.seed);
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
