//! Holds, confirmations, outcomes and the appointment list.

use crate::domain::Role;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::search::paris;
use crate::store::bookings::{self, Actor, AppointmentRow, BookingError};
use crate::store::sources::Staleness;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use serde_json::{Value, json};

impl From<BookingError> for ApiError {
    fn from(e: BookingError) -> Self {
        match e {
            BookingError::NotFound(m) => ApiError::NotFound(m),
            BookingError::Unavailable(m) => ApiError::conflict("slot_unavailable", m),
            BookingError::NotYours(m) => ApiError::Forbidden(m),
            BookingError::InvalidTransition(m) => ApiError::conflict("invalid_transition", m),
            BookingError::Store(s) => s.into(),
        }
    }
}

/// Counts a refusal answered 409 (`sasnp_booking_conflicts_total{action}`).
fn count_conflict<'a>(state: &'a AppState, action: &'static str) -> impl Fn(&BookingError) + 'a {
    move |e| {
        if matches!(
            e,
            BookingError::Unavailable(_) | BookingError::InvalidTransition(_)
        ) {
            state.metrics.booking_conflict(action);
        }
    }
}

fn actor(caller: &Caller) -> Actor {
    Actor {
        account_id: caller.0.account_id,
        is_admin: caller.0.role == Role::Admin,
    }
}

/// Orientation categories of the ANS SAS IG (`Appointment` orientation).
pub const ORIENTATION_CATEGORIES: [(&str, &str); 3] = [
    ("001", "PS (professionnel de santé)"),
    ("002", "Place de marché / plateforme"),
    ("003", "SOS Médecins"),
];

/// A pseudonymous patient reference: 4–64 characters of `A-Z a-z 0-9 . _ : -`, at least one
/// digit, and nothing in it shaped like a NIR. Names (no digit, or a space) and NIR are refused.
///
/// NIR detection: the separators people type inside a NIR (space, `.`, `-`, `_`, `/`) are
/// removed first, then any run of exactly 13 (no key) or 15 (with key) NIR characters is
/// refused — a sex digit 1, 2, 3, 4, 7 or 8, then digits, the department at positions 6–7
/// possibly Corsica's `2A`/`2B`. A hyphenated UUID is accepted as such (its hex groups joined
/// could otherwise make such a run).
///
/// Limits, on purpose: a reference whose digits happen to join into such a run is refused too
/// (e.g. `C15-2026-0001234`: choose another format); a NIR typed with a wrong length, or
/// split by other characters, and a name written with digits (`Dupont85`) are not recognised:
/// no rule on an opaque string can tell them apart from a genuine reference.
pub fn check_patient_ref(r: &str) -> Result<(), ApiError> {
    let ok_chars = r
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    let digits = r.chars().filter(char::is_ascii_digit).count();
    let uuid = r.len() == 36 && uuid::Uuid::try_parse(r).is_ok();
    if (4..=64).contains(&r.len()) && ok_chars && digits > 0 && (uuid || !contains_nir(r)) {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_patient_ref",
            "`patient_ref` must be an opaque pseudonymous reference (4–64 characters A-Z, 0-9, . _ : -, with a digit), never a name or a NIR (13 or 15 digits in a row, separators ignored)",
        ))
    }
}

/// Whether `r`, separators (space `.` `-` `_` `/`) removed, holds a run of exactly 13 or 15
/// NIR characters (see [`check_patient_ref`]). A run is bounded by a non-digit, the ends of
/// `r`, or a separator: `C15-185057800608491` holds one.
fn contains_nir(r: &str) -> bool {
    // each character kept, uppercased, and whether a separator came right before it
    let mut c: Vec<(u8, bool)> = Vec::with_capacity(r.len());
    let mut sep = false;
    for b in r.bytes() {
        if matches!(b, b' ' | b'.' | b'-' | b'_' | b'/') {
            sep = true;
        } else {
            c.push((b.to_ascii_uppercase(), sep));
            sep = false;
        }
    }
    let digit = |i: usize| c.get(i).is_some_and(|(b, _)| b.is_ascii_digit());
    let ends_at = |j: usize| !digit(j) || c[j].1;
    (0..c.len()).any(|i| {
        let starts = i == 0 || !digit(i - 1) || c[i].1;
        let nir13 = starts
            && matches!(c[i].0, b'1'..=b'4' | b'7' | b'8')
            && (1..5).all(|k| digit(i + k))
            && ((digit(i + 5) && digit(i + 6))
                || (c.get(i + 5).map(|x| x.0) == Some(b'2')
                    && matches!(c.get(i + 6).map(|x| x.0), Some(b'A' | b'B'))))
            && (7..13).all(|k| digit(i + k));
        nir13 && (ends_at(i + 13) || (digit(i + 13) && digit(i + 14) && ends_at(i + 15)))
    })
}

pub fn appointment_json(a: &AppointmentRow) -> Value {
    json!({
        "appointment_id": a.id, "slot_id": a.slot_id, "hold_id": a.hold_id, "cpts_id": a.cpts_id,
        "orientation_category": a.orientation_category, "patient_ref": a.patient_ref, "status": a.status,
        "start": paris(a.start_at), "end": paris(a.end_at), "account_id": a.account_id,
        "created_at": paris(a.created_at), "updated_at": paris(a.updated_at),
    })
}

#[post("/v1/slots/{slot_id}/hold")]
pub async fn hold(
    state: web::Data<AppState>,
    caller: Caller,
    slot_id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let (slot_id, actor, now) = (
        slot_id.into_inner(),
        actor(&caller),
        state.clock.now().timestamp(),
    );
    let ttl = i64::try_from(state.settings.hold_ttl_s).unwrap_or(300);
    let staleness = Staleness::of(&state.settings);
    let (h, cpts) = state
        .db
        .run(move |c| Ok(bookings::hold(c, slot_id, actor, now, ttl, staleness)))
        .await?
        .inspect_err(count_conflict(&state, "hold"))?;
    state.index.mark_taken(slot_id, h.expires_at);
    state.metrics.hold_taken(&cpts);
    Ok(HttpResponse::Created()
        .json(json!({"hold_id": h.id, "slot_id": slot_id, "expires_at": paris(h.expires_at)})))
}

#[delete("/v1/holds/{hold_id}")]
pub async fn release(
    state: web::Data<AppState>,
    caller: Caller,
    hold_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let (hold_id, actor, now) = (
        hold_id.into_inner(),
        actor(&caller),
        state.clock.now().timestamp(),
    );
    let slot = state
        .db
        .run(move |c| Ok(bookings::release(c, &hold_id, actor, now)))
        .await?
        .inspect_err(count_conflict(&state, "release"))?;
    state.index.mark_free(slot);
    state.metrics.hold_released();
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    orientation_category: String,
    patient_ref: Option<String>,
}

#[post("/v1/holds/{hold_id}/confirm")]
pub async fn confirm(
    state: web::Data<AppState>,
    caller: Caller,
    hold_id: web::Path<String>,
    body: web::Json<Confirm>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let Confirm {
        orientation_category,
        patient_ref,
    } = body.into_inner();
    if !ORIENTATION_CATEGORIES
        .iter()
        .any(|(c, _)| *c == orientation_category)
    {
        return Err(ApiError::unprocessable(
            "invalid_orientation_category",
            format!(
                "`orientation_category`: `{orientation_category}` is not 001 (PS), 002 (place de marché) or 003 (SOS Médecins)"
            ),
        ));
    }
    if let Some(r) = &patient_ref {
        check_patient_ref(r)?;
    }
    let (hold_id, actor, now) = (
        hold_id.into_inner(),
        actor(&caller),
        state.clock.now().timestamp(),
    );
    let appt = state
        .db
        .run(move |c| {
            Ok(bookings::confirm(
                c,
                &hold_id,
                actor,
                &orientation_category,
                patient_ref.as_deref(),
                now,
            ))
        })
        .await?
        .inspect_err(count_conflict(&state, "confirm"))?;
    if let Some(slot) = appt.slot_id {
        state.index.mark_taken(slot, i64::MAX);
    }
    state
        .metrics
        .appointment_booked(&appt.cpts_id, &appt.orientation_category);
    Ok(HttpResponse::Created().json(appointment_json(&appt)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    status: String,
}

#[patch("/v1/appointments/{id}")]
pub async fn outcome(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
    body: web::Json<Outcome>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let status = body.into_inner().status;
    if !["fulfilled", "noshow", "cancelled"].contains(&status.as_str()) {
        return Err(ApiError::unprocessable(
            "invalid_status",
            format!("`status`: `{status}` is not fulfilled, noshow or cancelled"),
        ));
    }
    let (id, actor, now) = (
        id.into_inner(),
        actor(&caller),
        state.clock.now().timestamp(),
    );
    let (appt, freed) = state
        .db
        .run(move |c| Ok(bookings::set_outcome(c, id, &status, actor, now)))
        .await?
        .inspect_err(count_conflict(&state, "outcome"))?;
    if let Some(slot) = freed {
        state.index.mark_free(slot);
    }
    state
        .metrics
        .appointment_outcome(&appt.cpts_id, &appt.status);
    Ok(HttpResponse::Ok().json(appointment_json(&appt)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cpts: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn date_or_instant(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(d.timestamp());
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| d.and_local_timezone(chrono_tz::Europe::Paris).earliest())
        .map(|d| d.timestamp())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("`{name}`: `{v}` is not a date (YYYY-MM-DD) or an RFC 3339 instant"),
            )
        })
}

#[get("/v1/appointments")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let cpts = match caller.0.role {
        Role::Admin | Role::Operator => q.cpts,
        Role::Cpts => {
            // A `cpts` account sees its own CPTS only; one without a CPTS (made outside the
            // API) sees nothing rather than every CPTS.
            let own = caller.0.cpts_id.clone().ok_or_else(|| {
                ApiError::forbidden(format!(
                    "your account `{}` is a `cpts` account with no CPTS: ask an admin to set it",
                    caller.0.name
                ))
            })?;
            if let Some(asked) = &q.cpts {
                caller.require_cpts(asked)?;
            }
            Some(own)
        }
        Role::Analyst => {
            return Err(caller
                .require(&[Role::Admin, Role::Operator, Role::Cpts])
                .unwrap_err());
        }
    };
    let from = q
        .from
        .as_deref()
        .map(|v| date_or_instant("from", v))
        .transpose()?;
    let to =
        q.to.as_deref()
            .map(|v| date_or_instant("to", v))
            .transpose()?;
    let rows = state
        .db
        .run(move |c| bookings::list_appointments(c, cpts.as_deref(), from, to))
        .await?;
    Ok(HttpResponse::Ok().json(json!({"count": rows.len(), "appointments": rows.iter().map(appointment_json).collect::<Vec<_>>()})))
}

#[cfg(test)]
mod tests {
    use super::check_patient_ref;

    #[test]
    fn a_nir_is_refused_however_it_is_written() {
        for r in [
            "185057800608491",
            "1850578006084",
            "1 85 05 78 006 084 91",
            "1-85-05-78-006-084-91",
            "1.85.05.78.006.084.91",
            "1_85_05_78_006_084_91",
            "1/85/05/78/006/084/91",
            "1-85-05-78-006-084",
            "2 85 05 2A 006 084 91",
            "285052b006084",
            "nir:1-85-05-78-006-084-91",
            "C15-185057800608491",
            "C15-1-85-05-78-006-084-91-x",
        ] {
            assert!(check_patient_ref(r).is_err(), "{r} was accepted");
        }
    }

    #[test]
    fn opaque_references_and_uuids_still_pass() {
        for r in [
            "C15-2026-000123",
            "C15:2026:000123",
            "550e8400-e29b-41d4-a716-446655440000",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "DOS.2026.11.23.0042",
            // runs of 12, 14 and 16 digits are not NIR-shaped
            "R-123456789012",
            "12345678901234",
            "R1234567890123456",
            // 13 digits whose first is not a sex digit (1, 2, 3, 4, 7, 8)
            "REF-5850578006084",
        ] {
            assert!(check_patient_ref(r).is_ok(), "{r} was refused");
        }
    }

    #[test]
    fn names_and_malformed_references_are_refused() {
        for r in ["Jean Dupont", "Dupont", "ab1", "a/b/1234", &"A1".repeat(33)] {
            assert!(check_patient_ref(r).is_err(), "{r} was accepted");
        }
    }
}
