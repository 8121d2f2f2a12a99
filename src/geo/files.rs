//! Wire DTOs of the derived files in `geodata/` (`communes.geojson`, `territories.geojson`)
//! and their exact, deterministic serialisation.
//!
//! Rules kept: one Feature per line (so that a parse error's line number names the feature,
//! and `git diff` stays readable), properties in a fixed order, geometries always written as
//! `MultiPolygon` with exteriors counter-clockwise (RFC 7946), coordinates rounded to 5 decimals.

use geo::{Coord, LineString, MultiPolygon, Polygon};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File names inside the geodata directory.
pub const COMMUNES_FILE: &str = "communes.geojson";
/// CPTS perimeters: `cpts_id;name;department;finess;insee`, one line per member commune.
pub const PERIMETERS_FILE: &str = "cpts-perimeters.csv";
/// Territories (union of their member communes).
pub const TERRITORIES_FILE: &str = "territories.geojson";

/// Properties of one commune Feature in `communes.geojson`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommuneProps {
    pub insee: String,
    pub name: String,
    pub department: String,
    pub postcodes: Vec<String>,
    pub population: u32,
    /// `[lon, lat]`
    pub interior: [f64; 2],
    pub cpts_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Set on communes that have no polygon of their own: the commune whose polygon covers them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polygon_of: Option<String>,
}

/// Properties of one territory Feature in `territories.geojson`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TerritoryProps {
    pub id: String,
    pub name: String,
    pub department: String,
    pub finess: Option<String>,
    pub communes: Vec<String>,
}

/// A GeoJSON geometry as written here: always a MultiPolygon.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GeometryDto {
    #[serde(rename = "type")]
    pub kind: String,
    pub coordinates: Vec<Vec<Vec<[f64; 2]>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FeatureDto<P> {
    #[serde(rename = "type")]
    pub kind: String,
    pub properties: P,
    pub geometry: Option<GeometryDto>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CollectionDto<P> {
    #[serde(rename = "type")]
    pub kind: String,
    pub features: Vec<FeatureDto<P>>,
}

/// Rounds to 5 decimals (≈1.1 m), the precision of the source polygons.
pub(crate) fn round5(x: f64) -> f64 {
    (x * 1e5).round() / 1e5
}

impl GeometryDto {
    pub fn from_geo(mp: &MultiPolygon<f64>) -> Self {
        let ring = |ls: &LineString<f64>| ls.0.iter().map(|c| [c.x, c.y]).collect::<Vec<_>>();
        GeometryDto {
            kind: "MultiPolygon".into(),
            coordinates: mp
                .0
                .iter()
                .map(|p| {
                    std::iter::once(ring(p.exterior()))
                        .chain(p.interiors().iter().map(ring))
                        .collect()
                })
                .collect(),
        }
    }

    /// Converts to a geo MultiPolygon; `Err` says what is wrong.
    pub fn to_geo(&self) -> Result<MultiPolygon<f64>, String> {
        let polys = match self.kind.as_str() {
            "MultiPolygon" => &self.coordinates,
            other => return Err(format!("geometry type `{other}` (expected MultiPolygon)")),
        };
        let mut out = Vec::with_capacity(polys.len());
        for rings in polys {
            let mut rings = rings.iter().map(|r| {
                if r.len() < 4 || r.iter().flatten().any(|v| !v.is_finite()) {
                    return Err(
                        "a ring has fewer than 4 positions or a non-finite coordinate".to_string(),
                    );
                }
                Ok(LineString::from(
                    r.iter().map(|&[x, y]| Coord { x, y }).collect::<Vec<_>>(),
                ))
            });
            let exterior = rings.next().ok_or("a polygon has no ring")??;
            let interiors = rings.collect::<Result<Vec<_>, _>>()?;
            out.push(Polygon::new(exterior, interiors));
        }
        if out.is_empty() {
            return Err("empty MultiPolygon".into());
        }
        Ok(MultiPolygon(out))
    }
}

/// Serialises a FeatureCollection, one Feature per line, byte-for-byte deterministic.
pub(crate) fn write_collection<P: Serialize>(features: &[FeatureDto<P>]) -> String {
    let mut s = String::from("{\"type\":\"FeatureCollection\",\"features\":[\n");
    for (i, f) in features.iter().enumerate() {
        if i > 0 {
            s.push_str(",\n");
        }
        s.push_str(&serde_json::to_string(f).expect("geodata DTOs always serialise"));
    }
    s.push_str("\n]}\n");
    s
}

/// Parses a FeatureCollection written by [`write_collection`]; errors name the file and the
/// line (= feature number + 1).
pub(crate) fn read_collection<P: for<'de> Deserialize<'de>>(
    path: &Path,
) -> Result<Vec<FeatureDto<P>>, super::GeoError> {
    let bytes = std::fs::read(path).map_err(|source| super::GeoError::Io {
        path: path.to_owned(),
        source,
    })?;
    let col: CollectionDto<P> =
        serde_json::from_slice(&bytes).map_err(|source| super::GeoError::Json {
            path: path.to_owned(),
            source,
        })?;
    if col.kind != "FeatureCollection" {
        return Err(super::GeoError::Feature {
            path: path.to_owned(),
            line: 1,
            reason: format!(
                "top-level type is `{}`, expected FeatureCollection",
                col.kind
            ),
        });
    }
    Ok(col.features)
}
