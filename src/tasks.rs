//! Background work of a running node: hold expiry, the cross-node index sync (and, in
//! `ingest::poll`, feed polling).
//! Each task is one loop on the tokio runtime; a failing round is logged and retried, never
//! fatal.

use crate::http::AppState;
use crate::index::sync::{SyncState, SyncSummary};
use actix_web::web;
use std::time::Duration;

/// One round of hold expiry: marks lapsed holds `expired` in the database (audited) and drops
/// them from the index overlay. Returns the expired holds `(hold id, slot id, account id)`.
pub async fn expire_holds_once(
    state: &AppState,
) -> Result<Vec<(String, i64, i64)>, crate::store::StoreError> {
    let now = state.clock.now().timestamp();
    let (expired, cpts) = state
        .db
        .run(move |c| {
            let expired = crate::store::bookings::expire_holds(c, now)?;
            let slots: Vec<i64> = expired.iter().map(|(_, slot, _)| *slot).collect();
            Ok((expired, crate::store::slots::cpts_of(c, &slots)?))
        })
        .await?;
    state.index.sweep(now);
    for (_, slot, _) in &expired {
        state
            .metrics
            .hold_expired(cpts.get(slot).map_or(crate::metrics::OTHER, String::as_str));
    }
    Ok(expired)
}

/// Starts the hold-expiry loop.
pub fn spawn_hold_sweeper(state: web::Data<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(state.settings.hold_sweep_s.max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match expire_holds_once(&state).await {
                Ok(expired) if !expired.is_empty() => {
                    tracing::info!(count = expired.len(), "holds expired")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "hold expiry round failed"),
            }
        }
    })
}

/// Where a node's index sync starts: read before the index is built from the database (see
/// [`SyncState::resume`]).
pub async fn index_sync_state(state: &AppState) -> Result<SyncState, crate::store::StoreError> {
    let now = state.clock.now().timestamp();
    state.db.run(move |c| SyncState::resume(c, now)).await
}

/// One round of the cross-node sync ([`crate::index::sync::sync_once`]). It may reload sources
/// (seconds for a large one), so it has no outer time bound; `sync` is kept across rounds (a
/// round that panics loses it: the next one starts from the beginning of the audit trail,
/// which is slower, not wrong).
pub async fn sync_index_once(
    state: &web::Data<AppState>,
    sync: &mut SyncState,
) -> Result<SyncSummary, crate::store::StoreError> {
    let now = state.clock.now().timestamp();
    let (app, mut current) = (state.clone(), std::mem::take(sync));
    let (summary, current) = state
        .db
        .run_long(move |c| {
            let summary =
                crate::index::sync::sync_once(c, &app.settings, &app.index, &mut current, now);
            Ok((summary, current))
        })
        .await?;
    *sync = current;
    summary
}

/// Starts the cross-node sync loop (none when `sync_interval_ms` is 0). Its first round comes
/// one interval after the start, whose index was just read from the database.
pub fn spawn_index_sync(
    state: web::Data<AppState>,
    mut sync: SyncState,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = Duration::from_millis(state.settings.sync_interval_ms);
    let first = tokio::time::Instant::now().checked_add(every)?;
    if every.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(first, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match sync_index_once(&state, &mut sync).await {
                Ok(s) if s.reloaded + s.failed > 0 => tracing::info!(
                    reloaded = s.reloaded,
                    failed = s.failed,
                    events = s.events,
                    "index synced with the database"
                ),
                Ok(s) if s.changed() => tracing::debug!(
                    freshened = s.freshened,
                    events = s.events,
                    slots = s.slots,
                    "index synced with the database"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "index sync round failed"),
            }
        }
    }))
}
