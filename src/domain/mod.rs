//! Validated domain types: built by parsing (never by trusting), free of I/O.
//!
//! Wire DTOs (serde, one per format) convert into these types through explicit,
//! tested functions; storage rows convert from and to them in `store/`.

pub mod slot;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The five departments of Pays de la Loire (region 52).
pub const DEPARTMENTS: [&str; 5] = ["44", "49", "53", "72", "85"];

/// Mean Earth radius used for great-circle distances (IUGG, metres).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS84 position. Latitude in [-90, 90], longitude in [-180, 180], both finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// Why a coordinate pair was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoordError {
    #[error("latitude {0} is not a number between -90 and 90")]
    Lat(f64),
    #[error("longitude {0} is not a number between -180 and 180")]
    Lon(f64),
}

impl LatLon {
    /// Validates a latitude/longitude pair.
    pub fn new(lat: f64, lon: f64) -> Result<Self, CoordError> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(CoordError::Lat(lat));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(CoordError::Lon(lon));
        }
        Ok(Self { lat, lon })
    }

    /// Great-circle (haversine) distance in metres.
    pub fn distance_m(self, other: LatLon) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }
}

/// A 5-character INSEE commune code (`44109`, `2A004`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InseeCode(String);

impl InseeCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Department code (first two characters; `97x` overseas codes are not in scope).
    pub fn department(&self) -> &str {
        &self.0[..2]
    }
}

impl FromStr for InseeCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let ok = s.len() == 5
            && s.is_ascii()
            && (s[..2].chars().all(|c| c.is_ascii_digit())
                || s[..2].eq_ignore_ascii_case("2A")
                || s[..2].eq_ignore_ascii_case("2B"))
            && s[2..].chars().all(|c| c.is_ascii_digit());
        if ok {
            Ok(Self(s.to_ascii_uppercase()))
        } else {
            Err(format!(
                "`{s}` is not an INSEE commune code (5 characters, e.g. 44109)"
            ))
        }
    }
}

impl TryFrom<String> for InseeCode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<InseeCode> for String {
    fn from(c: InseeCode) -> String {
        c.0
    }
}

impl fmt::Display for InseeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A French postal code: exactly 5 ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Postcode(String);

impl Postcode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Postcode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() == 5 && s.chars().all(|c| c.is_ascii_digit()) {
            Ok(Self(s.to_string()))
        } else {
            Err(format!("`{s}` is not a postal code (5 digits)"))
        }
    }
}

impl TryFrom<String> for Postcode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Postcode> for String {
    fn from(c: Postcode) -> String {
        c.0
    }
}

impl fmt::Display for Postcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an account may do. `Cpts` accounts are scoped to one CPTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Analyst,
    Cpts,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Analyst => "analyst",
            Role::Cpts => "cpts",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "analyst" => Ok(Role::Analyst),
            "cpts" => Ok(Role::Cpts),
            other => Err(format!(
                "unknown role `{other}` (admin, operator, analyst, cpts)"
            )),
        }
    }
}

/// Folds a name for matching: accents removed, lower case, every run of
/// non-alphanumeric characters (spaces, hyphens, apostrophes, `_`) turned into one space.
/// `Saint-Nazaire`, `saint nazaire` and `SAINT_NAZAIRE` fold to the same key.
pub fn fold_name(s: &str) -> String {
    let ascii = deunicode::deunicode(s).to_ascii_lowercase();
    let mut out = String::with_capacity(ascii.len());
    for word in ascii
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latlon_rejects_out_of_range_and_nan() {
        assert!(LatLon::new(47.2, -1.55).is_ok());
        assert_eq!(LatLon::new(91.0, 0.0), Err(CoordError::Lat(91.0)));
        assert!(LatLon::new(f64::NAN, 0.0).is_err());
        assert_eq!(LatLon::new(0.0, -181.0), Err(CoordError::Lon(-181.0)));
    }

    #[test]
    fn haversine_nantes_angers_is_about_80_km() {
        let nantes = LatLon::new(47.2184, -1.5536).unwrap();
        let angers = LatLon::new(47.4784, -0.5632).unwrap();
        let d = nantes.distance_m(angers) / 1000.0;
        assert!((79.0..81.0).contains(&d), "{d}");
        assert_eq!(nantes.distance_m(nantes), 0.0);
    }

    #[test]
    fn insee_and_postcode_parse() {
        assert_eq!("44109".parse::<InseeCode>().unwrap().department(), "44");
        assert!("2a004".parse::<InseeCode>().is_ok());
        assert!("4410".parse::<InseeCode>().is_err());
        assert!("4410A".parse::<InseeCode>().is_err());
        assert!("44000".parse::<Postcode>().is_ok());
        assert!("4400".parse::<Postcode>().is_err());
    }

    #[test]
    fn fold_name_ignores_accents_case_and_separators() {
        assert_eq!(fold_name("Saint-Nazaire"), "saint nazaire");
        assert_eq!(fold_name("  saint  nazaire "), "saint nazaire");
        assert_eq!(fold_name("Les Sables-d'Olonne"), "les sables d olonne");
        assert_eq!(fold_name("Évron"), "evron");
    }
}
