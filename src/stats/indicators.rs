//! The indicators of the common statistics schema and the record that carries them.
//!
//! Rule kept here: a count is a non-negative integer, the delay a finite non-negative
//! decimal; `None` always means "not counted by this CPTS", never zero.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One indicator of the schema. The order of [`Indicator::ALL`] is the canonical order
/// (columns of exports, `Indicators::NAMES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Indicator {
    RequestsReceived,
    RequestsHandled,
    RequestsFromRegulation,
    ConsultationsDone,
    RedirectedEmergency,
    RedirectedOther,
    NoShows,
    SlotsOffered,
    SlotsUsed,
    ParticipatingProfessionals,
    MedianDelayHours,
}

impl Indicator {
    /// Every indicator, in canonical order.
    pub const ALL: [Indicator; 11] = [
        Self::RequestsReceived,
        Self::RequestsHandled,
        Self::RequestsFromRegulation,
        Self::ConsultationsDone,
        Self::RedirectedEmergency,
        Self::RedirectedOther,
        Self::NoShows,
        Self::SlotsOffered,
        Self::SlotsUsed,
        Self::ParticipatingProfessionals,
        Self::MedianDelayHours,
    ];

    /// The integer (count) indicators, in canonical order.
    pub const COUNTS: [Indicator; 10] = [
        Self::RequestsReceived,
        Self::RequestsHandled,
        Self::RequestsFromRegulation,
        Self::ConsultationsDone,
        Self::RedirectedEmergency,
        Self::RedirectedOther,
        Self::NoShows,
        Self::SlotsOffered,
        Self::SlotsUsed,
        Self::ParticipatingProfessionals,
    ];

    /// Canonical snake_case name (CSV header, JSON key).
    pub fn name(self) -> &'static str {
        match self {
            Self::RequestsReceived => "requests_received",
            Self::RequestsHandled => "requests_handled",
            Self::RequestsFromRegulation => "requests_from_regulation",
            Self::ConsultationsDone => "consultations_done",
            Self::RedirectedEmergency => "redirected_emergency",
            Self::RedirectedOther => "redirected_other",
            Self::NoShows => "no_shows",
            Self::SlotsOffered => "slots_offered",
            Self::SlotsUsed => "slots_used",
            Self::ParticipatingProfessionals => "participating_professionals",
            Self::MedianDelayHours => "median_delay_hours",
        }
    }

    /// French label, as written in the `fr-tableur` and `mensuel-large` presets.
    pub fn label_fr(self) -> &'static str {
        match self {
            Self::RequestsReceived => "Demandes reçues",
            Self::RequestsHandled => "Demandes prises en charge",
            Self::RequestsFromRegulation => "Dont orientées par la régulation",
            Self::ConsultationsDone => "Consultations réalisées",
            Self::RedirectedEmergency => "Réorientations urgences",
            Self::RedirectedOther => "Autres réorientations",
            Self::NoShows => "Patients non venus",
            Self::SlotsOffered => "Créneaux proposés",
            Self::SlotsUsed => "Créneaux utilisés",
            Self::ParticipatingProfessionals => "Professionnels participants",
            Self::MedianDelayHours => "Délai médian (h)",
        }
    }

    /// `true` for the integer indicators, `false` for `median_delay_hours`.
    pub fn is_count(self) -> bool {
        self != Self::MedianDelayHours
    }

    /// Looks an indicator up by canonical name (exact).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// The indicators of one record. Every field is optional (a CPTS may not count
/// everything); a valid record has at least one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Indicators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_received: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_handled: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_from_regulation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultations_done: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirected_emergency: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirected_other: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_shows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_offered: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participating_professionals: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_delay_hours: Option<f64>,
}

impl Indicators {
    /// Canonical indicator names, in canonical order.
    pub const NAMES: [&'static str; 11] = [
        "requests_received",
        "requests_handled",
        "requests_from_regulation",
        "consultations_done",
        "redirected_emergency",
        "redirected_other",
        "no_shows",
        "slots_offered",
        "slots_used",
        "participating_professionals",
        "median_delay_hours",
    ];

    /// `(canonical name, French label)` pairs, in canonical order.
    pub const LABELS_FR: [(&'static str, &'static str); 11] = [
        ("requests_received", "Demandes reçues"),
        ("requests_handled", "Demandes prises en charge"),
        (
            "requests_from_regulation",
            "Dont orientées par la régulation",
        ),
        ("consultations_done", "Consultations réalisées"),
        ("redirected_emergency", "Réorientations urgences"),
        ("redirected_other", "Autres réorientations"),
        ("no_shows", "Patients non venus"),
        ("slots_offered", "Créneaux proposés"),
        ("slots_used", "Créneaux utilisés"),
        ("participating_professionals", "Professionnels participants"),
        ("median_delay_hours", "Délai médian (h)"),
    ];

    /// The value of a count indicator (`None` for `MedianDelayHours`).
    pub fn count(&self, i: Indicator) -> Option<u64> {
        match i {
            Indicator::RequestsReceived => self.requests_received,
            Indicator::RequestsHandled => self.requests_handled,
            Indicator::RequestsFromRegulation => self.requests_from_regulation,
            Indicator::ConsultationsDone => self.consultations_done,
            Indicator::RedirectedEmergency => self.redirected_emergency,
            Indicator::RedirectedOther => self.redirected_other,
            Indicator::NoShows => self.no_shows,
            Indicator::SlotsOffered => self.slots_offered,
            Indicator::SlotsUsed => self.slots_used,
            Indicator::ParticipatingProfessionals => self.participating_professionals,
            Indicator::MedianDelayHours => None,
        }
    }

    /// Sets a count indicator; ignored for `MedianDelayHours` (use the field).
    pub fn set_count(&mut self, i: Indicator, v: Option<u64>) {
        let slot = match i {
            Indicator::RequestsReceived => &mut self.requests_received,
            Indicator::RequestsHandled => &mut self.requests_handled,
            Indicator::RequestsFromRegulation => &mut self.requests_from_regulation,
            Indicator::ConsultationsDone => &mut self.consultations_done,
            Indicator::RedirectedEmergency => &mut self.redirected_emergency,
            Indicator::RedirectedOther => &mut self.redirected_other,
            Indicator::NoShows => &mut self.no_shows,
            Indicator::SlotsOffered => &mut self.slots_offered,
            Indicator::SlotsUsed => &mut self.slots_used,
            Indicator::ParticipatingProfessionals => &mut self.participating_professionals,
            Indicator::MedianDelayHours => return,
        };
        *slot = v;
    }

    /// `true` when no indicator at all is present.
    pub fn is_empty(&self) -> bool {
        self.median_delay_hours.is_none()
            && Indicator::COUNTS.iter().all(|&i| self.count(i).is_none())
    }
}

/// One statistics record: a CPTS × inclusive period × optional profession.
///
/// `line` locates the record in its upload: for CSV the physical line where its row
/// starts (the header is line 1); for JSON the 1-based position of the record in the array.
#[derive(Debug, Clone, PartialEq)]
pub struct StatRecord {
    pub cpts_id: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    /// TRE_G15 profession code (`"10"` médecin, `"60"` infirmier…); `None` = all professions.
    pub profession: Option<String>,
    pub indicators: Indicators,
    pub line: usize,
}

impl StatRecord {
    /// The canonical JSON record (the shape described by `src/stats/schema.json`).
    pub fn to_canonical_json(&self) -> serde_json::Value {
        let mut obj = serde_json::Map::new();
        obj.insert("cpts_id".into(), self.cpts_id.clone().into());
        obj.insert("period_start".into(), self.period_start.to_string().into());
        obj.insert("period_end".into(), self.period_end.to_string().into());
        if let Some(p) = &self.profession {
            obj.insert("profession".into(), p.clone().into());
        }
        if let serde_json::Value::Object(ind) =
            serde_json::to_value(&self.indicators).unwrap_or(serde_json::Value::Null)
        {
            obj.extend(ind);
        }
        serde_json::Value::Object(obj)
    }

    /// Number of days covered, both ends included (0 or less if the period is inverted).
    pub fn period_days(&self) -> i64 {
        (self.period_end - self.period_start).num_days() + 1
    }
}
