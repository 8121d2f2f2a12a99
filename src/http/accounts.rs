//! `/v1/accounts`: admins create, list and revoke accounts.

use crate::domain::Role;
use crate::error::ApiError;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::store::accounts;
use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub name: String,
    pub role: Role,
    pub cpts: Option<String>,
}

/// Checks the name and the role/CPTS pairing (a `cpts` account needs a known CPTS; others none).
pub fn check_new_account(
    state: &AppState,
    name: &str,
    role: Role,
    cpts: Option<&str>,
) -> Result<(), ApiError> {
    let name_ok =
        !name.trim().is_empty() && name.len() <= 100 && !name.chars().any(char::is_control);
    if !name_ok {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "`name` must be 1 to 100 printable characters",
        ));
    }
    match (role, cpts) {
        (Role::Cpts, None) => Err(ApiError::unprocessable(
            "cpts_required",
            "a `cpts` account needs `cpts` (a CPTS id)",
        )),
        (Role::Cpts, Some(id)) if state.geo.territory(id).is_none() => {
            Err(ApiError::unprocessable(
                "unknown_cpts",
                format!("`cpts`: no CPTS territory `{id}` (see GET /v1/territories)"),
            ))
        }
        (Role::Cpts, Some(_)) => Ok(()),
        (_, Some(_)) => Err(ApiError::unprocessable(
            "cpts_not_allowed",
            "`cpts` only applies to role `cpts`",
        )),
        (_, None) => Ok(()),
    }
}

#[post("/v1/accounts")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewAccount>,
) -> Result<HttpResponse, ApiError> {
    let actor = caller.require(&[Role::Admin])?.clone();
    let NewAccount { name, role, cpts } = body.into_inner();
    check_new_account(&state, &name, role, cpts.as_deref())?;
    let now = state.clock.now().timestamp();
    let (account, token) = state
        .db
        .run(move |c| accounts::create_or_reuse(c, name.trim(), role, cpts.as_deref(), now))
        .await?;
    tracing::info!(
        account = account.id,
        by = actor.account_id,
        role = role.as_str(),
        "account token issued"
    );
    Ok(HttpResponse::Created().json(json!({"id": account.id, "name": account.name, "role": role, "cpts": account.cpts_id, "token": token})))
}

#[get("/v1/accounts")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let all = state.db.run(accounts::list).await?;
    Ok(HttpResponse::Ok().json(all))
}

#[delete("/v1/accounts/{id}")]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let id = id.into_inner();
    let now = state.clock.now().timestamp();
    state.db.run(move |c| accounts::revoke(c, id, now)).await?;
    state.tokens.forget_account(id);
    Ok(HttpResponse::NoContent().finish())
}
