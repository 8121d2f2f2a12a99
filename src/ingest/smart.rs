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
//! Speed: Slot lines are recognised by their prefix and parsed in a second pass against the
//! complete graph of the other resources: read by serde_json into a borrowed
//! [`SlotResource`] folded into a [`SlotSummary`] (its lists freed on the thread that built
//! them: a summary holds no heap allocation unless a string had escapes), on every core, in
//! chunks of `CHUNK` lines
//! that the normaliser takes back in line order — so the report, its line numbers and the
//! slots' order do not depend on the number of threads. A line that cannot be read there is
//! read again on the normaliser's thread, which words errors and rejections.

use super::fhir::{Graph, SlotEmitter, static_kind};
use super::fhir_dto::{Resource, SlotResource, SlotSummary};
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

/// Reads one NDJSON stream of SMART SL resources (rules in the module doc). Slot lines are
/// read on every core of the machine (see [`ingest_ndjson_with_threads`]).
pub fn ingest_ndjson(bytes: &[u8], ctx: &IngestContext<'_>) -> Result<IngestOutcome, FeedError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
    ingest_ndjson_with_threads(bytes, ctx, threads)
}

/// Most threads reading slot lines.
const MAX_THREADS: usize = 8;
/// Slot lines per unit of parallel work.
const CHUNK: usize = 2048;
/// Chunks a reading thread may have ready ahead of the normaliser (bounds memory).
const AHEAD: usize = 2;

/// [`ingest_ndjson`] with `threads` threads reading slot lines (1: all on the caller's
/// thread). The outcome does not depend on `threads`: lines are read in parallel, but the
/// normaliser takes them one at a time in line order, on the caller's thread.
pub fn ingest_ndjson_with_threads(
    bytes: &[u8],
    ctx: &IngestContext<'_>,
    threads: usize,
) -> Result<IngestOutcome, FeedError> {
    ingest_ndjson_chunked(bytes, ctx, threads, CHUNK)
}

/// [`ingest_ndjson_with_threads`] with `chunk` slot lines per unit of parallel work.
fn ingest_ndjson_chunked(
    bytes: &[u8],
    ctx: &IngestContext<'_>,
    threads: usize,
    chunk: usize,
) -> Result<IngestOutcome, FeedError> {
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
    for (i, raw) in lines(text).enumerate() {
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
    let mut emit = |n, line, read| emit_slot(n, line, read, &graph, &mut emitter, &mut norm);
    let chunks = slot_lines.len().div_ceil(chunk);
    if threads <= 1 || chunks < 2 {
        for &(n, line) in &slot_lines {
            emit(n, line, read_slot(line))?;
        }
    } else {
        // Thread w reads chunks w, w + t, w + 2t… and hands them over, in order, on its own
        // bounded channel: the normaliser takes chunk k from thread k mod t, so it sees the
        // lines in order, and each thread is at most AHEAD chunks ahead.
        let t = threads.min(chunks);
        let lines = &slot_lines;
        std::thread::scope(|scope| {
            let receivers: Vec<_> = (0..t)
                .map(|w| {
                    let (tx, rx) =
                        std::sync::mpsc::sync_channel::<Vec<Option<SlotSummary<'_>>>>(AHEAD);
                    scope.spawn(move || {
                        for part in lines.chunks(chunk).skip(w).step_by(t) {
                            let read = part.iter().map(|(_, l)| read_slot(l)).collect();
                            if tx.send(read).is_err() {
                                return; // the normaliser stopped on an unreadable line
                            }
                        }
                    });
                    rx
                })
                .collect();
            for (k, part) in lines.chunks(chunk).enumerate() {
                let read = receivers[k % t]
                    .recv()
                    .expect("a reading thread ended early");
                for (&(n, line), slot) in part.iter().zip(read) {
                    emit(n, line, slot)?;
                }
            }
            Ok::<(), FeedError>(())
        })?;
    }
    let (feed, report, removed_ids) = norm.finish();
    Ok(IngestOutcome {
        feed,
        report,
        removed_ids,
    })
}

/// The lines of `text` (split at `\n`; callers trim them, which drops a `\r`). Unlike
/// [`str::lines`], a text ending with `\n` gives a last, empty line.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let b = text.as_bytes();
    let mut start = 0;
    std::iter::from_fn(move || {
        if start > b.len() {
            return None;
        }
        let end = find_newline(b, start).unwrap_or(b.len());
        let line = &text[start..end];
        start = end + 1;
        Some(line)
    })
}

/// Index of the first `\n` at or after `i`: 64-byte blocks tested at once (the compiler
/// vectorises the test), then the block holding one searched byte by byte. (`str::split('\n')`
/// measured 6–8 % slower per core on the whole NDJSON read.)
fn find_newline(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(block) = b.get(i..).and_then(|r| r.first_chunk::<64>()) {
        if block.iter().fold(false, |a, &c| a | (c == b'\n')) {
            break;
        }
        i += 64;
    }
    b.get(i..)?.iter().position(|&c| c == b'\n').map(|p| i + p)
}

/// Normalises one slot line, read by [`read_slot`] (`read`) or, when that failed, here.
fn emit_slot<'v>(
    n: usize,
    line: &'v str,
    read: Option<SlotSummary<'v>>,
    graph: &Graph<'v>,
    emitter: &mut SlotEmitter,
    norm: &mut Normalizer<'_, 'v>,
) -> Result<(), FeedError> {
    let slot = match read {
        Some(s) => Some(s),
        None => read_line::<SlotResource<'_>>(line, n, norm)?.map(SlotSummary::from),
    };
    if let Some(s) = slot {
        emitter.emit(graph, s, Some(n), norm);
    }
    Ok(())
}

/// A Slot line read on a reading thread; `None` when it cannot be read as a Slot: the
/// normaliser then reads it again ([`read_line`]), which says what is wrong.
fn read_slot(line: &str) -> Option<SlotSummary<'_>> {
    serde_json::from_str::<SlotResource<'_>>(line)
        .ok()
        .map(SlotSummary::from)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::generate::{GenSpec, generate, to_ndjson};
    use crate::ingest::sample::SampleResolver;

    #[test]
    fn lines_split_as_str_lines_does() {
        let long = "x".repeat(150);
        let mut texts: Vec<String> = ["", "a", "a\n", "a\r\nb", "\n\n", "\r\n"]
            .map(str::to_string)
            .to_vec();
        for k in [0, 1, 63, 64, 65, 127, 128, 149] {
            texts.push(format!("{}\n{}\r\n\n{long}", &long[..k], &long[k..]));
        }
        for t in &texts {
            let mut expected: Vec<&str> = t.lines().collect();
            if t.ends_with('\n') || t.is_empty() {
                expected.push("");
            }
            let got: Vec<&str> = lines(t).collect();
            let trim = |v: &[&str]| v.iter().map(|l| l.trim().to_string()).collect::<Vec<_>>();
            assert_eq!(trim(&got), trim(&expected), "{t:?}");
        }
    }

    #[test]
    fn the_outcome_does_not_depend_on_the_number_of_threads() {
        let start = "2026-05-04T06:00:00Z".parse().unwrap();
        let feed = generate(&GenSpec::new(5, 3 * CHUNK + 17, 150, start));
        let mut text = String::from_utf8(to_ndjson(&feed)).unwrap();
        // Some lines of an unusual shape and one the reader rejects, in later chunks.
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if i % 997 == 0 && l.starts_with(SLOT_PREFIX) {
                // `security: null`, an element of no use to the reader.
                out.push(if l.contains(r#""meta":{"security":"#) {
                    l.replacen(
                        r#""meta":{"security":"#,
                        r#""meta":{"security":null,"x":"#,
                        1,
                    )
                } else {
                    l.replacen(
                        SLOT_PREFIX,
                        r#"{"resourceType":"Slot","meta":{"security":null}"#,
                        1,
                    )
                });
            } else if i == lines.len() - 5 {
                out.push(r#"{"resourceType":"Slot","id":"bad","status":5}"#.to_string());
            } else {
                out.push(l.clone());
            }
        }
        text = out.join("\n");
        let resolver = SampleResolver::default();
        let ctx = IngestContext::new(start, &resolver);
        let one = ingest_ndjson_with_threads(text.as_bytes(), &ctx, 1).unwrap();
        assert_eq!(one.report.received as usize, 3 * CHUNK + 17);
        assert_eq!(one.report.rejected.values().sum::<u64>(), 1);
        for threads in [2, 3, 8] {
            let many = ingest_ndjson_with_threads(text.as_bytes(), &ctx, threads).unwrap();
            assert_eq!(many, one, "{threads} threads");
        }
        // Small chunks: reading threads run ahead and wait on their channels.
        for threads in [2, 5] {
            let many = ingest_ndjson_chunked(text.as_bytes(), &ctx, threads, 64).unwrap();
            assert_eq!(many, one, "{threads} threads, chunks of 64");
        }
        // An unreadable line, late or early, stops the stream with the same error (and the
        // reading threads, waiting or not, stop too).
        let broken = format!("{text}\n{{\"resourceType\":\"Slot\",\"id\":\n");
        let e1 = ingest_ndjson_with_threads(broken.as_bytes(), &ctx, 1).unwrap_err();
        let e2 = ingest_ndjson_with_threads(broken.as_bytes(), &ctx, 2).unwrap_err();
        assert_eq!(e1.to_string(), e2.to_string());
        assert_eq!(e1.line(), Some(text.lines().count() + 1));
        let first_slot = text
            .lines()
            .position(|l| l.starts_with(SLOT_PREFIX))
            .unwrap();
        let mut early: Vec<&str> = text.lines().collect();
        early[first_slot + 100] = r#"{"resourceType":"Slot","id":"#;
        let early = early.join("\n");
        let e1 = ingest_ndjson_with_threads(early.as_bytes(), &ctx, 1).unwrap_err();
        for threads in [2, 5] {
            let e = ingest_ndjson_chunked(early.as_bytes(), &ctx, threads, 64).unwrap_err();
            assert_eq!(e.to_string(), e1.to_string());
        }
        assert_eq!(e1.line(), Some(first_slot + 101));
    }
}
