//! Point → commune: an R-tree (bulk-loaded) of the envelopes of every commune polygon part,
//! then an exact point-in-polygon test.
//!
//! Rule kept: a point strictly inside a polygon wins over a point on a boundary; among
//! several candidates of the same kind the lowest commune index (communes are sorted by INSEE
//! code) wins, so a point on the border of two communes always gets the same answer.

use geo::coordinate_position::CoordPos;
use geo::{BoundingRect, Coord, CoordinatePosition, MultiPolygon, Polygon};
use rstar::RTree;
use rstar::primitives::{GeomWithData, Rectangle};

type Entry = GeomWithData<Rectangle<[f64; 2]>, (usize, Polygon<f64>)>;

/// Immutable spatial index of commune polygons, keyed by commune index.
pub(crate) struct Locator {
    tree: RTree<Entry>,
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
        Locator {
            tree: RTree::bulk_load(entries),
        }
    }

    /// The commune index whose polygon holds `(lon, lat)`, if any.
    pub fn locate(&self, lon: f64, lat: f64) -> Option<usize> {
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
