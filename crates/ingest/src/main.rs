//! The ingest service binary.

use clap::Parser;
use funnel_runtime::cli::ConfigArgs;
use funnel_runtime::{Shutdown, telemetry};
use funnel_store::{RedisStore, Store};
use ingest::{Config, Listeners};

/// A batch allocates and frees many small strings and buffers: glibc's allocator
/// took 30% of ingest's CPU samples, mimalloc about 14% (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Validates, deduplicates and normalises raw events into the canonical stream.
#[derive(Parser)]
#[command(name = "ingest", version)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = Cli::parse().config.load_or_exit("ingest");
    let telemetry = telemetry::init(&config.telemetry, "ingest")?;
    let listeners = Listeners::bind(&config.grpc, &config.admin).await?;
    let store = Store::Redis(RedisStore::connect(&config.redis).await?);
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let result = ingest::run(config, listeners, store, shutdown).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}
