//! Slot sources (feeds): one CPTS each, pushed or pulled, with their freshness.

use super::schema::sources;
use super::{DbConn, StoreError};
use crate::db_run;
use serde::Serialize;

/// A source row.
#[derive(Debug, Clone, PartialEq, Serialize, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = sources)]
pub struct SourceRow {
    pub id: i64,
    pub cpts_id: String,
    pub name: String,
    pub format: String,
    pub url: Option<String>,
    pub poll_interval_s: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub last_report: Option<String>,
    #[serde(skip)]
    pub etag: Option<String>,
    #[serde(skip)]
    pub last_modified: Option<String>,
    #[serde(skip)]
    pub snapshot_seq: i64,
}

/// How long a source's data may be offered after its last success: `pull_factor` poll
/// intervals for a polled source (a `url` and a positive `poll_interval_s`), `push_after_s`
/// otherwise. The one rule of freshness: the index's [`crate::index::SourceMeta`] and the hold
/// both apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    pub push_after_s: i64,
    pub pull_factor: i64,
}

impl Staleness {
    pub fn of(settings: &crate::config::Settings) -> Self {
        Staleness {
            push_after_s: i64::try_from(settings.push_stale_after_s).unwrap_or(i64::MAX),
            pull_factor: i64::from(settings.pull_stale_factor),
        }
    }

    /// How long `row`'s data stays fresh after a success, seconds.
    pub fn stale_after_s(&self, row: &SourceRow) -> i64 {
        match (row.url.as_deref(), row.poll_interval_s) {
            (Some(_), Some(every)) if every > 0 => every.saturating_mul(self.pull_factor),
            _ => self.push_after_s,
        }
    }

    /// Whether `row`'s slots may be offered at `now` (as `SourceMeta::is_fresh`).
    pub fn is_fresh(&self, row: &SourceRow, now: i64) -> bool {
        let last = row.last_success_at.unwrap_or(0);
        last > 0 && now < last.saturating_add(self.stale_after_s(row))
    }
}

/// What a caller gives to create a source.
#[derive(Debug, Clone)]
pub struct NewSource {
    pub cpts_id: String,
    pub name: String,
    pub format: String,
    pub url: Option<String>,
    pub poll_interval_s: Option<i64>,
    pub created_by: i64,
}

pub fn create(conn: &mut DbConn, s: &NewSource, now: i64) -> Result<SourceRow, StoreError> {
    Ok(db_run!(conn, |c| diesel::insert_into(sources::table)
        .values((
            sources::cpts_id.eq(&s.cpts_id),
            sources::name.eq(&s.name),
            sources::format.eq(&s.format),
            sources::url.eq(&s.url),
            sources::poll_interval_s.eq(s.poll_interval_s),
            sources::created_by.eq(s.created_by),
            sources::created_at.eq(now),
        ))
        .returning(SourceRow::as_returning())
        .get_result(c))?)
}

pub fn get(conn: &mut DbConn, id: i64) -> Result<SourceRow, StoreError> {
    db_run!(conn, |c| sources::table
        .find(id)
        .select(SourceRow::as_select())
        .first(c)
        .optional())?
    .ok_or_else(|| StoreError::NotFound(format!("no source with id {id}")))
}

/// All sources, or those of one CPTS.
pub fn list(conn: &mut DbConn, cpts_id: Option<&str>) -> Result<Vec<SourceRow>, StoreError> {
    Ok(db_run!(conn, |c| {
        let mut q = sources::table
            .select(SourceRow::as_select())
            .order(sources::id)
            .into_boxed();
        if let Some(id) = cpts_id {
            q = q.filter(sources::cpts_id.eq(id));
        }
        q.load(c)
    })?)
}

/// Records an attempt that failed (the previous snapshot stays).
pub fn record_failure(
    conn: &mut DbConn,
    id: i64,
    now: i64,
    error: &str,
    report: Option<&str>,
) -> Result<(), StoreError> {
    db_run!(conn, |c| diesel::update(sources::table.find(id))
        .set((
            sources::last_attempt_at.eq(now),
            sources::last_error.eq(error),
            sources::last_report.eq(report),
        ))
        .execute(c))?;
    Ok(())
}

/// Records HTTP validators of the last successful fetch (pulled sources).
pub fn record_validators(
    conn: &mut DbConn,
    id: i64,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Result<(), StoreError> {
    db_run!(conn, |c| diesel::update(sources::table.find(id))
        .set((
            sources::etag.eq(etag),
            sources::last_modified.eq(last_modified)
        ))
        .execute(c))?;
    Ok(())
}

/// Marks a fetch that found nothing new (304): the data is confirmed fresh.
pub fn record_unchanged(conn: &mut DbConn, id: i64, now: i64) -> Result<(), StoreError> {
    db_run!(conn, |c| diesel::update(sources::table.find(id))
        .set((
            sources::last_attempt_at.eq(now),
            sources::last_success_at.eq(now),
            sources::last_error.eq(None::<String>)
        ))
        .execute(c))?;
    Ok(())
}
