//! The operator page: `GET /` and its assets under `/ui/`, all embedded in the binary.
//!
//! The page's own files live in `src/ui/`; Leaflet's distribution files are put in `OUT_DIR` by
//! `src/build.rs` from npm (pinned by `src/ui/package-lock.json`, never committed). Nothing is
//! fetched from elsewhere at run time: the page works without internet. A base map is optional
//! (`tile_url`); the page reads it from `/ui/config.json`.
//!
//! Every answer carries a strong `ETag` (content hash) and honours `If-None-Match`; the page and
//! its scripts are revalidated on each load (`no-cache`) so an upgrade of the binary shows at once.

use crate::http::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, route, web};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::LazyLock;

/// One embedded file.
struct Asset {
    content_type: &'static str,
    bytes: &'static [u8],
    etag: String,
}

macro_rules! vendor {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/vendor/", $file)).as_slice()
    };
}

const INDEX_HTML: &str = include_str!("../ui/index.html");

/// Path under `/ui/` → embedded file.
static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    let files: [(&'static str, &'static str, &'static [u8]); 10] = [
        (
            "app.js",
            "text/javascript; charset=utf-8",
            include_str!("../ui/app.js").as_bytes(),
        ),
        (
            "app.css",
            "text/css; charset=utf-8",
            include_str!("../ui/app.css").as_bytes(),
        ),
        (
            "favicon.svg",
            "image/svg+xml",
            include_str!("../ui/favicon.svg").as_bytes(),
        ),
        (
            "vendor/leaflet.js",
            "text/javascript; charset=utf-8",
            vendor!("leaflet.js"),
        ),
        (
            "vendor/leaflet.css",
            "text/css; charset=utf-8",
            vendor!("leaflet.css"),
        ),
        (
            "vendor/images/layers.png",
            "image/png",
            vendor!("images/layers.png"),
        ),
        (
            "vendor/images/layers-2x.png",
            "image/png",
            vendor!("images/layers-2x.png"),
        ),
        (
            "vendor/images/marker-icon.png",
            "image/png",
            vendor!("images/marker-icon.png"),
        ),
        (
            "vendor/images/marker-icon-2x.png",
            "image/png",
            vendor!("images/marker-icon-2x.png"),
        ),
        (
            "vendor/images/marker-shadow.png",
            "image/png",
            vendor!("images/marker-shadow.png"),
        ),
    ];
    files
        .into_iter()
        .map(|(path, content_type, bytes)| {
            let file = Asset {
                content_type,
                bytes,
                etag: etag_of(bytes),
            };
            (path, file)
        })
        .collect()
});

static INDEX_ETAG: LazyLock<String> = LazyLock::new(|| etag_of(INDEX_HTML.as_bytes()));

fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// Registers the page routes (`/`, `/ui/config.json`, `/ui/{file}`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(index).service(config).service(asset);
}

/// True when the client already has this version (`If-None-Match`).
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == etag
        })
}

fn embedded(
    req: &HttpRequest,
    content_type: &str,
    bytes: &'static [u8],
    etag: &str,
) -> HttpResponse {
    let fresh = not_modified(req, etag);
    let mut answer = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header((header::ETAG, etag.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        answer.finish()
    } else {
        answer.content_type(content_type.to_string()).body(bytes)
    }
}

/// The origin a tile URL template loads images from, as a CSP source (`{s}` subdomains → `*`).
/// `None` when the template is relative (same origin) or its host is not a plain name.
fn tile_source(template: &str) -> Option<String> {
    let (scheme, rest) = template.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let host = rest.split('/').next()?.replace("{s}", "*");
    let plain = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*' | '[' | ']'));
    Some(if plain {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}:")
    })
}

/// The page's Content-Security-Policy: everything from this server, map tiles from `tile_url`.
fn content_security_policy(tile_url: Option<&str>) -> String {
    let tiles = tile_url
        .and_then(tile_source)
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// The operator page.
#[route("/", method = "GET", method = "HEAD")]
pub async fn index(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut answer = embedded(
        &req,
        "text/html; charset=utf-8",
        INDEX_HTML.as_bytes(),
        &INDEX_ETAG,
    );
    let headers = answer.headers_mut();
    if let Ok(csp) =
        header::HeaderValue::from_str(&content_security_policy(state.settings.tile_url.as_deref()))
    {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    answer
}

/// What the page needs to know of the configuration (nothing secret).
#[get("/ui/config.json")]
pub async fn config(state: web::Data<AppState>) -> HttpResponse {
    let tile_url = state.settings.tile_url.as_deref().filter(|u| !u.is_empty());
    let attribution = tile_url.map(|u| {
        if u.contains("openstreetmap") {
            "© contributeurs OpenStreetMap"
        } else {
            "Fond de carte : serveur de tuiles configuré"
        }
    });
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(json!({
            "tile_url": tile_url,
            "tile_attribution": attribution,
            "hold_ttl_s": state.settings.hold_ttl_s,
            "version": env!("CARGO_PKG_VERSION"),
        }))
}

/// The page's scripts, styles and Leaflet's files.
#[route("/ui/{file:.+}", method = "GET", method = "HEAD")]
pub async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    match ASSETS.get(file.as_str()) {
        Some(a) => embedded(&req, a.content_type, a.bytes, &a.etag),
        None => crate::error::ApiError::not_found(format!(
            "no file `/ui/{file}`: the page's files are /ui/app.js, /ui/app.css and /ui/vendor/…"
        ))
        .error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_not_empty() {
        for (path, a) in ASSETS.iter() {
            assert!(a.bytes.len() > 50, "{path} is empty");
        }
        assert!(INDEX_HTML.contains("/ui/app.js"));
    }

    #[test]
    fn tile_sources_for_the_csp() {
        assert_eq!(
            tile_source("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png").as_deref(),
            Some("https://*.tile.openstreetmap.org")
        );
        assert_eq!(
            tile_source("http://127.0.0.1:8081/tiles/{z}/{x}/{y}.png").as_deref(),
            Some("http://127.0.0.1:8081")
        );
        assert_eq!(tile_source("/tiles/{z}/{x}/{y}.png"), None);
        assert_eq!(
            tile_source("https://{tenant}.example/{z}/{x}/{y}").as_deref(),
            Some("https:")
        );
        assert!(content_security_policy(None).contains("img-src 'self' data:;"));
    }
}
