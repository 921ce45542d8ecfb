//! ingest: consumes raw platform events, validates, deduplicates and
//! normalises them, keeps online features in the feature store, and publishes
//! the canonical stream, the catalog and the dead-letter topic.
//!
//! # Layout
//! - [`config`]: [`Config`], every key with its default.
//! - [`pipeline`]: one batch to outputs and atomic feature writes.
//! - [`features`]: which features each event changes.
//! - [`grpc`]: the `funnel.ingest.v1.Features` service.
//! - [`metrics`]: metric names.
//! - [`run`]: wires it together until shutdown.

pub mod config;
pub mod features;
pub mod grpc;
pub mod metrics;
pub mod pipeline;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use funnel_bus::{BatchConsumer, Message, Offsets, OwnedMessage, Producer};
use funnel_proto::pb::ingest::v1::features_server::FeaturesServer;
use funnel_runtime::{Health, Shutdown, admin};
use funnel_store::{FeatureReader, Keys, Store};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use config::Config;

/// The sockets ingest serves on, bound by the caller (port 0 in tests).
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        Ok(Listeners {
            grpc: TcpListener::bind(&config.grpc.listen)
                .await
                .with_context(|| format!("failed to bind grpc.listen {}", config.grpc.listen))?,
            admin: TcpListener::bind(&config.admin.listen)
                .await
                .with_context(|| format!("failed to bind admin.listen {}", config.admin.listen))?,
        })
    }
}

/// The gRPC name of the features service, for health checks.
pub const FEATURES_SERVICE: &str = "funnel.ingest.v1.Features";

/// Runs ingest until `shutdown`: stop consuming, finish the batch, store and
/// commit offsets, flush the producer, then stop gRPC and the admin server.
pub async fn run(
    config: Config,
    listeners: Listeners,
    store: Store,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);
    let registry = Arc::new(registry);
    let (health, health_service) = Health::new();
    let servers = Shutdown::new();

    let keys = Keys::new(&config.redis.key_prefix);
    let reader = FeatureReader::new(store.clone(), keys.clone());
    let grpc = funnel_runtime::grpc::spawn_server(
        listeners.grpc,
        health_service,
        funnel_proto::FILE_DESCRIPTOR_SET,
        |router| router.add_service(FeaturesServer::new(grpc::FeaturesService::new(reader))),
        &servers,
    )?;
    let admin = tokio::spawn(admin::serve(
        listeners.admin,
        Arc::clone(&registry),
        health.clone(),
        servers.clone(),
    ));

    store
        .ping()
        .await
        .context("feature store unreachable at start")?;
    let consumer = BatchConsumer::subscribe(
        &config.kafka,
        &[&config.topics.raw],
        metrics.consumer.clone(),
    )
    .context("failed to start the consumer")?;
    let producer = Producer::new(&config.kafka).context("failed to start the producer")?;
    // One processor per lane, and one for catalog events.
    let processors = (0..=config.ingest.workers)
        .map(|_| {
            pipeline::Processor::new(
                keys.clone(),
                config.ingest.clone(),
                config.topics.clone(),
                store.clone(),
                metrics.clone(),
            )
        })
        .collect::<Vec<_>>();
    health.set_ready(true, &[FEATURES_SERVICE]).await;
    tracing::info!(topic = %config.topics.raw, group = %config.kafka.group_id, "ingest consuming");

    let consumed = consume(
        &config, &consumer, &producer, processors, &metrics, &shutdown,
    )
    .await;

    health.set_ready(false, &[FEATURES_SERVICE]).await;
    let grace = Duration::from_secs(config.ingest.shutdown_grace_secs);
    if let Err(e) = consumer.commit().await {
        tracing::warn!(error = %e, "final commit failed; uncommitted batches will be replayed");
    }
    if let Err(e) = producer.flush(grace).await {
        tracing::warn!(error = %e, "producer flush failed");
    }
    servers.trigger();
    let _ = funnel_runtime::shutdown::with_grace("grpc server", grace, grpc).await;
    let _ = funnel_runtime::shutdown::with_grace("admin server", grace, admin).await;
    tracing::info!("ingest stopped");
    consumed
}

/// The consume loop: batch, split the batch by message key, process the
/// parts concurrently (retrying until they succeed or shutdown begins),
/// publish, then store offsets.
/// Batches waiting in a lane's queue: enough to keep it busy while the
/// dispatcher fetches the next batch, few enough to bound memory.
const LANE_QUEUE: usize = 2;

/// Batches dispatched whose offsets are not yet stored.
const MAX_INFLIGHT: usize = 8;

/// Feeds batches to the lanes and stores each batch's offsets once every part
/// of it, and every batch before it, is written and published.
///
/// A batch is split by message key into one part per lane, so a user's events
/// stay in order; each lane plans, writes and publishes its parts one after
/// another while the other lanes do the same, so Redis round trips, planning
/// and produce acknowledgements of different parts overlap. Catalog events
/// are applied by the dispatcher before the batch's user events are handed
/// out, so those see the items.
async fn consume(
    config: &Config,
    consumer: &BatchConsumer,
    producer: &Producer,
    processors: Vec<pipeline::Processor>,
    metrics: &metrics::Metrics,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let linger = Duration::from_millis(config.ingest.batch_linger_ms);
    let retry = Retry {
        max_backoff: Duration::from_millis(config.ingest.retry_backoff_max_ms),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let mut processors = processors.into_iter();
    let mut catalog = processors
        .next()
        .context("no processor for catalog events")?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    // A JoinSet, so that the lanes end with this task even when it is aborted.
    let mut running = tokio::task::JoinSet::new();
    let lanes = processors
        .map(|processor| {
            let (tx, rx) = mpsc::channel::<Part>(LANE_QUEUE);
            running.spawn(lane(
                processor,
                rx,
                producer.clone(),
                done_tx.clone(),
                retry.clone(),
            ));
            tx
        })
        .collect::<Vec<_>>();
    drop(done_tx);
    anyhow::ensure!(!lanes.is_empty(), "ingest.workers must be at least 1");

    let mut inflight = Inflight::default();
    let mut outcome = Ok(());
    // One fetch at a time, kept across iterations: dropping a fetch that
    // already took messages would skip them.
    let fetch = || consumer.next_batch(config.ingest.batch_max, linger);
    let mut fetching = Box::pin(fetch());
    'batches: loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(seq) = done_rx.recv() => inflight.part_done(seq, consumer, metrics),
            batch = &mut fetching, if inflight.batches.len() < MAX_INFLIGHT => {
                fetching.set(fetch());
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "consume failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                metrics.events_in.inc_by(batch.len() as u64);
                metrics.batch_size.observe(batch.len() as f64);
                let offsets = Offsets::of(&batch);
                let Split { catalog: items, users } = split(batch, lanes.len());
                if !items.is_empty() && !retry.run(&mut catalog, &items, producer).await {
                    break;
                }
                let parts = users
                    .into_iter()
                    .enumerate()
                    .filter(|(_, messages)| !messages.is_empty())
                    .collect::<Vec<_>>();
                let seq = inflight.add(offsets, parts.len());
                for (lane, messages) in parts {
                    if lanes[lane].send(Part { seq, messages }).await.is_err() {
                        // A lane stops early only on shutdown, or when it failed.
                        if !shutdown.is_triggered() {
                            outcome = Err(anyhow::anyhow!("ingest lane {lane} stopped unexpectedly"));
                        }
                        break 'batches;
                    }
                }
                inflight.store_finished(consumer, metrics);
            }
        }
    }

    // Each lane finishes the part in hand; parts still queued are not
    // stored, so the partitions' next owner replays them.
    drop(lanes);
    while let Some(ended) = running.join_next().await {
        if let Err(e) = ended {
            tracing::error!(error = %e, "ingest lane failed");
            outcome = Err(anyhow::anyhow!("ingest lane failed: {e}"));
        }
    }
    while let Ok(seq) = done_rx.try_recv() {
        inflight.part_done(seq, consumer, metrics);
    }
    outcome
}

/// One lane's share of a batch.
struct Part {
    seq: u64,
    messages: Vec<OwnedMessage>,
}

/// Processes parts in arrival order until its queue closes or shutdown.
async fn lane(
    mut processor: pipeline::Processor,
    mut parts: mpsc::Receiver<Part>,
    producer: Producer,
    done: mpsc::UnboundedSender<u64>,
    retry: Retry,
) {
    while let Some(part) = parts.recv().await {
        if retry.shutdown.is_triggered()
            || !retry.run(&mut processor, &part.messages, &producer).await
        {
            break;
        }
        let _ = done.send(part.seq);
    }
}

/// Retries a part until it is written and published.
#[derive(Clone)]
struct Retry {
    max_backoff: Duration,
    metrics: metrics::Metrics,
    shutdown: Shutdown,
}

impl Retry {
    /// Plans, writes and publishes `messages`, retrying with backoff until
    /// it succeeds; false if shutdown came first (the part is not done).
    /// A retry after a failed publish finds the events' markers set by this
    /// part, so features are not written twice but the events are published.
    async fn run(
        &self,
        processor: &mut pipeline::Processor,
        messages: &[OwnedMessage],
        producer: &Producer,
    ) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            let result = match processor.process(messages, funnel_core::now_ms()).await {
                Ok(out) => producer
                    .send_all(&out.records)
                    .await
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            let Err(e) = result else { return true };
            self.metrics.batch_retries.inc();
            tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "batch failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.cancelled() => return false,
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }
}

/// Batches handed to the lanes, oldest first.
#[derive(Default)]
struct Inflight {
    next_seq: u64,
    batches: VecDeque<Pending>,
}

struct Pending {
    seq: u64,
    offsets: Offsets,
    parts_left: usize,
    started: Instant,
}

impl Inflight {
    fn add(&mut self, offsets: Offsets, parts: usize) -> u64 {
        self.next_seq += 1;
        self.batches.push_back(Pending {
            seq: self.next_seq,
            offsets,
            parts_left: parts,
            started: Instant::now(),
        });
        self.next_seq
    }

    fn part_done(&mut self, seq: u64, consumer: &BatchConsumer, metrics: &metrics::Metrics) {
        if let Some(b) = self.batches.iter_mut().find(|b| b.seq == seq) {
            b.parts_left -= 1;
        }
        self.store_finished(consumer, metrics);
    }

    /// Stores the offsets of finished batches at the head: a batch's offsets
    /// never pass an unfinished earlier batch's.
    fn store_finished(&mut self, consumer: &BatchConsumer, metrics: &metrics::Metrics) {
        while self.batches.front().is_some_and(|b| b.parts_left == 0) {
            let b = self.batches.pop_front().expect("checked above");
            if let Err(e) = consumer.store(&b.offsets) {
                tracing::warn!(error = %e, "failed to store offsets");
            }
            metrics
                .batch_seconds
                .observe(b.started.elapsed().as_secs_f64());
        }
    }
}

struct Split {
    catalog: Vec<OwnedMessage>,
    users: Vec<Vec<OwnedMessage>>,
}

fn split(batch: Vec<OwnedMessage>, n: usize) -> Split {
    let mut catalog = Vec::new();
    let mut users = vec![Vec::with_capacity(batch.len() / n + 1); n];
    for m in batch {
        let content_type = funnel_core::ContentType::from_header(funnel_bus::headers::get(
            m.headers(),
            funnel_bus::headers::CONTENT_TYPE,
        ));
        let payload = m.payload().unwrap_or_default();
        if content_type.is_ok_and(|ct| funnel_core::parse::is_catalog_event(payload, ct)) {
            catalog.push(m);
            continue;
        }
        let part = m
            .key()
            .map_or(0, |k| xxhash_rust::xxh3::xxh3_64(k) as usize % n);
        users[part].push(m);
    }
    Split { catalog, users }
}
