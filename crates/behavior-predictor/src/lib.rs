//! behavior-predictor: what a shopper will do next, from the canonical event stream.
//!
//! Consumes `funnel.events.v1`, keeps each session's state and each user's history in
//! Redis, scores purchase intent and cart abandonment with the intent model after the
//! session's events and publishes `funnel.behavior.v1.IntentPrediction`s to
//! `funnel.predictions.behavior.v1`; applies the conversion policy to them and to idle
//! sessions and publishes `funnel.behavior.v1.ConversionAction`s to
//! `funnel.actions.conversion.v1`; serves `funnel.behavior.v1.BehaviorPredictor` over
//! gRPC (intent and repurchase scores with the features used and an explanation). The
//! features are computed exactly as `models/funnel_models/features.py` computes them
//! offline; `tests/parity.rs` holds the two together.
//!
//! # Layout
//! - [`config`]: [`Config`], every key with its default.
//! - [`features`]: [`SessionState`] (one session, updated per event), [`UserHistory`],
//!   [`intent_features`] and [`repurchase_features`], with the feature names in model order.
//! - [`context`]: [`StreamContext`], what the stream knows beyond a session (catalog prices
//!   and categories, item popularity), and the [`EventContext`] it gives each event.
//! - [`models`]: checks that a loaded model's card lists exactly these features.
//! - [`scoring`]: the models in service, batch inference and occlusion explanations.
//! - [`lifecycle`]: which version of each model serves; the watcher that swaps a changed
//!   one in without restart, or refuses it.
//! - [`shadow`]: an optional candidate intent version scored alongside, published only to
//!   the shadow topic.
//! - [`state`]: the Redis keys of sessions, users, items and event markers.
//! - [`pipeline`]: one batch of events to predictions and one atomic state write.
//! - [`policy`]: the conversion policy file, its rules and the holdout split.
//! - [`conversion`]: the policy applied to predictions and idle sessions, caps and
//!   cool-downs in Redis, `ConversionAction`s published; the file watcher.
//! - [`grpc`]: the `BehaviorPredictor` service.
//! - [`metrics`]: metric names.
//! - [`run`]: wires it together until shutdown.

pub mod config;
pub mod context;
pub mod conversion;
pub mod features;
pub mod grpc;
pub mod lifecycle;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod policy;
pub mod scoring;
pub mod shadow;
pub mod state;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use funnel_bus::{BatchConsumer, Lane, LaneSettings, Lanes, OwnedMessage, Producer};
use funnel_proto::pb::behavior::v1::behavior_predictor_server::BehaviorPredictorServer;
use funnel_runtime::{Health, Shutdown, admin};
use funnel_store::Store;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

pub use config::Config;
pub use context::{CatalogItem, EventContext, StreamContext};
pub use features::{
    INTENT_FEATURES, IntentFeatures, OrderRecord, REPURCHASE_FEATURES, RepurchaseFeatures,
    SessionState, UserHistory, intent_features, repurchase_features,
};
pub use funnel_runtime::Listeners;
pub use models::{FeatureMismatch, check_features};
pub use scoring::Scorer;

/// The gRPC name of the service, for health checks.
pub const SERVICE: &str = "funnel.behavior.v1.BehaviorPredictor";

/// The models a predictor serves, as [`load_models`] loaded them.
pub struct Models {
    pub scorer: Scorer,
    /// Each model with the state of its files before it was loaded: where the watcher
    /// starts.
    loaded_from: Vec<(lifecycle::Watched, lifecycle::Fingerprint)>,
}

/// Loads the ONNX Runtime library and both models (validated and warmed), blocking: the
/// versions their `serving` pointer files name, else the configured ones.
pub fn load_models(config: &Config) -> anyhow::Result<Models> {
    let m = &config.models;
    funnel_model::init_runtime(Path::new(&m.runtime_library)).with_context(|| {
        format!(
            "failed to load models.runtime_library {}",
            m.runtime_library
        )
    })?;
    let root = Path::new(&m.root);
    let [intent, repurchase] = lifecycle::Watched::both(m).map(|watched| {
        let files = watched.before_loading(root);
        (watched, files)
    });
    let scorer = Scorer::load(
        root,
        (&m.intent, intent.1.version()),
        (&m.repurchase, repurchase.1.version()),
        m.sessions,
    )
    .with_context(|| format!("failed to load the models under models.root {}", m.root))?;
    Ok(Models {
        scorer,
        loaded_from: vec![intent, repurchase],
    })
}

/// Runs the service until `shutdown`: stop consuming, finish the batch in hand, commit
/// offsets, flush the producer, then stop gRPC and the admin server.
pub async fn run(
    config: Config,
    listeners: Listeners,
    store: Store,
    models: Models,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);
    let registry = Arc::new(registry);
    let (health, health_service) = Health::new();
    let servers = Shutdown::new();
    let scorer = Arc::new(models.scorer);
    let keys = state::StateKeys::new(&config.redis.key_prefix);

    let service = grpc::BehaviorService::new(store.clone(), keys.clone(), Arc::clone(&scorer));
    let grpc = funnel_runtime::grpc::spawn_server(
        listeners.grpc,
        health_service,
        funnel_proto::BEHAVIOR_FILE_DESCRIPTOR_SET,
        |router| router.add_service(BehaviorPredictorServer::new(service)),
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
        &[&config.topics.events],
        metrics.consumer.clone(),
    )
    .context("failed to start the consumer")?;
    let producer = Producer::new(&config.kafka).context("failed to start the producer")?;
    let background_stop = Shutdown::new();
    for (watched, _) in &models.loaded_from {
        metrics.model_serving(&watched.name, &scorer.info(watched.role).id.version, None);
    }
    if config.models.reload_secs > 0 {
        tokio::spawn(lifecycle::watch_models(
            config.models.root.clone().into(),
            models.loaded_from,
            Arc::clone(&scorer),
            Duration::from_secs(config.models.reload_secs),
            metrics.clone(),
            background_stop.clone(),
        ));
    }
    let conversion = match (&store, config.policy.file.is_empty()) {
        (_, true) => None,
        (Store::Memory(_), false) => {
            tracing::warn!("conversion policy needs Redis for its caps; no conversion actions");
            None
        }
        (Store::Redis(_), false) => Some(
            conversion::Conversion::start(
                conversion::ConversionParts {
                    settings: config.policy.clone(),
                    redis: config.redis.clone(),
                    keys: keys.clone(),
                    scorer: Arc::clone(&scorer),
                    producer: producer.clone(),
                    topic: config.topics.actions.clone(),
                    session_ttl_secs: config.predictor.session_ttl_secs,
                    metrics: metrics.clone(),
                },
                &background_stop,
            )
            .await?,
        ),
    };
    let shadow = load_shadow(&config, &scorer, &producer, &metrics).await?;
    let (policy_feed, policy_task) = match conversion {
        Some(conversion) => {
            let (feed, outcomes) = mpsc::channel(POLICY_QUEUE);
            (Some(feed), Some(tokio::spawn(conversion.follow(outcomes))))
        }
        None => (None, None),
    };
    let lanes = (0..config.predictor.workers)
        .map(|_| {
            let processor = pipeline::Processor::new(
                keys.clone(),
                config.predictor.clone(),
                (
                    config.topics.predictions.clone(),
                    config.kafka.group_id.clone(),
                ),
                &store,
                Arc::clone(&scorer),
                metrics.clone(),
            );
            PredictorLane {
                processor: match &shadow {
                    Some(shadow) => processor.with_shadow(shadow.clone()),
                    None => processor,
                },
                producer: producer.clone(),
                policy: policy_feed.clone(),
                publish_seconds: metrics.publish_seconds.clone(),
                retry_backoff_max: Duration::from_millis(config.predictor.retry_backoff_max_ms),
                shutdown: shutdown.clone(),
            }
        })
        .collect();
    health.set_ready(true, &[SERVICE]).await;
    tracing::info!(
        topic = %config.topics.events,
        group = %config.kafka.group_id,
        intent = %scorer.intent_info().id,
        workers = config.predictor.workers,
        "behavior-predictor consuming"
    );

    let s = &config.predictor;
    let settings = LaneSettings {
        batch_max: s.batch_max,
        linger: Duration::from_millis(s.batch_linger_ms),
        retry_backoff_max: Duration::from_millis(s.retry_backoff_max_ms),
        max_inflight: s.inflight_batches,
    };
    let consumed = Lanes::new(lanes)
        .run(&consumer, &settings, &metrics.batch, &shutdown)
        .await;
    drop(policy_feed);
    let grace = Duration::from_secs(config.predictor.shutdown_grace_secs);
    if let Some(task) = policy_task {
        // The lanes are gone: the policy applies the outcomes handed over, then ends.
        let _ = funnel_runtime::shutdown::with_grace("conversion policy", grace, task).await;
    }
    background_stop.trigger();

    health.set_ready(false, &[SERVICE]).await;
    if let Err(e) = consumer.commit().await {
        tracing::warn!(error = %e, "final commit failed; uncommitted batches will be replayed");
    }
    if let Err(e) = producer.flush(grace).await {
        tracing::warn!(error = %e, "producer flush failed");
    }
    servers.trigger();
    let _ = funnel_runtime::shutdown::with_grace("grpc server", grace, grpc).await;
    let _ = funnel_runtime::shutdown::with_grace("admin server", grace, admin).await;
    tracing::info!("behavior-predictor stopped");
    consumed.map_err(anyhow::Error::from)
}

/// The shadow intent model `models.shadow_version` names, loaded and validated on a
/// blocking thread; `None` when it is empty.
async fn load_shadow(
    config: &Config,
    scorer: &Arc<Scorer>,
    producer: &Producer,
    metrics: &metrics::Metrics,
) -> anyhow::Result<Option<shadow::Shadow>> {
    let m = &config.models;
    if m.shadow_version.is_empty() {
        return Ok(None);
    }
    let (scorer, root, name, version) = (
        Arc::clone(scorer),
        m.root.clone(),
        m.intent.clone(),
        m.shadow_version.clone(),
    );
    let model =
        tokio::task::spawn_blocking(move || scorer.load_shadow(Path::new(&root), &name, &version))
            .await?
            .with_context(|| {
                format!("failed to load models.shadow_version {}", m.shadow_version)
            })?;
    tracing::info!(shadow = %model.id(), topic = %config.topics.shadow, "shadow model scoring alongside");
    Ok(Some(shadow::Shadow::new(
        model,
        config.topics.shadow.clone(),
        producer.clone(),
        metrics.clone(),
    )))
}

/// Batch outcomes waiting for the conversion policy, at most; a lane waits when the
/// policy is this far behind.
const POLICY_QUEUE: usize = 64;

/// A lane of the predictor: applies, scores and writes the parts of batches it is given
/// and hands their predictions to the producer and their outcome to the conversion
/// policy; a part finishes when its predictions are acknowledged.
struct PredictorLane {
    processor: pipeline::Processor,
    producer: Producer,
    policy: Option<mpsc::Sender<conversion::BatchOutcome>>,
    publish_seconds: Histogram,
    retry_backoff_max: Duration,
    shutdown: Shutdown,
}

impl Lane for PredictorLane {
    type Error = pipeline::BatchError;
    type Finish = Pin<Box<dyn Future<Output = bool> + Send>>;

    async fn process(
        &mut self,
        messages: &[OwnedMessage],
    ) -> Result<Self::Finish, pipeline::BatchError> {
        let sending = self.processor.process(messages, &self.producer).await?;
        let outcome = self.processor.take_outcome();
        if let Some(policy) = &self.policy {
            // Only fails once the policy task is gone, at shutdown.
            let _ = policy.send(outcome).await;
        }
        let (producer, shutdown) = (self.producer.clone(), self.shutdown.clone());
        let (publish_seconds, max_backoff) = (self.publish_seconds.clone(), self.retry_backoff_max);
        let started = sending.enqueued_at();
        Ok(Box::pin(async move {
            if sending.is_empty() {
                return true;
            }
            let delivered = producer.deliver(sending, max_backoff, &shutdown).await;
            publish_seconds.observe(started.elapsed().as_secs_f64());
            delivered
        }))
    }
}
