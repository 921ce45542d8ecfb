//! `funnel demo`: the whole pipeline in one process. With no Kafka and no
//! Redis given, librdkafka's in-process mock cluster is the broker and an
//! in-memory store the feature store; simulated traffic flows through ingest
//! and behavior-predictor while a live summary prints progress, rates, DLQ
//! counts, a shopper's features and the latest intent predictions. Given Redis, the
//! recommender runs too and shows a live list for a shopper at every summary.

mod recommender;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use funnel_bus::admin::ensure_topics;
use funnel_bus::{BatchConsumer, ConsumerMetrics, KafkaConfig, Message, Producer, Topics};
use funnel_proto::pb::behavior::v1::IntentPrediction;
use funnel_proto::pb::ingest::v1::GetUserFeaturesRequest;
use funnel_proto::pb::ingest::v1::features_client::FeaturesClient;
use funnel_runtime::Shutdown;
use funnel_sim::Simulator;
use funnel_store::{MemoryStore, RedisConfig, RedisStore, Store};
use prost::Message as _;

use crate::probe;

/// Key prefix in the feature store, shared by ingest and behavior-predictor (which reads
/// ingest's catalog records).
const KEY_PREFIX: &str = "funnel-demo";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Use these Kafka brokers instead of the embedded mock cluster.
    #[arg(long)]
    kafka: Option<String>,
    /// Use this Redis instead of the in-memory store.
    #[arg(long)]
    redis: Option<String>,
    /// Simulated events per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
    /// Stop after this many events were produced.
    #[arg(long)]
    events: Option<u64>,
    /// gRPC address of ingest's Features service.
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc_listen: String,
    /// Admin address (metrics, health).
    #[arg(long, default_value = "127.0.0.1:9464")]
    admin_listen: String,
    /// gRPC address of behavior-predictor's BehaviorPredictor service.
    #[arg(long, default_value = "127.0.0.1:50052")]
    predictor_grpc_listen: String,
    /// behavior-predictor's admin address (metrics, health).
    #[arg(long, default_value = "127.0.0.1:9465")]
    predictor_admin_listen: String,
    /// gRPC address of the recommender (started only with `--redis`).
    #[arg(long, default_value = "127.0.0.1:50053")]
    recommender_grpc_listen: String,
    /// The recommender's admin address (metrics, health).
    #[arg(long, default_value = "127.0.0.1:9466")]
    recommender_admin_listen: String,
    /// Directory holding the models (`intent/1`, `repurchase/1`, `ranker/3`, ...).
    #[arg(long, default_value = "models")]
    models_root: PathBuf,
    /// The ONNX Runtime shared library (installed by scripts/setup.sh).
    #[arg(
        long,
        env = "ORT_DYLIB_PATH",
        default_value = ".tools/onnxruntime/libonnxruntime.so"
    )]
    onnxruntime: PathBuf,
    /// Seconds between summaries.
    #[arg(long, default_value_t = 2)]
    every: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 2_000)]
    users: usize,
    #[arg(long, default_value_t = 1_000)]
    items: usize,
    /// Share of malformed events, to show the DLQ at work.
    #[arg(long, default_value_t = 0.01)]
    invalid_rate: f64,
    /// Share of re-sent events, to show deduplication at work.
    #[arg(long, default_value_t = 0.01)]
    duplicate_rate: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    // Warnings only unless RUST_LOG says otherwise: the summary is the output.
    let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,rdkafka=error".into());
    let telemetry = funnel_runtime::telemetry::init(
        &funnel_runtime::TelemetryConfig {
            log_filter,
            ..Default::default()
        },
        "funnel-demo",
    )?;
    let result = demo(args).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    result
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let topics = Topics::default();
    // The mock cluster lives on this stack for the whole demo.
    let mock;
    let (brokers, broker_label) = match &args.kafka {
        Some(b) => {
            ensure_topics(
                &KafkaConfig::new(b, "funnel-demo"),
                &crate::topics::specs(&topics, 4, 1),
            )
            .await
            .context("failed to create topics")?;
            (b.clone(), format!("Kafka at {b}"))
        }
        None => {
            mock = rdkafka::mocking::MockCluster::new(1)
                .context("failed to start the mock cluster")?;
            for spec in crate::topics::specs(&topics, 4, 1) {
                mock.create_topic(&spec.name, spec.partitions, 1)?;
            }
            (
                mock.bootstrap_servers(),
                "embedded mock cluster (librdkafka)".to_string(),
            )
        }
    };
    let (store, store_label) = match &args.redis {
        Some(url) => {
            let cfg = RedisConfig {
                url: url.clone(),
                key_prefix: KEY_PREFIX.into(),
                ..RedisConfig::default()
            };
            (
                Store::Redis(RedisStore::connect(&cfg).await?),
                format!("Redis at {url}"),
            )
        }
        None => (
            Store::Memory(MemoryStore::new(2_000_000)),
            "in-memory store".to_string(),
        ),
    };

    let mut config = ingest::Config {
        kafka: KafkaConfig::new(&brokers, "funnel-demo-ingest"),
        ..ingest::Config::default()
    };
    config.grpc.listen = args.grpc_listen.clone();
    config.admin.listen = args.admin_listen.clone();
    config.redis.key_prefix = KEY_PREFIX.into();
    let listeners = ingest::Listeners::bind(&config.grpc, &config.admin).await?;
    let grpc_addr = listeners.grpc.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let ingest = tokio::spawn(ingest::run(
        config,
        listeners,
        store.clone(),
        shutdown.clone(),
    ));

    let mut config = behavior_predictor::Config {
        kafka: KafkaConfig::new(&brokers, "funnel-demo-predictor"),
        ..behavior_predictor::Config::default()
    };
    config.grpc.listen = args.predictor_grpc_listen.clone();
    config.admin.listen = args.predictor_admin_listen.clone();
    config.redis.key_prefix = KEY_PREFIX.into();
    config.models.root = args.models_root.display().to_string();
    config.models.runtime_library = args.onnxruntime.display().to_string();
    // The conversion policy keeps its caps in Redis: without it, no policy.
    config.policy.file = match &store {
        Store::Redis(_) => args.models_root.join("policy.toml").display().to_string(),
        Store::Memory(_) => String::new(),
    };
    let models = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || behavior_predictor::load_models(&config))
            .await?
            .context("behavior-predictor cannot load its models (scripts/setup.sh installs ONNX Runtime; see --models-root, --onnxruntime)")?
    };
    let model = models.scorer.intent_info().id;
    let predictions_topic = config.topics.predictions.clone();
    let listeners = behavior_predictor::Listeners::bind(&config.grpc, &config.admin).await?;
    let predictor_grpc = listeners.grpc.local_addr()?;
    let predictor_admin = listeners.admin.local_addr()?;
    let recommender = match &store {
        Store::Redis(_) => Some(
            recommender::DemoRecommender::start(
                recommender::Setup {
                    brokers: &brokers,
                    key_prefix: KEY_PREFIX,
                    grpc_listen: &args.recommender_grpc_listen,
                    admin_listen: &args.recommender_admin_listen,
                    models_root: &args.models_root,
                    onnxruntime: &args.onnxruntime,
                },
                store.clone(),
                shutdown.clone(),
            )
            .await?,
        ),
        Store::Memory(_) => None,
    };
    let predictor = tokio::spawn(behavior_predictor::run(
        config,
        listeners,
        store,
        models,
        shutdown.clone(),
    ));
    let predictions = PredictionWatch::start(&brokers, &predictions_topic, shutdown.clone())?;

    println!("funnel demo: broker = {broker_label}; feature store = {store_label}");
    println!(
        "  ingest gRPC on {grpc_addr} (funnel.ingest.v1.Features, health, reflection); metrics on http://{admin_addr}/metrics"
    );
    println!(
        "  behavior-predictor ({model}) gRPC on {predictor_grpc} (funnel.behavior.v1.BehaviorPredictor); metrics on http://{predictor_admin}/metrics"
    );
    match &recommender {
        Some(r) => println!(
            "  recommender gRPC on {} (funnel.recommender.v1.Recommender)",
            r.grpc
        ),
        None => println!("  recommender: not started (it needs Redis: --redis URL)"),
    }
    println!(
        "  simulated traffic at {} events/s ({}% malformed, {}% re-sent); Ctrl-C to stop\n",
        args.rate,
        args.invalid_rate * 100.0,
        args.duplicate_rate * 100.0
    );

    let sim_config = funnel_sim::SimConfig {
        seed: args.seed,
        users: args.users,
        items: args.items,
        sessions: None,
        start_ms: funnel_core::now_ms(),
        invalid_rate: args.invalid_rate,
        duplicate_rate: args.duplicate_rate,
        collect_truths: false,
        ..funnel_sim::SimConfig::default()
    };
    let sent = Arc::new(AtomicU64::new(0));
    // (settled, latest): users of the previous and the current slice of traffic.
    let last_user = Arc::new(Mutex::new((String::new(), String::new())));
    let feeder = {
        let producer = Producer::new(&KafkaConfig::new(&brokers, "funnel-demo-simulate"))?;
        let (sent, last_user, shutdown) =
            (Arc::clone(&sent), Arc::clone(&last_user), shutdown.clone());
        let (rate, limit) = (args.rate, args.events);
        let topic = topics.raw.clone();
        tokio::spawn(async move {
            let mut sim = Simulator::new(sim_config)?;
            let catalog = sim.catalog().len() as u64;
            let feed_started = Instant::now();
            let stop = || {
                shutdown.is_triggered()
                    || limit.is_some_and(|l| sent.load(Ordering::Relaxed) >= l + catalog)
            };
            // Feed in slices so the summary can show a user who is active right now.
            while !stop() {
                let before = sent.load(Ordering::Relaxed);
                let mut slice = sim
                    .by_ref()
                    .take(rate.max(50) as usize / 10)
                    .collect::<Vec<_>>();
                if slice.is_empty() {
                    break;
                }
                // Show the user of the previous slice: their events are ingested by now.
                if let Some(u) = slice
                    .iter()
                    .rev()
                    .find_map(|r| r.json()?.get("user_id")?.as_str().map(str::to_string))
                {
                    let mut users = last_user.lock().expect("lock");
                    users.0 = std::mem::replace(&mut users.1, u);
                }
                let records = slice
                    .drain(..)
                    .map(|r| {
                        funnel_bus::OutRecord::new(
                            &topic,
                            r.key.as_deref().map(str::as_bytes),
                            crate::simulate::payload(&r, true),
                        )
                    })
                    .collect::<Vec<_>>();
                producer.send_all(&records).await?;
                sent.fetch_add(records.len() as u64, Ordering::Relaxed);
                // Pace on the total since the start, so slow sends are caught up.
                let due = Duration::from_secs_f64(
                    (before + records.len() as u64) as f64 / rate.max(1) as f64,
                );
                if let Some(wait) = due.checked_sub(feed_started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            anyhow::Ok(())
        })
    };

    let started = Instant::now();
    let mut last = (Instant::now(), 0.0);
    let mut ticker = tokio::time::interval(Duration::from_secs(args.every.max(1)));
    ticker.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let user = last_user.lock().expect("lock").0.clone();
        last = summary(admin_addr, grpc_addr, &sent, &user, started, last).await;
        predictions.print(predictor_admin).await;
        if let Some(r) = &recommender {
            r.print(&user).await;
        }
        let done_by_time = args
            .duration
            .is_some_and(|d| started.elapsed() >= Duration::from_secs(d));
        if done_by_time || feeder.is_finished() {
            // Let ingest drain what was produced before stopping.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let user = last_user.lock().expect("lock").0.clone();
            summary(admin_addr, grpc_addr, &sent, &user, started, last).await;
            predictions.print(predictor_admin).await;
            shutdown.trigger();
            break;
        }
    }
    if let Ok(Err(e)) = feeder.await {
        eprintln!("simulator stopped: {e:#}");
    }
    ingest.await??;
    predictor.await??;
    if let Some(r) = recommender {
        r.task.await??;
    }
    // Its consumer leaves the group while the (mock) broker still runs.
    predictions.task.await?;
    println!(
        "demo stopped after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn summary(
    admin: SocketAddr,
    grpc: SocketAddr,
    sent: &AtomicU64,
    user: &str,
    started: Instant,
    last: (Instant, f64),
) -> (Instant, f64) {
    let body = probe::http_get(admin, "/metrics").await.unwrap_or_default();
    let s = probe::samples(&body);
    let consumed = probe::sum(&s, "ingest_events_in_total");
    let out = probe::sum(&s, "ingest_events_out_total");
    let dlq = probe::sum(&s, "ingest_dlq_total");
    let dups = probe::sum(&s, "ingest_dedup_hits_total");
    let rate = (consumed - last.1) / last.0.elapsed().as_secs_f64().max(1e-3);
    let mut reasons = probe::by_label(&s, "ingest_dlq_total", "reason");
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1));
    let reasons = reasons
        .iter()
        .map(|(r, n)| format!("{r} {n:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "[{:>4.0}s] produced {} | ingested {consumed:.0} ({rate:.0}/s) | canonical {out:.0} | DLQ {dlq:.0} ({reasons}) | duplicates dropped {dups:.0}",
        started.elapsed().as_secs_f64(),
        sent.load(Ordering::Relaxed),
    );
    if !user.is_empty()
        && let Ok(mut client) = FeaturesClient::connect(format!("http://{grpc}")).await
        && let Ok(f) = client
            .get_user_features(GetUserFeaturesRequest {
                user_id: user.into(),
            })
            .await
    {
        let f = f.into_inner();
        let session = f.session.unwrap_or_default();
        let mut counts = f.counts.iter().collect::<Vec<_>>();
        counts.sort();
        println!(
            "        {user}: session {} with {} events, last query {:?}; cart {} items worth {:.2}; recent {:?}; lifetime {:?}",
            session.session_id,
            session.event_count,
            session.last_query,
            f.cart_quantity,
            f.cart_value,
            f.recent_item_ids.iter().take(3).collect::<Vec<_>>(),
            counts,
        );
    }
    (Instant::now(), consumed)
}

/// The latest intent predictions, read from the predictions topic as any consumer would.
struct PredictionWatch {
    latest: Arc<Mutex<(u64, VecDeque<IntentPrediction>)>>,
    task: tokio::task::JoinHandle<()>,
}

/// Predictions shown per summary.
const SHOWN_PREDICTIONS: usize = 3;

impl PredictionWatch {
    /// Reads until `shutdown`.
    fn start(brokers: &str, topic: &str, shutdown: Shutdown) -> anyhow::Result<PredictionWatch> {
        let consumer = BatchConsumer::subscribe(
            &KafkaConfig::new(brokers, "funnel-demo-watch"),
            &[topic],
            ConsumerMetrics::default(),
        )?;
        let latest = Arc::new(Mutex::new((0, VecDeque::new())));
        let task = {
            let latest = Arc::clone(&latest);
            tokio::spawn(async move {
                loop {
                    // Messages of a batch cut short are lost to this reader only.
                    let batch = tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break,
                        batch = consumer.next_batch(1_000, Duration::from_millis(10)) => batch,
                    };
                    let Ok(batch) = batch else { break };
                    let mut latest = latest.lock().expect("lock");
                    for m in batch {
                        let Ok(p) = IntentPrediction::decode(m.payload().unwrap_or_default())
                        else {
                            continue;
                        };
                        latest.0 += 1;
                        latest.1.push_front(p);
                        latest.1.truncate(SHOWN_PREDICTIONS);
                    }
                }
            })
        };
        Ok(PredictionWatch { latest, task })
    }

    /// The predictor's progress and the latest predictions.
    async fn print(&self, admin: SocketAddr) {
        let body = probe::http_get(admin, "/metrics").await.unwrap_or_default();
        let s = probe::samples(&body);
        let (read, latest) = {
            let latest = self.latest.lock().expect("lock");
            (latest.0, latest.1.iter().cloned().collect::<Vec<_>>())
        };
        println!(
            "        behavior-predictor: consumed {:.0} | predictions {:.0} (debounced {:.0}) | read from the topic {read}",
            probe::sum(&s, "behavior_events_in_total"),
            probe::sum(&s, "behavior_predictions_total"),
            probe::sum(&s, "behavior_debounced_total"),
        );
        for p in latest {
            println!(
                "        prediction {}@{}: {} session {} purchase {:.3} abandonment {:.3}",
                p.model,
                p.model_version,
                p.user_id,
                p.session_id,
                p.purchase_probability,
                p.abandonment_probability,
            );
        }
    }
}
