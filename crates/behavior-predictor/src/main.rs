//! The behavior-predictor service binary.

use clap::Parser;
use funnel_runtime::cli::ConfigArgs;
use funnel_runtime::config::render_masked;
use funnel_runtime::{EXIT_BAD_CONFIG, Shutdown, load_config, telemetry};
use funnel_store::{RedisStore, Store};

/// Predicts purchase intent and cart abandonment from the canonical event stream.
#[derive(Parser)]
#[command(name = "behavior-predictor", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: behavior_predictor::Config =
        match load_config(cli.config.config.as_deref(), std::env::vars()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("behavior-predictor: {e}");
                std::process::exit(EXIT_BAD_CONFIG);
            }
        };
    if cli.config.print_config {
        print!("{}", render_masked(&config));
        return Ok(());
    }
    let telemetry = telemetry::init(&config.telemetry, "behavior-predictor")?;
    let scorer = tokio::task::block_in_place(|| behavior_predictor::load_scorer(&config))?;
    let listeners = behavior_predictor::Listeners::bind(&config).await?;
    let store = Store::Redis(RedisStore::connect(&config.redis).await?);
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let result = behavior_predictor::run(config, listeners, store, scorer, shutdown).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
