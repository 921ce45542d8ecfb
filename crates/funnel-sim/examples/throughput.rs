//! Measures raw generation speed and shows memory stays flat however long the run:
//! `cargo run --release -p funnel-sim --example throughput -- [sessions]`

use std::time::Instant;

use funnel_sim::{SimConfig, Simulator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sessions: u64 = std::env::args()
        .nth(1)
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(20_000);
    let started = Instant::now();
    let simulator = Simulator::new(SimConfig {
        sessions: Some(sessions),
        // Nobody drains truths here, and keeping them would grow memory with the run.
        collect_truths: false,
        ..SimConfig::default()
    })?;
    let (records, bytes) = simulator.fold((0u64, 0usize), |(records, bytes), record| {
        (records + 1, bytes + record.payload.len())
    });
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{records} records, {:.1} MB in {seconds:.2} s: {:.0} records/s, {:.1} MB/s",
        bytes as f64 / 1e6,
        records as f64 / seconds,
        bytes as f64 / 1e6 / seconds
    );
    Ok(())
}
