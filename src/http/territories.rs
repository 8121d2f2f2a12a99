//! Public geography reads: CPTS territories, point → commune/CPTS, commune search.

use crate::domain::LatLon;
use crate::error::ApiError;
use crate::geo::Commune;
use crate::http::AppState;
use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use serde_json::{Value, json};

/// GeoJSON FeatureCollection of the CPTS territories (id, name, department).
#[get("/v1/territories")]
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/geo+json")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(state.geo.territories_geojson().to_string())
}

#[derive(Debug, Deserialize)]
pub struct AtQuery {
    lat: Option<String>,
    lon: Option<String>,
}

/// Parses `lat`/`lon` query values into a validated position (400 names the bad field).
pub fn parse_point(lat: Option<&str>, lon: Option<&str>) -> Result<LatLon, ApiError> {
    let num = |name: &str, v: Option<&str>| -> Result<f64, ApiError> {
        let v = v.ok_or_else(|| {
            ApiError::bad_request("missing_parameter", format!("`{name}` is required"))
        })?;
        v.trim().parse::<f64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_coordinates",
                format!("`{name}`: `{v}` is not a decimal number"),
            )
        })
    };
    let (lat, lon) = (num("lat", lat)?, num("lon", lon)?);
    LatLon::new(lat, lon).map_err(|e| ApiError::bad_request("invalid_coordinates", e.to_string()))
}

/// JSON form of a commune as the API shows it.
pub fn commune_json(c: &Commune) -> Value {
    json!({
        "insee": c.insee,
        "name": c.name,
        "department": c.department,
        "postcodes": c.postcodes,
        "population": c.population,
        "lat": c.interior.lat,
        "lon": c.interior.lon,
        "cpts_id": c.cpts_id,
    })
}

/// Point → commune, CPTS and department.
#[get("/v1/territories/at")]
pub async fn at(
    state: web::Data<AppState>,
    q: web::Query<AtQuery>,
) -> Result<HttpResponse, ApiError> {
    let p = parse_point(q.lat.as_deref(), q.lon.as_deref())?;
    let located = state.geo.locate(p).ok_or_else(|| {
        ApiError::not_found(format!(
            "the point {}, {} is outside Pays de la Loire (departments 44, 49, 53, 72, 85)",
            p.lat, p.lon
        ))
    })?;
    Ok(HttpResponse::Ok().json(json!({
        "commune": {"insee": located.commune.insee, "name": located.commune.name, "postcodes": located.commune.postcodes},
        "cpts": located.territory.map(|t| json!({"id": t.id, "name": t.name})),
        "department": located.department,
    })))
}

#[derive(Debug, Deserialize)]
pub struct CommuneQuery {
    q: Option<String>,
    limit: Option<usize>,
}

/// Postal code or name → matching communes with their interior point.
#[get("/v1/communes")]
pub async fn communes(
    state: web::Data<AppState>,
    q: web::Query<CommuneQuery>,
) -> Result<HttpResponse, ApiError> {
    let text = q.q.as_deref().map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::bad_request(
            "missing_parameter",
            "`q` (a postal code or a commune name) is required",
        ));
    }
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let found: Vec<Value> = state
        .geo
        .search_communes(text, limit)
        .into_iter()
        .map(commune_json)
        .collect();
    Ok(HttpResponse::Ok().json(json!({"query": text, "communes": found})))
}
