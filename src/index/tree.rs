//! A static, packed bounding-box tree over the snapshot's places, whose nodes also carry the
//! union of their places' [`PlaceSummary`]s, so that a nearest-first walk skips whole
//! neighbourhoods that cannot offer what the query asks for (no home visits, no infirmier,
//! nothing in the window) without visiting their places one by one.
//!
//! Rules kept here:
//! - places are numbered along a Hilbert curve (see [`hilbert_order`]), so the places of a node
//!   are consecutive and their compact slot keys lie side by side in memory;
//! - a node's box is the 3-D bounding box of its places' unit-sphere points: the distance from
//!   the query to the box never exceeds the distance to any of its places, so a best-first walk
//!   yields places by exactly increasing chord (hence great-circle) distance;
//! - a node's summary is the union of its places' (modalities, codes, surnuméraire ORed, first
//!   start the minimum, last start the maximum): a node the query's filter rejects holds no
//!   place that filter admits.

use super::{PlacePoint, PlaceSummary};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Children per node.
pub(crate) const FANOUT: usize = 16;

/// One node: the box and summary of `FANOUT` consecutive entries of the level below.
#[derive(Debug, Clone, Copy)]
struct Node {
    lo: [f64; 3],
    hi: [f64; 3],
    sum: PlaceSummary,
}

/// The tree: `levels[0]` groups places, `levels[k]` groups nodes of `levels[k - 1]`; the last
/// level has at most `FANOUT` nodes (the root's children).
#[derive(Debug, Default)]
pub(crate) struct PlaceTree {
    levels: Vec<Vec<Node>>,
}

impl PlaceTree {
    /// Packs the tree over places already in spatial order (`points`, `sums` in the same order).
    pub(crate) fn new(points: &[PlacePoint], sums: &[PlaceSummary]) -> Self {
        let mut levels: Vec<Vec<Node>> = Vec::new();
        if points.is_empty() {
            return PlaceTree { levels };
        }
        let mut below: Vec<Node> = points
            .iter()
            .zip(sums)
            .map(|(p, s)| Node {
                lo: p.xyz,
                hi: p.xyz,
                sum: *s,
            })
            .collect();
        loop {
            let level: Vec<Node> = below.chunks(FANOUT).map(union).collect();
            let done = level.len() <= FANOUT;
            levels.push(level);
            if done {
                break;
            }
            below = levels.last().cloned().unwrap_or_default();
        }
        PlaceTree { levels }
    }

    /// Places admitted by `admits` by increasing chord² from `origin` (unit-sphere point), up
    /// to `max_c2`, with their chord² (`blocks == false`); or the admitted blocks of
    /// [`FANOUT`] consecutive places (index `i`: places `i * FANOUT..`) by increasing chord² of
    /// their boxes, a lower bound of their places' (`blocks == true`).
    pub(crate) fn nearest<'a, F: Fn(&PlaceSummary) -> bool + 'a>(
        &'a self,
        points: &'a [PlacePoint],
        sums: &'a [PlaceSummary],
        origin: [f64; 3],
        max_c2: f64,
        admits: F,
        blocks: bool,
    ) -> Nearest<'a, F> {
        let mut it = Nearest {
            leaf: u32::from(blocks),
            tree: self,
            points,
            sums,
            origin,
            max_c2,
            admits,
            // A walk keeps a few dozen entries queued: room for them from the start instead
            // of growing the heap step by step on every search.
            heap: BinaryHeap::with_capacity(HEAP_START),
        };
        if let Some(top) = self.levels.len().checked_sub(1) {
            it.push_nodes(top, 0..self.levels[top].len());
        }
        it
    }
}

/// The union of some nodes.
fn union(nodes: &[Node]) -> Node {
    let mut u = Node {
        lo: [f64::INFINITY; 3],
        hi: [f64::NEG_INFINITY; 3],
        sum: PlaceSummary::EMPTY,
    };
    for n in nodes {
        for a in 0..3 {
            u.lo[a] = u.lo[a].min(n.lo[a]);
            u.hi[a] = u.hi[a].max(n.hi[a]);
        }
        u.sum = u.sum.union(&n.sum);
    }
    u
}

/// A heap entry: a place (`level == 0`) or a node of `levels[level - 1]`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    c2: f64,
    level: u32,
    index: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: the max-heap pops the nearest first; at equal distance, places before nodes.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .c2
            .total_cmp(&self.c2)
            .then(other.level.cmp(&self.level))
    }
}

/// Entries a walk's queue has room for at its start (16 bytes each).
const HEAP_START: usize = 128;

/// Best-first walk of a [`PlaceTree`] (see [`PlaceTree::nearest`]).
pub(crate) struct Nearest<'a, F> {
    /// Level yielded: 0 places, 1 blocks.
    leaf: u32,
    tree: &'a PlaceTree,
    points: &'a [PlacePoint],
    sums: &'a [PlaceSummary],
    origin: [f64; 3],
    max_c2: f64,
    admits: F,
    heap: BinaryHeap<Entry>,
}

impl<F: Fn(&PlaceSummary) -> bool> Nearest<'_, F> {
    /// Pushes the admitted nodes `range` of `levels[level]` that are near enough.
    fn push_nodes(&mut self, level: usize, range: std::ops::Range<usize>) {
        for (i, n) in self.tree.levels[level][range.clone()].iter().enumerate() {
            if !(self.admits)(&n.sum) {
                continue;
            }
            let mut c2 = 0.0;
            for a in 0..3 {
                let gap = (n.lo[a] - self.origin[a])
                    .max(self.origin[a] - n.hi[a])
                    .max(0.0);
                c2 += gap * gap;
            }
            if c2 <= self.max_c2 {
                self.heap.push(Entry {
                    c2,
                    level: level as u32 + 1,
                    index: (range.start + i) as u32,
                });
            }
        }
    }

    /// Pushes the admitted places `range` that are near enough.
    fn push_places(&mut self, range: std::ops::Range<usize>) {
        let o = self.origin;
        for (i, (p, s)) in self.points[range.clone()]
            .iter()
            .zip(&self.sums[range.clone()])
            .enumerate()
        {
            if !(self.admits)(s) {
                continue;
            }
            let p = p.xyz;
            let c2 = (p[0] - o[0]).powi(2) + (p[1] - o[1]).powi(2) + (p[2] - o[2]).powi(2);
            if c2 <= self.max_c2 {
                self.heap.push(Entry {
                    c2,
                    level: 0,
                    index: (range.start + i) as u32,
                });
            }
        }
    }
}

impl<F: Fn(&PlaceSummary) -> bool> Iterator for Nearest<'_, F> {
    /// Place index and chord² (unit sphere).
    type Item = (usize, f64);

    fn next(&mut self) -> Option<(usize, f64)> {
        while let Some(e) = self.heap.pop() {
            let first = e.index as usize * FANOUT;
            if e.level == self.leaf {
                return Some((e.index as usize, e.c2));
            }
            match e.level {
                0 => unreachable!("places are below every yielded level"),
                1 => self.push_places(first..(first + FANOUT).min(self.points.len())),
                l => {
                    let below = l as usize - 2;
                    let end = (first + FANOUT).min(self.tree.levels[below].len());
                    self.push_nodes(below, first..end);
                }
            }
        }
        None
    }
}

/// A permutation of `points` (latitude, longitude) along a Hilbert curve over their bounding
/// box: neighbours on the curve are neighbours on the map.
pub(crate) fn hilbert_order(points: &[(f64, f64)]) -> Vec<usize> {
    const BITS: u32 = 16;
    let (mut lo, mut hi) = ((f64::MAX, f64::MAX), (f64::MIN, f64::MIN));
    for &(a, b) in points {
        lo = (lo.0.min(a), lo.1.min(b));
        hi = (hi.0.max(a), hi.1.max(b));
    }
    let scale = |v: f64, l: f64, h: f64| {
        let span = (h - l).max(1e-12);
        (((v - l) / span) * f64::from((1u32 << BITS) - 1)).round() as u32
    };
    let mut keyed: Vec<(u64, usize)> = points
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| (hilbert(scale(b, lo.1, hi.1), scale(a, lo.0, hi.0), BITS), i))
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Position of `(x, y)` (each below `2^bits`) along the Hilbert curve of that order.
fn hilbert(mut x: u32, mut y: u32, bits: u32) -> u64 {
    let n = 1u32 << bits;
    let mut d = 0u64;
    let mut s = n / 2;
    while s > 0 {
        let rx = u32::from(x & s != 0);
        let ry = u32::from(y & s != 0);
        d += u64::from(s) * u64::from(s) * u64::from((3 * rx) ^ ry);
        if ry == 0 {
            if rx == 1 {
                x = n - 1 - x;
                y = n - 1 - y;
            }
            std::mem::swap(&mut x, &mut y);
        }
        s /= 2;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hilbert_visits_every_cell_of_a_small_grid_once_by_unit_steps() {
        let mut cells: Vec<(u64, u32, u32)> = (0..8)
            .flat_map(|x| (0..8).map(move |y| (hilbert(x, y, 3), x, y)))
            .collect();
        cells.sort_unstable();
        assert!(cells.iter().enumerate().all(|(i, c)| c.0 == i as u64));
        for w in cells.windows(2) {
            let step = w[0].1.abs_diff(w[1].1) + w[0].2.abs_diff(w[1].2);
            assert_eq!(step, 1, "{w:?}");
        }
    }

    #[test]
    fn walk_is_nearest_first_and_skips_rejected_places() {
        let n = 1000;
        let points: Vec<PlacePoint> = (0..n)
            .map(|i| {
                let (lat, lon) = (47.0 + (i % 37) as f64 * 0.01, -1.0 + (i / 37) as f64 * 0.01);
                PlacePoint {
                    xyz: super::super::to_xyz(crate::domain::LatLon::new(lat, lon).unwrap()),
                    first: 0,
                    end: 0,
                }
            })
            .collect();
        let sums: Vec<PlaceSummary> = (0..n)
            .map(|i| PlaceSummary {
                modalities: 1 << (i % 3),
                ..PlaceSummary::EMPTY
            })
            .collect();
        let tree = PlaceTree::new(&points, &sums);
        let o = super::super::to_xyz(crate::domain::LatLon::new(47.13, -0.87).unwrap());
        let got: Vec<(usize, f64)> = tree
            .nearest(
                &points,
                &sums,
                o,
                0.0001,
                |s| s.modalities & 0b010 != 0,
                false,
            )
            .collect();
        let blocks: Vec<(usize, f64)> = tree
            .nearest(
                &points,
                &sums,
                o,
                0.0001,
                |s| s.modalities & 0b010 != 0,
                true,
            )
            .collect();
        assert!(blocks.windows(2).all(|w| w[0].1 <= w[1].1));
        for &(i, c2) in &got {
            let &(_, lb) = blocks
                .iter()
                .find(|b| b.0 == i / FANOUT)
                .expect("its block");
            assert!(lb <= c2);
        }
        let mut want: Vec<(usize, f64)> = (0..n)
            .filter(|i| i % 3 == 1)
            .map(|i| {
                let p = points[i].xyz;
                let c2 = (p[0] - o[0]).powi(2) + (p[1] - o[1]).powi(2) + (p[2] - o[2]).powi(2);
                (i, c2)
            })
            .filter(|e| e.1 <= 0.0001)
            .collect();
        want.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert!(!want.is_empty());
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.1, w.1);
        }
    }
}
