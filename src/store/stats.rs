//! Stored CPTS statistics: uploads, the versions of each record, and sasnp's own figures.
//!
//! Rules kept here:
//! - a record's key is CPTS × `period_start` × `period_end` × profession (`''` = all
//!   professions); an upload stores a **new version** of every key it carries and marks the
//!   previous current version `superseded_by` that upload — nothing is ever overwritten or
//!   deleted, so the history of every key (who, when, which figures) stays readable;
//! - one upload is one write transaction: readers see all of it or none of it. Uploads are
//!   serialised (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a `SHARE ROW EXCLUSIVE` table lock,
//!   which readers do not wait for) so two concurrent uploads of one key cannot both become
//!   current — the partial unique index would refuse the second one anyway;
//! - search tallies are additive deltas (`searches = searches + excluded.searches`), so several
//!   nodes flushing into one PostgreSQL add up instead of overwriting each other.

use super::schema::{appointments, holds, slots};
use super::stats_schema::{stats_records, stats_search_tally, stats_uploads};
use super::{Backend, DbConn, StoreError};
use crate::db_run;
use crate::stats::{Indicators, StatRecord};
use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::upsert::excluded;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Rows per multi-row statement (20 columns: well under both backends' bind limits).
const CHUNK: usize = 500;

/// The identity of a record: one CPTS × inclusive period × profession (`None` = all).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RecordKey {
    pub cpts_id: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub profession: Option<String>,
}

impl RecordKey {
    pub fn of(r: &StatRecord) -> Self {
        Self {
            cpts_id: r.cpts_id.clone(),
            period_start: r.period_start,
            period_end: r.period_end,
            profession: r.profession.clone(),
        }
    }
}

/// A stored day (`YYYY-MM-DD`, sorts as a date on both backends).
pub fn day_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn parse_day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    // Counts above i64::MAX cannot be real; they are clamped rather than failing the upload.
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn to_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| u64::try_from(v).unwrap_or(0))
}

/// One stored version of a record.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = stats_records)]
pub struct VersionRow {
    pub id: i64,
    pub upload_id: i64,
    pub cpts_id: String,
    pub period_start: String,
    pub period_end: String,
    pub profession: String,
    pub version: i64,
    /// The upload that replaced this version; `None` = current.
    pub superseded_by: Option<i64>,
    pub requests_received: Option<i64>,
    pub requests_handled: Option<i64>,
    pub requests_from_regulation: Option<i64>,
    pub consultations_done: Option<i64>,
    pub redirected_emergency: Option<i64>,
    pub redirected_other: Option<i64>,
    pub no_shows: Option<i64>,
    pub slots_offered: Option<i64>,
    pub slots_used: Option<i64>,
    pub participating_professionals: Option<i64>,
    pub median_delay_hours: Option<f64>,
}

impl VersionRow {
    pub fn key(&self) -> RecordKey {
        RecordKey {
            cpts_id: self.cpts_id.clone(),
            period_start: parse_day(&self.period_start),
            period_end: parse_day(&self.period_end),
            profession: (!self.profession.is_empty()).then(|| self.profession.clone()),
        }
    }

    pub fn indicators(&self) -> Indicators {
        Indicators {
            requests_received: to_u64(self.requests_received),
            requests_handled: to_u64(self.requests_handled),
            requests_from_regulation: to_u64(self.requests_from_regulation),
            consultations_done: to_u64(self.consultations_done),
            redirected_emergency: to_u64(self.redirected_emergency),
            redirected_other: to_u64(self.redirected_other),
            no_shows: to_u64(self.no_shows),
            slots_offered: to_u64(self.slots_offered),
            slots_used: to_u64(self.slots_used),
            participating_professionals: to_u64(self.participating_professionals),
            median_delay_hours: self.median_delay_hours,
        }
    }

    /// The version as a record (line 0: it no longer belongs to a file).
    pub fn record(&self) -> StatRecord {
        let key = self.key();
        StatRecord {
            cpts_id: key.cpts_id,
            period_start: key.period_start,
            period_end: key.period_end,
            profession: key.profession,
            indicators: self.indicators(),
            line: 0,
        }
    }
}

/// `None` is written as NULL (not `DEFAULT`), so that a batch is one multi-row statement on
/// SQLite too — diesel would otherwise insert row by row in a nested transaction, which
/// `write_tx`'s hand-issued `BEGIN` forbids.
#[derive(Insertable)]
#[diesel(table_name = stats_records, treat_none_as_default_value = false)]
struct NewVersion<'a> {
    upload_id: i64,
    cpts_id: &'a str,
    period_start: String,
    period_end: String,
    profession: &'a str,
    version: i64,
    requests_received: Option<i64>,
    requests_handled: Option<i64>,
    requests_from_regulation: Option<i64>,
    consultations_done: Option<i64>,
    redirected_emergency: Option<i64>,
    redirected_other: Option<i64>,
    no_shows: Option<i64>,
    slots_offered: Option<i64>,
    slots_used: Option<i64>,
    participating_professionals: Option<i64>,
    median_delay_hours: Option<f64>,
}

/// An upload as listed.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = stats_uploads)]
pub struct UploadRow {
    pub id: i64,
    pub account_id: i64,
    pub account_name: String,
    pub uploaded_at: i64,
    pub preset: String,
    pub content_type: String,
    pub record_count: i64,
    pub new_count: i64,
    pub replaced_count: i64,
    /// The CPTS the upload covers, comma-separated, sorted.
    pub cpts_ids: String,
    /// The warnings returned when it was accepted (JSON array of problems).
    pub warnings: String,
}

/// The current version a record of an upload would replace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Previous {
    pub version: i64,
    pub upload_id: i64,
    pub account_name: String,
    pub uploaded_at: i64,
    /// The figures are exactly those of the new record (a re-upload of the same file).
    pub identical: bool,
    #[serde(skip)]
    pub row_id: i64,
}

/// For each record, the current version of its key, if any (read-only: the dry run).
pub fn plan(
    conn: &mut DbConn,
    records: &[StatRecord],
) -> Result<Vec<Option<Previous>>, StoreError> {
    let mut cpts: Vec<&str> = records.iter().map(|r| r.cpts_id.as_str()).collect();
    cpts.sort_unstable();
    cpts.dedup();
    let mut current: HashMap<RecordKey, (VersionRow, String, i64)> = HashMap::new();
    for chunk in cpts.chunks(CHUNK) {
        let rows: Vec<(VersionRow, String, i64)> = db_run!(&mut *conn, |c| stats_records::table
            .inner_join(stats_uploads::table)
            .filter(stats_records::cpts_id.eq_any(chunk))
            .filter(stats_records::superseded_by.is_null())
            .select((
                VersionRow::as_select(),
                stats_uploads::account_name,
                stats_uploads::uploaded_at,
            ))
            .load(c))?;
        current.extend(rows.into_iter().map(|r| (r.0.key(), r)));
    }
    Ok(records
        .iter()
        .map(|r| {
            current
                .get(&RecordKey::of(r))
                .map(|(row, account, at)| Previous {
                    version: row.version,
                    upload_id: row.upload_id,
                    account_name: account.clone(),
                    uploaded_at: *at,
                    identical: row.indicators() == r.indicators,
                    row_id: row.id,
                })
        })
        .collect())
}

/// Who uploads what.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub account_id: i64,
    pub account_name: String,
    pub preset: String,
    pub content_type: String,
    /// JSON array of the warnings returned with the acceptance.
    pub warnings: String,
}

/// Stores an accepted upload in one write transaction: a new version of every record,
/// superseding the current version of its key. Returns the upload and, per record, the
/// version it replaced.
pub fn store_upload(
    conn: &mut DbConn,
    upload: NewUpload,
    records: &[StatRecord],
    now: i64,
) -> Result<(UploadRow, Vec<Option<Previous>>), StoreError> {
    super::write_tx(conn, |conn| {
        if conn.backend() == Backend::Postgres {
            // Serialises uploads (the mode conflicts with itself), not readers.
            db_run!(&mut *conn, |c| {
                diesel::connection::SimpleConnection::batch_execute(
                    c,
                    "LOCK TABLE stats_records IN SHARE ROW EXCLUSIVE MODE",
                )
            })?;
        }
        let previous = plan(conn, records)?;
        let replaced = previous.iter().flatten().count() as i64;
        let mut cpts: Vec<&str> = records.iter().map(|r| r.cpts_id.as_str()).collect();
        cpts.sort_unstable();
        cpts.dedup();
        let row: UploadRow = db_run!(&mut *conn, |c| diesel::insert_into(stats_uploads::table)
            .values((
                stats_uploads::account_id.eq(upload.account_id),
                stats_uploads::account_name.eq(&upload.account_name),
                stats_uploads::uploaded_at.eq(now),
                stats_uploads::preset.eq(&upload.preset),
                stats_uploads::content_type.eq(&upload.content_type),
                stats_uploads::record_count.eq(records.len() as i64),
                stats_uploads::new_count.eq(records.len() as i64 - replaced),
                stats_uploads::replaced_count.eq(replaced),
                stats_uploads::cpts_ids.eq(cpts.join(",")),
                stats_uploads::warnings.eq(&upload.warnings),
            ))
            .returning(UploadRow::as_returning())
            .get_result(c))?;

        let superseded: Vec<i64> = previous.iter().flatten().map(|p| p.row_id).collect();
        for chunk in superseded.chunks(CHUNK) {
            db_run!(&mut *conn, |c| diesel::update(
                stats_records::table.filter(stats_records::id.eq_any(chunk))
            )
            .set(stats_records::superseded_by.eq(row.id))
            .execute(c))?;
        }
        let versions: Vec<NewVersion<'_>> = records
            .iter()
            .zip(&previous)
            .map(|(r, p)| {
                let i = &r.indicators;
                NewVersion {
                    upload_id: row.id,
                    cpts_id: &r.cpts_id,
                    period_start: day_text(r.period_start),
                    period_end: day_text(r.period_end),
                    profession: r.profession.as_deref().unwrap_or(""),
                    version: p.as_ref().map_or(1, |p| p.version + 1),
                    requests_received: to_i64(i.requests_received),
                    requests_handled: to_i64(i.requests_handled),
                    requests_from_regulation: to_i64(i.requests_from_regulation),
                    consultations_done: to_i64(i.consultations_done),
                    redirected_emergency: to_i64(i.redirected_emergency),
                    redirected_other: to_i64(i.redirected_other),
                    no_shows: to_i64(i.no_shows),
                    slots_offered: to_i64(i.slots_offered),
                    slots_used: to_i64(i.slots_used),
                    participating_professionals: to_i64(i.participating_professionals),
                    median_delay_hours: i.median_delay_hours,
                }
            })
            .collect();
        for chunk in versions.chunks(CHUNK) {
            db_run!(&mut *conn, |c| diesel::insert_into(stats_records::table)
                .values(chunk)
                .execute(c))?;
        }
        Ok((row, previous))
    })
}

/// Uploads, newest first; with `cpts`, only those carrying a record of that CPTS.
pub fn list_uploads(
    conn: &mut DbConn,
    cpts: Option<&str>,
    limit: i64,
) -> Result<Vec<UploadRow>, StoreError> {
    Ok(db_run!(conn, |c| {
        let mut q = stats_uploads::table
            .select(UploadRow::as_select())
            .order(stats_uploads::id.desc())
            .limit(limit)
            .into_boxed();
        if let Some(cpts) = cpts {
            q = q.filter(
                stats_uploads::id.eq_any(
                    stats_records::table
                        .filter(stats_records::cpts_id.eq(cpts.to_string()))
                        .select(stats_records::upload_id),
                ),
            );
        }
        q.load(c)
    })?)
}

/// One upload.
pub fn get_upload(conn: &mut DbConn, id: i64) -> Result<UploadRow, StoreError> {
    db_run!(conn, |c| stats_uploads::table
        .find(id)
        .select(UploadRow::as_select())
        .first(c)
        .optional())?
    .ok_or_else(|| StoreError::NotFound(format!("no statistics upload with id {id}")))
}

/// A version with the upload that wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionWithUpload {
    pub row: VersionRow,
    pub account_name: String,
    pub uploaded_at: i64,
}

/// Every version of each key, oldest first.
pub type History = BTreeMap<RecordKey, Vec<VersionWithUpload>>;

/// The versions an upload wrote, and the whole history of each of their keys.
pub fn upload_versions(
    conn: &mut DbConn,
    upload_id: i64,
) -> Result<(Vec<VersionRow>, History), StoreError> {
    let written: Vec<VersionRow> = db_run!(&mut *conn, |c| stats_records::table
        .filter(stats_records::upload_id.eq(upload_id))
        .select(VersionRow::as_select())
        .order(stats_records::id)
        .load(c))?;
    let keys: std::collections::HashSet<RecordKey> = written.iter().map(VersionRow::key).collect();
    let mut cpts: Vec<String> = written.iter().map(|r| r.cpts_id.clone()).collect();
    cpts.sort_unstable();
    cpts.dedup();
    let mut history = History::new();
    for chunk in cpts.chunks(CHUNK) {
        let rows: Vec<(VersionRow, String, i64)> = db_run!(&mut *conn, |c| stats_records::table
            .inner_join(stats_uploads::table)
            .filter(stats_records::cpts_id.eq_any(chunk))
            .select((
                VersionRow::as_select(),
                stats_uploads::account_name,
                stats_uploads::uploaded_at,
            ))
            .order((stats_records::cpts_id, stats_records::version))
            .load(c))?;
        for (row, account_name, uploaded_at) in rows {
            let key = row.key();
            if keys.contains(&key) {
                history.entry(key).or_default().push(VersionWithUpload {
                    row,
                    account_name,
                    uploaded_at,
                });
            }
        }
    }
    for versions in history.values_mut() {
        versions.sort_by_key(|v| v.row.version);
    }
    Ok((written, history))
}

/// Current records whose period lies inside `[from, to]` (both ends included, either bound
/// optional), restricted to `cpts` when given.
pub fn current_records(
    conn: &mut DbConn,
    cpts: Option<&[String]>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Vec<VersionRow>, StoreError> {
    let from = from.map(day_text);
    let to = to.map(day_text);
    Ok(db_run!(conn, |c| {
        let mut q = stats_records::table
            .filter(stats_records::superseded_by.is_null())
            .select(VersionRow::as_select())
            .order((
                stats_records::cpts_id,
                stats_records::period_start,
                stats_records::period_end,
                stats_records::profession,
            ))
            .into_boxed();
        if let Some(cpts) = cpts {
            q = q.filter(stats_records::cpts_id.eq_any(cpts.to_vec()));
        }
        if let Some(from) = &from {
            q = q.filter(stats_records::period_start.ge(from.clone()));
        }
        if let Some(to) = &to {
            q = q.filter(stats_records::period_end.le(to.clone()));
        }
        q.load(c)
    })?)
}

/// Search counts of one CPTS (or `none`) × department × day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SearchCounts {
    pub searches: u64,
    /// Searches that found nothing within the requested radius.
    pub no_result_base: u64,
    /// Searches that still found nothing after the radius was enlarged.
    pub no_result_final: u64,
}

impl SearchCounts {
    pub fn add(&mut self, o: &SearchCounts) {
        self.searches += o.searches;
        self.no_result_base += o.no_result_base;
        self.no_result_final += o.no_result_final;
    }
}

/// Adds search-count deltas to the stored tallies, in one transaction.
pub fn add_search_tallies(
    conn: &mut DbConn,
    deltas: &[((String, String, NaiveDate), SearchCounts)],
) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    super::write_tx(conn, |conn| {
        for ((cpts, dept, day), n) in deltas {
            let n64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            // One statement per row: SQLite (in diesel) cannot combine multi-row VALUES with
            // ON CONFLICT; a flush holds at most a few hundred rows.
            db_run!(&mut *conn, |c| diesel::insert_into(
                stats_search_tally::table
            )
            .values((
                stats_search_tally::cpts_key.eq(cpts),
                stats_search_tally::department.eq(dept),
                stats_search_tally::day.eq(day_text(*day)),
                stats_search_tally::searches.eq(n64(n.searches)),
                stats_search_tally::no_result_base.eq(n64(n.no_result_base)),
                stats_search_tally::no_result_final.eq(n64(n.no_result_final)),
            ))
            .on_conflict((
                stats_search_tally::cpts_key,
                stats_search_tally::department,
                stats_search_tally::day,
            ))
            .do_update()
            .set((
                stats_search_tally::searches
                    .eq(stats_search_tally::searches + excluded(stats_search_tally::searches)),
                stats_search_tally::no_result_base.eq(stats_search_tally::no_result_base
                    + excluded(stats_search_tally::no_result_base)),
                stats_search_tally::no_result_final.eq(stats_search_tally::no_result_final
                    + excluded(stats_search_tally::no_result_final)),
            ))
            .execute(c))?;
        }
        Ok(())
    })
}

/// Slots of one CPTS whose start falls in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SlotFigures {
    pub count: u64,
    /// Sum of the slots' durations, in hours.
    pub hours: f64,
    /// Of those, slots booked through sasnp.
    pub booked_through_sasnp: u64,
}

/// What sasnp counted itself over a window, per CPTS id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComputedRaw {
    pub slots: HashMap<String, SlotFigures>,
    /// `(cpts_id, hold status) → count`.
    pub holds: HashMap<(String, String), u64>,
    /// `(cpts_id, status, orientation_category) → count`.
    pub appointments: HashMap<(String, String, String), u64>,
    /// `(cpts_key, department) → counts` (`cpts_key` = `none` outside every territory).
    pub searches: HashMap<(String, String), SearchCounts>,
}

/// sasnp's own figures for `[start, end)` (epoch seconds; slots, holds and appointments by
/// the slot's start) and the days `[from_day, to_day]` (searches).
pub fn computed(
    conn: &mut DbConn,
    start: i64,
    end: i64,
    from_day: NaiveDate,
    to_day: NaiveDate,
) -> Result<ComputedRaw, StoreError> {
    use diesel::dsl::{count_star, sql};
    use diesel::sql_types::{BigInt, Nullable};
    let mut out = ComputedRaw::default();

    let slot_rows: Vec<(String, i64, Option<i64>, i64)> = db_run!(&mut *conn, |c| slots::table
        .filter(slots::start_at.ge(start))
        .filter(slots::start_at.lt(end))
        .group_by(slots::cpts_id)
        .select((
            slots::cpts_id,
            count_star(),
            // SUM of BIGINT is BIGINT on SQLite but NUMERIC on PostgreSQL: cast once for both.
            sql::<Nullable<BigInt>>("CAST(SUM(end_at - start_at) AS BIGINT)"),
            diesel::dsl::count(slots::appointment_id),
        ))
        .load(c))?;
    for (cpts, n, secs, booked) in slot_rows {
        out.slots.insert(
            cpts,
            SlotFigures {
                count: n.max(0) as u64,
                hours: secs.unwrap_or(0).max(0) as f64 / 3600.0,
                booked_through_sasnp: booked.max(0) as u64,
            },
        );
    }

    let hold_rows: Vec<(String, String)> = db_run!(&mut *conn, |c| holds::table
        .inner_join(slots::table)
        .filter(slots::start_at.ge(start))
        .filter(slots::start_at.lt(end))
        .select((slots::cpts_id, holds::status))
        .load(c))?;
    for key in hold_rows {
        *out.holds.entry(key).or_default() += 1;
    }

    let appt_rows: Vec<(String, String, String, i64)> =
        db_run!(&mut *conn, |c| appointments::table
            .filter(appointments::start_at.ge(start))
            .filter(appointments::start_at.lt(end))
            .group_by((
                appointments::cpts_id,
                appointments::status,
                appointments::orientation_category,
            ))
            .select((
                appointments::cpts_id,
                appointments::status,
                appointments::orientation_category,
                count_star(),
            ))
            .load(c))?;
    for (cpts, status, cat, n) in appt_rows {
        out.appointments
            .insert((cpts, status, cat), n.max(0) as u64);
    }

    let tally_rows: Vec<(String, String, i64, i64, i64)> =
        db_run!(&mut *conn, |c| stats_search_tally::table
            .filter(stats_search_tally::day.ge(day_text(from_day)))
            .filter(stats_search_tally::day.le(day_text(to_day)))
            .select((
                stats_search_tally::cpts_key,
                stats_search_tally::department,
                stats_search_tally::searches,
                stats_search_tally::no_result_base,
                stats_search_tally::no_result_final,
            ))
            .load(c))?;
    for (cpts, dept, s, b, f) in tally_rows {
        out.searches
            .entry((cpts, dept))
            .or_default()
            .add(&SearchCounts {
                searches: s.max(0) as u64,
                no_result_base: b.max(0) as u64,
                no_result_final: f.max(0) as u64,
            });
    }
    Ok(out)
}
