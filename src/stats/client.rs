//! `sasnp stats upload`: sends a statistics file to a sasnp server and prints, in French, the
//! report a CPTS coordinator can act on. A client only: no settings, no database.
//!
//! Rule kept here: the command succeeds (exit 0) only when the server accepted the file
//! (stored, or validated in a dry run); every refusal prints the server's reasons and fails.

use crate::cli::StatsUploadArgs;
use anyhow::Context;
use serde_json::Value;
use std::fmt::Write as _;

/// Records listed one by one in a report; beyond, a count.
const LISTED: usize = 50;

/// Uploads `args.file` and prints the report; `Err` when the file is refused or unsent.
pub fn upload(args: &StatsUploadArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("lecture de {}", args.file.display()))?;
    let is_json = args
        .file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let url = format!("{}/v1/stats/uploads", args.server.trim_end_matches('/'));
    let mut query = vec![("preset", args.preset.as_str())];
    if args.dry_run {
        query.push(("dry_run", "true"));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, text) = rt.block_on(async {
        let res = reqwest::Client::new()
            .post(&url)
            .query(&query)
            .bearer_auth(&args.token)
            .header(
                reqwest::header::CONTENT_TYPE,
                if is_json {
                    "application/json"
                } else {
                    "text/csv"
                },
            )
            .body(bytes)
            .send()
            .await
            .with_context(|| format!("envoi à {url}"))?;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        anyhow::Ok((status, text))
    })?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let (report, accepted) = report(&args.file.display().to_string(), status, &body);
    print!("{report}");
    if accepted {
        Ok(())
    } else {
        anyhow::bail!("dépôt refusé (HTTP {status})")
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn fr_date(iso: &Value) -> String {
    chrono::NaiveDate::parse_from_str(&s(iso), "%Y-%m-%d")
        .map_or_else(|_| s(iso), |d| d.format("%d/%m/%Y").to_string())
}

fn problem_line(p: &Value) -> String {
    let mut out = String::new();
    match (p["line"].as_u64(), p["column"].as_str()) {
        (Some(l), Some(c)) => _ = write!(out, "ligne {l}, colonne « {c} » : "),
        (Some(l), None) => _ = write!(out, "ligne {l} : "),
        (None, Some(c)) => _ = write!(out, "colonne « {c} » : "),
        (None, None) => {}
    }
    let _ = write!(out, "{} [{}]", s(&p["message"]), s(&p["reason"]));
    out
}

/// The text report of an upload answer, and whether the file was accepted.
pub fn report(file: &str, status: u16, body: &Value) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(out, "Fichier : {file}");
    match status {
        200 | 201 => {
            let sum = &body["summary"];
            let dry = body["dry_run"].as_bool().unwrap_or(status == 200);
            if dry {
                let _ = writeln!(
                    out,
                    "Simulation (--dry-run) : fichier valide, RIEN n'a été enregistré.\n\
                     {} enregistrement(s) seraient déposés : {} nouveau(x), {} remplacé(s) \
                     (dont {} identique(s)).",
                    n(&sum["records"]),
                    n(&sum["new"]),
                    n(&sum["replaced"]),
                    n(&sum["unchanged"])
                );
            } else {
                let _ = writeln!(
                    out,
                    "Accepté : dépôt n° {} enregistré, {} enregistrement(s) : {} nouveau(x), \
                     {} remplacé(s) (dont {} identique(s)).",
                    s(&body["upload"]["id"]),
                    n(&sum["records"]),
                    n(&sum["new"]),
                    n(&sum["replaced"]),
                    n(&sum["unchanged"])
                );
            }
            let records = body["records"].as_array().cloned().unwrap_or_default();
            for r in records.iter().take(LISTED) {
                let profession = match r["profession"].as_str() {
                    Some(p) => format!("profession {p}"),
                    None => "toutes professions".into(),
                };
                let action = match &r["previous"] {
                    Value::Null => "nouveau".to_string(),
                    p => format!(
                        "remplace la version {} (dépôt n° {} de {}, {}){}",
                        s(&p["version"]),
                        s(&p["upload_id"]),
                        s(&p["account"]),
                        s(&p["uploaded_at"]),
                        if p["identical"].as_bool() == Some(true) {
                            ", chiffres identiques"
                        } else {
                            ""
                        }
                    ),
                };
                let _ = writeln!(
                    out,
                    "  - {} du {} au {}, {} : {}",
                    s(&r["cpts_id"]),
                    fr_date(&r["period_start"]),
                    fr_date(&r["period_end"]),
                    profession,
                    action
                );
            }
            if records.len() > LISTED {
                let _ = writeln!(out, "  … et {} autre(s)", records.len() - LISTED);
            }
            let warnings = body["warnings"].as_array().cloned().unwrap_or_default();
            if !warnings.is_empty() {
                let _ = writeln!(out, "Avertissements ({}) :", warnings.len());
                for w in &warnings {
                    let _ = writeln!(out, "  {}", problem_line(w));
                }
            }
            (out, true)
        }
        422 if body["problems"].is_array() => {
            let problems = body["problems"].as_array().cloned().unwrap_or_default();
            let errors = problems.iter().filter(|p| p["severity"] == "error").count();
            let _ = writeln!(
                out,
                "REFUSÉ : {errors} erreur(s), {} avertissement(s). Rien n'a été enregistré : \
                 corrigez le fichier et déposez-le à nouveau.",
                problems.len() - errors
            );
            for p in &problems {
                let tag = if p["severity"] == "error" {
                    "ERREUR"
                } else {
                    "avertissement"
                };
                let _ = writeln!(out, "  {tag} — {}", problem_line(p));
            }
            (out, false)
        }
        _ => {
            let detail = if body.is_object() {
                s(&body["detail"])
            } else {
                s(body)
            };
            let _ = writeln!(out, "ÉCHEC (HTTP {status}) : {detail}");
            (out, false)
        }
    }
}
