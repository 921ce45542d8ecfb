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
use std::time::Duration;

use anyhow::Context as _;
use funnel_bus::{BatchConsumer, Lane, LaneSettings, Lanes, Message, OwnedMessage, Producer};
use funnel_proto::pb::ingest::v1::features_server::FeaturesServer;
use funnel_runtime::{Health, Shutdown, admin};
use funnel_store::{FeatureReader, Keys, Store};
use prometheus_client::registry::Registry;

pub use config::Config;
pub use funnel_runtime::Listeners;

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
    let lane = || IngestLane {
        processor: pipeline::Processor::new(
            keys.clone(),
            config.ingest.clone(),
            config.topics.clone(),
            store.clone(),
            metrics.clone(),
        ),
        producer: producer.clone(),
    };
    let lanes = Lanes::new((0..config.ingest.workers).map(|_| lane()).collect())
        .with_prelude(lane(), is_catalog);
    health.set_ready(true, &[FEATURES_SERVICE]).await;
    tracing::info!(topic = %config.topics.raw, group = %config.kafka.group_id, "ingest consuming");

    let settings = LaneSettings {
        batch_max: config.ingest.batch_max,
        linger: Duration::from_millis(config.ingest.batch_linger_ms),
        retry_backoff_max: Duration::from_millis(config.ingest.retry_backoff_max_ms),
        // Throughput first: fetching runs well ahead of the lanes.
        max_inflight: 8,
    };
    let consumed = lanes
        .run(&consumer, &settings, &metrics.batch, &shutdown)
        .await
        .map_err(anyhow::Error::from);

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

/// A lane of ingest: plans, writes and publishes the parts of batches it is given.
///
/// A retry after a failed publish finds the events' markers set by the failed attempt,
/// so features are not written twice but the events are published.
struct IngestLane {
    processor: pipeline::Processor,
    producer: Producer,
}

impl Lane for IngestLane {
    type Error = anyhow::Error;
    type Finish = funnel_bus::lanes::Done;

    async fn process(&mut self, messages: &[OwnedMessage]) -> anyhow::Result<Self::Finish> {
        let out = self
            .processor
            .process(messages, funnel_core::now_ms())
            .await?;
        self.producer.send_all_once(out.records).await?;
        Ok(funnel_bus::lanes::done())
    }
}

/// Catalog records are applied before the user events of their batch, so those see
/// the items.
fn is_catalog(m: &OwnedMessage) -> bool {
    let content_type = funnel_core::ContentType::from_header(funnel_bus::headers::get(
        m.headers(),
        funnel_bus::headers::CONTENT_TYPE,
    ));
    let payload = m.payload().unwrap_or_default();
    content_type.is_ok_and(|ct| funnel_core::parse::is_catalog_event(payload, ct))
}
