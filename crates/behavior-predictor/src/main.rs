//! The behavior-predictor service binary.

use clap::Parser;
use funnel_runtime::cli::ConfigArgs;
use funnel_runtime::{Shutdown, telemetry};
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
    let config: behavior_predictor::Config = Cli::parse().config.load_or_exit("behavior-predictor");
    let telemetry = telemetry::init(&config.telemetry, "behavior-predictor")?;
    let models = tokio::task::block_in_place(|| behavior_predictor::load_models(&config))?;
    let listeners = behavior_predictor::Listeners::bind(&config.grpc, &config.admin).await?;
    let store = Store::Redis(RedisStore::connect(&config.redis).await?);
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let result = behavior_predictor::run(config, listeners, store, models, shutdown).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
