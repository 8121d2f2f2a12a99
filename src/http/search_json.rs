//! The search answer written straight into its response body.
//!
//! The answer is the hot path's biggest cost: ten results of about thirty fields each. Going
//! through a `serde_json::Value` tree, or even typed `Serialize` structs, spends most of the
//! request escaping the same keys and the same place and practitioner strings again and again.
//! Here keys are literals, each place's and practitioner's JSON is rendered once and kept in the
//! index entry ([`JsonCache`](crate::index::JsonCache)), and instants are formatted without
//! `chrono`'s generic formatter. Strings are escaped exactly as `serde_json` escapes them
//! (it does the escaping whenever a string needs any), so the bytes are those `serde_json` would
//! write.

use super::search::paris;
use crate::domain::LatLon;
use crate::geo::{Commune, Territory};
use crate::index::search::{Found, Hit, Query};
use crate::index::{PlaceEntry, Provider, SourceMeta};
use chrono::{DateTime, Offset, Utc};
use chrono_tz::Europe::Paris;
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::atomic::Ordering;

/// Everything the answer shows.
pub struct Context<'a> {
    pub patient_point: LatLon,
    pub commune: &'a Commune,
    pub territory: Option<&'a Territory>,
    pub department: &'a str,
    pub query: &'a Query,
    pub found: &'a Found<'a>,
    pub now: i64,
    /// CPTS id → its name.
    pub cpts_name: &'a dyn Fn(&str) -> Option<&'a str>,
}

/// The JSON answer of `GET /v1/search`.
pub fn answer(cx: &Context) -> Vec<u8> {
    let hits = &cx.found.hits;
    let q = cx.query;
    let mut o = Out::with_capacity(1024 + 1024 * hits.len());
    o.open();
    key!(o, "patient");
    o.open();
    key!(o, "lat");
    o.num(cx.patient_point.lat);
    key!(o, "lon");
    o.num(cx.patient_point.lon);
    key!(o, "commune");
    o.open();
    key!(o, "insee");
    o.str(cx.commune.insee.as_str());
    key!(o, "name");
    o.str(&cx.commune.name);
    o.close();
    key!(o, "cpts");
    match cx.territory {
        Some(t) => {
            o.open();
            key!(o, "id");
            o.str(&t.id);
            key!(o, "name");
            o.str(&t.name);
            o.close();
        }
        None => o.null(),
    }
    key!(o, "department");
    o.str(cx.department);
    o.close();
    key!(o, "base_radius_km");
    o.num(q.radius.base_m / 1000.0);
    key!(o, "radius_km");
    o.num(cx.found.radius_m / 1000.0);
    key!(o, "enlargement_steps");
    o.int(cx.found.steps);
    key!(o, "max_radius_km");
    o.num(q.radius.cap_m() / 1000.0);
    key!(o, "window");
    o.open();
    key!(o, "from");
    o.time(q.from.max(cx.now));
    key!(o, "to");
    o.time(q.to);
    o.close();
    key!(o, "count");
    o.int(hits.len());
    key!(o, "results");
    o.buf.push(b'[');
    let cached = warm(hits);
    // results mostly share a source: its CPTS name and freshness are worked out once
    let mut source: Option<SourcePart> = None;
    for (i, (h, json)) in hits.iter().zip(&cached).enumerate() {
        if i > 0 {
            o.buf.push(b',');
        }
        let part = match source.take() {
            Some(part) if part.id == h.place.source.id => part,
            _ => SourcePart::new(&h.place.source, cx),
        };
        result(&mut o, h, json, &part);
        source = Some(part);
    }
    o.buf.push(b']');
    o.close();
    o.buf
}

/// What every result of one source repeats, written once per answer.
struct SourcePart {
    id: i64,
    /// The `cpts` object (id and name).
    cpts: Vec<u8>,
    /// The `source` object (id, name, last success, freshness).
    source: Vec<u8>,
}

impl SourcePart {
    fn new(meta: &SourceMeta, cx: &Context<'_>) -> Self {
        // room for both objects (a CPTS name, a source name, an instant) without growing
        let mut o = Out::with_capacity(256);
        o.open();
        key!(o, "id");
        o.str(&meta.cpts_id);
        key!(o, "name");
        o.opt_str((cx.cpts_name)(&meta.cpts_id));
        o.close();
        let cpts = o.buf.clone();
        o.buf.clear();
        let last = meta.last_success_at.load(Ordering::Relaxed);
        o.open();
        key!(o, "id");
        o.int(meta.id);
        key!(o, "name");
        o.str(&meta.name);
        key!(o, "last_success_at");
        if last > 0 {
            o.time(last);
        } else {
            o.null();
        }
        key!(o, "fresh");
        o.bool(meta.is_fresh(cx.now));
        o.close();
        SourcePart {
            id: meta.id,
            cpts,
            source: o.buf,
        }
    }
}

/// A result's cached JSON: `[place]` and `[practitioner, structure, booking_phone]`.
type CachedJson<'a> = (&'a [Box<RawValue>], &'a [Box<RawValue>]);

/// Fetches, for every hit, its place's and provider's cached JSON and reads the first byte of
/// each string the answer will copy, before anything is written.
///
/// Those strings live in separate heap blocks all over the index (two per slot, one per
/// cached value), so they are mostly out of cache: read while writing, each miss waits for
/// the previous one (the writing depends on them). Read here, in passes of independent loads
/// (pointers first, then what they point to), the misses overlap.
fn warm<'a>(hits: &'a [Hit<'a>]) -> Vec<CachedJson<'a>> {
    let first = |b: &[u8]| b.first().copied().unwrap_or(0);
    let mut touched = 0u8;
    let cached: Vec<CachedJson<'a>> = hits
        .iter()
        .map(|h| {
            let s = h.slot();
            touched ^= first(s.external_id.as_bytes());
            touched ^= first(s.booking_url.as_deref().unwrap_or_default().as_bytes());
            let place: &PlaceEntry = h.place;
            let pr: &Provider = &s.provider;
            (
                place.json.get_or(|| place_json(place)),
                pr.json.get_or(|| provider_json(pr)),
            )
        })
        .collect();
    for (place, provider) in &cached {
        for v in place.iter().chain(provider.iter()) {
            touched ^= first(v.get().as_bytes());
        }
    }
    std::hint::black_box(touched);
    cached
}

fn result(o: &mut Out, h: &Hit, json: &CachedJson<'_>, part: &SourcePart) {
    let s = h.slot();
    let (place_json, provider_json) = *json;
    o.open();
    key!(o, "slot_id");
    o.int(s.id);
    key!(o, "external_id");
    o.str(&s.external_id);
    key!(o, "start");
    o.time(s.start);
    key!(o, "end");
    o.time(s.end);
    key!(o, "distance_km");
    o.num((h.distance_m / 10.0).round() / 100.0);
    key!(o, "place");
    o.raw(&place_json[0]);
    key!(o, "practitioner");
    o.raw(&provider_json[0]);
    key!(o, "structure");
    o.raw(&provider_json[1]);
    key!(o, "cpts");
    o.ascii(&part.cpts);
    key!(o, "modality");
    o.code(s.modality.code());
    key!(o, "appointment_type");
    match s.appointment_type {
        Some(t) => o.code(t),
        None => o.null(),
    }
    key!(o, "surnumeraire");
    o.bool(s.surnumeraire);
    key!(o, "capacity");
    o.int(s.capacity);
    key!(o, "booking_url");
    o.opt_str(s.booking_url.as_deref());
    key!(o, "booking_phone");
    o.raw(&provider_json[2]);
    key!(o, "source");
    o.ascii(&part.source);
    o.close();
}

#[derive(Serialize)]
struct PlaceOut<'a> {
    id: i64,
    name: Option<&'a str>,
    address: Option<&'a str>,
    postcode: Option<&'a str>,
    city: Option<&'a str>,
    insee: Option<&'a str>,
    lat: f64,
    lon: f64,
    precision: &'static str,
}

#[derive(Serialize)]
struct PractitionerOut<'a> {
    id: Option<&'a str>,
    name: Option<&'a str>,
    profession: Option<&'a str>,
    specialty: Option<&'a str>,
}

#[derive(Serialize)]
struct StructureOut<'a> {
    kind: &'a str,
    id: Option<&'a str>,
    name: Option<&'a str>,
}

/// `value` as a JSON value kept verbatim (`null` if it cannot be written, which these types
/// never do: they have no maps).
fn raw(value: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// `[place]`: the place object of a result.
fn place_json(place: &PlaceEntry) -> Vec<Box<RawValue>> {
    vec![raw(&PlaceOut {
        id: place.id,
        name: place.name.as_deref(),
        address: place.address.as_deref(),
        postcode: place.postcode.as_deref(),
        city: place.city.as_deref(),
        insee: place.insee.as_deref(),
        lat: place.position.lat,
        lon: place.position.lon,
        precision: place.precision.as_str(),
    })]
}

/// `[practitioner, structure, booking_phone]` of a result (each `null` when absent).
fn provider_json(pr: &Provider) -> Vec<Box<RawValue>> {
    let practitioner = (pr.practitioner_id.is_some() || pr.practitioner_name.is_some()).then_some(
        PractitionerOut {
            id: pr.practitioner_id.as_deref(),
            name: pr.practitioner_name.as_deref(),
            profession: pr.profession.as_deref(),
            specialty: pr.specialty.as_deref(),
        },
    );
    let structure = pr.structure_kind.as_deref().map(|kind| StructureOut {
        kind,
        id: pr.structure_id.as_deref(),
        name: pr.structure_name.as_deref(),
    });
    vec![
        raw(&practitioner),
        raw(&structure),
        raw(&pr.booking_phone.as_deref()),
    ]
}

/// Europe/Paris's offset from UTC at `ts`, seconds (from the tz database).
fn paris_offset(ts: i64) -> Option<i32> {
    use chrono::TimeZone;
    let utc = DateTime::<Utc>::from_timestamp(ts, 0)?.naive_utc();
    Some(Paris.offset_from_utc_datetime(&utc).fix().local_minus_utc())
}

/// `"YYYY-MM-DDTHH:MM:SS+HH:MM"` (quotes included) in Europe/Paris, as [`paris`] writes it;
/// `None` outside years 0–9999 or for an offset that is not whole minutes. The offset comes
/// from the tz database (chrono-tz); the calendar arithmetic is done here, without building
/// `chrono` date-times (the search answer writes two instants per result).
fn paris_bytes(ts: i64, offset: i32) -> Option<[u8; 27]> {
    if offset % 60 != 0 {
        return None;
    }
    let local = ts + i64::from(offset);
    let (year, month, day) = civil_from_days(local.div_euclid(86_400));
    let year = u32::try_from(year).ok().filter(|y| *y <= 9999)?;
    let secs = local.rem_euclid(86_400) as u32;
    let mut b = *b"\"0000-00-00T00:00:00+00:00\"";
    let mut put = |at: usize, v: u32| put_pair(&mut b, at, v);
    put(1, year / 100);
    put(3, year % 100);
    put(6, month);
    put(9, day);
    put(12, secs / 3600);
    put(15, secs / 60 % 60);
    put(18, secs % 60);
    let minutes = offset.unsigned_abs() / 60;
    put(21, minutes / 60);
    put(24, minutes % 60);
    if offset < 0 {
        b[20] = b'-';
    }
    Some(b)
}

/// Writes `v` (< 100) as two digits at `b[at..at + 2]`.
fn put_pair(b: &mut [u8; 27], at: usize, v: u32) {
    let v = v as usize * 2;
    b[at..at + 2].copy_from_slice(&DIGIT_PAIRS[v..v + 2]);
}

/// "00" to "99".
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Whether a JSON string holding `s` needs escapes: a quote, a backslash or a control
/// character. Eight bytes at a time, with the classic "has a byte less than n" /
/// "has a zero byte" word tricks (exact, no false positive; bytes ≥ 0x80 never match).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        let x = u64::from_le_bytes(x);
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
        if control
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Europe/Paris's offset from UTC through the whole UTC day `day` (days since 1970-01-01), or
/// `None` when it changes during that day. Kept in a small lock-free table shared by all
/// requests (a slot of the table holds one day: `(day + 2^40) << 20 | (offset + 2^19)`, `0` for
/// none yet, offset part `0` for a changing day), so the tz database is asked once per day seen.
fn day_offset(day: i64) -> Option<i32> {
    use std::sync::atomic::AtomicU64;
    const SLOTS: usize = 512;
    static TABLE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
    const CHANGES: u64 = 0;
    let tag = (day + (1 << 40)) as u64;
    let slot = &TABLE[day.rem_euclid(SLOTS as i64) as usize];
    let seen = slot.load(Ordering::Relaxed);
    if seen >> 20 == tag {
        let code = seen & 0xF_FFFF;
        return (code != CHANGES).then(|| code as i32 - (1 << 19));
    }
    let (a, b) = (
        paris_offset(day.saturating_mul(86_400)),
        paris_offset(day.saturating_mul(86_400).saturating_add(86_399)),
    );
    let whole = a.filter(|a| Some(*a) == b);
    if (-(1i64 << 40)..(1 << 40)).contains(&day) {
        let code = whole.map_or(CHANGES, |o| (o + (1 << 19)) as u64);
        slot.store(tag << 20 | code, Ordering::Relaxed);
    }
    whole
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `"name":` (preceded by a comma unless it opens an object) as one literal.
macro_rules! key {
    ($o:expr, $name:literal) => {
        $o.key(concat!(",\"", $name, "\":"))
    };
}
use key;

/// A JSON writer for objects whose keys are known: it tracks only whether a comma is due.
struct Out {
    buf: Vec<u8>,
    first: bool,
    /// The last instant's local day, offset, and its bytes: an answer's instants mostly fall on
    /// a few days, whose date and offset are then copied instead of worked out again.
    last_day: Option<(i64, i32, [u8; 27])>,
}

impl Out {
    fn with_capacity(n: usize) -> Self {
        Out {
            buf: Vec::with_capacity(n),
            first: true,
            last_day: None,
        }
    }
    fn open(&mut self) {
        self.buf.push(b'{');
        self.first = true;
    }
    fn close(&mut self) {
        self.buf.push(b'}');
        self.first = false;
    }
    /// `lit` is `,"name":` (written by [`key!`]); its comma is dropped when the key opens an
    /// object. The names must need no escaping (the literals here are plain ASCII).
    fn key(&mut self, lit: &'static str) {
        let lit = lit.as_bytes();
        let lit = if self.first { &lit[1..] } else { lit };
        self.first = false;
        self.buf.extend_from_slice(lit);
    }
    fn str(&mut self, s: &str) {
        // no quote, backslash or control character: nothing to escape; otherwise serde_json
        // escapes it
        if !needs_escape(s.as_bytes()) {
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        } else if serde_json::to_writer(&mut self.buf, s).is_err() {
            self.null();
        }
    }
    /// One of this program's own codes (`AMB`, `ROUTINE`…): plain ASCII, never escaped.
    fn code(&mut self, code: &'static str) {
        debug_assert!(!needs_escape(code.as_bytes()));
        self.buf.push(b'"');
        self.buf.extend_from_slice(code.as_bytes());
        self.buf.push(b'"');
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.null(),
        }
    }
    fn int(&mut self, v: impl itoa::Integer) {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
    /// As serde_json writes an `f64` (`null` when not finite).
    fn num(&mut self, v: f64) {
        if serde_json::to_writer(&mut self.buf, &v).is_err() {
            self.null();
        }
    }
    fn bool(&mut self, b: bool) {
        self.buf
            .extend_from_slice(if b { b"true" } else { b"false" });
    }
    fn null(&mut self) {
        self.buf.extend_from_slice(b"null");
    }
    fn raw(&mut self, v: &RawValue) {
        self.buf.extend_from_slice(v.get().as_bytes());
    }
    /// Bytes that are already JSON.
    fn ascii(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// An instant in Europe/Paris. Paris's offset is looked up once per UTC day for the whole
    /// process ([`day_offset`]), and per instant only on a day when it changes.
    fn time(&mut self, ts: i64) {
        let offset = day_offset(ts.div_euclid(86_400)).or_else(|| paris_offset(ts));
        let bytes = offset.and_then(|offset| self.paris_memo(ts, offset));
        match bytes {
            Some(b) => self.ascii(&b),
            None => self.str(&paris(ts)),
        }
    }
    /// [`paris_bytes`], with the date and offset taken from the previous instant when it fell
    /// on the same local day with the same offset (only the time of day is written then).
    fn paris_memo(&mut self, ts: i64, offset: i32) -> Option<[u8; 27]> {
        let local = ts.checked_add(i64::from(offset))?;
        let day = local.div_euclid(86_400);
        match self.last_day {
            Some((d, o, mut b)) if d == day && o == offset => {
                let secs = local.rem_euclid(86_400) as u32;
                put_pair(&mut b, 12, secs / 3600);
                put_pair(&mut b, 15, secs / 60 % 60);
                put_pair(&mut b, 18, secs % 60);
                Some(b)
            }
            _ => {
                let b = paris_bytes(ts, offset)?;
                self.last_day = Some((day, offset, b));
                Some(b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn instants_are_written_exactly_as_chrono_writes_them() {
        // around both 2026 DST changes, and a spread of instants over 1970–2100
        let mut instants: Vec<i64> = vec![0, 4_102_444_800];
        for change in [1_774_746_000i64, 1_792_890_000] {
            instants.extend((-7200..=7200).step_by(900).map(|d| change + d));
        }
        instants.extend((0..2000).map(|k| k * 2_049_979));
        // one writer for all (its per-day offset memo in play), and a fresh one for each
        let mut shared = Out::with_capacity(32);
        for ts in instants {
            let want = format!("\"{}\"", paris(ts));
            shared.buf.clear();
            shared.time(ts);
            assert_eq!(String::from_utf8(shared.buf.clone()).unwrap(), want, "{ts}");
            let mut o = Out::with_capacity(32);
            o.time(ts);
            assert_eq!(String::from_utf8(o.buf).unwrap(), want, "{ts}");
        }
    }

    #[test]
    fn instants_of_the_same_days_in_any_order_are_written_as_chrono_writes_them() {
        // every 7 minutes over three days around each 2026 DST change and a new year, visited
        // in a scrambled order by one writer: its previous-day memo is hit, missed and
        // replaced (same local day with another offset on the change days)
        let mut instants: Vec<i64> = Vec::new();
        for start in [1_774_656_000i64, 1_792_800_000, 1_798_675_200] {
            instants.extend((0..3 * 24 * 60 / 7).map(|k| start + k * 420 + k % 60));
        }
        let n = instants.len();
        let mut shared = Out::with_capacity(32);
        for i in 0..n {
            // a walk that mostly stays near the previous instant and sometimes jumps
            let ts = instants[(i * 7919 % 13 + i) % n];
            let want = format!("\"{}\"", paris(ts));
            shared.buf.clear();
            shared.time(ts);
            assert_eq!(String::from_utf8(shared.buf.clone()).unwrap(), want, "{ts}");
            shared.buf.clear();
            shared.time(instants[i * 104_729 % n]);
            let ts = instants[i * 104_729 % n];
            assert_eq!(
                String::from_utf8(shared.buf.clone()).unwrap(),
                format!("\"{}\"", paris(ts)),
                "{ts}"
            );
        }
    }

    #[test]
    fn calendar_dates_match_chrono_over_four_centuries() {
        use chrono::NaiveDate;
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for days in (-146_097..146_097 * 3).step_by(7) {
            let d = epoch + chrono::Duration::days(days);
            let (y, m, dd) = civil_from_days(days);
            assert_eq!(
                (y as i32, m, dd),
                (
                    chrono::Datelike::year(&d),
                    chrono::Datelike::month(&d),
                    chrono::Datelike::day(&d)
                ),
                "{days}"
            );
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "",
            "Cabinet médical Ménard",
            "dit \"le Grand\"",
            "C:\\chemin",
            "ligne 1\nligne 2\ttab\u{1}",
            "emoji 🩺 et \u{7f}",
            "</script>",
        ] {
            let mut o = Out::with_capacity(16);
            o.str(s);
            assert_eq!(o.buf, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn every_escape_is_found_wherever_it_falls_in_a_word() {
        for len in 0..24 {
            let plain = "é".repeat(len / 2) + &"a".repeat(len % 2);
            assert!(!needs_escape(plain.as_bytes()), "{plain:?}");
            for bad in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
                for at in 0..=len {
                    let mut s: Vec<u8> = vec![b'a'; len];
                    s.insert(at, bad as u8);
                    assert!(needs_escape(&s), "{:?}", String::from_utf8_lossy(&s));
                    let s = String::from_utf8(s).unwrap();
                    let mut o = Out::with_capacity(16);
                    o.str(&s);
                    assert_eq!(o.buf, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
        // neighbours of the special bytes are plain
        assert!(!needs_escape(b" !#[]^\x7f~ ABCDEFGH"));
    }

    #[test]
    fn nested_objects_get_their_commas_and_parse_back() {
        let mut o = Out::with_capacity(64);
        o.open();
        key!(o, "a");
        o.int(-3i64);
        key!(o, "b");
        o.open();
        key!(o, "c");
        o.null();
        key!(o, "d");
        o.num(f64::NAN);
        o.close();
        key!(o, "e");
        o.bool(true);
        key!(o, "f");
        o.num(2.5);
        key!(o, "g");
        o.opt_str(Some("x\"y"));
        o.close();
        let v: Value = serde_json::from_slice(&o.buf).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": -3, "b": {"c": null, "d": null}, "e": true, "f": 2.5, "g": "x\"y"})
        );
    }
}
