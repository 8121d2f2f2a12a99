//! The canonical JSON upload: an array of flat records, or `{"records": [...]}`.
//!
//! Rule kept here: the JSON record is the CSV row with JSON types — keys are the canonical
//! names, numbers are JSON numbers (numeric strings are tolerated), `null` is "not counted";
//! any other key is an error. `line` is the 1-based position of the record in the array.

use super::cells::{self, DateStyle};
use super::{Indicator, Indicators, Origin, Parsed, Problem, StatRecord, reason};
use serde_json::Value;

pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    let text = cells::decode(bytes);
    let mut out = Parsed::default();
    let root: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return Parsed::fatal(Problem::error(
                None,
                None,
                reason::INVALID_JSON,
                format!(
                    "JSON illisible (ligne {}, caractère {} du fichier) : {e}",
                    e.line(),
                    e.column()
                ),
            ));
        }
    };
    let items = match root {
        Value::Array(items) => items,
        Value::Object(mut obj) => {
            for key in obj.keys().filter(|k| *k != "records" && *k != "$schema") {
                out.problems.push(Problem::error(
                    None,
                    Some(key),
                    reason::UNKNOWN_COLUMN,
                    format!(
                        "clé « {key} » inconnue au premier niveau ; seule « records » est attendue"
                    ),
                ));
            }
            match obj.remove("records") {
                Some(Value::Array(items)) => items,
                _ => {
                    out.problems.push(Problem::error(
                        None,
                        Some("records"),
                        reason::INVALID_JSON,
                        "un tableau d'enregistrements est attendu, seul ou sous la clé « records »",
                    ));
                    return out;
                }
            }
        }
        _ => {
            return Parsed::fatal(Problem::error(
                None,
                None,
                reason::INVALID_JSON,
                "un tableau d'enregistrements est attendu, seul ou sous la clé « records »",
            ));
        }
    };
    if items.is_empty() {
        out.problems.push(Problem::error(
            None,
            None,
            reason::EMPTY_FILE,
            "le fichier ne contient aucun enregistrement",
        ));
        return out;
    }

    for (idx, item) in items.iter().enumerate() {
        let line = idx + 1;
        let Value::Object(obj) = item else {
            out.problems.push(Problem::error(
                Some(line),
                None,
                reason::INVALID_JSON,
                format!("l'enregistrement n°{line} n'est pas un objet JSON"),
            ));
            continue;
        };
        let mut problems = Vec::new();
        let mut report = |key: &str, (code, msg): (&str, String)| {
            problems.push(Problem::error(Some(line), Some(key), code, msg));
        };
        let mut origin = Origin::default();
        let mut indicators = Indicators::default();
        let mut partial = false;
        let mut profession = None;

        for (key, value) in obj {
            if let Some(ind) = Indicator::from_name(key) {
                origin.cells.insert(ind.name(), (line, key.clone()));
                let read = if ind.is_count() {
                    json_count(value).map(|v| indicators.set_count(ind, v))
                } else {
                    json_decimal(value).map(|v| indicators.median_delay_hours = v)
                };
                if let Err(e) = read {
                    partial = true;
                    report(key, e);
                }
                continue;
            }
            match key.as_str() {
                "cpts_id" => _ = origin.cells.insert("cpts_id", (line, key.clone())),
                "period_start" => _ = origin.cells.insert("period_start", (line, key.clone())),
                "period_end" => _ = origin.cells.insert("period_end", (line, key.clone())),
                "profession" => {
                    origin.cells.insert("profession", (line, key.clone()));
                    let text = match value {
                        Value::Null => Ok(String::new()),
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        _ => Err((
                            reason::INVALID_PROFESSION,
                            "la profession doit être un code TRE_G15 (chaîne, ex. \"10\")"
                                .to_string(),
                        )),
                    };
                    match text.and_then(|t| cells::parse_profession(&t)) {
                        Ok(p) => profession = p,
                        Err(e) => report(key, e),
                    }
                }
                _ => report(
                    key,
                    (
                        reason::UNKNOWN_COLUMN,
                        format!(
                            "clé « {key} » inconnue ; clés attendues : cpts_id, period_start, \
                             period_end, profession, {}",
                            Indicators::NAMES.join(", ")
                        ),
                    ),
                ),
            }
        }

        let mut text_field = |key: &str| -> Option<String> {
            match obj.get(key) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
                None | Some(Value::Null) => {
                    report(
                        key,
                        (
                            reason::MISSING_VALUE,
                            format!("la clé obligatoire « {key} » est absente ou vide"),
                        ),
                    );
                    None
                }
                Some(Value::String(_)) => {
                    report(key, (reason::MISSING_VALUE, format!("« {key} » est vide")));
                    None
                }
                Some(other) => {
                    report(
                        key,
                        (
                            reason::INVALID_JSON,
                            format!("« {key} » doit être une chaîne, pas {other}"),
                        ),
                    );
                    None
                }
            }
        };
        let cpts_id = text_field("cpts_id");
        let start = text_field("period_start");
        let end = text_field("period_end");
        let mut date = |key: &str, raw: Option<String>| {
            raw.and_then(|s| {
                cells::parse_date(&s, DateStyle::Iso)
                    .map_err(|e| report(key, e))
                    .ok()
            })
        };
        let period_start = date("period_start", start);
        let period_end = date("period_end", end);

        out.problems.append(&mut problems);
        if let (Some(cpts_id), Some(period_start), Some(period_end)) =
            (cpts_id, period_start, period_end)
        {
            let record = StatRecord {
                cpts_id,
                period_start,
                period_end,
                profession,
                indicators,
                line,
            };
            out.push(record, origin, partial);
        }
    }
    out
}

fn json_count(v: &Value) -> Result<Option<u64>, cells::CellError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => cells::parse_count(s, false),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(Some(u))
            } else if n.as_i64().is_some_and(|i| i < 0) || n.as_f64().is_some_and(|f| f < 0.0) {
                Err((
                    reason::NEGATIVE_NUMBER,
                    format!("{n} est négatif : un comptage est un entier positif ou nul"),
                ))
            } else if let Some(f) = n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f < u64::MAX as f64)
            {
                Ok(Some(f as u64))
            } else {
                Err((
                    reason::NOT_AN_INTEGER,
                    format!(
                        "{n} n'est pas un nombre entier : un comptage ne peut pas avoir de décimales"
                    ),
                ))
            }
        }
        other => Err((reason::NOT_A_NUMBER, format!("{other} n'est pas un nombre"))),
    }
}

fn json_decimal(v: &Value) -> Result<Option<f64>, cells::CellError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => cells::parse_decimal(s, false),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f < 0.0 => Err((
                reason::NEGATIVE_NUMBER,
                format!("{n} est négatif : un délai est positif ou nul"),
            )),
            Some(f) if f.is_finite() => Ok(Some(f)),
            _ => Err((
                reason::NOT_A_NUMBER,
                format!("{n} n'est pas un nombre fini"),
            )),
        },
        other => Err((reason::NOT_A_NUMBER, format!("{other} n'est pas un nombre"))),
    }
}
