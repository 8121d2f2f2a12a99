//! Point → commune: an R-tree (bulk-loaded) of the envelopes of every commune polygon part,
//! then an exact point-in-polygon test.
//!
//! In front of it, a grid of small cells (≈ 1 km) over the communes' extent, each filled on
//! first use: a cell that no polygon edge comes near has the same answer for every point in
//! it (no boundary crosses it), so that answer is kept and later points in the cell cost one
//! table read. Cells that an edge touches (by its bounding box, so conservatively) stay
//! "mixed" and their points take the exact path every time.
//!
//! Rule kept: a point strictly inside a polygon wins over a point on a boundary; among
//! several candidates of the same kind the lowest commune index (communes are sorted by INSEE
//! code) wins, so a point on the border of two communes always gets the same answer.

use geo::coordinate_position::CoordPos;
use geo::{BoundingRect, Coord, CoordinatePosition, MultiPolygon, Polygon};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use std::sync::atomic::{AtomicU32, Ordering};

type Entry = GeomWithData<Rectangle<[f64; 2]>, (usize, Polygon<f64>)>;

/// Side of a grid cell, degrees (≈ 1.1 km north–south, ≈ 0.75 km east–west here).
const CELL_DEG: f64 = 0.01;
/// Cells are widened by this much when looking for edges near them, so that a point that
/// rounding puts in a neighbouring cell is still covered.
const CELL_MARGIN_DEG: f64 = 1e-7;
/// Grid cell states: not looked at yet, crossed by an edge, no commune; else commune index + 3.
const CELL_UNKNOWN: u32 = 0;
const CELL_MIXED: u32 = 1;
const CELL_NONE: u32 = 2;

/// Immutable spatial index of commune polygons, keyed by commune index.
pub(crate) struct Locator {
    tree: RTree<Entry>,
    grid: Grid,
}

/// The lazily filled cells over the polygons' extent.
struct Grid {
    min: [f64; 2],
    cols: usize,
    rows: usize,
    cells: Box<[AtomicU32]>,
}

impl Grid {
    fn new(tree: &RTree<Entry>) -> Self {
        let env = tree.root().envelope();
        let (lo, hi) = (env.lower(), env.upper());
        let span = |a: f64, b: f64| {
            if b >= a {
                ((b - a) / CELL_DEG).floor() as usize + 1
            } else {
                0
            }
        };
        // an empty tree has an inverted envelope: no cells
        let (cols, rows) = (span(lo[0], hi[0]).min(4096), span(lo[1], hi[1]).min(4096));
        Grid {
            min: lo,
            cols,
            rows,
            cells: (0..cols * rows)
                .map(|_| AtomicU32::new(CELL_UNKNOWN))
                .collect(),
        }
    }

    /// The cell holding `(lon, lat)`, with its rectangle; `None` off the grid.
    fn cell(&self, lon: f64, lat: f64) -> Option<(usize, [f64; 2], [f64; 2])> {
        let (x, y) = (
            (lon - self.min[0]) / CELL_DEG,
            (lat - self.min[1]) / CELL_DEG,
        );
        if !(x >= 0.0 && y >= 0.0) {
            return None;
        }
        let (col, row) = (x.floor() as usize, y.floor() as usize);
        if col >= self.cols || row >= self.rows {
            return None;
        }
        let lower = [
            self.min[0] + col as f64 * CELL_DEG,
            self.min[1] + row as f64 * CELL_DEG,
        ];
        let upper = [lower[0] + CELL_DEG, lower[1] + CELL_DEG];
        Some((row * self.cols + col, lower, upper))
    }
}

impl Locator {
    /// Indexes every polygon part of `geoms` (`(commune index, geometry)`).
    pub fn new<'a>(geoms: impl IntoIterator<Item = (usize, &'a MultiPolygon<f64>)>) -> Self {
        let mut entries = Vec::new();
        for (i, mp) in geoms {
            for poly in &mp.0 {
                if let Some(r) = poly.bounding_rect() {
                    let rect =
                        Rectangle::from_corners([r.min().x, r.min().y], [r.max().x, r.max().y]);
                    entries.push(GeomWithData::new(rect, (i, poly.clone())));
                }
            }
        }
        let tree = RTree::bulk_load(entries);
        Locator {
            grid: Grid::new(&tree),
            tree,
        }
    }

    /// The commune index whose polygon holds `(lon, lat)`, if any.
    pub fn locate(&self, lon: f64, lat: f64) -> Option<usize> {
        let Some((cell, lower, upper)) = self.grid.cell(lon, lat) else {
            return self.locate_exactly(lon, lat);
        };
        match self.grid.cells[cell].load(Ordering::Relaxed) {
            CELL_MIXED => self.locate_exactly(lon, lat),
            CELL_NONE => None,
            CELL_UNKNOWN => {
                let state = self.cell_state(lower, upper);
                self.grid.cells[cell].store(state, Ordering::Relaxed);
                self.locate_exactly(lon, lat)
            }
            commune => Some((commune - 3) as usize),
        }
    }

    /// How many cells hold a kept answer (a commune or none), for tests.
    #[cfg(test)]
    pub(crate) fn settled_cells(&self) -> usize {
        self.grid
            .cells
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) >= CELL_NONE)
            .count()
    }

    /// What every point of the cell `[lower, upper]` gets: [`CELL_MIXED`] when an edge of a
    /// polygon may pass through it (its bounding box meets the widened cell), else the answer
    /// for its centre, which then holds for all of it.
    fn cell_state(&self, lower: [f64; 2], upper: [f64; 2]) -> u32 {
        let m = CELL_MARGIN_DEG;
        let (lo, hi) = ([lower[0] - m, lower[1] - m], [upper[0] + m, upper[1] + m]);
        let near = |a: Coord<f64>, b: Coord<f64>| {
            a.x.min(b.x) <= hi[0]
                && a.x.max(b.x) >= lo[0]
                && a.y.min(b.y) <= hi[1]
                && a.y.max(b.y) >= lo[1]
        };
        let envelope = AABB::from_corners(lo, hi);
        for e in self.tree.locate_in_envelope_intersecting(&envelope) {
            let poly = &e.data.1;
            for ring in std::iter::once(poly.exterior()).chain(poly.interiors()) {
                if ring.lines().any(|l| near(l.start, l.end)) {
                    return CELL_MIXED;
                }
            }
        }
        let centre = [(lower[0] + upper[0]) / 2.0, (lower[1] + upper[1]) / 2.0];
        match self.locate_exactly(centre[0], centre[1]) {
            Some(i) => u32::try_from(i)
                .ok()
                .and_then(|i| i.checked_add(3))
                .unwrap_or(CELL_MIXED),
            None => CELL_NONE,
        }
    }

    /// [`Locator::locate`] without the grid: every polygon whose envelope holds the point.
    pub(crate) fn locate_exactly(&self, lon: f64, lat: f64) -> Option<usize> {
        let c = Coord { x: lon, y: lat };
        let mut inside: Option<usize> = None;
        let mut boundary: Option<usize> = None;
        for e in self.tree.locate_all_at_point(&[lon, lat]) {
            let (i, poly) = &e.data;
            let slot = match poly.coordinate_position(&c) {
                CoordPos::Inside => &mut inside,
                CoordPos::OnBoundary => &mut boundary,
                CoordPos::Outside => continue,
            };
            if slot.is_none_or(|j| *i < j) {
                *slot = Some(*i);
            }
        }
        inside.or(boundary)
    }
}
