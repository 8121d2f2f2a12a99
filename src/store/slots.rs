//! A source's slots, replaced as one snapshot in one transaction.
//!
//! Rules kept here:
//! - a snapshot replaces the source's previous slots atomically (readers see old or new);
//! - slot ids are stable across snapshots (upsert on `(source_id, external_id)`), so an id an
//!   operator saw stays valid after a refresh;
//! - a refresh never touches operator state (`hold_id`, `held_until`, `appointment_id`): a held
//!   or booked slot is never turned back to free by a feed, and one that vanishes from its feed
//!   while held or booked is kept and marked `removed_from_feed_at` (reported), not deleted;
//! - a slot whose start has passed is history: kept when it leaves the feed;
//! - snapshots of one source are applied one after the other (PostgreSQL: the source row is
//!   locked; SQLite: one write transaction at a time);
//! - a slot's place and source are checked by the database: on PostgreSQL by triggers that
//!   keep what a foreign key `(source_id, place_id)` → `places (source_id, id)` guaranteed
//!   (the place exists and belongs to the slot's source; inserts checked once per statement,
//!   migration `2026-12-01-000003_slots_place_check`), on SQLite by the two keys `source_id`
//!   and `place_id`. A place is written before the slots that refer to it, in the same
//!   transaction.
//!
//! Two write paths: a source with no rows gets its rows inserted directly with ids taken
//! beforehand (`write_fresh`; other work, such as building the index entries, can run beside
//! the insert); a source with rows goes through a staging table and one upsert
//! (`write_slots`).

use super::schema::{places, slots, sources};
use super::{DbConn, StoreError, to_epoch};
use crate::db_run;
use crate::domain::slot::NormalizedFeed;
use diesel::prelude::*;
use diesel::upsert::excluded;
use std::collections::HashMap;

/// `INSERT … ON CONFLICT (source_id, place_key) DO UPDATE` for one row or a batch.
macro_rules! upsert_places {
    ($values:expr) => {
        diesel::insert_into(places::table)
            .values($values)
            .on_conflict((places::source_id, places::place_key))
            .do_update()
            .set((
                places::name.eq(excluded(places::name)),
                places::address.eq(excluded(places::address)),
                places::postcode.eq(excluded(places::postcode)),
                places::city.eq(excluded(places::city)),
                places::insee.eq(excluded(places::insee)),
                places::lat.eq(excluded(places::lat)),
                places::lon.eq(excluded(places::lon)),
                places::precision.eq(excluded(places::precision)),
                places::snapshot_seq.eq(excluded(places::snapshot_seq)),
            ))
    };
}

/// Rows per multi-row statement (well under both backends' bind-parameter limits).
const CHUNK: usize = 1000;

// `None` is written as NULL, not DEFAULT: SQLite has no DEFAULT in a multi-row VALUES, and
// diesel would otherwise fall back to one statement per row there.
#[derive(diesel::Insertable)]
#[diesel(table_name = places, treat_none_as_default_value = false)]
struct NewPlace<'a> {
    source_id: i64,
    place_key: &'a str,
    name: Option<&'a str>,
    address: Option<&'a str>,
    postcode: Option<&'a str>,
    city: Option<&'a str>,
    insee: Option<&'a str>,
    lat: f64,
    lon: f64,
    precision: &'a str,
    snapshot_seq: i64,
}

/// The feed's columns of a slot row (the operator-state columns are never written by a
/// feed), as staged before the upsert (see [`stage`]).
#[derive(diesel::Insertable)]
#[diesel(table_name = slots_stage, treat_none_as_default_value = false)]
struct NewSlot<'a> {
    source_id: i64,
    external_id: &'a str,
    place_id: i64,
    cpts_id: &'a str,
    start_at: i64,
    end_at: i64,
    feed_status: &'a str,
    practitioner_id: Option<&'a str>,
    practitioner_name: Option<&'a str>,
    profession: Option<&'a str>,
    specialty: Option<&'a str>,
    structure_kind: Option<&'a str>,
    structure_id: Option<&'a str>,
    structure_name: Option<&'a str>,
    modality: &'a str,
    appointment_type: Option<&'a str>,
    audience: i32,
    surnumeraire: bool,
    booking_url: Option<&'a str>,
    booking_phone: Option<&'a str>,
    capacity: i32,
    snapshot_seq: i64,
}

/// The same columns with the row id, written straight into `slots` when the source has no
/// rows yet (see [`write_fresh`]). A copy of [`NewSlot`]'s fields on purpose: an `id` plus an
/// embedded `NewSlot` (diesel's `#[diesel(embed)]`) does not compile with `COPY`
/// (`diesel::copy_from(..).from_insertable` takes flat insertables only; tried on diesel 2.3).
#[derive(diesel::Insertable)]
#[diesel(table_name = slots, treat_none_as_default_value = false)]
struct FreshSlot<'a> {
    id: i64,
    source_id: i64,
    external_id: &'a str,
    place_id: i64,
    cpts_id: &'a str,
    start_at: i64,
    end_at: i64,
    feed_status: &'a str,
    practitioner_id: Option<&'a str>,
    practitioner_name: Option<&'a str>,
    profession: Option<&'a str>,
    specialty: Option<&'a str>,
    structure_kind: Option<&'a str>,
    structure_id: Option<&'a str>,
    structure_name: Option<&'a str>,
    modality: &'a str,
    appointment_type: Option<&'a str>,
    audience: i32,
    surnumeraire: bool,
    booking_url: Option<&'a str>,
    booking_phone: Option<&'a str>,
    capacity: i32,
    snapshot_seq: i64,
}

impl<'a> FreshSlot<'a> {
    fn new(id: i64, s: &NewSlot<'a>) -> Self {
        FreshSlot {
            id,
            source_id: s.source_id,
            external_id: s.external_id,
            place_id: s.place_id,
            cpts_id: s.cpts_id,
            start_at: s.start_at,
            end_at: s.end_at,
            feed_status: s.feed_status,
            practitioner_id: s.practitioner_id,
            practitioner_name: s.practitioner_name,
            profession: s.profession,
            specialty: s.specialty,
            structure_kind: s.structure_kind,
            structure_id: s.structure_id,
            structure_name: s.structure_name,
            modality: s.modality,
            appointment_type: s.appointment_type,
            audience: s.audience,
            surnumeraire: s.surnumeraire,
            booking_url: s.booking_url,
            booking_phone: s.booking_phone,
            capacity: s.capacity,
            snapshot_seq: s.snapshot_seq,
        }
    }
}

/// A snapshot's slots go into this temporary table first (PostgreSQL: binary `COPY`; SQLite:
/// multi-row plain `INSERT`s), then into `slots`
/// in one `INSERT … SELECT … ON CONFLICT DO UPDATE`. Diesel never caches an upsert statement
/// (`ON CONFLICT DO UPDATE` is always prepared again), so upserting chunk by chunk meant
/// parsing and planning a 22 000-parameter statement a thousand times per million slots.
mod stage {
    diesel::table! {
        slots_stage (external_id) {
            source_id -> BigInt,
            external_id -> Text,
            place_id -> BigInt,
            cpts_id -> Text,
            start_at -> BigInt,
            end_at -> BigInt,
            feed_status -> Text,
            practitioner_id -> Nullable<Text>,
            practitioner_name -> Nullable<Text>,
            profession -> Nullable<Text>,
            specialty -> Nullable<Text>,
            structure_kind -> Nullable<Text>,
            structure_id -> Nullable<Text>,
            structure_name -> Nullable<Text>,
            modality -> Text,
            appointment_type -> Nullable<Text>,
            audience -> Integer,
            surnumeraire -> Bool,
            booking_url -> Nullable<Text>,
            booking_phone -> Nullable<Text>,
            capacity -> Integer,
            snapshot_seq -> BigInt,
        }
    }

    /// PostgreSQL: dropped at the end of the snapshot's transaction (commit or rollback).
    #[cfg(feature = "postgres")]
    pub const CREATE_PG: &str = "CREATE TEMPORARY TABLE slots_stage (
        source_id BIGINT NOT NULL, external_id TEXT NOT NULL, place_id BIGINT NOT NULL,
        cpts_id TEXT NOT NULL, start_at BIGINT NOT NULL, end_at BIGINT NOT NULL,
        feed_status TEXT NOT NULL, practitioner_id TEXT, practitioner_name TEXT,
        profession TEXT, specialty TEXT, structure_kind TEXT, structure_id TEXT,
        structure_name TEXT, modality TEXT NOT NULL, appointment_type TEXT,
        audience INTEGER NOT NULL, surnumeraire BOOLEAN NOT NULL, booking_url TEXT,
        booking_phone TEXT, capacity INTEGER NOT NULL, snapshot_seq BIGINT NOT NULL
    ) ON COMMIT DROP";

    /// SQLite (no `ON COMMIT DROP`): created inside the transaction (a rollback removes it),
    /// dropped before the commit.
    #[cfg(feature = "sqlite")]
    pub const CREATE_SQLITE: &str = "DROP TABLE IF EXISTS temp.slots_stage;
    CREATE TEMPORARY TABLE slots_stage (
        source_id BIGINT NOT NULL, external_id TEXT NOT NULL, place_id BIGINT NOT NULL,
        cpts_id TEXT NOT NULL, start_at BIGINT NOT NULL, end_at BIGINT NOT NULL,
        feed_status TEXT NOT NULL, practitioner_id TEXT, practitioner_name TEXT,
        profession TEXT, specialty TEXT, structure_kind TEXT, structure_id TEXT,
        structure_name TEXT, modality TEXT NOT NULL, appointment_type TEXT,
        audience INTEGER NOT NULL, surnumeraire BOOLEAN NOT NULL, booking_url TEXT,
        booking_phone TEXT, capacity INTEGER NOT NULL, snapshot_seq BIGINT NOT NULL
    )";

    #[cfg(feature = "sqlite")]
    pub const DROP_SQLITE: &str = "DROP TABLE temp.slots_stage";

    const COLUMNS: &str = "source_id, external_id, place_id, cpts_id, start_at, end_at, \
        feed_status, practitioner_id, practitioner_name, profession, specialty, structure_kind, \
        structure_id, structure_name, modality, appointment_type, audience, surnumeraire, \
        booking_url, booking_phone, capacity, snapshot_seq";

    /// The staged rows upserted: the feed's columns only (operator state is never in the update
    /// list), `removed_from_feed_at` cleared.
    pub fn upsert() -> String {
        let updated: Vec<String> = COLUMNS
            .split(',')
            .map(str::trim)
            .filter(|c| !matches!(*c, "source_id" | "external_id"))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        format!(
            "INSERT INTO slots ({COLUMNS}) SELECT {COLUMNS} FROM slots_stage WHERE true \
             ON CONFLICT (source_id, external_id) DO UPDATE SET {}, removed_from_feed_at = NULL \
             RETURNING external_id, id",
            updated.join(", ")
        )
    }

    #[derive(diesel::QueryableByName)]
    pub struct Written {
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub external_id: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pub id: i64,
    }
}
use stage::slots_stage;

/// Upserts the slot rows; returns `(external_id, id)` of each.
fn write_slots(conn: &mut DbConn, rows: &[NewSlot<'_>]) -> Result<Vec<(String, i64)>, StoreError> {
    match conn {
        #[cfg(feature = "sqlite")]
        DbConn::Sqlite(c) => {
            use diesel::connection::SimpleConnection;
            let c: &mut diesel::SqliteConnection = c;
            c.batch_execute(stage::CREATE_SQLITE)?;
            // Plain inserts (no ON CONFLICT: SQLite runs them without index lookups), one row
            // per statement: see `write_fresh`.
            for row in rows {
                diesel::insert_into(slots_stage::table)
                    .values(row)
                    .execute(c)?;
            }
            let written: Vec<stage::Written> = diesel::sql_query(stage::upsert()).load(c)?;
            c.batch_execute(stage::DROP_SQLITE)?;
            Ok(written.into_iter().map(|w| (w.external_id, w.id)).collect())
        }
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => {
            use diesel::connection::SimpleConnection;
            let c: &mut diesel::PgConnection = c;
            // Two statements carry the whole snapshot: they get a bound fit for a million
            // rows instead of the per-statement default (this transaction only).
            c.batch_execute("SET LOCAL statement_timeout = '600s'")?;
            c.batch_execute(stage::CREATE_PG)?;
            diesel::copy_from(slots_stage::table)
                .from_insertable(rows)
                .execute(c)?;
            let written: Vec<stage::Written> = diesel::sql_query(stage::upsert()).load(c)?;
            Ok(written.into_iter().map(|w| (w.external_id, w.id)).collect())
        }
    }
}

/// Inserts the slot rows of a source that has none (its first snapshot, or one after an
/// empty feed): no staging table, no conflict to resolve, no previous row to compare. The ids
/// are taken first (PostgreSQL: from the column's sequence; SQLite: above the table's
/// `AUTOINCREMENT` high-water mark, which the write lock of this transaction keeps ours), so
/// the rows go in by `COPY` / plain multi-row `INSERT` and nothing is read back.
/// `beside` runs on another thread while the rows are written, with the ids of everything the
/// snapshot writes. Returns `external_id → id` and what `beside` returned.
fn write_fresh<T: Send>(
    conn: &mut DbConn,
    rows: &[NewSlot<'_>],
    places: &HashMap<String, i64>,
    beside: &WhileWriting<'_, T>,
) -> Result<(HashMap<String, i64>, T), StoreError> {
    if rows.is_empty() {
        let ids = WrittenIds {
            places: places.clone(),
            slots: HashMap::new(),
        };
        let extra = beside(&ids);
        return Ok((ids.slots, extra));
    }
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let ids: Vec<i64> = match conn {
        #[cfg(feature = "sqlite")]
        DbConn::Sqlite(c) => {
            #[derive(diesel::QueryableByName)]
            struct Top {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                top: i64,
            }
            let top: Top = diesel::sql_query(
                "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'slots'), 0), \
                 COALESCE((SELECT max(id) FROM slots), 0)) AS top",
            )
            .get_result(&mut **c)?;
            (top.top + 1..=top.top + n).collect()
        }
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => {
            use diesel::connection::SimpleConnection;
            c.batch_execute("SET LOCAL statement_timeout = '600s'")?;
            // One array, not a million rows (reading the ids row by row took longer than the
            // sequence took to give them), and the sequence looked up once, not per id
            // (`OFFSET 0` keeps the planner from inlining the look-up into every row: 4.2 s
            // instead of 0.7 s for a million ids).
            diesel::sql_query(
                "SELECT array_agg(nextval(q.seq)) AS ids \
                 FROM (SELECT pg_get_serial_sequence('slots', 'id')::regclass AS seq OFFSET 0) q, \
                 generate_series(1::bigint, $1)",
            )
            .bind::<diesel::sql_types::BigInt, _>(n)
            .get_result::<NextIds>(&mut **c)?
            .ids
        }
    };
    if ids.len() != rows.len() {
        return Err(StoreError::Other(anyhow::anyhow!(
            "{} row ids for {} slots",
            ids.len(),
            rows.len()
        )));
    }
    tracing::debug!(n, "snapshot: row ids taken");
    let fresh: Vec<FreshSlot<'_>> = rows
        .iter()
        .zip(&ids)
        .map(|(r, &id)| FreshSlot::new(id, r))
        .collect();
    // Every id is known now: `beside` works on another core while the database takes the rows.
    std::thread::scope(|scope| {
        let side = std::thread::Builder::new()
            .name("snapshot-side".into())
            .spawn_scoped(scope, || {
                let ids = WrittenIds {
                    places: places.clone(),
                    slots: rows
                        .iter()
                        .zip(&ids)
                        .map(|(r, &id)| (r.external_id.to_string(), id))
                        .collect(),
                };
                let extra = beside(&ids);
                (ids.slots, extra)
            })
            .map_err(|e| StoreError::Other(e.into()))?;
        let copied = copy_fresh(conn, &fresh);
        let side = side
            .join()
            .map_err(|_| StoreError::Other(anyhow::anyhow!("the work beside the copy panicked")));
        copied?;
        side
    })
}

/// The rows of [`write_fresh`], ids included, into `slots`.
fn copy_fresh(conn: &mut DbConn, fresh: &[FreshSlot<'_>]) -> Result<(), StoreError> {
    match conn {
        #[cfg(feature = "sqlite")]
        DbConn::Sqlite(c) => {
            let c: &mut diesel::SqliteConnection = c;
            // One row per statement: diesel keeps a single-row `INSERT` prepared, so each row
            // is a bind and a step. A 1 000-row `VALUES` was prepared again for every chunk
            // (diesel does not cache a statement built from a slice) and SQLite compiles it as
            // a compound of 1 000 selects: 23 µs per row in all, against 3.5 µs for the same
            // rows inserted by SQLite itself (`INSERT … SELECT`).
            for row in fresh {
                diesel::insert_into(slots::table).values(row).execute(c)?;
            }
        }
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => {
            let c: &mut diesel::PgConnection = c;
            diesel::copy_from(slots::table)
                .from_insertable(fresh)
                .execute(c)?;
        }
    }
    Ok(())
}

#[cfg(feature = "postgres")]
#[derive(diesel::QueryableByName)]
struct NextIds {
    #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::BigInt>)]
    ids: Vec<i64>,
}

/// What a snapshot changed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SnapshotOutcome {
    pub seq: i64,
    pub inserted: u64,
    pub updated: u64,
    pub removed: u64,
    /// External ids of slots that left the feed while held or booked (kept, reported).
    pub kept_taken: Vec<String>,
    /// Row ids of what was written, so that the index can be built from the feed itself.
    #[serde(skip)]
    pub ids: WrittenIds,
}

/// Row ids of the places and slots a snapshot wrote (every row it wrote carries its `seq`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrittenIds {
    /// `place_key` → `places.id`.
    pub places: HashMap<String, i64>,
    /// `external_id` → `slots.id`.
    pub slots: HashMap<String, i64>,
}

/// Work done beside the write of a first snapshot (see [`replace_snapshot_beside`]).
pub type WhileWriting<'a, T> = dyn Fn(&WrittenIds) -> T + Sync + 'a;

/// Replaces the slots of `source_id` by `feed` in one write transaction. `deleted` are ids the
/// feed explicitly withdrew (`entered-in-error`). `report` builds the JSON report to store with
/// the outcome (it sees the final counts). When the source has no rows yet (its first
/// snapshot: every id is known before the rows go in), `beside` runs on another thread while
/// the slot rows are written, with the ids the snapshot writes; what it returns comes back with
/// the outcome (`None` when the source had rows: nothing ran beside).
#[allow(clippy::too_many_arguments)]
pub fn replace_snapshot_beside<T: Send>(
    conn: &mut DbConn,
    source_id: i64,
    cpts_id: &str,
    feed: &NormalizedFeed,
    deleted: &[String],
    now: chrono::DateTime<chrono::Utc>,
    report: &dyn Fn(&SnapshotOutcome) -> String,
    beside: &WhileWriting<'_, T>,
) -> Result<(SnapshotOutcome, Option<T>), StoreError> {
    let now_s = to_epoch(now);
    let new_places: Vec<NewPlace<'_>> = feed
        .places
        .iter()
        .map(|p| NewPlace {
            source_id,
            place_key: &p.key,
            name: p.name.as_deref(),
            address: p.address.as_deref(),
            postcode: p.postcode.as_ref().map(|x| x.as_str()),
            city: p.city.as_deref(),
            insee: p.insee.as_ref().map(|x| x.as_str()),
            lat: p.position.lat,
            lon: p.position.lon,
            precision: p.precision.as_str(),
            snapshot_seq: 0,
        })
        .collect();
    let deleted: std::collections::HashSet<&str> = deleted.iter().map(String::as_str).collect();

    // SQLite: a page cache that holds the indexes a large snapshot touches, for this
    // transaction only (with the default 2 MB, pages are spilled and read back again and
    // again). Durability is unchanged.
    sqlite_cache_kib(conn, 512 * 1024)?;
    let result = super::write_tx(conn, |conn| {
        let lap = std::time::Instant::now();
        // Snapshots of one source are serialised: SQLite's write transaction already is one
        // at a time; on PostgreSQL the source row is locked, so that two concurrent uploads
        // never take the same `seq` nor both the first-snapshot path (the second would fail
        // on the unique key instead of waiting and updating).
        let last = sources::table.find(source_id).select(sources::snapshot_seq);
        let seq: i64 = match &mut *conn {
            #[cfg(feature = "sqlite")]
            DbConn::Sqlite(c) => last.first::<i64>(&mut **c)?,
            #[cfg(feature = "postgres")]
            DbConn::Postgres(c) => last.for_no_key_update().first::<i64>(&mut **c)?,
        } + 1;
        // Places: upsert, then map key → id.
        let mut place_ids: HashMap<String, i64> = HashMap::with_capacity(new_places.len());
        for chunk in new_places.chunks(CHUNK) {
            let rows: Vec<NewPlace<'_>> = chunk
                .iter()
                .map(|p| NewPlace {
                    snapshot_seq: seq,
                    ..*p
                })
                .collect();
            let ids: Vec<(String, i64)> = db_run!(&mut *conn, |c| upsert_places!(&rows)
                .returning((places::place_key, places::id))
                .get_results(c))?;
            place_ids.extend(ids);
        }

        tracing::debug!(
            ms = lap.elapsed().as_millis() as u64,
            "snapshot: places written"
        );
        let before: i64 = db_run!(&mut *conn, |c| slots::table
            .filter(slots::source_id.eq(source_id))
            .count()
            .get_result(c))?;
        let mut rows: Vec<NewSlot<'_>> = feed
            .slots
            .iter()
            .filter(|s| !deleted.contains(s.external_id.as_str()))
            .map(|s| {
                let pr = s.practitioner.as_ref();
                let st = s.structure.as_ref();
                Ok(NewSlot {
                    source_id,
                    external_id: &s.external_id,
                    place_id: *place_ids.get(&*s.place_key).ok_or_else(|| {
                        StoreError::Other(anyhow::anyhow!(
                            "slot {} names unknown place {}",
                            s.external_id,
                            s.place_key
                        ))
                    })?,
                    cpts_id,
                    start_at: to_epoch(s.start),
                    end_at: to_epoch(s.end),
                    feed_status: s.status.as_str(),
                    practitioner_id: pr.and_then(|p| p.national_id.as_deref()),
                    practitioner_name: pr.and_then(|p| p.name.as_deref()),
                    profession: pr.and_then(|p| p.profession.as_deref()),
                    specialty: pr.and_then(|p| p.specialty.as_deref()),
                    structure_kind: st.map(|x| x.kind.code()),
                    structure_id: st.and_then(|x| x.national_id.as_deref()),
                    structure_name: st.and_then(|x| x.name.as_deref()),
                    modality: s.modality.code(),
                    appointment_type: s.appointment_type.map(|a| a.code()),
                    audience: i32::from(s.audience.0),
                    surnumeraire: s.surnumeraire,
                    booking_url: s.booking_url.as_deref(),
                    booking_phone: s.booking_phone.as_deref(),
                    capacity: i32::try_from(s.capacity).unwrap_or(i32::MAX),
                    snapshot_seq: seq,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        // In key order, the unique index on `(source_id, external_id)` is filled page after
        // page instead of at random places: a million rows inserted next to another million
        // took 68 s on PostgreSQL (128 MB of shared buffers) in random order, 11 s in key
        // order (BENCHMARKS.md). Byte order is the `C` collation's; another one only makes
        // the gain smaller.
        rows.sort_unstable_by(|a, b| a.external_id.cmp(b.external_id));
        let ((slot_ids, inserted, removed, kept_taken), extra) = if before == 0 {
            let (written, extra) = replace_none(conn, source_id, seq, &rows, &place_ids, beside)?;
            (written, Some(extra))
        } else {
            (
                replace_existing(conn, source_id, seq, now_s, before, &rows)?,
                None,
            )
        };
        tracing::debug!(
            ms = lap.elapsed().as_millis() as u64,
            "snapshot: slots written, vanished handled"
        );
        let written = slot_ids.len() as u64;
        let outcome = SnapshotOutcome {
            seq,
            inserted,
            updated: written.saturating_sub(inserted),
            removed,
            kept_taken,
            ids: WrittenIds {
                places: place_ids,
                slots: slot_ids,
            },
        };
        let report_json = report(&outcome);
        db_run!(&mut *conn, |c| diesel::update(
            sources::table.find(source_id)
        )
        .set((
            sources::snapshot_seq.eq(seq),
            sources::last_attempt_at.eq(now_s),
            sources::last_success_at.eq(now_s),
            sources::last_error.eq(None::<String>),
            sources::last_report.eq(report_json),
        ))
        .execute(c))?;
        Ok((outcome, extra))
    });
    let restored = sqlite_cache_kib(conn, SQLITE_DEFAULT_CACHE_KIB);
    let written = result?;
    restored?;
    Ok(written)
}

/// What the slot rows of a snapshot did: `(external_id → id, inserted, removed, kept_taken)`.
type SlotsWritten = (HashMap<String, i64>, u64, u64, Vec<String>);

/// The slots of a source that has none (`before == 0`): nothing to update, nothing can have
/// vanished, no row holds operator state.
fn replace_none<T: Send>(
    conn: &mut DbConn,
    source_id: i64,
    seq: i64,
    rows: &[NewSlot<'_>],
    places: &HashMap<String, i64>,
    beside: &WhileWriting<'_, T>,
) -> Result<(SlotsWritten, T), StoreError> {
    let (slot_ids, extra) = write_fresh(conn, rows, places, beside)?;
    // Places of an earlier snapshot: no slot of the source refers to them any more.
    db_run!(&mut *conn, |c| diesel::delete(
        places::table
            .filter(places::source_id.eq(source_id))
            .filter(places::snapshot_seq.lt(seq)),
    )
    .execute(c))?;
    let inserted = slot_ids.len() as u64;
    Ok(((slot_ids, inserted, 0, Vec::new()), extra))
}

/// The slots of a source that has `before` rows: upserted, then the rows the snapshot did not
/// write are handled (see the module's rules).
fn replace_existing(
    conn: &mut DbConn,
    source_id: i64,
    seq: i64,
    now_s: i64,
    before: i64,
    rows: &[NewSlot<'_>],
) -> Result<SlotsWritten, StoreError> {
    let slot_ids: HashMap<String, i64> = write_slots(conn, rows)?.into_iter().collect();
    let after: i64 = db_run!(&mut *conn, |c| slots::table
        .filter(slots::source_id.eq(source_id))
        .count()
        .get_result(c))?;
    let inserted = (after - before).max(0) as u64;

    // Vanished future slots: kept and marked when held or booked, deleted otherwise.
    // Vanished slots whose start has passed are history (offered, then gone): kept for
    // the computed statistics; the index only reads slots that have not ended.
    let vanished = slots::source_id
        .eq(source_id)
        .and(slots::snapshot_seq.lt(seq))
        .and(slots::start_at.gt(now_s));
    let taken = slots::appointment_id.is_not_null().or(slots::hold_id
        .is_not_null()
        .and(slots::held_until.gt(now_s)));
    let kept_taken: Vec<String> = db_run!(&mut *conn, |c| {
        let ids: Vec<String> = slots::table
            .filter(vanished)
            .filter(taken)
            .select(slots::external_id)
            .load(c)?;
        diesel::update(
            slots::table
                .filter(vanished)
                .filter(taken)
                .filter(slots::removed_from_feed_at.is_null()),
        )
        .set(slots::removed_from_feed_at.eq(now_s))
        .execute(c)?;
        Ok::<_, diesel::result::Error>(ids)
    })?;
    let removed = db_run!(&mut *conn, |c| diesel::delete(
        slots::table
            .filter(vanished)
            .filter(diesel::dsl::not(taken))
    )
    .execute(c))? as u64;
    // Places the snapshot did not write and no slot refers to any more. Written per backend:
    // PostgreSQL runs `NOT IN (subquery)` over a million slots as a plain subplan (one scan
    // per old place), `NOT EXISTS` as one hash anti-join; SQLite has no index on `place_id`
    // to run `NOT EXISTS` with, and builds one for `NOT IN`.
    let unused_places = match conn.backend() {
        super::Backend::Sqlite => {
            "DELETE FROM places WHERE source_id = ?1 AND snapshot_seq < ?2 \
             AND id NOT IN (SELECT place_id FROM slots WHERE source_id = ?1)"
        }
        super::Backend::Postgres => {
            "DELETE FROM places WHERE source_id = $1 AND snapshot_seq < $2 \
             AND NOT EXISTS (SELECT 1 FROM slots WHERE slots.place_id = places.id)"
        }
    };
    db_run!(&mut *conn, |c| diesel::sql_query(unused_places)
        .bind::<diesel::sql_types::BigInt, _>(source_id)
        .bind::<diesel::sql_types::BigInt, _>(seq)
        .execute(c))?;
    Ok((slot_ids, inserted, removed, kept_taken))
}

/// SQLite's default page cache (`PRAGMA cache_size = -2000`).
const SQLITE_DEFAULT_CACHE_KIB: i64 = 2000;

/// Sets the page cache of a SQLite connection (no-op on PostgreSQL).
fn sqlite_cache_kib(conn: &mut DbConn, kib: i64) -> Result<(), StoreError> {
    match conn {
        #[cfg(feature = "sqlite")]
        DbConn::Sqlite(c) => {
            use diesel::connection::SimpleConnection;
            // `temp` holds the staging table.
            c.batch_execute(&format!(
                "PRAGMA main.cache_size = -{kib}; PRAGMA temp.cache_size = -{kib};"
            ))?;
        }
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => {}
    }
    Ok(())
}

/// A place row, as read to build the index.
#[derive(Debug, Clone, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = places)]
pub struct PlaceRow {
    pub id: i64,
    pub source_id: i64,
    pub name: Option<String>,
    pub address: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    pub insee: Option<String>,
    pub lat: f64,
    pub lon: f64,
    pub precision: String,
}

/// A slot row, as read to build the index.
#[derive(Debug, Clone, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = slots)]
pub struct SlotRow {
    pub id: i64,
    pub source_id: i64,
    pub external_id: String,
    pub place_id: i64,
    pub start_at: i64,
    pub end_at: i64,
    pub feed_status: String,
    pub practitioner_id: Option<String>,
    pub practitioner_name: Option<String>,
    pub profession: Option<String>,
    pub specialty: Option<String>,
    pub structure_kind: Option<String>,
    pub structure_id: Option<String>,
    pub structure_name: Option<String>,
    pub modality: String,
    pub appointment_type: Option<String>,
    pub audience: i32,
    pub surnumeraire: bool,
    pub booking_url: Option<String>,
    pub booking_phone: Option<String>,
    pub capacity: i32,
    pub held_until: Option<i64>,
    pub appointment_id: Option<i64>,
    pub removed_from_feed_at: Option<i64>,
}

/// Places and slots of one source (or all), slots ending after `now`, ordered by start.
pub fn load_for_index(
    conn: &mut DbConn,
    source_id: Option<i64>,
    now: i64,
) -> Result<(Vec<PlaceRow>, Vec<SlotRow>), StoreError> {
    Ok(db_run!(conn, |c| {
        let mut pq = places::table.select(PlaceRow::as_select()).into_boxed();
        let mut sq = slots::table
            .filter(slots::end_at.gt(now))
            .select(SlotRow::as_select())
            .order(slots::start_at)
            .into_boxed();
        if let Some(id) = source_id {
            pq = pq.filter(places::source_id.eq(id));
            sq = sq.filter(slots::source_id.eq(id));
        }
        Ok::<_, diesel::result::Error>((pq.load(c)?, sq.load(c)?))
    })?)
}

/// The source's places, the rows a snapshot did not write, the taken rows it wrote.
pub type IndexExtras = (Vec<PlaceRow>, Vec<SlotRow>, Vec<SlotRow>);

/// What the index needs of one source besides the snapshot just written (`seq`): the places,
/// the rows the snapshot did not write that have not ended (history still running, held or
/// booked slots that left the feed), and the operator state of the rows it wrote.
pub fn index_extras(
    conn: &mut DbConn,
    source_id: i64,
    seq: i64,
    now: i64,
) -> Result<IndexExtras, StoreError> {
    Ok(db_run!(conn, |c| {
        let places = places::table
            .filter(places::source_id.eq(source_id))
            .select(PlaceRow::as_select())
            .load(c)?;
        // One pass over the source's rows for both (there is no index to find either).
        let rows: Vec<(SlotRow, i64)> = slots::table
            .filter(slots::source_id.eq(source_id))
            .filter(slots::end_at.gt(now))
            .filter(
                slots::snapshot_seq
                    .lt(seq)
                    .or(slots::snapshot_seq.eq(seq).and(
                        slots::appointment_id
                            .is_not_null()
                            .or(slots::held_until.is_not_null()),
                    )),
            )
            .select((SlotRow::as_select(), slots::snapshot_seq))
            .load(c)?;
        let (mut kept, mut taken) = (Vec::new(), Vec::new());
        for (row, row_seq) in rows {
            if row_seq < seq {
                kept.push(row);
            } else {
                taken.push(row);
            }
        }
        Ok::<_, diesel::result::Error>((places, kept, taken))
    })?)
}

/// The CPTS of each slot of `ids` (slots that no longer exist are left out).
pub fn cpts_of(conn: &mut DbConn, ids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, String)> = db_run!(conn, |c| slots::table
        .filter(slots::id.eq_any(ids))
        .select((slots::id, slots::cpts_id))
        .load(c))?;
    Ok(rows.into_iter().collect())
}
