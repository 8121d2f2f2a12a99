//! Test harness: starts the real server on port 0 with its own database — a temp SQLite file,
//! or, when `TEST_DATABASE_URL` is set (postgres://…), a fresh PostgreSQL database dropped at
//! the end — and an injected clock.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
#[cfg(feature = "postgres")]
use diesel::{Connection, connection::SimpleConnection};
use sasnp::clock::FixedClock;
use sasnp::config::Settings;
use sasnp::domain::Role;
use sasnp::startup::Application;
use std::sync::Arc;

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub clock: FixedClock,
    pub state: actix_web::web::Data<sasnp::http::AppState>,
    pub admin_token: String,
    pub db_url: String,
    _dir: tempfile::TempDir,
    pg_cleanup: Option<(String, String)>,
}

/// 2026-11-23 10:00 Europe/Paris (09:00 UTC), a Monday: the default "now" of tests.
pub fn default_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// A database URL for one test: SQLite in `dir`, or a new PostgreSQL database.
pub fn test_database(dir: &std::path::Path) -> (String, Option<(String, String)>) {
    match std::env::var("TEST_DATABASE_URL") {
        #[cfg(feature = "postgres")]
        Ok(base) if base.starts_with("postgres") => {
            let name = format!("sasnp_t_{}", uuid::Uuid::new_v4().simple());
            let mut admin =
                diesel::PgConnection::establish(&base).expect("connect TEST_DATABASE_URL");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create test database");
            let (prefix, _) = base
                .rsplit_once('/')
                .expect("TEST_DATABASE_URL has a database name");
            (format!("{prefix}/{name}"), Some((base, name)))
        }
        Ok(base) if base.starts_with("postgres") => {
            panic!(
                "TEST_DATABASE_URL is PostgreSQL but this build lacks the `postgres` feature: cargo test --all-features"
            )
        }
        _ => (format!("sqlite://{}", dir.join("sasnp.db").display()), None),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (db_url, pg_cleanup) = test_database(dir.path());
    let mut settings = Settings {
        bind: "127.0.0.1:0".into(),
        database_url: db_url.clone(),
        geodata_dir: None,
        db_pool_size: 4,
        workers: Some(2),
        log: "warn".into(),
        ..Default::default()
    };
    tweak(&mut settings);
    let clock = FixedClock::new(default_now());
    let app = Application::build_with_clock(settings, Arc::new(clock.clone()))
        .await
        .expect("app builds");
    let port = app.port();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let admin_token = {
        let db = state.db.clone();
        db.run(|c| sasnp::store::accounts::create_or_reuse(c, "test-admin", Role::Admin, None, 0))
            .await
            .unwrap()
            .1
    };
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        clock,
        state,
        admin_token,
        db_url,
        _dir: dir,
        pg_cleanup,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A token for a new account of `role` (and CPTS).
    pub async fn token(&self, name: &str, role: Role, cpts: Option<&str>) -> String {
        let (name, cpts) = (name.to_string(), cpts.map(str::to_string));
        self.state
            .db
            .run(move |c| {
                sasnp::store::accounts::create_or_reuse(c, &name, role, cpts.as_deref(), 0)
            })
            .await
            .unwrap()
            .1
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let res = self.get(path, token).await;
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let Some((base, name)) = self.pg_cleanup.take() {
            if let Ok(mut admin) = diesel::PgConnection::establish(&base) {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}
