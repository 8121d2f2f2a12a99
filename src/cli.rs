//! The command line: parsed here, dispatched by `main`. Every flag has a `SASNP_…` mirror.

use crate::domain::Role;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sasnp",
    version,
    about = "SAS Pays de la Loire: SNP slot search, bookings and CPTS statistics"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file (default: ./sasnp.toml when present).
    #[arg(long, global = true, env = "SASNP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default sqlite://sasnp.db) or postgres://…
    #[arg(
        long,
        global = true,
        env = "SASNP_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Folder of the derived geodata files.
    #[arg(long, global = true, env = "SASNP_GEODATA_DIR")]
    pub geodata_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API and the operator page (the default).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, env = "SASNP_BIND")]
        bind: Option<String>,
    },
    /// Run pending database migrations and exit.
    Migrate,
    /// Print the resolved configuration (secrets masked).
    Config,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Slot feeds: check a file offline, generate synthetic feeds.
    Feed {
        #[command(subcommand)]
        command: FeedCommand,
    },
    /// Geographic reference data.
    Geodata {
        #[command(subcommand)]
        command: GeodataCommand,
    },
    /// CPTS statistics.
    Stats {
        #[command(subcommand)]
        command: StatsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Upload a statistics file to a sasnp server and print its report (French); the exit
    /// code is non-zero when the file is refused.
    Upload(StatsUploadArgs),
}

#[derive(Debug, Args)]
pub struct StatsUploadArgs {
    /// The CSV or JSON file.
    pub file: PathBuf,
    /// canonical, fr-tableur or mensuel-large.
    #[arg(long)]
    pub preset: crate::stats::Preset,
    /// Base URL of the server, e.g. https://sasnp.example.
    #[arg(long, env = "SASNP_SERVER")]
    pub server: String,
    /// Bearer token of a `cpts` (or admin) account.
    #[arg(long, env = "SASNP_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Validate only: show what would be stored, store nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an account (or reuse it by name) and print a new bearer token as the last line.
    Create {
        #[arg(long, value_enum)]
        role: Role,
        /// CPTS id, required for role `cpts`.
        #[arg(long)]
        cpts: Option<String>,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GeodataCommand {
    /// (Re)build the geodata files from the open-data sources.
    Build {
        #[arg(long, default_value = "../shared/geodata-src")]
        src: PathBuf,
        #[arg(long, default_value = "geodata")]
        out: PathBuf,
        /// Regenerate cpts-perimeters.csv from EPCI even when the folder already has one.
        #[arg(long)]
        regenerate_perimeters: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Parse and normalise a feed file with the service's rules and print the report as JSON
    /// (exit status 1 when the file is unreadable or a slot was rejected).
    Check {
        #[arg(long, value_parser = ["sas-fhir", "smart-sl", "csv"])]
        format: String,
        /// The instant to judge "past" and "beyond the horizon" against (default: now).
        #[arg(long)]
        now: Option<String>,
        /// Horizon in days.
        #[arg(long, default_value_t = 90)]
        horizon_days: u32,
        file: PathBuf,
    },
    /// Push a feed file to a source of a running sasnp (a full snapshot), with a progress bar
    /// for big files, and print the ingest report.
    Push {
        /// Source id (see GET /v1/sources).
        #[arg(long)]
        source: i64,
        #[arg(long, value_parser = ["sas-fhir", "smart-sl", "csv"])]
        format: String,
        /// Base URL of the server, e.g. https://sasnp.example.
        #[arg(long, env = "SASNP_SERVER")]
        server: String,
        /// Bearer token of a `cpts` (own source) or admin account.
        #[arg(long, env = "SASNP_TOKEN", hide_env_values = true)]
        token: String,
        file: PathBuf,
    },
    /// Write a deterministic synthetic feed of the region to stdout (places clustered around
    /// the region's towns by population).
    Generate {
        #[arg(long, value_parser = ["sas-fhir", "smart-sl", "csv"])]
        format: String,
        #[arg(long, default_value_t = 1000)]
        slots: usize,
        #[arg(long, default_value_t = 100)]
        places: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First possible start (default: now).
        #[arg(long)]
        start: Option<String>,
    },
}
