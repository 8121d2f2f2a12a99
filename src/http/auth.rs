//! Bearer-token authentication and role checks.
//!
//! Tokens are looked up by hash in the database, then cached in memory for a short time so the
//! search hot path does not touch the database; revoking an account through this node clears its
//! cache entries at once (other nodes follow within [`CACHE_TTL`]).

use crate::domain::Role;
use crate::error::ApiError;
use crate::http::AppState;
use crate::store::accounts::Principal;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// How long a validated token is trusted without asking the database again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Validated tokens, by SHA-256 digest (the database keeps the same digest, hex-encoded).
#[derive(Default)]
pub struct TokenCache(DashMap<[u8; 32], (Principal, Instant)>);

impl TokenCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Principal> {
        let entry = self.0.get(digest)?;
        (entry.1.elapsed() < CACHE_TTL).then(|| entry.0.clone())
    }
    fn put(&self, digest: [u8; 32], p: Principal) {
        self.0.insert(digest, (p, Instant::now()));
    }
    /// Forgets every cached token of an account (after revocation).
    pub fn forget_account(&self, account_id: i64) {
        self.0.retain(|_, (p, _)| p.account_id != account_id);
    }
}

/// The authenticated caller. Extracting it answers 401 when the token is missing or invalid.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(format!(
                "this action needs the role {}; your account `{}` is {}",
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                self.0.name,
                self.0.role.as_str()
            )))
        }
    }

    /// 403 unless the caller may act for `cpts_id`: admin always, a `cpts` account only for its own.
    pub fn require_cpts(&self, cpts_id: &str) -> Result<&Principal, ApiError> {
        match self.0.role {
            Role::Admin => Ok(&self.0),
            Role::Cpts if self.0.cpts_id.as_deref() == Some(cpts_id) => Ok(&self.0),
            Role::Cpts => Err(ApiError::forbidden(format!(
                "your account is scoped to CPTS `{}`, not `{cpts_id}`",
                self.0.cpts_id.as_deref().unwrap_or("?")
            ))),
            _ => Err(ApiError::forbidden(format!(
                "this action needs an admin or a `cpts` account of `{cpts_id}`"
            ))),
        }
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized)?;
            let state = state.ok_or_else(|| ApiError::internal(anyhow::anyhow!("no app state")))?;
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if let Some(p) = state.tokens.get(&digest) {
                return Ok(Caller(p));
            }
            let principal = state
                .db
                .authenticate(token)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            state.tokens.put(digest, principal.clone());
            Ok(Caller(principal))
        })
    }
}
