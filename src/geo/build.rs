//! `sasnp geodata build`: derives `geodata/` from the open data in `../shared/geodata-src/`
//! (france-geojson 2018 polygons + decoupage-administratif COG 2026 lists).
//!
//! Rules kept:
//! - one commune per 2026 `commune-actuelle` of the five departments; its outline is the union
//!   of the 2018 polygons mapped to it (SOURCES.md §3: same code, else the `chefLieu` of a
//!   delegated/associated commune, else the commune whose `anciensCodes` holds it); a single
//!   source polygon is kept as is (already simplified, topology-consistent with its
//!   neighbours), no further simplification; coordinates rounded to 5 decimals;
//! - the communes in [`SPLIT_COMMUNES`] have no polygon: they point to their parent's
//!   (see the [module doc](super)); any *other* commune without a polygon is an error;
//! - every interior point is checked to locate back to its commune before anything is written;
//! - the perimeters CSV already in `out` is kept (a region's official list) unless
//!   `regenerate_perimeters`; otherwise the default is one territory per EPCI (members in the
//!   region only), plus one territory per commune in no EPCI (85113 L'Île-d'Yeu);
//! - output is deterministic: the same input gives byte-identical files.

use super::files::{self, CommuneProps, FeatureDto, GeometryDto, TerritoryProps, round5};
use super::names::name_key;
use super::perimeters::{self, TerritoryDef};
use super::{COMMUNES_FILE, PERIMETERS_FILE, TERRITORIES_FILE, index::Locator, shape};
use crate::domain::{DEPARTMENTS, InseeCode};
use anyhow::{Context, anyhow, bail, ensure};
use geo::{CoordinatePosition, InteriorPoint, MultiPolygon, coordinate_position::CoordPos};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// Current communes without a polygon in the 2018 source, and the commune whose 2018 polygon
/// covers them: 85165 L'Oie and 85212 Sainte-Florence, split out of 85084 Essarts-en-Bocage in
/// 2024. They get no geometry, the parent's interior point, and `polygon_of` = the parent.
pub const SPLIT_COMMUNES: [(&str, &str); 2] = [("85165", "85084"), ("85212", "85084")];

/// Options of [`build_with`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Regenerate the EPCI-based default perimeters even if `out` already has a CSV.
    pub regenerate_perimeters: bool,
}

/// Where the CPTS perimeters came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PerimetersSource {
    /// Generated from EPCI membership (and written).
    GeneratedFromEpci,
    /// Read from the existing CSV (left untouched).
    Existing(PathBuf),
}

/// What a build did (printable).
#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// Current communes written (COG 2026).
    pub communes: usize,
    /// Of which with a polygon of their own.
    pub communes_with_polygon: usize,
    /// 2018 polygons read.
    pub polygons_read: usize,
    /// 2018 polygons mapped by §3 rule 1 (same code), 2 (`chefLieu`), 3 (`anciensCodes`).
    pub polygons_mapped: [usize; 3],
    /// Communes whose outline is a union of several 2018 polygons.
    pub communes_unioned: usize,
    pub territories: usize,
    /// Communes listed in no territory.
    pub communes_without_territory: usize,
    pub perimeters: PerimetersSource,
    /// Files written, with their size in bytes.
    pub files: Vec<(PathBuf, u64)>,
    pub notes: Vec<String>,
}

impl fmt::Display for BuildSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "communes: {} (COG 2026), {} with their own polygon, {} unions of several 2018 polygons",
            self.communes, self.communes_with_polygon, self.communes_unioned
        )?;
        let [a, b, c] = self.polygons_mapped;
        writeln!(
            f,
            "2018 polygons: {} read, mapped {} by code, {} by chefLieu, {} by anciensCodes",
            self.polygons_read, a, b, c
        )?;
        let source = match &self.perimeters {
            PerimetersSource::GeneratedFromEpci => {
                "generated from EPCI (approximation)".to_string()
            }
            PerimetersSource::Existing(p) => format!("read from {}", p.display()),
        };
        writeln!(
            f,
            "territories: {} ({source}); communes in no territory: {}",
            self.territories, self.communes_without_territory
        )?;
        for (p, size) in &self.files {
            writeln!(f, "wrote {} ({size} bytes)", p.display())?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RawCommune {
    code: String,
    nom: String,
    #[serde(rename = "type")]
    kind: String,
    departement: String,
    #[serde(default, rename = "codesPostaux")]
    codes_postaux: Vec<String>,
    #[serde(default)]
    population: Option<u32>,
    #[serde(default, rename = "chefLieu")]
    chef_lieu: Option<String>,
    #[serde(default, rename = "anciensCodes")]
    anciens_codes: Vec<String>,
}

#[derive(Deserialize)]
struct RawEpci {
    code: String,
    nom: String,
    membres: Vec<RawMember>,
}

#[derive(Deserialize)]
struct RawMember {
    code: String,
}

/// Builds `out` from `src` with default options (keeps an existing perimeters CSV).
pub fn build(src: &Path, out: &Path) -> anyhow::Result<BuildSummary> {
    build_with(src, out, &BuildOptions::default())
}

/// Builds `communes.geojson`, `territories.geojson` and (when absent or asked) the default
/// `cpts-perimeters.csv` into `out` from the source folder `src`.
pub fn build_with(src: &Path, out: &Path, opts: &BuildOptions) -> anyhow::Result<BuildSummary> {
    let deco = src.join("decoupage-administratif");
    let raw: Vec<RawCommune> = read_json(&deco.join("communes.json"))?;
    let epcis: Vec<RawEpci> = read_json(&deco.join("epci.json"))?;
    let mut notes = Vec::new();

    // Current communes, sorted by INSEE code.
    let mut current: BTreeMap<String, &RawCommune> = BTreeMap::new();
    for c in raw.iter().filter(|c| c.kind == "commune-actuelle") {
        ensure!(
            DEPARTMENTS.contains(&c.departement.as_str()),
            "commune {} is outside the region",
            c.code
        );
        ensure!(
            current.insert(c.code.clone(), c).is_none(),
            "commune-actuelle {} listed twice",
            c.code
        );
    }
    ensure!(
        !current.is_empty(),
        "no commune-actuelle in {}",
        deco.display()
    );
    let idx: HashMap<&str, usize> = current
        .keys()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut chef_lieu: HashMap<&str, &str> = HashMap::new();
    let mut former: HashMap<&str, &str> = HashMap::new();
    let mut aliases: Vec<Vec<String>> = vec![Vec::new(); current.len()];
    for c in &raw {
        if c.kind == "commune-actuelle" {
            for old in &c.anciens_codes {
                if let Some(prev) = former.insert(old.as_str(), c.code.as_str()) {
                    bail!("former code {old} claimed by both {prev} and {}", c.code);
                }
            }
        } else if let Some(parent) = c.chef_lieu.as_deref() {
            let &i = idx.get(parent).ok_or_else(|| {
                anyhow!(
                    "{} {} ({}): chefLieu {parent} is not a current commune",
                    c.kind,
                    c.code,
                    c.nom
                )
            })?;
            chef_lieu.entry(c.code.as_str()).or_insert(parent);
            if name_key(&c.nom) != name_key(&current[parent].nom) && !aliases[i].contains(&c.nom) {
                aliases[i].push(c.nom.clone());
            }
        }
    }
    for a in &mut aliases {
        a.sort_by(|x, y| name_key(x).cmp(&name_key(y)).then_with(|| x.cmp(y)));
    }

    // 2018 polygons → 2026 codes (SOURCES.md §3).
    let mut parts: Vec<Vec<MultiPolygon<f64>>> = vec![Vec::new(); current.len()];
    let mut polygons_read = 0;
    let mut mapped = [0usize; 3];
    for dept in DEPARTMENTS {
        let path = source_polygons(&src.join("france-geojson"), dept)?;
        for (code, geom) in read_source_polygons(&path)? {
            polygons_read += 1;
            let (target, rule) = if idx.contains_key(code.as_str()) {
                (code.as_str(), 0)
            } else if let Some(p) = chef_lieu.get(code.as_str()) {
                (*p, 1)
            } else if let Some(p) = former.get(code.as_str()) {
                (*p, 2)
            } else {
                bail!(
                    "{}: polygon {code} maps to no current commune",
                    path.display()
                );
            };
            ensure!(
                target.starts_with(dept),
                "{}: polygon {code} maps to {target}, in another department",
                path.display()
            );
            mapped[rule] += 1;
            parts[idx[target]].push(geom);
        }
    }

    // Final outlines, then interior points checked against the index.
    let codes: Vec<&String> = current.keys().collect();
    let mut geometries: Vec<Option<MultiPolygon<f64>>> = Vec::with_capacity(codes.len());
    let mut communes_unioned = 0;
    for (i, code) in codes.iter().enumerate() {
        geometries.push(match parts[i].len() {
            0 => {
                ensure!(
                    SPLIT_COMMUNES.iter().any(|(c, _)| c == code),
                    "commune {code} ({}) has no 2018 polygon and is not a known split commune",
                    current[*code].nom
                );
                None
            }
            1 => Some(shape::clean(&parts[i][0])),
            _ => {
                communes_unioned += 1;
                Some(shape::union_all(&parts[i]))
            }
        });
    }
    let locator = Locator::new(
        geometries
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().map(|g| (i, g))),
    );
    let mut interiors: Vec<Option<[f64; 2]>> = geometries
        .iter()
        .enumerate()
        .map(|(i, g)| {
            g.as_ref()
                .map(|g| interior_point(g, i, &locator, codes[i]))
                .transpose()
        })
        .collect::<anyhow::Result<_>>()?;
    for (child, parent) in SPLIT_COMMUNES {
        if let (Some(&c), Some(&p)) = (idx.get(child), idx.get(parent)) {
            ensure!(
                geometries[p].is_some(),
                "split commune {child}: parent {parent} has no polygon"
            );
            interiors[c] = interiors[p];
            notes.push(format!(
                "{child} {} has no polygon of its own: it shares the 2018 polygon of {parent} {} (interior point = the parent's; point lookup answers {parent})",
                current[child].nom, current[parent].nom
            ));
        }
    }

    // Perimeters: existing CSV, or the EPCI default.
    let csv_path = out.join(PERIMETERS_FILE);
    let known = |c: &InseeCode| idx.contains_key(c.as_str());
    let (defs, perimeters_source, csv_text) = if csv_path.exists() && !opts.regenerate_perimeters {
        let defs = perimeters::read_perimeters(&csv_path, known)?;
        (defs, PerimetersSource::Existing(csv_path.clone()), None)
    } else {
        let defs = epci_territories(&current, &epcis, &mut notes)?;
        let text = perimeters::write_perimeters(&defs);
        (defs, PerimetersSource::GeneratedFromEpci, Some(text))
    };
    let mut cpts_of: Vec<Option<&str>> = vec![None; codes.len()];
    for d in &defs {
        for c in &d.communes {
            cpts_of[idx[c.as_str()]] = Some(&d.id);
        }
    }
    let communes_without_territory = cpts_of.iter().filter(|c| c.is_none()).count();

    // communes.geojson
    let commune_features: Vec<FeatureDto<CommuneProps>> = codes
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let c = current[*code];
            FeatureDto {
                kind: "Feature".into(),
                properties: CommuneProps {
                    insee: c.code.clone(),
                    name: c.nom.clone(),
                    department: c.departement.clone(),
                    postcodes: c.codes_postaux.clone(),
                    population: c.population.unwrap_or(0),
                    interior: interiors[i].expect("every commune has a polygon or a parent"),
                    cpts_id: cpts_of[i].map(str::to_string),
                    aliases: aliases[i].clone(),
                    polygon_of: SPLIT_COMMUNES
                        .iter()
                        .find(|(k, _)| k == code)
                        .map(|(_, p)| p.to_string()),
                },
                geometry: geometries[i].as_ref().map(GeometryDto::from_geo),
            }
        })
        .collect();
    for c in current
        .values()
        .filter(|c| c.codes_postaux.is_empty() || c.population.is_none())
    {
        notes.push(format!(
            "commune {} {} has no postal code or no population",
            c.code, c.nom
        ));
    }

    // territories.geojson
    let territory_features: Vec<FeatureDto<TerritoryProps>> = defs
        .iter()
        .map(|d| FeatureDto {
            kind: "Feature".into(),
            properties: TerritoryProps {
                id: d.id.clone(),
                name: d.name.clone(),
                department: d.department.clone(),
                finess: d.finess.clone(),
                communes: d.communes.iter().map(|c| c.to_string()).collect(),
            },
            geometry: Some(GeometryDto::from_geo(&shape::union_all(
                d.communes
                    .iter()
                    .filter_map(|c| geometries[idx[c.as_str()]].as_ref()),
            ))),
        })
        .collect();

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    written.push(write_file(
        &out.join(COMMUNES_FILE),
        &files::write_collection(&commune_features),
    )?);
    written.push(write_file(
        &out.join(TERRITORIES_FILE),
        &files::write_collection(&territory_features),
    )?);
    if let Some(text) = csv_text {
        written.push(write_file(&csv_path, &text)?);
    }

    Ok(BuildSummary {
        communes: codes.len(),
        communes_with_polygon: geometries.iter().filter(|g| g.is_some()).count(),
        polygons_read,
        polygons_mapped: mapped,
        communes_unioned,
        territories: defs.len(),
        communes_without_territory,
        perimeters: perimeters_source,
        files: written,
        notes,
    })
}

/// An interior point of `g`, rounded as coarsely as possible (5 decimals, else finer) while
/// still strictly inside `g` and locating back to commune `i`.
fn interior_point(
    g: &MultiPolygon<f64>,
    i: usize,
    locator: &Locator,
    code: &str,
) -> anyhow::Result<[f64; 2]> {
    let p = g
        .interior_point()
        .ok_or_else(|| anyhow!("commune {code}: empty geometry"))?;
    let candidates = [
        [round5(p.x()), round5(p.y())],
        [(p.x() * 1e7).round() / 1e7, (p.y() * 1e7).round() / 1e7],
        [p.x(), p.y()],
    ];
    candidates
        .into_iter()
        .find(|&[x, y]| {
            g.coordinate_position(&geo::Coord { x, y }) == CoordPos::Inside
                && locator.locate(x, y) == Some(i)
        })
        .ok_or_else(|| {
            anyhow!(
                "commune {code}: its interior point ({}, {}) does not locate back to it",
                p.x(),
                p.y()
            )
        })
}

/// Default perimeters: one territory per EPCI with members in the region (id `cpts-<SIREN>`,
/// name `CPTS <EPCI name>`, department holding most of its member population), plus one per
/// commune in no EPCI (id `cpts-<INSEE>`). Ordered by department then id; members by INSEE.
fn epci_territories(
    current: &BTreeMap<String, &RawCommune>,
    epcis: &[RawEpci],
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<TerritoryDef>> {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    let mut defs = Vec::new();
    let make = |id: String, name: String, members: Vec<&RawCommune>| {
        let mut pop: BTreeMap<&str, u64> = BTreeMap::new();
        for m in &members {
            *pop.entry(m.departement.as_str()).or_default() += u64::from(m.population.unwrap_or(0));
        }
        // Most population; ties go to the smallest department code.
        let department = pop
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let mut communes: Vec<InseeCode> =
            members.iter().filter_map(|m| m.code.parse().ok()).collect();
        communes.sort();
        TerritoryDef {
            id,
            name,
            department,
            finess: None,
            communes,
        }
    };
    for e in epcis {
        let members: Vec<&RawCommune> = e
            .membres
            .iter()
            .filter_map(|m| current.get(&m.code).copied())
            .collect();
        if members.is_empty() {
            continue;
        }
        for m in &members {
            if let Some(prev) = owner.insert(m.code.as_str(), e.code.as_str()) {
                bail!(
                    "commune {} is a member of two EPCI: {prev} and {}",
                    m.code,
                    e.code
                );
            }
        }
        if members.len() < e.membres.len() {
            notes.push(format!(
                "EPCI {} {}: {} of its {} members are outside the region and left out",
                e.code,
                e.nom,
                e.membres.len() - members.len(),
                e.membres.len()
            ));
        }
        defs.push(make(
            format!("cpts-{}", e.code),
            format!("CPTS {}", e.nom),
            members,
        ));
    }
    for c in current
        .values()
        .filter(|c| !owner.contains_key(c.code.as_str()))
    {
        notes.push(format!(
            "commune {} {} is in no EPCI: own territory cpts-{}",
            c.code, c.nom, c.code
        ));
        defs.push(make(
            format!("cpts-{}", c.code),
            format!("CPTS {}", c.nom),
            vec![*c],
        ));
    }
    defs.sort_by(|a, b| {
        a.department
            .cmp(&b.department)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(defs)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// The `communes-<dept>-*.geojson` file of a department.
fn source_polygons(dir: &Path, dept: &str) -> anyhow::Result<PathBuf> {
    let prefix = format!("communes-{dept}-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".geojson"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => bail!(
            "expected one {prefix}*.geojson in {}, found {n}",
            dir.display()
        ),
    }
}

/// `(code, geometry)` of every feature of a france-geojson commune file.
fn read_source_polygons(path: &Path) -> anyhow::Result<Vec<(String, MultiPolygon<f64>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let fc: geojson::FeatureCollection = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let mut out = Vec::with_capacity(fc.features.len());
    for (n, f) in fc.features.into_iter().enumerate() {
        let code = f
            .property("code")
            .and_then(|v| v.as_str())
            .ok_or_else(|| anyhow!("{}: feature {n} has no string `code`", path.display()))?
            .to_string();
        let geom = f
            .geometry
            .ok_or_else(|| anyhow!("{}: feature {n} ({code}) has no geometry", path.display()))?;
        let mp = match geo::Geometry::<f64>::try_from(geom.value)
            .with_context(|| format!("{}: feature {n} ({code})", path.display()))?
        {
            geo::Geometry::Polygon(p) => MultiPolygon(vec![p]),
            geo::Geometry::MultiPolygon(mp) => mp,
            _ => bail!(
                "{}: feature {n} ({code}) is not a (Multi)Polygon",
                path.display()
            ),
        };
        out.push((code, mp));
    }
    Ok(out)
}

/// Writes through a temporary file and a rename, so a failed build never leaves half a file.
fn write_file(path: &Path, text: &str) -> anyhow::Result<(PathBuf, u64)> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok((path.to_owned(), text.len() as u64))
}
