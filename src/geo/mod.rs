//! Geography of Pays de la Loire: communes (COG 2026) with their polygons, postal codes and
//! former names, and CPTS territories, loaded from the derived files in `geodata/`.
//!
//! Rules kept:
//! - `communes.geojson` gives every current commune of the five departments (1 228), sorted by
//!   INSEE code; `cpts-perimeters.csv` is the source of truth for CPTS membership (a region may
//!   replace it: the `cpts_id` stored in `communes.geojson` is overridden by the CSV at load);
//!   `territories.geojson` is a cache of territory outlines, used only when it agrees with the
//!   CSV (otherwise outlines are recomputed from the member communes at load).
//! - Point lookup answers the commune whose polygon holds the point (boundary ties: see
//!   [`index`]); outside every commune polygon, the point is outside the region.
//! - **Split communes.** 85165 L'Oie and 85212 Sainte-Florence were split out of 85084
//!   Essarts-en-Bocage in 2024; the only polygons available (COG 2018) cover the three as one.
//!   They therefore have no polygon of their own (`geometry == None`,
//!   `polygon_of == Some(85084)`), their `interior` point is the interior point of 85084, and a
//!   point lookup anywhere in that polygon returns 85084. Postal code, name search and
//!   `resolve_place` find them normally; the three are in the same EPCI, hence in the same
//!   default territory.
//! - Everything is immutable after [`Geography::load`]: the value is `Send + Sync` and shared.

pub mod build;
mod files;
mod index;
pub mod names;
pub mod perimeters;
mod shape;

pub use files::{COMMUNES_FILE, PERIMETERS_FILE, TERRITORIES_FILE};
pub use perimeters::TerritoryDef;

use crate::domain::{DEPARTMENTS, InseeCode, LatLon, Postcode};
use files::{CommuneProps, FeatureDto, GeometryDto, TerritoryProps};
use geo::MultiPolygon;
use names::{city_key, name_key};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Why the geodata could not be loaded (or built). Every message names the file, and the
/// line (CSV) or the line/feature (GeoJSON: line n+1 holds feature n) when there is one.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// A file is missing or unreadable.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A GeoJSON file does not parse (or lacks a property).
    #[error("{}: invalid GeoJSON at line {} column {} (line n+1 holds feature n): {source}",
        .path.display(), .source.line(), .source.column())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A GeoJSON feature parses but its content is wrong (`line` = its line in the file).
    #[error("{}:{line}: {reason}", .path.display())]
    Feature {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A perimeters CSV line is wrong (`line` is 1-based, the header is line 1).
    #[error("{}:{line}: {reason}", .path.display())]
    Perimeters {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

/// A current (COG 2026) commune of the region.
#[derive(Debug, Clone)]
pub struct Commune {
    pub insee: InseeCode,
    pub name: String,
    /// Department code (`44`, `49`, `53`, `72`, `85`).
    pub department: String,
    /// Postal codes serving the commune (never empty).
    pub postcodes: Vec<Postcode>,
    /// Population (INSEE, as shipped by decoupage-administratif 2026).
    pub population: u32,
    /// A point inside the commune's polygon (or inside `polygon_of`'s polygon for split
    /// communes); locating it returns this commune (or `polygon_of`).
    pub interior: LatLon,
    /// The CPTS territory holding this commune, per the perimeters CSV.
    pub cpts_id: Option<String>,
    /// Former / delegated / associated commune names now part of this commune.
    pub aliases: Vec<String>,
    /// WGS84 outline (`x` = lon, `y` = lat); `None` for the split communes (see module doc).
    pub geometry: Option<MultiPolygon<f64>>,
    /// For a commune without its own polygon: the commune whose polygon covers it.
    pub polygon_of: Option<InseeCode>,
}

/// A CPTS territory (an approximation by EPCI unless the region supplied its official CSV).
#[derive(Debug, Clone)]
pub struct Territory {
    pub id: String,
    pub name: String,
    /// Department the CPTS is attached to.
    pub department: String,
    pub finess: Option<String>,
    /// Member communes, sorted by INSEE code.
    pub communes: Vec<InseeCode>,
    /// Union of the member communes' polygons (WGS84, `x` = lon).
    pub geometry: MultiPolygon<f64>,
}

/// The answer of a point lookup.
#[derive(Debug, Clone, Copy)]
pub struct Located<'a> {
    pub commune: &'a Commune,
    /// The CPTS territory of the commune, `None` if the commune is in no CPTS.
    pub territory: Option<&'a Territory>,
    pub department: &'a str,
}

/// Communes, postal codes, names and CPTS territories of the region, with a spatial index.
pub struct Geography {
    communes: Vec<Commune>,
    by_insee: HashMap<InseeCode, usize>,
    /// Postal code → communes, population descending.
    by_postcode: HashMap<Postcode, Vec<usize>>,
    name_keys: Vec<String>,
    alias_keys: Vec<Vec<String>>,
    by_name: HashMap<String, Vec<usize>>,
    by_alias: HashMap<String, Vec<usize>>,
    territories: Vec<Territory>,
    territory_by_id: HashMap<String, usize>,
    territory_of: Vec<Option<usize>>,
    locator: index::Locator,
    territories_geojson: String,
}

#[derive(Serialize)]
struct ApiTerritoryProps<'a> {
    id: &'a str,
    name: &'a str,
    department: &'a str,
}

impl Geography {
    /// The geodata directory: `./geodata` when it exists (deployed image, repo root), else the
    /// crate's own `geodata/` (`CARGO_MANIFEST_DIR/geodata`, for tests and `cargo run`).
    pub fn default_dir() -> PathBuf {
        let local = PathBuf::from("geodata");
        if local.join(COMMUNES_FILE).is_file() {
            local
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("geodata")
        }
    }

    /// Loads `communes.geojson`, `cpts-perimeters.csv` and (if present and consistent with the
    /// CSV) `territories.geojson` from `dir`, and builds the indexes.
    pub fn load(dir: &Path) -> Result<Geography, GeoError> {
        let communes = read_communes(&dir.join(COMMUNES_FILE))?;
        let by_insee: HashMap<InseeCode, usize> = communes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.insee.clone(), i))
            .collect();
        let defs =
            perimeters::read_perimeters(&dir.join(PERIMETERS_FILE), |c| by_insee.contains_key(c))?;
        let cached = read_territory_cache(&dir.join(TERRITORIES_FILE))?;
        let territories = defs
            .into_iter()
            .map(|d| {
                let members: Vec<String> = d.communes.iter().map(|c| c.to_string()).collect();
                let geometry = match cached.get(&d.id) {
                    Some((props, geom))
                        if props.communes == members
                            && props.name == d.name
                            && props.department == d.department
                            && props.finess == d.finess =>
                    {
                        geom.clone()
                    }
                    _ => shape::union_all(
                        d.communes
                            .iter()
                            .filter_map(|c| communes[by_insee[c]].geometry.as_ref()),
                    ),
                };
                Territory {
                    id: d.id,
                    name: d.name,
                    department: d.department,
                    finess: d.finess,
                    communes: d.communes,
                    geometry,
                }
            })
            .collect();
        Ok(Self::assemble(communes, territories))
    }

    /// Builds the indexes; `territories` must only name communes of `communes` (checked by the
    /// perimeters parser), each at most once.
    pub(crate) fn assemble(mut communes: Vec<Commune>, territories: Vec<Territory>) -> Geography {
        let by_insee: HashMap<InseeCode, usize> = communes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.insee.clone(), i))
            .collect();
        let mut territory_of = vec![None; communes.len()];
        for c in &mut communes {
            c.cpts_id = None;
        }
        for (t, terr) in territories.iter().enumerate() {
            for c in &terr.communes {
                let i = by_insee[c];
                territory_of[i] = Some(t);
                communes[i].cpts_id = Some(terr.id.clone());
            }
        }
        let territory_by_id = territories
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();

        let mut by_postcode: HashMap<Postcode, Vec<usize>> = HashMap::new();
        for (i, c) in communes.iter().enumerate() {
            for pc in &c.postcodes {
                by_postcode.entry(pc.clone()).or_default().push(i);
            }
        }
        for v in by_postcode.values_mut() {
            v.sort_by(|&a, &b| by_population(&communes[a], &communes[b]));
            v.dedup();
        }
        let name_keys: Vec<String> = communes.iter().map(|c| name_key(&c.name)).collect();
        let alias_keys: Vec<Vec<String>> = communes
            .iter()
            .map(|c| c.aliases.iter().map(|a| name_key(a)).collect())
            .collect();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_alias: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, k) in name_keys.iter().enumerate() {
            by_name.entry(k.clone()).or_default().push(i);
            for a in &alias_keys[i] {
                let v = by_alias.entry(a.clone()).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }

        let locator = index::Locator::new(
            communes
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.geometry.as_ref().map(|g| (i, g))),
        );
        let features: Vec<FeatureDto<ApiTerritoryProps>> = territories
            .iter()
            .map(|t| FeatureDto {
                kind: "Feature".into(),
                properties: ApiTerritoryProps {
                    id: &t.id,
                    name: &t.name,
                    department: &t.department,
                },
                geometry: Some(GeometryDto::from_geo(&t.geometry)),
            })
            .collect();
        let territories_geojson = files::write_collection(&features);

        Geography {
            communes,
            by_insee,
            by_postcode,
            name_keys,
            alias_keys,
            by_name,
            by_alias,
            territories,
            territory_by_id,
            territory_of,
            locator,
            territories_geojson,
        }
    }

    /// The commune whose polygon holds `p`, with its CPTS territory and department; `None`
    /// outside the region. Split communes are never returned (their parent is; see module doc).
    pub fn locate(&self, p: LatLon) -> Option<Located<'_>> {
        let i = self.locator.locate(p.lon, p.lat)?;
        let commune = &self.communes[i];
        Some(Located {
            commune,
            territory: self.territory_of[i].map(|t| &self.territories[t]),
            department: &commune.department,
        })
    }

    /// Whether `p` lies in one of the region's commune polygons.
    pub fn region_contains(&self, p: LatLon) -> bool {
        self.locator.locate(p.lon, p.lat).is_some()
    }

    /// The current commune with this INSEE code (former codes are not resolved).
    pub fn commune(&self, insee: &InseeCode) -> Option<&Commune> {
        self.by_insee.get(insee).map(|&i| &self.communes[i])
    }

    /// All current communes, sorted by INSEE code.
    pub fn communes(&self) -> &[Commune] {
        &self.communes
    }

    /// Every commune served by postal code `pc`, population descending (empty if unknown).
    pub fn communes_by_postcode(&self, pc: &Postcode) -> Vec<&Commune> {
        self.by_postcode
            .get(pc)
            .map(|v| v.iter().map(|&i| &self.communes[i]).collect())
            .unwrap_or_default()
    }

    /// Suggestions for what an operator (or a feed) typed, at most `limit`.
    ///
    /// - digits only: a 5-digit postal code (exact; if no postal code matches, an INSEE code),
    ///   or a 2–4 digit postal-code prefix; population descending;
    /// - otherwise a name, compared by [`names::name_key`] (accents, case, hyphens, `St`/`Ste`
    ///   ignored): exact current names first, then exact former/delegated names, then names
    ///   starting with the query, then names with a word starting with the query; population
    ///   descending within each group.
    pub fn search_communes(&self, q: &str, limit: usize) -> Vec<&Commune> {
        let q = q.trim();
        if limit == 0 || q.is_empty() {
            return Vec::new();
        }
        if q.bytes().all(|b| b.is_ascii_digit()) {
            let mut hits: Vec<&Commune> = match q.len() {
                5 => {
                    let by_pc = q
                        .parse()
                        .map(|pc| self.communes_by_postcode(&pc))
                        .unwrap_or_default();
                    if by_pc.is_empty() {
                        q.parse()
                            .ok()
                            .and_then(|c| self.commune(&c))
                            .into_iter()
                            .collect()
                    } else {
                        by_pc
                    }
                }
                2..=4 => self
                    .communes
                    .iter()
                    .filter(|c| c.postcodes.iter().any(|pc| pc.as_str().starts_with(q)))
                    .collect(),
                _ => Vec::new(),
            };
            hits.sort_by(|a, b| by_population(a, b));
            hits.truncate(limit);
            return hits;
        }
        let k = name_key(q);
        if k.is_empty() {
            return Vec::new();
        }
        let word = format!(" {k}");
        let rank = |s: &str, exact: u8| {
            if s == k {
                Some(exact)
            } else if s.starts_with(&k) {
                Some(2)
            } else if s.contains(&word) {
                Some(3)
            } else {
                None
            }
        };
        let mut hits: Vec<(u8, &Commune)> = self
            .communes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let best = std::iter::once(rank(&self.name_keys[i], 0))
                    .chain(self.alias_keys[i].iter().map(|a| rank(a, 1)))
                    .flatten()
                    .min()?;
                Some((best, c))
            })
            .collect();
        hits.sort_by(|(ra, a), (rb, b)| ra.cmp(rb).then_with(|| by_population(a, b)));
        hits.into_iter().take(limit).map(|(_, c)| c).collect()
    }

    /// The one commune meant by a postal address, or `None` when it is ambiguous or unknown.
    ///
    /// With a postal code and a city (city compared by [`names::city_key`]: `CEDEX …` ignored):
    /// 1. the commune of that postal code whose current name, else former/delegated name,
    ///    matches the city;
    /// 2. else the commune of the region whose name (else former name) is the city's, if unique
    ///    and in the postal code's department (a wrong or CEDEX postal code);
    /// 3. else the postal code's commune if it has only one (the city field held a hamlet).
    ///
    /// With a postal code alone: its commune if it has only one. With a city alone: the commune
    /// of that name (else former name) if unique in the region.
    pub fn resolve_place(
        &self,
        postcode: Option<&Postcode>,
        city: Option<&str>,
    ) -> Option<&Commune> {
        let k = city.map(city_key).filter(|k| !k.is_empty());
        let Some(pc) = postcode else {
            return k
                .and_then(|k| self.unique_by_name(&k, None))
                .map(|i| &self.communes[i]);
        };
        let cands: &[usize] = self.by_postcode.get(pc).map_or(&[], Vec::as_slice);
        let dept = &pc.as_str()[..2];
        if let Some(k) = &k {
            let named = only(cands.iter().copied().filter(|&i| &self.name_keys[i] == k));
            let aliased = || {
                only(
                    cands
                        .iter()
                        .copied()
                        .filter(|&i| self.alias_keys[i].contains(k)),
                )
            };
            if let Some(i) = named
                .or_else(aliased)
                .or_else(|| self.unique_by_name(k, Some(dept)))
            {
                return Some(&self.communes[i]);
            }
        }
        only(cands.iter().copied()).map(|i| &self.communes[i])
    }

    fn unique_by_name(&self, k: &str, dept: Option<&str>) -> Option<usize> {
        let pick = |v: Option<&Vec<usize>>| {
            let v = v?;
            only(v.iter().copied())
                .filter(|&i| dept.is_none_or(|d| self.communes[i].department == d))
        };
        match self.by_name.get(k) {
            Some(v) if !v.is_empty() => pick(Some(v)),
            _ => pick(self.by_alias.get(k)),
        }
    }

    /// All territories, in the order of the perimeters CSV.
    pub fn territories(&self) -> &[Territory] {
        &self.territories
    }

    /// The territory with this id.
    pub fn territory(&self, id: &str) -> Option<&Territory> {
        self.territory_by_id.get(id).map(|&i| &self.territories[i])
    }

    /// The territory holding commune `insee`, per the perimeters CSV.
    pub fn territory_of(&self, insee: &InseeCode) -> Option<&Territory> {
        let i = *self.by_insee.get(insee)?;
        self.territory_of[i].map(|t| &self.territories[t])
    }

    /// FeatureCollection of territories (properties `id`, `name`, `department`; MultiPolygon
    /// geometry), serialised once at load, for `GET /v1/territories`.
    pub fn territories_geojson(&self) -> &str {
        &self.territories_geojson
    }
}

/// `Some(x)` when the iterator yields exactly one item.
fn only(mut it: impl Iterator<Item = usize>) -> Option<usize> {
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

fn by_population(a: &Commune, b: &Commune) -> std::cmp::Ordering {
    b.population
        .cmp(&a.population)
        .then_with(|| a.insee.cmp(&b.insee))
}

/// Reads and validates `communes.geojson` into communes sorted by INSEE code.
fn read_communes(path: &Path) -> Result<Vec<Commune>, GeoError> {
    let features = files::read_collection::<CommuneProps>(path)?;
    let mut communes = Vec::with_capacity(features.len());
    let mut seen: HashMap<InseeCode, usize> = HashMap::new();
    for (n, f) in features.into_iter().enumerate() {
        let line = n + 2;
        let err = |reason: String| GeoError::Feature {
            path: path.to_owned(),
            line,
            reason,
        };
        let p = f.properties;
        let insee: InseeCode = p.insee.parse().map_err(|e: String| err(e))?;
        let err = |reason: String| err(format!("commune {insee}: {reason}"));
        if f.kind != "Feature" {
            return Err(err(format!("type `{}`, expected Feature", f.kind)));
        }
        if let Some(prev) = seen.insert(insee.clone(), line) {
            return Err(err(format!("listed twice (already on line {prev})")));
        }
        if p.department != insee.department() || !DEPARTMENTS.contains(&p.department.as_str()) {
            return Err(err(format!(
                "department `{}` does not fit the INSEE code",
                p.department
            )));
        }
        let postcodes = p
            .postcodes
            .iter()
            .map(|s| s.parse::<Postcode>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        if postcodes.is_empty() {
            return Err(err("no postal code".into()));
        }
        let interior =
            LatLon::new(p.interior[1], p.interior[0]).map_err(|e| err(format!("interior: {e}")))?;
        let geometry = f
            .geometry
            .as_ref()
            .map(GeometryDto::to_geo)
            .transpose()
            .map_err(&err)?;
        let polygon_of = p
            .polygon_of
            .as_deref()
            .map(str::parse::<InseeCode>)
            .transpose()
            .map_err(|e| err(format!("polygon_of: {e}")))?;
        if geometry.is_none() && polygon_of.is_none() {
            return Err(err("no geometry and no `polygon_of`".into()));
        }
        communes.push(Commune {
            insee,
            name: p.name,
            department: p.department,
            postcodes,
            population: p.population,
            interior,
            cpts_id: p.cpts_id,
            aliases: p.aliases,
            geometry,
            polygon_of,
        });
    }
    communes.sort_by(|a, b| a.insee.cmp(&b.insee));
    let with_polygon: BTreeSet<&InseeCode> = communes
        .iter()
        .filter(|c| c.geometry.is_some())
        .map(|c| &c.insee)
        .collect();
    for c in &communes {
        if let Some(parent) = &c.polygon_of
            && !with_polygon.contains(parent)
        {
            return Err(GeoError::Feature {
                path: path.to_owned(),
                line: seen[&c.insee],
                reason: format!("commune {}: polygon_of {parent} has no polygon", c.insee),
            });
        }
    }
    Ok(communes)
}

/// Reads `territories.geojson` if present: id → (properties, geometry).
fn read_territory_cache(
    path: &Path,
) -> Result<HashMap<String, (TerritoryProps, MultiPolygon<f64>)>, GeoError> {
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let features = files::read_collection::<TerritoryProps>(path)?;
    let mut out = HashMap::new();
    for (n, f) in features.into_iter().enumerate() {
        let geom = f
            .geometry
            .as_ref()
            .ok_or_else(|| "no geometry".to_string())
            .and_then(GeometryDto::to_geo)
            .map_err(|reason| GeoError::Feature {
                path: path.to_owned(),
                line: n + 2,
                reason: format!("territory {}: {reason}", f.properties.id),
            })?;
        out.insert(f.properties.id.clone(), (f.properties, geom));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
