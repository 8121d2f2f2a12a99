//! Background work of a running node: hold expiry (and, in `ingest::poll`, feed polling).
//! Each task is one loop on the tokio runtime; a failing round is logged and retried, never
//! fatal.

use crate::http::AppState;
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
