//! Slot feed ingestion: parse a feed (ANS SAS FHIR bundle, SMART Scheduling Links NDJSON,
//! spreadsheet CSV) and normalise it into a [`NormalizedFeed`] with a report a CPTS
//! coordinator can act on.
//!
//! Rules kept here: ingestion is pure (no I/O, no database, no clock: `now` is given) and
//! all-or-nothing per slot — a bad slot is counted under a stable reason code and never
//! stops the others; only a file that cannot be read at all is a [`FeedError`]. Places are
//! located through an injected [`PlaceResolver`], so the same code runs on the real
//! geography and on the small [`sample::SampleResolver`] of tests and benches.
//!
//! One module per format (`fhir`, `smart`, `csv`; FHIR wire types in `fhir_dto`), the
//! rules shared by all of them in [`normalize`], synthetic feeds in [`generate`].
//!
//! Decisions worth knowing:
//! - **Places outside the region are rejected, per slot.** A place with coordinates outside
//!   Pays de la Loire, or without coordinates and with a postcode of another department, gives
//!   `outside_region` on each of its slots; a place nothing locates gives `unknown_place`. So
//!   the official ANS examples (Aussonne 31, Agen 47, Rennes 35, Lorient 56) and the SMART
//!   example (Massachusetts ZIP codes read as departments 01/02) ingest with every slot
//!   rejected `outside_region` — counted exactly, nothing stored.
//! - **Order of checks** (a slot gets one reason): id, duplicate, status, times, past/horizon,
//!   place. A past slot is never reported for its place.
//! - **Autumn overlap**: the earlier offset (summer time) wins, with a warning; the spring gap
//!   is rejected. See [`normalize`].
//! - **One modality, one structure per slot** (the domain model's shape): the first ActCode
//!   and the first CPTS are kept.

pub mod apply;
pub mod csv;
pub mod fhir;
pub mod fhir_dto;
pub mod generate;
pub mod geocode;
pub mod normalize;
pub mod poll;
pub mod report;
pub mod sample;
pub mod smart;

pub use report::{Example, IngestReport, reason};

use crate::domain::slot::NormalizedFeed;
use crate::domain::{InseeCode, LatLon, Postcode};
use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

/// Default publication horizon: slots starting later than `now + 90 days` are rejected.
pub const DEFAULT_HORIZON_DAYS: i64 = 90;

/// The feed formats sasnp reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedFormat {
    /// ANS SAS FHIR R4 `Bundle` (searchset or collection) — `application/fhir+json`.
    SasFhir,
    /// SMART Scheduling Links NDJSON (Location, Schedule, Slot, PractitionerRole lines in any
    /// order, in one stream) — `application/fhir+ndjson`.
    SmartSl,
    /// Spreadsheet CSV (`;` or `,`, UTF-8 or Windows-1252) — `text/csv`.
    Csv,
}

impl FeedFormat {
    /// The format named by an HTTP `Content-Type` (parameters such as `charset` ignored):
    /// `application/fhir+json` (and `application/json+fhir`, `application/json`) → SAS FHIR,
    /// `application/fhir+ndjson`, `application/x-ndjson`, `application/ndjson` → SMART SL,
    /// `text/csv` → CSV.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/fhir+json" | "application/json+fhir" | "application/json" => {
                Some(Self::SasFhir)
            }
            "application/fhir+ndjson" | "application/x-ndjson" | "application/ndjson" => {
                Some(Self::SmartSl)
            }
            "text/csv" => Some(Self::Csv),
            _ => None,
        }
    }

    /// The name used in configuration and the CLI (`sas-fhir`, `smart-sl`, `csv`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SasFhir => "sas-fhir",
            Self::SmartSl => "smart-sl",
            Self::Csv => "csv",
        }
    }
}

impl FromStr for FeedFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sas-fhir" => Ok(Self::SasFhir),
            "smart-sl" => Ok(Self::SmartSl),
            "csv" => Ok(Self::Csv),
            other => Err(format!(
                "unknown feed format `{other}` (sas-fhir, smart-sl, csv)"
            )),
        }
    }
}

impl fmt::Display for FeedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Locates places offline. The service implements it on its commune geography; tests use
/// [`sample::SampleResolver`].
pub trait PlaceResolver: Sync {
    /// commune containing the point, None when outside the region
    fn commune_at(&self, p: LatLon) -> Option<InseeCode>;
    /// commune named by postcode and/or city (None when unknown or ambiguous), with its interior point
    fn resolve(
        &self,
        postcode: Option<&Postcode>,
        city: Option<&str>,
    ) -> Option<(InseeCode, LatLon)>;
}

/// What an ingestion depends on besides the bytes.
#[derive(Clone, Copy)]
pub struct IngestContext<'r> {
    /// Slots that ended at or before this instant are dropped.
    pub now: DateTime<Utc>,
    /// Slots starting after `now + horizon` are rejected (`beyond_horizon`).
    pub horizon: chrono::Duration,
    pub resolver: &'r dyn PlaceResolver,
}

impl<'r> IngestContext<'r> {
    /// A context with the default 90-day horizon.
    pub fn new(now: DateTime<Utc>, resolver: &'r dyn PlaceResolver) -> Self {
        Self {
            now,
            horizon: chrono::Duration::days(DEFAULT_HORIZON_DAYS),
            resolver,
        }
    }
}

impl fmt::Debug for IngestContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestContext")
            .field("now", &self.now)
            .field("horizon", &self.horizon)
            .finish_non_exhaustive()
    }
}

/// The result of ingesting one feed.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    /// Accepted slots and the places they use (places without accepted slots are left out).
    pub feed: NormalizedFeed,
    pub report: IngestReport,
    /// External ids published with status `entered-in-error`: to delete from the source.
    pub removed_ids: Vec<String>,
}

/// The whole feed is unreadable; nothing of it may be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The body is empty (or only whitespace).
    #[error("the feed is empty")]
    Empty,
    /// Not JSON (or not UTF-8) where JSON is expected.
    #[error("line {line}, column {column}: not valid JSON: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid syntax, but not the document expected (not a Bundle, manifest without output…).
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Shape {
        line: Option<usize>,
        message: String,
    },
    /// A CSV file without a usable header or with broken quoting.
    #[error("line {line}: {message}")]
    Csv { line: usize, message: String },
}

impl FeedError {
    /// Stable machine-readable code (for `application/problem+json`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Empty => "empty_feed",
            Self::Json { .. } => "invalid_json",
            Self::Shape { .. } => "unexpected_document",
            Self::Csv { .. } => "invalid_csv",
        }
    }

    /// The 1-based line the error was found on, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Empty => None,
            Self::Json { line, .. } | Self::Csv { line, .. } => Some(*line),
            Self::Shape { line, .. } => *line,
        }
    }

    pub(crate) fn json(e: &serde_json::Error, line_offset: usize) -> Self {
        let message = e.to_string();
        // serde_json appends " at line L column C"; the fields carry it already.
        let message = match message.rfind(" at line ") {
            Some(i) => message[..i].to_string(),
            None => message,
        };
        Self::Json {
            line: e.line() + line_offset,
            column: e.column(),
            message,
        }
    }

    pub(crate) fn shape(line: Option<usize>, message: impl Into<String>) -> Self {
        Self::Shape {
            line,
            message: message.into(),
        }
    }
}

/// Parses and normalises one feed. Pure: the same bytes and context give the same outcome.
pub fn ingest(
    format: FeedFormat,
    bytes: &[u8],
    ctx: &IngestContext<'_>,
) -> Result<IngestOutcome, FeedError> {
    match format {
        FeedFormat::SasFhir => fhir::ingest_bundle(bytes, ctx),
        FeedFormat::SmartSl => smart::ingest_ndjson(bytes, ctx),
        FeedFormat::Csv => csv::ingest_csv(bytes, ctx),
    }
}

/// Strips a UTF-8 byte-order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_content_type_and_name() {
        assert_eq!(
            FeedFormat::from_content_type("application/fhir+json; charset=utf-8"),
            Some(FeedFormat::SasFhir)
        );
        assert_eq!(
            FeedFormat::from_content_type("application/fhir+ndjson"),
            Some(FeedFormat::SmartSl)
        );
        assert_eq!(
            FeedFormat::from_content_type("application/x-ndjson"),
            Some(FeedFormat::SmartSl)
        );
        assert_eq!(
            FeedFormat::from_content_type("Text/CSV;charset=windows-1252"),
            Some(FeedFormat::Csv)
        );
        assert_eq!(FeedFormat::from_content_type("image/png"), None);
        for f in [FeedFormat::SasFhir, FeedFormat::SmartSl, FeedFormat::Csv] {
            assert_eq!(f.as_str().parse::<FeedFormat>(), Ok(f));
        }
        assert!("xml".parse::<FeedFormat>().is_err());
    }
}
