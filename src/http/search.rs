//! `GET /v1/search`: the operator's nearest-free-slot query. Reads the index snapshot only.

use crate::domain::slot::Modality;
use crate::domain::{InseeCode, LatLon, Postcode, Role};
use crate::error::ApiError;
use crate::geo::Commune;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::search_json;
use crate::http::territories::{commune_json, parse_point};
use crate::index::search::{Order, Query, Radius, Surnumeraire, search};
use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, Utc};
use chrono_tz::Europe::Paris;
use serde_json::json;
use std::borrow::Cow;

/// How many times the radius may grow by its step before the search gives up.
pub const MAX_ENLARGEMENTS: u32 = 4;

/// Default radius and enlargement step per department, as on the national SAS platform
/// (44: 10 km + 5 km; 49, 72, 85: 20 km + 10 km; 53: 30 km + 15 km).
pub fn department_radius(department: &str) -> Radius {
    let (base_km, step_km) = match department {
        "44" => (10.0, 5.0),
        "53" => (30.0, 15.0),
        _ => (20.0, 10.0),
    };
    Radius {
        base_m: base_km * 1000.0,
        step_m: step_km * 1000.0,
        max_steps: MAX_ENLARGEMENTS,
    }
}

/// The SAS time buckets, in hours from now.
pub fn window_bucket(name: &str) -> Option<(i64, i64)> {
    Some(match name {
        "0-4h" => (0, 4),
        "4-8h" => (4, 8),
        "8-12h" => (8, 12),
        "12-24h" => (12, 24),
        "24-48h" => (24, 48),
        "48-72h" => (48, 72),
        _ => return None,
    })
}

/// Renders an instant in Europe/Paris with its offset (`2026-11-23T10:30:00+01:00`).
pub fn paris(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap_or_default()
        .with_timezone(&Paris)
        .to_rfc3339()
}

struct Patient<'a> {
    point: LatLon,
    commune: &'a Commune,
}

fn ambiguous(what: &str, candidates: &[&Commune]) -> ApiError {
    ApiError::Unprocessable {
        code: "ambiguous_location",
        detail: format!(
            "`{what}` matches {} communes: choose one and search by `commune` (INSEE code)",
            candidates.len()
        ),
        extra: Some(
            json!({"candidates": candidates.iter().map(|c| commune_json(c)).collect::<Vec<_>>()}),
        ),
    }
}

fn one_commune<'a>(what: &str, found: Vec<&'a Commune>) -> Result<&'a Commune, ApiError> {
    match found.as_slice() {
        [] => Err(ApiError::unprocessable(
            "unknown_location",
            format!("no commune of Pays de la Loire matches `{what}`"),
        )),
        [one] => Ok(one),
        many => Err(ambiguous(what, many)),
    }
}

fn locate_patient<'a>(state: &'a AppState, p: &Params) -> Result<Patient<'a>, ApiError> {
    let given = [
        p.lat.is_some() || p.lon.is_some(),
        p.commune.is_some(),
        p.postcode.is_some(),
        p.q.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        0 => {
            return Err(ApiError::bad_request(
                "missing_location",
                "give the patient's location: `lat`+`lon`, `commune` (INSEE), `postcode` or `q`",
            ));
        }
        1 => {}
        _ => {
            return Err(ApiError::bad_request(
                "conflicting_location",
                "give only one of `lat`+`lon`, `commune`, `postcode`, `q`",
            ));
        }
    }
    let geo = &state.geo;
    if p.lat.is_some() || p.lon.is_some() {
        let point = parse_point(p.lat.as_deref(), p.lon.as_deref())?;
        let located = geo.locate(point).ok_or_else(|| {
            ApiError::unprocessable(
                "outside_region",
                "the patient's position is outside Pays de la Loire",
            )
        })?;
        return Ok(Patient {
            point,
            commune: located.commune,
        });
    }
    let commune = if let Some(code) = &p.commune {
        let insee: InseeCode = code.parse().map_err(|e: String| {
            ApiError::bad_request("invalid_commune", format!("`commune`: {e}"))
        })?;
        geo.commune(&insee).ok_or_else(|| {
            ApiError::unprocessable(
                "unknown_location",
                format!("`commune`: {insee} is not a commune of Pays de la Loire"),
            )
        })?
    } else if let Some(pc) = &p.postcode {
        let pc: Postcode = pc.parse().map_err(|e: String| {
            ApiError::bad_request("invalid_postcode", format!("`postcode`: {e}"))
        })?;
        one_commune(pc.as_str(), geo.communes_by_postcode(&pc))?
    } else {
        let q = p.q.as_deref().unwrap_or_default().trim();
        if let Ok(pc) = q.parse::<Postcode>() {
            one_commune(q, geo.communes_by_postcode(&pc))?
        } else {
            let found = geo.search_communes(q, 20);
            let key = crate::geo::names::name_key(q);
            let exact: Vec<&Commune> = found
                .iter()
                .copied()
                .filter(|c| {
                    crate::geo::names::name_key(&c.name) == key
                        || c.aliases
                            .iter()
                            .any(|a| crate::geo::names::name_key(a) == key)
                })
                .collect();
            if exact.is_empty() {
                one_commune(q, found)?
            } else {
                one_commune(q, exact)?
            }
        }
    };
    Ok(Patient {
        point: commune.interior,
        commune,
    })
}

/// Raw query parameters (`modality` may repeat), borrowed from the query string unless they
/// had to be percent-decoded.
#[derive(Debug, Default)]
struct Params<'a> {
    lat: Option<Cow<'a, str>>,
    lon: Option<Cow<'a, str>>,
    commune: Option<Cow<'a, str>>,
    postcode: Option<Cow<'a, str>>,
    q: Option<Cow<'a, str>>,
    profession: Option<Cow<'a, str>>,
    specialty: Option<Cow<'a, str>>,
    modality: Vec<String>,
    window: Option<Cow<'a, str>>,
    from: Option<Cow<'a, str>>,
    to: Option<Cow<'a, str>>,
    surnumeraire: Option<Cow<'a, str>>,
    limit: Option<Cow<'a, str>>,
    order: Option<Cow<'a, str>>,
    radius_km: Option<Cow<'a, str>>,
    seed: Option<Cow<'a, str>>,
}

impl<'a> Params<'a> {
    /// Reads an `application/x-www-form-urlencoded` query string; a parameter given twice keeps
    /// its last value (`modality` accumulates).
    fn parse(query: &'a str) -> Result<Self, ApiError> {
        let mut p = Params::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "lat" => &mut p.lat,
                "lon" => &mut p.lon,
                "commune" => &mut p.commune,
                "postcode" => &mut p.postcode,
                "q" => &mut p.q,
                "profession" => &mut p.profession,
                "specialty" => &mut p.specialty,
                "window" => &mut p.window,
                "from" => &mut p.from,
                "to" => &mut p.to,
                "surnumeraire" => &mut p.surnumeraire,
                "limit" => &mut p.limit,
                "order" => &mut p.order,
                "radius_km" => &mut p.radius_km,
                "seed" => &mut p.seed,
                "modality" => {
                    p.modality.extend(
                        v.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from),
                    );
                    continue;
                }
                other => {
                    return Err(ApiError::bad_request(
                        "unknown_parameter",
                        format!("unknown parameter `{other}`"),
                    ));
                }
            };
            *slot = Some(v);
        }
        Ok(p)
    }
}

fn code_param(name: &str, v: &Option<Cow<'_, str>>) -> Result<Option<String>, ApiError> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) if s.len() <= 10 && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Ok(Some(s.to_ascii_uppercase()))
        }
        Some(s) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("`{name}`: `{s}` is not a code (e.g. 10, SM54)"),
        )),
    }
}

fn instant_param(name: &str, v: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(v.trim())
        .map(|d| d.timestamp())
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("`{name}`: `{v}` is not an RFC 3339 instant ({e})"),
            )
        })
}

fn build_query(
    state: &AppState,
    p: &Params,
    origin: LatLon,
    department: &str,
    now: i64,
) -> Result<Query, ApiError> {
    let mut radius = department_radius(department);
    if let Some(r) = &p.radius_km {
        let km: f64 = r
            .trim()
            .parse()
            .ok()
            .filter(|k: &f64| k.is_finite() && (0.1..=200.0).contains(k))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("`radius_km`: `{r}` is not a distance between 0.1 and 200 km"),
                )
            })?;
        radius.base_m = km * 1000.0;
    }
    let (from, to) = match (&p.window, &p.from, &p.to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::bad_request(
                "conflicting_parameters",
                "give either `window` or `from`/`to`, not both",
            ));
        }
        (Some(w), None, None) => {
            let (a, b) = window_bucket(w.trim()).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!(
                        "`window`: `{w}` is not one of 0-4h, 4-8h, 8-12h, 12-24h, 24-48h, 48-72h"
                    ),
                )
            })?;
            (now + a * 3600, now + b * 3600)
        }
        (None, from, to) => {
            let from = from
                .as_deref()
                .map(|v| instant_param("from", v))
                .transpose()?
                .unwrap_or(now);
            let to = to
                .as_deref()
                .map(|v| instant_param("to", v))
                .transpose()?
                .unwrap_or(now + 72 * 3600);
            if to <= from {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "`to` must be after `from`",
                ));
            }
            (from, to)
        }
    };
    let modalities = p
        .modality
        .iter()
        .map(|m| {
            Modality::parse(m).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("`modality`: `{m}` is not AMB, HH or VR"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let surnumeraire = match p.surnumeraire.as_deref().map(str::trim) {
        None | Some("include") => Surnumeraire::Include,
        Some("only") => Surnumeraire::Only,
        Some("exclude") => Surnumeraire::Exclude,
        Some(o) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("`surnumeraire`: `{o}` is not include, only or exclude"),
            ));
        }
    };
    let limit = match &p.limit {
        None => 10,
        Some(l) => l
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("`limit`: `{l}` is not a whole number from 1 to 100"),
                )
            })?,
    };
    let order = match p.order.as_deref().map(str::trim) {
        None | Some("distance") => Order::Distance,
        Some("soonest") => Order::Soonest,
        Some("neutral") => Order::Neutral,
        Some(o) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("`order`: `{o}` is not distance, soonest or neutral"),
            ));
        }
    };
    let seed = match &p.seed {
        Some(s) => s.trim().parse().map_err(|_| {
            ApiError::bad_request("invalid_parameter", "`seed` must be a whole number")
        })?,
        None => rand::random(),
    };
    let _ = state;
    Ok(Query {
        origin,
        radius,
        from,
        to,
        now,
        profession: code_param("profession", &p.profession)?,
        specialty: code_param("specialty", &p.specialty)?,
        modalities,
        surnumeraire,
        limit,
        order,
        seed,
    })
}

#[get("/v1/search")]
pub async fn search_slots(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let p = Params::parse(req.query_string())?;
    let patient = locate_patient(&state, &p)?;
    let now = state.clock.now().timestamp();
    let department = patient.commune.department.as_str();
    let q = build_query(&state, &p, patient.point, department, now)?;
    let snap = state.index.load();
    let started = std::time::Instant::now();
    let found = search(&snap, &state.index, &q);
    state.metrics.search(
        department,
        started.elapsed(),
        found.hits.len(),
        found.within_base,
    );
    let territory = state.geo.territory_of(&patient.commune.insee);
    let today = state.clock.now().with_timezone(&Paris).date_naive();
    state.tally.record(
        territory.map(|t| t.id.as_str()),
        department,
        today,
        found.within_base == 0,
        found.hits.is_empty(),
    );
    let body = search_json::answer(&search_json::Context {
        patient_point: patient.point,
        commune: patient.commune,
        territory,
        department,
        query: &q,
        found: &found,
        now,
        cpts_name: &|id| state.geo.territory(id).map(|t| t.name.as_str()),
    });
    Ok(HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::{MAX_ENLARGEMENTS, department_radius, window_bucket};

    #[test]
    fn each_department_has_its_default_radius_and_step() {
        for (dep, base_km, step_km) in [
            ("44", 10.0, 5.0),
            ("49", 20.0, 10.0),
            ("53", 30.0, 15.0),
            ("72", 20.0, 10.0),
            ("85", 20.0, 10.0),
        ] {
            let r = department_radius(dep);
            assert_eq!(
                (r.base_m, r.step_m, r.max_steps),
                (base_km * 1000.0, step_km * 1000.0, MAX_ENLARGEMENTS),
                "{dep}"
            );
            assert_eq!(r.cap_m(), (base_km + 4.0 * step_km) * 1000.0, "{dep}");
        }
    }

    #[test]
    fn window_buckets_follow_each_other_without_gap() {
        let names = ["0-4h", "4-8h", "8-12h", "12-24h", "24-48h", "48-72h"];
        let buckets: Vec<(i64, i64)> = names.iter().map(|n| window_bucket(n).unwrap()).collect();
        assert_eq!(buckets[0].0, 0);
        assert_eq!(buckets[5].1, 72);
        assert!(buckets.windows(2).all(|w| w[0].1 == w[1].0));
        assert_eq!(window_bucket("0-2h"), None);
    }
}
