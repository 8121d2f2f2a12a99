//! SMART Scheduling Links: the `$bulk-publish` manifest and NDJSON resource streams.
//!
//! Rules kept here:
//! - one pushed body is one NDJSON stream holding Location, Schedule, Slot and (HL7 IG)
//!   PractitionerRole/Practitioner lines — plus the SAS HealthcareService/Organization of
//!   CPTS slots — **in any order**: references are resolved once everything is read. Other
//!   resource types are ignored, as the specification tells clients to;
//! - a line that is not JSON makes the stream unreadable ([`FeedError`] naming the line: a
//!   truncated or corrupted file must not half-apply); a JSON line of the wrong shape is one
//!   rejection (a Slot) or an `invalid_resource` warning (anything else);
//! - blank lines and `\r\n` endings are accepted; the extensions booking-deep-link,
//!   booking-phone and slot-capacity are read, as are the SAS elements (serviceType ActCode,
//!   meta.security) when a publisher adds them — the mapping is the one of [`super::fhir`].
//!
//! Speed: Slot lines are recognised by their prefix and parsed in a second pass, one at a
//! time, against the complete graph of the other resources — no slot is held in memory
//! before it is normalised.

use super::fhir::{Graph, SlotEmitter, static_kind};
use super::fhir_dto::{Resource, SlotResource};
use super::normalize::Normalizer;
use super::report::{Where, reason};
use super::{FeedError, IngestContext, IngestOutcome, strip_bom};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A `$bulk-publish` manifest: where a publisher's NDJSON files are and when they were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// When the data set was published (`transactionTime`).
    pub transaction_time: DateTime<Utc>,
    /// The manifest's own URL (`request`), when given.
    pub request: Option<String>,
    pub outputs: Vec<ManifestOutput>,
}

/// One output file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOutput {
    /// `Location`, `Schedule`, `Slot`, `PractitionerRole`, …
    pub resource_type: String,
    pub url: String,
    /// `extension.state` hints (jurisdictions), possibly empty.
    pub states: Vec<String>,
}

impl Manifest {
    /// URLs of the outputs of one type, in manifest order.
    pub fn urls(&self, resource_type: &str) -> impl Iterator<Item = &str> {
        self.outputs
            .iter()
            .filter(move |o| o.resource_type == resource_type)
            .map(|o| o.url.as_str())
    }

    /// URLs a client fetches (Location, Schedule, Slot, PractitionerRole, Practitioner),
    /// referenced resources first so a concatenation reads in a natural order.
    pub fn fetch_order(&self) -> Vec<&str> {
        [
            "Location",
            "PractitionerRole",
            "Practitioner",
            "Schedule",
            "Slot",
        ]
        .into_iter()
        .flat_map(|t| self.urls(t))
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDto {
    transaction_time: Option<String>,
    request: Option<String>,
    output: Option<Vec<OutputDto>>,
}

#[derive(Deserialize)]
struct OutputDto {
    #[serde(rename = "type")]
    type_: Option<String>,
    url: Option<String>,
    #[serde(default)]
    extension: Option<OutputExtension>,
}

#[derive(Deserialize, Default)]
struct OutputExtension {
    #[serde(default)]
    state: Vec<String>,
}

/// Reads a `$bulk-publish` manifest. `transactionTime` must be a timestamp with offset,
/// `output` a list whose items have a `type` and a `url`.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, FeedError> {
    let bytes = strip_bom(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FeedError::Empty);
    }
    let dto: ManifestDto = serde_json::from_slice(bytes).map_err(|e| FeedError::json(&e, 0))?;
    let tt = dto
        .transaction_time
        .ok_or_else(|| FeedError::shape(None, "manifest has no transactionTime"))?;
    let transaction_time = DateTime::parse_from_rfc3339(tt.trim())
        .map_err(|_| {
            FeedError::shape(
                None,
                format!("manifest transactionTime `{tt}` is not a timestamp with offset"),
            )
        })?
        .with_timezone(&Utc);
    let output = dto
        .output
        .ok_or_else(|| FeedError::shape(None, "manifest has no output list"))?;
    let mut outputs = Vec::with_capacity(output.len());
    for (i, o) in output.into_iter().enumerate() {
        let (Some(resource_type), Some(url)) = (o.type_, o.url) else {
            return Err(FeedError::shape(
                None,
                format!("manifest output #{} lacks type or url", i + 1),
            ));
        };
        outputs.push(ManifestOutput {
            resource_type,
            url,
            states: o.extension.unwrap_or_default().state,
        });
    }
    Ok(Manifest {
        transaction_time,
        request: dto.request,
        outputs,
    })
}

/// Prefix of the lines a publisher writes for slots (`resourceType` first, minified).
const SLOT_PREFIX: &str = r#"{"resourceType":"Slot""#;

/// Reads one NDJSON stream of SMART SL resources (rules in the module doc).
pub fn ingest_ndjson(bytes: &[u8], ctx: &IngestContext<'_>) -> Result<IngestOutcome, FeedError> {
    let bytes = strip_bom(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        FeedError::Json {
            line,
            column: 0,
            message: "not UTF-8 text".into(),
        }
    })?;
    if text.trim().is_empty() {
        return Err(FeedError::Empty);
    }
    let mut norm = Normalizer::new(ctx);
    let mut graph = Graph::default();
    // Pass 1: every non-slot resource; slot lines are only located.
    let mut slot_lines: Vec<(usize, &str)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with(SLOT_PREFIX) {
            slot_lines.push((i + 1, line));
            continue;
        }
        match read_line::<Resource<'_>>(line, i + 1, &mut norm)? {
            Some(res) if res.resource_type.as_deref() == Some("Slot") => {
                slot_lines.push((i + 1, line))
            }
            Some(res) => match res.resource_type.as_deref() {
                Some(
                    "Location" | "Schedule" | "PractitionerRole" | "Practitioner" | "Organization"
                    | "HealthcareService",
                ) => graph.add(res, Some(i + 1), None),
                Some(_) => {} // other types are ignored (SMART SL: clients SHOULD ignore them)
                None => norm.report.warn(
                    reason::INVALID_RESOURCE,
                    Where {
                        line: Some(i + 1),
                        resource: None,
                    },
                    || "line has no resourceType; ignored".into(),
                ),
            },
            None => {}
        }
    }
    // Pass 2: slots, in line order, against the complete graph.
    norm.reserve(slot_lines.len());
    let mut emitter = SlotEmitter::default();
    for (n, line) in slot_lines {
        if let Some(res) = read_line::<SlotResource<'_>>(line, n, &mut norm)? {
            emitter.emit(&graph, res, Some(n), &mut norm);
        }
    }
    let (feed, report, removed_ids) = norm.finish();
    Ok(IngestOutcome {
        feed,
        report,
        removed_ids,
    })
}

/// Parses one line: syntax errors are fatal, shape errors are counted and give `None`.
fn read_line<'v, T: Deserialize<'v>>(
    line: &'v str,
    n: usize,
    norm: &mut Normalizer<'_, 'v>,
) -> Result<Option<T>, FeedError> {
    match serde_json::from_str::<T>(line) {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.is_syntax() || e.is_eof() => Err(FeedError::json(&e, n - 1)),
        Err(e) => {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let kind = v
                .get("resourceType")
                .and_then(|x| x.as_str())
                .unwrap_or("resource");
            let id = v.get("id").and_then(|x| x.as_str()).unwrap_or("");
            let at = Where {
                line: Some(n),
                resource: (!id.is_empty()).then_some((static_kind(kind), id)),
            };
            if kind == "Slot" {
                norm.reject_unreadable(reason::INVALID_VALUE, at, || {
                    format!("Slot cannot be read: {e}")
                });
            } else {
                norm.report.warn(reason::INVALID_RESOURCE, at, || {
                    format!("{kind} cannot be read: {e}")
                });
            }
            Ok(None)
        }
    }
}
