//! recommender: ranked item lists for a user, with the sources that produced each item,
//! business rules, attribution of clicks and orders, and A/B arms.
//!
//! Serves `funnel.recommender.v1.Recommender` over gRPC. Per request: one Redis round trip
//! (a Lua script reads ingest's user keys, the service's purchased set and the anchors'
//! co-visitation and bought-together sets, and records the answer), candidates from six
//! sources, the business rules, the ranker's features (exactly as training computes
//! them; `models/ranker/<version>/parity.json` holds the two together), one ONNX run
//! (arm `ranker`) or the co-visitation score (arm `covis`), boosts and
//! diversity. Every answer is logged to `funnel.recommendations.v1`. The catalog
//! (`funnel.catalog.v1`, whole, every instance), category popularity (Redis, every few
//! seconds) and item embeddings are held in memory; `funnel.events.v1` keeps purchases
//! and attribution counters current in Redis.
//!
//! # Layout
//! - [`config`]: [`Config`], every key with its default.
//! - [`features`]: the ranker's 15 features and what they read.
//! - [`catalog`]: the in-memory catalog, its reader and category popularity.
//! - [`embeddings`]: item embeddings and their exact nearest neighbours.
//! - [`candidates`]: the candidate sources.
//! - [`rules`]: the business rules file and its reload.
//! - [`ranking`]: arms, the ranker, and [`ranking::Engine::rank`] that puts it together.
//! - [`state`]: Redis keys and the two Lua scripts.
//! - [`stream`]: purchases and attribution from the event stream.
//! - [`grpc`]: the `Recommender` service.
//! - [`metrics`]: metric names.
//! - [`run`]: wires it together until shutdown.

pub mod candidates;
pub mod catalog;
pub mod config;
pub mod embeddings;
pub mod features;
pub mod grpc;
pub mod metrics;
pub mod ranking;
pub mod rules;
pub mod state;
pub mod stream;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use funnel_bus::{BatchConsumer, Producer};
use funnel_model::{Model, ModelHandle};
use funnel_proto::pb::recommender::v1::recommender_server::RecommenderServer;
use funnel_runtime::reload::FileStamp;
use funnel_runtime::{Health, Shutdown, admin};
use funnel_store::Store;
use prometheus_client::registry::Registry;

pub use config::Config;
pub use embeddings::Embeddings;
pub use funnel_runtime::Listeners;

/// The gRPC name of the service, for health checks.
pub const SERVICE: &str = "funnel.recommender.v1.Recommender";
/// How long the answer log's producer waits to fill a batch (librdkafka `linger.ms`).
pub const LOG_LINGER_MS: u64 = 50;

/// The ranker (validated and warmed) and the item embeddings with their neighbours.
pub struct Models {
    pub ranker: Model,
    pub embeddings: Option<Embeddings>,
}

/// The version of `name` to serve: `<root>/<name>/serving` when it names one, else
/// `configured`.
pub fn serving_version(root: &Path, name: &str, configured: &str) -> String {
    std::fs::read_to_string(root.join(name).join("serving"))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| configured.to_owned())
}

/// Loads the ONNX Runtime library, the ranker and the embeddings; blocking (the
/// neighbour search runs here).
pub fn load_models(config: &Config) -> anyhow::Result<Models> {
    let m = &config.models;
    let library = Path::new(&m.runtime_library);
    if let Err(e) = funnel_model::init_runtime(library) {
        anyhow::bail!(
            "failed to load models.runtime_library {}: {e}",
            library.display()
        );
    }
    let root = Path::new(&m.root);
    let version = serving_version(root, &m.ranker, &m.ranker_version);
    let ranker =
        ranking::load_ranker(root, &m.ranker, &version, m.sessions).with_context(|| {
            format!(
                "failed to load the ranker {}@{version} under models.root {}",
                m.ranker, m.root
            )
        })?;
    let started = std::time::Instant::now();
    let embeddings = if m.embeddings_version.is_empty() {
        None
    } else {
        Some(
            Embeddings::load(
                root,
                &m.embeddings,
                &m.embeddings_version,
                m.embedding_neighbours,
                m.exact_search_max_items,
            )
            .with_context(|| {
                format!(
                    "failed to load models.embeddings {}@{}",
                    m.embeddings, m.embeddings_version
                )
            })?,
        )
    };
    if let Some(e) = &embeddings {
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(items = e.len(), version = %e.version, ms, "item embeddings loaded, neighbours found by exact search");
    }
    Ok(Models { ranker, embeddings })
}

/// Swaps in the ranker version the serving pointer names when it changes, every
/// `every`, until `stop`; a version that fails to load is refused and logged.
async fn watch_ranker(
    config: Config,
    ranker: Arc<ModelHandle>,
    metrics: metrics::Metrics,
    every: Duration,
    stop: Shutdown,
) {
    let m = config.models;
    let root = std::path::PathBuf::from(&m.root);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let wanted = serving_version(&root, &m.ranker, &m.ranker_version);
        if wanted == ranker.info().id.version {
            continue;
        }
        let (handle, dir, name, sessions) = (
            Arc::clone(&ranker),
            root.clone(),
            m.ranker.clone(),
            m.sessions,
        );
        let version = wanted.clone();
        let swapped = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            handle.swap(ranking::load_ranker(&dir, &name, &version, sessions)?)?;
            Ok(())
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        match swapped {
            Ok(()) => {
                metrics.model_swaps.inc();
                metrics.model_serving(&m.ranker, &wanted);
                tracing::info!(model = %m.ranker, version = %wanted, "ranker version swapped in");
            }
            Err(e) => {
                metrics.model_refusals.inc();
                tracing::error!(model = %m.ranker, version = %wanted, error = %e, "ranker version refused; the previous version keeps serving");
                // Not retried until the pointer names another version.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = async {
                        while serving_version(&root, &m.ranker, &m.ranker_version) == wanted {
                            tokio::time::sleep(every).await;
                        }
                    } => {}
                }
            }
        }
    }
}

/// Adds served counters to Redis every `every` until `stop`, and once more after it.
async fn flush_served(
    store: state::RecStore,
    served: grpc::Served,
    ttl_secs: u64,
    metrics: metrics::Metrics,
    every: Duration,
    stop: Shutdown,
) {
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(every) => false,
        };
        let pending = served.take();
        if let Err(e) = store.add_served(&pending, ttl_secs).await {
            metrics.stats_flush_errors.inc();
            tracing::warn!(error = %e, "served counters not flushed; retried with the next");
            served.restore(pending);
        }
        if stopping {
            return;
        }
    }
}

/// Runs the service until `shutdown`: serve once the catalog is read to its end (or
/// `catalog.load_timeout_secs` passed); on shutdown stop consuming, commit offsets, flush
/// counters and the producer, then stop gRPC and the admin server. `store` (Redis) is
/// read for category popularity; the scripts use a connection of their own.
pub async fn run(
    config: Config,
    listeners: Listeners,
    store: Store,
    models: Models,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(store, Store::Redis(_)),
        "the recommender needs Redis (its scripts run there)"
    );
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);
    let registry = Arc::new(registry);
    let (health, health_service) = Health::new();
    let servers = Shutdown::new();
    let background = Shutdown::new();

    let rec_store = state::RecStore::connect(&config.redis).await?;
    let rules_file = Path::new(&config.rules.file);
    let rules_stamp = FileStamp::of(rules_file);
    let rules = rules::Rules::load(rules_file)
        .with_context(|| format!("failed to load rules.file {}", config.rules.file))?;
    let rules = rules::RulesCell::new(rules);
    tokio::spawn(rules::watch_rules(
        rules_file.to_path_buf(),
        rules_stamp,
        rules.clone(),
        Duration::from_secs(config.rules.reload_secs),
        {
            let m = metrics.clone();
            move |taken| {
                let counter = if taken {
                    &m.rules_reloads
                } else {
                    &m.rules_refusals
                };
                counter.inc();
            }
        },
        background.clone(),
    ));

    let embeddings = models.embeddings.map(Arc::new);
    metrics
        .embedding_items
        .set(embeddings.as_ref().map_or(0, |e| e.len()) as i64);
    let catalog = catalog::Catalog::new(embeddings);
    let reader = catalog::CatalogReader::start(&config.kafka, &config.topics.catalog).await?;
    let (loaded_tx, mut loaded) = tokio::sync::watch::channel(false);
    tokio::spawn(reader.run(
        catalog.clone(),
        config.catalog.clone(),
        metrics.clone(),
        loaded_tx,
        background.clone(),
    ));
    tokio::spawn(catalog::refresh_popularity_until(
        catalog.clone(),
        store.clone(),
        rec_store.keys().ingest.clone(),
        config.catalog.clone(),
        metrics.clone(),
        background.clone(),
    ));

    let ranker = Arc::new(ModelHandle::new(models.ranker));
    metrics.model_serving(&config.models.ranker, &ranker.info().id.version);
    if config.models.reload_secs > 0 {
        tokio::spawn(watch_ranker(
            config.clone(),
            Arc::clone(&ranker),
            metrics.clone(),
            Duration::from_secs(config.models.reload_secs),
            background.clone(),
        ));
    }
    // The producer only logs answers, and no caller waits for a log: batching up to
    // LOG_LINGER_MS sends one produce request per batch instead of one per few answers.
    // `kafka.options` may set `linger.ms` otherwise.
    let mut log_kafka = config.kafka.clone();
    log_kafka
        .options
        .entry("linger.ms".into())
        .or_insert_with(|| LOG_LINGER_MS.to_string());
    let producer = Producer::new(&log_kafka).context("failed to start the producer")?;
    let served = grpc::Served::default();
    let engine = ranking::Engine {
        catalog,
        rules,
        ranker,
        limits: config.candidates.clone(),
        new_item_ms: (config.catalog.new_item_secs as i64).saturating_mul(1000),
        index_per_key: config.catalog.index_per_key,
        metrics: metrics.clone(),
    };
    let service = grpc::RecommenderService::new(grpc::ServiceParts {
        engine,
        store: rec_store.clone(),
        arms: ranking::Arms::new(&config.experiment),
        producer: producer.clone(),
        topic: config.topics.recommendations.clone(),
        neighbours_per_anchor: config.candidates.neighbours_per_anchor,
        record_ttl_secs: config.stream.attribution_ttl_secs,
        served: served.clone(),
    });
    let flusher = tokio::spawn(flush_served(
        rec_store.clone(),
        served,
        config.stream.stats_ttl_secs,
        metrics.clone(),
        Duration::from_millis(config.experiment.stats_flush_ms),
        background.clone(),
    ));

    let admin = admin::serve(listeners.admin, registry, health.clone(), servers.clone());
    let admin = tokio::spawn(admin);
    let grpc = funnel_runtime::grpc::spawn_server(
        listeners.grpc,
        health_service,
        funnel_proto::RECOMMENDER_FILE_DESCRIPTOR_SET,
        |router| router.add_service(RecommenderServer::new(service)),
        &servers,
    )?;

    let consumer = BatchConsumer::subscribe(
        &config.kafka,
        &[&config.topics.events],
        metrics.consumer.clone(),
    )
    .context("failed to start the event consumer")?;
    let load_timeout = Duration::from_secs(config.catalog.load_timeout_secs);
    if tokio::time::timeout(load_timeout, loaded.wait_for(|l| *l))
        .await
        .is_err()
    {
        tracing::warn!(topic = %config.topics.catalog, "catalog not read to its end within catalog.load_timeout_secs; serving anyway");
    }
    health.set_ready(true, &[SERVICE]).await;
    tracing::info!(events = %config.topics.events, group = %config.kafka.group_id, "recommender serving");

    let consumed =
        stream::consume(&consumer, &rec_store, &config.stream, &metrics, &shutdown).await;

    health.set_ready(false, &[SERVICE]).await;
    let grace = Duration::from_secs(config.stream.shutdown_grace_secs);
    if let Err(e) = consumer.commit().await {
        tracing::warn!(error = %e, "final commit failed; uncommitted batches will be replayed");
    }
    servers.trigger();
    let _ = funnel_runtime::shutdown::with_grace("grpc server", grace, grpc).await;
    background.trigger();
    let _ = funnel_runtime::shutdown::with_grace("served counters", grace, flusher).await;
    if let Err(e) = producer.flush(grace).await {
        tracing::warn!(error = %e, "producer flush failed");
    }
    let _ = funnel_runtime::shutdown::with_grace("admin server", grace, admin).await;
    tracing::info!("recommender stopped");
    consumed.map_err(anyhow::Error::from)
}
