//! Holds, confirmations, outcomes and the appointment list.

use crate::domain::Role;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::search::paris;
use crate::store::bookings::{self, Actor, AppointmentRow, BookingError, Staleness};
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
/// digit, and not shaped like a NIR (13 or 15 digits). Names and NIR are refused.
pub fn check_patient_ref(r: &str) -> Result<(), ApiError> {
    let ok_chars = r
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    let digits = r.chars().filter(char::is_ascii_digit).count();
    let nir_like = r.chars().all(|c| {
        c.is_ascii_digit() || c.eq_ignore_ascii_case(&'a') || c.eq_ignore_ascii_case(&'b')
    }) && (digits == 13 || digits == 15 || r.len() == 13 || r.len() == 15);
    if (4..=64).contains(&r.len()) && ok_chars && digits > 0 && !nir_like {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_patient_ref",
            "`patient_ref` must be an opaque pseudonymous reference (4–64 characters A-Z, 0-9, . _ : -, with a digit), never a name or a NIR",
        ))
    }
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
