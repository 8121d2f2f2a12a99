//! Wiring: builds the whole service from settings, so `main`, tests and benches start the same
//! thing. [`Application::build`] binds (port 0 works) and reports the port before serving.

use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::geo::Geography;
use crate::http::{self, AppState};
use crate::store::Db;
use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// How often search tallies are written to the database.
pub const TALLY_FLUSH_EVERY: Duration = Duration::from_secs(30);

/// A bound, not yet running, server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Opens the database (migrating it), loads the geography, binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Same as [`Application::build`] with an injected clock (tests).
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let url = settings.database_url.clone();
        let (pool, timeout) = (
            settings.db_pool_size,
            Duration::from_secs(settings.db_timeout_s),
        );
        let db = tokio::task::spawn_blocking(move || Db::connect(&url, pool, timeout))
            .await?
            .with_context(|| {
                format!(
                    "opening the database {}",
                    crate::config::redact_url(&settings.database_url)
                )
            })?;
        let dir = settings.geodata_dir.clone();
        let geo = tokio::task::spawn_blocking(move || load_geography(dir.as_deref())).await??;
        let (index, slots, sync) = {
            let (db, settings, now) = (db.clone(), settings.clone(), clock.now().timestamp());
            tokio::task::spawn_blocking(move || {
                let index = crate::index::SlotIndex::default();
                let mut conn = db.conn()?;
                // before the index reads the rows: what commits in between is applied twice
                let sync = crate::index::sync::SyncState::resume(&mut conn, now)?;
                let n = crate::index::load::rebuild_all(&mut conn, &settings, &index, now)?;
                Ok::<_, crate::store::StoreError>((index, n, sync))
            })
            .await??
        };
        tracing::info!(slots, "search index built");
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let workers = settings
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let metrics = Arc::new(crate::metrics::Metrics::for_geography(&geo));
        metrics.set_pool_max(settings.db_pool_size);
        let state = web::Data::new(AppState {
            settings,
            db,
            geo: Arc::new(geo),
            clock,
            tokens: Default::default(),
            index,
            poller: Default::default(),
            tally: Default::default(),
            metrics: metrics.clone(),
        });
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(http::metrics::HttpMetrics(metrics.clone()))
                .app_data(data.clone())
                .configure(http::configure)
        })
        .workers(workers)
        .listen(listener)?
        .run();
        crate::tasks::spawn_hold_sweeper(state.clone());
        crate::tasks::spawn_index_sync(state.clone(), sync);
        crate::ingest::poll::spawn(state.clone(), state.poller.clone());
        state
            .tally
            .spawn_flusher(state.db.clone(), TALLY_FLUSH_EVERY);
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the server stops (Ctrl-C / SIGTERM), then writes the pending search tallies.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.state.tally.flush(&self.state.db).await;
        served
    }
}

/// Loads the geography from `dir`, or from the default folder (`./geodata`, else the crate's).
pub fn load_geography(dir: Option<&std::path::Path>) -> anyhow::Result<Geography> {
    let dir = dir.map_or_else(Geography::default_dir, std::path::Path::to_path_buf);
    Geography::load(&dir).with_context(|| format!("loading geodata from {}", dir.display()))
}
