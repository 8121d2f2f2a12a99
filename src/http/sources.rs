//! `/v1/sources`: slot feeds, their pushed snapshots and their ingest reports.

use crate::domain::Role;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::search::paris;
use crate::ingest::FeedFormat;
use crate::ingest::apply::{ApplyError, apply};
use crate::store::sources::{self, NewSource, SourceRow};
use actix_web::{HttpRequest, HttpResponse, get, post, put, web};
use serde::Deserialize;
use serde_json::{Value, json};

/// Shortest poll interval a pulled source may ask for (SMART Scheduling Links politeness:
/// never fetch a file more than once a minute).
pub const MIN_POLL_INTERVAL_S: i64 = 60;

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Feed(f) => ApiError::Unprocessable {
                code: f.code(),
                detail: format!("the feed could not be read, nothing was changed: {f}"),
                extra: Some(json!({"line": f.line()})),
            },
            ApplyError::Store(s) => s.into(),
            ApplyError::Task(t) => ApiError::internal(anyhow::anyhow!(t)),
        }
    }
}

fn source_json(state: &AppState, s: &SourceRow) -> Value {
    let now = state.clock.now().timestamp();
    let meta = crate::index::load::source_meta(s, &state.settings);
    json!({
        "id": s.id, "cpts": s.cpts_id, "name": s.name, "format": s.format, "url": s.url,
        "poll_interval_s": s.poll_interval_s, "created_at": paris(s.created_at),
        "last_attempt_at": s.last_attempt_at.map(paris), "last_success_at": s.last_success_at.map(paris),
        "last_error": s.last_error, "stale_after_s": meta.stale_after_s, "stale": !meta.is_fresh(now),
    })
}

/// Loads a source the caller may see: admins, operators and analysts see all; a `cpts` account
/// only its own CPTS's (another CPTS's source answers 403).
async fn visible_source(state: &AppState, caller: &Caller, id: i64) -> Result<SourceRow, ApiError> {
    let s = state.db.run(move |c| sources::get(c, id)).await?;
    if caller.0.role == Role::Cpts {
        caller.require_cpts(&s.cpts_id)?;
    }
    Ok(s)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSourceBody {
    name: String,
    format: String,
    cpts: Option<String>,
    url: Option<String>,
    poll_interval_s: Option<i64>,
}

#[post("/v1/sources")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewSourceBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Cpts])?;
    let b = body.into_inner();
    let cpts = match (caller.0.role, b.cpts) {
        (Role::Cpts, None) => caller.0.cpts_id.clone().unwrap_or_default(),
        (_, Some(c)) => c,
        (_, None) => {
            return Err(ApiError::unprocessable(
                "cpts_required",
                "`cpts`: an admin must say which CPTS the source belongs to",
            ));
        }
    };
    caller.require_cpts(&cpts)?;
    if state.geo.territory(&cpts).is_none() {
        return Err(ApiError::unprocessable(
            "unknown_cpts",
            format!("`cpts`: no CPTS territory `{cpts}`"),
        ));
    }
    let name = b.name.trim().to_string();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "`name` must be 1 to 200 characters",
        ));
    }
    let format: FeedFormat = b.format.parse().map_err(|_| {
        ApiError::unprocessable(
            "invalid_format",
            format!("`format`: `{}` is not sas-fhir, smart-sl or csv", b.format),
        )
    })?;
    if let Some(url) = &b.url {
        let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(ApiError::unprocessable(
                "invalid_url",
                format!("`url`: `{url}` is not an http(s) URL"),
            ));
        }
    }
    let poll = match (&b.url, b.poll_interval_s) {
        (None, Some(_)) => {
            return Err(ApiError::unprocessable(
                "invalid_poll_interval",
                "`poll_interval_s` needs a `url` to poll",
            ));
        }
        (Some(_), None) => Some(300),
        (Some(_), Some(s)) if !(MIN_POLL_INTERVAL_S..=86_400).contains(&s) => {
            return Err(ApiError::unprocessable(
                "invalid_poll_interval",
                "`poll_interval_s` must be between 60 and 86400 seconds",
            ));
        }
        (_, p) => p,
    };
    let new = NewSource {
        cpts_id: cpts,
        name,
        format: format.as_str().to_string(),
        url: b.url,
        poll_interval_s: poll,
        created_by: caller.0.account_id,
    };
    let now = state.clock.now().timestamp();
    let row = state.db.run(move |c| sources::create(c, &new, now)).await?;
    Ok(HttpResponse::Created().json(source_json(&state, &row)))
}

#[get("/v1/sources")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    let scope = match caller.0.role {
        Role::Cpts => caller.0.cpts_id.clone(),
        _ => None,
    };
    let rows = state
        .db
        .run(move |c| sources::list(c, scope.as_deref()))
        .await?;
    Ok(HttpResponse::Ok().json(
        rows.iter()
            .map(|r| source_json(&state, r))
            .collect::<Vec<_>>(),
    ))
}

#[get("/v1/sources/{id}")]
pub async fn show(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let s = visible_source(&state, &caller, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(source_json(&state, &s)))
}

/// A full snapshot of the source's slots; the Content-Type picks the parser.
#[put("/v1/sources/{id}/slots")]
pub async fn put_slots(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Cpts])?;
    let source = visible_source(&state, &caller, id.into_inner()).await?;
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = FeedFormat::from_content_type(ct).ok_or_else(|| ApiError::UnsupportedMediaType(format!(
        "Content-Type `{ct}` is not a feed format: use application/fhir+json (SAS FHIR Bundle), application/fhir+ndjson or application/x-ndjson (SMART Scheduling Links), or text/csv"
    )))?;
    let ingest_report = apply(&state, &source, format, body).await?;
    Ok(HttpResponse::Ok().json(ingest_report))
}

#[get("/v1/sources/{id}/report")]
pub async fn report(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let s = visible_source(&state, &caller, id.into_inner()).await?;
    let text = s
        .last_report
        .ok_or_else(|| ApiError::not_found("this source has not been ingested yet"))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(text))
}
