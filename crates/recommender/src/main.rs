//! The recommender service binary.

use clap::Parser;
use funnel_runtime::cli::ConfigArgs;
use funnel_runtime::{Shutdown, telemetry};
use funnel_store::{RedisStore, Store};

/// Ranked recommendations with business rules, attribution and A/B arms.
#[derive(Parser)]
#[command(name = "recommender", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: recommender::Config = Cli::parse().config.load_or_exit("recommender");
    let telemetry = telemetry::init(&config.telemetry, "recommender")?;
    let models = tokio::task::block_in_place(|| recommender::load_models(&config))?;
    let listeners = recommender::Listeners::bind(&config.grpc, &config.admin).await?;
    let store = Store::Redis(RedisStore::connect(&config.redis).await?);
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let result = recommender::run(config, listeners, store, models, shutdown).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
