//! Spreadsheet CSV, as CPTS export it from Excel or LibreOffice.
//!
//! Rules kept here:
//! - encoding: UTF-8 (with or without BOM) when the bytes are valid UTF-8, else
//!   Windows-1252 (what Excel writes on French Windows); CRLF or LF;
//! - delimiter: `;` or `,` (or tab), whichever occurs most in the header line;
//! - the first line is the header; columns are matched ignoring case, accents, spaces,
//!   `_`, `-`, `.` and parentheses (`Date début`, `date_debut`, `DATE-DEBUT` are one column);
//!   aliases are listed in [`COLUMNS`]. Unknown columns are reported, not fatal. A header
//!   without `slot_id`, `start` and `end`/`duration_min` makes the file unreadable;
//! - dates: RFC 3339, `YYYY-MM-DD HH:MM[:SS]`, `DD/MM/YYYY HH:MM[:SS]`, read as Europe/Paris
//!   when they carry no offset (see [`super::normalize`]);
//! - numbers: a decimal comma is accepted (`47,2184`); status defaults to free when absent;
//!   modality defaults to AMB when empty and an unknown modality rejects the slot
//!   (`invalid_value`: a home visit must never be shown as a practice consultation);
//! - places are keyed by (name, address, postcode, city, lat, lon) folded, so rows of the same
//!   practice share one place.

use super::normalize::{
    EndSpec, FastMap, Normalizer, PlaceId, PlaceInput, Rejection, SlotDraft, normalize_phone,
    practitioner_national_id, structure_national_id,
};
use super::report::{Where, reason};
use super::{FeedError, IngestContext, IngestOutcome, strip_bom};
use crate::domain::fold_name;
use crate::domain::slot::{
    AppointmentType, Audience, AudienceSet, Modality, Practitioner, Structure, StructureKind,
};
use std::borrow::Cow;
use std::sync::Arc;

/// The fields a CSV column can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    SlotId,
    Start,
    End,
    DurationMin,
    Status,
    PractitionerRpps,
    PractitionerName,
    Profession,
    Specialty,
    PlaceName,
    Address,
    Postcode,
    City,
    Lat,
    Lon,
    Modality,
    BookingUrl,
    BookingPhone,
    Surnumeraire,
    StructureType,
    StructureId,
    StructureName,
    AppointmentType,
    Audience,
    Capacity,
}

/// Column positions by field (a small array: looked up 25 times per row).
#[derive(Default)]
struct ColumnIndex([Option<usize>; 25], usize);

impl ColumnIndex {
    fn get(&self, c: Column) -> Option<usize> {
        self.0[c as usize]
    }
    fn contains_key(&self, c: Column) -> bool {
        self.0[c as usize].is_some()
    }
    fn insert(&mut self, c: Column, i: usize) {
        self.0[c as usize] = Some(i);
        self.1 += 1;
    }
    fn is_empty(&self) -> bool {
        self.1 == 0
    }
}

/// Accepted header names per field, already folded (see [`fold_header`]). The first one is
/// the canonical name, used by [`super::generate::to_csv`].
pub const COLUMNS: &[(Column, &[&str])] = &[
    (
        Column::SlotId,
        &[
            "slotid",
            "id",
            "identifiant",
            "idcreneau",
            "identifiantcreneau",
        ],
    ),
    (Column::Start, &["start", "debut", "datedebut", "startdate"]),
    (Column::End, &["end", "fin", "datefin", "enddate"]),
    (
        Column::DurationMin,
        &[
            "durationmin",
            "duree",
            "dureemin",
            "duration",
            "dureeminutes",
        ],
    ),
    (Column::Status, &["status", "statut", "etat"]),
    (
        Column::PractitionerRpps,
        &[
            "practitionerrpps",
            "rpps",
            "numerorpps",
            "adeli",
            "idpraticien",
        ],
    ),
    (
        Column::PractitionerName,
        &["practitionername", "praticien", "nompraticien"],
    ),
    (Column::Profession, &["profession"]),
    (Column::Specialty, &["specialty", "specialite"]),
    (Column::PlaceName, &["placename", "lieu", "nomlieu"]),
    (Column::Address, &["address", "adresse"]),
    (Column::Postcode, &["postcode", "codepostal", "cp"]),
    (Column::City, &["city", "ville", "commune"]),
    (Column::Lat, &["lat", "latitude"]),
    (Column::Lon, &["lon", "lng", "longitude"]),
    (
        Column::Modality,
        &["modality", "modalite", "typeconsultation"],
    ),
    (
        Column::BookingUrl,
        &["bookingurl", "lien", "url", "lienrdv"],
    ),
    (Column::BookingPhone, &["bookingphone", "telephone", "tel"]),
    (Column::Surnumeraire, &["surnumeraire", "ensus"]),
    (Column::StructureType, &["structuretype", "typestructure"]),
    (
        Column::StructureId,
        &["structureid", "idstructure", "finess", "siret"],
    ),
    (
        Column::StructureName,
        &["structurename", "structure", "nomstructure"],
    ),
    (Column::AppointmentType, &["appointmenttype", "typerdv"]),
    (Column::Audience, &["audience", "visibilite"]),
    (Column::Capacity, &["capacity", "capacite"]),
];

/// Folds a header for matching: accents removed, lower case, only ASCII letters and digits.
pub fn fold_header(h: &str) -> String {
    deunicode::deunicode(h)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn column_of(header: &str) -> Option<Column> {
    let f = fold_header(header);
    COLUMNS
        .iter()
        .find(|(_, names)| names.contains(&f.as_str()))
        .map(|(c, _)| *c)
}

/// Decodes CSV bytes: UTF-8 (BOM stripped) when valid, else Windows-1252.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = strip_bom(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
        }
    }
}

/// The delimiter of a header line: the most frequent of `;`, `,`, tab outside quotes.
pub fn detect_delimiter(header: &str) -> u8 {
    let (mut semi, mut comma, mut tab, mut quoted) = (0, 0, 0, false);
    for c in header.bytes() {
        match c {
            b'"' => quoted = !quoted,
            b';' if !quoted => semi += 1,
            b',' if !quoted => comma += 1,
            b'\t' if !quoted => tab += 1,
            _ => {}
        }
    }
    if tab > semi && tab > comma {
        b'\t'
    } else if comma > semi {
        b','
    } else {
        b';'
    }
}

/// Reads a CSV export (rules in the module doc).
pub fn ingest_csv(bytes: &[u8], ctx: &IngestContext<'_>) -> Result<IngestOutcome, FeedError> {
    let text = decode(bytes);
    // The csv crate's line positions are off by one with CRLF line ends: normalise to LF so
    // that every reported line is the line a spreadsheet user sees.
    let text = if text.contains("\r\n") {
        Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        text
    };
    if text.trim().is_empty() {
        return Err(FeedError::Empty);
    }
    let header_line = text.lines().next().unwrap_or("");
    if header_line.trim().is_empty() {
        return Err(FeedError::Csv {
            line: 1,
            message: "no header row: the first line is empty".into(),
        });
    }
    let delimiter = detect_delimiter(header_line);
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_error(&e))?.clone();
    let mut index = ColumnIndex::default();
    let mut unknown = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        match column_of(h) {
            Some(c) if !index.contains_key(c) => index.insert(c, i),
            _ if h.trim().is_empty() => {}
            _ => unknown.push(h.trim().to_string()),
        }
    }
    if index.is_empty() {
        return Err(FeedError::Csv {
            line: 1,
            message: format!(
                "no header row: the first line `{}` names no known column (slot_id, start, end…)",
                truncate(header_line, 80)
            ),
        });
    }
    let mut missing = Vec::new();
    if !index.contains_key(Column::SlotId) {
        missing.push("slot_id (id, identifiant)");
    }
    if !index.contains_key(Column::Start) {
        missing.push("start (debut, date_debut)");
    }
    if !index.contains_key(Column::End) && !index.contains_key(Column::DurationMin) {
        missing.push("end (fin) or duration_min (duree)");
    }
    if !missing.is_empty() {
        return Err(FeedError::Csv {
            line: 1,
            message: format!("header lacks required column(s): {}", missing.join(", ")),
        });
    }
    let mut norm = Normalizer::new(ctx);
    norm.report.unknown_columns = unknown;
    let mut places: FastMap<String, PlaceId> = FastMap::default();
    let mut record = ::csv::StringRecord::new();
    let mut raw_key = String::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(&e)),
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let get = |c: Column| {
            index
                .get(c)
                .and_then(|i| record.get(i))
                .filter(|s| !s.is_empty())
        };
        row(&get, line, &mut norm, &mut places, &mut raw_key);
    }
    let (feed, report, removed_ids) = norm.finish();
    Ok(IngestOutcome {
        feed,
        report,
        removed_ids,
    })
}

fn row<'r>(
    get: &dyn Fn(Column) -> Option<&'r str>,
    line: usize,
    norm: &mut Normalizer<'_, '_>,
    places: &mut FastMap<String, PlaceId>,
    raw_key: &mut String,
) {
    let at = Where {
        line: Some(line),
        resource: None,
    };
    let place = place_of(get, line, norm, places, raw_key);
    let mut d = SlotDraft::new(
        get(Column::SlotId).map(|s| Cow::Owned(s.to_string())),
        place,
    );
    d.status = get(Column::Status);
    d.default_status = Some(crate::domain::slot::FeedStatus::Free);
    d.start = get(Column::Start);
    d.end = match (get(Column::End), get(Column::DurationMin)) {
        (Some(e), _) => EndSpec::End(e),
        (None, Some(m)) => EndSpec::Minutes(m),
        (None, None) => EndSpec::Missing,
    };
    let national_id = get(Column::PractitionerRpps).map(|v| {
        let (id, ok) = practitioner_national_id(v);
        if !ok {
            norm.report.warn(reason::UNRECOGNISED_IDENTIFIER, at, || {
                format!("practitioner id `{v}` is neither an RPPS (11 digits) nor an ADELI (9); kept as given")
            });
        }
        id
    });
    let p = Practitioner {
        national_id,
        name: get(Column::PractitionerName).map(str::to_string),
        profession: get(Column::Profession).map(str::to_string),
        specialty: get(Column::Specialty).map(str::to_string),
    };
    if p != Practitioner::default() {
        d.practitioner = Some(Arc::new(p));
    }
    let (st_type, st_id, st_name) = (
        get(Column::StructureType),
        get(Column::StructureId),
        get(Column::StructureName),
    );
    if st_type.is_some() || st_id.is_some() || st_name.is_some() {
        let kind = match st_type.map(|t| (t, StructureKind::parse(t))) {
            Some((_, Some(k))) => k,
            Some((t, None)) => {
                norm.report.warn(reason::IGNORED_VALUE, at, || {
                    format!(
                        "structure type `{t}` is not CPTS, MSP, CDS, SOS or OTHER; OTHER assumed"
                    )
                });
                StructureKind::Other
            }
            None => StructureKind::Other,
        };
        let national_id = st_id.map(|v| {
            let (id, ok) = structure_national_id(v);
            if !ok {
                norm.report.warn(reason::UNRECOGNISED_IDENTIFIER, at, || {
                    format!(
                        "structure id `{v}` is neither a FINESS (9) nor a SIRET (14); kept as given"
                    )
                });
            }
            id
        });
        d.structure = Some(Arc::new(Structure {
            kind,
            national_id,
            name: st_name.map(str::to_string),
        }));
    }
    if let Some(m) = get(Column::Modality) {
        match Modality::parse(m) {
            Some(m) => d.modality = m,
            None => {
                d.place = Err(Rejection::new(
                    reason::INVALID_VALUE,
                    format!(
                        "modality `{m}` is not AMB/cabinet, HH/domicile or VR/teleconsultation"
                    ),
                ));
            }
        }
    }
    d.booking_url = get(Column::BookingUrl).map(str::to_string);
    d.booking_phone = get(Column::BookingPhone)
        .and_then(normalize_phone)
        .map(Arc::from);
    if let Some(v) = get(Column::Surnumeraire) {
        match fold_name(v).as_str() {
            "oui" | "o" | "yes" | "y" | "1" | "true" | "vrai" | "x" => d.surnumeraire = true,
            "non" | "n" | "no" | "0" | "false" | "faux" => {}
            _ => norm.report.warn(reason::IGNORED_VALUE, at, || {
                format!("surnumeraire `{v}` is not oui/non; non assumed")
            }),
        }
    }
    if let Some(v) = get(Column::AppointmentType) {
        d.appointment_type = AppointmentType::parse(v);
        if d.appointment_type.is_none() {
            norm.report.warn(reason::IGNORED_VALUE, at, || {
                format!("appointment type `{v}` is not ROUTINE or WALKIN")
            });
        }
    }
    if let Some(v) = get(Column::Audience) {
        let mut set = AudienceSet::default();
        for code in v.split([',', '|', ' ', '+', '/']).filter(|c| !c.is_empty()) {
            match Audience::parse(code) {
                Some(a) => set.insert(a),
                None => norm.report.warn(reason::IGNORED_VALUE, at, || {
                    format!("audience `{code}` is not PUBLIC, PRO, SNP or CPTS")
                }),
            }
        }
        d.audience = set;
    }
    if let Some(v) = get(Column::Capacity) {
        match v.parse::<u32>() {
            Ok(n) if n >= 1 => d.capacity = n,
            _ => norm.report.warn(reason::IGNORED_VALUE, at, || {
                format!("capacity `{v}` is not a positive integer; 1 assumed")
            }),
        }
    }
    norm.slot(d, Some(line), None);
}

fn place_of<'r>(
    get: &dyn Fn(Column) -> Option<&'r str>,
    line: usize,
    norm: &mut Normalizer<'_, '_>,
    places: &mut FastMap<String, PlaceId>,
    raw_key: &mut String,
) -> Result<PlaceId, Rejection> {
    let fields = [
        Column::PlaceName,
        Column::Address,
        Column::Postcode,
        Column::City,
        Column::Lat,
        Column::Lon,
    ]
    .map(get);
    raw_key.clear();
    for f in fields {
        raw_key.push_str(f.unwrap_or(""));
        raw_key.push('\u{1f}');
    }
    if let Some(id) = places.get(raw_key.as_str()) {
        return Ok(*id);
    }
    let [name, address, postcode, city, lat, lon] = fields;
    let position = match (lat, lon) {
        (None, None) => None,
        (Some(la), Some(lo)) => match (parse_decimal(la), parse_decimal(lo)) {
            (Some(a), Some(o)) => Some((a, o)),
            _ => {
                return Err(Rejection::new(
                    reason::INVALID_VALUE,
                    format!("latitude/longitude `{la}` / `{lo}` are not numbers"),
                ));
            }
        },
        _ => {
            return Err(Rejection::new(
                reason::INVALID_VALUE,
                "latitude and longitude must be given together",
            ));
        }
    };
    let key = format!(
        "csv:{}|{}|{}|{}|{}|{}",
        fold_name(name.unwrap_or("")),
        fold_name(address.unwrap_or("")),
        postcode.unwrap_or(""),
        fold_name(city.unwrap_or("")),
        position.map(|p| p.0.to_string()).unwrap_or_default(),
        position.map(|p| p.1.to_string()).unwrap_or_default(),
    );
    let input = PlaceInput {
        key: Cow::Owned(key),
        name: name.map(Cow::Borrowed),
        address: address.map(Cow::Borrowed),
        postcode: postcode.map(Cow::Borrowed),
        city: city.map(Cow::Borrowed),
        position,
    };
    let id = norm.place(
        input,
        Where {
            line: Some(line),
            resource: None,
        },
    );
    places.insert(raw_key.clone(), id);
    Ok(id)
}

/// A decimal number with `.` or `,` as decimal separator.
fn parse_decimal(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.contains(',') {
        s.replacen(',', ".", 1).parse().ok()
    } else {
        s.parse().ok()
    }
}

fn csv_error(e: &::csv::Error) -> FeedError {
    let line = e.position().map_or(1, |p| p.line() as usize);
    FeedError::Csv {
        line,
        message: e.to_string(),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_fold_to_columns() {
        assert_eq!(column_of("Date début"), Some(Column::Start));
        assert_eq!(column_of("DATE_DEBUT"), Some(Column::Start));
        assert_eq!(column_of("Durée (min)"), Some(Column::DurationMin));
        assert_eq!(column_of("Code postal"), Some(Column::Postcode));
        assert_eq!(column_of("En sus"), Some(Column::Surnumeraire));
        assert_eq!(column_of("slot-id"), Some(Column::SlotId));
        assert_eq!(column_of("Commentaire"), None);
    }

    #[test]
    fn delimiter_and_encoding_detection() {
        assert_eq!(detect_delimiter("id;debut;fin"), b';');
        assert_eq!(detect_delimiter("id,start,end"), b',');
        assert_eq!(detect_delimiter("\"a;b\",c,d"), b',');
        assert_eq!(detect_delimiter("id\tstart\tend"), b'\t');
        assert_eq!(decode(b"\xEF\xBB\xBFd\xC3\xA9but"), "début");
        assert_eq!(decode(b"d\xE9but"), "début");
        assert_eq!(parse_decimal("47,2184"), Some(47.2184));
        assert_eq!(parse_decimal("-1.55"), Some(-1.55));
        assert_eq!(parse_decimal("abc"), None);
    }
}
