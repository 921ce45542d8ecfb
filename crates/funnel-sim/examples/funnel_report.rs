//! Runs a simulation and prints its funnel rates and generation speed.
//!
//! `cargo run --release -p funnel-sim --example funnel_report -- [sessions] [seed]`

use std::time::Instant;

use funnel_sim::{FunnelStats, SimConfig, Simulator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let sessions: u64 = args
        .next()
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(20_000);
    let seed: u64 = args
        .next()
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(42);
    let config = SimConfig {
        seed,
        sessions: Some(sessions),
        ..SimConfig::default()
    };

    let started = Instant::now();
    let mut simulator = Simulator::new(config)?;
    let mut stats = FunnelStats::default();
    let mut bytes = 0usize;
    let mut first_ts = None;
    let mut last_ts = 0;
    for record in simulator.by_ref() {
        bytes += record.payload.len() + 1;
        first_ts.get_or_insert(record.ts_ms);
        last_ts = record.ts_ms;
        stats.observe(&record);
    }
    for truth in simulator.take_finished_truths() {
        stats.observe_truth(&truth);
    }
    let elapsed = started.elapsed().as_secs_f64();

    println!("sessions              {}", stats.sessions);
    println!(
        "records               {} ({:.1} MB NDJSON)",
        stats.records,
        bytes as f64 / 1e6
    );
    println!(
        "simulated span        {:.1} days",
        (last_ts - first_ts.unwrap_or(last_ts)) as f64 / 86_400_000.0
    );
    println!(
        "conversion            {:.2}%",
        100.0 * stats.conversion_rate()
    );
    println!(
        "cart abandonment      {:.1}%",
        100.0 * stats.cart_abandonment_rate()
    );
    println!(
        "click-through         {:.2}%",
        100.0 * stats.click_through_rate()
    );
    println!("returns per line      {:.1}%", 100.0 * stats.return_rate());
    println!("reviews per order     {:.1}%", 100.0 * stats.review_rate());
    println!("tickets per order     {:.1}%", 100.0 * stats.ticket_rate());
    for (kind, count) in &stats.events_by_type {
        println!("  {kind:<18} {count}");
    }
    println!(
        "generation + parsing  {:.2} s ({:.0} records/s)",
        elapsed,
        stats.records as f64 / elapsed
    );
    Ok(())
}
