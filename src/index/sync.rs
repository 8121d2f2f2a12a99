//! Cross-node sync: brings this node's index up to the database's committed state, so that
//! several nodes sharing one database show the same supply ("a held slot vanishes from every
//! other search"). Each node applies its own writes at once; what the other nodes (or the
//! command line) commit reaches it through [`sync_once`], run every `sync_interval_ms` by
//! `tasks::spawn_index_sync`.
//!
//! Rules kept here:
//! - **snapshots**: a source whose committed `snapshot_seq` is above the one the index shows
//!   ([`SlotIndex::source_seq`]) is reloaded from the database ([`load::reload_source`]), under
//!   the index's reload guard and checked again there, so a snapshot this node installed itself
//!   is never reloaded a second time and the index never goes back to an older snapshot; a
//!   source this node is storing a snapshot of is skipped until that snapshot is installed
//!   ([`SlotIndex::storing`]: the sync would otherwise read it back while it is installed from
//!   the feed — 11 s instead of 0.3 s for a million slots on SQLite). New
//!   sources appear with their first snapshot (sequence 0 has nothing to show); sources are
//!   never deleted, and their name, CPTS and freshness rule never change after creation;
//! - **freshness**: a source's committed `last_success_at` (a 304 confirmation or a snapshot on
//!   another node) is carried to its [`super::SourceMeta`] when later than the index's;
//! - **operator state**: every hold, confirmation, release, expiry and outcome writes an
//!   `audit_events` row in its own transaction. The rows above the last one seen name the slots
//!   to look at; their **current** state is then read from `slots` (`appointment_id`,
//!   `held_until`) and set in the overlay ([`SlotIndex::mark_taken`] / [`SlotIndex::mark_free`]).
//!   Reading the state instead of replaying the events makes the order of events irrelevant and
//!   every application idempotent: applying a row twice, or a row this node wrote itself, sets
//!   what is already there;
//! - **look-back**: on PostgreSQL an identity value is taken when the row is inserted, not when
//!   it commits, so a row with a lower id can become visible after a higher one was read. An id
//!   missing below the highest one seen is kept as a *gap* for [`LOOK_BACK_S`] seconds and the
//!   rows from the oldest open gap up are read again each tick (only those filling a gap are
//!   applied). Every statement that writes an audit row commits right after it, so 60 s is
//!   ample; an id still missing then was rolled back. On SQLite writers are serialised and ids
//!   are never out of commit order: gaps never open;
//! - **cost**: with nothing changed and no open gap a tick is two small queries — the sources
//!   (tens of rows) and `audit_events WHERE id > last` on the primary key, which finds nothing;
//! - **this node's own changes win over a round's read**: a hold, release or booking this node
//!   commits and marks while a round is reading is newer than what the round read, so the round
//!   leaves that slot alone and reads it again next tick ([`SlotIndex::sync_mark`]); without
//!   this, a round could show a slot this node had just held, until the next tick;
//! - the overlay may lag the database by one interval: it never decides a booking, the
//!   database does.

use super::{SlotIndex, load};
use crate::config::Settings;
use crate::db_run;
use crate::store::schema::{audit_events, slots, sources};
use crate::store::{DbConn, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;

/// How long an audit id missing below the highest one seen is looked for again, in seconds.
pub const LOOK_BACK_S: i64 = 60;

/// Open gaps kept at most (the oldest are given up first).
const MAX_GAPS: usize = 10_000;

/// Audit rows read per query.
const BATCH: i64 = 5_000;

/// Slot ids per `IN (…)` list.
const CHUNK: usize = 500;

/// Audit ids looked at when a node starts ([`SyncState::resume`]).
const TAIL: i64 = 1_000;

/// Where a node's sync stands in the audit trail. [`SyncState::default`] has seen nothing: its
/// first tick reads the whole trail (correct, but a node starts with [`SyncState::resume`]).
#[derive(Debug, Clone, Default)]
pub struct SyncState {
    /// The highest audit id seen.
    seen: i64,
    /// Audit ids below `seen` not seen yet → when they were first missed (epoch seconds).
    gaps: BTreeMap<i64, i64>,
    /// Slots to read again next tick: this node changed them while a round was reading.
    again: BTreeSet<i64>,
}

/// What one [`sync_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Sources reloaded because another node stored a later snapshot.
    pub reloaded: usize,
    /// Sources whose freshness was carried over.
    pub freshened: usize,
    /// Sources whose reload failed (logged; tried again next tick).
    pub failed: usize,
    /// Audit rows applied (new, or filling a gap).
    pub events: usize,
    /// Slots whose operator state was read and set.
    pub slots: usize,
}

impl SyncSummary {
    /// Whether the tick found anything to do.
    pub fn changed(&self) -> bool {
        *self != Self::default()
    }
}

impl SyncState {
    /// The state of a node about to build its index from the database: the trail up to its
    /// current end is in what the index will read, and the ids missing among its last
    /// [`TAIL`] rows may still commit, so they are open gaps from `now`.
    pub fn resume(conn: &mut DbConn, now: i64) -> Result<SyncState, StoreError> {
        let ids: Vec<i64> = db_run!(conn, |c| audit_events::table
            .select(audit_events::id)
            .order(audit_events::id.desc())
            .limit(TAIL)
            .load(c))?;
        let Some(&seen) = ids.first() else {
            return Ok(SyncState::default());
        };
        // The whole trail was read when it has fewer rows than asked: ids start at 1.
        let lowest = if (ids.len() as i64) < TAIL {
            1
        } else {
            ids[ids.len() - 1]
        };
        let present: BTreeSet<i64> = ids.into_iter().collect();
        let mut state = SyncState {
            seen,
            ..SyncState::default()
        };
        for id in lowest..seen {
            if !present.contains(&id) {
                state.gaps.insert(id, now);
            }
        }
        Ok(state)
    }

    /// The highest audit id seen.
    pub fn seen(&self) -> i64 {
        self.seen
    }

    /// Audit ids still looked for.
    pub fn open_gaps(&self) -> usize {
        self.gaps.len()
    }

    /// Notes audit row `id` as read; whether it was not seen before.
    fn note(&mut self, id: i64, now: i64) -> bool {
        if id > self.seen {
            let from = (self.seen + 1).max(id - MAX_GAPS as i64);
            for missing in from..id {
                self.gaps.insert(missing, now);
            }
            while self.gaps.len() > MAX_GAPS {
                self.gaps.pop_first();
            }
            self.seen = id;
            true
        } else {
            self.gaps.remove(&id).is_some()
        }
    }
}

/// Brings `index` up to the database's committed state (see the module's rules).
pub fn sync_once(
    conn: &mut DbConn,
    settings: &Settings,
    index: &SlotIndex,
    state: &mut SyncState,
    now: i64,
) -> Result<SyncSummary, StoreError> {
    let mut summary = SyncSummary::default();
    sync_operator_state(conn, index, state, now, &mut summary)?;
    sync_sources(conn, settings, index, now, &mut summary)?;
    Ok(summary)
}

/// Sources: later snapshots reloaded, later freshness carried over.
fn sync_sources(
    conn: &mut DbConn,
    settings: &Settings,
    index: &SlotIndex,
    now: i64,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, i64, Option<i64>)> = db_run!(conn, |c| sources::table
        .select((sources::id, sources::snapshot_seq, sources::last_success_at))
        .order(sources::id)
        .load(c))?;
    for (id, seq, last_success) in rows {
        if seq > index.source_seq(id) {
            if index.is_storing(id) {
                // This node is storing a snapshot of it and installs it itself; what the
                // database holds beyond it is read on a later tick.
                continue;
            }
            let _one_at_a_time = index.reload_guard();
            // A reload of this node (its own snapshot) may have installed it meanwhile.
            if seq <= index.source_seq(id) {
                continue;
            }
            match load::reload_source(conn, settings, index, id, now) {
                Ok(()) => summary.reloaded += 1,
                Err(e) => {
                    tracing::warn!(source = id, error = %e, "sync: source reload failed");
                    summary.failed += 1;
                }
            }
            continue;
        }
        if let Some(last) = last_success
            && let Some(meta) = index.load().sources.get(&id)
            && meta.last_success_at.fetch_max(last, Ordering::Relaxed) < last
        {
            summary.freshened += 1;
        }
    }
    Ok(())
}

/// Operator state: the slots named by audit rows not seen yet, set from their current rows.
fn sync_operator_state(
    conn: &mut DbConn,
    index: &SlotIndex,
    state: &mut SyncState,
    now: i64,
    summary: &mut SyncSummary,
) -> Result<(), StoreError> {
    state.gaps.retain(|_, missed| *missed > now - LOOK_BACK_S);
    let mut cursor = state
        .gaps
        .first_key_value()
        .map_or(state.seen, |(&gap, _)| (gap - 1).min(state.seen));
    let mut touched: BTreeSet<i64> = std::mem::take(&mut state.again);
    loop {
        let rows: Vec<(i64, Option<i64>)> = db_run!(&mut *conn, |c| audit_events::table
            .filter(audit_events::id.gt(cursor))
            .select((audit_events::id, audit_events::slot_id))
            .order(audit_events::id)
            .limit(BATCH)
            .load(c))?;
        let full = rows.len() as i64 == BATCH;
        for (id, slot) in rows {
            cursor = id;
            if state.note(id, now) {
                summary.events += 1;
                touched.extend(slot);
            }
        }
        if !full {
            break;
        }
    }
    let touched: Vec<i64> = touched.into_iter().collect();
    // This node's own changes from here on are newer than the rows read below.
    let generation = index.local_generation();
    for ids in touched.chunks(CHUNK) {
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = db_run!(&mut *conn, |c| slots::table
            .filter(slots::id.eq_any(ids))
            .select((slots::id, slots::appointment_id, slots::held_until))
            .load(c))?;
        let current: HashMap<i64, (Option<i64>, Option<i64>)> = rows
            .into_iter()
            .map(|(id, appt, until)| (id, (appt, until)))
            .collect();
        for &id in ids {
            // The same reading of a row as `store::bookings::taken_slots` and the start-up load.
            let until = match current.get(&id) {
                Some((Some(_), _)) => Some(i64::MAX),
                Some((None, Some(until))) if *until > now => Some(*until),
                // free, a lapsed hold, or a row gone with its snapshot
                _ => None,
            };
            if index.sync_mark(id, until, generation) {
                summary.slots += 1;
            } else {
                state.again.insert(id);
            }
        }
    }
    index.forget_local_marks(generation);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_out_of_order_open_a_gap_that_the_late_row_fills_once() {
        let mut s = SyncState::default();
        assert!(s.note(1, 100));
        assert!(s.note(4, 100), "2 and 3 are still in flight");
        assert_eq!(s.gaps.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert!(s.note(3, 101), "a late commit is applied");
        assert!(!s.note(3, 101), "once");
        assert!(!s.note(4, 101), "a row read again is not applied again");
        assert_eq!((s.seen(), s.open_gaps()), (4, 1));
    }

    #[test]
    fn a_jump_keeps_at_most_the_gap_cap() {
        let mut s = SyncState::default();
        assert!(s.note(3 * MAX_GAPS as i64, 0));
        assert_eq!(s.open_gaps(), MAX_GAPS);
        assert!(s.note(3 * MAX_GAPS as i64 + 5, 0));
        assert_eq!(s.open_gaps(), MAX_GAPS);
        assert_eq!(
            s.gaps.last_key_value().map(|(k, _)| *k),
            Some(3 * MAX_GAPS as i64 + 4)
        );
    }
}
