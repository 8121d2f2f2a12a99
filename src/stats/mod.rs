//! Standardised statistics uploaded by the CPTS: parsing of the upload presets,
//! consistency rules, and aggregation. Pure: no database, no HTTP, no clock — except
//! [`tally`] (search counters flushed to the database) and [`client`] (the
//! `sasnp stats upload` command, an HTTP client); storage is `store::stats`, the API
//! `http::stats`.
//!
//! Rules kept here (details and rationale in `src/stats/STATS.md`):
//! - an upload is accepted whole or rejected whole: [`parse_upload`] returns either every
//!   record or *every* problem of the file (never only the first one);
//! - problems carry a stable `reason` code (see [`reason`]) and a message in **French**
//!   (the people who fix the files are CPTS coordinators);
//! - consistency rules that contradict the schema's definitions are errors; rules that real
//!   CPTS data breaks for legitimate reasons (period boundaries, extra slots) are warnings.

mod aggregate;
mod cells;
pub mod client;
mod csv_presets;
mod indicators;
mod json;
pub mod tally;
mod validate;

pub use aggregate::{
    AggregateRow, DelayWeighting, GroupBy, GroupValue, StoredRecordView, Summed, aggregate,
    region_of_department, to_csv,
};
pub use indicators::{Indicator, Indicators, StatRecord};
pub use validate::validate;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Stable, machine-readable reason codes of [`Problem`].
pub mod reason {
    // File and header level.
    pub const EMPTY_FILE: &str = "empty_file";
    pub const INVALID_JSON: &str = "invalid_json";
    pub const UNKNOWN_COLUMN: &str = "unknown_column";
    pub const MISSING_COLUMN: &str = "missing_column";
    pub const DUPLICATE_COLUMN: &str = "duplicate_column";
    pub const EXTRA_FIELDS: &str = "extra_fields";
    // Cell level.
    pub const MISSING_VALUE: &str = "missing_value";
    pub const NOT_A_NUMBER: &str = "not_a_number";
    pub const NOT_AN_INTEGER: &str = "not_an_integer";
    pub const NEGATIVE_NUMBER: &str = "negative_number";
    pub const INVALID_DATE: &str = "invalid_date";
    pub const INVALID_PROFESSION: &str = "invalid_profession";
    pub const UNKNOWN_INDICATOR: &str = "unknown_indicator";
    pub const DUPLICATE_ROW: &str = "duplicate_row";
    // Record level (consistency rules), errors.
    pub const NO_INDICATOR: &str = "no_indicator";
    pub const PERIOD_END_BEFORE_START: &str = "period_end_before_start";
    pub const PERIOD_TOO_LONG: &str = "period_too_long";
    pub const HANDLED_EXCEEDS_RECEIVED: &str = "handled_exceeds_received";
    pub const REGULATION_EXCEEDS_RECEIVED: &str = "regulation_exceeds_received";
    pub const DUPLICATE_KEY: &str = "duplicate_key";
    // Record level, warnings.
    pub const USED_EXCEEDS_OFFERED: &str = "used_exceeds_offered";
    pub const CONSULTATIONS_EXCEED_HANDLED: &str = "consultations_exceed_handled";
    pub const OUTCOMES_EXCEED_HANDLED: &str = "outcomes_exceed_handled";
    pub const DELAY_IMPLAUSIBLE: &str = "delay_implausible";
    pub const OVERLAPPING_PERIOD: &str = "overlapping_period";
    pub const TOTAL_WITH_BREAKDOWN: &str = "total_with_breakdown";
    // Checked at upload time by the service (it knows the territories, the caller, the date).
    pub const UNKNOWN_CPTS: &str = "unknown_cpts";
    pub const CPTS_NOT_ALLOWED: &str = "cpts_not_allowed";
    pub const PERIOD_IN_FUTURE: &str = "period_in_future";
    pub const PERIOD_NOT_OVER: &str = "period_not_over";
}

/// Upload presets: which header names, separators and number/date habits to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// snake_case names; CSV (`,` or `;`) or JSON; ISO dates.
    Canonical,
    /// French spreadsheet export: `;`, decimal comma, `DD/MM/YYYY`, UTF-8 or Windows-1252.
    FrTableur,
    /// One row per indicator, one column per month (`2026-09`…).
    MensuelLarge,
}

impl Preset {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canonical => "canonical",
            Self::FrTableur => "fr-tableur",
            Self::MensuelLarge => "mensuel-large",
        }
    }
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "canonical" => Ok(Self::Canonical),
            "fr-tableur" => Ok(Self::FrTableur),
            "mensuel-large" => Ok(Self::MensuelLarge),
            other => Err(format!(
                "unknown statistics preset `{other}` (canonical, fr-tableur, mensuel-large)"
            )),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of body uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadType {
    Csv,
    Json,
}

/// Whether a problem rejects the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The upload is rejected.
    Error,
    /// The upload is accepted; the problem is reported so the CPTS can check its counts.
    Warning,
}

/// One problem found in an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// CSV: physical line (header = 1). JSON: 1-based record position. `None`: whole file.
    pub line: Option<usize>,
    /// The column as written in the file (CSV header, JSON key, or month column for
    /// `mensuel-large`); `None` when the problem concerns a whole line or file.
    pub column: Option<String>,
    pub severity: Severity,
    /// Stable code, one of [`reason`].
    pub reason: String,
    /// In French, for the person who fixes the file.
    pub message: String,
}

impl Problem {
    pub fn error(
        line: Option<usize>,
        column: Option<&str>,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            line,
            column: column.map(str::to_string),
            severity: Severity::Error,
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn warning(
        line: Option<usize>,
        column: Option<&str>,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(line, column, reason, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.column) {
            (Some(l), Some(c)) => write!(f, "ligne {l}, colonne « {c} » : ")?,
            (Some(l), None) => write!(f, "ligne {l} : ")?,
            (None, Some(c)) => write!(f, "colonne « {c} » : ")?,
            (None, None) => {}
        }
        write!(f, "{} [{}]", self.message, self.reason)
    }
}

/// A rejected upload: every problem of the file (errors, and the warnings found alongside),
/// ordered by line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("statistics upload rejected: {} error(s)", self.errors().count())]
pub struct UploadErrors {
    pub problems: Vec<Problem>,
}

impl UploadErrors {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.is_error())
    }
}

/// An accepted upload: its records and the warnings to show the CPTS.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedUpload {
    pub records: Vec<StatRecord>,
    pub warnings: Vec<Problem>,
}

/// Parses and validates an upload; the records only if the file has no error at all.
/// Warnings are dropped here: use [`check_upload`] to show them.
pub fn parse_upload(
    preset: Preset,
    content_type: UploadType,
    bytes: &[u8],
) -> Result<Vec<StatRecord>, UploadErrors> {
    check_upload(preset, content_type, bytes).map(|c| c.records)
}

/// Parses and validates an upload: every record and the warnings, or every problem.
///
/// `Json` is only meaningful with [`Preset::Canonical`]; the other presets are spreadsheets.
pub fn check_upload(
    preset: Preset,
    content_type: UploadType,
    bytes: &[u8],
) -> Result<CheckedUpload, UploadErrors> {
    check_upload_with(preset, content_type, bytes, &|_| Vec::new())
}

/// [`check_upload`] with one more rule supplied by the caller, which knows what this module
/// does not (the CPTS territories, who is uploading, today's date). `rule` sees each record
/// as parsed, before the consistency rules, and may rewrite it (e.g. a CPTS written by name
/// resolved to its id); its problems name the canonical field (`cpts_id`, `period_start`…)
/// and are located in the file like any other. Its errors reject the upload with the rest.
pub fn check_upload_with(
    preset: Preset,
    content_type: UploadType,
    bytes: &[u8],
    rule: &dyn Fn(&mut StatRecord) -> Vec<Problem>,
) -> Result<CheckedUpload, UploadErrors> {
    let parsed = match (preset, content_type) {
        (Preset::Canonical, UploadType::Json) => json::parse(bytes),
        (_, UploadType::Json) => Parsed::fatal(Problem::error(
            None,
            None,
            reason::INVALID_JSON,
            format!(
                "le préréglage « {preset} » attend un fichier CSV ; \
                 le JSON n'est accepté qu'avec le préréglage « canonical »"
            ),
        )),
        (Preset::Canonical, UploadType::Csv) => csv_presets::parse_canonical(bytes),
        (Preset::FrTableur, UploadType::Csv) => csv_presets::parse_fr_tableur(bytes),
        (Preset::MensuelLarge, UploadType::Csv) => csv_presets::parse_mensuel_large(bytes),
    };
    let Parsed {
        mut records,
        origins,
        mut problems,
        partial,
    } = parsed;

    let mut found: Vec<(usize, Problem)> = Vec::new();
    for (idx, r) in records.iter_mut().enumerate() {
        found.extend(rule(r).into_iter().map(|p| (idx, p)));
    }
    found.extend(validate::validate_indexed(&records));
    for (idx, mut p) in found {
        if partial[idx] && p.reason == reason::NO_INDICATOR {
            continue; // its indicator cells were already reported as unreadable
        }
        if let Some(field) = p.column.take() {
            let (line, column) = origins[idx].locate(&field, records[idx].line);
            p.line = Some(line);
            p.column = Some(column);
        }
        problems.push(p);
    }
    problems.sort_by_key(|p| p.line);

    if problems.iter().any(Problem::is_error) {
        Err(UploadErrors { problems })
    } else {
        Ok(CheckedUpload {
            records,
            warnings: problems,
        })
    }
}

/// What a preset parser hands back: the records it could build, where each field of
/// each record came from, and the problems found while reading.
#[derive(Default)]
pub(crate) struct Parsed {
    pub records: Vec<StatRecord>,
    pub origins: Vec<Origin>,
    pub problems: Vec<Problem>,
    /// `true` for records built although some of their indicator cells were unreadable.
    pub partial: Vec<bool>,
}

impl Parsed {
    pub fn fatal(p: Problem) -> Self {
        Self {
            records: Vec::new(),
            origins: Vec::new(),
            problems: vec![p],
            partial: Vec::new(),
        }
    }

    pub fn push(&mut self, record: StatRecord, origin: Origin, partial: bool) {
        self.records.push(record);
        self.origins.push(origin);
        self.partial.push(partial);
    }
}

/// Where each canonical field of a record is written in the file: `(line, column)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    pub cells: HashMap<&'static str, (usize, String)>,
}

impl Origin {
    fn locate(&self, field: &str, default_line: usize) -> (usize, String) {
        self.cells
            .get(field)
            .cloned()
            .unwrap_or_else(|| (default_line, field.to_string()))
    }
}
