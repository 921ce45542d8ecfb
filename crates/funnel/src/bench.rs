//! `funnel bench`: the real service binaries as child processes on a real broker and
//! Redis, with their CPU time and resident memory read from `/proc`.
//!
//! - `ingest`: events per second end to end, next to the same broker's raw
//!   consume→produce rate.
//! - `predictor` ([`predictor`]): behavior-predictor's events per second from a
//!   backlog, and its event→prediction latency at a fixed offered rate.
//! - `recommender` ([`recommender`]): Recommend latency percentiles and requests per
//!   CPU-second under a closed-loop load.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use funnel_bus::admin::{TopicSpec, ensure_topics};
use funnel_bus::{
    BatchConsumer, ConsumerMetrics, KafkaConfig, Message, OutRecord, OwnedMessage, Producer, Topics,
};
use funnel_sim::{SimConfig, Simulator};
use funnel_store::{Keys, RedisConfig, RedisStore, Store};
use rdkafka::Timestamp;

use crate::probe;

mod predictor;
mod recommender;

#[derive(clap::Subcommand)]
pub enum Command {
    /// End-to-end ingest throughput against the broker's raw pass-through rate.
    Ingest(IngestArgs),
    /// behavior-predictor: throughput from a backlog, and event→prediction latency at a
    /// fixed offered rate.
    Predictor(predictor::PredictorArgs),
    /// recommender: Recommend latency and throughput under a closed-loop load.
    Recommender(recommender::RecommenderArgs),
}

/// The broker and Redis a benchmark runs on.
#[derive(clap::Args)]
pub struct Target {
    /// Bootstrap servers of the broker to measure on.
    #[arg(long)]
    kafka: String,
    /// Redis to measure on.
    #[arg(long)]
    redis: String,
    /// The broker's process id, when it runs on this machine: its CPU is reported beside
    /// the latencies.
    #[arg(long)]
    broker_pid: Option<u32>,
}

#[derive(clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    target: Target,
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
        Command::Predictor(args) => predictor::run(args).await,
        Command::Recommender(args) => recommender::run(args).await,
    }
}

async fn ingest(args: IngestArgs) -> anyhow::Result<()> {
    let Fresh {
        prefix,
        topics,
        kafka,
    } = Fresh::create(&args.target, args.partitions, &["passthrough"]).await?;
    let passthrough = format!("{prefix}.passthrough");
    println!(
        "funnel bench ingest: {} events, {} raw partitions, broker {}, redis {}",
        args.events, args.partitions, args.target.kafka, args.target.redis
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
    let mut pass_config = KafkaConfig::new(&args.target.kafka, &format!("{prefix}-passthrough"));
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
    let bin = sibling_binary(args.ingest_bin, "ingest")?;
    let mut child = ServiceChild::spawn(
        &bin,
        &ServiceEnv::new(&args.target, &prefix, "ingest", &args.ingest_log_filter),
        &[
            ("FUNNEL_TOPICS__RAW", topics.raw.clone()),
            ("FUNNEL_TOPICS__EVENTS", topics.events.clone()),
            ("FUNNEL_TOPICS__CATALOG", topics.catalog.clone()),
            ("FUNNEL_TOPICS__DLQ", topics.dlq.clone()),
            ("FUNNEL_INGEST__BATCH_MAX", args.batch_max.to_string()),
        ],
        args.ingest_log.as_deref(),
    )?;
    let rss_start = child.wait_ready("ingest").await?;
    let run = child
        .follow("ingest", "ingest_events_in_total", sent as f64)
        .await?;
    println!(
        "  ingest end to end (binary)       {:>9.0} events/s  ({:.2} cores, {:.0} events per CPU-second) = {:.0}% of pass-through",
        run.rate(),
        run.cores(),
        run.per_cpu_second(),
        100.0 * run.rate() / pass_rate
    );
    let quartiles = [0.25, 0.5, 0.75, 1.0]
        .iter()
        .filter_map(|q| {
            run.rss_samples
                .iter()
                .find(|(n, _)| *n >= q * sent as f64)
                .map(|(_, r)| format!("{:.0}%: {r:.1}", q * 100.0))
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "  ingest resident memory MiB      ready {rss_start:.1}; {quartiles}; end {:.1}; peak {:.1}",
        run.rss_end, run.rss_peak
    );
    child.terminate();
    Ok(())
}

/// A run's own names and topics: prefix `bench<ms>` for topics, keys and groups.
struct Fresh {
    prefix: String,
    topics: Topics,
    /// For setup, producing and creating more topics.
    kafka: KafkaConfig,
}

impl Fresh {
    /// Creates the contract's topics under the prefix (`partitions` each, catalog and DLQ
    /// one) and `{prefix}.{name}` with `partitions` for each of `extra`.
    async fn create(target: &Target, partitions: i32, extra: &[&str]) -> anyhow::Result<Fresh> {
        let prefix = format!("bench{}", funnel_core::now_ms());
        let topics = Topics::with_prefix(&format!("{prefix}."));
        let kafka = KafkaConfig::new(&target.kafka, &format!("{prefix}-setup"));
        let mut specs = vec![
            TopicSpec::new(&topics.raw, partitions),
            TopicSpec::new(&topics.events, partitions),
            TopicSpec::new(&topics.catalog, 1).compacted(),
            TopicSpec::new(&topics.dlq, 1),
        ];
        specs.extend(
            extra
                .iter()
                .map(|name| TopicSpec::new(&format!("{prefix}.{name}"), partitions)),
        );
        ensure_topics(&kafka, &specs).await?;
        Ok(Fresh {
            prefix,
            topics,
            kafka,
        })
    }
}

/// Simulated traffic (no faults) through ingest's own pipeline in this process: its
/// feature writes, catalog records included, land in Redis under the run's prefix.
struct Ingested {
    /// Canonical events, as ingest publishes them.
    events: Vec<OutRecord>,
    /// Catalog records for the catalog topic.
    catalog: Vec<OutRecord>,
}

impl Ingested {
    /// Runs the simulator until `wanted` canonical events came out.
    async fn simulated(
        redis: &str,
        prefix: &str,
        topics: &Topics,
        wanted: usize,
    ) -> anyhow::Result<Ingested> {
        let store = Store::Redis(
            RedisStore::connect(&RedisConfig {
                url: redis.to_string(),
                key_prefix: prefix.to_string(),
                ..RedisConfig::default()
            })
            .await?,
        );
        let mut registry = prometheus_client::registry::Registry::default();
        let mut processor = ingest::pipeline::Processor::new(
            Keys::new(prefix),
            ingest::config::IngestSettings::default(),
            topics.clone(),
            store,
            ingest::metrics::Metrics::new(&mut registry),
        );
        let mut sim = Simulator::new(SimConfig {
            sessions: None,
            start_ms: funnel_core::now_ms(),
            collect_truths: false,
            ..SimConfig::default()
        })?;
        let mut out = Ingested {
            events: Vec::with_capacity(wanted),
            catalog: Vec::new(),
        };
        let mut offset = 0i64;
        while out.events.len() < wanted {
            let raw = sim
                .by_ref()
                .take(2_000)
                .map(|r| {
                    offset += 1;
                    OwnedMessage::new(
                        Some(r.payload),
                        r.key.map(String::into_bytes),
                        topics.raw.clone(),
                        Timestamp::NotAvailable,
                        0,
                        offset,
                        None,
                    )
                })
                .collect::<Vec<_>>();
            anyhow::ensure!(!raw.is_empty(), "the simulator ended early");
            // Simulated time may run ahead of the wall clock; none of it is "future".
            let now_ms = funnel_core::now_ms().max(sim_time(&raw));
            let batch = processor
                .process(&raw, now_ms)
                .await
                .context("ingest's pipeline failed")?;
            for record in batch.records {
                if record.topic == topics.events {
                    out.events.push(record);
                } else if record.topic == topics.catalog {
                    out.catalog.push(record);
                }
            }
        }
        out.events.truncate(wanted);
        Ok(out)
    }
}

/// The newest event time in a batch of raw simulated events.
fn sim_time(raw: &[OwnedMessage]) -> i64 {
    raw.iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(m.payload()?).ok())
        .filter_map(|v| v.get("ts")?.as_i64())
        .max()
        .unwrap_or(0)
}

/// `name` given on the command line, or the binary of that name next to this one.
fn sibling_binary(given: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    match given {
        Some(b) => Ok(b),
        None => Ok(std::env::current_exe()?.with_file_name(name)),
    }
}

/// The configuration every service child gets, as `FUNNEL_*` variables.
struct ServiceEnv<'a> {
    target: &'a Target,
    /// Key prefix, and with `-{role}` the consumer group.
    prefix: &'a str,
    role: &'a str,
    log_filter: &'a str,
}

impl<'a> ServiceEnv<'a> {
    fn new(target: &'a Target, prefix: &'a str, role: &'a str, log_filter: &'a str) -> Self {
        ServiceEnv {
            target,
            prefix,
            role,
            log_filter,
        }
    }
}

/// A service binary measured as a child process: its admin server on a free port is
/// where progress is read; dropping it waits for the exit (killing it after 30 s).
struct ServiceChild {
    child: Child,
    admin: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
}

/// One measured run of a child from its first to its last counted event.
struct ChildRun {
    /// Events counted from the first sample that saw any.
    events: f64,
    secs: f64,
    cpu_secs: f64,
    /// `(events counted, resident MiB)` every 50 ms.
    rss_samples: Vec<(f64, f64)>,
    rss_end: f64,
    rss_peak: f64,
}

impl ChildRun {
    fn rate(&self) -> f64 {
        self.events / self.secs
    }

    fn cores(&self) -> f64 {
        self.cpu_secs / self.secs
    }

    fn per_cpu_second(&self) -> f64 {
        self.events / self.cpu_secs.max(1e-3)
    }
}

impl ServiceChild {
    fn spawn(
        bin: &Path,
        env: &ServiceEnv<'_>,
        extra: &[(&str, String)],
        log: Option<&Path>,
    ) -> anyhow::Result<ServiceChild> {
        let admin_port = free_port()?;
        let grpc_port = free_port()?;
        let mut process = Process::new(bin);
        process
            .env("FUNNEL_KAFKA__BROKERS", &env.target.kafka)
            .env(
                "FUNNEL_KAFKA__GROUP_ID",
                format!("{}-{}", env.prefix, env.role),
            )
            .env("FUNNEL_REDIS__URL", &env.target.redis)
            .env("FUNNEL_REDIS__KEY_PREFIX", env.prefix)
            .env("FUNNEL_GRPC__LISTEN", format!("127.0.0.1:{grpc_port}"))
            .env("FUNNEL_ADMIN__LISTEN", format!("127.0.0.1:{admin_port}"))
            .env("FUNNEL_TELEMETRY__LOG_FILTER", env.log_filter)
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(match log {
                Some(path) => Stdio::from(std::fs::File::create(path)?),
                None => Stdio::null(),
            });
        let child = process
            .spawn()
            .with_context(|| format!("failed to start {}", bin.display()))?;
        Ok(ServiceChild {
            child,
            admin: std::net::SocketAddr::from(([127, 0, 0, 1], admin_port)),
            grpc: std::net::SocketAddr::from(([127, 0, 0, 1], grpc_port)),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/readyz` says ready; the resident memory then, in MiB.
    async fn wait_ready(&self, name: &str) -> anyhow::Result<f64> {
        let admin = self.admin;
        wait_until(Duration::from_secs(60), || async {
            probe::http_get(admin, "/readyz")
                .await
                .is_ok_and(|b| b.contains("ready"))
        })
        .await
        .then(|| probe::rss_mib(self.pid()).map(|r| r.0))
        .flatten()
        .with_context(|| format!("{name} did not become ready within 60 s"))
    }

    /// The counter `metric` on the child's `/metrics`.
    async fn counter(&self, metric: &str) -> f64 {
        let body = probe::http_get(self.admin, "/metrics")
            .await
            .unwrap_or_default();
        probe::sum(&probe::samples(&body), metric)
    }

    /// Follows `metric` from its first event until it reaches `target`, with the
    /// child's CPU time and resident memory over that span.
    async fn follow(&mut self, name: &str, metric: &str, target: f64) -> anyhow::Result<ChildRun> {
        let pid = self.pid();
        let mut t0: Option<(Instant, f64, f64)> = None;
        let mut rss_samples = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1200);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("{name} exited early: {status}");
            }
            let n = self.counter(metric).await;
            if n > 0.0 && t0.is_none() {
                t0 = Some((Instant::now(), n, probe::cpu_seconds(pid).unwrap_or(0.0)));
            }
            if let Some((rss, _)) = probe::rss_mib(pid) {
                rss_samples.push((n, rss));
            }
            if n >= target {
                break;
            }
            if Instant::now() > deadline {
                bail!("{name} counted only {n} of {target} events within 20 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (t0, n0, cpu0) = t0.expect("counted something");
        let (rss_end, rss_peak) = probe::rss_mib(pid).unwrap_or_default();
        Ok(ChildRun {
            events: target - n0,
            secs: t0.elapsed().as_secs_f64().max(1e-3),
            cpu_secs: probe::cpu_seconds(pid).unwrap_or(0.0) - cpu0,
            rss_samples,
            rss_end,
            rss_peak,
        })
    }

    /// Asks for a graceful stop (SIGTERM); the drop waits for the exit.
    fn terminate(&self) {
        let _ = Process::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
    }
}

impl Drop for ServiceChild {
    fn drop(&mut self) {
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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
