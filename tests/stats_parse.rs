//! Statistics uploads as CPTS really send them (fixtures in `fixtures/stats/`), the problems
//! reported for broken files, and aggregation with hand-computed expectations.

use chrono::NaiveDate;
use sasnp::stats::{
    self, AggregateRow, DelayWeighting, GroupBy, GroupValue, Indicator, Indicators, Preset,
    Problem, Severity, StatRecord, StoredRecordView, UploadErrors, UploadType, aggregate,
    check_upload, parse_upload, reason, to_csv,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/stats/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// `(line, column, reason, severity)` of every problem, for exact comparisons.
fn summary(problems: &[Problem]) -> Vec<(Option<usize>, Option<&str>, &str, Severity)> {
    problems
        .iter()
        .map(|p| (p.line, p.column.as_deref(), p.reason.as_str(), p.severity))
        .collect()
}

fn rejected(preset: Preset, kind: UploadType, bytes: &[u8]) -> UploadErrors {
    match parse_upload(preset, kind, bytes) {
        Ok(records) => panic!("upload accepted with {} records", records.len()),
        Err(e) => {
            for p in &e.problems {
                assert!(!p.message.is_empty(), "{p:?}");
            }
            e
        }
    }
}

use Severity::{Error as E, Warning as W};

// ---------------------------------------------------------------- accepted uploads

#[test]
fn canonical_csv_reads_every_row_and_leaves_uncounted_cells_empty() {
    let records = parse_upload(
        Preset::Canonical,
        UploadType::Csv,
        &fixture("canonical.csv"),
    )
    .unwrap();
    assert_eq!(records.len(), 4);
    let first = &records[0];
    assert_eq!(first.cpts_id, "cpts-nantes-nord");
    assert_eq!(
        (first.period_start, first.period_end),
        (date(2026, 9, 1), date(2026, 9, 30))
    );
    assert_eq!(first.profession.as_deref(), Some("10"));
    assert_eq!(first.line, 2);
    assert_eq!(
        first.indicators,
        Indicators {
            requests_received: Some(412),
            requests_handled: Some(389),
            requests_from_regulation: Some(97),
            consultations_done: Some(351),
            redirected_emergency: Some(12),
            redirected_other: Some(18),
            no_shows: Some(8),
            slots_offered: Some(420),
            slots_used: Some(371),
            participating_professionals: Some(23),
            median_delay_hours: Some(18.5),
        }
    );
    let nurses = &records[1];
    assert_eq!(nurses.profession.as_deref(), Some("60"));
    assert_eq!(nurses.indicators.requests_from_regulation, None);
    assert_eq!(nurses.indicators.slots_offered, None);
    assert_eq!(nurses.indicators.median_delay_hours, Some(6.0));
    assert_eq!(records[2].profession, None);
    assert_eq!(records[3].indicators.median_delay_hours, None);
    assert_eq!(records[3].line, 5);
}

#[test]
fn canonical_csv_with_semicolons_reads_decimal_comma_and_spaces() {
    let records = parse_upload(
        Preset::Canonical,
        UploadType::Csv,
        &fixture("canonical-semicolon.csv"),
    )
    .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].indicators.requests_received, Some(1204));
    assert_eq!(records[0].indicators.median_delay_hours, Some(20.5));
    assert_eq!(records[0].period_days(), 7);
}

#[test]
fn canonical_json_object_and_array_forms() {
    let records = parse_upload(
        Preset::Canonical,
        UploadType::Json,
        &fixture("canonical.json"),
    )
    .unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].indicators.requests_from_regulation, Some(52));
    assert_eq!(records[0].indicators.median_delay_hours, Some(21.5));
    assert_eq!(records[1].profession.as_deref(), Some("60"));
    assert_eq!(records[1].indicators.no_shows, None);
    assert_eq!(records[2].line, 3);
    assert_eq!(records[2].profession, None);
    assert_eq!(records[2].indicators.slots_used, Some(30));

    // The canonical JSON record round-trips through the array form.
    let array: Vec<serde_json::Value> = records.iter().map(StatRecord::to_canonical_json).collect();
    let bytes = serde_json::to_vec(&array).unwrap();
    let again = parse_upload(Preset::Canonical, UploadType::Json, &bytes).unwrap();
    assert_eq!(again, records);
}

#[test]
fn fr_tableur_windows_1252_crlf_nbsp_thousands_trailing_blank_lines_and_column() {
    let checked = check_upload(
        Preset::FrTableur,
        UploadType::Csv,
        &fixture("fr-tableur-cp1252.csv"),
    )
    .unwrap();
    assert_eq!(checked.warnings, vec![]);
    let records = checked.records;
    assert_eq!(records.len(), 3, "blank trailing lines are not records");
    let sl = &records[0];
    assert_eq!(sl.cpts_id, "CPTS Sèvre et Loire", "Windows-1252 decoded");
    assert_eq!(sl.period_start, date(2026, 9, 1));
    assert_eq!(sl.period_end, date(2026, 9, 30));
    assert_eq!(sl.indicators.requests_received, Some(1234));
    assert_eq!(sl.indicators.consultations_done, Some(1065));
    assert_eq!(sl.indicators.slots_offered, Some(1300));
    assert_eq!(sl.indicators.median_delay_hours, Some(19.5));
    assert_eq!(sl.indicators.participating_professionals, Some(41));
    assert_eq!(
        records[1].profession.as_deref(),
        Some("60"),
        "« Infirmier » read as TRE_G15 60"
    );
    assert_eq!(records[1].indicators.requests_from_regulation, None);
    assert_eq!(records[1].indicators.median_delay_hours, Some(4.75));
    assert_eq!(records[2].line, 4);
    assert_eq!(records[2].indicators.median_delay_hours, Some(26.0));
}

#[test]
fn fr_tableur_utf8_bom_loose_headers_narrow_nbsp_and_nc() {
    let records = parse_upload(
        Preset::FrTableur,
        UploadType::Csv,
        &fixture("fr-tableur-utf8-bom.csv"),
    )
    .unwrap();
    assert_eq!(records.len(), 2);
    let week = &records[0];
    assert_eq!(week.cpts_id, "CPTS Cœur de Vendée");
    assert_eq!(
        (week.period_start, week.period_end),
        (date(2026, 9, 7), date(2026, 9, 13))
    );
    assert_eq!(week.indicators.requests_received, Some(2450));
    assert_eq!(week.indicators.requests_handled, Some(2398));
    assert_eq!(week.indicators.consultations_done, Some(2101));
    assert_eq!(week.indicators.slots_used, Some(2140));
    assert_eq!(week.indicators.median_delay_hours, Some(12.25));
    let next = &records[1];
    assert_eq!(next.period_start, date(2026, 9, 14));
    assert_eq!(next.indicators.requests_received, None, "NC = not counted");
    assert_eq!(next.indicators.requests_handled, Some(310));
}

#[test]
fn mensuel_large_three_months_become_records_per_cpts_and_month() {
    let records = parse_upload(
        Preset::MensuelLarge,
        UploadType::Csv,
        &fixture("mensuel-large.csv"),
    )
    .unwrap();
    let keys: Vec<(&str, NaiveDate, NaiveDate, Option<&str>)> = records
        .iter()
        .map(|r| {
            (
                r.cpts_id.as_str(),
                r.period_start,
                r.period_end,
                r.profession.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("cpts-saumurois", date(2026, 9, 1), date(2026, 9, 30), None),
            (
                "cpts-saumurois",
                date(2026, 10, 1),
                date(2026, 10, 31),
                None
            ),
            (
                "cpts-saumurois",
                date(2026, 11, 1),
                date(2026, 11, 30),
                None
            ),
            (
                "cpts-laval",
                date(2026, 9, 1),
                date(2026, 9, 30),
                Some("10")
            ),
            (
                "cpts-laval",
                date(2026, 10, 1),
                date(2026, 10, 31),
                Some("10")
            ),
            (
                "cpts-laval",
                date(2026, 11, 1),
                date(2026, 11, 30),
                Some("10")
            ),
        ]
    );
    assert_eq!(
        records[0].indicators,
        Indicators {
            requests_received: Some(150),
            requests_handled: Some(140),
            consultations_done: Some(128),
            median_delay_hours: Some(20.5),
            ..Default::default()
        }
    );
    assert_eq!(
        records[2].indicators.requests_handled, None,
        "empty November cell"
    );
    assert_eq!(records[2].indicators.median_delay_hours, None);
    assert_eq!(records[4].indicators.requests_received, None);
    assert_eq!(records[4].indicators.slots_offered, Some(110));
    assert_eq!(records[5].indicators.slots_used, Some(99));
    assert_eq!(records[0].line, 2);
    assert_eq!(records[3].line, 6);
}

#[test]
fn warnings_do_not_reject_and_are_returned() {
    let csv = "cpts_id,period_start,period_end,slots_offered,slots_used\n\
               cpts-a,2026-09-01,2026-09-30,10,12\n";
    let checked = check_upload(Preset::Canonical, UploadType::Csv, csv.as_bytes()).unwrap();
    assert_eq!(checked.records.len(), 1);
    assert_eq!(
        summary(&checked.warnings),
        vec![(Some(2), Some("slots_used"), reason::USED_EXCEEDS_OFFERED, W)]
    );
}

// ---------------------------------------------------------------- rejected uploads

#[test]
fn invalid_canonical_csv_lists_every_problem_with_line_and_column() {
    let e = rejected(
        Preset::Canonical,
        UploadType::Csv,
        &fixture("invalid-canonical.csv"),
    );
    assert_eq!(
        summary(&e.problems),
        vec![
            (Some(1), Some("satisfaction"), reason::UNKNOWN_COLUMN, E),
            (Some(3), None, reason::DUPLICATE_KEY, E),
            (
                Some(4),
                Some("requests_received"),
                reason::NEGATIVE_NUMBER,
                E
            ),
            (Some(5), Some("requests_received"), reason::NOT_A_NUMBER, E),
            (
                Some(6),
                Some("period_end"),
                reason::PERIOD_END_BEFORE_START,
                E
            ),
            (
                Some(7),
                Some("requests_handled"),
                reason::HANDLED_EXCEEDS_RECEIVED,
                E
            ),
            (Some(8), Some("slots_used"), reason::USED_EXCEEDS_OFFERED, W),
        ]
    );
    assert_eq!(e.errors().count(), 6);
    assert!(
        e.problems[1].message.contains("ligne 2"),
        "{}",
        e.problems[1].message
    );
    assert!(
        e.problems[3].message.contains("douze"),
        "{}",
        e.problems[3].message
    );
    assert!(e.problems[5].message.contains("60") && e.problems[5].message.contains("50"));
}

#[test]
fn invalid_fr_tableur_names_the_missing_and_unknown_columns_in_french() {
    let e = rejected(
        Preset::FrTableur,
        UploadType::Csv,
        &fixture("invalid-fr-tableur.csv"),
    );
    assert_eq!(
        summary(&e.problems),
        vec![
            (Some(1), Some("Commentaire"), reason::UNKNOWN_COLUMN, E),
            (Some(1), Some("Fin période"), reason::MISSING_COLUMN, E),
            (Some(3), Some("CPTS"), reason::MISSING_VALUE, E),
            (Some(3), Some("Demandes reçues"), reason::NOT_AN_INTEGER, E),
        ]
    );
    assert!(e.problems[1].message.contains("Fin période"));
}

#[test]
fn fr_tableur_consistency_problems_point_at_the_french_header() {
    let csv = "CPTS;Début période;Fin période;Demandes reçues;Demandes prises en charge\r\n\
               CPTS Sèvre et Loire;01/09/2026;30/09/2026;120;130\r\n";
    let e = rejected(Preset::FrTableur, UploadType::Csv, csv.as_bytes());
    assert_eq!(
        summary(&e.problems),
        vec![(
            Some(2),
            Some("Demandes prises en charge"),
            reason::HANDLED_EXCEEDS_RECEIVED,
            E
        )]
    );
}

#[test]
fn invalid_mensuel_large_reports_cells_under_their_month() {
    let e = rejected(
        Preset::MensuelLarge,
        UploadType::Csv,
        &fixture("invalid-mensuel-large.csv"),
    );
    assert_eq!(
        summary(&e.problems),
        vec![
            (Some(1), Some("Total"), reason::UNKNOWN_COLUMN, E),
            (Some(3), Some("indicateur"), reason::UNKNOWN_INDICATOR, E),
            (Some(4), Some("2026-10"), reason::NEGATIVE_NUMBER, E),
            (
                Some(4),
                Some("2026-09"),
                reason::HANDLED_EXCEEDS_RECEIVED,
                E
            ),
            (Some(5), Some("indicateur"), reason::DUPLICATE_ROW, E),
        ]
    );
    assert!(e.problems[1].message.contains("Demandes traitées"));
}

#[test]
fn missing_required_column_and_duplicate_column_are_named() {
    let csv = "cpts_id,period_start,requests_received,Requests_Received\ncpts-a,2026-09-01,3,4\n";
    let e = rejected(Preset::Canonical, UploadType::Csv, csv.as_bytes());
    assert_eq!(
        summary(&e.problems),
        vec![
            (
                Some(1),
                Some("Requests_Received"),
                reason::DUPLICATE_COLUMN,
                E
            ),
            (Some(1), Some("period_end"), reason::MISSING_COLUMN, E),
        ]
    );
    let e = rejected(
        Preset::Canonical,
        UploadType::Csv,
        b"cpts_id,period_start,period_end\ncpts-a,2026-09-01,2026-09-30\n",
    );
    assert_eq!(
        summary(&e.problems),
        vec![(Some(1), None, reason::MISSING_COLUMN, E)]
    );
}

#[test]
fn duplicate_key_across_lines_is_an_error_on_the_second_line() {
    let csv = "cpts_id;period_start;period_end;profession;requests_received\n\
               cpts-a;2026-09-01;2026-09-30;10;5\n\
               cpts-a;2026-09-01;2026-09-30;60;5\n\
               cpts-a;2026-09-01;2026-09-30;10;6\n";
    let e = rejected(Preset::Canonical, UploadType::Csv, csv.as_bytes());
    assert_eq!(
        summary(&e.problems),
        vec![(Some(4), None, reason::DUPLICATE_KEY, E)]
    );
}

#[test]
fn invalid_json_records_are_all_reported() {
    let json = r#"[
        {"cpts_id": "cpts-a", "period_start": "2026-09-01", "period_end": "2026-09-30", "requests_received": -1},
        {"cpts_id": "cpts-a", "period_start": "01/10/2026", "period_end": "2026-10-31", "requests_received": 3},
        {"cpts_id": "cpts-a", "period_start": "2026-11-01", "requests_received": 2.5, "satisfaction": 4},
        {"cpts_id": "cpts-a", "period_start": "2026-12-01", "period_end": "2026-12-31"},
        {"cpts_id": "cpts-b", "period_start": "2026-09-01", "period_end": "2026-09-30", "requests_handled": "dix"}
    ]"#;
    let e = rejected(Preset::Canonical, UploadType::Json, json.as_bytes());
    assert_eq!(
        summary(&e.problems),
        vec![
            (
                Some(1),
                Some("requests_received"),
                reason::NEGATIVE_NUMBER,
                E
            ),
            (Some(2), Some("period_start"), reason::INVALID_DATE, E),
            (
                Some(3),
                Some("requests_received"),
                reason::NOT_AN_INTEGER,
                E
            ),
            (Some(3), Some("satisfaction"), reason::UNKNOWN_COLUMN, E),
            (Some(3), Some("period_end"), reason::MISSING_VALUE, E),
            (Some(4), None, reason::NO_INDICATOR, E),
            (Some(5), Some("requests_handled"), reason::NOT_A_NUMBER, E),
        ]
    );
}

#[test]
fn unreadable_or_empty_files_say_so() {
    let e = rejected(Preset::Canonical, UploadType::Json, b"{\"records\": [");
    assert_eq!(
        summary(&e.problems),
        vec![(None, None, reason::INVALID_JSON, E)]
    );
    let e = rejected(Preset::Canonical, UploadType::Json, b"[]");
    assert_eq!(
        summary(&e.problems),
        vec![(None, None, reason::EMPTY_FILE, E)]
    );
    let e = rejected(Preset::FrTableur, UploadType::Csv, b"\r\n;;;\r\n");
    assert_eq!(
        summary(&e.problems),
        vec![(None, None, reason::EMPTY_FILE, E)]
    );
    let e = rejected(Preset::FrTableur, UploadType::Json, b"[]");
    assert_eq!(
        summary(&e.problems),
        vec![(None, None, reason::INVALID_JSON, E)]
    );
}

#[test]
fn presets_parse_from_their_names() {
    assert_eq!("canonical".parse::<Preset>(), Ok(Preset::Canonical));
    assert_eq!("fr-tableur".parse::<Preset>(), Ok(Preset::FrTableur));
    assert_eq!("mensuel-large".parse::<Preset>(), Ok(Preset::MensuelLarge));
    assert!("excel".parse::<Preset>().is_err());
    assert_eq!(Preset::FrTableur.to_string(), "fr-tableur");
}

#[test]
fn names_and_french_labels_are_in_canonical_order() {
    assert_eq!(Indicators::NAMES.len(), 11);
    for (k, i) in Indicator::ALL.iter().enumerate() {
        assert_eq!(Indicators::NAMES[k], i.name());
        assert_eq!(Indicators::LABELS_FR[k], (i.name(), i.label_fr()));
    }
}

// ---------------------------------------------------------------- aggregation

fn rec(cpts: &str, month: u32, prof: Option<&str>, ind: Indicators) -> StatRecord {
    let start = date(2026, month, 1);
    let end = date(2026, month + 1, 1).pred_opt().unwrap();
    StatRecord {
        cpts_id: cpts.into(),
        period_start: start,
        period_end: end,
        profession: prof.map(str::to_string),
        indicators: ind,
        line: 0,
    }
}

/// A (44): two professions in September; B (44): total, no `requests_handled`;
/// C (49): September without consultations, October without delay.
fn sample() -> Vec<(StatRecord, &'static str)> {
    let i = |received, handled, consultations, delay| Indicators {
        requests_received: received,
        requests_handled: handled,
        consultations_done: consultations,
        median_delay_hours: delay,
        ..Default::default()
    };
    let mut b = i(Some(50), None, Some(30), Some(20.0));
    b.slots_offered = Some(60);
    vec![
        (
            rec(
                "A",
                9,
                Some("10"),
                i(Some(100), Some(90), Some(80), Some(10.0)),
            ),
            "44",
        ),
        (
            rec(
                "A",
                9,
                Some("60"),
                i(Some(20), Some(20), Some(20), Some(4.0)),
            ),
            "44",
        ),
        (rec("B", 9, None, b), "44"),
        (rec("C", 9, None, i(None, Some(40), None, Some(30.0))), "49"),
        (
            rec("C", 10, None, i(Some(10), Some(10), Some(10), None)),
            "49",
        ),
    ]
}

fn run(group_by: &[GroupBy]) -> Vec<AggregateRow> {
    let data = sample();
    let views: Vec<StoredRecordView> = data
        .iter()
        .map(|(r, d)| StoredRecordView::new(r, d))
        .collect();
    aggregate(&views, group_by)
}

fn sum(row: &AggregateRow, i: Indicator) -> (u64, usize) {
    let s = row.count(i);
    (s.sum, s.records)
}

#[test]
fn aggregate_by_department_sums_only_present_values_and_weights_by_consultations() {
    let rows = run(&[GroupBy::Department]);
    assert_eq!(rows.len(), 2);
    let d44 = &rows[0];
    assert_eq!(d44.group, vec![GroupValue::Department("44".into())]);
    assert_eq!(d44.records, 3);
    assert_eq!(sum(d44, Indicator::RequestsReceived), (170, 3));
    assert_eq!(sum(d44, Indicator::RequestsHandled), (110, 2));
    assert_eq!(sum(d44, Indicator::ConsultationsDone), (130, 3));
    assert_eq!(sum(d44, Indicator::SlotsOffered), (60, 1));
    assert_eq!(sum(d44, Indicator::NoShows), (0, 0));
    // (10×80 + 4×20 + 20×30) / (80 + 20 + 30) = 1480 / 130
    assert!((d44.median_delay_hours.unwrap() - 1480.0 / 130.0).abs() < 1e-9);
    assert_eq!(
        d44.median_delay_weighting,
        Some(DelayWeighting::ConsultationsDone)
    );
    assert_eq!(d44.median_delay_records, 3);

    let d49 = &rows[1];
    assert_eq!(sum(d49, Indicator::RequestsReceived), (10, 1));
    assert_eq!(sum(d49, Indicator::RequestsHandled), (50, 2));
    // Only C/September has a delay, without consultations: weighted by handled → 30.
    assert_eq!(d49.median_delay_hours, Some(30.0));
    assert_eq!(
        d49.median_delay_weighting,
        Some(DelayWeighting::RequestsHandled)
    );
    assert_eq!(d49.median_delay_records, 1);
}

#[test]
fn aggregate_by_region_falls_back_to_equal_weights() {
    let rows = run(&[GroupBy::Region]);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.group, vec![GroupValue::Region("52".into())]);
    assert_eq!(r.records, 5);
    assert_eq!(sum(r, Indicator::RequestsReceived), (180, 4));
    assert_eq!(sum(r, Indicator::RequestsHandled), (160, 4));
    assert_eq!(sum(r, Indicator::ConsultationsDone), (140, 4));
    // C/September lacks consultations, B lacks handled: (10 + 4 + 20 + 30) / 4.
    assert_eq!(r.median_delay_hours, Some(16.0));
    assert_eq!(r.median_delay_weighting, Some(DelayWeighting::Equal));
}

#[test]
fn aggregate_by_cpts_and_period_and_by_profession() {
    let rows = run(&[GroupBy::Cpts, GroupBy::Period]);
    let groups: Vec<&[GroupValue]> = rows.iter().map(|r| &r.group[..]).collect();
    let sept = GroupValue::Period(date(2026, 9, 1), date(2026, 9, 30));
    assert_eq!(
        groups,
        vec![
            &[GroupValue::Cpts("A".into()), sept.clone()][..],
            &[GroupValue::Cpts("B".into()), sept.clone()][..],
            &[GroupValue::Cpts("C".into()), sept.clone()][..],
            &[
                GroupValue::Cpts("C".into()),
                GroupValue::Period(date(2026, 10, 1), date(2026, 10, 31))
            ][..],
        ]
    );
    assert_eq!(sum(&rows[0], Indicator::RequestsReceived), (120, 2));
    // (10×80 + 4×20) / 100
    assert!((rows[0].median_delay_hours.unwrap() - 8.8).abs() < 1e-9);
    assert_eq!(rows[3].median_delay_hours, None);
    assert_eq!(rows[3].median_delay_weighting, None);

    let rows = run(&[GroupBy::Profession]);
    let groups: Vec<&GroupValue> = rows.iter().map(|r| &r.group[0]).collect();
    assert_eq!(
        groups,
        vec![
            &GroupValue::Profession(None),
            &GroupValue::Profession(Some("10".into())),
            &GroupValue::Profession(Some("60".into())),
        ]
    );
    assert_eq!(rows[0].records, 3);
    assert_eq!(sum(&rows[0], Indicator::RequestsReceived), (60, 2));

    let all = run(&[]);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].records, 5);
}

#[test]
fn zero_consultations_fall_back_to_handled_weights() {
    let mk = |delay, handled| Indicators {
        consultations_done: Some(0),
        requests_handled: Some(handled),
        median_delay_hours: Some(delay),
        ..Default::default()
    };
    let a = rec("A", 9, None, mk(10.0, 1));
    let b = rec("B", 9, None, mk(20.0, 3));
    let rows = aggregate(
        &[
            StoredRecordView::new(&a, "44"),
            StoredRecordView::new(&b, "44"),
        ],
        &[GroupBy::Region],
    );
    // (10×1 + 20×3) / 4
    assert_eq!(rows[0].median_delay_hours, Some(17.5));
    assert_eq!(
        rows[0].median_delay_weighting,
        Some(DelayWeighting::RequestsHandled)
    );
}

#[test]
fn to_csv_plain_and_french() {
    let rows = run(&[GroupBy::Department]);
    let plain = String::from_utf8(to_csv(&rows, false)).unwrap();
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with(
        "department,records,requests_received,requests_received_records,requests_handled,"
    ));
    assert!(
        lines[0].ends_with(",median_delay_hours,median_delay_hours_records,median_delay_weighting")
    );
    assert_eq!(
        lines[2],
        "49,2,10,1,50,2,,0,10,1,,0,,0,,0,,0,,0,,0,30,1,requests_handled"
    );
    assert!(!plain.contains('\r'));

    let french = to_csv(&rows, true);
    assert!(
        french.starts_with(b"\xEF\xBB\xBF"),
        "BOM so that Excel reads UTF-8"
    );
    let french = String::from_utf8(french[3..].to_vec()).unwrap();
    let lines: Vec<&str> = french.split("\r\n").collect();
    assert!(lines[0].starts_with("Département;Lignes;Demandes reçues;Demandes reçues (lignes);"));
    assert_eq!(
        lines[1],
        "44;3;170;3;110;2;;0;130;3;;0;;0;;0;60;1;;0;;0;11,38;3;consultations réalisées"
    );

    let by_period = run(&[GroupBy::Period]);
    let french = String::from_utf8(to_csv(&by_period, true)).unwrap();
    assert!(french.contains("\r\n01/09/2026;30/09/2026;4;"), "{french}");
}

#[test]
fn parsed_upload_aggregates_end_to_end() {
    let records = parse_upload(
        Preset::FrTableur,
        UploadType::Csv,
        &fixture("fr-tableur-cp1252.csv"),
    )
    .unwrap();
    let views: Vec<StoredRecordView> = records
        .iter()
        .map(|r| StoredRecordView::new(r, "44"))
        .collect();
    let rows = stats::aggregate(&views, &[GroupBy::Cpts]);
    assert_eq!(rows.len(), 2);
    // Sorted by CPTS: Erdre et Gesvres, then Sèvre et Loire (1234 + 96 requests).
    assert_eq!(sum(&rows[1], Indicator::RequestsReceived), (1330, 2));
    // (19.5×1065 + 4.75×90) / 1155
    let expected = (19.5 * 1065.0 + 4.75 * 90.0) / 1155.0;
    assert!((rows[1].median_delay_hours.unwrap() - expected).abs() < 1e-9);
}

#[test]
fn json_schema_lists_exactly_the_canonical_fields() {
    let path = format!("{}/src/stats/schema.json", env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let mut props: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    props.sort_unstable();
    let mut expected: Vec<&str> = ["cpts_id", "period_start", "period_end", "profession"]
        .into_iter()
        .chain(Indicators::NAMES)
        .collect();
    expected.sort_unstable();
    assert_eq!(props, expected);
    assert_eq!(
        schema["anyOf"].as_array().unwrap().len(),
        Indicators::NAMES.len()
    );
    // A parsed record serialises to keys the schema knows.
    let records = parse_upload(
        Preset::Canonical,
        UploadType::Json,
        &fixture("canonical.json"),
    )
    .unwrap();
    for key in records[0].to_canonical_json().as_object().unwrap().keys() {
        assert!(expected.contains(&key.as_str()), "{key}");
    }
}
