//! `GET /metrics` (Prometheus text format) and the middleware that counts every HTTP request by
//! method, route pattern and status.
//!
//! When `metrics_token` is configured, `/metrics` wants `Authorization: Bearer <token>` and
//! answers 401 otherwise. Supply and source gauges are recomputed at each scrape, off the actix
//! workers.

use crate::error::ApiError;
use crate::http::AppState;
use crate::metrics::{Metrics, ScrapeInput, method_label};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::{HttpRequest, HttpResponse, get, web};
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// How far back a scrape looks for each CPTS's latest statistics period, in days.
pub const STATS_LOOKBACK_DAYS: i64 = 400;

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorised(req: &HttpRequest, token: &str) -> bool {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same_secret(given.trim().as_bytes(), token.as_bytes()))
}

#[get("/metrics")]
pub async fn scrape(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = state
        .settings
        .metrics_token
        .as_deref()
        .filter(|t| !t.is_empty());
    if token.is_some_and(|t| !authorised(&req, t)) {
        return Err(ApiError::Unauthorized);
    }
    let sources = match state.db.run(|c| crate::store::sources::list(c, None)).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: sources not readable, source gauges keep their last values");
            None
        }
    };
    // Statistics of the last 400 days: enough to hold every CPTS's latest period.
    let since = state.clock.now().date_naive() - chrono::Duration::days(STATS_LOOKBACK_DAYS);
    let stats = match state
        .db
        .run(move |c| crate::store::stats::current_records(c, None, Some(since), None))
        .await
    {
        Ok(rows) => Some(
            rows.iter()
                .map(crate::store::stats::VersionRow::record)
                .collect::<Vec<_>>(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: statistics not readable, their gauges keep their last values");
            None
        }
    };
    let st = state.clone();
    let text = tokio::task::spawn_blocking(move || {
        let now = st.clock.now().timestamp();
        let settings = &st.settings;
        let freshness = |s: &crate::store::sources::SourceRow| {
            let meta = crate::index::load::source_meta(s, settings);
            (meta.stale_after_s, meta.is_fresh(now))
        };
        st.metrics.refresh(&ScrapeInput {
            now,
            index: &st.index,
            sources: sources.as_deref(),
            freshness: &freshness,
            pool: st.db.pool_state(),
            connection_errors: st.db.connection_errors(),
            stats: stats.as_deref(),
        });
        st.metrics.render()
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(text))
}

/// Middleware recording `sasnp_http_requests_total` and `sasnp_http_request_duration_seconds`.
/// The route label is actix's matched pattern (`/v1/holds/{hold_id}`), never the raw path.
#[derive(Clone)]
pub struct HttpMetrics(pub Arc<Metrics>);

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsService {
            service,
            metrics: self.0.clone(),
        }))
    }
}

pub struct HttpMetricsService<S> {
    service: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let method = method_label(req.method());
        let path = tracing::enabled!(target: "sasnp::access", tracing::Level::INFO)
            .then(|| req.path().to_owned());
        let metrics = self.metrics.clone();
        let fut = self.service.call(req);
        Box::pin(async move {
            let res = fut.await;
            let elapsed = start.elapsed();
            let status = match &res {
                Ok(r) => {
                    let route = r.request().match_pattern();
                    metrics.http_request(
                        method,
                        route.as_deref().unwrap_or(UNMATCHED),
                        r.status(),
                        elapsed,
                    );
                    r.status()
                }
                Err(e) => {
                    let status = e.as_response_error().status_code();
                    metrics.http_request(method, UNMATCHED, status, elapsed);
                    status
                }
            };
            // The access log: one line per request. The path only — a search's query string
            // holds where the patient is, and stays out of the logs.
            tracing::info!(
                target: "sasnp::access",
                %method,
                path = %path.as_deref().unwrap_or_default(),
                status = status.as_u16(),
                us = elapsed.as_micros() as u64,
            );
            res
        })
    }
}
