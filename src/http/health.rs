//! Liveness and readiness.

use crate::http::AppState;
use actix_web::{HttpResponse, get, web};
use serde_json::json;

/// The process is up and answering.
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database answers and the geography is loaded; 503 otherwise.
#[get("/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let db = state.db.ping().await;
    let communes = state.geo.communes().len();
    let ok = db.is_ok() && communes > 0;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "database": match &db { Ok(()) => "ok".to_string(), Err(e) => e.to_string() },
        "backend": state.db.backend().name(),
        "communes": communes,
        "territories": state.geo.territories().len(),
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
