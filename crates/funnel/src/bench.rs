//! `funnel bench ingest`: events per second end to end through the real
//! ingest binary on a real broker and Redis, next to the same broker's raw
//! consume→produce rate, with ingest's CPU time and resident memory.

use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use funnel_bus::admin::{TopicSpec, ensure_topics};
use funnel_bus::{
    BatchConsumer, ConsumerMetrics, KafkaConfig, Message, OutRecord, Producer, Topics,
};
use funnel_sim::{SimConfig, Simulator};

use crate::probe;

#[derive(clap::Subcommand)]
pub enum Command {
    /// End-to-end ingest throughput against the broker's raw pass-through rate.
    Ingest(IngestArgs),
}

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Bootstrap servers of the broker to measure on.
    #[arg(long)]
    kafka: String,
    /// Redis to measure on.
    #[arg(long)]
    redis: String,
    /// Events to push through.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Partitions of the raw topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// The ingest binary (default: next to this one).
    #[arg(long)]
    ingest_bin: Option<PathBuf>,
    /// Passed to ingest as `ingest.batch_max`.
    #[arg(long, default_value_t = 2000)]
    batch_max: usize,
    /// Log filter of the ingest child, e.g. `ingest=debug`.
    #[arg(long, default_value = "warn")]
    ingest_log_filter: String,
    /// Where the ingest child's log goes (default: discarded).
    #[arg(long)]
    ingest_log: Option<PathBuf>,
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Ingest(args) => ingest(args).await,
    }
}

async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let prefix = format!("bench{}", funnel_core::now_ms());
    let topics = Topics::with_prefix(&format!("{prefix}."));
    let passthrough = format!("{prefix}.passthrough");
    let kafka = KafkaConfig::new(&args.kafka, &format!("{prefix}-setup"));
    ensure_topics(
        &kafka,
        &[
            TopicSpec::new(&topics.raw, args.partitions),
            TopicSpec::new(&topics.events, args.partitions),
            TopicSpec::new(&topics.catalog, 1).compacted(),
            TopicSpec::new(&topics.dlq, 1),
            TopicSpec::new(&passthrough, args.partitions),
        ],
    )
    .await?;
    println!(
        "funnel bench ingest: {} events, {} raw partitions, broker {}, redis {}",
        args.events, args.partitions, args.kafka, args.redis
    );

    // 1. Simulated traffic onto the raw topic, stamped now so none is late or early.
    let sim = Simulator::new(SimConfig {
        sessions: None,
        start_ms: funnel_core::now_ms(),
        collect_truths: false,
        ..SimConfig::default()
    })?;
    let producer = Producer::new(&kafka)?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut sim = sim.take(args.events as usize);
    loop {
        let chunk = sim
            .by_ref()
            .take(5_000)
            .map(|r| {
                OutRecord::new(
                    &topics.raw,
                    r.key.as_deref().map(str::as_bytes),
                    crate::simulate::payload(&r, true),
                )
            })
            .collect::<Vec<_>>();
        if chunk.is_empty() {
            break;
        }
        producer.send_all(&chunk).await?;
        sent += chunk.len() as u64;
    }
    let produce_secs = started.elapsed().as_secs_f64();
    println!(
        "  produce simulate→raw            {:>9.0} events/s",
        sent as f64 / produce_secs
    );

    // 2. The broker's raw pass-through: consume and produce, nothing else.
    let me = std::process::id();
    let cpu0 = probe::cpu_seconds(me).unwrap_or(0.0);
    // The broker's best: librdkafka's default prefetch, which ingest bounds
    // to keep its memory small.
    let mut pass_config = KafkaConfig::new(&args.kafka, &format!("{prefix}-passthrough"));
    pass_config
        .options
        .insert("queued.min.messages".into(), "100000".into());
    pass_config
        .options
        .insert("queued.max.messages.kbytes".into(), "65536".into());
    let consumer =
        BatchConsumer::subscribe(&pass_config, &[&topics.raw], ConsumerMetrics::default())?;
    let mut moved = 0u64;
    let mut first: Option<Instant> = None;
    while moved < sent {
        let batch = tokio::time::timeout(
            Duration::from_secs(60),
            consumer.next_batch(args.batch_max, Duration::from_millis(5)),
        )
        .await
        .context("pass-through stalled for 60 s")??;
        first.get_or_insert_with(Instant::now);
        let out = batch
            .iter()
            .map(|m| {
                OutRecord::new(
                    &passthrough,
                    m.key(),
                    m.payload().unwrap_or_default().to_vec(),
                )
            })
            .collect::<Vec<_>>();
        producer.send_all(&out).await?;
        consumer.store_offsets(&batch)?;
        moved += batch.len() as u64;
    }
    let pass_secs = first.map_or(1.0, |f| f.elapsed().as_secs_f64());
    let pass_rate = moved as f64 / pass_secs;
    let pass_cpu = probe::cpu_seconds(me).unwrap_or(0.0) - cpu0;
    println!(
        "  raw pass-through consume→produce {pass_rate:>9.0} events/s  ({:.2} cores)",
        pass_cpu / pass_secs
    );
    drop(consumer);

    // 3. The ingest binary, measured from its first to its last event.
    let bin = match args.ingest_bin {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("ingest"),
    };
    let admin_port = free_port()?;
    let grpc_port = free_port()?;
    let mut child = IngestChild(
        Process::new(&bin)
            .env("FUNNEL_KAFKA__BROKERS", &args.kafka)
            .env("FUNNEL_KAFKA__GROUP_ID", format!("{prefix}-ingest"))
            .env("FUNNEL_TOPICS__RAW", &topics.raw)
            .env("FUNNEL_TOPICS__EVENTS", &topics.events)
            .env("FUNNEL_TOPICS__CATALOG", &topics.catalog)
            .env("FUNNEL_TOPICS__DLQ", &topics.dlq)
            .env("FUNNEL_REDIS__URL", &args.redis)
            .env("FUNNEL_REDIS__KEY_PREFIX", &prefix)
            .env("FUNNEL_GRPC__LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env("FUNNEL_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("FUNNEL_INGEST__BATCH_MAX", args.batch_max.to_string())
            .env("FUNNEL_TELEMETRY__LOG_FILTER", &args.ingest_log_filter)
            .stdout(match &args.ingest_log {
                Some(path) => Stdio::from(std::fs::File::create(path)?),
                None => Stdio::null(),
            })
            .spawn()
            .with_context(|| format!("failed to start {}", bin.display()))?,
    );
    let pid = child.0.id();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let consumed = || async {
        let body = probe::http_get(admin, "/metrics").await.unwrap_or_default();
        probe::sum(&probe::samples(&body), "ingest_events_in_total")
    };
    let rss_start = wait_until(Duration::from_secs(60), || async {
        probe::http_get(admin, "/readyz")
            .await
            .is_ok_and(|b| b.contains("ready"))
    })
    .await
    .then(|| probe::rss_mib(pid).map(|r| r.0))
    .flatten()
    .context("ingest did not become ready within 60 s")?;
    let mut t0: Option<(Instant, f64, f64)> = None;
    let mut rss_samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            bail!("ingest exited early: {status}");
        }
        let n = consumed().await;
        if n > 0.0 && t0.is_none() {
            t0 = Some((Instant::now(), n, probe::cpu_seconds(pid).unwrap_or(0.0)));
        }
        if let Some((rss, _)) = probe::rss_mib(pid) {
            rss_samples.push((n, rss));
        }
        if n >= sent as f64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("ingest consumed only {n} of {sent} within 20 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (t0, n0, cpu0) = t0.expect("consumed something");
    let secs = t0.elapsed().as_secs_f64().max(1e-3);
    let cpu = probe::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    let rate = (sent as f64 - n0) / secs;
    let (rss_end, rss_peak) = probe::rss_mib(pid).unwrap_or_default();
    println!(
        "  ingest end to end (binary)       {rate:>9.0} events/s  ({:.2} cores, {:.0} events per CPU-second) = {:.0}% of pass-through",
        cpu / secs,
        (sent as f64 - n0) / cpu.max(1e-3),
        100.0 * rate / pass_rate
    );
    let quartiles = [0.25, 0.5, 0.75, 1.0]
        .iter()
        .filter_map(|q| {
            rss_samples
                .iter()
                .find(|(n, _)| *n >= q * sent as f64)
                .map(|(_, r)| format!("{:.0}%: {r:.1}", q * 100.0))
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "  ingest resident memory MiB      ready {rss_start:.1}; {quartiles}; end {rss_end:.1}; peak {rss_peak:.1}"
    );
    // Graceful stop; the guard waits for the exit.
    let _ = Process::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    Ok(())
}

struct IngestChild(Child);

impl Drop for IngestChild {
    fn drop(&mut self) {
        for _ in 0..300 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
