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

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use funnel_bus::{BatchConsumer, Message, OwnedMessage, Producer};
use funnel_proto::pb::ingest::v1::features_server::FeaturesServer;
use funnel_runtime::{Health, Shutdown, admin};
use funnel_store::{FeatureReader, Keys, Store};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

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
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(funnel_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("failed to build gRPC reflection")?;
    let grpc = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(FeaturesServer::new(grpc::FeaturesService::new(reader)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listeners.grpc), servers.wait());
    let grpc = tokio::spawn(grpc);
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
    let mut processors = (0..config.ingest.workers)
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

    consume(
        &config,
        &consumer,
        &producer,
        &mut processors,
        &metrics,
        &shutdown,
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
    Ok(())
}

/// The consume loop: batch, split the batch by message key, process the
/// parts concurrently (retrying until they succeed or shutdown begins),
/// publish, then store offsets.
async fn consume(
    config: &Config,
    consumer: &BatchConsumer,
    producer: &Producer,
    processors: &mut Vec<pipeline::Processor>,
    metrics: &metrics::Metrics,
    shutdown: &Shutdown,
) {
    let linger = Duration::from_millis(config.ingest.batch_linger_ms);
    let max_backoff = Duration::from_millis(config.ingest.retry_backoff_max_ms);
    while !shutdown.is_triggered() {
        let batch = tokio::select! {
            b = consumer.next_batch(config.ingest.batch_max, linger) => b,
            _ = shutdown.cancelled() => break,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "consume failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let started = Instant::now();
        metrics.events_in.inc_by(batch.len() as u64);
        metrics.batch_size.observe(batch.len() as f64);
        let mut parts = split(batch, processors.len());
        let mut backoff = Duration::from_millis(50);
        loop {
            let result = match process_parts(processors, parts).await {
                (back, Ok(records)) => {
                    parts = back;
                    let sending = Instant::now();
                    let sent = producer.send_all(&records).await;
                    tracing::debug!(
                        records = records.len(),
                        produce_ms = sending.elapsed().as_secs_f64() * 1e3,
                        "batch published"
                    );
                    sent.map_err(anyhow::Error::from)
                }
                (back, Err(e)) => {
                    parts = back;
                    Err(e)
                }
            };
            match result {
                Ok(()) => break,
                Err(e) => {
                    metrics.batch_retries.inc();
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "batch failed; retrying");
                    // A batch that cannot finish before shutdown is not
                    // stored: the next owner of its partitions replays it.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        }
        if let Err(e) =
            consumer.store_offsets(parts.catalog.iter().chain(parts.users.iter().flatten()))
        {
            tracing::warn!(error = %e, "failed to store offsets");
        }
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

/// A batch split for concurrent processing: catalog events first, on their
/// own, then user events in `n` parts by message key (a user's events stay in
/// order within one part).
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

/// Applies the catalog events, then each part of user events on its own task
/// with its own processor; returns the split (for offsets and retries) and
/// every record to publish.
async fn process_parts(
    processors: &mut Vec<pipeline::Processor>,
    split: Split,
) -> (Split, anyhow::Result<Vec<funnel_bus::OutRecord>>) {
    let now = funnel_core::now_ms();
    let mut records = Vec::new();
    if !split.catalog.is_empty() {
        match processors[0].process(&split.catalog, now).await {
            Ok(out) => records.extend(out.records),
            Err(e) => return (split, Err(e.into())),
        }
    }
    let Split { catalog, users } = split;
    let tasks = std::mem::take(processors)
        .into_iter()
        .zip(users)
        .map(|(mut processor, part)| {
            tokio::spawn(async move {
                let result = if part.is_empty() {
                    Ok(pipeline::BatchOutput::default())
                } else {
                    processor.process(&part, now).await
                };
                (processor, part, result)
            })
        })
        .collect::<Vec<_>>();
    let mut users = Vec::with_capacity(tasks.len());
    let mut failure = None;
    for task in tasks {
        let (processor, part, result) = task.await.expect("batch task panicked");
        processors.push(processor);
        users.push(part);
        match result {
            Ok(out) => records.extend(out.records),
            Err(e) => failure = Some(anyhow::Error::from(e)),
        }
    }
    let split = Split { catalog, users };
    match failure {
        Some(e) => (split, Err(e)),
        None => (split, Ok(records)),
    }
}
