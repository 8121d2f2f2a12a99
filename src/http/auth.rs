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
use futures_util::future::{Either, LocalBoxFuture, Ready, ready};
use rustc_hash::FxBuildHasher;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a validated token is trusted without asking the database again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Validated tokens, by SHA-256 digest (the database keeps the same digest, hex-encoded). The
/// digest is uniformly distributed, so a fast non-keyed hash (Fx) is enough for the map.
#[derive(Default)]
pub struct TokenCache(DashMap<[u8; 32], (Arc<Principal>, Instant), FxBuildHasher>);

impl TokenCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Arc<Principal>> {
        let entry = self.0.get(digest)?;
        (entry.1.elapsed() < CACHE_TTL).then(|| Arc::clone(&entry.0))
    }
    fn put(&self, digest: [u8; 32], p: Arc<Principal>) {
        self.0.insert(digest, (p, Instant::now()));
    }
    /// Forgets every cached token of an account (after revocation).
    pub fn forget_account(&self, account_id: i64) {
        self.0.retain(|_, (p, _)| p.account_id != account_id);
    }
}

/// The authenticated caller. Extracting it answers 401 when the token is missing or invalid.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

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

/// The token of an `Authorization: Bearer …` header, borrowed from the request.
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequest for Caller {
    type Error = ApiError;
    /// Ready at once when the token is cached (the search hot path); the database is asked
    /// otherwise.
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(token) = bearer(req) else {
            return Either::Left(ready(Err(ApiError::Unauthorized)));
        };
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return Either::Left(ready(Err(ApiError::internal(anyhow::anyhow!(
                "no app state"
            )))));
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(p) = state.tokens.get(&digest) {
            return Either::Left(ready(Ok(Caller(p))));
        }
        let token = token.to_string();
        let state = state.clone();
        Either::Right(Box::pin(async move {
            let principal = Arc::new(
                state
                    .db
                    .authenticate(token)
                    .await?
                    .ok_or(ApiError::Unauthorized)?,
            );
            state.tokens.put(digest, Arc::clone(&principal));
            Ok(Caller(principal))
        }))
    }
}
