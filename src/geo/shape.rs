//! Geometry helpers shared by the build and the loader.
//!
//! Rules kept: unions go through geo's `unary_union` (i_overlay) on consistently oriented
//! input; every geometry leaving these helpers is rounded to 5 decimals, has no repeated
//! consecutive positions, no degenerate ring, and exteriors counter-clockwise (RFC 7946).

use super::files::round5;
use geo::orient::Direction;
use geo::{
    Area, LineString, MapCoords, MultiPolygon, Orient, Polygon, RemoveRepeatedPoints, unary_union,
};

/// Union of all `geoms`, rounded and cleaned.
pub(crate) fn union_all<'a>(
    geoms: impl IntoIterator<Item = &'a MultiPolygon<f64>>,
) -> MultiPolygon<f64> {
    let polys: Vec<Polygon<f64>> = geoms
        .into_iter()
        .flat_map(|mp| mp.0.iter().map(|p| p.orient(Direction::Default)))
        .collect();
    if polys.len() == 1 {
        return clean(&MultiPolygon(polys));
    }
    clean(&unary_union(&polys))
}

/// Rounds to 5 decimals, drops repeated positions and rings that became degenerate,
/// orients exteriors counter-clockwise, and sorts nothing (the input order is kept).
pub(crate) fn clean(mp: &MultiPolygon<f64>) -> MultiPolygon<f64> {
    let rounded = mp.map_coords(|c| geo::Coord {
        x: round5(c.x),
        y: round5(c.y),
    });
    let ok = |r: &LineString<f64>| {
        r.0.len() >= 4 && Polygon::new(r.clone(), vec![]).unsigned_area() > 0.0
    };
    let polys = rounded
        .remove_repeated_points()
        .0
        .into_iter()
        .filter(|p| ok(p.exterior()))
        .map(|p| {
            let (ext, ints) = p.into_inner();
            Polygon::new(ext, ints.into_iter().filter(ok).collect())
        })
        .collect();
    MultiPolygon(polys).orient(Direction::Default)
}
