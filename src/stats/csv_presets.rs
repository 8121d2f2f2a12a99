//! The CSV presets: `canonical` and `fr-tableur` (one record per row) and `mensuel-large`
//! (one row per indicator, one column per month).
//!
//! Rule kept here: every row is read to the end and every unreadable cell reported; a
//! record is built whenever its key (CPTS, dates) could be read, so that the consistency
//! rules can also be checked on rows that have other problems.

use super::cells::{self, DateStyle};
use super::{Indicator, Indicators, Origin, Parsed, Problem, StatRecord, reason};
use chrono::NaiveDate;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A column of a one-record-per-row preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Cpts,
    Start,
    End,
    Profession,
    Ind(Indicator),
}

impl Field {
    fn canonical(self) -> &'static str {
        match self {
            Self::Cpts => "cpts_id",
            Self::Start => "period_start",
            Self::End => "period_end",
            Self::Profession => "profession",
            Self::Ind(i) => i.name(),
        }
    }
    fn label_fr(self) -> &'static str {
        match self {
            Self::Cpts => "CPTS",
            Self::Start => "Début période",
            Self::End => "Fin période",
            Self::Profession => "Profession",
            Self::Ind(i) => i.label_fr(),
        }
    }
    fn all() -> impl Iterator<Item = Field> {
        [Self::Cpts, Self::Start, Self::End, Self::Profession]
            .into_iter()
            .chain(Indicator::ALL.into_iter().map(Self::Ind))
    }
}

/// How a one-record-per-row preset writes things.
struct FlatPreset {
    french: bool,
}

impl FlatPreset {
    /// The header names this preset accepts for a field (matched with `cells::header_key`).
    fn names(&self, f: Field) -> Vec<&'static str> {
        let mut names = vec![f.canonical()];
        if self.french {
            names.push(f.label_fr());
            match f {
                Field::Ind(Indicator::MedianDelayHours) => names.push("Délai médian"),
                Field::Cpts => names.push("CPTS id"),
                _ => {}
            }
        }
        names
    }
    fn display(&self, f: Field) -> &'static str {
        if self.french {
            f.label_fr()
        } else {
            f.canonical()
        }
    }
    fn lookup(&self, header: &str) -> Option<Field> {
        let key = cells::header_key(header);
        Field::all().find(|&f| self.names(f).iter().any(|n| cells::header_key(n) == key))
    }
}

pub(crate) fn parse_canonical(bytes: &[u8]) -> Parsed {
    parse_flat(bytes, &FlatPreset { french: false })
}

pub(crate) fn parse_fr_tableur(bytes: &[u8]) -> Parsed {
    parse_flat(bytes, &FlatPreset { french: true })
}

fn empty_file() -> Parsed {
    Parsed::fatal(Problem::error(
        None,
        None,
        reason::EMPTY_FILE,
        "le fichier ne contient aucune ligne de données sous l'en-tête",
    ))
}

fn column_name(header: &str, index: usize) -> String {
    if header.is_empty() {
        format!("colonne {} (sans en-tête)", index + 1)
    } else {
        header.to_string()
    }
}

fn parse_flat(bytes: &[u8], preset: &FlatPreset) -> Parsed {
    let text = cells::decode(bytes);
    let preferred = if preset.french { b';' } else { b',' };
    let (delimiter, header, rows) = cells::read_csv(&text, preferred);
    let Some(header) = header else {
        return empty_file();
    };
    let decimal_comma = preset.french || delimiter != b',';
    let date_style = if preset.french {
        DateStyle::French
    } else {
        DateStyle::Iso
    };

    let mut out = Parsed::default();

    // Header: map every column, report unknown, duplicated and missing ones.
    let hl = Some(header.line);
    let mut columns: Vec<Option<Field>> = Vec::with_capacity(header.cells.len());
    let mut seen: HashMap<Field, usize> = HashMap::new();
    for (i, h) in header.cells.iter().enumerate() {
        if h.is_empty() {
            columns.push(None);
            continue;
        }
        match preset.lookup(h) {
            Some(f) if seen.contains_key(&f) => {
                out.problems.push(Problem::error(
                    hl,
                    Some(h),
                    reason::DUPLICATE_COLUMN,
                    format!(
                        "la colonne « {h} » apparaît deux fois (colonnes {} et {})",
                        seen[&f] + 1,
                        i + 1
                    ),
                ));
                columns.push(None);
            }
            Some(f) => {
                seen.insert(f, i);
                columns.push(Some(f));
            }
            None => {
                let expected: Vec<&str> = Field::all().map(|f| preset.display(f)).collect();
                out.problems.push(Problem::error(
                    hl,
                    Some(h),
                    reason::UNKNOWN_COLUMN,
                    format!(
                        "colonne « {h} » inconnue ; colonnes attendues : {}",
                        expected.join(", ")
                    ),
                ));
                columns.push(None);
            }
        }
    }
    let mut keys_readable = true;
    for f in [Field::Cpts, Field::Start, Field::End] {
        if !seen.contains_key(&f) {
            keys_readable = false;
            let name = preset.display(f);
            out.problems.push(Problem::error(
                hl,
                Some(name),
                reason::MISSING_COLUMN,
                format!("la colonne obligatoire « {name} » est absente de l'en-tête"),
            ));
        }
    }
    if !seen.keys().any(|f| matches!(f, Field::Ind(_))) {
        keys_readable = false;
        out.problems.push(Problem::error(
            hl,
            None,
            reason::MISSING_COLUMN,
            "l'en-tête ne contient aucune colonne d'indicateur (ex. « ".to_string()
                + preset.display(Field::Ind(Indicator::RequestsReceived))
                + " »)",
        ));
    }
    if rows.is_empty() {
        out.problems.push(empty_file().problems.remove(0));
        return out;
    }

    // Rows.
    let mut unnamed_reported: HashSet<usize> = HashSet::new();
    for row in &rows {
        let line = Some(row.line);
        let mut cpts: Option<String> = None;
        let mut start: Option<NaiveDate> = None;
        let mut end: Option<NaiveDate> = None;
        let mut profession: Option<String> = None;
        let mut indicators = Indicators::default();
        let mut partial = false;
        let mut origin = Origin::default();
        let mut extra_reported = false;

        for (i, cell) in row.cells.iter().enumerate() {
            let field = match columns.get(i) {
                Some(Some(f)) => *f,
                Some(None) => {
                    let h = &header.cells[i];
                    if h.is_empty() && !cell.is_empty() && unnamed_reported.insert(i) {
                        let col = column_name(h, i);
                        out.problems.push(Problem::error(
                            line,
                            Some(&col),
                            reason::UNKNOWN_COLUMN,
                            format!("« {cell} » est dans une colonne sans en-tête ({col})"),
                        ));
                    }
                    continue;
                }
                None => {
                    if !cell.is_empty() && !extra_reported {
                        extra_reported = true;
                        out.problems.push(Problem::error(
                            line,
                            None,
                            reason::EXTRA_FIELDS,
                            format!(
                                "la ligne a des valeurs au-delà des {} colonnes de l'en-tête \
                                 (séparateur « {} » dans une valeur ?)",
                                header.cells.len(),
                                delimiter as char
                            ),
                        ));
                    }
                    continue;
                }
            };
            let col = header.cells[i].as_str();
            origin
                .cells
                .insert(field.canonical(), (row.line, col.to_string()));
            let mut report = |(code, msg): (&str, String)| {
                out.problems
                    .push(Problem::error(line, Some(col), code, msg));
            };
            match field {
                Field::Cpts if cell.is_empty() => report((
                    reason::MISSING_VALUE,
                    "l'identifiant de la CPTS est vide".to_string(),
                )),
                Field::Cpts => cpts = Some(cell.clone()),
                Field::Start => match cells::parse_date(cell, date_style) {
                    Ok(d) => start = Some(d),
                    Err(e) => report(e),
                },
                Field::End => match cells::parse_date(cell, date_style) {
                    Ok(d) => end = Some(d),
                    Err(e) => report(e),
                },
                Field::Profession => match cells::parse_profession(cell) {
                    Ok(p) => profession = p,
                    Err(e) => report(e),
                },
                Field::Ind(Indicator::MedianDelayHours) => {
                    match cells::parse_decimal(cell, decimal_comma) {
                        Ok(v) => indicators.median_delay_hours = v,
                        Err(e) => {
                            partial = true;
                            report(e)
                        }
                    }
                }
                Field::Ind(ind) => match cells::parse_count(cell, decimal_comma) {
                    Ok(v) => indicators.set_count(ind, v),
                    Err(e) => {
                        partial = true;
                        report(e)
                    }
                },
            }
        }
        // Cells a spreadsheet dropped at the end of a short row are empty cells.
        if let Some(&i) = seen.get(&Field::Cpts).filter(|&&i| i >= row.cells.len()) {
            out.problems.push(Problem::error(
                line,
                Some(&header.cells[i]),
                reason::MISSING_VALUE,
                "l'identifiant de la CPTS est vide",
            ));
        }
        for f in [Field::Start, Field::End] {
            if let Some(&i) = seen.get(&f).filter(|&&i| i >= row.cells.len()) {
                out.problems.push(Problem::error(
                    line,
                    Some(&header.cells[i]),
                    reason::MISSING_VALUE,
                    "la date est vide",
                ));
            }
        }
        if let (true, Some(cpts_id), Some(period_start), Some(period_end)) =
            (keys_readable, cpts, start, end)
        {
            let record = StatRecord {
                cpts_id,
                period_start,
                period_end,
                profession,
                indicators,
                line: row.line,
            };
            out.push(record, origin, partial);
        }
    }
    out
}

/// A CPTS × profession block of a `mensuel-large` file, collected across its rows.
struct Block {
    cpts_id: String,
    profession: Option<String>,
    first_line: usize,
    /// Line where each indicator was given, to report duplicated rows.
    indicator_lines: HashMap<Indicator, usize>,
    /// Month column index → indicators, origin, partial.
    months: BTreeMap<usize, (Indicators, Origin, bool)>,
}

pub(crate) fn parse_mensuel_large(bytes: &[u8]) -> Parsed {
    let text = cells::decode(bytes);
    let (delimiter, header, rows) = cells::read_csv(&text, b';');
    let Some(header) = header else {
        return empty_file();
    };
    let decimal_comma = delimiter != b',';
    let mut out = Parsed::default();

    // Header.
    let hl = Some(header.line);
    let (mut cpts_col, mut ind_col, mut prof_col) = (None, None, None);
    let mut months: Vec<(usize, NaiveDate, NaiveDate)> = Vec::new();
    for (i, h) in header.cells.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let key = cells::header_key(h);
        let slot = match key.as_str() {
            "cpts" | "cpts id" => Some(&mut cpts_col),
            "indicateur" | "indicator" => Some(&mut ind_col),
            "profession" => Some(&mut prof_col),
            _ => None,
        };
        if let Some(slot) = slot {
            if slot.is_some() {
                out.problems.push(Problem::error(
                    hl,
                    Some(h),
                    reason::DUPLICATE_COLUMN,
                    format!("la colonne « {h} » apparaît deux fois"),
                ));
            } else {
                *slot = Some(i);
            }
            continue;
        }
        match cells::parse_month(h) {
            Some((first, _)) if months.iter().any(|m| m.1 == first) => {
                out.problems.push(Problem::error(
                    hl,
                    Some(h),
                    reason::DUPLICATE_COLUMN,
                    format!("le mois « {h} » apparaît deux fois dans l'en-tête"),
                ));
            }
            Some((first, last)) => months.push((i, first, last)),
            None => out.problems.push(Problem::error(
                hl,
                Some(h),
                reason::UNKNOWN_COLUMN,
                format!(
                    "colonne « {h} » inconnue ; colonnes attendues : cpts, indicateur, \
                     profession (facultative), puis un mois par colonne (AAAA-MM, ex. 2026-09)"
                ),
            )),
        }
    }
    for (col, name) in [(cpts_col, "cpts"), (ind_col, "indicateur")] {
        if col.is_none() {
            out.problems.push(Problem::error(
                hl,
                Some(name),
                reason::MISSING_COLUMN,
                format!("la colonne obligatoire « {name} » est absente de l'en-tête"),
            ));
        }
    }
    if months.is_empty() {
        out.problems.push(Problem::error(
            hl,
            None,
            reason::MISSING_COLUMN,
            "l'en-tête ne contient aucune colonne de mois (AAAA-MM, ex. 2026-09)",
        ));
    }
    if rows.is_empty() {
        out.problems.push(empty_file().problems.remove(0));
        return out;
    }
    let (Some(cpts_col), Some(ind_col)) = (cpts_col, ind_col) else {
        return out;
    };

    // Rows, collected into blocks in the order they first appear.
    let known_cols: HashSet<usize> = [Some(cpts_col), Some(ind_col), prof_col]
        .into_iter()
        .flatten()
        .chain(months.iter().map(|m| m.0))
        .collect();
    let mut blocks: Vec<Block> = Vec::new();
    let mut block_index: HashMap<(String, Option<String>), usize> = HashMap::new();
    for row in &rows {
        let line = Some(row.line);
        let cell = |i: usize| row.cells.get(i).map_or("", String::as_str);
        let mut row_ok = true;

        // Unknown named columns were reported with the header; data under no header is reported here.
        let unnamed = |i: usize| header.cells.get(i).is_none_or(|h| h.is_empty());
        if let Some(i) = (0..row.cells.len())
            .find(|&i| !known_cols.contains(&i) && unnamed(i) && !cell(i).is_empty())
        {
            out.problems.push(Problem::error(
                line,
                header.cells.get(i).map(|h| column_name(h, i)).as_deref(),
                if i < header.cells.len() { reason::UNKNOWN_COLUMN } else { reason::EXTRA_FIELDS },
                format!("« {} » est dans une colonne qui n'est ni un mois ni cpts/indicateur/profession", cell(i)),
            ));
        }
        let cpts_id = cell(cpts_col).to_string();
        if cpts_id.is_empty() {
            row_ok = false;
            out.problems.push(Problem::error(
                line,
                Some(&header.cells[cpts_col]),
                reason::MISSING_VALUE,
                "l'identifiant de la CPTS est vide",
            ));
        }
        let profession = match prof_col.map(|i| (i, cells::parse_profession(cell(i)))) {
            None => None,
            Some((_, Ok(p))) => p,
            Some((i, Err((code, msg)))) => {
                row_ok = false;
                out.problems
                    .push(Problem::error(line, Some(&header.cells[i]), code, msg));
                None
            }
        };
        let label = cell(ind_col);
        let indicator = Indicator::ALL.into_iter().find(|i| {
            let key = cells::header_key(label);
            key == cells::header_key(i.label_fr())
                || key == cells::header_key(i.name())
                || (*i == Indicator::MedianDelayHours && key == "delai median")
        });
        let Some(indicator) = indicator else {
            let known: Vec<&str> = Indicator::ALL.iter().map(|i| i.label_fr()).collect();
            out.problems.push(Problem::error(
                line,
                Some(&header.cells[ind_col]),
                if label.is_empty() {
                    reason::MISSING_VALUE
                } else {
                    reason::UNKNOWN_INDICATOR
                },
                format!(
                    "indicateur « {label} » inconnu ; indicateurs attendus : {}",
                    known.join(", ")
                ),
            ));
            continue;
        };
        if !row_ok {
            continue;
        }

        let key = (cpts_id.clone(), profession.clone());
        let bi = *block_index.entry(key).or_insert_with(|| {
            blocks.push(Block {
                cpts_id,
                profession,
                first_line: row.line,
                indicator_lines: HashMap::new(),
                months: BTreeMap::new(),
            });
            blocks.len() - 1
        });
        let block = &mut blocks[bi];
        if let Some(first) = block.indicator_lines.get(&indicator) {
            out.problems.push(Problem::error(
                line,
                Some(&header.cells[ind_col]),
                reason::DUPLICATE_ROW,
                format!(
                    "l'indicateur « {} » de la CPTS « {} » est déjà donné ligne {first}",
                    indicator.label_fr(),
                    block.cpts_id
                ),
            ));
            continue;
        }
        block.indicator_lines.insert(indicator, row.line);

        for &(mi, _, _) in &months {
            let col = header.cells[mi].as_str();
            let raw = cell(mi);
            let value = if indicator.is_count() {
                cells::parse_count(raw, decimal_comma).map(|v| v.map(|v| (Some(v), None)))
            } else {
                cells::parse_decimal(raw, decimal_comma).map(|v| v.map(|v| (None, Some(v))))
            };
            let entry = || (Indicators::default(), Origin::default(), false);
            match value {
                Ok(None) => {}
                Ok(Some((count, delay))) => {
                    let (ind, origin, _) = block.months.entry(mi).or_insert_with(entry);
                    if indicator.is_count() {
                        ind.set_count(indicator, count);
                    } else {
                        ind.median_delay_hours = delay;
                    }
                    origin
                        .cells
                        .insert(indicator.name(), (row.line, col.to_string()));
                }
                Err((code, msg)) => {
                    block.months.entry(mi).or_insert_with(entry).2 = true;
                    out.problems
                        .push(Problem::error(line, Some(col), code, msg));
                }
            }
        }
    }

    for block in blocks {
        for (mi, (indicators, mut origin, partial)) in block.months {
            let &(_, period_start, period_end) = months
                .iter()
                .find(|m| m.0 == mi)
                .expect("month column of the header");
            let col = header.cells[mi].clone();
            for f in ["cpts_id", "period_start", "period_end", "profession"] {
                origin.cells.insert(f, (block.first_line, col.clone()));
            }
            let record = StatRecord {
                cpts_id: block.cpts_id.clone(),
                period_start,
                period_end,
                profession: block.profession.clone(),
                indicators,
                line: block.first_line,
            };
            out.push(record, origin, partial);
        }
    }
    out
}
