//! Consistency rules of the statistics schema (documented one by one in `src/stats/STATS.md`).
//!
//! Rule kept here: a rule whose breach contradicts a definition of the schema ("dont" =
//! a subset, a period ends after it starts, one record per key) is an **error**; a rule
//! that real CPTS counts break for legitimate reasons (requests received at the end of one
//! period and seen in the next, extra slots created on demand) is a **warning**.

use super::{Indicator, Problem, StatRecord, reason};
use std::collections::HashMap;

/// Longest accepted period, in days (both ends included): a (leap) year.
pub const MAX_PERIOD_DAYS: i64 = 366;

/// Above this median delay (hours) the value is most likely in the wrong unit.
pub const MAX_PLAUSIBLE_DELAY_HOURS: f64 = 168.0;

/// Checks every record and the file as a whole (duplicate keys, overlapping periods).
/// `line` is the record's line; `column` is the canonical field name concerned.
pub fn validate(records: &[StatRecord]) -> Vec<Problem> {
    validate_indexed(records)
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn label(i: Indicator) -> String {
    format!("« {} » ({})", i.label_fr(), i.name())
}

/// Like [`validate`], with the index of the record each problem is about.
pub(crate) fn validate_indexed(records: &[StatRecord]) -> Vec<(usize, Problem)> {
    let mut out = Vec::new();
    for (idx, r) in records.iter().enumerate() {
        let line = Some(r.line);
        let mut push = |p: Problem| out.push((idx, p));
        let ind = &r.indicators;

        if ind.is_empty() {
            push(Problem::error(
                line,
                None,
                reason::NO_INDICATOR,
                "aucun indicateur renseigné : au moins une valeur est attendue par ligne",
            ));
        }
        if r.period_end < r.period_start {
            push(Problem::error(
                line,
                Some("period_end"),
                reason::PERIOD_END_BEFORE_START,
                format!(
                    "la fin de période ({}) est antérieure au début ({})",
                    r.period_end.format("%d/%m/%Y"),
                    r.period_start.format("%d/%m/%Y")
                ),
            ));
        } else if r.period_days() > MAX_PERIOD_DAYS {
            push(Problem::error(
                line,
                Some("period_end"),
                reason::PERIOD_TOO_LONG,
                format!(
                    "la période couvre {} jours ; {MAX_PERIOD_DAYS} au plus (une année) : \
                     découpez-la en mois ou en semaines",
                    r.period_days()
                ),
            ));
        }

        let c = |i| ind.count(i);
        use Indicator::*;
        let mut exceeds = |small: Indicator, big: Indicator, error: bool, code: &str, why: &str| {
            if let (Some(s), Some(b)) = (c(small), c(big))
                && s > b
            {
                let msg = format!(
                    "{} = {s} dépasse {} = {b} : {why}",
                    label(small),
                    label(big)
                );
                let p = if error {
                    Problem::error(line, Some(small.name()), code, msg)
                } else {
                    Problem::warning(line, Some(small.name()), code, msg)
                };
                push(p);
                true
            } else {
                false
            }
        };
        exceeds(
            RequestsHandled,
            RequestsReceived,
            true,
            reason::HANDLED_EXCEEDS_RECEIVED,
            "les demandes prises en charge font partie des demandes reçues sur la période",
        );
        exceeds(
            RequestsFromRegulation,
            RequestsReceived,
            true,
            reason::REGULATION_EXCEEDS_RECEIVED,
            "les demandes orientées par la régulation sont une partie (« dont ») des demandes reçues",
        );
        exceeds(
            SlotsUsed,
            SlotsOffered,
            false,
            reason::USED_EXCEEDS_OFFERED,
            "vérifiez que les créneaux ajoutés en sus sont comptés dans les créneaux proposés",
        );
        let consultations_flagged = exceeds(
            ConsultationsDone,
            RequestsHandled,
            false,
            reason::CONSULTATIONS_EXCEED_HANDLED,
            "possible si des demandes d'une période précédente ont été vues sur celle-ci ; sinon, vérifiez les comptages",
        );
        if !consultations_flagged && let Some(handled) = c(RequestsHandled) {
            let outcomes = [
                ConsultationsDone,
                RedirectedEmergency,
                RedirectedOther,
                NoShows,
            ];
            let given: Vec<(Indicator, u64)> = outcomes
                .iter()
                .filter_map(|&i| c(i).map(|v| (i, v)))
                .collect();
            let total: u64 = given.iter().map(|g| g.1).fold(0, u64::saturating_add);
            if total > handled {
                let parts: Vec<String> = given
                    .iter()
                    .map(|(i, v)| format!("{} {v}", i.label_fr()))
                    .collect();
                push(Problem::warning(
                    line,
                    Some(RequestsHandled.name()),
                    reason::OUTCOMES_EXCEED_HANDLED,
                    format!(
                        "les issues des demandes ({} ; total {total}) dépassent les demandes prises \
                         en charge ({handled}) : chaque demande prise en charge a au plus une issue",
                        parts.join(", ")
                    ),
                ));
            }
        }
        if let Some(d) = ind.median_delay_hours
            && d > MAX_PLAUSIBLE_DELAY_HOURS
        {
            push(Problem::warning(
                line,
                Some(MedianDelayHours.name()),
                reason::DELAY_IMPLAUSIBLE,
                format!(
                    "délai médian de {d} h (plus de {MAX_PLAUSIBLE_DELAY_HOURS} h) : \
                     le délai est attendu en heures, pas en minutes"
                ),
            ));
        }
    }
    file_rules(records, &mut out);
    out
}

/// Rules across records of one file: duplicate keys (error), overlapping periods of one
/// CPTS × profession (warning), a total row next to a per-profession breakdown (warning).
fn file_rules(records: &[StatRecord], out: &mut Vec<(usize, Problem)>) {
    let mut by_cpts: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        by_cpts.entry(r.cpts_id.as_str()).or_default().push(i);
    }
    let mut cpts_ids: Vec<&&str> = by_cpts.keys().collect();
    cpts_ids.sort_by_key(|k| by_cpts[**k][0]);
    for id in cpts_ids {
        let idxs = &by_cpts[*id];
        let overlaps = |a: &StatRecord, b: &StatRecord| {
            a.period_start <= b.period_end && b.period_start <= a.period_end
        };
        for (n, &j) in idxs.iter().enumerate() {
            let b = &records[j];
            if b.period_end < b.period_start {
                continue;
            }
            let earlier = idxs[..n]
                .iter()
                .map(|&i| &records[i])
                .filter(|a| a.period_end >= a.period_start);
            let mut overlap_reported = false;
            for a in earlier {
                if a.profession != b.profession || !overlaps(a, b) {
                    continue;
                }
                if a.period_start == b.period_start && a.period_end == b.period_end {
                    out.push((
                        j,
                        Problem::error(
                            Some(b.line),
                            None,
                            reason::DUPLICATE_KEY,
                            format!(
                                "la CPTS « {} », la période du {} au {}{} figurent déjà ligne {} : \
                                 une seule ligne par CPTS, période et profession",
                                b.cpts_id,
                                b.period_start.format("%d/%m/%Y"),
                                b.period_end.format("%d/%m/%Y"),
                                b.profession
                                    .as_deref()
                                    .map(|p| format!(" et la profession {p}"))
                                    .unwrap_or_default(),
                                a.line
                            ),
                        ),
                    ));
                    break;
                }
                if !overlap_reported {
                    overlap_reported = true;
                    out.push((
                        j,
                        Problem::warning(
                            Some(b.line),
                            Some("period_start"),
                            reason::OVERLAPPING_PERIOD,
                            format!(
                                "la période du {} au {} chevauche celle de la ligne {} ({} au {}) \
                                 pour la même CPTS et profession : les totaux compteront deux fois les jours communs",
                                b.period_start.format("%d/%m/%Y"),
                                b.period_end.format("%d/%m/%Y"),
                                a.line,
                                a.period_start.format("%d/%m/%Y"),
                                a.period_end.format("%d/%m/%Y")
                            ),
                        ),
                    ));
                }
            }
            if b.profession.is_none()
                && let Some(a) = idxs.iter().map(|&i| &records[i]).find(|a| {
                    a.profession.is_some() && a.period_end >= a.period_start && overlaps(a, b)
                })
            {
                out.push((
                    j,
                    Problem::warning(
                        Some(b.line),
                        Some("profession"),
                        reason::TOTAL_WITH_BREAKDOWN,
                        format!(
                            "ligne toutes professions alors que la ligne {} détaille la profession {} \
                             sur une période commune : les totaux par CPTS compteront deux fois ; \
                             envoyez soit le total, soit le détail par profession",
                            a.line,
                            a.profession.as_deref().unwrap_or_default()
                        ),
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Indicators;
    use chrono::NaiveDate;

    fn rec(
        line: usize,
        start: (u32, u32),
        end: (u32, u32),
        prof: Option<&str>,
        ind: Indicators,
    ) -> StatRecord {
        StatRecord {
            cpts_id: "cpts-a".into(),
            period_start: NaiveDate::from_ymd_opt(2026, start.0, start.1).unwrap(),
            period_end: NaiveDate::from_ymd_opt(2026, end.0, end.1).unwrap(),
            profession: prof.map(str::to_string),
            indicators: ind,
            line,
        }
    }

    fn reasons(ps: &[Problem]) -> Vec<(&str, Option<usize>, bool)> {
        ps.iter()
            .map(|p| (p.reason.as_str(), p.line, p.is_error()))
            .collect()
    }

    #[test]
    fn subset_rules_are_errors_flow_rules_are_warnings() {
        let ind = Indicators {
            requests_received: Some(100),
            requests_handled: Some(90),
            requests_from_regulation: Some(120),
            consultations_done: Some(95),
            slots_offered: Some(10),
            slots_used: Some(12),
            median_delay_hours: Some(600.0),
            ..Default::default()
        };
        let ps = validate(&[rec(2, (9, 1), (9, 30), None, ind)]);
        assert_eq!(
            reasons(&ps),
            vec![
                (reason::REGULATION_EXCEEDS_RECEIVED, Some(2), true),
                (reason::USED_EXCEEDS_OFFERED, Some(2), false),
                (reason::CONSULTATIONS_EXCEED_HANDLED, Some(2), false),
                (reason::DELAY_IMPLAUSIBLE, Some(2), false),
            ]
        );
        assert_eq!(ps[0].column.as_deref(), Some("requests_from_regulation"));
    }

    #[test]
    fn outcomes_sum_is_checked_against_handled() {
        let ind = Indicators {
            requests_handled: Some(50),
            consultations_done: Some(40),
            redirected_emergency: Some(5),
            no_shows: Some(6),
            ..Default::default()
        };
        let ps = validate(&[rec(3, (9, 1), (9, 30), None, ind)]);
        assert_eq!(
            reasons(&ps),
            vec![(reason::OUTCOMES_EXCEED_HANDLED, Some(3), false)]
        );
        assert!(ps[0].message.contains("total 51"), "{}", ps[0].message);
    }

    #[test]
    fn periods_inverted_or_too_long_are_errors() {
        let one = Indicators {
            requests_received: Some(1),
            ..Default::default()
        };
        let mut long = rec(3, (1, 1), (12, 31), None, one.clone());
        long.period_start = NaiveDate::from_ymd_opt(2025, 12, 1).unwrap();
        let ps = validate(&[
            rec(2, (9, 30), (9, 1), None, one.clone()),
            long,
            rec(4, (1, 1), (12, 31), Some("10"), one),
        ]);
        assert_eq!(
            reasons(&ps),
            vec![
                (reason::PERIOD_END_BEFORE_START, Some(2), true),
                (reason::PERIOD_TOO_LONG, Some(3), true),
                (reason::TOTAL_WITH_BREAKDOWN, Some(3), false),
            ]
        );
        // 366 days (2028 is a leap year) is still one year.
        let mut leap = rec(
            5,
            (1, 1),
            (1, 1),
            None,
            Indicators {
                requests_received: Some(1),
                ..Default::default()
            },
        );
        leap.period_start = NaiveDate::from_ymd_opt(2028, 1, 1).unwrap();
        leap.period_end = NaiveDate::from_ymd_opt(2028, 12, 31).unwrap();
        assert_eq!(validate(&[leap]), vec![]);
    }

    #[test]
    fn duplicates_error_overlaps_warn() {
        let one = Indicators {
            requests_received: Some(1),
            ..Default::default()
        };
        let ps = validate(&[
            rec(2, (9, 1), (9, 30), Some("10"), one.clone()),
            rec(3, (9, 1), (9, 30), Some("60"), one.clone()),
            rec(4, (9, 1), (9, 30), Some("10"), one.clone()),
            rec(5, (9, 14), (9, 20), Some("10"), one.clone()),
            rec(6, (10, 1), (10, 31), None, Indicators::default()),
        ]);
        assert_eq!(
            reasons(&ps),
            vec![
                (reason::NO_INDICATOR, Some(6), true),
                (reason::DUPLICATE_KEY, Some(4), true),
                (reason::OVERLAPPING_PERIOD, Some(5), false),
            ]
        );
        assert!(ps[1].message.contains("ligne 2"), "{}", ps[1].message);
    }
}
