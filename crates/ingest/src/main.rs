//! The ingest service binary.

use clap::Parser;
use funnel_runtime::cli::ConfigArgs;
use funnel_runtime::config::render_masked;
use funnel_runtime::{EXIT_BAD_CONFIG, Shutdown, load_config, telemetry};
use funnel_store::{RedisStore, Store};
use ingest::{Config, Listeners};

/// Validates, deduplicates and normalises raw events into the canonical stream.
#[derive(Parser)]
#[command(name = "ingest", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = match load_config(cli.config.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ingest: {e}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    if cli.config.print_config {
        print!("{}", render_masked(&config));
        return Ok(());
    }
    let telemetry = telemetry::init(&config.telemetry, "ingest")?;
    let listeners = Listeners::bind(&config).await?;
    let store = Store::Redis(RedisStore::connect(&config.redis).await?);
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let result = ingest::run(config, listeners, store, shutdown).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
