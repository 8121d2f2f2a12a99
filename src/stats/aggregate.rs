//! Aggregation of stored records by CPTS, department, region, period or profession, and
//! the CSV export of the result.
//!
//! Rules kept here: a count is summed only over the records that have it, and the number
//! of those records is reported next to the sum (a missing count is never read as zero);
//! the median delay of a group is a weighted mean of the records' medians — an
//! approximation, see [`aggregate`].

use super::{Indicator, Indicators, StatRecord};
use crate::domain::DEPARTMENTS;
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// A stored record as aggregation sees it: the record plus the department of its CPTS
/// (given by the caller, who knows the territories).
#[derive(Debug, Clone, Copy)]
pub struct StoredRecordView<'a> {
    pub cpts_id: &'a str,
    pub department: &'a str,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub profession: Option<&'a str>,
    pub indicators: &'a Indicators,
}

impl<'a> StoredRecordView<'a> {
    pub fn new(record: &'a StatRecord, department: &'a str) -> Self {
        Self {
            cpts_id: &record.cpts_id,
            department,
            period_start: record.period_start,
            period_end: record.period_end,
            profession: record.profession.as_deref(),
            indicators: &record.indicators,
        }
    }
}

/// A dimension to group by. Several can be combined (e.g. `[Cpts, Period]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Cpts,
    Department,
    /// INSEE region code (`52` for Pays de la Loire), from the department.
    Region,
    /// The exact `(period_start, period_end)` pair: weeks and months stay apart.
    Period,
    /// TRE_G15 code; records without profession ("all professions") form their own group.
    Profession,
}

/// The value of one grouping dimension for a row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupValue {
    Cpts(String),
    Department(String),
    Region(String),
    Period(NaiveDate, NaiveDate),
    Profession(Option<String>),
}

/// The region of a department: `52` for the five departments of Pays de la Loire,
/// `autre` otherwise (this service serves one region).
pub fn region_of_department(department: &str) -> &'static str {
    if DEPARTMENTS.contains(&department.trim()) {
        "52"
    } else {
        "autre"
    }
}

/// A sum over the records that gave the value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summed {
    pub sum: u64,
    /// How many records contributed; 0 means "nobody counted this" (not "zero").
    pub records: usize,
}

/// Which weights combined the median delays of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DelayWeighting {
    ConsultationsDone,
    RequestsHandled,
    Equal,
}

impl DelayWeighting {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsultationsDone => "consultations_done",
            Self::RequestsHandled => "requests_handled",
            Self::Equal => "equal",
        }
    }
    fn label_fr(self) -> &'static str {
        match self {
            Self::ConsultationsDone => "consultations réalisées",
            Self::RequestsHandled => "demandes prises en charge",
            Self::Equal => "égale",
        }
    }
}

/// One group of an aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    /// One value per requested [`GroupBy`], in the requested order.
    pub group: Vec<GroupValue>,
    /// Records in the group.
    pub records: usize,
    /// Sums of the count indicators, in the order of [`Indicator::COUNTS`].
    pub counts: [Summed; 10],
    /// Weighted mean of the records' median delays (see [`aggregate`]).
    pub median_delay_hours: Option<f64>,
    /// Records that gave a median delay.
    pub median_delay_records: usize,
    pub median_delay_weighting: Option<DelayWeighting>,
}

impl AggregateRow {
    /// The sum of a count indicator (`Summed::default()` for `MedianDelayHours`).
    pub fn count(&self, i: Indicator) -> Summed {
        Indicator::COUNTS
            .iter()
            .position(|&c| c == i)
            .map_or_else(Summed::default, |k| self.counts[k])
    }
}

/// Groups records and sums their indicators. Rows are ordered by group value.
/// An empty `group_by` gives one row for all records (none if there are no records).
///
/// **Median delay.** The median of a group cannot be computed from the medians of its
/// records (it needs the individual delays, which CPTS do not upload). It is approximated by
/// the mean of the records' medians weighted by `consultations_done` — the delay is measured
/// request → consultation, so each median stands for that many delays. When some record with
/// a median lacks `consultations_done` (or all are zero), `requests_handled` is used instead,
/// then equal weights; one scheme is used for the whole group so that weights are comparable.
/// The approximation is exact when the records' delay distributions are the same, and can
/// be off when one large CPTS has a skewed distribution; treat it as an indicator, not a statistic.
pub fn aggregate(records: &[StoredRecordView<'_>], group_by: &[GroupBy]) -> Vec<AggregateRow> {
    let mut groups: BTreeMap<Vec<GroupValue>, Vec<&StoredRecordView<'_>>> = BTreeMap::new();
    for r in records {
        let key = group_by
            .iter()
            .map(|g| match g {
                GroupBy::Cpts => GroupValue::Cpts(r.cpts_id.to_string()),
                GroupBy::Department => GroupValue::Department(r.department.trim().to_string()),
                GroupBy::Region => {
                    GroupValue::Region(region_of_department(r.department).to_string())
                }
                GroupBy::Period => GroupValue::Period(r.period_start, r.period_end),
                GroupBy::Profession => GroupValue::Profession(r.profession.map(str::to_string)),
            })
            .collect();
        groups.entry(key).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(group, members)| {
            let mut counts = [Summed::default(); 10];
            for (k, &ind) in Indicator::COUNTS.iter().enumerate() {
                for v in members.iter().filter_map(|r| r.indicators.count(ind)) {
                    counts[k].sum = counts[k].sum.saturating_add(v);
                    counts[k].records += 1;
                }
            }
            let (median_delay_hours, median_delay_weighting, median_delay_records) =
                weighted_median(&members);
            AggregateRow {
                group,
                records: members.len(),
                counts,
                median_delay_hours,
                median_delay_records,
                median_delay_weighting,
            }
        })
        .collect()
}

fn weighted_median(
    members: &[&StoredRecordView<'_>],
) -> (Option<f64>, Option<DelayWeighting>, usize) {
    let with_delay: Vec<&Indicators> = members
        .iter()
        .map(|r| r.indicators)
        .filter(|i| i.median_delay_hours.is_some())
        .collect();
    if with_delay.is_empty() {
        return (None, None, 0);
    }
    for scheme in [
        DelayWeighting::ConsultationsDone,
        DelayWeighting::RequestsHandled,
    ] {
        let weight = |i: &Indicators| match scheme {
            DelayWeighting::ConsultationsDone => i.consultations_done,
            _ => i.requests_handled,
        };
        let weights: Option<Vec<u64>> = with_delay.iter().map(|i| weight(i)).collect();
        if let Some(weights) = weights {
            let total: f64 = weights.iter().map(|&w| w as f64).sum();
            if total > 0.0 {
                let mean = with_delay
                    .iter()
                    .zip(&weights)
                    .map(|(i, &w)| i.median_delay_hours.unwrap_or(0.0) * w as f64)
                    .sum::<f64>()
                    / total;
                return (Some(mean), Some(scheme), with_delay.len());
            }
        }
    }
    let mean = with_delay
        .iter()
        .filter_map(|i| i.median_delay_hours)
        .sum::<f64>()
        / with_delay.len() as f64;
    (Some(mean), Some(DelayWeighting::Equal), with_delay.len())
}

/// Writes aggregate rows as CSV. `french = false`: `,`, canonical column names, ISO dates,
/// decimal point, LF. `french = true`: what Excel in French opens as is — UTF-8 BOM, `;`,
/// French labels, `JJ/MM/AAAA`, decimal comma, CRLF. Group columns follow the first row's
/// grouping; an empty count (no record counted it) is an empty cell, never `0`.
pub fn to_csv(rows: &[AggregateRow], french: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if french {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    let mut w = csv::WriterBuilder::new()
        .delimiter(if french { b';' } else { b',' })
        .terminator(if french {
            csv::Terminator::CRLF
        } else {
            csv::Terminator::Any(b'\n')
        })
        .from_writer(out);
    let name = |canonical: &str, fr: &str| {
        if french {
            fr.to_string()
        } else {
            canonical.to_string()
        }
    };

    let mut header: Vec<String> = Vec::new();
    for g in rows.first().map_or(&[][..], |r| &r.group[..]) {
        match g {
            GroupValue::Cpts(_) => header.push(name("cpts_id", "CPTS")),
            GroupValue::Department(_) => header.push(name("department", "Département")),
            GroupValue::Region(_) => header.push(name("region", "Région")),
            GroupValue::Period(..) => {
                header.push(name("period_start", "Début période"));
                header.push(name("period_end", "Fin période"));
            }
            GroupValue::Profession(_) => header.push(name("profession", "Profession")),
        }
    }
    header.push(name("records", "Lignes"));
    for ind in Indicator::COUNTS {
        header.push(name(ind.name(), ind.label_fr()));
        header.push(name(
            &format!("{}_records", ind.name()),
            &format!("{} (lignes)", ind.label_fr()),
        ));
    }
    let delay = Indicator::MedianDelayHours;
    header.push(name(delay.name(), delay.label_fr()));
    header.push(name(
        "median_delay_hours_records",
        "Délai médian (h) (lignes)",
    ));
    header.push(name("median_delay_weighting", "Pondération du délai"));
    // Writing into a Vec cannot fail.
    let _ = w.write_record(&header);

    let date = |d: &NaiveDate| {
        if french {
            d.format("%d/%m/%Y").to_string()
        } else {
            d.to_string()
        }
    };
    for row in rows {
        let mut rec: Vec<String> = Vec::new();
        for g in &row.group {
            match g {
                GroupValue::Cpts(s) | GroupValue::Department(s) | GroupValue::Region(s) => {
                    rec.push(s.clone())
                }
                GroupValue::Period(a, b) => {
                    rec.push(date(a));
                    rec.push(date(b));
                }
                GroupValue::Profession(p) => rec.push(p.clone().unwrap_or_default()),
            }
        }
        rec.push(row.records.to_string());
        for s in row.counts {
            rec.push(if s.records == 0 {
                String::new()
            } else {
                s.sum.to_string()
            });
            rec.push(s.records.to_string());
        }
        rec.push(
            row.median_delay_hours
                .map(|v| format_decimal(v, french))
                .unwrap_or_default(),
        );
        rec.push(row.median_delay_records.to_string());
        rec.push(
            row.median_delay_weighting
                .map(|s| if french { s.label_fr() } else { s.as_str() })
                .unwrap_or_default()
                .to_string(),
        );
        let _ = w.write_record(&rec);
    }
    w.into_inner().unwrap_or_default()
}

/// Two decimals at most, trailing zeros dropped; decimal comma when `french`.
fn format_decimal(v: f64, french: bool) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if french {
        s.replace('.', ",")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_short_and_french_when_asked() {
        assert_eq!(format_decimal(4.5, true), "4,5");
        assert_eq!(format_decimal(4.0, false), "4");
        assert_eq!(format_decimal(10.0 / 3.0, false), "3.33");
    }

    #[test]
    fn region_is_52_for_pays_de_la_loire_only() {
        assert_eq!(region_of_department("44"), "52");
        assert_eq!(region_of_department("35"), "autre");
    }
}
