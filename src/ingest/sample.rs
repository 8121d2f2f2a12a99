//! A small, fixed geography of real Pays de la Loire towns for tests, benches, demos and the
//! synthetic feed generator. Not the service's geography (that one comes from `geodata/`):
//! it knows only these towns, and "inside the region" means "within 8 km of one of them".

use super::PlaceResolver;
use crate::domain::{InseeCode, LatLon, Postcode, fold_name};

/// A town known to [`SampleResolver`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleTown {
    pub insee: &'static str,
    pub name: &'static str,
    /// Postal codes of the commune (the first is the main one).
    pub postcodes: &'static [&'static str],
    /// An interior point (polygon centroid, IGN ADMIN EXPRESS 2018).
    pub lat: f64,
    pub lon: f64,
    /// Municipal population (INSEE).
    pub population: u32,
}

/// Twenty-five real towns of the five departments (INSEE codes, postcodes and populations
/// from `geodata-src/decoupage-administratif`).
pub const TOWNS: &[SampleTown] = &[
    SampleTown {
        insee: "44109",
        name: "Nantes",
        postcodes: &["44000", "44100", "44200", "44300"],
        lat: 47.2316,
        lon: -1.5483,
        population: 327_734,
    },
    SampleTown {
        insee: "49007",
        name: "Angers",
        postcodes: &["49000", "49100"],
        lat: 47.4784,
        lon: -0.5632,
        population: 159_022,
    },
    SampleTown {
        insee: "72181",
        name: "Le Mans",
        postcodes: &["72000", "72100"],
        lat: 48.0061,
        lon: 0.1996,
        population: 146_249,
    },
    SampleTown {
        insee: "44184",
        name: "Saint-Nazaire",
        postcodes: &["44600"],
        lat: 47.2735,
        lon: -2.2138,
        population: 74_568,
    },
    SampleTown {
        insee: "85191",
        name: "La Roche-sur-Yon",
        postcodes: &["85000"],
        lat: 46.6705,
        lon: -1.4260,
        population: 54_849,
    },
    SampleTown {
        insee: "49099",
        name: "Cholet",
        postcodes: &["49300"],
        lat: 47.0456,
        lon: -0.8775,
        population: 54_404,
    },
    SampleTown {
        insee: "44162",
        name: "Saint-Herblain",
        postcodes: &["44800"],
        lat: 47.2248,
        lon: -1.6341,
        population: 50_973,
    },
    SampleTown {
        insee: "85194",
        name: "Les Sables-d'Olonne",
        postcodes: &["85100", "85180", "85340"],
        lat: 46.5010,
        lon: -1.7930,
        population: 49_603,
    },
    SampleTown {
        insee: "53130",
        name: "Laval",
        postcodes: &["53000"],
        lat: 48.0707,
        lon: -0.7734,
        population: 49_400,
    },
    SampleTown {
        insee: "44143",
        name: "Rezé",
        postcodes: &["44400"],
        lat: 47.1765,
        lon: -1.5500,
        population: 43_556,
    },
    SampleTown {
        insee: "44190",
        name: "Saint-Sébastien-sur-Loire",
        postcodes: &["44230"],
        lat: 47.2029,
        lon: -1.4997,
        population: 28_596,
    },
    SampleTown {
        insee: "49328",
        name: "Saumur",
        postcodes: &["49400"],
        lat: 47.2674,
        lon: -0.0830,
        population: 26_241,
    },
    SampleTown {
        insee: "85047",
        name: "Challans",
        postcodes: &["85300"],
        lat: 46.8355,
        lon: -1.8398,
        population: 22_943,
    },
    SampleTown {
        insee: "44131",
        name: "Pornic",
        postcodes: &["44210"],
        lat: 47.1223,
        lon: -2.0522,
        population: 18_745,
    },
    SampleTown {
        insee: "49331",
        name: "Segré-en-Anjou Bleu",
        postcodes: &["49500", "49520"],
        lat: 47.7062,
        lon: -0.8614,
        population: 17_667,
    },
    SampleTown {
        insee: "44055",
        name: "La Baule-Escoublac",
        postcodes: &["44500"],
        lat: 47.2910,
        lon: -2.3530,
        population: 16_912,
    },
    SampleTown {
        insee: "53062",
        name: "Château-Gontier-sur-Mayenne",
        postcodes: &["53200"],
        lat: 47.8292,
        lon: -0.7387,
        population: 16_584,
    },
    SampleTown {
        insee: "85109",
        name: "Les Herbiers",
        postcodes: &["85500"],
        lat: 46.8668,
        lon: -1.0222,
        population: 16_521,
    },
    SampleTown {
        insee: "72154",
        name: "La Flèche",
        postcodes: &["72200"],
        lat: 47.6892,
        lon: -0.0648,
        population: 14_947,
    },
    SampleTown {
        insee: "85092",
        name: "Fontenay-le-Comte",
        postcodes: &["85200"],
        lat: 46.4563,
        lon: -0.7931,
        population: 14_059,
    },
    SampleTown {
        insee: "53147",
        name: "Mayenne",
        postcodes: &["53100"],
        lat: 48.3073,
        lon: -0.6147,
        population: 12_883,
    },
    SampleTown {
        insee: "72264",
        name: "Sablé-sur-Sarthe",
        postcodes: &["72300"],
        lat: 47.8379,
        lon: -0.3551,
        population: 12_326,
    },
    SampleTown {
        insee: "44036",
        name: "Châteaubriant",
        postcodes: &["44110"],
        lat: 47.7221,
        lon: -1.3869,
        population: 12_260,
    },
    SampleTown {
        insee: "44003",
        name: "Ancenis-Saint-Géréon",
        postcodes: &["44150"],
        lat: 47.3834,
        lon: -1.1821,
        population: 11_600,
    },
    SampleTown {
        insee: "53097",
        name: "Évron",
        postcodes: &["53150", "53600"],
        lat: 48.1523,
        lon: -0.3900,
        population: 8_252,
    },
];

/// Radius around a town's interior point that counts as "in that commune".
pub const SAMPLE_RADIUS_M: f64 = 8_000.0;

/// [`PlaceResolver`] over [`TOWNS`]: `commune_at` is the nearest town within 8 km;
/// `resolve` matches the postcode (disambiguated by city when it names several towns),
/// else the folded city name when it names exactly one town.
#[derive(Debug, Clone)]
pub struct SampleResolver {
    towns: Vec<(SampleTown, InseeCode, LatLon, String)>,
}

impl Default for SampleResolver {
    fn default() -> Self {
        Self::new(TOWNS)
    }
}

impl SampleResolver {
    pub fn new(towns: &[SampleTown]) -> Self {
        let towns = towns
            .iter()
            .map(|t| {
                let insee = t
                    .insee
                    .parse()
                    .expect("sample towns have valid INSEE codes");
                let p = LatLon::new(t.lat, t.lon).expect("sample towns have valid coordinates");
                (*t, insee, p, fold_name(t.name))
            })
            .collect();
        Self { towns }
    }
}

impl PlaceResolver for SampleResolver {
    fn commune_at(&self, p: LatLon) -> Option<InseeCode> {
        self.towns
            .iter()
            .map(|(_, insee, c, _)| (insee, c.distance_m(p)))
            .filter(|(_, d)| *d <= SAMPLE_RADIUS_M)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(insee, _)| insee.clone())
    }

    fn resolve(
        &self,
        postcode: Option<&Postcode>,
        city: Option<&str>,
    ) -> Option<(InseeCode, LatLon)> {
        let city = city.map(fold_name).filter(|c| !c.is_empty());
        let by_city = |name: &String| city.as_ref().is_none_or(|c| c == name);
        let found: Vec<_> = match postcode {
            Some(pc) => {
                let by_pc: Vec<_> = self
                    .towns
                    .iter()
                    .filter(|t| t.0.postcodes.contains(&pc.as_str()))
                    .collect();
                if by_pc.len() > 1 {
                    by_pc.into_iter().filter(|t| by_city(&t.3)).collect()
                } else {
                    by_pc
                }
            }
            None if city.is_some() => self.towns.iter().filter(|t| by_city(&t.3)).collect(),
            None => Vec::new(),
        };
        match found.as_slice() {
            [one] => Some((one.1.clone(), one.2)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_resolver_finds_towns() {
        let r = SampleResolver::default();
        let nantes: InseeCode = "44109".parse().unwrap();
        assert_eq!(
            r.commune_at(LatLon::new(47.2184, -1.5536).unwrap()),
            Some(nantes.clone())
        );
        assert_eq!(r.commune_at(LatLon::new(43.6999, 1.3300).unwrap()), None); // Aussonne (31)
        let pc: Postcode = "44300".parse().unwrap();
        assert_eq!(
            r.resolve(Some(&pc), None).map(|x| x.0),
            Some(nantes.clone())
        );
        assert_eq!(
            r.resolve(None, Some("SAINT NAZAIRE"))
                .map(|x| x.0.to_string()),
            Some("44184".into())
        );
        assert_eq!(r.resolve(None, Some("Aussonne")), None);
        let pc: Postcode = "31840".parse().unwrap();
        assert_eq!(r.resolve(Some(&pc), Some("Aussonne")), None);
    }
}
