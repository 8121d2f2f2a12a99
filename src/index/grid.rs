//! Slots by start time, per cell of a coarse latitude/longitude grid, for `soonest` queries:
//! they merge the time lines of the cells around the patient instead of scanning the time line
//! of the whole region (most of which is too far away).

use super::PlaceEntry;
use crate::domain::LatLon;
use std::sync::Arc;

/// One entry of a cell's time line: `(start, place index, slot index)`.
pub(crate) type TimeEntry = (i64, u32, u32);

/// Cell size in degrees (≈ 11 km × 11 km at the region's latitudes).
const CELL_LAT_DEG: f64 = 0.1;
const CELL_LON_DEG: f64 = 0.15;
/// More cells than this (places spread over a continent): cells grow instead.
const MAX_CELLS: f64 = 1_000_000.0;
/// Metres per degree of latitude (mean Earth radius), with a margin for rounding.
const M_PER_DEG_LAT: f64 = 111_195.0 * 0.999;

#[derive(Default)]
pub(crate) struct TimeGrid {
    lat0: f64,
    lon0: f64,
    cell_lat: f64,
    cell_lon: f64,
    rows: usize,
    cols: usize,
    /// Row-major cells, each sorted by `(start, place, slot)`.
    cells: Vec<Vec<TimeEntry>>,
}

impl TimeGrid {
    pub(crate) fn new(places: &[Arc<PlaceEntry>]) -> Self {
        let Some(first) = places.first() else {
            return Self::default();
        };
        let (mut lat0, mut lat1) = (first.position.lat, first.position.lat);
        let (mut lon0, mut lon1) = (first.position.lon, first.position.lon);
        for p in places {
            lat0 = lat0.min(p.position.lat);
            lat1 = lat1.max(p.position.lat);
            lon0 = lon0.min(p.position.lon);
            lon1 = lon1.max(p.position.lon);
        }
        let (mut cell_lat, mut cell_lon) = (CELL_LAT_DEG, CELL_LON_DEG);
        let count = |c: f64, span: f64| (span / c).floor() + 1.0;
        let cells = count(cell_lat, lat1 - lat0) * count(cell_lon, lon1 - lon0);
        if cells > MAX_CELLS {
            let grow = (cells / MAX_CELLS).sqrt().ceil();
            cell_lat *= grow;
            cell_lon *= grow;
        }
        let rows = count(cell_lat, lat1 - lat0) as usize;
        let cols = count(cell_lon, lon1 - lon0) as usize;
        let mut grid = TimeGrid {
            lat0,
            lon0,
            cell_lat,
            cell_lon,
            rows,
            cols,
            cells: vec![Vec::new(); rows * cols],
        };
        for (pi, p) in places.iter().enumerate() {
            let (r, c) = grid.cell_of(p.position.lat, p.position.lon);
            let cell = &mut grid.cells[r * cols + c];
            cell.extend(
                p.slots
                    .iter()
                    .enumerate()
                    .map(|(si, s)| (s.start, pi as u32, si as u32)),
            );
        }
        for cell in &mut grid.cells {
            cell.sort_unstable();
        }
        grid
    }

    fn cell_of(&self, lat: f64, lon: f64) -> (usize, usize) {
        let r = ((lat - self.lat0) / self.cell_lat).floor().max(0.0) as usize;
        let c = ((lon - self.lon0) / self.cell_lon).floor().max(0.0) as usize;
        (
            r.min(self.rows.saturating_sub(1)),
            c.min(self.cols.saturating_sub(1)),
        )
    }

    /// The non-empty time lines of every cell that may hold a place within `radius_m` of
    /// `origin` (the cells meeting the bounding box of that circle).
    pub(crate) fn around(&self, origin: LatLon, radius_m: f64) -> Vec<&[TimeEntry]> {
        if self.cells.is_empty() {
            return Vec::new();
        }
        let dlat = radius_m / M_PER_DEG_LAT;
        let (south, north) = (origin.lat - dlat, origin.lat + dlat);
        let widest = south.abs().max(north.abs());
        let dlon = if widest >= 89.0 {
            360.0
        } else {
            dlat / widest.to_radians().cos()
        };
        let (west, east) = (origin.lon - dlon, origin.lon + dlon);
        let lat1 = self.lat0 + self.cell_lat * self.rows as f64;
        let lon1 = self.lon0 + self.cell_lon * self.cols as f64;
        if north < self.lat0 || south > lat1 || east < self.lon0 || west > lon1 {
            return Vec::new();
        }
        let (r0, c0) = self.cell_of(south, west);
        let (r1, c1) = self.cell_of(north, east);
        let mut out = Vec::with_capacity((r1 - r0 + 1) * (c1 - c0 + 1));
        for r in r0..=r1 {
            for c in c0..=c1 {
                let cell = &self.cells[r * self.cols + c];
                if !cell.is_empty() {
                    out.push(cell.as_slice());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::slot::{AudienceSet, LocationPrecision, Modality};
    use crate::index::{SlotEntry, SourceMeta};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::AtomicI64;

    #[test]
    fn every_slot_within_the_radius_is_in_a_cell_around_and_cells_are_sorted() {
        let mut rng = StdRng::seed_from_u64(3);
        let source = Arc::new(SourceMeta {
            id: 1,
            cpts_id: "c".into(),
            name: "s".into(),
            last_success_at: AtomicI64::new(1),
            stale_after_s: 1,
        });
        let places: Vec<Arc<PlaceEntry>> = (0..400)
            .map(|k| {
                let slots = (0..3)
                    .map(|j| SlotEntry {
                        id: k * 3 + j,
                        start: rng.random_range(0..1000),
                        end: 2000,
                        modality: Modality::Ambulatory,
                        audience: AudienceSet(0),
                        surnumeraire: false,
                        offered: true,
                        capacity: 1,
                        provider: Default::default(),
                        external_id: "x".into(),
                        booking_url: None,
                        appointment_type: None,
                    })
                    .collect();
                Arc::new(PlaceEntry {
                    id: k,
                    source: source.clone(),
                    position: LatLon::new(
                        rng.random_range(46.2..48.6),
                        rng.random_range(-2.7..0.95),
                    )
                    .unwrap(),
                    precision: LocationPrecision::Exact,
                    name: None,
                    address: None,
                    postcode: None,
                    city: None,
                    insee: None,
                    slots,
                    json: Default::default(),
                })
            })
            .collect();
        let grid = TimeGrid::new(&places);
        assert_eq!(grid.cells.iter().map(Vec::len).sum::<usize>(), 1200);
        assert!(grid.cells.iter().all(|c| c.is_sorted()));
        for _ in 0..300 {
            let origin =
                LatLon::new(rng.random_range(46.0..48.8), rng.random_range(-3.0..1.2)).unwrap();
            let radius = rng.random_range(500.0..80_000.0);
            let found: std::collections::HashSet<u32> = grid
                .around(origin, radius)
                .iter()
                .flat_map(|c| c.iter().map(|e| e.1))
                .collect();
            for (pi, p) in places.iter().enumerate() {
                if origin.distance_m(p.position) <= radius {
                    assert!(found.contains(&(pi as u32)), "{origin:?} {radius} {pi}");
                }
            }
        }
    }
}
