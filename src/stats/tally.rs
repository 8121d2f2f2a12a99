//! Searches counted by sasnp itself, for the figures it sets beside the CPTS uploads
//! (`GET /v1/stats/computed`).
//!
//! Rules kept here:
//! - the search path never touches the database: [`SearchTally::record`] only bumps an
//!   in-memory counter keyed by (CPTS of the searched point or `none`, department, day);
//! - [`SearchTally::flush`] moves the counters out and **adds** them to the stored tallies
//!   (several nodes add up); if the write fails the counts are put back, so a flush loses
//!   nothing short of a crash. A background task flushes every few seconds
//!   ([`SearchTally::spawn_flusher`]) and the owner flushes once more at shutdown.
//!
//! This is the one database-touching part of `stats` (through `store::stats`), kept here so
//! the counter and its flush read together.

use crate::store::Db;
use crate::store::stats::{SearchCounts, add_search_tallies};
use chrono::NaiveDate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key of stored tallies for searches outside every CPTS territory.
pub const NO_CPTS: &str = "none";

type Key = (String, String, NaiveDate);

/// In-memory search counters, flushed to `stats_search_tally`.
#[derive(Debug, Default)]
pub struct SearchTally {
    counts: Mutex<HashMap<Key, SearchCounts>>,
}

impl SearchTally {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one search (a few hundred nanoseconds, no I/O). `no_result_base`: nothing found
    /// within the requested radius; `no_result_final`: still nothing after enlarging it.
    pub fn record(
        &self,
        cpts_id: Option<&str>,
        department: &str,
        day: NaiveDate,
        no_result_base: bool,
        no_result_final: bool,
    ) {
        let key = (
            cpts_id.unwrap_or(NO_CPTS).to_string(),
            department.to_string(),
            day,
        );
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = map.entry(key).or_default();
        c.searches += 1;
        c.no_result_base += u64::from(no_result_base);
        c.no_result_final += u64::from(no_result_final);
    }

    /// Counts not yet flushed (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn take(&self) -> HashMap<Key, SearchCounts> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn restore(&self, back: Vec<(Key, SearchCounts)>) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in back {
            map.entry(k).or_default().add(&v);
        }
    }

    /// Adds the pending counts to the database and clears them; on failure they are kept
    /// for the next flush (and the error is logged).
    pub async fn flush(&self, db: &Db) {
        let deltas: Vec<(Key, SearchCounts)> = self.take().into_iter().collect();
        if deltas.is_empty() {
            return;
        }
        let shared = Arc::new(deltas);
        let rows = shared.clone();
        match db.run(move |c| add_search_tallies(c, &rows)).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, rows = shared.len(), "search tally flush failed; kept for the next one");
                self.restore(Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone()));
            }
        }
    }

    /// Flushes every `every` until the returned handle is aborted. Call [`SearchTally::flush`]
    /// once more after stopping the server so the last counts are kept.
    pub fn spawn_flusher(self: &Arc<Self>, db: Db, every: Duration) -> tokio::task::JoinHandle<()> {
        let tally = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                tally.flush(&db).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_counts_per_key() {
        let t = SearchTally::new();
        let d = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        t.record(Some("cpts-1"), "44", d, true, false);
        t.record(Some("cpts-1"), "44", d, true, true);
        t.record(None, "49", d, false, false);
        assert_eq!(t.pending(), 2);
        let m = t.take();
        assert_eq!(
            m[&("cpts-1".into(), "44".into(), d)],
            SearchCounts {
                searches: 2,
                no_result_base: 2,
                no_result_final: 1
            }
        );
        assert_eq!(m[&(NO_CPTS.into(), "49".into(), d)].searches, 1);
        assert_eq!(t.pending(), 0);
        t.restore(m.into_iter().collect());
        t.record(None, "49", d, false, false);
        assert_eq!(t.take()[&(NO_CPTS.into(), "49".into(), d)].searches, 2);
    }
}
