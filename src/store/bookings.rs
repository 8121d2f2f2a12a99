//! Holds, confirmations and outcomes — decided by the database, never by a node's memory.
//!
//! Rules kept here:
//! - a hold is one conditional `UPDATE` of the slot row (free, offered, not booked, not held or
//!   hold expired, not started, visible to SNP operators, its source fresh): exactly one of any
//!   number of concurrent operators gets it, and a slot search would not show is never held;
//! - a confirmation turns the slot's hold into an appointment with another conditional update
//!   (the hold must still be the slot's, unexpired, the slot still free, in its feed and not
//!   made PRO-only by a refresh); an expired hold that someone else took again cannot be
//!   confirmed;
//! - cancelling a future appointment frees its slot; every action is written to `audit_events`
//!   with the acting account, in the same transaction.

use super::schema::{appointments, audit_events, holds, slots};
use super::sources::{SourceRow, Staleness};
use super::{DbConn, StoreError, write_tx};
use crate::db_run;
use crate::domain::slot::AudienceSet;
use diesel::prelude::*;
use serde::Serialize;

/// Why a hold/confirm/outcome was refused.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("{0}")]
    NotFound(String),
    /// Someone else holds or booked it, it left its feed, or it has started.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotYours(String),
    #[error("{0}")]
    InvalidTransition(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for BookingError {
    fn from(e: diesel::result::Error) -> Self {
        BookingError::Store(e.into())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Queryable, Selectable)]
#[diesel(table_name = holds)]
pub struct HoldRow {
    pub id: String,
    pub slot_id: i64,
    pub account_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: String,
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Queryable, Selectable)]
#[diesel(table_name = appointments)]
pub struct AppointmentRow {
    pub id: i64,
    pub slot_id: Option<i64>,
    pub hold_id: String,
    pub account_id: i64,
    pub cpts_id: String,
    pub orientation_category: String,
    pub patient_ref: Option<String>,
    pub status: String,
    pub start_at: i64,
    pub end_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The acting account, for ownership checks and the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub account_id: i64,
    /// Admins may release/confirm any hold.
    pub is_admin: bool,
}

#[allow(clippy::too_many_arguments)] // one column each: a struct would only rename them
fn audit(
    conn: &mut DbConn,
    now: i64,
    actor: Actor,
    action: &str,
    slot_id: Option<i64>,
    hold_id: Option<&str>,
    appointment_id: Option<i64>,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    db_run!(conn, |c| diesel::insert_into(audit_events::table)
        .values((
            audit_events::at.eq(now),
            audit_events::account_id.eq(actor.account_id),
            audit_events::action.eq(action),
            audit_events::slot_id.eq(slot_id),
            audit_events::hold_id.eq(hold_id),
            audit_events::appointment_id.eq(appointment_id),
            audit_events::detail.eq(detail),
        ))
        .execute(c))?;
    Ok(())
}

/// Stored audience values (the [`AudienceSet`] bits) of slots SNP operators may not offer:
/// every value [`AudienceSet::visible_to_operators`] refuses (a PRO-only slot). A value out of
/// `u8` range reads as "no audience declared" (offered), as the index reads it.
fn hidden_audiences() -> Vec<i32> {
    (0..=u8::MAX)
        .filter(|bits| !AudienceSet(*bits).visible_to_operators())
        .map(i32::from)
        .collect()
}

/// Holds `slot_id` for `ttl_s` seconds. Returns the hold and the slot's CPTS.
///
/// Only a slot an operator's search could show is held: free at its publisher, still in its
/// feed, not started, visible to SNP operators (not PRO-only), and its source fresh under
/// `staleness`; knowing a slot id is not enough.
pub fn hold(
    conn: &mut DbConn,
    slot_id: i64,
    actor: Actor,
    now: i64,
    ttl_s: i64,
    staleness: Staleness,
) -> Result<(HoldRow, String), BookingError> {
    let hold_id = uuid::Uuid::new_v4().to_string();
    let expires = now + ttl_s;
    let hidden = hidden_audiences();
    let mut out = None;
    let res = write_tx(conn, |conn| {
        // The slot's source, judged by the rule the index applies (a refresh meanwhile only
        // makes it fresher).
        let source_id: Option<i64> = db_run!(&mut *conn, |c| slots::table
            .find(slot_id)
            .select(slots::source_id)
            .first(c)
            .optional())?;
        let stale = match source_id {
            Some(id) => Some(super::sources::get(conn, id)?),
            None => None,
        }
        .filter(|source| !staleness.is_fresh(source, now));
        let n = if stale.is_some() {
            0
        } else {
            db_run!(&mut *conn, |c| diesel::update(
                slots::table
                    .filter(slots::id.eq(slot_id))
                    .filter(slots::feed_status.eq("free"))
                    .filter(slots::appointment_id.is_null())
                    .filter(slots::removed_from_feed_at.is_null())
                    .filter(slots::start_at.gt(now))
                    .filter(slots::hold_id.is_null().or(slots::held_until.le(now)))
                    .filter(slots::audience.ne_all(&hidden))
            )
            .set((slots::hold_id.eq(&hold_id), slots::held_until.eq(expires)))
            .execute(c))?
        };
        if n == 0 {
            out = Some(Err(why_unavailable(conn, slot_id, now, stale.as_ref())?));
            return Ok(());
        }
        // A previous hold on this slot that lapsed is now recorded as expired.
        db_run!(&mut *conn, |c| diesel::update(
            holds::table
                .filter(holds::slot_id.eq(slot_id))
                .filter(holds::status.eq("active"))
        )
        .set((holds::status.eq("expired"), holds::ended_at.eq(now)))
        .execute(c))?;
        let row = HoldRow {
            id: hold_id.clone(),
            slot_id,
            account_id: actor.account_id,
            created_at: now,
            expires_at: expires,
            status: "active".into(),
            ended_at: None,
        };
        db_run!(&mut *conn, |c| diesel::insert_into(holds::table)
            .values((
                holds::id.eq(&row.id),
                holds::slot_id.eq(slot_id),
                holds::account_id.eq(actor.account_id),
                holds::created_at.eq(now),
                holds::expires_at.eq(expires),
                holds::status.eq("active"),
            ))
            .execute(c))?;
        audit(
            conn,
            now,
            actor,
            "hold",
            Some(slot_id),
            Some(&row.id),
            None,
            None,
        )?;
        let cpts: String = db_run!(&mut *conn, |c| slots::table
            .find(slot_id)
            .select(slots::cpts_id)
            .first(c))?;
        out = Some(Ok((row, cpts)));
        Ok(())
    });
    res?;
    out.expect("set in the transaction")
}

/// Explains why a slot could not be held (called after the conditional update matched nothing,
/// or was not tried because the slot's source is `stale`).
fn why_unavailable(
    conn: &mut DbConn,
    slot_id: i64,
    now: i64,
    stale: Option<&SourceRow>,
) -> Result<BookingError, StoreError> {
    type Row = (String, Option<i64>, Option<i64>, Option<i64>, i64, i32);
    let row: Option<Row> = db_run!(&mut *conn, |c| slots::table
        .find(slot_id)
        .select((
            slots::feed_status,
            slots::appointment_id,
            slots::held_until,
            slots::removed_from_feed_at,
            slots::start_at,
            slots::audience,
        ))
        .first(c)
        .optional())?;
    Ok(match row {
        None => BookingError::NotFound(format!("no slot with id {slot_id}")),
        Some((_, Some(_), ..)) => {
            BookingError::Unavailable("this slot is already booked".into())
        }
        Some((_, _, Some(until), ..)) if until > now => {
            BookingError::Unavailable("another operator is holding this slot".into())
        }
        Some((_, _, _, Some(_), ..)) => {
            BookingError::Unavailable("this slot was withdrawn by its publisher".into())
        }
        Some((status, ..)) if status != "free" => {
            BookingError::Unavailable("this slot is taken at its publisher".into())
        }
        Some((.., start, _)) if start <= now => {
            BookingError::Unavailable("this slot has already started".into())
        }
        Some((.., audience)) if hidden_audiences().contains(&audience) => {
            BookingError::Unavailable(
                "this slot is published for professionals only (audience PRO): it is not offered to SNP operators".into(),
            )
        }
        Some(_) if let Some(source) = stale => {
            BookingError::Unavailable(format!(
                "the source `{}` of this slot is stale (last refreshed {}): its slots are not offered until its publisher refreshes it",
                source.name,
                source
                    .last_success_at
                    .filter(|t| *t > 0)
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map_or_else(
                        || "never".to_string(),
                        |t| t.with_timezone(&chrono_tz::Europe::Paris).to_rfc3339()
                    )
            ))
        }
        Some(_) => BookingError::Unavailable("this slot cannot be held".into()),
    })
}

fn load_hold(conn: &mut DbConn, hold_id: &str) -> Result<HoldRow, BookingError> {
    db_run!(conn, |c| holds::table
        .find(hold_id)
        .select(HoldRow::as_select())
        .first(c)
        .optional())?
    .ok_or_else(|| BookingError::NotFound(format!("no hold with id {hold_id}")))
}

fn check_owner(h: &HoldRow, actor: Actor) -> Result<(), BookingError> {
    if h.account_id == actor.account_id || actor.is_admin {
        Ok(())
    } else {
        Err(BookingError::NotYours(
            "this hold belongs to another operator".into(),
        ))
    }
}

/// Releases an active hold; returns its slot id.
pub fn release(
    conn: &mut DbConn,
    hold_id: &str,
    actor: Actor,
    now: i64,
) -> Result<i64, BookingError> {
    let mut out = None;
    write_tx(conn, |conn| {
        let h = match load_hold(conn, hold_id).and_then(|h| check_owner(&h, actor).map(|()| h)) {
            Ok(h) => h,
            Err(e) => {
                out = Some(Err(e));
                return Ok(());
            }
        };
        if h.status != "active" || h.expires_at <= now {
            out = Some(Err(BookingError::InvalidTransition(format!(
                "this hold is no longer active ({})",
                if h.status == "active" {
                    "expired"
                } else {
                    &h.status
                }
            ))));
            return Ok(());
        }
        db_run!(&mut *conn, |c| diesel::update(
            slots::table
                .filter(slots::id.eq(h.slot_id))
                .filter(slots::hold_id.eq(hold_id))
        )
        .set((
            slots::hold_id.eq(None::<String>),
            slots::held_until.eq(None::<i64>)
        ))
        .execute(c))?;
        db_run!(&mut *conn, |c| diesel::update(holds::table.find(hold_id))
            .set((holds::status.eq("released"), holds::ended_at.eq(now)))
            .execute(c))?;
        audit(
            conn,
            now,
            actor,
            "release",
            Some(h.slot_id),
            Some(hold_id),
            None,
            None,
        )?;
        out = Some(Ok(h.slot_id));
        Ok(())
    })?;
    out.expect("set in the transaction")
}

/// Turns an active hold into a booked appointment.
pub fn confirm(
    conn: &mut DbConn,
    hold_id: &str,
    actor: Actor,
    category: &str,
    patient_ref: Option<&str>,
    now: i64,
) -> Result<AppointmentRow, BookingError> {
    let hidden = hidden_audiences();
    let mut out = None;
    let res = write_tx(conn, |conn| {
        let h = match load_hold(conn, hold_id).and_then(|h| check_owner(&h, actor).map(|()| h)) {
            Ok(h) => h,
            Err(e) => {
                out = Some(Err(e));
                return Ok(());
            }
        };
        if h.status != "active" || h.expires_at <= now {
            let state = if h.status == "active" {
                "expired"
            } else {
                h.status.as_str()
            };
            out = Some(Err(BookingError::Unavailable(format!(
                "this hold is no longer active ({state}): hold the slot again"
            ))));
            return Ok(());
        }
        let (cpts_id, start_at, end_at): (String, i64, i64) =
            db_run!(&mut *conn, |c| slots::table
                .find(h.slot_id)
                .select((slots::cpts_id, slots::start_at, slots::end_at))
                .first(c))?;
        let appt: AppointmentRow =
            db_run!(&mut *conn, |c| diesel::insert_into(appointments::table)
                .values((
                    appointments::slot_id.eq(h.slot_id),
                    appointments::hold_id.eq(hold_id),
                    appointments::account_id.eq(actor.account_id),
                    appointments::cpts_id.eq(&cpts_id),
                    appointments::orientation_category.eq(category),
                    appointments::patient_ref.eq(patient_ref),
                    appointments::status.eq("booked"),
                    appointments::start_at.eq(start_at),
                    appointments::end_at.eq(end_at),
                    appointments::created_at.eq(now),
                    appointments::updated_at.eq(now),
                ))
                .returning(AppointmentRow::as_returning())
                .get_result(c))?;
        let n = db_run!(&mut *conn, |c| diesel::update(
            slots::table
                .filter(slots::id.eq(h.slot_id))
                .filter(slots::hold_id.eq(hold_id))
                .filter(slots::appointment_id.is_null())
                .filter(slots::feed_status.eq("free"))
                .filter(slots::removed_from_feed_at.is_null())
                .filter(slots::audience.ne_all(&hidden))
        )
        .set((
            slots::appointment_id.eq(appt.id),
            slots::hold_id.eq(None::<String>),
            slots::held_until.eq(None::<i64>),
        ))
        .execute(c))?;
        if n == 0 {
            // Undo the appointment insert: fail the transaction.
            return Err(StoreError::Conflict(
                "while held, the slot was taken at its publisher, withdrawn, or restricted to professionals (audience PRO)".into(),
            ));
        }
        db_run!(&mut *conn, |c| diesel::update(holds::table.find(hold_id))
            .set((holds::status.eq("confirmed"), holds::ended_at.eq(now)))
            .execute(c))?;
        audit(
            conn,
            now,
            actor,
            "confirm",
            Some(h.slot_id),
            Some(hold_id),
            Some(appt.id),
            Some(category),
        )?;
        out = Some(Ok(appt));
        Ok(())
    });
    match res {
        Err(StoreError::Conflict(msg)) => Err(BookingError::Unavailable(msg)),
        Err(e) => Err(e.into()),
        Ok(()) => out.expect("set in the transaction"),
    }
}

/// Records an outcome. `booked` → `fulfilled`|`noshow` (once the appointment has started) or
/// `cancelled`. Returns the appointment and the slot freed by a cancellation (future slots only).
pub fn set_outcome(
    conn: &mut DbConn,
    id: i64,
    status: &str,
    actor: Actor,
    now: i64,
) -> Result<(AppointmentRow, Option<i64>), BookingError> {
    let mut out = None;
    write_tx(conn, |conn| {
        let a: Option<AppointmentRow> = db_run!(&mut *conn, |c| appointments::table
            .find(id)
            .select(AppointmentRow::as_select())
            .first(c)
            .optional())?;
        let Some(a) = a else {
            out = Some(Err(BookingError::NotFound(format!(
                "no appointment with id {id}"
            ))));
            return Ok(());
        };
        let refused = match (a.status.as_str(), status) {
            ("booked", "cancelled") => None,
            ("booked", "fulfilled" | "noshow") if a.start_at <= now => None,
            ("booked", "fulfilled" | "noshow") => {
                Some("the appointment has not started yet".to_string())
            }
            (from, to) if from == to => Some(format!("the appointment is already {from}")),
            (from, to) => Some(format!("an appointment that is {from} cannot become {to}")),
        };
        if let Some(why) = refused {
            out = Some(Err(BookingError::InvalidTransition(why)));
            return Ok(());
        }
        db_run!(&mut *conn, |c| diesel::update(appointments::table.find(id))
            .set((
                appointments::status.eq(status),
                appointments::updated_at.eq(now)
            ))
            .execute(c))?;
        let mut freed = None;
        if status == "cancelled"
            && a.start_at > now
            && let Some(slot) = a.slot_id
        {
            {
                let n = db_run!(&mut *conn, |c| diesel::update(
                    slots::table
                        .filter(slots::id.eq(slot))
                        .filter(slots::appointment_id.eq(id))
                )
                .set(slots::appointment_id.eq(None::<i64>))
                .execute(c))?;
                freed = (n == 1).then_some(slot);
            }
        }
        audit(
            conn,
            now,
            actor,
            status,
            a.slot_id,
            Some(&a.hold_id),
            Some(id),
            None,
        )?;
        out = Some(Ok((
            AppointmentRow {
                status: status.to_string(),
                updated_at: now,
                ..a
            },
            freed,
        )));
        Ok(())
    })?;
    out.expect("set in the transaction")
}

/// Appointments, optionally of one CPTS and starting in `[from, to)`.
pub fn list_appointments(
    conn: &mut DbConn,
    cpts: Option<&str>,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<AppointmentRow>, StoreError> {
    Ok(db_run!(conn, |c| {
        let mut q = appointments::table
            .select(AppointmentRow::as_select())
            .order((appointments::start_at, appointments::id))
            .into_boxed();
        if let Some(cpts) = cpts {
            q = q.filter(appointments::cpts_id.eq(cpts));
        }
        if let Some(from) = from {
            q = q.filter(appointments::start_at.ge(from));
        }
        if let Some(to) = to {
            q = q.filter(appointments::start_at.lt(to));
        }
        q.limit(10_000).load(c)
    })?)
}

/// Marks lapsed holds expired and clears them from their slots. Returns `(hold id, slot id,
/// account id)` of each hold that expired now.
pub fn expire_holds(conn: &mut DbConn, now: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
    // Most rounds find nothing: ask first with a plain read, which on SQLite does not wait for
    // the write lock (a snapshot may hold it for many seconds), and only then write.
    let lapsed_holds = holds::table
        .filter(holds::status.eq("active"))
        .filter(holds::expires_at.le(now));
    let any: bool = db_run!(&mut *conn, |c| diesel::select(diesel::dsl::exists(
        lapsed_holds
    ))
    .get_result(c))?;
    if !any {
        return Ok(Vec::new());
    }
    write_tx(conn, |conn| {
        let lapsed: Vec<(String, i64, i64)> = db_run!(&mut *conn, |c| lapsed_holds
            .select((holds::id, holds::slot_id, holds::account_id))
            .load(c))?;
        if lapsed.is_empty() {
            return Ok(lapsed);
        }
        let ids: Vec<&str> = lapsed.iter().map(|(h, _, _)| h.as_str()).collect();
        db_run!(&mut *conn, |c| diesel::update(
            holds::table.filter(holds::id.eq_any(&ids))
        )
        .set((holds::status.eq("expired"), holds::ended_at.eq(now)))
        .execute(c))?;
        db_run!(&mut *conn, |c| diesel::update(
            slots::table
                .filter(slots::hold_id.eq_any(&ids))
                .filter(slots::held_until.le(now))
        )
        .set((
            slots::hold_id.eq(None::<String>),
            slots::held_until.eq(None::<i64>)
        ))
        .execute(c))?;
        for (h, slot, account) in &lapsed {
            let actor = Actor {
                account_id: *account,
                is_admin: false,
            };
            audit(conn, now, actor, "expire", Some(*slot), Some(h), None, None)?;
        }
        Ok(lapsed)
    })
}

/// Operator state of every slot that has one, for the index overlay: `(slot id, until)`.
pub fn taken_slots(conn: &mut DbConn, now: i64) -> Result<Vec<(i64, i64)>, StoreError> {
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = db_run!(conn, |c| slots::table
        .filter(
            slots::appointment_id
                .is_not_null()
                .or(slots::held_until.gt(now))
        )
        .select((slots::id, slots::appointment_id, slots::held_until))
        .load(c))?;
    Ok(rows
        .into_iter()
        .map(|(id, appt, until)| {
            (
                id,
                if appt.is_some() {
                    i64::MAX
                } else {
                    until.unwrap_or(0)
                },
            )
        })
        .collect())
}
