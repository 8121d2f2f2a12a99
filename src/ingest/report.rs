//! What an ingestion tells the people who publish the feed.
//!
//! Rules kept here: every slot read is counted exactly once, in `accepted`, `dropped_past`,
//! `entered_in_error` or one `rejected` reason (so `received` is their sum); warnings never
//! change a count; reason codes are stable snake_case strings (they appear in the HTTP API,
//! in metrics labels and in coordinators' scripts), and at most [`MAX_EXAMPLES`] examples are
//! kept per reason so a broken 1M-line feed still yields a small report.

use serde::Serialize;
use std::collections::BTreeMap;

/// Examples kept per reason code.
pub const MAX_EXAMPLES: usize = 100;

/// Stable reason codes. Rejections drop one slot; warnings keep it.
pub mod reason {
    // --- rejections (one slot each) ---
    /// A local time (no offset, read as Europe/Paris) falls in the spring DST gap.
    pub const NONEXISTENT_LOCAL_TIME: &str = "nonexistent_local_time";
    /// A time that cannot be read (format, calendar, range).
    pub const INVALID_TIME: &str = "invalid_time";
    /// `end` is not after `start`.
    pub const END_BEFORE_START: &str = "end_before_start";
    /// Duration outside [5 min, 12 h].
    pub const DURATION_OUT_OF_RANGE: &str = "duration_out_of_range";
    /// The slot starts after `now + horizon`.
    pub const BEYOND_HORIZON: &str = "beyond_horizon";
    /// The place has no coordinates and its postcode/city names no known commune.
    pub const UNKNOWN_PLACE: &str = "unknown_place";
    /// The place lies outside Pays de la Loire (coordinates outside, or an address whose
    /// postcode belongs to another department).
    pub const OUTSIDE_REGION: &str = "outside_region";
    /// The external id was already used by an earlier slot of the same feed.
    pub const DUPLICATE_ID: &str = "duplicate_id";
    /// A required field is absent or empty.
    pub const MISSING_FIELD: &str = "missing_field";
    /// A field is present but its value cannot be used (wrong type or format).
    pub const INVALID_VALUE: &str = "invalid_value";
    /// `status` is none of free / busy / busy-unavailable / busy-tentative / entered-in-error.
    pub const UNKNOWN_STATUS: &str = "unknown_status";
    /// A reference (Schedule, Location, PractitionerRole…) names no resource of the feed.
    pub const UNRESOLVED_REFERENCE: &str = "unresolved_reference";

    // --- warnings (slot or place kept) ---
    /// A local time in the autumn overlap: read with the earlier (summer, +02:00) offset.
    pub const AMBIGUOUS_LOCAL_TIME: &str = "ambiguous_local_time";
    /// Coordinates and postcode/city disagree by more than 5 km; the coordinates are kept.
    pub const POSITION_MISMATCH: &str = "position_mismatch";
    /// An optional value could not be understood and was ignored (e.g. a bad postcode,
    /// an unknown audience code, a malformed capacity).
    pub const IGNORED_VALUE: &str = "ignored_value";
    /// A national identifier whose shape matches no known prefix rule; kept as given.
    pub const UNRECOGNISED_IDENTIFIER: &str = "unrecognised_identifier";
    /// A resource other than a slot could not be read; slots referring to it are rejected
    /// with `unresolved_reference`.
    pub const INVALID_RESOURCE: &str = "invalid_resource";

    /// All rejection codes, for documentation and exhaustive tests.
    pub const REJECTIONS: &[&str] = &[
        NONEXISTENT_LOCAL_TIME,
        INVALID_TIME,
        END_BEFORE_START,
        DURATION_OUT_OF_RANGE,
        BEYOND_HORIZON,
        UNKNOWN_PLACE,
        OUTSIDE_REGION,
        DUPLICATE_ID,
        MISSING_FIELD,
        INVALID_VALUE,
        UNKNOWN_STATUS,
        UNRESOLVED_REFERENCE,
    ];
    /// All warning codes.
    pub const WARNINGS: &[&str] = &[
        AMBIGUOUS_LOCAL_TIME,
        POSITION_MISMATCH,
        IGNORED_VALUE,
        UNRECOGNISED_IDENTIFIER,
        INVALID_RESOURCE,
    ];
}

/// Where in the feed something was found: a 1-based line (CSV, NDJSON) and/or a resource
/// (`Slot/abc`, `Location/12`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    pub line: Option<usize>,
    pub resource: Option<String>,
    pub message: String,
}

/// The diagnostics of one ingestion, written for the CPTS coordinator who fixes the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Slots read (every line/resource that claims to be a slot).
    pub received: u64,
    /// Slots in the normalised feed.
    pub accepted: u64,
    /// Slots that had already ended at `now` (not an error: feeds lag).
    pub dropped_past: u64,
    /// Slots with status `entered-in-error` (their ids are in `IngestOutcome::removed_ids`).
    pub entered_in_error: u64,
    /// Rejected slots per reason code.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Warnings per reason code (slot or place kept).
    pub warnings: BTreeMap<&'static str, u64>,
    /// Up to [`MAX_EXAMPLES`] examples per reason code (rejections and warnings).
    pub examples: BTreeMap<&'static str, Vec<Example>>,
    /// CSV columns that matched no known field (ignored).
    pub unknown_columns: Vec<String>,
    /// Set by the store: slots that changed compared with the previous snapshot.
    pub updated: u64,
    /// Set by the store: slots removed compared with the previous snapshot.
    pub removed: u64,
}

impl IngestReport {
    /// Total number of rejected slots.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Number of rejections for `code` (0 when none).
    pub fn rejected_for(&self, code: &str) -> u64 {
        self.rejected.get(code).copied().unwrap_or(0)
    }

    /// Number of warnings for `code` (0 when none).
    pub fn warnings_for(&self, code: &str) -> u64 {
        self.warnings.get(code).copied().unwrap_or(0)
    }

    pub(crate) fn reject(
        &mut self,
        code: &'static str,
        at: Where<'_>,
        message: impl FnOnce() -> String,
    ) {
        *self.rejected.entry(code).or_insert(0) += 1;
        self.example(code, at, message);
    }

    pub(crate) fn warn(
        &mut self,
        code: &'static str,
        at: Where<'_>,
        message: impl FnOnce() -> String,
    ) {
        *self.warnings.entry(code).or_insert(0) += 1;
        self.example(code, at, message);
    }

    fn example(&mut self, code: &'static str, at: Where<'_>, message: impl FnOnce() -> String) {
        let list = self.examples.entry(code).or_default();
        if list.len() < MAX_EXAMPLES {
            let resource = at.resource.map(|(kind, id)| format!("{kind}/{id}"));
            list.push(Example {
                line: at.line,
                resource,
                message: message(),
            });
        }
    }
}

/// A borrowed location in the feed (line, resource type and id), turned into an
/// [`Example`] only when kept.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Where<'a> {
    pub line: Option<usize>,
    pub resource: Option<(&'static str, &'a str)>,
}

impl<'a> Where<'a> {
    pub fn resource(kind: &'static str, id: &'a str) -> Self {
        Self {
            line: None,
            resource: Some((kind, id)),
        }
    }
}
