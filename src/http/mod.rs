//! The HTTP surface (actix-web): one module per resource, JSON everywhere, errors as
//! `application/problem+json`.

pub mod accounts;
pub mod auth;
pub mod bookings;
pub mod health;
pub mod metrics;
pub mod search;
pub mod search_json;
pub mod sources;
pub mod stats;
pub mod territories;
pub mod ui;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::error;
use crate::geo::Geography;
use crate::store::Db;
use actix_web::web;
use std::sync::Arc;

/// Everything a handler may need, shared by all workers.
pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    pub geo: Arc<Geography>,
    pub clock: SharedClock,
    pub tokens: auth::TokenCache,
    pub index: crate::index::SlotIndex,
    pub poller: std::sync::Arc<crate::ingest::poll::Poller>,
    /// Searches per CPTS, department and day (flushed to the database in the background).
    pub tally: std::sync::Arc<crate::stats::tally::SearchTally>,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Largest feed body accepted by `PUT /v1/sources/{id}/slots` (a 1M-slot NDJSON snapshot is
/// about 400 MB).
pub const FEED_BODY_LIMIT: usize = 1 << 30;

/// Registers every route and the extractor error handlers.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(FEED_BODY_LIMIT))
        .app_data(
            web::JsonConfig::default()
                .limit(1 << 20)
                .error_handler(error::json_error_handler),
        )
        .app_data(web::QueryConfig::default().error_handler(error::query_error_handler))
        .app_data(web::PathConfig::default().error_handler(error::path_error_handler))
        // the hot routes first: actix tries routes in order (and the metrics middleware matches
        // the route pattern once more), so the operator's search must not wait behind patterns
        .service(health::health)
        .service(search::search_slots)
        .service(health::ready)
        .service(metrics::scrape)
        .service(territories::list)
        .service(territories::at)
        .service(territories::communes)
        .service(accounts::create)
        .service(accounts::list)
        .service(accounts::revoke)
        .service(sources::create)
        .service(sources::list)
        .service(sources::show)
        .service(sources::put_slots)
        .service(sources::report)
        .service(bookings::hold)
        .service(bookings::release)
        .service(bookings::confirm)
        .service(bookings::outcome)
        .service(bookings::list)
        // statistics: uploads, reads, computed figures
        .service(stats::upload)
        .service(stats::list_uploads)
        .service(stats::get_upload)
        .service(stats::read)
        .service(stats::read_csv)
        .service(stats::schema)
        .service(stats::computed)
        .configure(ui::configure);
}
