//! Normalisation shared by every feed format: times, places, identifiers, phones, and the
//! accept/reject decision for each slot.
//!
//! Rules kept here (in the order they are checked for a slot):
//! 1. the external id is present (`missing_field`) and not already used in this feed
//!    (`duplicate_id`: the first occurrence wins whatever its own fate, later ones are rejected);
//! 2. the status is known (`unknown_status`); `entered-in-error` slots go to `removed_ids`;
//! 3. `start` and `end` (or a duration in minutes) are readable (`invalid_time`). A time without
//!    offset is Europe/Paris wall-clock time: one in the spring DST gap does not exist and is
//!    rejected (`nonexistent_local_time`); one in the autumn overlap is read with the **earlier
//!    offset** (the first occurrence, summer time +02:00 — the java.time default most French
//!    scheduling software uses) and flagged `ambiguous_local_time`;
//! 4. `end` is after `start` (`end_before_start`) and the duration is within 5 min – 12 h
//!    (`duration_out_of_range`);
//! 5. a slot that has ended at `now` is dropped (`dropped_past`, not an error); one starting
//!    after `now + horizon` is rejected (`beyond_horizon`);
//! 6. its place is located (see [`Normalizer::place`]) or the place's rejection applies.

use super::report::{IngestReport, Where, reason};
use super::{IngestContext, PlaceResolver};
use crate::domain::slot::{
    AppointmentType, AudienceSet, FeedStatus, LocationPrecision, Modality, NormalizedFeed, Place,
    Practitioner, Slot, Structure,
};
use crate::domain::{DEPARTMENTS, LatLon, Postcode};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use rustc_hash::FxBuildHasher;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The Fx hash (rustc's, from `rustc-hash`): much faster than SipHash on short keys. Keys come
/// from one feed of an authenticated publisher, and a degenerate feed only slows its own
/// ingestion.
pub(crate) type FastMap<K, V> = HashMap<K, V, FxBuildHasher>;
/// A `HashSet` with the same hash.
pub(crate) type FastSet<K> = HashSet<K, FxBuildHasher>;

/// Shortest accepted slot.
pub const MIN_DURATION: chrono::Duration = chrono::Duration::minutes(5);
/// Longest accepted slot (SMART SL allows coarse "opening hours" slots; a day shift fits).
pub const MAX_DURATION: chrono::Duration = chrono::Duration::hours(12);
/// Distance beyond which given coordinates and the commune named by postcode/city are
/// reported as `position_mismatch`.
pub const POSITION_MISMATCH_M: f64 = 5_000.0;

// ---------------------------------------------------------------------------------------------
// Times
// ---------------------------------------------------------------------------------------------

/// A time as written in a feed: with an offset (an instant) or without (wall-clock time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedTime {
    Instant(DateTime<Utc>),
    Local(NaiveDateTime),
}

/// Why a time string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeError {
    /// Not a supported format or not a calendar date/time.
    Invalid,
    /// A Europe/Paris wall-clock time inside the spring DST gap.
    Nonexistent,
}

/// Parses the time formats feeds use, without allocating:
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` (`T` or a space), `DD/MM/YYYY HH:MM[:SS]`, each optionally
/// followed by `Z` or an offset `±HH`, `±HHMM`, `±HH:MM`. Seconds default to 0; fractions
/// of a second (`.` or `,`) keep up to nanoseconds.
pub fn parse_feed_time(s: &str) -> Result<FeedTime, TimeError> {
    let b = s.trim().as_bytes();
    if let Some(t) = parse_utc_seconds(b) {
        return t;
    }
    parse_feed_time_general(b)
}

/// The usual shape `YYYY-MM-DDTHH:MM:SSZ` read in one go, with the checks and arithmetic of
/// [`parse_feed_time_general`]; `None` for any other shape.
fn parse_utc_seconds(b: &[u8]) -> Option<Result<FeedTime, TimeError>> {
    let b: &[u8; 20] = b.try_into().ok()?;
    if b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if mo == 0 || mo > 12 || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59 {
        return Some(Err(TimeError::Invalid));
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
    Some(
        DateTime::from_timestamp(secs, 0)
            .map(FeedTime::Instant)
            .ok_or(TimeError::Invalid),
    )
}

/// Every shape [`parse_feed_time`] accepts, `b` trimmed.
fn parse_feed_time_general(b: &[u8]) -> Result<FeedTime, TimeError> {
    let mut p = Cursor { b, i: 0 };
    let (y, mo, d) = if b.len() >= 10 && b[4] == b'-' {
        let y = p.digits(4)?;
        p.expect(b'-')?;
        let mo = p.digits(2)?;
        p.expect(b'-')?;
        (y, mo, p.digits(2)?)
    } else if b.len() >= 10 && b[2] == b'/' && b[5] == b'/' {
        let d = p.digits(2)?;
        p.expect(b'/')?;
        let mo = p.digits(2)?;
        p.expect(b'/')?;
        (p.digits(4)?, mo, d)
    } else {
        return Err(TimeError::Invalid);
    };
    match p.next() {
        Some(b'T' | b't' | b' ') => {}
        _ => return Err(TimeError::Invalid),
    }
    let h = p.digits(2)?;
    p.expect(b':')?;
    let mi = p.digits(2)?;
    let mut sec = 0;
    let mut nanos = 0u32;
    if p.peek() == Some(b':') {
        p.i += 1;
        sec = p.digits(2)?;
        if matches!(p.peek(), Some(b'.' | b',')) {
            p.i += 1;
            let start = p.i;
            let mut scale = 100_000_000u32;
            while let Some(c @ b'0'..=b'9') = p.peek() {
                nanos += u32::from(c - b'0') * scale;
                scale /= 10;
                p.i += 1;
            }
            if p.i == start {
                return Err(TimeError::Invalid);
            }
        }
    }
    if mo == 0 || mo > 12 || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59 {
        return Err(TimeError::Invalid);
    }
    let offset_s: Option<i64> = match p.next() {
        None => None,
        Some(b'Z' | b'z') => Some(0),
        Some(sign @ (b'+' | b'-')) => {
            let oh = p.digits(2)?;
            let om = match p.peek() {
                None => 0,
                Some(b':') => {
                    p.i += 1;
                    p.digits(2)?
                }
                Some(_) => p.digits(2)?,
            };
            if oh > 23 || om > 59 {
                return Err(TimeError::Invalid);
            }
            let o = i64::from(oh * 3600 + om * 60);
            Some(if sign == b'-' { -o } else { o })
        }
        Some(_) => return Err(TimeError::Invalid),
    };
    if p.i != b.len() {
        return Err(TimeError::Invalid);
    }
    match offset_s {
        Some(off) => {
            let days = days_from_civil(i64::from(y), mo, d);
            let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec) - off;
            DateTime::from_timestamp(secs, nanos)
                .map(FeedTime::Instant)
                .ok_or(TimeError::Invalid)
        }
        None => NaiveDate::from_ymd_opt(y as i32, mo, d)
            .and_then(|date| date.and_hms_nano_opt(h, mi, sec, nanos))
            .map(FeedTime::Local)
            .ok_or(TimeError::Invalid),
    }
}

/// Reads a feed time as an instant; wall-clock times are Europe/Paris (rules in the module
/// doc). Returns the instant and whether the local time was ambiguous.
pub fn resolve_feed_time(s: &str) -> Result<(DateTime<Utc>, bool), TimeError> {
    match parse_feed_time(s)? {
        FeedTime::Instant(t) => Ok((t, false)),
        FeedTime::Local(naive) => paris_to_utc(naive),
    }
}

/// Europe/Paris wall-clock time to UTC: gap → `Nonexistent`, overlap → earlier offset + `true`.
pub fn paris_to_utc(naive: NaiveDateTime) -> Result<(DateTime<Utc>, bool), TimeError> {
    match Paris.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => Ok((t.with_timezone(&Utc), false)),
        chrono::LocalResult::Ambiguous(earlier, _later) => Ok((earlier.with_timezone(&Utc), true)),
        chrono::LocalResult::None => Err(TimeError::Nonexistent),
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += usize::from(c.is_some());
        c
    }
    fn expect(&mut self, c: u8) -> Result<(), TimeError> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(TimeError::Invalid)
        }
    }
    fn digits(&mut self, n: usize) -> Result<u32, TimeError> {
        let mut v = 0u32;
        for _ in 0..n {
            match self.next() {
                Some(c @ b'0'..=b'9') => v = v * 10 + u32::from(c - b'0'),
                _ => return Err(TimeError::Invalid),
            }
        }
        Ok(v)
    }
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------------------------
// Status, identifiers, phones
// ---------------------------------------------------------------------------------------------

/// A slot status as published, including the FHIR value that withdraws a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusValue {
    Live(FeedStatus),
    EnteredInError,
}

/// FHIR slot statuses (`free`, `busy`, `busy-unavailable`, `busy-tentative`,
/// `entered-in-error`) and the French words of spreadsheets (`libre`, `occupé`, `pris`,
/// `réservé`), case and accents ignored.
pub fn parse_status(s: &str) -> Option<StatusValue> {
    let s = s.trim();
    // Fast path: exact FHIR codes.
    match s {
        "free" => return Some(StatusValue::Live(FeedStatus::Free)),
        "busy" | "busy-unavailable" | "busy-tentative" => {
            return Some(StatusValue::Live(FeedStatus::Busy));
        }
        "entered-in-error" => return Some(StatusValue::EnteredInError),
        _ => {}
    }
    match crate::domain::fold_name(s).as_str() {
        "free" | "libre" | "disponible" | "dispo" => Some(StatusValue::Live(FeedStatus::Free)),
        "busy" | "busy unavailable" | "busy tentative" | "occupe" | "pris" | "reserve"
        | "indisponible" => Some(StatusValue::Live(FeedStatus::Busy)),
        "entered in error" => Some(StatusValue::EnteredInError),
        _ => None,
    }
}

/// FHIR system of French national professional identifiers (IDNPS).
pub const OID_IDNPS: &str = "urn:oid:1.2.250.1.71.4.2.1";
/// FHIR system of French national structure identifiers (IDNST).
pub const OID_IDNST: &str = "urn:oid:1.2.250.1.71.4.2.2";

/// A professional's national id with its SAS prefix (IG FAQ): `8` + RPPS (11 digits),
/// `0` + ADELI (9 characters). Already-prefixed values are kept; an unprefixed RPPS or ADELI
/// gets its prefix. Returns `(id, recognised)`; unrecognised shapes are kept as given.
pub fn practitioner_national_id(value: &str) -> (String, bool) {
    let v: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = v.bytes().all(|c| c.is_ascii_digit());
    match v.len() {
        12 if digits && v.starts_with('8') => (v, true),
        11 if digits => (format!("8{v}"), true),
        10 if v.starts_with('0') && v.bytes().all(|c| c.is_ascii_alphanumeric()) => (v, true),
        9 if v.bytes().all(|c| c.is_ascii_alphanumeric()) => (format!("0{v}"), true),
        _ => (v, false),
    }
}

/// A structure's national id with its SAS prefix (IG FAQ): `1` + FINESS (9 characters),
/// `3` + SIRET (14 digits); `0`/`4` prefixed ADELI/RPPS "rang" ids are kept. Unprefixed
/// FINESS/SIRET get their prefix. Returns `(id, recognised)`.
pub fn structure_national_id(value: &str) -> (String, bool) {
    let v: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = v.bytes().all(|c| c.is_ascii_digit());
    let alnum = v.bytes().all(|c| c.is_ascii_alphanumeric());
    match v.len() {
        10 if alnum && v.starts_with('1') => (v, true),
        9 if alnum => (format!("1{v}"), true),
        15 if digits && v.starts_with('3') => (v, true),
        14 if digits => (format!("3{v}"), true),
        _ if alnum && !v.is_empty() && (v.starts_with('0') || v.starts_with('4')) => (v, true),
        _ => (v, false),
    }
}

/// French phone numbers in the SAS format `+33XXXXXXXXX` (IG FAQ error #2): separators
/// removed, a national `0X XX XX XX XX` (X ≠ 0) or `0033…` number rewritten. Other numbers are kept
/// with separators removed.
pub fn normalize_phone(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    // Fast path: already `+33` and nine digits, the second not 0.
    if s.len() == 12
        && s.starts_with("+33")
        && s.as_bytes()[3] != b'0'
        && s.bytes().skip(1).all(|c| c.is_ascii_digit())
    {
        return Some(s.to_string());
    }
    let compact: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')' | '\u{a0}'))
        .collect();
    let digits_only = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if compact.len() == 10
        && compact.starts_with('0')
        && compact.as_bytes()[1] != b'0'
        && digits_only(&compact)
    {
        return Some(format!("+33{}", &compact[1..]));
    }
    if let Some(rest) = compact.strip_prefix("0033")
        && digits_only(rest)
    {
        return Some(format!("+33{rest}"));
    }
    if compact.starts_with("+33") && compact.len() == 13 && compact.as_bytes()[3] == b'0' {
        // "+33 0 2 40…": the trunk 0 must go.
        return Some(format!("+33{}", &compact[4..]));
    }
    Some(compact)
}

// ---------------------------------------------------------------------------------------------
// Places and slots
// ---------------------------------------------------------------------------------------------

/// Handle to a place registered with [`Normalizer::place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PlaceId(u32);

/// A place as described by a feed, before location.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlaceInput<'a> {
    /// Feed-local key (resource reference, identifier, or a key derived from the address).
    pub key: Cow<'a, str>,
    pub name: Option<Cow<'a, str>>,
    pub address: Option<Cow<'a, str>>,
    pub postcode: Option<Cow<'a, str>>,
    pub city: Option<Cow<'a, str>>,
    /// (latitude, longitude) as given.
    pub position: Option<(f64, f64)>,
}

/// A rejection that applies to every slot pointing at something broken (a place that
/// could not be located, a reference to nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
enum PlaceState {
    Located(usize),
    Rejected(Rejection),
}

/// How a slot's end is given.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EndSpec<'a> {
    End(&'a str),
    /// A duration in whole minutes, as text.
    Minutes(&'a str),
    Missing,
}

/// One slot as read from a feed, before validation. The caller resolves references; the
/// [`Normalizer`] decides. `'a` is the lifetime of the feed's bytes (ids are kept for the
/// duplicate check), `'s` that of the parsed record.
#[derive(Debug, Clone)]
pub(crate) struct SlotDraft<'a, 's> {
    pub id: Option<Cow<'a, str>>,
    /// Raw status; `None` means "absent", which `default_status` may cover.
    pub status: Option<&'s str>,
    /// Status used when the feed gives none (CSV without a status column); `None` makes a
    /// missing status a `missing_field` rejection.
    pub default_status: Option<FeedStatus>,
    pub start: Option<&'s str>,
    pub end: EndSpec<'s>,
    pub place: Result<PlaceId, Rejection>,
    pub practitioner: Option<Arc<Practitioner>>,
    pub structure: Option<Arc<Structure>>,
    pub modality: Modality,
    pub appointment_type: Option<AppointmentType>,
    pub audience: AudienceSet,
    pub surnumeraire: bool,
    pub booking_url: Option<String>,
    pub booking_phone: Option<Arc<str>>,
    pub capacity: u32,
}

impl<'a> SlotDraft<'a, '_> {
    /// A draft with every optional part empty (modality AMB, capacity 1).
    pub fn new(id: Option<Cow<'a, str>>, place: Result<PlaceId, Rejection>) -> Self {
        Self {
            id,
            status: None,
            default_status: None,
            start: None,
            end: EndSpec::Missing,
            place,
            practitioner: None,
            structure: None,
            modality: Modality::Ambulatory,
            appointment_type: None,
            audience: AudienceSet::default(),
            surnumeraire: false,
            booking_url: None,
            booking_phone: None,
            capacity: 1,
        }
    }
}

/// Accumulates a normalised feed and its report. One per ingestion.
pub(crate) struct Normalizer<'c, 'a> {
    now: DateTime<Utc>,
    horizon_end: DateTime<Utc>,
    resolver: &'c dyn PlaceResolver,
    pub report: IngestReport,
    places: Vec<Place>,
    place_states: Vec<PlaceState>,
    place_keys: FastMap<String, PlaceId>,
    seen: FastSet<Cow<'a, str>>,
    slots: Vec<Slot>,
    removed: Vec<String>,
}

impl<'c, 'a> Normalizer<'c, 'a> {
    pub fn new(ctx: &'c IngestContext<'c>) -> Self {
        Self {
            now: ctx.now,
            horizon_end: ctx.now + ctx.horizon,
            resolver: ctx.resolver,
            report: IngestReport::default(),
            places: Vec::new(),
            place_states: Vec::new(),
            place_keys: FastMap::default(),
            seen: FastSet::default(),
            slots: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Reserves room for `n` slots.
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.seen.reserve(n);
    }

    /// The place already registered under `key`, if any.
    pub fn place_by_key(&self, key: &str) -> Option<PlaceId> {
        self.place_keys.get(key).copied()
    }

    /// Registers and locates a place once per key (a later place with the same key gets the
    /// first one's handle). Rules:
    /// - coordinates given: invalid numbers → `invalid_value`; outside the region
    ///   (`commune_at` is `None`) → `outside_region`; otherwise precision `Exact`, and if a
    ///   postcode/city is given too and names another commune whose interior point is more
    ///   than 5 km away → warning `position_mismatch` (the coordinates are kept);
    /// - no coordinates: `resolve(postcode, city)` → the commune's interior point, precision
    ///   `Commune`; when that fails, a valid postcode of a department outside the region →
    ///   `outside_region`, anything else → `unknown_place`.
    ///
    /// A malformed postcode is ignored (warning `ignored_value`), the city alone is tried.
    /// Rejections are counted on each slot of the place, warnings once per place.
    pub fn place(&mut self, input: PlaceInput<'_>, at: Where<'_>) -> PlaceId {
        if let Some(id) = self.place_keys.get(input.key.as_ref()) {
            return *id;
        }
        let id = PlaceId(self.place_states.len() as u32);
        let state = self.locate(&input, at);
        self.place_states.push(state);
        self.place_keys.insert(input.key.into_owned(), id);
        id
    }

    fn locate(&mut self, input: &PlaceInput<'_>, at: Where<'_>) -> PlaceState {
        let label = place_label(input);
        let postcode = match input
            .postcode
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(raw) => match raw.parse::<Postcode>() {
                Ok(pc) => Some(pc),
                Err(e) => {
                    self.report.warn(reason::IGNORED_VALUE, at, || {
                        format!("place {label}: {e}; postcode ignored")
                    });
                    None
                }
            },
        };
        let city = input
            .city
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let (position, insee, precision) = if let Some((lat, lon)) = input.position {
            let p = match LatLon::new(lat, lon) {
                Ok(p) => p,
                Err(e) => {
                    return PlaceState::Rejected(Rejection::new(
                        reason::INVALID_VALUE,
                        format!("place {label}: {e}"),
                    ));
                }
            };
            let Some(insee) = self.resolver.commune_at(p) else {
                return PlaceState::Rejected(Rejection::new(
                    reason::OUTSIDE_REGION,
                    format!("place {label}: position {lat}, {lon} is outside Pays de la Loire"),
                ));
            };
            if (postcode.is_some() || city.is_some())
                && let Some((named, interior)) = self.resolver.resolve(postcode.as_ref(), city)
            {
                let d = interior.distance_m(p);
                if named != insee && d > POSITION_MISMATCH_M {
                    self.report.warn(reason::POSITION_MISMATCH, at, || {
                            format!(
                                "place {label}: position {lat}, {lon} lies in commune {insee}, {:.1} km from commune {named} named by the address; position kept",
                                d / 1000.0
                            )
                        });
                }
            }
            (p, Some(insee), LocationPrecision::Exact)
        } else {
            match self.resolver.resolve(postcode.as_ref(), city) {
                Some((insee, p)) => (p, Some(insee), LocationPrecision::Commune),
                None => {
                    let outside = postcode
                        .as_ref()
                        .is_some_and(|pc| !DEPARTMENTS.contains(&&pc.as_str()[..2]));
                    return PlaceState::Rejected(if outside {
                        Rejection::new(
                            reason::OUTSIDE_REGION,
                            format!(
                                "place {label}: postcode {} is outside Pays de la Loire",
                                postcode.unwrap()
                            ),
                        )
                    } else if postcode.is_none() && city.is_none() {
                        Rejection::new(
                            reason::UNKNOWN_PLACE,
                            format!("place {label}: no coordinates, postcode or city"),
                        )
                    } else {
                        Rejection::new(
                            reason::UNKNOWN_PLACE,
                            format!(
                                "place {label}: no commune of Pays de la Loire matches this postcode/city (add latitude/longitude)"
                            ),
                        )
                    });
                }
            }
        };
        let index = self.places.len();
        self.places.push(Place {
            key: Arc::from(input.key.as_ref()),
            name: clean(input.name.as_deref()),
            address: clean(input.address.as_deref()),
            postcode,
            city: city.map(str::to_string),
            insee,
            position,
            precision,
        });
        PlaceState::Located(index)
    }

    /// Counts a slot that could not even be drafted (e.g. a Slot resource of the wrong shape).
    pub fn reject_unreadable(
        &mut self,
        code: &'static str,
        at: Where<'_>,
        message: impl FnOnce() -> String,
    ) {
        self.report.received += 1;
        self.report.reject(code, at, message);
    }

    /// Validates one slot (rules in the module doc) and keeps it or counts why not.
    /// `line` (CSV, NDJSON) and `kind` (the resource type, e.g. `Slot`) locate it in the report.
    pub fn slot(&mut self, d: SlotDraft<'a, '_>, line: Option<usize>, kind: Option<&'static str>) {
        self.report.received += 1;
        let report = &mut self.report;
        let Some(id) = d.id.filter(|id| !id.trim().is_empty()) else {
            report.reject(
                reason::MISSING_FIELD,
                Where {
                    line,
                    resource: None,
                },
                || "slot has no id".into(),
            );
            return;
        };
        let at = Where {
            line,
            resource: kind.map(|k| (k, id.as_ref())),
        };
        if self.seen.contains(id.as_ref()) {
            report.reject(reason::DUPLICATE_ID, at, || {
                format!("slot id `{id}` already used earlier in this feed")
            });
            return;
        }
        let id_str: &str = &id;
        let status = match d.status.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => match parse_status(s) {
                Some(StatusValue::Live(st)) => st,
                Some(StatusValue::EnteredInError) => {
                    report.entered_in_error += 1;
                    self.removed.push(id_str.to_string());
                    self.seen.insert(id);
                    return;
                }
                None => {
                    report.reject(reason::UNKNOWN_STATUS, at, || {
                        format!("slot `{id_str}`: status `{s}` is not free, busy, busy-unavailable, busy-tentative or entered-in-error")
                    });
                    self.seen.insert(id);
                    return;
                }
            },
            None => match d.default_status {
                Some(st) => st,
                None => {
                    report.reject(reason::MISSING_FIELD, at, || {
                        format!("slot `{id_str}` has no status")
                    });
                    self.seen.insert(id);
                    return;
                }
            },
        };
        let times = check_times(d.start, d.end, id_str, at, report);
        let Some((start, end)) = times else {
            self.seen.insert(id);
            return;
        };
        if end <= self.now {
            report.dropped_past += 1;
            self.seen.insert(id);
            return;
        }
        if start > self.horizon_end {
            let h = self.horizon_end;
            report.reject(reason::BEYOND_HORIZON, at, || {
                format!("slot `{id_str}` starts at {start}, after the publication horizon ({h})")
            });
            self.seen.insert(id);
            return;
        }
        let place = match d.place {
            Ok(pid) => match &self.place_states[pid.0 as usize] {
                PlaceState::Located(i) => *i,
                PlaceState::Rejected(r) => {
                    report.reject(r.code, at, || format!("slot `{id_str}`: {}", r.message));
                    self.seen.insert(id);
                    return;
                }
            },
            Err(r) => {
                report.reject(r.code, at, || format!("slot `{id_str}`: {}", r.message));
                self.seen.insert(id);
                return;
            }
        };
        report.accepted += 1;
        let external_id = id_str.to_string();
        self.seen.insert(id);
        self.slots.push(Slot {
            external_id,
            start,
            end,
            status,
            place_key: self.places[place].key.clone(),
            practitioner: d.practitioner,
            structure: d.structure,
            modality: d.modality,
            appointment_type: d.appointment_type,
            audience: d.audience,
            surnumeraire: d.surnumeraire,
            booking_url: d.booking_url,
            booking_phone: d.booking_phone,
            capacity: d.capacity,
        });
    }

    /// The feed (places without any accepted slot are left out), report and removed ids.
    pub fn finish(self) -> (NormalizedFeed, IngestReport, Vec<String>) {
        let mut used = vec![false; self.places.len()];
        if !self.places.is_empty() {
            let index: FastMap<&str, usize> = self
                .places
                .iter()
                .enumerate()
                .map(|(i, p)| (&*p.key, i))
                .collect();
            for s in &self.slots {
                if let Some(i) = index.get(&*s.place_key) {
                    used[*i] = true;
                }
            }
        }
        let places = self
            .places
            .into_iter()
            .zip(used)
            .filter(|(_, u)| *u)
            .map(|(p, _)| p)
            .collect();
        (
            NormalizedFeed {
                places,
                slots: self.slots,
            },
            self.report,
            self.removed,
        )
    }
}

fn check_times(
    start: Option<&str>,
    end: EndSpec<'_>,
    id: &str,
    at: Where<'_>,
    report: &mut IngestReport,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let Some(start_s) = start.map(str::trim).filter(|s| !s.is_empty()) else {
        report.reject(reason::MISSING_FIELD, at, || {
            format!("slot `{id}` has no start")
        });
        return None;
    };
    let start = read_time(start_s, "start", id, at, report)?;
    let end = match end {
        EndSpec::End(s) if !s.trim().is_empty() => read_time(s.trim(), "end", id, at, report)?,
        EndSpec::Minutes(m) if !m.trim().is_empty() => {
            let m = m.trim();
            match m.parse::<i64>() {
                Ok(n) if (0..=100_000).contains(&n) => start + chrono::Duration::minutes(n),
                _ => {
                    report.reject(reason::INVALID_VALUE, at, || {
                        format!("slot `{id}`: duration `{m}` is not a whole number of minutes")
                    });
                    return None;
                }
            }
        }
        _ => {
            report.reject(reason::MISSING_FIELD, at, || {
                format!("slot `{id}` has no end (or duration)")
            });
            return None;
        }
    };
    if end <= start {
        report.reject(reason::END_BEFORE_START, at, || {
            format!("slot `{id}`: end {end} is not after start {start}")
        });
        return None;
    }
    let d = end - start;
    if d < MIN_DURATION || d > MAX_DURATION {
        report.reject(reason::DURATION_OUT_OF_RANGE, at, || {
            format!(
                "slot `{id}` lasts {} min; accepted durations are 5 min to 12 h",
                d.num_minutes()
            )
        });
        return None;
    }
    Some((start, end))
}

fn read_time(
    s: &str,
    field: &str,
    id: &str,
    at: Where<'_>,
    report: &mut IngestReport,
) -> Option<DateTime<Utc>> {
    match resolve_feed_time(s) {
        Ok((t, ambiguous)) => {
            if ambiguous {
                report.warn(reason::AMBIGUOUS_LOCAL_TIME, at, || {
                    format!("slot `{id}`: {field} `{s}` occurs twice in Europe/Paris (end of summer time); read as the first occurrence, {t}")
                });
            }
            Some(t)
        }
        Err(TimeError::Nonexistent) => {
            report.reject(reason::NONEXISTENT_LOCAL_TIME, at, || {
                format!("slot `{id}`: {field} `{s}` does not exist in Europe/Paris (skipped by the change to summer time); give an offset")
            });
            None
        }
        Err(TimeError::Invalid) => {
            report.reject(reason::INVALID_TIME, at, || {
                format!("slot `{id}`: {field} `{s}` is not a date-time (expected e.g. 2026-05-04T09:30:00+02:00, 2026-05-04 09:30 or 04/05/2026 09:30)")
            });
            None
        }
    }
}

fn clean(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn place_label(p: &PlaceInput<'_>) -> String {
    let mut parts = vec![format!("`{}`", p.key)];
    for x in [&p.name, &p.postcode, &p.city].into_iter().flatten() {
        if !x.trim().is_empty() {
            parts.push(x.trim().to_string());
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_utc_shape_reads_as_the_general_reader_does() {
        for t in [
            "2026-05-04T06:30:00Z",
            "2024-02-29T23:59:59Z",
            "2023-02-29T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-00-01T10:00:00Z",
            "2026-05-00T10:00:00Z",
            "2026-05-04T24:00:00Z",
            "2026-05-04T10:60:00Z",
            "2026-05-04T10:00:60Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2026-05-04T1a:00:00Z",
            "2026-05-04t10:00:00Z",
            "2026-05-04 10:00:00Z",
            "2026-05-04T10:00:00z",
            "+026-05-04T10:00:00Z",
        ] {
            let b = t.as_bytes();
            assert_eq!(parse_feed_time(t), parse_feed_time_general(b), "{t}");
            if let Some(fast) = parse_utc_seconds(b) {
                assert_eq!(fast, parse_feed_time_general(b), "{t}");
            }
        }
    }
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fast_parser_agrees_with_chrono_on_rfc3339() {
        for s in [
            "2024-06-12T16:40:00.000+02:00",
            "2021-03-01T14:00:00.000Z",
            "2021-11-05T09:00:00.000+00:00",
            "2020-02-29T23:59:59.123456789-05:30",
            "1999-12-31T23:00:00+01:00",
        ] {
            assert_eq!(parse_feed_time(s), Ok(FeedTime::Instant(utc(s))), "{s}");
        }
        // SMART SL example's short offset.
        assert_eq!(
            parse_feed_time("2021-03-10T15:00:00-05"),
            Ok(FeedTime::Instant(utc("2021-03-10T20:00:00Z")))
        );
        assert_eq!(
            parse_feed_time("2021-03-10T15:00:00-0500"),
            Ok(FeedTime::Instant(utc("2021-03-10T20:00:00Z")))
        );
    }

    #[test]
    fn local_formats_are_paris_time() {
        let naive = NaiveDate::from_ymd_opt(2026, 5, 4)
            .unwrap()
            .and_hms_opt(9, 30, 0)
            .unwrap();
        assert_eq!(
            parse_feed_time("2026-05-04 09:30"),
            Ok(FeedTime::Local(naive))
        );
        assert_eq!(
            parse_feed_time("04/05/2026 09:30"),
            Ok(FeedTime::Local(naive))
        );
        assert_eq!(
            parse_feed_time("04/05/2026 09:30:00"),
            Ok(FeedTime::Local(naive))
        );
        assert_eq!(
            resolve_feed_time("04/05/2026 09:30"),
            Ok((utc("2026-05-04T07:30:00Z"), false))
        );
        assert_eq!(
            resolve_feed_time("2026-01-15T09:30:00"),
            Ok((utc("2026-01-15T08:30:00Z"), false))
        );
    }

    #[test]
    fn dst_gap_is_nonexistent_and_overlap_takes_the_earlier_offset() {
        assert_eq!(
            resolve_feed_time("2026-03-29 02:30"),
            Err(TimeError::Nonexistent)
        );
        assert_eq!(
            resolve_feed_time("2026-10-25 02:30"),
            Ok((utc("2026-10-25T02:30:00+02:00"), true))
        );
        assert_eq!(
            resolve_feed_time("2026-10-25 03:30"),
            Ok((utc("2026-10-25T02:30:00Z"), false))
        );
    }

    #[test]
    fn invalid_times_are_refused() {
        for s in [
            "",
            "2026-02-30T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01",
            "2026-01-01T10:00:00+",
            "2026-01-01T10:00:00Zjunk",
            "demain 10h",
            "2026-01-01T10:00:00.Z",
            "32/01/2026 10:00",
        ] {
            assert_eq!(parse_feed_time(s), Err(TimeError::Invalid), "{s}");
        }
    }

    #[test]
    fn days_from_civil_matches_chrono() {
        for (y, m, d) in [
            (1970, 1, 1),
            (2000, 2, 29),
            (2026, 3, 29),
            (1969, 12, 31),
            (2400, 12, 31),
        ] {
            let c = Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp() / 86_400;
            assert_eq!(days_from_civil(i64::from(y), m, d), c);
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(
            parse_status("free"),
            Some(StatusValue::Live(FeedStatus::Free))
        );
        assert_eq!(
            parse_status("busy-tentative"),
            Some(StatusValue::Live(FeedStatus::Busy))
        );
        assert_eq!(
            parse_status("Occupé"),
            Some(StatusValue::Live(FeedStatus::Busy))
        );
        assert_eq!(
            parse_status("LIBRE"),
            Some(StatusValue::Live(FeedStatus::Free))
        );
        assert_eq!(
            parse_status("entered-in-error"),
            Some(StatusValue::EnteredInError)
        );
        assert_eq!(parse_status("maybe"), None);
    }

    #[test]
    fn identifier_prefixes_follow_the_ig_faq() {
        assert_eq!(
            practitioner_national_id("810002909371"),
            ("810002909371".into(), true)
        );
        assert_eq!(
            practitioner_national_id("10002909371"),
            ("810002909371".into(), true)
        );
        assert_eq!(
            practitioner_national_id("441234567"),
            ("0441234567".into(), true)
        );
        assert_eq!(
            practitioner_national_id("0441234567"),
            ("0441234567".into(), true)
        );
        assert_eq!(practitioner_national_id("12"), ("12".into(), false));
        assert_eq!(
            structure_national_id("1950047225"),
            ("1950047225".into(), true)
        );
        assert_eq!(
            structure_national_id("950047225"),
            ("1950047225".into(), true)
        );
        assert_eq!(
            structure_national_id("334173748400020"),
            ("334173748400020".into(), true)
        );
        assert_eq!(
            structure_national_id("34173748400020"),
            ("334173748400020".into(), true)
        );
        assert_eq!(
            structure_national_id("412345678912345"),
            ("412345678912345".into(), true)
        );
        assert_eq!(structure_national_id("abc"), ("abc".into(), false));
    }

    #[test]
    fn phones_take_the_sas_format() {
        assert_eq!(
            normalize_phone("02 40 12 34 56").as_deref(),
            Some("+33240123456")
        );
        assert_eq!(
            normalize_phone("02.40.12.34.56").as_deref(),
            Some("+33240123456")
        );
        assert_eq!(
            normalize_phone("0033240123456").as_deref(),
            Some("+33240123456")
        );
        assert_eq!(
            normalize_phone("+33 (0)2 40 12 34 56").as_deref(),
            Some("+33240123456")
        );
        assert_eq!(
            normalize_phone("+33561855977").as_deref(),
            Some("+33561855977")
        );
        assert_eq!(
            normalize_phone("000-000-0000").as_deref(),
            Some("0000000000")
        );
        assert_eq!(normalize_phone("  "), None);
    }
}
