//! A source's slots, replaced as one snapshot in one transaction.
//!
//! Rules kept here:
//! - a snapshot replaces the source's previous slots atomically (readers see old or new);
//! - slot ids are stable across snapshots (a row is matched on `(source_id, external_id)`), so
//!   an id an operator saw stays valid after a refresh;
//! - a row the snapshot holds unchanged is not written (`snapshot_seq` is the last snapshot
//!   that wrote the row); a row that is not in the latest snapshot is marked
//!   `removed_from_feed_at` (or deleted, below), and that mark is how every reader tells it;
//! - a refresh never touches operator state (`hold_id`, `held_until`, `appointment_id`): a held
//!   or booked slot is never turned back to free by a feed, and one that vanishes from its feed
//!   while held or booked is kept and marked (reported), not deleted;
//! - a slot whose start has passed is history: kept (and marked) when it leaves the feed;
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
//! the insert); a source with rows has its rows' keys and fingerprints read and compared with
//! the snapshot in memory, and only what differs is written (`replace_existing`).

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

/// A slot row as the feed gives it (the operator-state columns are never written by a feed),
/// with its row id: the existing row's for a row the snapshot changes (staged, then written
/// over that row, see [`stage`]), one taken beforehand for a new row (see [`copy_fresh`]).
#[derive(Clone, Copy, diesel::Insertable)]
#[diesel(table_name = slots_stage, treat_none_as_default_value = false)]
struct NewSlot<'a> {
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
    feed_hash: i64,
}

/// The same columns, inserted into `slots` (a new row). A copy of [`NewSlot`]'s fields on
/// purpose: a derive targets one table, and an embedded struct (diesel's `#[diesel(embed)]`)
/// does not compile with `COPY` (`diesel::copy_from(..).from_insertable` takes flat
/// insertables only; tried on diesel 2.3). PostgreSQL's `COPY` only: SQLite inserts
/// [`NewSlot`]s (see [`sqlite_rows`]).
#[cfg(feature = "postgres")]
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
    feed_hash: i64,
}

#[cfg(feature = "postgres")]
impl<'a> From<&NewSlot<'a>> for FreshSlot<'a> {
    fn from(s: &NewSlot<'a>) -> Self {
        FreshSlot {
            id: s.id,
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
            feed_hash: s.feed_hash,
        }
    }
}

/// The fingerprint of what a feed says of a slot (every column it writes but the key and
/// `snapshot_seq`): the first 8 bytes of a SHA-256 over the columns, each tagged and
/// length-prefixed, so that no two different rows encode alike. A row whose fingerprint has
/// not changed is not written again. Changing this encoding makes every row look changed once
/// (one full rewrite per source), never the reverse.
fn feed_hash(s: &NewSlot<'_>, buf: &mut Vec<u8>) -> i64 {
    use sha2::{Digest, Sha256};
    fn text(buf: &mut Vec<u8>, v: Option<&str>) {
        match v {
            None => buf.push(0),
            Some(t) => {
                buf.push(1);
                buf.extend_from_slice(&(t.len() as u64).to_le_bytes());
                buf.extend_from_slice(t.as_bytes());
            }
        }
    }
    buf.clear();
    for n in [s.place_id, s.start_at, s.end_at] {
        buf.extend_from_slice(&n.to_le_bytes());
    }
    for n in [s.audience, s.capacity] {
        buf.extend_from_slice(&n.to_le_bytes());
    }
    buf.push(u8::from(s.surnumeraire));
    for t in [
        Some(s.cpts_id),
        Some(s.feed_status),
        s.practitioner_id,
        s.practitioner_name,
        s.profession,
        s.specialty,
        s.structure_kind,
        s.structure_id,
        s.structure_name,
        Some(s.modality),
        s.appointment_type,
        s.booking_url,
        s.booking_phone,
    ] {
        text(buf, t);
    }
    let digest = Sha256::digest(&buf[..]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

/// Sets every row's [`feed_hash`], on every core.
fn set_feed_hashes(rows: &mut [NewSlot<'_>]) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let per = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for part in rows.chunks_mut(per) {
            scope.spawn(move || {
                let mut buf = Vec::with_capacity(512);
                for r in part {
                    r.feed_hash = feed_hash(r, &mut buf);
                }
            });
        }
    });
}

/// The rows a snapshot changes go into this temporary table first (PostgreSQL: binary
/// `COPY`; SQLite: the prepared multi-row `INSERT`s of [`sqlite_rows`]), then one
/// `UPDATE … FROM` writes them over their rows — one set-wise statement instead of one per row.
mod stage {
    diesel::table! {
        slots_stage (id) {
            id -> BigInt,
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
            feed_hash -> BigInt,
        }
    }

    /// The staged columns (`id` first), as both backends declare them.
    const DECLARED: &str = "id BIGINT NOT NULL PRIMARY KEY, source_id BIGINT NOT NULL,
        external_id TEXT NOT NULL, place_id BIGINT NOT NULL,
        cpts_id TEXT NOT NULL, start_at BIGINT NOT NULL, end_at BIGINT NOT NULL,
        feed_status TEXT NOT NULL, practitioner_id TEXT, practitioner_name TEXT,
        profession TEXT, specialty TEXT, structure_kind TEXT, structure_id TEXT,
        structure_name TEXT, modality TEXT NOT NULL, appointment_type TEXT,
        audience INTEGER NOT NULL, surnumeraire BOOLEAN NOT NULL, booking_url TEXT,
        booking_phone TEXT, capacity INTEGER NOT NULL, snapshot_seq BIGINT NOT NULL,
        feed_hash BIGINT NOT NULL";

    /// PostgreSQL: dropped at the end of the snapshot's transaction (commit or rollback).
    #[cfg(feature = "postgres")]
    pub fn create_pg() -> String {
        format!("CREATE TEMPORARY TABLE slots_stage ({DECLARED}) ON COMMIT DROP")
    }

    /// SQLite (no `ON COMMIT DROP`): created inside the transaction (a rollback removes it),
    /// dropped before the commit.
    #[cfg(feature = "sqlite")]
    pub fn create_sqlite() -> String {
        format!(
            "DROP TABLE IF EXISTS temp.slots_stage; \
             CREATE TEMPORARY TABLE slots_stage ({DECLARED}) WITHOUT ROWID"
        )
    }

    #[cfg(feature = "sqlite")]
    pub const DROP_SQLITE: &str = "DROP TABLE temp.slots_stage";

    /// The staged rows written over their rows: the feed's columns only (operator state is
    /// never written by a feed), `removed_from_feed_at` cleared (the row is in the feed).
    pub fn update() -> String {
        let set: Vec<String> = DECLARED
            .split(',')
            .filter_map(|c| c.split_whitespace().next())
            .filter(|c| !matches!(*c, "id" | "source_id" | "external_id"))
            .map(|c| format!("{c} = s.{c}"))
            .collect();
        format!(
            "UPDATE slots SET {}, removed_from_feed_at = NULL FROM slots_stage s \
             WHERE slots.id = s.id",
            set.join(", ")
        )
    }
}
use stage::slots_stage;

/// SQLite: slot rows inserted `ROWS` to a statement that is prepared once per connection.
///
/// Diesel caches a prepared statement only when its type says which SQL it is: a single-row
/// `INSERT` is cached, a multi-row one built from a slice is not (its SQL depends on the
/// length), and its fixed-size-array form wants rows that borrow nothing. Each row then paid
/// for its own statement (diesel's binds, SQLite's statement start and `AUTOINCREMENT`
/// bookkeeping). [`Rows`](sqlite_rows::Rows) is that statement written out, its row count and
/// target table in its type, so diesel caches it; its column list and binds are those of
/// [`NewSlot`]'s derived `Insertable` (the rows borrow the feed as [`NewSlot`] does).
#[cfg(feature = "sqlite")]
mod sqlite_rows {
    use super::{NewSlot, StoreError, slots_stage};
    use diesel::insertable::InsertValues;
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::sqlite::Sqlite;
    use diesel::{Insertable, QueryResult, RunQueryDsl, SqliteConnection};

    /// Rows per statement (256 × 24 binds, under SQLite's 32 766).
    pub const ROWS: usize = 256;

    /// One row's columns and binds, as `NewSlot`'s `Insertable` gives them.
    type Values<'a> = <&'a NewSlot<'a> as Insertable<slots_stage::table>>::Values;

    /// `INSERT INTO slots` (`STAGE == false`) or `temp.slots_stage` of `N` rows (the two
    /// tables name these columns alike).
    pub struct Rows<'a, const STAGE: bool, const N: usize>([Values<'a>; N]);

    /// [`Rows`]'s statement, one per table and row count.
    pub struct RowsId<const STAGE: bool, const N: usize>;

    impl<const STAGE: bool, const N: usize> QueryId for Rows<'_, STAGE, N> {
        type QueryId = RowsId<STAGE, N>;
        const HAS_STATIC_QUERY_ID: bool = true;
    }

    impl<const STAGE: bool, const N: usize> QueryFragment<Sqlite> for Rows<'_, STAGE, N> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
            out.push_sql(if STAGE {
                "INSERT INTO temp.slots_stage ("
            } else {
                "INSERT INTO slots ("
            });
            if let Some(first) = self.0.first() {
                first.values.column_names(out.reborrow())?;
            }
            out.push_sql(") VALUES ");
            for (i, row) in self.0.iter().enumerate() {
                out.push_sql(if i == 0 { "(" } else { ", (" });
                row.values.walk_ast(out.reborrow())?;
                out.push_sql(")");
            }
            Ok(())
        }
    }

    impl<const STAGE: bool, const N: usize> RunQueryDsl<SqliteConnection> for Rows<'_, STAGE, N> {}

    /// Inserts `rows` into `slots` (`STAGE == false`) or `temp.slots_stage`: [`ROWS`] to a
    /// statement, the last few one by one (each shape prepared once per connection).
    pub fn insert<const STAGE: bool>(
        c: &mut SqliteConnection,
        rows: &[NewSlot<'_>],
    ) -> Result<(), StoreError> {
        let mut chunks = rows.chunks_exact(ROWS);
        for chunk in &mut chunks {
            let chunk: &[NewSlot<'_>; ROWS] = chunk.try_into().expect("chunks_exact");
            Rows::<STAGE, ROWS>(chunk.each_ref().map(Insertable::values)).execute(c)?;
        }
        for row in chunks.remainder() {
            Rows::<STAGE, 1>([row.values()]).execute(c)?;
        }
        Ok(())
    }
}

/// PostgreSQL: the statements of a snapshot each carry up to the whole feed; they get a bound
/// fit for a million rows instead of the per-statement default (this transaction only).
fn long_statements(conn: &mut DbConn) -> Result<(), StoreError> {
    match conn {
        #[cfg(feature = "sqlite")]
        DbConn::Sqlite(_) => {}
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => {
            use diesel::connection::SimpleConnection;
            c.batch_execute("SET LOCAL statement_timeout = '600s'")?;
        }
    }
    Ok(())
}

/// Writes the staged `rows` (each with its existing row id) over their rows.
fn update_changed(conn: &mut DbConn, rows: &[NewSlot<'_>]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    use diesel::connection::SimpleConnection;
    match conn {
        #[cfg(feature = "sqlite")]
        DbConn::Sqlite(c) => {
            let c: &mut diesel::SqliteConnection = c;
            c.batch_execute(&stage::create_sqlite())?;
            sqlite_rows::insert::<true>(c, rows)?;
            diesel::sql_query(stage::update()).execute(c)?;
            c.batch_execute(stage::DROP_SQLITE)?;
        }
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => {
            let c: &mut diesel::PgConnection = c;
            c.batch_execute(&stage::create_pg())?;
            diesel::copy_from(slots_stage::table)
                .from_insertable(rows)
                .execute(c)?;
            // Temporary tables are never analysed by autovacuum: without statistics the
            // planner cannot size the join.
            c.batch_execute("ANALYZE slots_stage")?;
            diesel::sql_query(stage::update()).execute(c)?;
        }
    }
    Ok(())
}

/// `n` new row ids: PostgreSQL from the column's sequence; SQLite above the table's
/// `AUTOINCREMENT` high-water mark, which the write lock of this transaction keeps ours.
fn take_ids(conn: &mut DbConn, n: usize) -> Result<Vec<i64>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = i64::try_from(n).unwrap_or(i64::MAX);
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
    if ids.len() as i64 != n {
        return Err(StoreError::Other(anyhow::anyhow!(
            "{} row ids for {n} slots",
            ids.len()
        )));
    }
    tracing::debug!(n, "snapshot: row ids taken");
    Ok(ids)
}

/// Runs `write` on this thread while `beside` runs on another with the ids of every slot of
/// the snapshot (`rows`, their ids set) and `had_rows`. Returns what `write` returned,
/// `external_id → id` and what `beside` returned.
fn while_writing<T: Send, R>(
    rows: &[NewSlot<'_>],
    places: &HashMap<String, i64>,
    had_rows: bool,
    beside: &WhileWriting<'_, T>,
    write: impl FnOnce() -> Result<R, StoreError>,
) -> Result<(R, HashMap<String, i64>, T), StoreError> {
    let t = std::time::Instant::now();
    std::thread::scope(|scope| {
        let side = std::thread::Builder::new()
            .name("snapshot-side".into())
            .spawn_scoped(scope, || {
                let ids = WrittenIds {
                    places: places.clone(),
                    slots: rows
                        .iter()
                        .map(|r| (r.external_id.to_string(), r.id))
                        .collect(),
                };
                let extra = beside(&ids, had_rows);
                tracing::debug!(
                    ms = t.elapsed().as_millis() as u64,
                    "snapshot: work beside done"
                );
                (ids.slots, extra)
            })
            .map_err(|e| StoreError::Other(e.into()))?;
        let written = write();
        tracing::debug!(
            ms = t.elapsed().as_millis() as u64,
            "snapshot: rows written"
        );
        let side = side
            .join()
            .map_err(|_| StoreError::Other(anyhow::anyhow!("the work beside the write panicked")));
        let written = written?;
        let (ids, extra) = side?;
        Ok((written, ids, extra))
    })
}

/// Inserts the slot rows of a source that has none (its first snapshot, or one after an
/// empty feed): no staging table, no previous row to compare. The ids are taken first
/// ([`take_ids`]), so the rows go in by `COPY` / plain `INSERT`s and nothing is read back;
/// `beside` works on another core meanwhile. Returns `external_id → id` and what `beside`
/// returned.
fn write_fresh<T: Send>(
    conn: &mut DbConn,
    rows: &mut [NewSlot<'_>],
    places: &HashMap<String, i64>,
    beside: &WhileWriting<'_, T>,
) -> Result<(HashMap<String, i64>, T), StoreError> {
    let ids = take_ids(conn, rows.len())?;
    for (r, id) in rows.iter_mut().zip(ids) {
        r.id = id;
    }
    let ((), ids, extra) = while_writing(rows, places, false, beside, || copy_fresh(conn, rows))?;
    Ok((ids, extra))
}

/// New rows, ids included, into `slots`.
fn copy_fresh(conn: &mut DbConn, rows: &[NewSlot<'_>]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match conn {
        #[cfg(feature = "sqlite")]
        DbConn::Sqlite(c) => sqlite_rows::insert::<false>(c, rows)?,
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => {
            let c: &mut diesel::PgConnection = c;
            let fresh: Vec<FreshSlot<'_>> = rows.iter().map(FreshSlot::from).collect();
            diesel::copy_from(slots::table)
                .from_insertable(&fresh)
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
    /// Rows of the source that the snapshot changed (or that came back to it).
    pub updated: u64,
    /// Rows of the source that the snapshot holds as they were (not written).
    pub unchanged: u64,
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

/// Work done beside the write of a snapshot (see [`replace_snapshot_beside`]); its second
/// argument tells whether the source had rows before the snapshot.
pub type WhileWriting<'a, T> = dyn Fn(&WrittenIds, bool) -> T + Sync + 'a;

/// Replaces the slots of `source_id` by `feed` in one write transaction. `deleted` are ids the
/// feed explicitly withdrew (`entered-in-error`). `report` builds the JSON report to store with
/// the outcome (it sees the final counts). Once every id is known (taken beforehand for new
/// rows, read for existing ones) and before the rows are written, `beside` runs on another
/// thread while they are, with the ids of every slot of the snapshot; what it returns comes
/// back with the outcome.
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
) -> Result<(SnapshotOutcome, T), StoreError> {
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
        long_statements(conn)?;
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
        let existing: Vec<ExistingRow> = db_run!(&mut *conn, |c| slots::table
            .filter(slots::source_id.eq(source_id))
            .select(ExistingRow::as_select())
            .load(c))?;
        let mut rows: Vec<NewSlot<'_>> = feed
            .slots
            .iter()
            .filter(|s| !deleted.contains(s.external_id.as_str()))
            .map(|s| {
                let pr = s.practitioner.as_ref();
                let st = s.structure.as_ref();
                Ok(NewSlot {
                    id: 0, // set when written
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
                    feed_hash: 0,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        set_feed_hashes(&mut rows);
        tracing::debug!(
            ms = lap.elapsed().as_millis() as u64,
            "snapshot: rows prepared"
        );
        // In key order, the unique index on `(source_id, external_id)` is filled page after
        // page instead of at random places: a million rows inserted next to another million
        // took 68 s on PostgreSQL (128 MB of shared buffers) in random order, 11 s in key
        // order (BENCHMARKS.md). Byte order is the `C` collation's; another one only makes
        // the gain smaller.
        rows.sort_unstable_by(|a, b| a.external_id.cmp(b.external_id));
        let (written, extra) = if existing.is_empty() {
            replace_none(conn, source_id, seq, &mut rows, &place_ids, beside)?
        } else {
            replace_existing(
                conn, source_id, seq, now_s, &existing, &mut rows, &place_ids, beside,
            )?
        };
        tracing::debug!(
            ms = lap.elapsed().as_millis() as u64,
            "snapshot: slots written, vanished handled"
        );
        let held = written.ids.len() as u64;
        let outcome = SnapshotOutcome {
            seq,
            inserted: written.inserted,
            updated: written.updated,
            unchanged: held.saturating_sub(written.inserted + written.updated),
            removed: written.removed,
            kept_taken: written.kept_taken,
            ids: WrittenIds {
                places: place_ids,
                slots: written.ids,
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

/// What the slot rows of a snapshot did.
#[derive(Debug, Default)]
struct SlotsWritten {
    /// `external_id` → row id of every slot of the snapshot.
    ids: HashMap<String, i64>,
    inserted: u64,
    /// Rows that existed and that the snapshot changed (or brought back to the feed).
    updated: u64,
    removed: u64,
    kept_taken: Vec<String>,
}

/// The slots of a source that has none: nothing to update, nothing can have
/// vanished, no row holds operator state.
fn replace_none<T: Send>(
    conn: &mut DbConn,
    source_id: i64,
    seq: i64,
    rows: &mut [NewSlot<'_>],
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
    let written = SlotsWritten {
        inserted: slot_ids.len() as u64,
        ids: slot_ids,
        ..SlotsWritten::default()
    };
    Ok((written, extra))
}

/// What a snapshot compares of a source's existing row.
#[derive(diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = slots)]
struct ExistingRow {
    id: i64,
    external_id: String,
    feed_hash: Option<i64>,
    start_at: i64,
    removed_from_feed_at: Option<i64>,
}

/// The slots of a source that has rows (`existing`). Their keys and fingerprints
/// ([`feed_hash`]) are compared with the snapshot's: only the rows the snapshot changes are
/// written (a daily push of an unchanged agenda writes nothing but the rows that left it), new
/// rows are inserted, and the rows it does not hold are handled (see the module's rules).
#[allow(clippy::too_many_arguments)]
fn replace_existing<T: Send>(
    conn: &mut DbConn,
    source_id: i64,
    seq: i64,
    now_s: i64,
    existing: &[ExistingRow],
    rows: &mut [NewSlot<'_>],
    places: &HashMap<String, i64>,
    beside: &WhileWriting<'_, T>,
) -> Result<(SlotsWritten, T), StoreError> {
    let lap = std::time::Instant::now();
    let mut by_key: HashMap<&str, &ExistingRow> = existing
        .iter()
        .map(|r| (r.external_id.as_str(), r))
        .collect();
    let (mut changed, mut new) = (Vec::new(), Vec::new());
    for (i, r) in rows.iter_mut().enumerate() {
        match by_key.remove(r.external_id) {
            None => new.push(i),
            Some(e) => {
                r.id = e.id;
                // A row that had left the feed is written too: its mark is cleared.
                if e.feed_hash != Some(r.feed_hash) || e.removed_from_feed_at.is_some() {
                    changed.push(*r);
                }
            }
        }
    }
    // What is left are the rows the snapshot does not hold.
    let vanished: Vec<i64> = by_key.values().map(|r| r.id).collect();
    let future: Vec<i64> = by_key
        .values()
        .filter(|r| r.start_at > now_s)
        .map(|r| r.id)
        .collect();
    drop(by_key);
    tracing::debug!(
        ms = lap.elapsed().as_millis() as u64,
        existing = existing.len(),
        changed = changed.len(),
        new = new.len(),
        vanished = vanished.len(),
        "snapshot: rows compared"
    );

    let ids = take_ids(conn, new.len())?;
    for (&i, id) in new.iter().zip(ids) {
        rows[i].id = id;
    }
    let fresh: Vec<NewSlot<'_>> = new.iter().map(|&i| rows[i]).collect();
    // Every id is known now: `beside` works on another core while the database is written.
    let (written, ids, extra) = while_writing(rows, places, true, beside, || {
        update_changed(conn, &changed)?;
        copy_fresh(conn, &fresh)?;
        tracing::debug!(
            ms = lap.elapsed().as_millis() as u64,
            "snapshot: changed and new rows written"
        );

        // Rows the snapshot does not hold: future ones are deleted unless held or booked (the
        // condition is checked again here: a hold may have come since they were read); the rest
        // — held or booked, or history (offered, then gone, kept for the computed statistics) —
        // are marked, and the mark is how every reader tells a row that left its feed.
        let taken = slots::appointment_id.is_not_null().or(slots::hold_id
            .is_not_null()
            .and(slots::held_until.gt(now_s)));
        let chunk = match conn.backend() {
            // SQLite: `IN (…)` lists of `CHUNK` ids; PostgreSQL takes one array.
            super::Backend::Sqlite => CHUNK,
            super::Backend::Postgres => usize::MAX,
        };
        let mut removed = 0u64;
        for ids in future.chunks(chunk) {
            removed += db_run!(&mut *conn, |c| diesel::delete(
                slots::table
                    .filter(slots::id.eq_any(ids))
                    .filter(diesel::dsl::not(taken))
            )
            .execute(c))? as u64;
        }
        let mut kept_taken: Vec<String> = Vec::new();
        for ids in vanished.chunks(chunk) {
            db_run!(&mut *conn, |c| diesel::update(
                slots::table
                    .filter(slots::id.eq_any(ids))
                    .filter(slots::removed_from_feed_at.is_null())
            )
            .set(slots::removed_from_feed_at.eq(now_s))
            .execute(c))?;
        }
        // The future ones still there are held or booked: reported.
        for ids in future.chunks(chunk) {
            kept_taken.extend(db_run!(&mut *conn, |c| slots::table
                .filter(slots::id.eq_any(ids))
                .select(slots::external_id)
                .load::<String>(c))?);
        }
        kept_taken.sort_unstable();
        tracing::debug!(
            ms = lap.elapsed().as_millis() as u64,
            removed,
            "snapshot: rows out of the feed handled"
        );
        // Places the snapshot did not write and no slot refers to any more (looked for only when
        // the snapshot left some place out: the look-up reads every row of the source). Written
        // per backend: PostgreSQL runs `NOT IN (subquery)` over a million slots as a plain
        // subplan (one scan per old place), `NOT EXISTS` as one hash anti-join; SQLite has no
        // index on `place_id` to run `NOT EXISTS` with, and builds one for `NOT IN`.
        let left_out: i64 = db_run!(&mut *conn, |c| places::table
            .filter(places::source_id.eq(source_id))
            .filter(places::snapshot_seq.lt(seq))
            .count()
            .get_result(c))?;
        if left_out > 0 {
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
        }
        Ok((removed, kept_taken))
    })?;
    let (removed, kept_taken) = written;
    let written = SlotsWritten {
        ids,
        inserted: new.len() as u64,
        updated: changed.len() as u64,
        removed,
        kept_taken,
    };
    Ok((written, extra))
}

/// SQLite's default page cache (`PRAGMA cache_size = -2000`).
const SQLITE_DEFAULT_CACHE_KIB: i64 = 2000;

/// Sets the page cache of a SQLite connection (no-op on PostgreSQL).
#[cfg_attr(not(feature = "sqlite"), allow(unused_variables))]
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

/// The source's places, the rows out of its feed, the taken rows of its feed.
pub type IndexExtras = (Vec<PlaceRow>, Vec<SlotRow>, Vec<SlotRow>);

/// What the index needs of one source besides the snapshot just written: the places, the rows
/// that are not in the feed and have not ended (history still running, held or booked slots
/// that left the feed: marked `removed_from_feed_at`), and the operator state of the rows of
/// the feed that are held or booked.
pub fn index_extras(
    conn: &mut DbConn,
    source_id: i64,
    now: i64,
) -> Result<IndexExtras, StoreError> {
    Ok(db_run!(conn, |c| {
        let places = places::table
            .filter(places::source_id.eq(source_id))
            .select(PlaceRow::as_select())
            .load(c)?;
        // One pass over the source's rows for both (there is no index to find either).
        let rows: Vec<SlotRow> = slots::table
            .filter(slots::source_id.eq(source_id))
            .filter(slots::end_at.gt(now))
            .filter(
                slots::removed_from_feed_at
                    .is_not_null()
                    .or(slots::appointment_id.is_not_null())
                    .or(slots::held_until.is_not_null()),
            )
            .select(SlotRow::as_select())
            .load(c)?;
        let (kept, taken) = rows
            .into_iter()
            .partition(|r| r.removed_from_feed_at.is_some());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> NewSlot<'static> {
        NewSlot {
            id: 7,
            source_id: 1,
            external_id: "a",
            place_id: 3,
            cpts_id: "cpts-nantes",
            start_at: 1_800_000_000,
            end_at: 1_800_001_200,
            feed_status: "free",
            practitioner_id: Some("810000000001"),
            practitioner_name: Some("Dr A"),
            profession: Some("10"),
            specialty: Some("SM54"),
            structure_kind: None,
            structure_id: None,
            structure_name: None,
            modality: "AMB",
            appointment_type: Some("ROUTINE"),
            audience: 1,
            surnumeraire: false,
            booking_url: Some("https://rdv.example/a"),
            booking_phone: Some("+33240000000"),
            capacity: 1,
            snapshot_seq: 4,
            feed_hash: 0,
        }
    }

    #[test]
    fn the_fingerprint_changes_with_every_column_a_feed_writes_and_only_with_those() {
        let mut buf = Vec::new();
        let base = row();
        let h = feed_hash(&base, &mut buf);
        // Not part of what the feed says of the slot: the row id, the key, the snapshot.
        let same = [
            NewSlot { id: 8, ..base },
            NewSlot {
                source_id: 2,
                ..base
            },
            NewSlot {
                external_id: "b",
                ..base
            },
            NewSlot {
                snapshot_seq: 5,
                ..base
            },
            NewSlot {
                feed_hash: 9,
                ..base
            },
        ];
        for r in &same {
            assert_eq!(feed_hash(r, &mut buf), h);
        }
        let changed = [
            NewSlot {
                place_id: 4,
                ..base
            },
            NewSlot {
                cpts_id: "cpts-reze",
                ..base
            },
            NewSlot {
                start_at: base.start_at + 60,
                ..base
            },
            NewSlot {
                end_at: base.end_at + 60,
                ..base
            },
            NewSlot {
                feed_status: "busy",
                ..base
            },
            NewSlot {
                practitioner_id: None,
                ..base
            },
            NewSlot {
                practitioner_name: Some("Dr B"),
                ..base
            },
            NewSlot {
                profession: Some("60"),
                ..base
            },
            NewSlot {
                specialty: None,
                ..base
            },
            NewSlot {
                structure_kind: Some("MSP"),
                ..base
            },
            NewSlot {
                structure_id: Some("1440000000"),
                ..base
            },
            NewSlot {
                structure_name: Some("MSP de Rezé"),
                ..base
            },
            NewSlot {
                modality: "HH",
                ..base
            },
            NewSlot {
                appointment_type: Some("WALKIN"),
                ..base
            },
            NewSlot {
                audience: 3,
                ..base
            },
            NewSlot {
                surnumeraire: true,
                ..base
            },
            NewSlot {
                booking_url: None,
                ..base
            },
            NewSlot {
                booking_phone: Some("+33240000001"),
                ..base
            },
            NewSlot {
                capacity: 2,
                ..base
            },
            // No two encodings alike: an empty text is not a missing one, and text moved
            // from one column to the next is not the same row.
            NewSlot {
                booking_url: Some(""),
                booking_phone: None,
                ..base
            },
            NewSlot {
                practitioner_name: Some("Dr A1"),
                profession: Some("0"),
                ..base
            },
        ];
        let mut seen = std::collections::HashSet::from([h]);
        for (i, r) in changed.iter().enumerate() {
            assert!(seen.insert(feed_hash(r, &mut buf)), "change {i} not seen");
        }
    }

    #[test]
    fn fingerprints_set_on_every_core_are_the_ones_of_each_row() {
        let mut rows: Vec<NewSlot<'static>> = (0..1000)
            .map(|i| NewSlot {
                start_at: 1_800_000_000 + i * 60,
                ..row()
            })
            .collect();
        set_feed_hashes(&mut rows);
        let mut buf = Vec::new();
        for r in &rows {
            assert_eq!(r.feed_hash, feed_hash(r, &mut buf));
        }
    }
}
