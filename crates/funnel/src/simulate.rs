//! `funnel simulate`: realistic, deterministic shop traffic as NDJSON, or
//! produced to Kafka at a given rate.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use funnel_bus::{KafkaConfig, OutRecord, Producer};
use funnel_sim::{RecordKind, SimConfig, SimRecord, Simulator};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Seed of every random draw: same seed and flags, same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Shoppers.
    #[arg(long, default_value_t = 5_000)]
    pub users: usize,
    /// Catalog size.
    #[arg(long, default_value_t = 2_000)]
    pub items: usize,
    /// Sessions to generate; 0 runs until stopped.
    #[arg(long, default_value_t = 10_000)]
    pub sessions: u64,
    /// Event time of the start: `now`, epoch milliseconds or RFC 3339.
    #[arg(long, default_value = "now")]
    pub start: String,
    /// Leave session ids out so ingest assigns sessions.
    #[arg(long)]
    pub omit_session_ids: bool,
    /// Timestamps as RFC 3339 strings instead of epoch milliseconds.
    #[arg(long)]
    pub rfc3339: bool,
    /// Share of malformed records (for DLQ demos and tests).
    #[arg(long, default_value_t = 0.0)]
    pub invalid_rate: f64,
    /// Share of re-sent duplicates.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_rate: f64,
    /// NDJSON output file, `-` for stdout (ignored with --kafka).
    #[arg(long, default_value = "-")]
    pub output: String,
    /// Also write each session's hidden truth (purchase probability, outcome) as NDJSON.
    #[arg(long)]
    pub truths: Option<PathBuf>,
    /// Produce to these Kafka brokers instead of writing a file.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Topic to produce to.
    #[arg(long, default_value = "funnel.events.raw")]
    pub topic: String,
    /// Events per second when producing; 0 as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Stamp each event with the wall clock when it is sent (simulated time
    /// runs much faster than real time; ingest rejects events from the future).
    #[arg(long)]
    pub live: bool,
}

impl Args {
    pub fn sim_config(&self) -> anyhow::Result<SimConfig> {
        let start_ms = match self.start.as_str() {
            "now" => funnel_core::now_ms(),
            s => match s.parse::<i64>() {
                Ok(ms) => ms,
                Err(_) => chrono_parse(s)
                    .with_context(|| format!("--start {s:?} is not now, epoch ms or RFC 3339"))?,
            },
        };
        Ok(SimConfig {
            seed: self.seed,
            items: self.items,
            users: self.users,
            sessions: (self.sessions > 0).then_some(self.sessions),
            start_ms,
            omit_session_ids: self.omit_session_ids,
            rfc3339_timestamps: self.rfc3339,
            invalid_rate: self.invalid_rate,
            duplicate_rate: self.duplicate_rate,
            collect_truths: self.truths.is_some(),
            ..SimConfig::default()
        })
    }
}

fn chrono_parse(s: &str) -> anyhow::Result<i64> {
    let v = serde_json::Value::String(s.to_string());
    funnel_core::parse::parse_timestamp(&v).map_err(|r| anyhow::anyhow!(r.reason))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut sim = Simulator::new(args.sim_config()?).context("invalid simulation settings")?;
    let mut truths = match &args.truths {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("failed to create {}", p.display()))?,
        )),
        None => None,
    };
    if let Some(brokers) = &args.kafka {
        let producer = Producer::new(&KafkaConfig::new(brokers, "funnel-simulate"))?;
        let sent = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        feed(
            &producer,
            &args.topic,
            &mut sim,
            args.rate,
            args.live,
            &sent,
            || false,
        )
        .await?;
        producer.flush(Duration::from_secs(30)).await?;
        let n = sent.load(Ordering::Relaxed);
        eprintln!(
            "produced {n} events to {} in {:.1} s ({:.0}/s)",
            args.topic,
            started.elapsed().as_secs_f64(),
            n as f64 / started.elapsed().as_secs_f64()
        );
    } else {
        let mut out: Box<dyn Write> = if args.output == "-" {
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(&args.output)
                    .with_context(|| format!("failed to create {}", args.output))?,
            ))
        };
        while let Some(record) = sim.next() {
            record.write_ndjson(&mut out)?;
            if let Some(t) = truths.as_mut() {
                for truth in sim.take_finished_truths() {
                    serde_json::to_writer(&mut *t, &truth)?;
                    t.write_all(b"\n")?;
                }
            }
        }
        out.flush()?;
    }
    if let Some(mut t) = truths {
        for truth in sim.take_finished_truths() {
            serde_json::to_writer(&mut t, &truth)?;
            t.write_all(b"\n")?;
        }
        t.flush()?;
    }
    Ok(())
}

/// The payload to send: with `live`, `ts` is replaced by the wall clock.
pub fn payload(record: &SimRecord, live: bool) -> Vec<u8> {
    if !live || matches!(record.kind, RecordKind::Invalid(_)) {
        return record.payload.clone();
    }
    match serde_json::from_slice::<serde_json::Value>(&record.payload) {
        Ok(mut v) => {
            v["ts"] = serde_json::Value::from(funnel_core::now_ms());
            serde_json::to_vec(&v).unwrap_or_else(|_| record.payload.clone())
        }
        Err(_) => record.payload.clone(),
    }
}

/// Produces the simulator's records at `rate` per second (0: unpaced) until
/// it ends or `stop` says so; counts into `sent`.
pub async fn feed(
    producer: &Producer,
    topic: &str,
    sim: &mut Simulator,
    rate: u64,
    live: bool,
    sent: &AtomicU64,
    stop: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let chunk = if rate == 0 {
        2_000
    } else {
        (rate / 50).clamp(1, 2_000) as usize
    };
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        if stop() {
            return Ok(());
        }
        let records = sim
            .by_ref()
            .take(chunk)
            .map(|r| {
                OutRecord::new(
                    topic,
                    r.key.as_deref().map(str::as_bytes),
                    payload(&r, live),
                )
            })
            .collect::<Vec<_>>();
        if records.is_empty() {
            return Ok(());
        }
        producer.send_all(&records).await?;
        total += records.len() as u64;
        sent.fetch_add(records.len() as u64, Ordering::Relaxed);
        if rate > 0 {
            let due = Duration::from_secs_f64(total as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}
