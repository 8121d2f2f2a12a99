//! `/v1/stats…`: CPTS statistics uploads (validated whole, stored as versions), the summed
//! figures, and the figures sasnp computes from its own data. Contract and decisions:
//! `src/stats/STATS.md` ("Storage and HTTP API").
//!
//! Rules kept here:
//! - an upload is validated completely (file, cells, consistency, CPTS known and within the
//!   caller's scope, dates not in the future) before anything is written; one error rejects
//!   it whole with **every** problem (422, `problems`), and nothing is stored;
//! - a `cpts` account only uploads and reads its own CPTS; analysts read everything and
//!   upload nothing; operators see none of it;
//! - a stored record counts in `[from, to]` when its whole period lies inside.

use crate::domain::{DEPARTMENTS, Role, fold_name};
use crate::error::ApiError;
use crate::geo::Geography;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::stats::{
    AggregateRow, CheckedUpload, GroupBy, GroupValue, Indicator, Preset, Problem, StatRecord,
    StoredRecordView, UploadErrors, UploadType, aggregate, check_upload_with, reason, to_csv,
};
use crate::store::accounts::Principal;
use crate::store::stats as store;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Largest accepted upload body.
pub const MAX_UPLOAD_BYTES: usize = 10 << 20;

/// The JSON Schema of the canonical record (and of a JSON upload, `#/$defs/upload`).
pub const SCHEMA_JSON: &str = include_str!("../stats/schema.json");

/// Longest window of `GET /v1/stats/computed`, in days.
const MAX_COMPUTED_DAYS: i64 = 366;

fn rfc3339(epoch: i64) -> String {
    crate::store::from_epoch(epoch).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A problem+json answer for the statuses `ApiError` has no variant for (413, 415).
fn problem(status: StatusCode, code: &str, detail: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(json!({
            "type": format!("https://sasnp.invalid/problems/{code}"),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": code,
            "detail": detail,
        }))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f).await.map_err(ApiError::internal)
}

// ---------------------------------------------------------------------------------------
// Upload

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    pub preset: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
}

/// CSV or JSON from the `Content-Type`; sniffed from the first byte when there is none.
fn upload_type(req: &HttpRequest, body: &[u8]) -> Result<UploadType, String> {
    let ct = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|v| !v.is_empty());
    match ct.as_deref() {
        None => {
            let first = body
                .strip_prefix(b"\xEF\xBB\xBF")
                .unwrap_or(body)
                .iter()
                .find(|b| !b.is_ascii_whitespace());
            Ok(if matches!(first, Some(b'[' | b'{')) {
                UploadType::Json
            } else {
                UploadType::Csv
            })
        }
        Some("application/json") => Ok(UploadType::Json),
        Some(t) if t.ends_with("+json") => Ok(UploadType::Json),
        Some(
            "text/csv"
            | "application/csv"
            | "text/plain"
            | "text/tab-separated-values"
            | "application/vnd.ms-excel",
        ) => Ok(UploadType::Csv),
        Some(other) => Err(format!(
            "Content-Type `{other}` is not accepted: send text/csv or application/json"
        )),
    }
}

/// Finds CPTS ids from what a file says: the id itself (any case), or the territory's exact
/// name (accents, case, punctuation and a leading « CPTS » ignored), when it names one only.
struct CptsResolver {
    geo: Arc<Geography>,
    by_name: HashMap<String, Option<String>>,
}

impl CptsResolver {
    fn new(geo: Arc<Geography>) -> Self {
        let mut by_name: HashMap<String, Option<String>> = HashMap::new();
        for t in geo.territories() {
            let key = strip_cpts(&fold_name(&t.name));
            by_name
                .entry(key)
                .and_modify(|v| *v = None) // ambiguous: two territories fold to one name
                .or_insert_with(|| Some(t.id.clone()));
        }
        Self { geo, by_name }
    }

    fn resolve(&self, written: &str) -> Option<String> {
        let w = written.trim();
        if self.geo.territory(w).is_some() {
            return Some(w.to_string());
        }
        let lower = w.to_ascii_lowercase();
        if self.geo.territory(&lower).is_some() {
            return Some(lower);
        }
        self.by_name
            .get(&strip_cpts(&fold_name(w)))
            .cloned()
            .flatten()
    }
}

fn strip_cpts(folded: &str) -> String {
    folded
        .strip_prefix("cpts ")
        .unwrap_or(folded)
        .trim()
        .to_string()
}

/// The rules only the service can check: the CPTS exists (and is the caller's own for a
/// `cpts` account), the period has started.
fn service_rule(
    resolver: &CptsResolver,
    own_cpts: Option<&str>,
    today: NaiveDate,
    r: &mut StatRecord,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let line = Some(r.line);
    match resolver.resolve(&r.cpts_id) {
        None => out.push(Problem::error(
            line,
            Some("cpts_id"),
            reason::UNKNOWN_CPTS,
            format!(
                "CPTS « {} » inconnue : indiquez l'identifiant de son territoire \
                 (par ex. « cpts-244400404 ») ou son nom exact, voir GET /v1/territories",
                r.cpts_id
            ),
        )),
        Some(id) => {
            if let Some(own) = own_cpts.filter(|own| *own != id) {
                out.push(Problem::error(
                    line,
                    Some("cpts_id"),
                    reason::CPTS_NOT_ALLOWED,
                    format!(
                        "votre compte dépose pour la CPTS « {own} » ; cette ligne concerne \
                         « {id} » : retirez-la ou demandez à un administrateur de la déposer"
                    ),
                ));
            }
            r.cpts_id = id;
        }
    }
    if r.period_start > today {
        out.push(Problem::error(
            line,
            Some("period_start"),
            reason::PERIOD_IN_FUTURE,
            format!(
                "la période commence le {} : on ne peut déposer que des périodes commencées",
                r.period_start.format("%d/%m/%Y")
            ),
        ));
    } else if r.period_end >= today && r.period_end >= r.period_start {
        out.push(Problem::warning(
            line,
            Some("period_end"),
            reason::PERIOD_NOT_OVER,
            format!(
                "la période se termine le {} : elle n'est pas achevée, pensez à redéposer \
                 les chiffres définitifs (ils remplaceront ceux-ci)",
                r.period_end.format("%d/%m/%Y")
            ),
        ));
    }
    out
}

fn today_paris(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&Paris).date_naive()
}

fn record_json(geo: &Geography, r: &StatRecord) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("cpts_id".into(), r.cpts_id.clone().into());
    m.insert(
        "cpts_name".into(),
        geo.territory(&r.cpts_id).map(|t| t.name.clone()).into(),
    );
    m.insert("period_start".into(), r.period_start.to_string().into());
    m.insert("period_end".into(), r.period_end.to_string().into());
    m.insert("profession".into(), r.profession.clone().into());
    m.insert(
        "indicators".into(),
        serde_json::to_value(&r.indicators).unwrap_or_default(),
    );
    m
}

fn previous_json(p: &store::Previous) -> Value {
    json!({
        "version": p.version,
        "upload_id": p.upload_id,
        "account": p.account_name,
        "uploaded_at": rfc3339(p.uploaded_at),
        "identical": p.identical,
    })
}

fn upload_summary(u: &store::UploadRow) -> Value {
    json!({
        "id": u.id,
        "account_id": u.account_id,
        "account": u.account_name,
        "uploaded_at": rfc3339(u.uploaded_at),
        "preset": u.preset,
        "content_type": u.content_type,
        "record_count": u.record_count,
        "new_count": u.new_count,
        "replaced_count": u.replaced_count,
        "cpts": u.cpts_ids.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "href": format!("/v1/stats/uploads/{}", u.id),
    })
}

/// `POST /v1/stats/uploads?preset=NAME[&dry_run=true]`: `cpts` (own CPTS) or `admin`.
#[post("/v1/stats/uploads")]
pub async fn upload(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let who = caller.require(&[Role::Admin, Role::Cpts])?.clone();
    let UploadQuery { preset, dry_run } = query.into_inner();
    let preset: Preset = preset
        .as_deref()
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_preset",
                "`preset` is required: canonical, fr-tableur or mensuel-large",
            )
        })?
        .parse()
        .map_err(|e: String| ApiError::bad_request("unknown_preset", e))?;
    let body = match payload.to_bytes_limited(MAX_UPLOAD_BYTES).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(ApiError::bad_request("unreadable_body", e.to_string())),
        Err(_) => {
            return Ok(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "upload_too_large",
                format!(
                    "the upload is larger than {} MiB: split it (e.g. one file per period)",
                    MAX_UPLOAD_BYTES >> 20
                ),
            ));
        }
    };
    let content_type = match upload_type(&req, &body) {
        Ok(t) => t,
        Err(msg) => {
            return Ok(problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_type",
                msg,
            ));
        }
    };

    let own = (who.role == Role::Cpts).then(|| who.cpts_id.clone().unwrap_or_default());
    let today = today_paris(state.clock.now());
    let geo = state.geo.clone();
    let checked: Result<CheckedUpload, UploadErrors> = blocking(move || {
        let resolver = CptsResolver::new(geo);
        check_upload_with(preset, content_type, &body, &|r| {
            service_rule(&resolver, own.as_deref(), today, r)
        })
    })
    .await?;
    let CheckedUpload { records, warnings } = match checked {
        Ok(c) => c,
        Err(UploadErrors { problems }) => {
            if !dry_run {
                let cpts = who.cpts_id.as_deref().unwrap_or(crate::metrics::OTHER);
                state.metrics.stats_upload(cpts, false);
            }
            let errors = problems.iter().filter(|p| p.is_error()).count();
            return Err(ApiError::Unprocessable {
                code: "upload_rejected",
                detail: format!(
                    "le fichier est refusé : {errors} erreur(s) ; rien n'a été enregistré \
                     (voir `problems`, corrigez le fichier et déposez-le à nouveau)"
                ),
                extra: Some(json!({
                    "errors": errors,
                    "warnings": problems.len() - errors,
                    "problems": problems,
                })),
            });
        }
    };

    let records = Arc::new(records);
    let (upload_row, previous) = if dry_run {
        let recs = records.clone();
        (None, state.db.run(move |c| store::plan(c, &recs)).await?)
    } else {
        let meta = store::NewUpload {
            account_id: who.account_id,
            account_name: who.name.clone(),
            preset: preset.as_str().to_string(),
            content_type: match content_type {
                UploadType::Csv => "csv",
                UploadType::Json => "json",
            }
            .to_string(),
            warnings: serde_json::to_string(&warnings).unwrap_or_else(|_| "[]".into()),
        };
        let recs = records.clone();
        let now = state.clock.now().timestamp();
        let (row, prev) = state
            .db
            .run(move |c| store::store_upload(c, meta, &recs, now))
            .await?;
        tracing::info!(
            upload = row.id,
            account = who.account_id,
            records = row.record_count,
            replaced = row.replaced_count,
            "statistics upload stored"
        );
        let mut cpts: Vec<&str> = recs_cpts(&records);
        cpts.dedup();
        for c in cpts {
            state.metrics.stats_upload(c, true);
        }
        (Some(row), prev)
    };

    let items: Vec<Value> = records
        .iter()
        .zip(&previous)
        .map(|(r, p)| {
            let mut m = record_json(&state.geo, r);
            m.insert("line".into(), r.line.into());
            m.insert(
                "action".into(),
                if p.is_some() { "replace" } else { "new" }.into(),
            );
            m.insert(
                "version".into(),
                p.as_ref().map_or(1, |p| p.version + 1).into(),
            );
            m.insert(
                "previous".into(),
                p.as_ref().map_or(Value::Null, previous_json),
            );
            Value::Object(m)
        })
        .collect();
    let replaced = previous.iter().flatten().count();
    let unchanged = previous.iter().flatten().filter(|p| p.identical).count();
    let body = json!({
        "dry_run": dry_run,
        "preset": preset.as_str(),
        "upload": upload_row.as_ref().map(upload_summary),
        "summary": {
            "records": records.len(),
            "new": records.len() - replaced,
            "replaced": replaced,
            "unchanged": unchanged,
            "warnings": warnings.len(),
        },
        "records": items,
        "warnings": warnings,
    });
    Ok(if dry_run {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    })
}

/// The CPTS of the records, sorted.
fn recs_cpts(records: &[StatRecord]) -> Vec<&str> {
    let mut v: Vec<&str> = records.iter().map(|r| r.cpts_id.as_str()).collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------------------------------
// Upload history

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsQuery {
    pub cpts: Option<String>,
    pub limit: Option<i64>,
}

/// The CPTS a reader is limited to: `Some(own)` for a `cpts` account (403 when it asks for
/// another), `None` (everything) for analysts and admins; 403 for operators.
fn read_scope(caller: &Caller, asked: &[String]) -> Result<Option<String>, ApiError> {
    let who: &Principal = caller.require(&[Role::Admin, Role::Analyst, Role::Cpts])?;
    if who.role != Role::Cpts {
        return Ok(None);
    }
    for id in asked {
        caller.require_cpts(id)?;
    }
    Ok(Some(who.cpts_id.clone().unwrap_or_default()))
}

/// `GET /v1/stats/uploads[?cpts=ID&limit=N]`: newest first. `cpts`: its own; analyst/admin: all.
#[get("/v1/stats/uploads")]
pub async fn list_uploads(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<UploadsQuery>,
) -> Result<HttpResponse, ApiError> {
    let UploadsQuery { cpts, limit } = query.into_inner();
    let asked: Vec<String> = cpts.iter().cloned().collect();
    let scope = read_scope(&caller, &asked)?;
    let filter = scope.or(cpts);
    let limit = limit.unwrap_or(100).clamp(1, 1000);
    let rows = state
        .db
        .run(move |c| store::list_uploads(c, filter.as_deref(), limit))
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "uploads": rows.iter().map(upload_summary).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/stats/uploads/{id}`: the upload, the versions it wrote and, per record key,
/// the whole version history (who, when, which figures; `superseded_by` null = current).
#[get("/v1/stats/uploads/{id}")]
pub async fn get_upload(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let scope = read_scope(&caller, &[])?;
    let id = id.into_inner();
    let (row, (written, history)) = state
        .db
        .run(move |c| Ok((store::get_upload(c, id)?, store::upload_versions(c, id)?)))
        .await?;
    if let Some(own) = &scope
        && !written.iter().any(|v| &v.cpts_id == own)
    {
        return Err(ApiError::forbidden(format!(
            "upload {id} carries no record of your CPTS `{own}`"
        )));
    }
    let mut summary = upload_summary(&row);
    summary["warnings"] = serde_json::from_str(&row.warnings).unwrap_or(Value::Null);
    let records: Vec<Value> = written
        .iter()
        .filter(|v| scope.as_ref().is_none_or(|own| &v.cpts_id == own))
        .map(|v| {
            let mut m = record_json(&state.geo, &v.record());
            m.insert("version".into(), v.version.into());
            m.insert("current".into(), v.superseded_by.is_none().into());
            m.insert("superseded_by".into(), v.superseded_by.into());
            let versions: Vec<Value> = history
                .get(&v.key())
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|h| {
                    json!({
                        "version": h.row.version,
                        "upload_id": h.row.upload_id,
                        "account": h.account_name,
                        "uploaded_at": rfc3339(h.uploaded_at),
                        "superseded_by": h.row.superseded_by,
                        "indicators": h.row.indicators(),
                    })
                })
                .collect();
            m.insert("history".into(), versions.into());
            Value::Object(m)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "upload": summary, "records": records })))
}

// ---------------------------------------------------------------------------------------
// Reading the uploaded figures

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// One CPTS id or several, comma-separated.
    pub cpts: Option<String>,
    pub department: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// `cpts`, `department`, `region`, `period`, `profession`, comma-separated.
    pub group_by: Option<String>,
    /// CSV only: `,` (default) or `;` (French spreadsheet: BOM, decimal comma, JJ/MM/AAAA).
    pub sep: Option<String>,
}

fn parse_group_by(s: Option<&str>) -> Result<Vec<GroupBy>, ApiError> {
    let mut out = Vec::new();
    for part in s.unwrap_or("").split(',').map(str::trim) {
        let g = match part {
            "" => continue,
            "cpts" => GroupBy::Cpts,
            "department" => GroupBy::Department,
            "region" => GroupBy::Region,
            "period" => GroupBy::Period,
            "profession" => GroupBy::Profession,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_group_by",
                    format!(
                        "group_by: unknown `{other}` (cpts, department, region, period, profession)"
                    ),
                ));
            }
        };
        if !out.contains(&g) {
            out.push(g);
        }
    }
    Ok(out)
}

/// The CPTS ids a read is restricted to (`None` = all), from `cpts`, `department` and the
/// caller's scope. Unknown ids or departments are 422 (a typo should not read as "no data").
fn selected_cpts(
    state: &AppState,
    caller: &Caller,
    cpts: Option<&str>,
    department: Option<&str>,
) -> Result<Option<Vec<String>>, ApiError> {
    let asked: Vec<String> = cpts
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let scope = read_scope(caller, &asked)?;
    for id in &asked {
        if state.geo.territory(id).is_none() {
            return Err(ApiError::unprocessable(
                "unknown_cpts",
                format!("cpts: no CPTS territory `{id}` (see GET /v1/territories)"),
            ));
        }
    }
    let mut ids: Option<Vec<String>> = match scope {
        Some(own) => Some(vec![own]),
        None if asked.is_empty() => None,
        None => Some(asked),
    };
    if let Some(dept) = department.map(str::trim).filter(|d| !d.is_empty()) {
        if !DEPARTMENTS.contains(&dept) {
            return Err(ApiError::unprocessable(
                "unknown_department",
                format!(
                    "department: `{dept}` is not one of {}",
                    DEPARTMENTS.join(", ")
                ),
            ));
        }
        let in_dept = |id: &str| {
            state
                .geo
                .territory(id)
                .is_some_and(|t| t.department == dept)
        };
        ids = Some(match ids {
            Some(v) => v.into_iter().filter(|id| in_dept(id)).collect(),
            None => state
                .geo
                .territories()
                .iter()
                .filter(|t| t.department == dept)
                .map(|t| t.id.clone())
                .collect(),
        });
    }
    Ok(ids)
}

fn check_window(from: Option<NaiveDate>, to: Option<NaiveDate>) -> Result<(), ApiError> {
    if let (Some(f), Some(t)) = (from, to)
        && t < f
    {
        return Err(ApiError::bad_request(
            "invalid_period",
            format!("`to` ({t}) is before `from` ({f})"),
        ));
    }
    Ok(())
}

fn department_of(geo: &Geography, cpts_id: &str) -> String {
    geo.territory(cpts_id)
        .map_or_else(|| "inconnu".to_string(), |t| t.department.clone())
}

/// Current uploaded records for a read, aggregated.
async fn read_aggregate(
    state: &AppState,
    caller: &Caller,
    q: &ReadQuery,
) -> Result<(Vec<GroupBy>, Vec<AggregateRow>), ApiError> {
    let group_by = parse_group_by(q.group_by.as_deref())?;
    check_window(q.from, q.to)?;
    let ids = selected_cpts(state, caller, q.cpts.as_deref(), q.department.as_deref())?;
    let (from, to) = (q.from, q.to);
    let rows = state
        .db
        .run(move |c| store::current_records(c, ids.as_deref(), from, to))
        .await?;
    let records: Vec<StatRecord> = rows.iter().map(store::VersionRow::record).collect();
    let depts: Vec<String> = records
        .iter()
        .map(|r| department_of(&state.geo, &r.cpts_id))
        .collect();
    let views: Vec<StoredRecordView<'_>> = records
        .iter()
        .zip(&depts)
        .map(|(r, d)| StoredRecordView::new(r, d))
        .collect();
    Ok((group_by.clone(), aggregate(&views, &group_by)))
}

/// The indicators of an aggregate row: `{sum, records}` per count (`sum` null when no record
/// counted it), and the weighted median delay.
fn indicators_json(row: &AggregateRow) -> Value {
    let mut m = serde_json::Map::new();
    for ind in Indicator::COUNTS {
        let s = row.count(ind);
        m.insert(
            ind.name().into(),
            json!({ "sum": (s.records > 0).then_some(s.sum), "records": s.records }),
        );
    }
    m.insert(
        Indicator::MedianDelayHours.name().into(),
        json!({
            "value": row.median_delay_hours.map(|v| (v * 100.0).round() / 100.0),
            "records": row.median_delay_records,
            "weighting": row.median_delay_weighting.map(|w| w.as_str()),
        }),
    );
    Value::Object(m)
}

fn row_json(geo: &Geography, row: &AggregateRow) -> Value {
    let mut group = serde_json::Map::new();
    for g in &row.group {
        match g {
            GroupValue::Cpts(id) => {
                group.insert("cpts_id".into(), id.clone().into());
                group.insert(
                    "cpts_name".into(),
                    geo.territory(id).map(|t| t.name.clone()).into(),
                );
            }
            GroupValue::Department(d) => _ = group.insert("department".into(), d.clone().into()),
            GroupValue::Region(r) => _ = group.insert("region".into(), r.clone().into()),
            GroupValue::Period(a, b) => {
                group.insert("period_start".into(), a.to_string().into());
                group.insert("period_end".into(), b.to_string().into());
            }
            GroupValue::Profession(p) => _ = group.insert("profession".into(), p.clone().into()),
        }
    }
    json!({ "group": group, "records": row.records, "indicators": indicators_json(row) })
}

fn group_name(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Cpts => "cpts",
        GroupBy::Department => "department",
        GroupBy::Region => "region",
        GroupBy::Period => "period",
        GroupBy::Profession => "profession",
    }
}

/// `GET /v1/stats?cpts=&department=&from=&to=&group_by=`: analyst/admin; `cpts`: its own.
#[get("/v1/stats")]
pub async fn read(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let (group_by, rows) = read_aggregate(&state, &caller, &q).await?;
    Ok(HttpResponse::Ok().json(json!({
        "source": "uploaded",
        "filter": {
            "cpts": q.cpts, "department": q.department,
            "from": q.from, "to": q.to,
            "period_rule": "a record counts when its whole period lies inside [from, to]",
        },
        "group_by": group_by.iter().map(|g| group_name(*g)).collect::<Vec<_>>(),
        "rows": rows.iter().map(|r| row_json(&state.geo, r)).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/stats.csv`: the same rows as CSV; `sep=;` for French spreadsheets.
#[get("/v1/stats.csv")]
pub async fn read_csv(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let french = match q.sep.as_deref() {
        None | Some(",") => false,
        Some(";") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_sep",
                format!("sep: `{other}` is not `,` or `;`"),
            ));
        }
    };
    let (_, rows) = read_aggregate(&state, &caller, &q).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"sasnp-stats.csv\"",
        ))
        .body(to_csv(&rows, french)))
}

/// `GET /v1/stats/schema.json`: the JSON Schema of a canonical record (public).
#[get("/v1/stats/schema.json")]
pub async fn schema() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/schema+json")
        .body(SCHEMA_JSON)
}

// ---------------------------------------------------------------------------------------
// Figures sasnp computes itself

/// Midnight (Europe/Paris) starting `day`, as epoch seconds.
fn paris_midnight(day: NaiveDate) -> i64 {
    let local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    // Midnight is never in a French DST gap (changes happen at 02:00/03:00).
    Paris
        .from_local_datetime(&local)
        .earliest()
        .map_or_else(|| local.and_utc().timestamp(), |t| t.timestamp())
}

const HOLD_STATUSES: [&str; 4] = ["active", "released", "expired", "confirmed"];
const APPOINTMENT_STATUSES: [&str; 4] = ["booked", "fulfilled", "noshow", "cancelled"];
const ORIENTATION_CATEGORIES: [&str; 3] = ["001", "002", "003"];

fn zeroed(keys: &[&str]) -> BTreeMap<String, u64> {
    keys.iter().map(|k| (k.to_string(), 0)).collect()
}

/// `GET /v1/stats/computed?from=&to=[&cpts=&department=]`: what sasnp counted itself, per
/// CPTS over the days `[from, to]` (Europe/Paris), beside the uploaded figures of the records
/// lying inside that window. analyst/admin; `cpts`: its own.
#[get("/v1/stats/computed")]
pub async fn computed(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    if q.group_by.is_some() || q.sep.is_some() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "computed figures are per CPTS over [from, to]: `group_by` and `sep` do not apply",
        ));
    }
    let (Some(from), Some(to)) = (q.from, q.to) else {
        return Err(ApiError::bad_request(
            "missing_period",
            "`from` and `to` (YYYY-MM-DD, Europe/Paris days, both included) are required",
        ));
    };
    check_window(Some(from), Some(to))?;
    if (to - from).num_days() + 1 > MAX_COMPUTED_DAYS {
        return Err(ApiError::bad_request(
            "invalid_period",
            format!("the window is limited to {MAX_COMPUTED_DAYS} days"),
        ));
    }
    let ids = selected_cpts(&state, &caller, q.cpts.as_deref(), q.department.as_deref())?;
    let scoped = caller.0.role == Role::Cpts;
    let (start, end) = (
        paris_midnight(from),
        paris_midnight(to + chrono::Days::new(1)),
    );
    let ids_db = ids.clone();
    let (raw, uploaded) = state
        .db
        .run(move |c| {
            Ok((
                store::computed(c, start, end, from, to)?,
                store::current_records(c, ids_db.as_deref(), Some(from), Some(to))?,
            ))
        })
        .await?;
    let territories: Vec<&crate::geo::Territory> = match &ids {
        Some(ids) => ids
            .iter()
            .filter_map(|id| state.geo.territory(id))
            .collect(),
        None => state.geo.territories().iter().collect(),
    };

    let records: Vec<StatRecord> = uploaded.iter().map(store::VersionRow::record).collect();
    let depts: Vec<String> = records
        .iter()
        .map(|r| department_of(&state.geo, &r.cpts_id))
        .collect();
    let views: Vec<StoredRecordView<'_>> = records
        .iter()
        .zip(&depts)
        .map(|(r, d)| StoredRecordView::new(r, d))
        .collect();
    let by_cpts: HashMap<String, AggregateRow> = aggregate(&views, &[GroupBy::Cpts])
        .into_iter()
        .filter_map(|row| match row.group.first() {
            Some(GroupValue::Cpts(id)) => Some((id.clone(), row)),
            _ => None,
        })
        .collect();

    let mut rows: Vec<Value> = Vec::new();
    for t in territories {
        let slots = raw.slots.get(&t.id).copied().unwrap_or_default();
        let mut holds = zeroed(&HOLD_STATUSES);
        for ((cpts, status), n) in &raw.holds {
            if cpts == &t.id {
                *holds.entry(status.clone()).or_default() += n;
            }
        }
        let mut by_status = zeroed(&APPOINTMENT_STATUSES);
        let mut by_orientation = zeroed(&ORIENTATION_CATEGORIES);
        for ((cpts, status, cat), n) in &raw.appointments {
            if cpts == &t.id {
                *by_status.entry(status.clone()).or_default() += n;
                *by_orientation.entry(cat.clone()).or_default() += n;
            }
        }
        let mut searches = store::SearchCounts::default();
        for ((cpts, _), n) in &raw.searches {
            if cpts == &t.id {
                searches.add(n);
            }
        }
        rows.push(json!({
            "cpts_id": t.id,
            "cpts_name": t.name,
            "department": t.department,
            "computed": {
                "slots": {
                    "count": slots.count,
                    "hours": (slots.hours * 100.0).round() / 100.0,
                    "booked_through_sasnp": slots.booked_through_sasnp,
                },
                "holds": { "count": holds.values().sum::<u64>(), "by_status": holds },
                "appointments": {
                    "count": by_status.values().sum::<u64>(),
                    "by_status": by_status,
                    "by_orientation_category": by_orientation,
                },
                "searches": searches,
            },
            "uploaded": by_cpts.get(&t.id).map(|r| json!({
                "records": r.records,
                "indicators": indicators_json(r),
            })),
        }));
    }
    // Searches outside every territory belong to no CPTS: only region-wide readers see them.
    let outside: Vec<Value> = if scoped {
        Vec::new()
    } else {
        let mut per_dept: BTreeMap<&str, store::SearchCounts> = BTreeMap::new();
        for ((cpts, dept), n) in &raw.searches {
            if cpts == crate::stats::tally::NO_CPTS
                && q.department.as_deref().is_none_or(|d| d == dept)
            {
                per_dept.entry(dept.as_str()).or_default().add(n);
            }
        }
        per_dept
            .into_iter()
            .map(|(d, n)| json!({"department": d, "searches": n}))
            .collect()
    };
    Ok(HttpResponse::Ok().json(json!({
        "source": "computed",
        "from": from,
        "to": to,
        "timezone": "Europe/Paris",
        "rules": {
            "slots_holds_appointments": "attributed to the day the slot starts (Europe/Paris)",
            "searches": "attributed to the day of the search",
            "uploaded": "records whose whole period lies inside [from, to]",
        },
        "rows": rows,
        "searches_outside_cpts": outside,
    })))
}
