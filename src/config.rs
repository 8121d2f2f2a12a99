//! Typed settings, layered: built-in defaults < TOML file < `SASNP_*` environment < command-line
//! flags. Unknown keys are rejected; secrets are never printed or logged.

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything the service can be told. Every key has a default: `sasnp serve` needs no file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    pub bind: String,
    /// `sqlite://PATH`, a plain path (SQLite), or `postgres://…`.
    pub database_url: String,
    /// Maximum connections in the pool.
    pub db_pool_size: u32,
    /// How long a request waits for a connection or a statement, in seconds.
    pub db_timeout_s: u64,
    /// Folder with `communes.geojson`, `territories.geojson`, `cpts-perimeters.csv`; when unset,
    /// the files built into the binary (the committed `geodata/`) are used.
    pub geodata_dir: Option<PathBuf>,
    /// How long an operator's hold keeps a slot, in seconds.
    pub hold_ttl_s: u64,
    /// Slots starting later than this many days ahead are refused.
    pub horizon_days: u32,
    /// A pushed source not refreshed for this long is stale (seconds).
    pub push_stale_after_s: u64,
    /// A pulled source is stale after this many poll intervals without success.
    pub pull_stale_factor: u32,
    /// Optional bearer token protecting `/metrics` (secret).
    pub metrics_token: Option<String>,
    /// Optional base-map tile URL template for the operator page (none: no base map).
    pub tile_url: Option<String>,
    /// Optional online geocoder (the national address API); never needed offline.
    pub geocoder_url: Option<String>,
    /// How often the feed poller looks for due sources, in seconds.
    pub poll_tick_s: u64,
    /// How often lapsed holds are recorded as expired, in seconds.
    pub hold_sweep_s: u64,
    /// How often the index catches up with what other nodes sharing the database committed
    /// (snapshots, freshness, holds and bookings), in milliseconds; 0 turns it off (one node
    /// alone on its database needs none). See `index::sync`.
    pub sync_interval_ms: u64,
    /// `tracing` filter, e.g. `info` or `sasnp=debug,actix_web=info`.
    pub log: String,
    /// HTTP worker threads (default: number of cores).
    pub workers: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            database_url: "sqlite://sasnp.db".into(),
            db_pool_size: 8,
            db_timeout_s: 10,
            geodata_dir: None,
            hold_ttl_s: 300,
            horizon_days: 90,
            push_stale_after_s: 24 * 3600,
            pull_stale_factor: 3,
            metrics_token: None,
            tile_url: None,
            geocoder_url: None,
            poll_tick_s: 5,
            hold_sweep_s: 5,
            sync_interval_ms: 1000,
            log: "info".into(),
            workers: None,
        }
    }
}

/// Values given on the command line (or through clap's `env` mirrors); `None` = not given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geodata_dir: Option<PathBuf>,
}

impl Settings {
    /// Resolves the layers. `file` is the explicit config file (must exist); without it,
    /// `./sasnp.toml` is read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(Box::new(figment::Error::from(format!(
                        "config file {} does not exist",
                        path.display()
                    ))));
                }
                fig = fig.merge(Toml::file(path));
            }
            None => fig = fig.merge(Toml::file("sasnp.toml")),
        }
        fig = fig
            .merge(Env::prefixed("SASNP_").ignore(&["CONFIG", "TOKEN", "SERVER"]))
            .merge(Serialized::defaults(overrides));
        fig.extract().map_err(Box::new)
    }

    /// The settings as TOML with secrets masked (for `sasnp config` and the start-up log).
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = redact_url(&self.database_url);
        if shown.metrics_token.is_some() {
            shown.metrics_token = Some("********".into());
        }
        let mut out = String::new();
        let value = serde_json::to_value(&shown).unwrap_or_default();
        if let Some(map) = value.as_object() {
            for (k, v) in map {
                if !v.is_null() {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
        out
    }
}

/// Masks the password of a URL (`postgres://user:secret@host/db` → `postgres://user:********@host/db`).
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.rsplit_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:********@{host}");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let s = Settings::load(None, &Overrides::default()).unwrap();
        assert_eq!(s.hold_ttl_s, 300);
        assert_eq!(s.bind, "127.0.0.1:8080");
    }

    #[test]
    fn unknown_keys_are_rejected_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "bind = \"0.0.0.0:1\"\nhold_ttl_s = 60\n").unwrap();
        let o = Overrides {
            bind: Some("127.0.0.1:9".into()),
            ..Default::default()
        };
        let s = Settings::load(Some(&f), &o).unwrap();
        assert_eq!(s.bind, "127.0.0.1:9");
        assert_eq!(s.hold_ttl_s, 60);
        std::fs::write(&f, "colour = \"blue\"\n").unwrap();
        let err = Settings::load(Some(&f), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(
            Settings::load(
                Some(&dir.path().join("missing.toml")),
                &Overrides::default()
            )
            .is_err()
        );
    }

    #[test]
    fn secrets_are_masked() {
        let s = Settings {
            database_url: "postgres://sas:hunter2@db/sasnp".into(),
            metrics_token: Some("tok".into()),
            ..Default::default()
        };
        let shown = s.redacted_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("\"tok\""),
            "{shown}"
        );
        assert!(shown.contains("postgres://sas:********@db/sasnp"));
    }
}
