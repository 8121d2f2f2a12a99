use anyhow::Context;
use clap::Parser;
use sasnp::cli::{Cli, Command, FeedCommand, GeodataCommand, StatsCommand, TokenCommand};
use sasnp::config::{Overrides, Settings};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // colours only for a terminal: in a file or the journal they are escape-code noise (and
    // writing them was a third of a request's cost on the hot path)
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // A client of a remote server: no settings (SASNP_TOKEN/SASNP_SERVER are not settings
    // keys and would be refused by them), no database.
    if let Some(Command::Stats {
        command: StatsCommand::Upload(args),
    }) = &cli.command
    {
        return sasnp::stats::client::upload(args);
    }
    let mut overrides = Overrides {
        database_url: cli.global.database_url.clone(),
        geodata_dir: cli.global.geodata_dir.clone(),
        ..Default::default()
    };
    let command = cli.command.unwrap_or(Command::Serve { bind: None });
    if let Command::Serve { bind } = &command {
        overrides.bind = bind.clone();
    }
    let settings =
        Settings::load(cli.global.config.as_deref(), &overrides).context("configuration")?;
    init_tracing(&settings.log);
    match command {
        Command::Serve { .. } => serve(settings),
        Command::Migrate => {
            let db = open_db(&settings)?;
            let ran = db.migrate()?;
            println!(
                "database {} is up to date ({ran} migrations applied now)",
                db.backend().name()
            );
            Ok(())
        }
        Command::Config => {
            print!("{}", settings.redacted_toml());
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { role, cpts, name },
        } => {
            if role == sasnp::domain::Role::Cpts {
                let id = cpts
                    .as_deref()
                    .context("--cpts is required for role cpts")?;
                let geo = sasnp::startup::load_geography(settings.geodata_dir.as_deref())?;
                anyhow::ensure!(
                    geo.territory(id).is_some(),
                    "--cpts: no CPTS territory `{id}` in the geodata"
                );
            } else {
                anyhow::ensure!(cpts.is_none(), "--cpts only applies to role cpts");
            }
            let db = open_db(&settings)?;
            let mut conn = db.conn()?;
            let now = chrono::Utc::now().timestamp();
            let (account, token) = sasnp::store::accounts::create_or_reuse(
                &mut conn,
                &name,
                role,
                cpts.as_deref(),
                now,
            )?;
            println!(
                "account {} (id {}, role {})",
                account.name,
                account.id,
                role.as_str()
            );
            println!("{token}");
            Ok(())
        }
        Command::Feed { command } => feed(command, &settings),
        Command::Geodata {
            command:
                GeodataCommand::Build {
                    src,
                    out,
                    regenerate_perimeters,
                },
        } => {
            let summary = sasnp::geo::build::build_with(
                &src,
                &out,
                &sasnp::geo::build::BuildOptions {
                    regenerate_perimeters,
                },
            )?;
            println!("{summary}");
            Ok(())
        }
        Command::Stats {
            command: StatsCommand::Upload(args),
        } => sasnp::stats::client::upload(&args),
    }
}

fn open_db(settings: &Settings) -> anyhow::Result<sasnp::store::Db> {
    sasnp::store::Db::connect(
        &settings.database_url,
        settings.db_pool_size,
        Duration::from_secs(settings.db_timeout_s),
    )
    .with_context(|| {
        format!(
            "opening the database {}",
            sasnp::config::redact_url(&settings.database_url)
        )
    })
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        tracing::info!(config = %settings.redacted_toml().replace('\n', "; "), "starting sasnp");
        let app = sasnp::startup::Application::build(settings).await?;
        tracing::info!(port = app.port(), "listening");
        app.run_until_stopped().await?;
        Ok(())
    })
}

fn parse_instant(name: &str, v: Option<&str>) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    match v {
        None => Ok(chrono::Utc::now()),
        Some(v) => Ok(chrono::DateTime::parse_from_rfc3339(v)
            .with_context(|| format!("--{name}: `{v}` is not an RFC 3339 instant"))?
            .with_timezone(&chrono::Utc)),
    }
}

fn feed(command: FeedCommand, settings: &Settings) -> anyhow::Result<()> {
    use sasnp::ingest::{FeedFormat, IngestContext, generate};
    use std::io::Write;
    match command {
        FeedCommand::Check {
            format,
            now,
            horizon_days,
            file,
        } => {
            let format: FeedFormat = format.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let now = parse_instant("now", now.as_deref())?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let geo = sasnp::startup::load_geography(settings.geodata_dir.as_deref())?;
            let ctx = IngestContext {
                now,
                horizon: chrono::Duration::days(i64::from(horizon_days)),
                resolver: &geo,
            };
            match sasnp::ingest::ingest(format, &bytes, &ctx) {
                Ok(outcome) => {
                    let report = sasnp::ingest::apply::report_json(
                        &outcome.report,
                        None,
                        format,
                        now.timestamp(),
                    );
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    anyhow::ensure!(
                        outcome.report.rejected_total() == 0,
                        "{} slot(s) rejected (see the report)",
                        outcome.report.rejected_total()
                    );
                    Ok(())
                }
                Err(e) => {
                    let report = serde_json::json!({"format": format.as_str(), "error": {"code": e.code(), "line": e.line(), "message": e.to_string()}});
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    anyhow::bail!("{}: {e}", file.display())
                }
            }
        }
        FeedCommand::Push {
            source,
            format,
            server,
            token,
            file,
        } => feed_push(source, &format, &server, &token, &file),
        FeedCommand::Generate {
            format,
            slots,
            places,
            seed,
            start,
        } => {
            let format: FeedFormat = format.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let start = parse_instant("start", start.as_deref())?;
            let spec = generate::GenSpec::new(seed, slots, places, start);
            let geo = sasnp::startup::load_geography(settings.geodata_dir.as_deref())?;
            let feed = generate::generate_on(&spec, &geo);
            let bytes = match format {
                FeedFormat::SasFhir => generate::to_fhir_bundle(&feed),
                FeedFormat::SmartSl => generate::to_ndjson(&feed),
                FeedFormat::Csv => generate::to_csv(&feed, b';'),
            };
            std::io::stdout().lock().write_all(&bytes)?;
            Ok(())
        }
    }
}

/// Streams `file` to `PUT /v1/sources/{source}/slots` with a progress bar on stderr.
fn feed_push(
    source: i64,
    format: &str,
    server: &str,
    token: &str,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let content_type = match format {
        "sas-fhir" => "application/fhir+json",
        "smart-sl" => "application/x-ndjson",
        _ => "text/csv",
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let total = bytes.len() as u64;
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("envoi");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let progress = bar.clone();
        let chunks: Vec<Vec<u8>> = bytes.chunks(1 << 20).map(<[u8]>::to_vec).collect();
        let stream = futures_util::stream::iter(chunks).map(move |c| {
            progress.inc(c.len() as u64);
            Ok::<_, std::io::Error>(c)
        });
        let url = format!("{}/v1/sources/{source}/slots", server.trim_end_matches('/'));
        let res = reqwest::Client::new()
            .put(&url)
            .bearer_auth(token)
            .header("Content-Type", content_type)
            .header("Content-Length", total)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        bar.set_message("traitement");
        let status = res.status();
        let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
        bar.finish_and_clear();
        println!("{}", serde_json::to_string_pretty(&body)?);
        anyhow::ensure!(
            status.is_success(),
            "the server refused the feed: HTTP {status}"
        );
        Ok(())
    })
}
