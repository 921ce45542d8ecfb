//! `funnel`, the operator CLI.
//!
//! # Layout
//! - [`simulate`]: realistic traffic to NDJSON or to Kafka at a rate.
//! - [`demo`]: the whole pipeline in one process on an embedded broker and store.
//! - [`bench`]: ingest and behavior-predictor measured against a real broker and Redis.
//! - [`topics`]: creates the contract's topics on a cluster.
//! - [`probe`]: small helpers shared by the commands (metrics scraping, RSS).

mod bench;
mod demo;
mod probe;
mod simulate;
mod topics;

use clap::{Parser, Subcommand};

/// Real-time machine learning for every step of the purchase funnel.
#[derive(Parser)]
#[command(name = "funnel", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate realistic shop traffic (deterministic with --seed).
    Simulate(simulate::Args),
    /// Run the whole pipeline in one process on simulated traffic.
    Demo(demo::Args),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::Command),
    /// Manage the contract's topics.
    #[command(subcommand)]
    Topics(topics::Command),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate(args) => simulate::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Topics(cmd) => topics::run(cmd).await,
    }
}
