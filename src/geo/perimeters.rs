//! CPTS perimeters: the CSV `cpts_id;name;department;finess;insee` (one line per member commune)
//! that says which communes make up each CPTS territory.
//!
//! Rules kept:
//! - the file is the source of truth for membership; a region replaces it with its official list;
//! - a commune belongs to at most one CPTS (listed twice → error naming both lines);
//! - every INSEE code must be a current commune of the region, every line has the 5 fields, and
//!   `cpts_id`, `name`, `department`, `insee` are non-empty; `department` is one of the five;
//! - all lines of one `cpts_id` agree on `name`, `department` and `finess`;
//! - `;` is the delimiter; a file whose header uses `,` (spreadsheet export) is accepted too;
//! - communes listed in no CPTS are allowed (they are "not covered").
//!
//! Every error names the file and the line (1-based, the header is line 1).

use super::GeoError;
use crate::domain::{DEPARTMENTS, InseeCode};
use std::collections::HashMap;
use std::path::Path;

/// The header line, in this order.
pub const HEADER: [&str; 5] = ["cpts_id", "name", "department", "finess", "insee"];

/// One CPTS as listed in the perimeters CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerritoryDef {
    pub id: String,
    pub name: String,
    pub department: String,
    /// FINESS of the CPTS's legal entity, if known (empty in the CSV → `None`).
    pub finess: Option<String>,
    /// Member communes, sorted by INSEE code.
    pub communes: Vec<InseeCode>,
}

/// Reads and validates a perimeters file (UTF-8, or Windows-1252 as exported by spreadsheets).
/// `known` says whether an INSEE code is a current commune of the region.
pub fn read_perimeters(
    path: &Path,
    known: impl Fn(&InseeCode) -> bool,
) -> Result<Vec<TerritoryDef>, GeoError> {
    let bytes = std::fs::read(path).map_err(|source| GeoError::Io {
        path: path.to_owned(),
        source,
    })?;
    // Spreadsheets on French Windows still export Windows-1252: accept it.
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => encoding_rs::WINDOWS_1252
            .decode(e.as_bytes())
            .0
            .into_owned(),
    };
    parse_perimeters(&text, path, known)
}

/// Validates perimeters CSV text (see the module rules); `path` is only used in messages.
/// Territories come out in the order of their first line.
pub fn parse_perimeters(
    text: &str,
    path: &Path,
    known: impl Fn(&InseeCode) -> bool,
) -> Result<Vec<TerritoryDef>, GeoError> {
    let err = |line: u64, reason: String| GeoError::Perimeters {
        path: path.to_owned(),
        line,
        reason,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().next().unwrap_or("");
    let delimiter = if !first.contains(';') && first.contains(',') {
        b','
    } else {
        b';'
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());

    let mut defs: Vec<TerritoryDef> = Vec::new();
    let mut by_id: HashMap<String, (usize, u64)> = HashMap::new();
    let mut seen: HashMap<InseeCode, u64> = HashMap::new();
    let mut header_seen = false;
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            err(line, format!("unreadable CSV: {e}"))
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        let fields: Vec<&str> = rec.iter().map(str::trim).collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue; // blank line
        }
        if !header_seen {
            header_seen = true;
            let got: Vec<String> = fields.iter().map(|f| f.to_ascii_lowercase()).collect();
            if got != HEADER {
                return Err(err(
                    line,
                    format!(
                        "header is `{}`, expected `{}`",
                        fields.join(";"),
                        HEADER.join(";")
                    ),
                ));
            }
            continue;
        }
        if fields.len() != HEADER.len() {
            return Err(err(
                line,
                format!(
                    "{} fields, expected {} ({})",
                    fields.len(),
                    HEADER.len(),
                    HEADER.join(";")
                ),
            ));
        }
        for (i, name) in HEADER.iter().enumerate() {
            if *name != "finess" && fields[i].is_empty() {
                return Err(err(line, format!("field `{name}` is empty")));
            }
        }
        let (id, name, department, finess, insee) =
            (fields[0], fields[1], fields[2], fields[3], fields[4]);
        if !DEPARTMENTS.contains(&department) {
            return Err(err(
                line,
                format!(
                    "department `{department}` is not one of {}",
                    DEPARTMENTS.join(", ")
                ),
            ));
        }
        let code: InseeCode = insee.parse().map_err(|e: String| err(line, e))?;
        if !known(&code) {
            return Err(err(
                line,
                format!("INSEE code {code} is not a current commune of the region (COG 2026)"),
            ));
        }
        if let Some(first_line) = seen.insert(code.clone(), line) {
            return Err(err(
                line,
                format!("commune {code} is listed twice (already on line {first_line})"),
            ));
        }
        let finess = (!finess.is_empty()).then(|| finess.to_string());
        match by_id.get(id) {
            Some(&(i, first_line)) => {
                let d = &mut defs[i];
                if d.name != name || d.department != department || d.finess != finess {
                    return Err(err(
                        line,
                        format!(
                            "CPTS `{id}` has name/department/finess `{name}`/`{department}`/`{}`, but line {first_line} says `{}`/`{}`/`{}`",
                            finess.as_deref().unwrap_or(""),
                            d.name,
                            d.department,
                            d.finess.as_deref().unwrap_or("")
                        ),
                    ));
                }
                d.communes.push(code);
            }
            None => {
                by_id.insert(id.to_string(), (defs.len(), line));
                defs.push(TerritoryDef {
                    id: id.to_string(),
                    name: name.to_string(),
                    department: department.to_string(),
                    finess,
                    communes: vec![code],
                });
            }
        }
    }
    if !header_seen {
        return Err(err(
            1,
            format!("empty file, expected the header `{}`", HEADER.join(";")),
        ));
    }
    for d in &mut defs {
        d.communes.sort();
    }
    Ok(defs)
}

/// Writes territories as perimeters CSV text (header, then one line per member commune, in the
/// given territory order and member order). Deterministic.
pub fn write_perimeters(defs: &[TerritoryDef]) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(Vec::new());
    w.write_record(HEADER).expect("write to Vec");
    for d in defs {
        for c in &d.communes {
            w.write_record([
                d.id.as_str(),
                d.name.as_str(),
                d.department.as_str(),
                d.finess.as_deref().unwrap_or(""),
                c.as_str(),
            ])
            .expect("write to Vec");
        }
    }
    String::from_utf8(w.into_inner().expect("flush to Vec")).expect("CSV of UTF-8 fields is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(c: &InseeCode) -> bool {
        ["44109", "44184", "44143", "49007", "85113"].contains(&c.as_str())
    }

    fn parse(text: &str) -> Result<Vec<TerritoryDef>, GeoError> {
        parse_perimeters(text, Path::new("cpts-perimeters.csv"), known)
    }

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const H: &str = "cpts_id;name;department;finess;insee\n";

    #[test]
    fn valid_file_groups_members_by_cpts() {
        let t = format!("{H}a;CPTS A;44;;44184\na;CPTS A;44;;44109\nb;CPTS B;49;440012345;49007\n");
        let defs = parse(&t).unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[0].id, "a");
        assert_eq!(
            defs[0]
                .communes
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
            ["44109", "44184"]
        );
        assert_eq!(defs[0].finess, None);
        assert_eq!(defs[1].finess.as_deref(), Some("440012345"));
        // round trip through the writer
        let again = parse(&write_perimeters(&defs)).unwrap();
        assert_eq!(again, defs);
    }

    #[test]
    fn comma_delimited_export_with_bom_and_blank_lines_is_accepted() {
        let t = "\u{feff}cpts_id,name,department,finess,insee\r\na,CPTS A,44,,44109\r\n\r\n";
        assert_eq!(parse(t).unwrap()[0].communes.len(), 1);
    }

    #[test]
    fn windows_1252_file_is_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        let text = format!("{H}a;CPTS Rezé;44;;44109\n");
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_perimeters(&path, known).unwrap()[0].name, "CPTS Rezé");
    }

    #[test]
    fn unknown_insee_code_names_the_line() {
        let m = message(&format!("{H}a;CPTS A;44;;44109\na;CPTS A;44;;75056\n"));
        assert!(m.contains("cpts-perimeters.csv:3"), "{m}");
        assert!(
            m.contains("75056") && m.contains("not a current commune"),
            "{m}"
        );
        let m = message(&format!("{H}a;CPTS A;44;;4410\n"));
        assert!(m.contains(":2:") && m.contains("4410"), "{m}");
    }

    #[test]
    fn commune_listed_twice_names_both_lines() {
        let m = message(&format!(
            "{H}a;CPTS A;44;;44109\nb;CPTS B;44;;44184\nb;CPTS B;44;;44109\n"
        ));
        assert!(m.contains("cpts-perimeters.csv:4"), "{m}");
        assert!(
            m.contains("44109 is listed twice (already on line 2)"),
            "{m}"
        );
    }

    #[test]
    fn missing_or_empty_fields_name_the_line() {
        let m = message(&format!("{H}a;CPTS A;44;;44109\na;CPTS A;44;44184\n"));
        assert!(
            m.contains("cpts-perimeters.csv:3") && m.contains("4 fields, expected 5"),
            "{m}"
        );
        let m = message(&format!("{H}a;;44;;44109\n"));
        assert!(
            m.contains(":2:") && m.contains("field `name` is empty"),
            "{m}"
        );
        let m = message(&format!("{H};CPTS A;44;;44109\n"));
        assert!(
            m.contains(":2:") && m.contains("field `cpts_id` is empty"),
            "{m}"
        );
    }

    #[test]
    fn bad_header_department_and_inconsistent_names_are_refused() {
        let m = message("id;name;dept;finess;insee\na;CPTS A;44;;44109\n");
        assert!(
            m.contains("cpts-perimeters.csv:1") && m.contains("header"),
            "{m}"
        );
        let m = message(&format!("{H}a;CPTS A;35;;44109\n"));
        assert!(m.contains(":2:") && m.contains("department `35`"), "{m}");
        let m = message(&format!("{H}a;CPTS A;44;;44109\na;CPTS Autre;44;;44184\n"));
        assert!(m.contains(":3:") && m.contains("line 2 says"), "{m}");
        let m = message("");
        assert!(m.contains("empty file"), "{m}");
    }
}
