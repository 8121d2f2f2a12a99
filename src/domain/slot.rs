//! The one slot model every feed format is normalised into.
//!
//! Rules kept here: instants are UTC; a place always has a position (given, or the
//! interior point of its commune) with the precision recorded; a slot belongs to
//! exactly one place of the same feed (`place_key`); external ids are unique per source.
//!
//! What the slots of one schedule share (place key, practitioner, structure, phone) is held
//! behind an `Arc`: normalising a slot copies pointers, not strings (a 1 M-slot feed has a
//! few thousand practitioners).

use super::{InseeCode, LatLon, Postcode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How a place's position was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationPrecision {
    /// Coordinates given by the feed (and checked against the region).
    Exact,
    /// No coordinates: the interior point of the commune named by postcode/city.
    Commune,
}

impl LocationPrecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Commune => "commune",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "exact" => Some(Self::Exact),
            "commune" => Some(Self::Commune),
            _ => None,
        }
    }
}

/// Where the consultation takes place (v3-ActCode as used by the SAS IG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Modality {
    /// Consultation at the practice (`AMB`).
    #[serde(rename = "AMB")]
    Ambulatory,
    /// Home visit (`HH`).
    #[serde(rename = "HH")]
    HomeVisit,
    /// Teleconsultation (`VR`).
    #[serde(rename = "VR")]
    Teleconsultation,
}

impl Modality {
    pub fn code(self) -> &'static str {
        match self {
            Self::Ambulatory => "AMB",
            Self::HomeVisit => "HH",
            Self::Teleconsultation => "VR",
        }
    }
    /// Accepts the ActCode (`AMB`, `HH`, `VR`) and the French words used in spreadsheets.
    pub fn parse(s: &str) -> Option<Self> {
        match super::fold_name(s).as_str() {
            "amb" | "cabinet" | "consultation" | "presentiel" | "ambulatoire" => {
                Some(Self::Ambulatory)
            }
            "hh" | "domicile" | "visite" | "visite a domicile" => Some(Self::HomeVisit),
            "vr" | "teleconsultation" | "video" => Some(Self::Teleconsultation),
            _ => None,
        }
    }
}

/// FHIR `Slot.appointmentType` (v2-0276) values the SAS uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AppointmentType {
    Routine,
    Walkin,
}

impl AppointmentType {
    pub fn code(self) -> &'static str {
        match self {
            Self::Routine => "ROUTINE",
            Self::Walkin => "WALKIN",
        }
    }
    /// The code, ASCII case ignored (no allocation: it runs once per slot).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [Self::Routine, Self::Walkin]
            .into_iter()
            .find(|x| x.code().eq_ignore_ascii_case(s))
    }
}

/// Who may see a slot (`Slot.meta.security`, TRE_R314 TypeCreneau).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Audience {
    Public,
    Pro,
    Snp,
    Cpts,
}

impl Audience {
    pub fn code(self) -> &'static str {
        match self {
            Self::Public => "PUBLIC",
            Self::Pro => "PRO",
            Self::Snp => "SNP",
            Self::Cpts => "CPTS",
        }
    }
    /// The code, ASCII case ignored (no allocation: it runs once per slot).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [Self::Public, Self::Pro, Self::Snp, Self::Cpts]
            .into_iter()
            .find(|x| x.code().eq_ignore_ascii_case(s))
    }
    /// Bit used in [`AudienceSet`].
    const fn bit(self) -> u8 {
        match self {
            Self::Public => 1,
            Self::Pro => 2,
            Self::Snp => 4,
            Self::Cpts => 8,
        }
    }
}

/// A set of audiences, stored as a small bit set (`PUBLIC`=1, `PRO`=2, `SNP`=4, `CPTS`=8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AudienceSet(pub u8);

impl AudienceSet {
    pub fn insert(&mut self, a: Audience) {
        self.0 |= a.bit();
    }
    pub fn contains(self, a: Audience) -> bool {
        self.0 & a.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether an SNP operator may offer this slot: visible to SNP, CPTS or PUBLIC.
    /// A slot with no declared audience is treated as offered to the SAS.
    pub fn visible_to_operators(self) -> bool {
        self.is_empty()
            || self.0 & (Audience::Public.bit() | Audience::Snp.bit() | Audience::Cpts.bit()) != 0
    }
    pub fn codes(self) -> Vec<&'static str> {
        [
            Audience::Public,
            Audience::Pro,
            Audience::Snp,
            Audience::Cpts,
        ]
        .into_iter()
        .filter(|a| self.contains(*a))
        .map(Audience::code)
        .collect()
    }
}

/// Status of a slot as published by its feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedStatus {
    /// Offered.
    Free,
    /// Taken at the publisher (`busy`, `busy-unavailable`, `busy-tentative`).
    Busy,
}

impl FeedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Busy => "busy",
        }
    }
}

/// Kind of structure offering a slot when it is not one practitioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StructureKind {
    Cpts,
    Msp,
    Cds,
    Sos,
    Other,
}

impl StructureKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::Cpts => "CPTS",
            Self::Msp => "MSP",
            Self::Cds => "CDS",
            Self::Sos => "SOS",
            Self::Other => "OTHER",
        }
    }
    /// The code, ASCII case ignored.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        [Self::Cpts, Self::Msp, Self::Cds, Self::Sos, Self::Other]
            .into_iter()
            .find(|x| x.code().eq_ignore_ascii_case(s))
    }
}

/// The professional who sees the patient.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Practitioner {
    /// National identifier with its SAS prefix: `8` + RPPS (11 digits) or `0` + ADELI.
    pub national_id: Option<String>,
    pub name: Option<String>,
    /// TRE_G15 profession code (`10` médecin, `60` infirmier, …).
    pub profession: Option<String>,
    /// TRE_R38 specialty code (`SM54` médecine générale, …).
    pub specialty: Option<String>,
}

/// A structure offering the slot (CPTS, MSP, centre de santé, SOS Médecins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Structure {
    pub kind: StructureKind,
    /// `1` + FINESS or `3` + SIRET, as in the SAS IG.
    pub national_id: Option<String>,
    pub name: Option<String>,
}

/// A consultation place, unique within a feed by `key`.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// Feed-local identifier (resource id, or a key derived from the address).
    pub key: Arc<str>,
    pub name: Option<String>,
    pub address: Option<String>,
    pub postcode: Option<Postcode>,
    pub city: Option<String>,
    /// The commune the place lies in (resolved offline).
    pub insee: Option<InseeCode>,
    pub position: LatLon,
    pub precision: LocationPrecision,
}

/// One normalised slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// Identifier in the publisher's system; unique per source.
    pub external_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: FeedStatus,
    /// Key of the [`Place`] in the same feed.
    pub place_key: Arc<str>,
    pub practitioner: Option<Arc<Practitioner>>,
    pub structure: Option<Arc<Structure>>,
    pub modality: Modality,
    pub appointment_type: Option<AppointmentType>,
    pub audience: AudienceSet,
    pub surnumeraire: bool,
    pub booking_url: Option<String>,
    pub booking_phone: Option<Arc<str>>,
    /// How many patients the slot can take (SMART SL slot-capacity); 1 when not given.
    pub capacity: u32,
}

/// A feed after parsing and normalisation: what gets stored as a source's snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NormalizedFeed {
    pub places: Vec<Place>,
    pub slots: Vec<Slot>,
}
