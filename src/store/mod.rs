//! Storage: diesel over SQLite (default, bundled) or PostgreSQL (production), chosen from the
//! URL at run time. The database is the source of truth; every call runs on tokio's blocking
//! pool through [`Db::run`], never on an actix worker, with a bounded pool and a timeout.
//!
//! Backend differences live in a few visible places: connection setup ([`ConnectionSetup`]),
//! migrations (one folder per backend) and the rare query written per backend inside
//! [`db_run!`]. Instants are stored as `BIGINT` seconds since the Unix epoch (UTC) on both
//! backends so that one `schema.rs` serves both.

pub mod accounts;
pub mod bookings;
pub mod schema;
pub mod slots;
pub mod sources;
pub mod stats;
pub mod stats_schema;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ConnectionManager, CustomizeConnection, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use std::time::Duration;

#[cfg(feature = "postgres")]
use diesel::PgConnection;
#[cfg(feature = "sqlite")]
use diesel::SqliteConnection;

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("enable at least one database backend: feature `sqlite` or `postgres`");

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Storage failures. `NotFound`/`Conflict` are domain answers; the rest are faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Diesel(#[from] diesel::result::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("the database call took too long")]
    Timeout,
    #[error("database set-up: {0}")]
    Setup(String),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `postgres://`/`postgresql://` → PostgreSQL; `sqlite://PATH`, `sqlite:PATH` or a bare path → SQLite.
    pub fn from_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// SQLite file path from a URL (`sqlite://./x.db`, `sqlite:x.db`, `x.db`).
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// A pooled connection of either backend. Use [`db_run!`] to write a query once for both.
pub enum DbConn {
    #[cfg(feature = "sqlite")]
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    #[cfg(feature = "postgres")]
    Postgres(PooledConnection<ConnectionManager<PgConnection>>),
}

/// Runs `$body` with `$conn` bound to the concrete connection of the active backend. The body
/// is type-checked once per backend, so a query that one backend cannot express fails to build.
#[macro_export]
macro_rules! db_run {
    ($dbconn:expr, |$conn:ident| $body:expr) => {{
        #[allow(unused_imports)]
        use diesel::prelude::*;
        match $dbconn {
            #[cfg(feature = "sqlite")]
            $crate::store::DbConn::Sqlite(c) => {
                let $conn: &mut diesel::SqliteConnection = &mut *c;
                $body
            }
            #[cfg(feature = "postgres")]
            $crate::store::DbConn::Postgres(c) => {
                let $conn: &mut diesel::PgConnection = &mut *c;
                $body
            }
        }
    }};
}

impl DbConn {
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "sqlite")]
            DbConn::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            DbConn::Postgres(_) => Backend::Postgres,
        }
    }
}

#[derive(Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(r2d2::Pool<ConnectionManager<SqliteConnection>>),
    #[cfg(feature = "postgres")]
    Postgres(r2d2::Pool<ConnectionManager<PgConnection>>),
}

/// Per-connection set-up, in one place for both backends.
#[derive(Debug, Clone, Copy)]
struct ConnectionSetup {
    timeout: Duration,
}

#[cfg(feature = "sqlite")]
impl CustomizeConnection<SqliteConnection, r2d2::Error> for ConnectionSetup {
    /// Per-connection settings. WAL is a property of the database file, not of a connection:
    /// it is set once, before the pool opens ([`set_wal`]).
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
            self.timeout.as_millis()
        ))
        .map_err(r2d2::Error::QueryError)
    }
}

/// Puts the SQLite database in WAL mode unless it is already. Changing the mode takes an
/// exclusive lock: done by each new pool connection, it failed at once ("database is locked",
/// without waiting for `busy_timeout`) whenever another connection held the file — the pool's
/// first connections, opened together on a new file, or any connection opened during a
/// snapshot's write transaction. [`Db::connect`] therefore sets it on one connection before
/// the pool opens the others; the mode stays with the file.
#[cfg(feature = "sqlite")]
fn set_wal(conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        journal_mode: String,
    }
    let mode = diesel::sql_query("PRAGMA journal_mode").get_result::<Mode>(conn)?;
    if mode.journal_mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    conn.batch_execute("PRAGMA journal_mode = WAL")
}

/// Counts (and logs) the connections the pool failed to open; r2d2 retries them on its own,
/// so these failures never reach a request, but each one is a fault worth seeing
/// ([`Db::connection_errors`], exported as a metric).
#[derive(Debug, Clone, Default)]
struct ConnectionErrors(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl r2d2::HandleError<r2d2::Error> for ConnectionErrors {
    fn handle_error(&self, error: r2d2::Error) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(%error, "a database connection could not be opened (the pool retries)");
    }
}

#[cfg(feature = "postgres")]
impl CustomizeConnection<PgConnection, r2d2::Error> for ConnectionSetup {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute(&format!(
            "SET statement_timeout = {}; SET application_name = 'sasnp'; SET TIME ZONE 'UTC';",
            self.timeout.as_millis()
        ))
        .map_err(r2d2::Error::QueryError)
    }
}

/// The database handle shared by the whole service (cheap to clone).
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    timeout: Duration,
    connection_errors: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Db {
    /// Opens the pool (SQLite: creates the file) and runs pending migrations.
    pub fn connect(url: &str, pool_size: u32, timeout: Duration) -> Result<Db, StoreError> {
        let setup = ConnectionSetup { timeout };
        let errors = ConnectionErrors::default();
        let pool = match Backend::from_url(url) {
            Backend::Sqlite => {
                #[cfg(feature = "sqlite")]
                {
                    let path = sqlite_path(url);
                    if let Some(parent) = std::path::Path::new(path).parent()
                        && !parent.as_os_str().is_empty()
                    {
                        {
                            std::fs::create_dir_all(parent).map_err(|e| {
                                StoreError::Setup(format!(
                                    "cannot create {}: {e}",
                                    parent.display()
                                ))
                            })?;
                        }
                    }
                    {
                        use diesel::Connection;
                        let mut first = SqliteConnection::establish(path)
                            .map_err(|e| StoreError::Setup(format!("SQLite {path}: {e}")))?;
                        setup
                            .on_acquire(&mut first)
                            .map_err(|e| StoreError::Setup(format!("SQLite {path}: {e}")))?;
                        set_wal(&mut first)
                            .map_err(|e| StoreError::Setup(format!("SQLite {path}: {e}")))?;
                    }
                    let manager = ConnectionManager::<SqliteConnection>::new(path);
                    Pool::Sqlite(
                        r2d2::Pool::builder()
                            .max_size(pool_size.max(1))
                            .connection_timeout(timeout)
                            .connection_customizer(Box::new(setup))
                            .error_handler(Box::new(errors.clone()))
                            .build(manager)
                            .map_err(|e| StoreError::Setup(format!("SQLite {path}: {e}")))?,
                    )
                }
                #[cfg(not(feature = "sqlite"))]
                return Err(StoreError::Setup(
                    "this build has no SQLite support (feature `sqlite`)".into(),
                ));
            }
            Backend::Postgres => {
                #[cfg(feature = "postgres")]
                {
                    let manager = ConnectionManager::<PgConnection>::new(url);
                    Pool::Postgres(
                        r2d2::Pool::builder()
                            .max_size(pool_size.max(1))
                            .connection_timeout(timeout)
                            .connection_customizer(Box::new(setup))
                            .error_handler(Box::new(errors.clone()))
                            .build(manager)
                            .map_err(|e| {
                                StoreError::Setup(format!(
                                    "PostgreSQL {}: {e}",
                                    crate::config::redact_url(url)
                                ))
                            })?,
                    )
                }
                #[cfg(not(feature = "postgres"))]
                return Err(StoreError::Setup(
                    "this build has no PostgreSQL support: rebuild with `--features postgres`"
                        .into(),
                ));
            }
        };
        let db = Db {
            pool,
            timeout,
            connection_errors: errors.0,
        };
        db.migrate()?;
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// A connection from the pool, for synchronous callers (CLI, start-up, background threads).
    pub fn conn(&self) -> Result<DbConn, StoreError> {
        Ok(match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => DbConn::Sqlite(p.get()?),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => DbConn::Postgres(p.get()?),
        })
    }

    /// Runs pending migrations; returns how many ran.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let ran = match &mut conn {
            #[cfg(feature = "sqlite")]
            DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            #[cfg(feature = "postgres")]
            DbConn::Postgres(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len()),
        }
        .map_err(|e| StoreError::Setup(format!("migrations: {e}")))?;
        Ok(ran)
    }

    /// Connections the pool failed to open since the start (it retried them).
    pub fn connection_errors(&self) -> u64 {
        self.connection_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections in use and idle, for metrics.
    pub fn pool_state(&self) -> (u32, u32) {
        let s = match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => p.state(),
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => p.state(),
        };
        (s.connections - s.idle_connections, s.idle_connections)
    }

    /// Runs `f` with a pooled connection on the blocking pool, bounded by the configured timeout.
    /// This is the only way async code reaches the database.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = db.conn()?;
            f(&mut conn)
        });
        // The pool wait is bounded by `connection_timeout`, statements by busy_timeout /
        // statement_timeout; this outer bound only stops a caller from waiting forever.
        match tokio::time::timeout(self.timeout * 3, task).await {
            Ok(Ok(res)) => res,
            Ok(Err(join)) => Err(StoreError::Other(anyhow::anyhow!(
                "database task failed: {join}"
            ))),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Like [`Db::run`] without the outer time bound: for a whole-feed snapshot, whose one
    /// transaction may legitimately take tens of seconds (statements keep their own timeouts
    /// on PostgreSQL; SQLite's `busy_timeout` still bounds the wait for the write lock).
    pub async fn run_long<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.conn()?;
            f(&mut conn)
        })
        .await
        .map_err(|join| StoreError::Other(anyhow::anyhow!("database task failed: {join}")))?
    }

    /// `SELECT 1`: is the database reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|conn| {
            db_run!(conn, |c| c.batch_execute("SELECT 1"))?;
            Ok(())
        })
        .await
    }
}

/// Seconds since the Unix epoch, the stored form of every instant.
pub fn to_epoch(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp()
}

/// Inverse of [`to_epoch`].
pub fn from_epoch(s: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(s, 0).unwrap_or_default()
}

/// Runs `f` in a write transaction: `BEGIN IMMEDIATE` on SQLite (so concurrent writers wait on
/// `busy_timeout` instead of failing on a lock upgrade), a plain transaction on PostgreSQL.
pub fn write_tx<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // Statements are issued by hand so that `f` keeps the backend-neutral `DbConn`; a panic in
    // `f` still rolls back, so no connection goes back to the pool inside a transaction.
    let begin = match conn.backend() {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    db_run!(&mut *conn, |c| c.batch_execute(begin))?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *conn)));
    match result {
        Ok(Ok(v)) => {
            db_run!(&mut *conn, |c| c.batch_execute("COMMIT"))?;
            Ok(v)
        }
        Ok(Err(e)) => {
            rollback(conn);
            Err(e)
        }
        Err(panic) => {
            rollback(conn);
            std::panic::resume_unwind(panic)
        }
    }
}

fn rollback(conn: &mut DbConn) {
    if let Err(e) = db_run!(&mut *conn, |c| c.batch_execute("ROLLBACK")) {
        tracing::error!(error = %e, "rollback failed");
    }
}
