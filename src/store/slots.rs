//! A source's slots, replaced as one snapshot in one transaction.
//!
//! Rules kept here:
//! - a snapshot replaces the source's previous slots atomically (readers see old or new);
//! - slot ids are stable across snapshots (upsert on `(source_id, external_id)`), so an id an
//!   operator saw stays valid after a refresh;
//! - a refresh never touches operator state (`hold_id`, `held_until`, `appointment_id`): a held
//!   or booked slot is never turned back to free by a feed, and one that vanishes from its feed
//!   while held or booked is kept and marked `removed_from_feed_at` (reported), not deleted;
//! - a slot whose start has passed is history: kept when it leaves the feed.

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

/// `INSERT … ON CONFLICT (source_id, external_id) DO UPDATE` of the feed's columns only: the
/// operator-state columns are never in the update list.
macro_rules! upsert_slots {
    ($values:expr) => {
        diesel::insert_into(slots::table)
            .values($values)
            .on_conflict((slots::source_id, slots::external_id))
            .do_update()
            .set((
                slots::place_id.eq(excluded(slots::place_id)),
                slots::cpts_id.eq(excluded(slots::cpts_id)),
                slots::start_at.eq(excluded(slots::start_at)),
                slots::end_at.eq(excluded(slots::end_at)),
                slots::feed_status.eq(excluded(slots::feed_status)),
                slots::practitioner_id.eq(excluded(slots::practitioner_id)),
                slots::practitioner_name.eq(excluded(slots::practitioner_name)),
                slots::profession.eq(excluded(slots::profession)),
                slots::specialty.eq(excluded(slots::specialty)),
                slots::structure_kind.eq(excluded(slots::structure_kind)),
                slots::structure_id.eq(excluded(slots::structure_id)),
                slots::structure_name.eq(excluded(slots::structure_name)),
                slots::modality.eq(excluded(slots::modality)),
                slots::appointment_type.eq(excluded(slots::appointment_type)),
                slots::audience.eq(excluded(slots::audience)),
                slots::surnumeraire.eq(excluded(slots::surnumeraire)),
                slots::booking_url.eq(excluded(slots::booking_url)),
                slots::booking_phone.eq(excluded(slots::booking_phone)),
                slots::capacity.eq(excluded(slots::capacity)),
                slots::snapshot_seq.eq(excluded(slots::snapshot_seq)),
                slots::removed_from_feed_at.eq(None::<i64>),
            ))
    };
}

/// Rows per multi-row statement (well under both backends' bind-parameter limits).
const CHUNK: usize = 1000;

#[derive(diesel::Insertable)]
#[diesel(table_name = places)]
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

#[derive(diesel::Insertable)]
#[diesel(table_name = slots)]
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

/// What a snapshot changed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SnapshotOutcome {
    pub seq: i64,
    pub inserted: u64,
    pub updated: u64,
    pub removed: u64,
    /// External ids of slots that left the feed while held or booked (kept, reported).
    pub kept_taken: Vec<String>,
}

/// Replaces the slots of `source_id` by `feed` in one write transaction. `deleted` are ids the
/// feed explicitly withdrew (`entered-in-error`). `report` builds the JSON report to store with
/// the outcome (it sees the final counts).
pub fn replace_snapshot(
    conn: &mut DbConn,
    source_id: i64,
    cpts_id: &str,
    feed: &NormalizedFeed,
    deleted: &[String],
    now: chrono::DateTime<chrono::Utc>,
    report: &dyn Fn(&SnapshotOutcome) -> String,
) -> Result<SnapshotOutcome, StoreError> {
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

    super::write_tx(conn, |conn| {
        let seq: i64 = db_run!(&mut *conn, |c| sources::table
            .find(source_id)
            .select(sources::snapshot_seq)
            .first::<i64>(c))?
            + 1;
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
            let ids: Vec<(String, i64)> = match &mut *conn {
                // SQLite cannot combine a multi-row VALUES with ON CONFLICT in diesel: one
                // prepared statement per row, inside the one transaction.
                #[cfg(feature = "sqlite")]
                DbConn::Sqlite(c) => {
                    let mut out = Vec::with_capacity(rows.len());
                    for row in &rows {
                        out.push(
                            upsert_places!(row)
                                .returning((places::place_key, places::id))
                                .get_result(&mut **c)?,
                        );
                    }
                    out
                }
                #[cfg(feature = "postgres")]
                DbConn::Postgres(c) => upsert_places!(&rows)
                    .returning((places::place_key, places::id))
                    .get_results(&mut **c)?,
            };
            place_ids.extend(ids);
        }

        let before: i64 = db_run!(&mut *conn, |c| slots::table
            .filter(slots::source_id.eq(source_id))
            .count()
            .get_result(c))?;
        let mut written = 0u64;
        let rows: Vec<NewSlot<'_>> = feed
            .slots
            .iter()
            .filter(|s| !deleted.contains(s.external_id.as_str()))
            .map(|s| {
                let pr = s.practitioner.as_ref();
                let st = s.structure.as_ref();
                Ok(NewSlot {
                    source_id,
                    external_id: &s.external_id,
                    place_id: *place_ids.get(&s.place_key).ok_or_else(|| {
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
        for chunk in rows.chunks(CHUNK) {
            written += match &mut *conn {
                #[cfg(feature = "sqlite")]
                DbConn::Sqlite(c) => {
                    let mut n = 0;
                    for row in chunk {
                        n += upsert_slots!(row).execute(&mut **c)?;
                    }
                    n
                }
                #[cfg(feature = "postgres")]
                DbConn::Postgres(c) => upsert_slots!(chunk).execute(&mut **c)?,
            } as u64;
        }
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
        db_run!(&mut *conn, |c| {
            let in_use = slots::table
                .select(slots::place_id)
                .filter(slots::source_id.eq(source_id));
            diesel::delete(
                places::table
                    .filter(places::source_id.eq(source_id))
                    .filter(places::snapshot_seq.lt(seq))
                    .filter(diesel::dsl::not(places::id.eq_any(in_use))),
            )
            .execute(c)
        })?;
        let outcome = SnapshotOutcome {
            seq,
            inserted,
            updated: written.saturating_sub(inserted),
            removed,
            kept_taken,
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
        Ok(outcome)
    })
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
