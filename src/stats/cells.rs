//! Reading single cells the way spreadsheets write them: text encoding, numbers with
//! French habits, dates, profession codes, and header names.

use super::reason;
use crate::domain::fold_name;
use chrono::{Datelike, NaiveDate};

/// A cell that could not be read: `(reason code, French message)`.
pub(crate) type CellError = (&'static str, String);

/// Decodes an upload to text: BOM-marked UTF-8/UTF-16 first, then UTF-8 if valid,
/// otherwise Windows-1252 (what Excel "CSV (séparateur: point-virgule)" writes in France).
pub(crate) fn decode(bytes: &[u8]) -> String {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return text.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

/// Words spreadsheets put in a cell to say "not counted"; read as an empty cell.
const NOT_COUNTED: [&str; 8] = ["nc", "n/c", "nd", "n/d", "na", "n/a", "-", "—"];

/// Separators of thousands accepted inside numbers: space, NBSP, narrow NBSP, thin space.
fn is_thousands_sep(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// A number as written: sign, and digits with the decimal separator normalised to `.`.
struct RawNumber {
    negative: bool,
    int_part: String,
    frac_part: String,
}

fn split_number(raw: &str, decimal_comma: bool) -> Result<Option<RawNumber>, CellError> {
    let s = raw.trim();
    if s.is_empty() || NOT_COUNTED.contains(&s.to_lowercase().as_str()) {
        return Ok(None);
    }
    let compact: String = s.chars().filter(|&c| !is_thousands_sep(c)).collect();
    let (negative, body) = match compact.strip_prefix(['-', '\u{2212}']) {
        Some(rest) => (true, rest),
        None => (false, compact.strip_prefix('+').unwrap_or(&compact)),
    };
    let is_sep = |c: char| c == '.' || (decimal_comma && c == ',');
    let mut parts = body.splitn(2, is_sep);
    let int_part = parts.next().unwrap_or("").to_string();
    let frac_part = parts.next().unwrap_or("").to_string();
    let digits_ok = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !digits_ok(&int_part)
        || !digits_ok(&frac_part)
    {
        let hint = if decimal_comma {
            "un nombre est attendu (ex. 1 234 ou 4,5)"
        } else {
            "un nombre est attendu (ex. 1234 ou 4.5)"
        };
        return Err((
            reason::NOT_A_NUMBER,
            format!("« {s} » n'est pas un nombre : {hint}"),
        ));
    }
    Ok(Some(RawNumber {
        negative,
        int_part,
        frac_part,
    }))
}

/// Reads a count: empty → `None`; a non-negative integer (`12`, `1 234`, `12,00`) → value.
pub(crate) fn parse_count(raw: &str, decimal_comma: bool) -> Result<Option<u64>, CellError> {
    let Some(n) = split_number(raw, decimal_comma)? else {
        return Ok(None);
    };
    let s = raw.trim();
    let is_zero = |p: &str| p.chars().all(|c| c == '0');
    if n.negative && !(is_zero(&n.int_part) && is_zero(&n.frac_part)) {
        return Err((
            reason::NEGATIVE_NUMBER,
            format!("« {s} » est négatif : un comptage est un entier positif ou nul"),
        ));
    }
    if !is_zero(&n.frac_part) {
        return Err((
            reason::NOT_AN_INTEGER,
            format!(
                "« {s} » n'est pas un nombre entier : un comptage ne peut pas avoir de décimales"
            ),
        ));
    }
    let int_part = if n.int_part.is_empty() {
        "0"
    } else {
        &n.int_part
    };
    int_part.parse::<u64>().map(Some).map_err(|_| {
        (
            reason::NOT_A_NUMBER,
            format!("« {s} » est trop grand pour un comptage"),
        )
    })
}

/// Reads a decimal (the median delay): empty → `None`; finite and non-negative.
pub(crate) fn parse_decimal(raw: &str, decimal_comma: bool) -> Result<Option<f64>, CellError> {
    let Some(n) = split_number(raw, decimal_comma)? else {
        return Ok(None);
    };
    let s = raw.trim();
    let text = format!(
        "{}.{}",
        if n.int_part.is_empty() {
            "0"
        } else {
            &n.int_part
        },
        if n.frac_part.is_empty() {
            "0"
        } else {
            &n.frac_part
        }
    );
    let v: f64 = text
        .parse()
        .map_err(|_| (reason::NOT_A_NUMBER, format!("« {s} » n'est pas un nombre")))?;
    if !v.is_finite() {
        return Err((
            reason::NOT_A_NUMBER,
            format!("« {s} » n'est pas un nombre fini"),
        ));
    }
    if n.negative && v != 0.0 {
        return Err((
            reason::NEGATIVE_NUMBER,
            format!("« {s} » est négatif : un délai est positif ou nul"),
        ));
    }
    Ok(Some(v))
}

/// How dates are written in a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateStyle {
    /// `YYYY-MM-DD` only.
    Iso,
    /// `DD/MM/YYYY` (day and month may have one digit, a ` 00:00[:00]` time is ignored);
    /// ISO accepted too.
    French,
}

/// Reads a required date.
pub(crate) fn parse_date(raw: &str, style: DateStyle) -> Result<NaiveDate, CellError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err((reason::MISSING_VALUE, "la date est vide".to_string()));
    }
    let iso = || {
        let ok_shape = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
        ok_shape
            .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .flatten()
    };
    let french = || {
        let date_part = s
            .strip_suffix(" 00:00:00")
            .or_else(|| s.strip_suffix(" 00:00"))
            .unwrap_or(s);
        let parts: Vec<&str> = date_part.split('/').collect();
        match parts.as_slice() {
            [d, m, y]
                if y.len() == 4
                    && (1..=2).contains(&d.len())
                    && (1..=2).contains(&m.len())
                    && [d, m, y]
                        .iter()
                        .all(|p| p.chars().all(|c| c.is_ascii_digit())) =>
            {
                NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
            }
            _ => None,
        }
    };
    let found = match style {
        DateStyle::Iso => iso(),
        DateStyle::French => french().or_else(iso),
    };
    found.ok_or_else(|| {
        let expected = match style {
            DateStyle::Iso => "une date AAAA-MM-JJ est attendue (ex. 2026-09-30)",
            DateStyle::French => "une date JJ/MM/AAAA est attendue (ex. 30/09/2026)",
        };
        (
            reason::INVALID_DATE,
            format!("« {s} » n'est pas une date valide : {expected}"),
        )
    })
}

/// Reads a profession: a 2-digit TRE_G15 code, or a common French name of the profession;
/// empty or "Tous"/"Total" → `None` (all professions together).
pub(crate) fn parse_profession(raw: &str) -> Result<Option<String>, CellError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() == 2 && s.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Some(s.to_string()));
    }
    let code = match fold_name(s).as_str() {
        "tous" | "toutes" | "total" | "ensemble" | "toutes professions" => return Ok(None),
        "medecin" | "medecins" | "medecin generaliste" | "medecins generalistes" => "10",
        "pharmacien" | "pharmaciens" => "21",
        "chirurgien dentiste" | "chirurgiens dentistes" | "dentiste" => "40",
        "sage femme" | "sages femmes" => "50",
        "infirmier" | "infirmiere" | "infirmiers" | "ide" => "60",
        "masseur kinesitherapeute" | "kinesitherapeute" | "kinesitherapeutes" | "kine" => "70",
        _ => {
            return Err((
                reason::INVALID_PROFESSION,
                format!(
                    "« {s} » n'est pas un code profession TRE_G15 à 2 chiffres \
                     (ex. 10 médecin, 60 infirmier) ni un nom de profession connu"
                ),
            ));
        }
    };
    Ok(Some(code.to_string()))
}

/// The key a header is matched on: accents, case, punctuation and surrounding spaces ignored.
pub(crate) fn header_key(h: &str) -> String {
    fold_name(h)
}

/// Reads a month column header: `2026-09`, `09/2026`, or what Excel makes of them in
/// French (`sept-26`, `sept. 2026`, `septembre 2026`). Returns the first and last day.
pub(crate) fn parse_month(h: &str) -> Option<(NaiveDate, NaiveDate)> {
    let s = h.trim();
    let numeric = |y: &str, m: &str| -> Option<(i32, u32)> {
        let ok = y.len() == 4
            && (1..=2).contains(&m.len())
            && y.chars().chain(m.chars()).all(|c| c.is_ascii_digit());
        ok.then(|| Some((y.parse().ok()?, m.parse().ok()?)))
            .flatten()
    };
    let (year, month) = if let Some((y, m)) = s.split_once('-').and_then(|(y, m)| numeric(y, m)) {
        (y, m)
    } else if let Some((y, m)) = s.split_once('/').and_then(|(m, y)| numeric(y, m)) {
        (y, m)
    } else {
        let folded = fold_name(s);
        let mut words = folded.split(' ');
        let (name, year) = (words.next()?, words.next()?);
        if words.next().is_some() || !year.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        const NAMES: [&[&str]; 12] = [
            &["janv", "janvier", "jan"],
            &["fevr", "fevrier", "fev"],
            &["mars"],
            &["avr", "avril"],
            &["mai"],
            &["juin"],
            &["juil", "juillet"],
            &["aout"],
            &["sept", "septembre"],
            &["oct", "octobre"],
            &["nov", "novembre"],
            &["dec", "decembre"],
        ];
        let m = NAMES.iter().position(|n| n.contains(&name))? as u32 + 1;
        let y: i32 = match year.len() {
            2 => 2000 + year.parse::<i32>().ok()?,
            4 => year.parse().ok()?,
            _ => return None,
        };
        (y, m)
    };
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    let last = next.pred_opt()?;
    debug_assert_eq!(last.month(), month);
    Some((first, last))
}

/// One data row of a CSV upload: its physical line and trimmed cells.
pub(crate) struct Row {
    pub line: usize,
    pub cells: Vec<String>,
}

/// Splits CSV text into the header row and data rows. Blank rows (every cell empty, as
/// spreadsheets leave at the end) are skipped. The delimiter is the most frequent of
/// `;`, `,` and tab in the first non-blank line, `preferred` on a tie.
pub(crate) fn read_csv(text: &str, preferred: u8) -> (u8, Option<Row>, Vec<Row>) {
    let first_line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let count = |d: char| first_line.matches(d).count();
    let candidates = [(b';', count(';')), (b',', count(',')), (b'\t', count('\t'))];
    let max = candidates.iter().map(|c| c.1).max().unwrap_or(0);
    let delimiter = if candidates.iter().any(|&(d, n)| d == preferred && n == max) {
        preferred
    } else {
        candidates
            .iter()
            .find(|c| c.1 == max)
            .map_or(preferred, |c| c.0)
    };

    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    // The csv crate's own line count lags by one after a CRLF or a blank line (it counts
    // the `\n` ending the previous record only when it reads the next one): lines are
    // counted here from the record's byte offset, skipping the line breaks it starts with.
    let bytes = text.as_bytes();
    let newlines: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|b| *b.1 == b'\n')
        .map(|b| b.0)
        .collect();
    let line_at = |byte: usize| {
        let start = byte
            + bytes[byte.min(bytes.len())..]
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
        1 + newlines.partition_point(|&n| n < start)
    };
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| line_at(p.byte() as usize));
                let cells: Vec<String> = record.iter().map(|c| c.trim().to_string()).collect();
                if cells.iter().all(String::is_empty) {
                    continue;
                }
                rows.push(Row { line, cells });
            }
            // Only I/O or UTF-8 errors can happen here, and the text is in memory and valid.
            Err(_) => break,
        }
    }
    let mut rows = rows.into_iter();
    let header = rows.next();
    (delimiter, header, rows.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_french_habits_and_reject_the_rest() {
        assert_eq!(parse_count("1 234", true), Ok(Some(1234)));
        assert_eq!(parse_count("1\u{a0}234", true), Ok(Some(1234)));
        assert_eq!(parse_count("1\u{202f}234", true), Ok(Some(1234)));
        assert_eq!(parse_count("12,00", true), Ok(Some(12)));
        assert_eq!(parse_count("", true), Ok(None));
        assert_eq!(parse_count(" NC ", true), Ok(None));
        assert_eq!(parse_count("-0", false), Ok(Some(0)));
        assert_eq!(
            parse_count("-3", false).unwrap_err().0,
            reason::NEGATIVE_NUMBER
        );
        assert_eq!(
            parse_count("12,5", true).unwrap_err().0,
            reason::NOT_AN_INTEGER
        );
        assert_eq!(
            parse_count("12,5", false).unwrap_err().0,
            reason::NOT_A_NUMBER
        );
        assert_eq!(
            parse_count("douze", true).unwrap_err().0,
            reason::NOT_A_NUMBER
        );
        assert_eq!(
            parse_count("1e3", false).unwrap_err().0,
            reason::NOT_A_NUMBER
        );
        assert_eq!(
            parse_count("99999999999999999999999", false).unwrap_err().0,
            reason::NOT_A_NUMBER
        );
    }

    #[test]
    fn decimals_read_comma_or_point() {
        assert_eq!(parse_decimal("4,5", true), Ok(Some(4.5)));
        assert_eq!(parse_decimal("4.5", true), Ok(Some(4.5)));
        assert_eq!(parse_decimal(",5", true), Ok(Some(0.5)));
        assert_eq!(
            parse_decimal("4,5", false).unwrap_err().0,
            reason::NOT_A_NUMBER
        );
        assert_eq!(
            parse_decimal("-1,5", true).unwrap_err().0,
            reason::NEGATIVE_NUMBER
        );
        assert_eq!(
            parse_decimal(".", true).unwrap_err().0,
            reason::NOT_A_NUMBER
        );
    }

    #[test]
    fn dates_iso_and_french() {
        let d = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
        assert_eq!(parse_date("2026-09-01", DateStyle::Iso), Ok(d));
        assert_eq!(parse_date("01/09/2026", DateStyle::French), Ok(d));
        assert_eq!(parse_date("1/9/2026 00:00", DateStyle::French), Ok(d));
        assert_eq!(parse_date("2026-09-01", DateStyle::French), Ok(d));
        assert_eq!(
            parse_date("01/09/2026", DateStyle::Iso).unwrap_err().0,
            reason::INVALID_DATE
        );
        assert_eq!(
            parse_date("01/09/26", DateStyle::French).unwrap_err().0,
            reason::INVALID_DATE
        );
        assert_eq!(
            parse_date("31/02/2026", DateStyle::French).unwrap_err().0,
            reason::INVALID_DATE
        );
        assert_eq!(
            parse_date(" ", DateStyle::French).unwrap_err().0,
            reason::MISSING_VALUE
        );
    }

    #[test]
    fn professions_codes_and_names() {
        assert_eq!(parse_profession("10"), Ok(Some("10".into())));
        assert_eq!(parse_profession("Infirmière"), Ok(Some("60".into())));
        assert_eq!(parse_profession("Tous"), Ok(None));
        assert_eq!(parse_profession("").unwrap(), None);
        assert_eq!(
            parse_profession("999").unwrap_err().0,
            reason::INVALID_PROFESSION
        );
    }

    #[test]
    fn months_in_the_forms_excel_writes_them() {
        let sept = (
            NaiveDate::from_ymd_opt(2026, 9, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
        );
        assert_eq!(parse_month("2026-09"), Some(sept));
        assert_eq!(parse_month("09/2026"), Some(sept));
        assert_eq!(parse_month("sept-26"), Some(sept));
        assert_eq!(parse_month("Septembre 2026"), Some(sept));
        assert_eq!(
            parse_month("2028-02").unwrap().1,
            NaiveDate::from_ymd_opt(2028, 2, 29).unwrap()
        );
        assert_eq!(
            parse_month("2026-12").unwrap().1,
            NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
        );
        assert_eq!(parse_month("2026-13"), None);
        assert_eq!(parse_month("total"), None);
    }

    #[test]
    fn csv_lines_are_physical_lines_with_crlf_and_blank_lines() {
        for text in [
            "a;b\r\n1;2\r\n\r\n3;4\r\n",
            "a;b\n1;2\n\n3;4\n",
            "\na;b\n1;2\n\n3;4",
        ] {
            let (d, header, rows) = read_csv(text, b',');
            assert_eq!(d, b';');
            let offset = usize::from(text.starts_with('\n'));
            assert_eq!(header.unwrap().line, 1 + offset, "{text:?}");
            let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
            assert_eq!(lines, vec![2 + offset, 4 + offset], "{text:?}");
        }
    }

    #[test]
    fn decode_detects_bom_utf8_and_windows_1252() {
        assert_eq!(decode(b"\xEF\xBB\xBFD\xC3\xA9but"), "Début");
        assert_eq!(decode("Début".as_bytes()), "Début");
        assert_eq!(decode(b"D\xE9but"), "Début");
        assert_eq!(decode(b"\xFF\xFED\x00\xE9\x00"), "Dé");
    }
}
