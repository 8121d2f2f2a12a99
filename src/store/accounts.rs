//! Accounts and bearer tokens. A token is 256 random bits shown once; only its SHA-256 is
//! stored (a fast hash is enough for high-entropy secrets). Revoking an account disables it and
//! revokes every token it has.

use super::schema::{accounts, api_tokens};
use super::{Db, DbConn, StoreError};
use crate::db_run;
use crate::domain::Role;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// An account as the API shows it (never with a token).
#[derive(Debug, Clone, PartialEq, Serialize, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = accounts)]
pub struct Account {
    pub id: i64,
    pub name: String,
    #[diesel(deserialize_as = String)]
    #[serde(serialize_with = "ser_role")]
    pub role: RoleText,
    pub cpts_id: Option<String>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// A stored role string, parsed on read (rows with an unknown role cannot exist: CHECK constraint).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoleText(pub Role);

impl From<String> for RoleText {
    fn from(s: String) -> Self {
        RoleText(s.parse().unwrap_or(Role::Analyst))
    }
}

fn ser_role<S: serde::Serializer>(r: &RoleText, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.0.as_str())
}

impl Account {
    pub fn role(&self) -> Role {
        self.role.0
    }
}

/// Who is calling: the account behind a valid token.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub account_id: i64,
    pub name: String,
    pub role: Role,
    pub cpts_id: Option<String>,
}

/// A fresh random token (`sasnp_` + 64 hex digits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sasnp_{}", hex::encode(bytes))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates the account named `name`, or reuses it when it exists with the same role and CPTS
/// (a different role/CPTS under an existing name is a conflict), then issues a new token.
/// Returns the account and the clear token (shown once).
pub fn create_or_reuse(
    conn: &mut DbConn,
    name: &str,
    role: Role,
    cpts_id: Option<&str>,
    now: i64,
) -> Result<(Account, String), StoreError> {
    let token = new_token();
    let hash = hash_token(&token);
    let account = super::write_tx(conn, |conn| {
        db_run!(conn, |c| (|| -> Result<_, StoreError> {
            let existing: Option<Account> = accounts::table
                .filter(accounts::name.eq(name))
                .select(Account::as_select())
                .first(c)
                .optional()?;
            let account = match existing {
                Some(a)
                    if a.role() == role
                        && a.cpts_id.as_deref() == cpts_id
                        && a.disabled_at.is_none() =>
                {
                    a
                }
                Some(a) if a.disabled_at.is_some() => {
                    return Err(StoreError::Conflict(format!(
                        "account `{name}` was revoked; choose another name"
                    )));
                }
                Some(a) => {
                    return Err(StoreError::Conflict(format!(
                        "account `{name}` exists with role {} and CPTS {:?}",
                        a.role().as_str(),
                        a.cpts_id
                    )));
                }
                None => diesel::insert_into(accounts::table)
                    .values((
                        accounts::name.eq(name),
                        accounts::role.eq(role.as_str()),
                        accounts::cpts_id.eq(cpts_id),
                        accounts::created_at.eq(now),
                    ))
                    .returning(Account::as_returning())
                    .get_result(c)?,
            };
            diesel::insert_into(api_tokens::table)
                .values((
                    api_tokens::account_id.eq(account.id),
                    api_tokens::token_hash.eq(&hash),
                    api_tokens::created_at.eq(now),
                ))
                .execute(c)?;
            Ok(account)
        })())
    })?;
    Ok((account, token))
}

/// Every account, oldest first.
pub fn list(conn: &mut DbConn) -> Result<Vec<Account>, StoreError> {
    Ok(db_run!(conn, |c| accounts::table
        .order(accounts::id)
        .select(Account::as_select())
        .load(c))?)
}

/// Disables the account and revokes all its tokens.
pub fn revoke(conn: &mut DbConn, id: i64, now: i64) -> Result<(), StoreError> {
    super::write_tx(conn, |conn| {
        db_run!(conn, |c| (|| -> Result<_, StoreError> {
            let n = diesel::update(accounts::table.filter(accounts::id.eq(id)))
                .set(accounts::disabled_at.eq(now))
                .execute(c)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no account with id {id}")));
            }
            diesel::update(
                api_tokens::table.filter(
                    api_tokens::account_id
                        .eq(id)
                        .and(api_tokens::revoked_at.is_null()),
                ),
            )
            .set(api_tokens::revoked_at.eq(now))
            .execute(c)?;
            Ok(())
        })())
    })
}

/// The principal behind a clear token, if the token is known, unrevoked and its account enabled.
pub fn authenticate(conn: &mut DbConn, token: &str) -> Result<Option<Principal>, StoreError> {
    let hash = hash_token(token);
    let row: Option<Account> = db_run!(conn, |c| api_tokens::table
        .inner_join(accounts::table)
        .filter(api_tokens::token_hash.eq(&hash))
        .filter(api_tokens::revoked_at.is_null())
        .filter(accounts::disabled_at.is_null())
        .select(Account::as_select())
        .first(c)
        .optional())?;
    Ok(row.map(|a| Principal {
        account_id: a.id,
        name: a.name.clone(),
        role: a.role(),
        cpts_id: a.cpts_id.clone(),
    }))
}

impl Db {
    /// Async wrapper of [`authenticate`].
    pub async fn authenticate(&self, token: String) -> Result<Option<Principal>, StoreError> {
        self.run(move |c| authenticate(c, &token)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), "sasnp_".len() + 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), a);
    }
}
