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
        // background loops tick once at start, then stay out of the way: tests drive polls
        // and hold expiry themselves, deterministically
        poll_tick_s: 3600,
        hold_sweep_s: 3600,
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
        if let Some((base, name)) = self.pg_cleanup.take()
            && let Ok(mut admin) = diesel::PgConnection::establish(&base)
        {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// A row of the test CSV feed: `(id, start "YYYY-MM-DD HH:MM" Paris, minutes, place, profession,
/// specialty, modality, surnumeraire, status)`.
pub struct Row<'a> {
    pub id: &'a str,
    pub start: &'a str,
    pub minutes: u32,
    pub place: Place,
    pub profession: &'a str,
    pub specialty: &'a str,
    pub modality: &'a str,
    pub surnumeraire: bool,
    pub status: &'a str,
}

/// Real places around Nantes and beyond, with distances from Nantes centre (47.2184, -1.5536).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Place {
    /// 0 km
    NantesCentre,
    /// ≈ 4 km south
    Reze,
    /// ≈ 7.3 km west
    SaintHerblain,
    /// ≈ 14.2 km north, in Sucé-sur-Erdre
    SuceSurErdre,
    /// ≈ 50 km west
    SaintNazaire,
}

impl Place {
    pub fn fields(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        // name, address, postcode, city, lat, lon (decimal comma: a French export)
        match self {
            Place::NantesCentre => (
                "Cabinet Graslin",
                "2 rue Crébillon",
                "44000",
                "Nantes",
                "47,2184",
                "-1,5536",
            ),
            Place::Reze => (
                "MSP Rezé",
                "10 rue Jean Jaurès",
                "44400",
                "Rezé",
                "47,1833",
                "-1,5500",
            ),
            Place::SaintHerblain => (
                "Cabinet Bourgonnière",
                "1 bd Salvador Allende",
                "44800",
                "Saint-Herblain",
                "47,2122",
                "-1,6497",
            ),
            Place::SuceSurErdre => (
                "Centre de santé de l'Erdre",
                "5 rue de la Mairie",
                "44240",
                "Sucé-sur-Erdre",
                "47,3456",
                "-1,5278",
            ),
            Place::SaintNazaire => (
                "Cabinet du Port",
                "1 rue du Port",
                "44600",
                "Saint-Nazaire",
                "47,2735",
                "-2,2138",
            ),
        }
    }
}

impl<'a> Row<'a> {
    pub fn new(id: &'a str, start: &'a str, place: Place) -> Self {
        Row {
            id,
            start,
            minutes: 20,
            place,
            profession: "10",
            specialty: "SM54",
            modality: "AMB",
            surnumeraire: false,
            status: "libre",
        }
    }
}

/// A French spreadsheet export (`;`, decimal commas, local times) of `rows`.
pub fn csv_feed(rows: &[Row<'_>]) -> String {
    let mut out = String::from(
        "slot_id;debut;duree;statut;rpps;praticien;profession;specialite;lieu;adresse;code_postal;ville;latitude;longitude;modalite;lien;telephone;en_sus\r\n",
    );
    for (i, r) in rows.iter().enumerate() {
        let (name, addr, pc, city, lat, lon) = r.place.fields();
        out.push_str(&format!(
            "{};{};{};{};{};Dr Test {};{};{};{};{};{};{};{};{};{};https://rdv.example/{};02 40 00 00 {:02};{}\r\n",
            r.id,
            r.start,
            r.minutes,
            r.status,
            10_000_000_000u64 + i as u64,
            i,
            r.profession,
            r.specialty,
            name,
            addr,
            pc,
            city,
            lat,
            lon,
            r.modality,
            r.id,
            i % 100,
            if r.surnumeraire { "oui" } else { "non" },
        ));
    }
    out
}

impl TestApp {
    /// Creates a CSV source for the first CPTS of Loire-Atlantique's Nantes territory and returns its id.
    pub async fn csv_source(&self, token: &str, cpts: &str) -> i64 {
        let res = self
            .client
            .post(self.url("/v1/sources"))
            .bearer_auth(token)
            .json(&serde_json::json!({"name": "Agenda CPTS", "format": "csv", "cpts": cpts}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        res.json::<serde_json::Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
    }

    /// PUTs a CSV snapshot; returns (status, body).
    pub async fn push_csv(
        &self,
        token: &str,
        source: i64,
        body: String,
    ) -> (u16, serde_json::Value) {
        self.push(token, source, "text/csv; charset=utf-8", body)
            .await
    }

    /// PUTs a snapshot of `content_type`; returns (status, body).
    pub async fn push(
        &self,
        token: &str,
        source: i64,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, serde_json::Value) {
        let res = self
            .client
            .put(self.url(&format!("/v1/sources/{source}/slots")))
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// The CPTS territory containing Nantes.
    pub fn nantes_cpts(&self) -> String {
        let p = sasnp::domain::LatLon::new(47.2184, -1.5536).unwrap();
        self.state
            .geo
            .locate(p)
            .unwrap()
            .territory
            .unwrap()
            .id
            .clone()
    }

    pub async fn search(&self, token: &str, query: &str) -> (u16, serde_json::Value) {
        self.get_json(&format!("/v1/search?{query}"), Some(token))
            .await
    }

    pub async fn post_json(
        &self,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let res = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(serde_json::Value::Null),
        )
    }
}

/// Slot ids in a search answer, in order.
pub fn result_ids(body: &serde_json::Value) -> Vec<String> {
    body["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["external_id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

impl TestApp {
    /// The injected clock's now, epoch seconds.
    pub fn clock_now(&self) -> i64 {
        use sasnp::clock::Clock;
        self.clock.now().timestamp()
    }
}

impl TestApp {
    /// The public id of the slot published as `external`, found by an operator's search
    /// around Nantes centre (50 results).
    pub async fn slot_id_near_nantes(&self, op: &str, external: &str) -> i64 {
        let (_, body) = self.search(op, "lat=47.2184&lon=-1.5536&limit=50").await;
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["external_id"] == external)
            .expect(external)["slot_id"]
            .as_i64()
            .unwrap()
    }
}
