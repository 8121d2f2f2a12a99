//! Applying one feed body to one source: parse and normalise (on the blocking pool), store the
//! snapshot in one transaction, then refresh the index. Shared by push (`PUT …/slots`) and pull.
//!
//! A feed that cannot be read at all changes nothing but the source's `last_error`/report; a
//! readable feed replaces the snapshot with its accepted slots (rejected lines are reported).

use super::{FeedError, FeedFormat, IngestContext, IngestReport};
use crate::http::AppState;
use crate::store::StoreError;
use crate::store::slots::SnapshotOutcome;
use crate::store::sources::SourceRow;
use serde_json::{Value, json};

/// Why a feed was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ingest task failed: {0}")]
    Task(String),
}

/// The report a publisher reads: parse counts plus what the store changed.
pub fn report_json(
    report: &IngestReport,
    outcome: Option<&SnapshotOutcome>,
    format: FeedFormat,
    at: i64,
) -> Value {
    let mut v = serde_json::to_value(report).unwrap_or_else(|_| json!({}));
    if let Some(o) = outcome {
        v["updated"] = json!(o.updated);
        v["unchanged"] = json!(o.unchanged);
        v["removed"] = json!(o.removed);
        v["inserted"] = json!(o.inserted);
        v["booked_or_held_slots_withdrawn"] = json!(o.kept_taken);
    }
    v["format"] = json!(format.as_str());
    v["at"] = json!(crate::http::search::paris(at));
    v
}

/// Parses `bytes` as `format` and replaces the slots of `source`, then refreshes the index.
/// Returns the stored report.
pub async fn apply(
    state: &actix_web::web::Data<AppState>,
    source: &SourceRow,
    format: FeedFormat,
    bytes: actix_web::web::Bytes,
) -> Result<Value, ApplyError> {
    let started = std::time::Instant::now();
    let now = state.clock.now();
    let horizon = chrono::Duration::days(i64::from(state.settings.horizon_days));
    let geo = state.geo.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let ctx = IngestContext {
            now,
            horizon,
            resolver: geo.as_ref(),
        };
        let t = std::time::Instant::now();
        let parsed = super::ingest(format, &bytes, &ctx);
        drop(bytes); // the body can be large: free it before the database phase
        (parsed, t.elapsed())
    })
    .await
    .map_err(|e| ApplyError::Task(e.to_string()))?;
    let (parsed, parse_time) = parsed;
    let at = now.timestamp();
    let outcome = match parsed {
        Ok(o) => o,
        Err(e) => {
            state.metrics.ingest_failed(
                &source.cpts_id,
                format.as_str(),
                e.code(),
                started.elapsed(),
            );
            let (id, msg) = (source.id, e.to_string());
            let report = json!({"format": format.as_str(), "at": crate::http::search::paris(at),
                "error": {"code": e.code(), "line": e.line(), "message": msg}})
            .to_string();
            state
                .db
                .run(move |c| crate::store::sources::record_failure(c, id, at, &msg, Some(&report)))
                .await?;
            return Err(e.into());
        }
    };
    let source_id = source.id;
    let source_row = source.clone();
    let summary = crate::metrics::IngestSummary::of(&outcome.report);
    let st = state.clone();
    let stored = state
        .db
        .run_long(move |c| {
            let final_report = std::cell::RefCell::new(Value::Null);
            let (_, phases) = store_snapshot(
                c,
                &st.settings,
                &st.index,
                &source_row,
                &outcome.feed,
                &outcome.removed_ids,
                now,
                &|o| {
                    let v = report_json(&outcome.report, Some(o), format, at);
                    let text = v.to_string();
                    *final_report.borrow_mut() = v;
                    text
                },
            )?;
            tracing::info!(
                source_id,
                slots = outcome.feed.slots.len(),
                parse_ms = parse_time.as_millis() as u64,
                store_ms = phases.store.as_millis() as u64,
                index_ms = phases.index.as_millis() as u64,
                first_snapshot = phases.first,
                "feed applied"
            );
            Ok(final_report.into_inner())
        })
        .await;
    match &stored {
        Ok(_) => state.metrics.ingest_applied(
            source_id,
            &source.cpts_id,
            format.as_str(),
            &summary,
            started.elapsed(),
        ),
        Err(e) => {
            state.metrics.ingest_failed(
                &source.cpts_id,
                format.as_str(),
                "store_error",
                started.elapsed(),
            );
            // The transaction rolled back: the previous snapshot stands. The publisher's
            // coordinator reads why on the source (the database's own words go to the log
            // only: they may name tables and values of other sources).
            tracing::error!(source_id, error = %e, "feed not stored");
            let msg = "the snapshot could not be stored (database error); nothing was changed";
            let report = json!({"format": format.as_str(), "at": crate::http::search::paris(at),
                "error": {"code": "store_error", "message": msg}})
            .to_string();
            if let Err(e) = state
                .db
                .run(move |c| {
                    crate::store::sources::record_failure(c, source_id, at, msg, Some(&report))
                })
                .await
            {
                tracing::warn!(source_id, error = %e, "could not record the failed snapshot");
            }
        }
    }
    Ok(stored?)
}

/// How long [`store_snapshot`]'s phases took.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// The write transaction, commit included.
    pub store: std::time::Duration,
    /// The index refresh after the commit.
    pub index: std::time::Duration,
    /// Whether the source had no rows before (its first snapshot: plain inserts, and no row
    /// of an earlier snapshot for the index to read back).
    pub first: bool,
}

/// Stores `feed` as the new snapshot of `source` (one transaction), then refreshes the index.
/// The index entries of the snapshot's slots are built from the feed on another core while the
/// rows are written (every row id is known before they go in), and put in place after the
/// commit, with what the index needs of the source's other rows read then.
#[allow(clippy::too_many_arguments)]
pub fn store_snapshot(
    conn: &mut crate::store::DbConn,
    settings: &crate::config::Settings,
    index: &crate::index::SlotIndex,
    source: &SourceRow,
    feed: &crate::domain::slot::NormalizedFeed,
    deleted: &[String],
    now: chrono::DateTime<chrono::Utc>,
    report: &dyn Fn(&SnapshotOutcome) -> String,
) -> Result<(SnapshotOutcome, Phases), StoreError> {
    let at = now.timestamp();
    let t = std::time::Instant::now();
    // Until installed below, the index's sync leaves this source to this call.
    let _storing = index.storing(source.id);
    let (written, prepared) = crate::store::slots::replace_snapshot_beside(
        conn,
        source.id,
        &source.cpts_id,
        feed,
        deleted,
        now,
        report,
        &|ids, had_rows| crate::index::load::prepare(settings, source, feed, ids, at, had_rows),
    )?;
    let store = t.elapsed();
    // The database committed: now the index (readers switch to the new snapshot at once).
    let t = std::time::Instant::now();
    let first = matches!(prepared, crate::index::load::Prepared::First(_));
    crate::index::load::install(conn, settings, index, source.id, written.seq, prepared, at)?;
    let phases = Phases {
        store,
        index: t.elapsed(),
        first,
    };
    Ok((written, phases))
}
