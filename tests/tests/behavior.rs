//! behavior-predictor against a real broker (Tansu), a real Redis and ONNX Runtime with the
//! real model files. The events are the scripted stream of `models/intent/1/parity.json`,
//! produced as canonical events; the predictions must be the golden outputs training
//! computed for them. The conversion policy tests script their own sessions at the wall
//! clock and write their policy files to the temp directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use funnel_bus::KafkaConfig;
use funnel_bus::admin::{TopicSpec, ensure_topics};
use funnel_core::pb::{self, EventType, event::Payload};
use funnel_core::{ContentType, Limits, parse_event};
use funnel_proto::pb::behavior::v1::behavior_predictor_client::BehaviorPredictorClient;
use funnel_proto::pb::behavior::v1::{
    IntentPrediction, IntentResponse, PredictIntentRequest, PredictRepurchaseRequest,
    RepurchaseResponse,
};
use funnel_runtime::Shutdown;
use funnel_store::{RedisConfig, RedisStore, Store};
use funnel_tests::{Env, TopicReader, eventually, grpc_services, grpc_serving, http_get};
use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::AsyncCommands;

const WAIT: Duration = Duration::from_secs(60);
const TOLERANCE: f64 = 1e-5;

fn models_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The scripted stream of the intent parity file: its events, parsed by the real
/// validator, and the golden features and outputs after every user event.
struct Golden {
    events: Vec<pb::Event>,
    features: Vec<String>,
    expected: HashMap<String, (Vec<f64>, Vec<f64>)>,
}

fn golden() -> Golden {
    let path = models_root().join("intent/1/parity.json");
    let parity: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let stream = &parity["streams"][0];
    assert_eq!(stream["name"], "scripted");
    let events = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|raw| {
            let bytes = serde_json::to_vec(raw).unwrap();
            parse_event(&bytes, ContentType::Json, &Limits::default()).unwrap()
        })
        .collect();
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let expected = stream["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_owned(),
                (floats(&e["features"]), floats(&e["outputs"])),
            )
        })
        .collect();
    let features = parity["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    Golden {
        events,
        features,
        expected,
    }
}

/// Golden values are the shortest decimals of float32s: compare as float32.
fn close(actual: f32, golden: f64) -> bool {
    (f64::from(actual) - f64::from(golden as f32)).abs() <= TOLERANCE
}

/// Asserts `p` carries the outputs training computed for its event.
fn assert_scored_as_training(p: &IntentPrediction, golden: &Golden) {
    let (_, outputs) = &golden.expected[&p.event_id];
    assert!(
        close(p.purchase_probability, outputs[0]) && close(p.abandonment_probability, outputs[1]),
        "{}: published [{}, {}], training {outputs:?}",
        p.event_id,
        p.purchase_probability,
        p.abandonment_probability
    );
}

/// A test's world: broker, Redis, and the predictor's own topics (one partition, so the
/// whole stream keeps its order as training replayed it).
struct World {
    env: Env,
    events_topic: String,
    predictions_topic: String,
    actions_topic: String,
    producer: FutureProducer,
}

impl World {
    async fn start() -> World {
        let env = Env::start(1).await;
        let events_topic = format!("{}.bp.events", env.prefix);
        let predictions_topic = format!("{}.bp.predictions", env.prefix);
        let actions_topic = format!("{}.bp.actions", env.prefix);
        ensure_topics(
            &KafkaConfig::new(&env.broker.brokers, "admin"),
            &[
                TopicSpec::new(&events_topic, 1),
                TopicSpec::new(&predictions_topic, 1),
                TopicSpec::new(&actions_topic, 1),
            ],
        )
        .await
        .unwrap();
        let producer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &env.broker.brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .create()
            .unwrap();
        World {
            env,
            events_topic,
            predictions_topic,
            actions_topic,
            producer,
        }
    }

    fn config(&self, group: &str) -> behavior_predictor::Config {
        let mut c = behavior_predictor::Config {
            kafka: KafkaConfig::new(
                &self.env.broker.brokers,
                &format!("{}-{group}", self.env.prefix),
            ),
            redis: RedisConfig {
                url: self.env.redis.url.clone(),
                key_prefix: self.env.prefix.clone(),
                ..RedisConfig::default()
            },
            ..behavior_predictor::Config::default()
        };
        c.topics.events.clone_from(&self.events_topic);
        c.topics.predictions.clone_from(&self.predictions_topic);
        c.topics.actions.clone_from(&self.actions_topic);
        // No conversion policy unless a test writes one (see `with_policy`).
        c.policy.file = String::new();
        c.grpc.listen = "127.0.0.1:0".into();
        c.admin.listen = "127.0.0.1:0".into();
        c.models.root = models_root().display().to_string();
        c.models.runtime_library = std::env::var("ORT_DYLIB_PATH")
            .expect("ORT_DYLIB_PATH names the onnx runtime library (set by .cargo/config.toml)");
        c.predictor.batch_linger_ms = 5;
        c.predictor.debounce_ms = 0;
        c.predictor.shutdown_grace_secs = 10;
        c
    }

    /// A config that scores in stream order across users, as training does: one lane.
    /// With several lanes, users' batches overlap, so the item popularity feature (clicks
    /// counted by the service) can miss the clicks of a concurrent lane.
    fn stream_order_config(&self, group: &str) -> behavior_predictor::Config {
        let mut c = self.config(group);
        c.predictor.workers = 1;
        c
    }

    async fn start_predictor(&self, config: behavior_predictor::Config) -> Running {
        let (store, models) = store_and_models(&config).await;
        run_predictor(config, store, models).await
    }

    /// Plays ingest: catalog records into Redis as ingest writes them, user events as
    /// canonical protobuf keyed by user.
    async fn publish(&self, events: &[pb::Event]) {
        self.write_catalog(events).await;
        for event in events.iter().filter(|e| e.r#type() != EventType::Item) {
            self.send(event).await;
        }
    }

    /// The catalog records among `events`, into Redis as ingest writes them.
    async fn write_catalog(&self, events: &[pb::Event]) {
        let mut redis = self.env.redis.conn().await;
        let keys = funnel_store::Keys::new(&self.env.prefix);
        for event in events {
            if let Some(Payload::Item(item)) = &event.payload {
                let fields = funnel_store::features::catalog_fields(item);
                let _: () = redis
                    .hset_multiple(keys.item(&item.item_id), &fields)
                    .await
                    .unwrap();
            }
        }
    }

    async fn send(&self, event: &pb::Event) {
        let payload = event.encode_to_vec();
        self.producer
            .send(
                FutureRecord::to(&self.events_topic)
                    .key(&event.user_id)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    fn predictions(&self) -> TopicReader {
        self.env.reader(&self.predictions_topic)
    }
}

struct Running {
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    shutdown: Shutdown,
    grpc_addr: std::net::SocketAddr,
    admin_addr: std::net::SocketAddr,
}

impl Running {
    async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    async fn metric(&self, name: &str) -> f64 {
        let body = http_get(self.admin_addr, "/metrics").await;
        body.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the counter `name` reaches `value`.
    async fn wait_for_metric(&self, name: &str, value: f64) {
        eventually(WAIT, || async {
            let now = self.metric(name).await;
            if now == value {
                Ok(())
            } else {
                Err(format!("{name} is {now}, not {value}"))
            }
        })
        .await;
    }

    async fn client_channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc_addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn client(&self) -> BehaviorPredictorClient<tonic::transport::Channel> {
        BehaviorPredictorClient::new(self.client_channel().await)
    }

    async fn intent(&self, user_id: &str, session_id: &str) -> IntentResponse {
        self.client()
            .await
            .predict_intent(PredictIntentRequest {
                user_id: user_id.into(),
                session_id: session_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

impl Running {
    async fn repurchase(&self, user_id: &str) -> Result<RepurchaseResponse, tonic::Status> {
        self.client()
            .await
            .predict_repurchase(PredictRepurchaseRequest {
                user_id: user_id.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// The scripted stream published to a running predictor with `debounce_ms`.
struct Scored {
    world: World,
    golden: Golden,
    predictor: Running,
    reader: TopicReader,
}

impl Scored {
    async fn start(debounce_ms: u64) -> Scored {
        let world = World::start().await;
        let golden = golden();
        let mut config = world.stream_order_config("bp");
        config.predictor.debounce_ms = debounce_ms;
        let predictor = world.start_predictor(config).await;
        let reader = world.predictions();
        world.publish(&golden.events).await;
        Scored {
            world,
            golden,
            predictor,
            reader,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn decode(reader: &TopicReader) -> Vec<IntentPrediction> {
    decode_all(reader)
}

/// Every message of the topic as an `M`.
fn decode_all<M: prost::Message + Default>(reader: &TopicReader) -> Vec<M> {
    reader
        .snapshot()
        .iter()
        .map(|m| M::decode(m.payload().unwrap()).unwrap())
        .collect()
}

/// Waits until `n` predictions are on the topic and returns them.
async fn wait_for_predictions(reader: &TopicReader, n: usize) -> Vec<IntentPrediction> {
    reader.wait_for(n, WAIT).await;
    decode(reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_a_scripted_session_is_scored_as_training_scored_it() {
    let Scored {
        golden,
        predictor,
        reader,
        world: _world,
    } = Scored::start(0).await;

    let predictions = wait_for_predictions(&reader, golden.expected.len()).await;
    assert_eq!(
        predictions.len(),
        golden.expected.len(),
        "one prediction per user event"
    );
    for p in &predictions {
        assert_scored_as_training(p, &golden);
        assert_eq!(
            (p.model.as_str(), p.model_version.as_str()),
            ("intent", "1")
        );
        let event = golden
            .events
            .iter()
            .find(|e| e.event_id == p.event_id)
            .unwrap();
        assert_eq!(p.user_id, event.user_id);
        assert_eq!(p.session_id, event.session_id);
        assert_eq!(p.event_ts_ms, event.ts_ms);
        assert!(p.prediction_ts_ms >= funnel_core::now_ms() - WAIT.as_millis() as i64);
    }
    let keys: Vec<_> = reader
        .snapshot()
        .iter()
        .map(|m| String::from_utf8(m.key().unwrap().to_vec()).unwrap())
        .collect();
    let users: Vec<_> = predictions.iter().map(|p| p.user_id.clone()).collect();
    assert_eq!(keys, users, "predictions are keyed by user_id");
    // Counted once the batch's state is written, just after its publish.
    predictor
        .wait_for_metric("behavior_predictions_total", 18.0)
        .await;
    // Every lane part that published was timed, with its Redis read and write.
    let published = predictor.metric("behavior_publish_seconds_count").await;
    assert!(
        (1.0..=18.0).contains(&published),
        "{published} timed publishes for 18 predictions"
    );
    for part in [
        "behavior_read_seconds_count",
        "behavior_write_seconds_count",
    ] {
        let timed = predictor.metric(part).await;
        assert!(timed >= published, "{part} is {timed}, below {published}");
    }
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_intent_returns_the_latest_state_its_features_and_what_moved_the_score() {
    let Scored {
        world: _world,
        golden,
        predictor,
        reader,
    } = Scored::start(0).await;
    wait_for_predictions(&reader, golden.expected.len()).await;

    // u-42's latest session is s-b, whose last event is p-22.
    let answer = predictor.intent("u-42", "").await;
    let (features, outputs) = &golden.expected["p-22"];
    assert!(!answer.cold_start);
    assert_eq!(answer.session_id, "s-b");
    assert_eq!(answer.last_event_id, "p-22");
    assert!(close(answer.purchase_probability, outputs[0]), "{answer:?}");
    assert!(
        close(answer.abandonment_probability, outputs[1]),
        "{answer:?}"
    );
    assert_eq!(answer.features.len(), golden.features.len());
    for (name, expected) in golden.features.iter().zip(features) {
        assert!(
            close(answer.features[name], *expected),
            "feature {name}: {answer:?}"
        );
    }
    // The explanation: ranked by |delta|, each naming the feature's value.
    assert!(!answer.top_features.is_empty() && answer.top_features.len() <= 5);
    for pair in answer.top_features.windows(2) {
        assert!(pair[0].delta.abs() >= pair[1].delta.abs(), "{answer:?}");
    }
    for impact in &answer.top_features {
        assert_eq!(impact.value, answer.features[&impact.name]);
        assert_ne!(impact.value, impact.reference);
        assert_ne!(impact.delta, 0.0);
    }

    // An earlier session by id: s-a ended with its order, p-9.
    let answer = predictor.intent("u-42", "s-a").await;
    assert!(close(
        answer.purchase_probability,
        golden.expected["p-9"].1[0]
    ));
    assert_eq!(answer.last_event_id, "p-9");
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_event_changes_neither_the_state_nor_the_predictions() {
    let Scored {
        world,
        golden,
        predictor,
        reader,
    } = Scored::start(0).await;
    wait_for_predictions(&reader, golden.expected.len()).await;
    let before = predictor.intent("u-42", "").await;

    // The last add_to_cart again (ingest republishes on its own replays), then a marker
    // event that is new, so we know the replay was consumed before it.
    let replayed = golden.events.iter().find(|e| e.event_id == "p-17").unwrap();
    world.send(replayed).await;
    let mut fresh = replayed.clone();
    fresh.event_id = "p-new".into();
    fresh.user_id = "u-other".into();
    fresh.session_id = "s-o1".into();
    world.send(&fresh).await;
    wait_for_predictions(&reader, golden.expected.len() + 1).await;

    assert_eq!(predictor.metric("behavior_replays_total").await, 1.0);
    let after = predictor.intent("u-42", "").await;
    assert_eq!(after.features, before.features);
    assert_eq!(after.purchase_probability, before.purchase_probability);
    let ids: Vec<_> = decode(&reader).into_iter().map(|p| p.event_id).collect();
    assert_eq!(ids.iter().filter(|id| *id == "p-17").count(), 1, "{ids:?}");
    assert_eq!(ids.last().map(String::as_str), Some("p-new"));
    predictor.stop().await;

    // A second consumer group re-reads the whole topic: every event is known.
    let again = world.start_predictor(world.config("bp-again")).await;
    let user_events = golden.expected.len() + 2;
    eventually(WAIT, || async {
        let replays = again.metric("behavior_replays_total").await;
        if replays == user_events as f64 {
            Ok(())
        } else {
            Err(format!("{replays} replays of {user_events}"))
        }
    })
    .await;
    assert_eq!(
        decode(&reader).len(),
        golden.expected.len() + 1,
        "nothing republished"
    );
    assert_eq!(again.intent("u-42", "").await.features, before.features);
    again.stop().await;
}

/// The predictor running on `models`, loaded before.
async fn run_predictor(
    config: behavior_predictor::Config,
    store: Store,
    models: behavior_predictor::Models,
) -> Running {
    let listeners = behavior_predictor::Listeners::bind(&config.grpc, &config.admin)
        .await
        .unwrap();
    let grpc_addr = listeners.grpc.local_addr().unwrap();
    let admin_addr = listeners.admin.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(behavior_predictor::run(
        config,
        listeners,
        store,
        models,
        shutdown.clone(),
    ));
    Running {
        task: Some(task),
        shutdown,
        grpc_addr,
        admin_addr,
    }
}

/// What the predictor starts from: its store, and its models loaded as at start.
async fn store_and_models(
    config: &behavior_predictor::Config,
) -> (Store, behavior_predictor::Models) {
    let store = Store::Redis(RedisStore::connect(&config.redis).await.unwrap());
    let config = config.clone();
    let models = tokio::task::spawn_blocking(move || behavior_predictor::load_models(&config))
        .await
        .unwrap()
        .unwrap();
    (store, models)
}

/// The stream's pipeline on its own, as a lane runs it, in consumer group `group`, its
/// predictions produced through `brokers` with `produce_timeout_ms`.
async fn processor(
    world: &World,
    group: &str,
    (brokers, produce_timeout_ms): (&str, u64),
) -> (
    behavior_predictor::pipeline::Processor,
    funnel_bus::Producer,
    behavior_predictor::metrics::Metrics,
) {
    let config = world.config(group);
    let (store, models) = store_and_models(&config).await;
    let metrics = behavior_predictor::metrics::Metrics::new(&mut Default::default());
    let processor = behavior_predictor::pipeline::Processor::new(
        behavior_predictor::state::StateKeys::new(&world.env.prefix),
        config.predictor.clone(),
        (
            world.predictions_topic.clone(),
            config.kafka.group_id.clone(),
        ),
        &store,
        std::sync::Arc::new(models.scorer),
        metrics.clone(),
    );
    let mut kafka = KafkaConfig::new(brokers, &config.kafka.group_id);
    kafka.produce_timeout_ms = produce_timeout_ms;
    (
        processor,
        funnel_bus::Producer::new(&kafka).unwrap(),
        metrics,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_written_but_never_acknowledged_are_published_when_their_group_replays() {
    let world = World::start().await;
    let golden = golden();
    world.write_catalog(&golden.events).await;
    let messages: Vec<rdkafka::message::OwnedMessage> = golden
        .events
        .iter()
        .filter(|e| e.r#type() != EventType::Item)
        .enumerate()
        .map(|(offset, e)| {
            rdkafka::message::OwnedMessage::new(
                Some(e.encode_to_vec()),
                Some(e.user_id.clone().into_bytes()),
                world.events_topic.clone(),
                rdkafka::Timestamp::NotAvailable,
                0,
                offset as i64,
                None,
            )
        })
        .collect();
    let reader = world.predictions();

    // The first attempt writes the state, but its predictions never reach a broker (as
    // if the process died before the acknowledgements).
    let (mut first, unreachable, _) = processor(&world, "g1", ("127.0.0.1:1", 1000)).await;
    let sending = first.process(&messages, &unreachable).await.unwrap();
    assert_eq!(sending.len(), golden.expected.len());
    let unsent = sending.acknowledged().await.expect_err("no broker there");
    assert_eq!(unsent.records.len(), golden.expected.len());

    // The same group replays the part: nothing is applied again, and the predictions the
    // markers hold are published, as training scored them.
    let (mut again, producer, metrics) =
        processor(&world, "g1", (&world.env.broker.brokers, 30_000)).await;
    let sending = again.process(&messages, &producer).await.unwrap();
    sending.acknowledged().await.map_err(|u| u.error).unwrap();
    assert_eq!(metrics.replays.get(), messages.len() as u64);
    assert_eq!(metrics.republished.get(), golden.expected.len() as u64);
    assert_eq!(metrics.predictions.get(), 0, "nothing scored anew");
    let published = wait_for_predictions(&reader, golden.expected.len()).await;
    assert_eq!(published.len(), golden.expected.len());
    for p in &published {
        assert_scored_as_training(p, &golden);
    }
    let mut ids: Vec<_> = published.iter().map(|p| p.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), golden.expected.len(), "each event once");

    // Another group reading the same messages publishes nothing.
    let (mut other, producer, metrics) =
        processor(&world, "g2", (&world.env.broker.brokers, 30_000)).await;
    let sending = other.process(&messages, &producer).await.unwrap();
    assert!(sending.is_empty());
    assert_eq!(metrics.replays.get(), messages.len() as u64);
    assert_eq!(metrics.republished.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debounce_publishes_one_prediction_per_session_within_the_window() {
    // Every session of the stream lasts less than 10 minutes of event time.
    let Scored {
        golden,
        predictor,
        reader,
        world: _world,
    } = Scored::start(600_000).await;

    let sessions = ["s-o1", "s-a", "s-b", "s-c"];
    let predictions = wait_for_predictions(&reader, sessions.len()).await;
    eventually(WAIT, || async {
        let applied = predictor.metric("behavior_debounced_total").await
            + predictor.metric("behavior_predictions_total").await;
        if applied == golden.expected.len() as f64 {
            Ok(())
        } else {
            Err(format!("{applied} events applied"))
        }
    })
    .await;
    let predictions_now = decode(&reader);
    assert_eq!(predictions_now.len(), predictions.len());
    let mut per_session: Vec<_> = predictions_now
        .iter()
        .map(|p| p.session_id.as_str())
        .collect();
    per_session.sort_unstable();
    let mut expected = sessions.to_vec();
    expected.sort_unstable();
    assert_eq!(per_session, expected);
    for p in &predictions_now {
        let (_, outputs) = &golden.expected[&p.event_id];
        assert!(close(p.purchase_probability, outputs[0]), "{p:?}");
    }
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_get_the_cold_start_answer_and_bad_requests_are_refused() {
    let world = World::start().await;
    let predictor = world.start_predictor(world.config("bp")).await;
    let channel = predictor.client_channel().await;
    assert_eq!(
        grpc_services(channel.clone()).await,
        [
            behavior_predictor::SERVICE,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection"
        ]
    );
    eventually(WAIT, || {
        let channel = channel.clone();
        async move {
            if grpc_serving(channel, behavior_predictor::SERVICE).await {
                Ok(())
            } else {
                Err("not serving".to_string())
            }
        }
    })
    .await;

    let nobody = predictor.intent("nobody", "").await;
    let stranger = predictor.intent("stranger", "s-unknown").await;
    assert!(nobody.cold_start && stranger.cold_start);
    assert_eq!(nobody.session_id, "");
    assert_eq!(nobody.features["events"], 0.0);
    assert_eq!(nobody.features["days_since_last_session"], 365.0);
    assert_eq!(nobody.features["is_returning"], 0.0);
    assert_eq!(nobody.purchase_probability, stranger.purchase_probability);
    assert_eq!(nobody.features, stranger.features);
    assert!((0.0..1.0).contains(&nobody.purchase_probability));
    assert!(
        nobody.top_features.is_empty(),
        "the cold-start row is its own reference"
    );

    let repurchase = predictor.repurchase("nobody").await.unwrap();
    assert!(repurchase.cold_start);
    assert!(repurchase.features.values().all(|v| *v == 0.0));
    assert!((0.0..1.0).contains(&repurchase.repurchase_probability));

    let mut client = predictor.client().await;
    for (user_id, session_id, message) in [
        ("", "", "user_id is required"),
        (&*"u".repeat(129), "", "user_id is 129 bytes, more than 128"),
        (
            "u-1",
            &*"s".repeat(200),
            "session_id is 200 bytes, more than 128",
        ),
    ] {
        let status = client
            .predict_intent(PredictIntentRequest {
                user_id: user_id.into(),
                session_id: session_id.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }
    let status = predictor.repurchase("").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repurchase_reads_the_orders_of_the_stream() {
    let Scored {
        world,
        golden,
        predictor,
        reader,
    } = Scored::start(0).await;
    wait_for_predictions(&reader, golden.expected.len()).await;

    let answer = predictor.repurchase("u-42").await.unwrap();
    assert!(!answer.cold_start);
    assert_eq!(answer.features["orders"], 1.0);
    assert!(
        (answer.features["total_value"] - 59.9).abs() < 1e-4,
        "{answer:?}"
    );
    assert_eq!(
        (answer.model.as_str(), answer.model_version.as_str()),
        ("repurchase", "1")
    );
    let mut redis = world.env.redis.conn().await;
    let keys: Vec<String> = redis
        .keys(format!("{}:bp:*", world.env.prefix))
        .await
        .unwrap();
    // 4 sessions, 3 users, 3 items clicked, 18 event markers.
    assert_eq!(keys.len(), 4 + 3 + 3 + 18, "{keys:?}");
    for key in keys {
        let ttl: i64 = redis.ttl(&key).await.unwrap();
        assert!(ttl > 0, "key {key} has no TTL ({ttl})");
    }
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_predictor_resumes_from_its_committed_offsets_and_its_stored_state() {
    let world = World::start().await;
    let golden = golden();
    let reader = world.predictions();
    let split = golden
        .events
        .iter()
        .position(|e| e.event_id == "p-14")
        .unwrap();
    let (first, rest) = golden.events.split_at(split);
    let first_user_events = first
        .iter()
        .filter(|e| e.r#type() != EventType::Item)
        .count();

    let predictor = world.start_predictor(world.stream_order_config("bp")).await;
    world.publish(first).await;
    wait_for_predictions(&reader, first_user_events).await;
    predictor.stop().await;

    // A new process: session s-b and the items' clicks continue from Redis.
    let predictor = world.start_predictor(world.stream_order_config("bp")).await;
    world.publish(rest).await;
    let expected_here = golden.expected.len() - first_user_events;
    predictor
        .wait_for_metric("behavior_predictions_total", expected_here as f64)
        .await;
    assert_eq!(
        predictor.metric("behavior_replays_total").await,
        0.0,
        "the first process committed its offsets on stop"
    );
    let predictions = wait_for_predictions(&reader, golden.expected.len()).await;
    assert_eq!(predictions.len(), golden.expected.len(), "no duplicates");
    for p in &predictions {
        assert_scored_as_training(p, &golden);
    }
    predictor.stop().await;
}

// Conversion policy: actions, caps, cool-downs, holdout and reloads.

use funnel_proto::pb::behavior::v1::ConversionAction;

impl World {
    /// A config whose policy is `policy` (written to a file of this test), reloaded and
    /// scanned for idle sessions several times a second.
    fn with_policy(&self, policy: &str) -> (behavior_predictor::Config, PathBuf) {
        let path = std::env::temp_dir().join(format!("{}-policy.toml", self.env.prefix));
        std::fs::write(&path, policy).unwrap();
        let mut c = self.config("bp");
        c.policy.file = path.display().to_string();
        c.policy.reload_secs = 1;
        c.policy.idle_scan_ms = 200;
        (c, path)
    }

    fn actions(&self) -> TopicReader {
        self.env.reader(&self.actions_topic)
    }

    /// A shopper's session at the wall clock: search, an impression, a view, add to cart
    /// (the catalog first); then nothing.
    async fn shop_and_leave(&self, user: &str, session: &str) {
        let now = funnel_core::now_ms();
        let raw = [
            serde_json::json!({"type": "item", "item_id": "sku-1", "title": "sku-1", "category": "electronics/audio/headphones", "brand": "b", "price": 59.9}),
            serde_json::json!({"type": "search", "query": "headphones", "results": ["sku-1", "sku-2"]}),
            serde_json::json!({"type": "impression", "item_ids": ["sku-1", "sku-2"], "list": "search"}),
            serde_json::json!({"type": "click", "item_id": "sku-1", "position": 1}),
            serde_json::json!({"type": "add_to_cart", "item_id": "sku-1"}),
        ];
        let events: Vec<pb::Event> = raw
            .into_iter()
            .enumerate()
            .map(|(n, e)| {
                event_of(
                    e,
                    &format!("{session}-{n}"),
                    user,
                    session,
                    now - 4 + n as i64,
                )
            })
            .collect();
        self.publish(&events).await;
    }
}

/// A canonical event from its JSON fields, as ingest would validate it (catalog events
/// have no user or session).
fn event_of(mut e: serde_json::Value, id: &str, user: &str, session: &str, ts: i64) -> pb::Event {
    e["event_id"] = id.into();
    e["ts"] = ts.into();
    if e["type"] != "item" {
        e["user_id"] = user.into();
        e["session_id"] = session.into();
    }
    parse_event(
        &serde_json::to_vec(&e).unwrap(),
        ContentType::Json,
        &Limits::default(),
    )
    .unwrap()
}

/// A predictor serving `policy`, with readers of its predictions and actions.
struct PolicyWorld {
    world: World,
    predictor: Running,
    predictions: TopicReader,
    actions: TopicReader,
    path: PathBuf,
}

impl PolicyWorld {
    async fn start(policy: &str) -> PolicyWorld {
        let world = World::start().await;
        let (config, path) = world.with_policy(policy);
        let predictor = world.start_predictor(config).await;
        let predictions = world.predictions();
        let actions = world.actions();
        PolicyWorld {
            world,
            predictor,
            predictions,
            actions,
            path,
        }
    }
}

/// The `n`th action on the topic (from 0), waited for.
async fn nth_action(actions: &TopicReader, n: usize) -> ConversionAction {
    actions.wait_for(n + 1, WAIT).await;
    decode_actions(actions).swap_remove(n)
}

/// Writes a new version of the policy file and waits until `counter` (reloads or
/// refusals) is 1.
async fn rewrite_policy(path: &std::path::Path, policy: &str, predictor: &Running, counter: &str) {
    std::fs::write(path, policy).unwrap();
    predictor.wait_for_metric(counter, 1.0).await;
}

/// Action, arm and policy version.
fn summary(action: &ConversionAction) -> (&str, &str, &str) {
    (&action.action, &action.arm, &action.policy_version)
}

fn decode_actions(reader: &TopicReader) -> Vec<ConversionAction> {
    decode_all(reader)
}

/// The prediction of `event_id` on the predictions topic.
async fn prediction_of(reader: &TopicReader, event_id: &str) -> IntentPrediction {
    let mut found = None;
    eventually(WAIT, || {
        found = decode(reader).into_iter().find(|p| p.event_id == event_id);
        let done = found.is_some();
        async move {
            if done {
                Ok(())
            } else {
                Err(format!("no prediction of {event_id}"))
            }
        }
    })
    .await;
    found.unwrap()
}

/// Asserts `action` carries `prediction`'s session, event and probabilities.
fn assert_caused_by(action: &ConversionAction, prediction: &IntentPrediction) {
    let p = action
        .prediction
        .as_ref()
        .expect("the action carries its prediction");
    assert_eq!(
        (
            &p.user_id,
            &p.session_id,
            &p.event_id,
            &p.model,
            &p.model_version
        ),
        (
            &prediction.user_id,
            &prediction.session_id,
            &prediction.event_id,
            &prediction.model,
            &prediction.model_version
        )
    );
    assert_eq!(p.purchase_probability, prediction.purchase_probability);
    assert_eq!(
        p.abandonment_probability,
        prediction.abandonment_probability
    );
    assert_eq!(p.event_ts_ms, prediction.event_ts_ms);
}

const REMIND_AFTER_2S: &str = r#"
version = "t-remind"
holdout_share = 0.0
[caps]
max_actions_per_user = 5
window_secs = 3600
[remind_cart]
min_abandonment = 0.0
idle_secs = 2
cooldown_secs = 600
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cart_gets_one_reminder_and_its_cool_down_stops_the_next() {
    let w = PolicyWorld::start(REMIND_AFTER_2S).await;

    w.world.shop_and_leave("u-1", "s-1").await;
    let last = prediction_of(&w.predictions, "s-1-4").await;
    let action = &nth_action(&w.actions, 0).await;
    assert_eq!(summary(action), ("remind_cart", "treatment", "t-remind"));
    assert_caused_by(action, &last);
    let p = action.prediction.as_ref().unwrap();
    assert!(
        p.prediction_ts_ms - last.event_ts_ms >= 2_000,
        "reminded before the idle time: {p:?}"
    );
    assert!(action.reason.contains("idle"), "{}", action.reason);

    // Back, then idle again: the rule fires again but the cool-down holds it back.
    let back = event_of(
        serde_json::json!({"type": "search", "query": "headphones"}),
        "s-1-back",
        "u-1",
        "s-1",
        funnel_core::now_ms(),
    );
    w.world.send(&back).await;
    w.predictor
        .wait_for_metric(
            "behavior_actions_suppressed_total{action=\"remind_cart\",reason=\"cooldown\"}",
            1.0,
        )
        .await;
    assert_eq!(decode_actions(&w.actions).len(), 1);
    assert_eq!(
        w.predictor
            .metric("behavior_actions_total{action=\"remind_cart\",arm=\"treatment\"}")
            .await,
        1.0
    );

    // The cool-down and the cap are held in Redis; every key of the service expires.
    let mut redis = w.world.env.redis.conn().await;
    let bp = format!("{}:bp:", w.world.env.prefix);
    let keys: Vec<String> = redis.keys(format!("{bp}*")).await.unwrap();
    for kind in ["cd:remind_cart:u-1", "cap:u-1"] {
        assert!(
            keys.contains(&format!("{bp}{kind}")),
            "no {kind} in {keys:?}"
        );
    }
    for key in keys {
        let ttl: i64 = redis.ttl(&key).await.unwrap();
        assert!(ttl > 0, "key {key} has no TTL ({ttl})");
    }
    w.predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frequency_cap_stops_a_second_action_of_another_kind() {
    let policy = r#"
version = "t-cap"
[caps]
max_actions_per_user = 1
window_secs = 3600
[remind_cart]
min_abandonment = 0.0
idle_secs = 1
cooldown_secs = 600
[offer_coupon]
min_purchase = 0.0
max_purchase = 1.0
min_cart_value = 50.0
cooldown_secs = 600
"#;
    let w = PolicyWorld::start(policy).await;

    w.world.shop_and_leave("u-2", "s-2").await;
    let added = prediction_of(&w.predictions, "s-2-4").await;
    w.predictor
        .wait_for_metric(
            "behavior_actions_suppressed_total{action=\"remind_cart\",reason=\"cap\"}",
            1.0,
        )
        .await;
    // The coupon was published before the reminder was held back, but the test's reader
    // may not have read it yet.
    w.actions.wait_for(1, WAIT).await;
    let sent = decode_actions(&w.actions);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(summary(&sent[0]), ("offer_coupon", "treatment", "t-cap"));
    assert_caused_by(&sent[0], &added);
    assert_eq!(
        sent[0].prediction.as_ref().unwrap().prediction_ts_ms,
        added.prediction_ts_ms,
        "the coupon is decided on the stream's own prediction"
    );
    assert!(sent[0].reason.contains("59.90"), "{}", sent[0].reason);
    w.predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdout_is_recorded_and_a_changed_policy_serves_without_restart_unless_invalid() {
    let v1 = REMIND_AFTER_2S
        .replace("t-remind", "v1")
        .replace("holdout_share = 0.0", "holdout_share = 1.0");
    let w = PolicyWorld::start(&v1).await;

    // Everyone held out: the decision is published with arm "holdout", nothing else.
    w.world.shop_and_leave("u-held", "s-held").await;
    let held = prediction_of(&w.predictions, "s-held-4").await;
    let first = &nth_action(&w.actions, 0).await;
    assert_eq!(summary(first), ("remind_cart", "holdout", "v1"));
    assert_caused_by(first, &held);
    assert_eq!(
        w.predictor
            .metric("behavior_actions_total{action=\"remind_cart\",arm=\"holdout\"}")
            .await,
        1.0
    );

    // v2 holds nobody out; picked up without a restart.
    let v2 = v1
        .replace("\"v1\"", "\"v2\"")
        .replace("holdout_share = 1.0", "holdout_share = 0.0");
    rewrite_policy(&w.path, &v2, &w.predictor, "behavior_policy_reloads_total").await;
    w.world.shop_and_leave("u-treated", "s-treated").await;
    let treated = prediction_of(&w.predictions, "s-treated-4").await;
    let second = &nth_action(&w.actions, 1).await;
    assert_eq!(summary(second), ("remind_cart", "treatment", "v2"));
    assert_caused_by(second, &treated);

    // An invalid v3 is refused; v2 keeps serving.
    let v3 = v2
        .replace("\"v2\"", "\"v3\"")
        .replace("min_abandonment = 0.0", "min_abandonment = 2.0");
    rewrite_policy(&w.path, &v3, &w.predictor, "behavior_policy_refusals_total").await;
    w.world.shop_and_leave("u-after", "s-after").await;
    let third = &nth_action(&w.actions, 2).await;
    assert_eq!(summary(third), ("remind_cart", "treatment", "v2"));
    assert_eq!(
        w.predictor.metric("behavior_policy_reloads_total").await,
        1.0
    );
    w.predictor.stop().await;
    let _ = std::fs::remove_file(&w.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_remind_an_idle_cart_once() {
    let w = PolicyWorld::start(REMIND_AFTER_2S).await;
    let mut config = w.world.config("bp");
    config.policy.file = w.path.display().to_string();
    config.policy.idle_scan_ms = 200;
    let second = w.world.start_predictor(config).await;

    w.world.shop_and_leave("u-3", "s-3").await;
    let last = prediction_of(&w.predictions, "s-3-4").await;
    let action = nth_action(&w.actions, 0).await;
    assert_eq!(summary(&action), ("remind_cart", "treatment", "t-remind"));
    assert_caused_by(&action, &last);
    // Both scan every 200 ms: ten scans each later, still one claim and one action.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let claims = w
        .predictor
        .metric("behavior_idle_sessions_claimed_total")
        .await
        + second.metric("behavior_idle_sessions_claimed_total").await;
    assert_eq!(claims, 1.0);
    assert_eq!(decode_actions(&w.actions).len(), 1);
    second.stop().await;
    w.predictor.stop().await;
}

/// A models root of its own in the temp directory, holding copies of the shipped intent
/// and repurchase version 1, so a test can break, add and point at versions.
struct ModelsCopy {
    root: PathBuf,
}

impl ModelsCopy {
    fn new(prefix: &str) -> ModelsCopy {
        let root = std::env::temp_dir().join(format!("{prefix}-models"));
        for model in ["intent", "repurchase"] {
            copy_version(
                &models_root().join(model).join("1"),
                &root.join(model).join("1"),
            );
        }
        ModelsCopy { root }
    }

    fn card_path(&self, version: &str) -> PathBuf {
        self.root.join("intent").join(version).join("model.json")
    }

    fn card(&self, version: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.card_path(version)).unwrap()).unwrap()
    }

    fn write_card(&self, version: &str, card: &serde_json::Value) {
        self.replace(
            &self.card_path(version),
            &serde_json::to_vec_pretty(card).unwrap(),
        );
    }

    /// Writes `path` whole in one step (a rename), as an operator should, so the watcher
    /// never reads half a file.
    fn replace(&self, path: &std::path::Path, bytes: &[u8]) {
        let staged = self.root.join(".staged");
        std::fs::write(&staged, bytes).unwrap();
        std::fs::rename(&staged, path).unwrap();
    }

    /// Version `version` of intent: version 1's model and golden vectors under another name.
    fn add_intent_version(&self, version: &str) {
        copy_version(
            &self.root.join("intent/1"),
            &self.root.join("intent").join(version),
        );
        let mut card = self.card(version);
        card["version"] = version.into();
        self.write_card(version, &card);
    }

    /// Points intent at `version` (the operator's roll-out step).
    fn serve_intent(&self, version: &str) {
        self.replace(
            &self.root.join("intent/serving"),
            format!("{version}\n").as_bytes(),
        );
    }
}

impl Drop for ModelsCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn copy_version(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Predictions checked against the golden outputs, in topic order, as (event_id, version).
fn assert_golden(predictions: &[IntentPrediction], golden: &Golden) -> Vec<(String, String)> {
    for p in predictions {
        assert_scored_as_training(p, golden);
        assert_eq!(p.model, "intent");
    }
    predictions
        .iter()
        .map(|p| (p.event_id.clone(), p.model_version.clone()))
        .collect()
}

fn user_events(golden: &Golden) -> Vec<pb::Event> {
    golden
        .events
        .iter()
        .filter(|e| e.r#type() != EventType::Item)
        .cloned()
        .collect()
}

/// A predictor serving from a [`ModelsCopy`] that it checks every second, and a reader
/// of its predictions.
async fn start_swappable() -> (World, Golden, ModelsCopy, Running, TopicReader) {
    start_on_copy(|_, _, _| {}).await
}

/// [`start_swappable`], with the copy and the config prepared by `prepare` first.
async fn start_on_copy(
    prepare: impl FnOnce(&World, &ModelsCopy, &mut behavior_predictor::Config),
) -> (World, Golden, ModelsCopy, Running, TopicReader) {
    let world = World::start().await;
    let models = ModelsCopy::new(&world.env.prefix);
    let mut config = world.stream_order_config("bp");
    config.models.root = models.root.display().to_string();
    config.models.reload_secs = 1;
    prepare(&world, &models, &mut config);
    let predictor = world.start_predictor(config).await;
    let reader = world.predictions();
    (world, golden(), models, predictor, reader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_model_version_is_refused_and_the_old_one_keeps_scoring() {
    let (world, golden, models, predictor, reader) = start_swappable().await;
    predictor
        .wait_for_metric("behavior_model_info{model=\"intent\",version=\"1\"}", 1.0)
        .await;

    let shipped = models.card("1");
    let mut wrong_checksum = shipped.clone();
    wrong_checksum["sha256"] = "0".repeat(64).into();
    models.write_card("1", &wrong_checksum);
    predictor
        .wait_for_metric("behavior_model_refusals_total{model=\"intent\"}", 1.0)
        .await;

    let mut wrong_golden = shipped;
    let outputs = &mut wrong_golden["golden"]["outputs"]["probabilities"]["data"];
    outputs[0] = (outputs[0].as_f64().unwrap() + 0.25).into();
    models.write_card("1", &wrong_golden);
    predictor
        .wait_for_metric("behavior_model_refusals_total{model=\"intent\"}", 2.0)
        .await;

    world.publish(&golden.events).await;
    let predictions = wait_for_predictions(&reader, golden.expected.len()).await;
    let scored = assert_golden(&predictions, &golden);
    assert_eq!(scored.len(), golden.expected.len());
    assert!(
        scored.iter().all(|(_, version)| version == "1"),
        "{scored:?}"
    );
    assert_version_1_kept(&predictor).await;
    predictor.stop().await;
}

/// Intent version 1 serves and nothing was swapped in.
async fn assert_version_1_kept(predictor: &Running) {
    assert_eq!(
        predictor.metric("behavior_model_swaps_total").await,
        0.0,
        "nothing was swapped in"
    );
    assert_eq!(
        predictor
            .metric("behavior_model_info{model=\"intent\",version=\"1\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_edited_while_the_predictor_starts_is_seen_by_the_watcher() {
    let world = World::start().await;
    let models = ModelsCopy::new(&world.env.prefix);
    let mut config = world.stream_order_config("bp");
    config.models.root = models.root.display().to_string();
    config.models.reload_secs = 1;
    let (store, loaded) = store_and_models(&config).await;
    // Loaded, not yet watched: the moment a slow start once hid an edit in, because the
    // watcher took the edited files for the ones serving.
    let mut wrong_checksum = models.card("1");
    wrong_checksum["sha256"] = "0".repeat(64).into();
    models.write_card("1", &wrong_checksum);
    let predictor = run_predictor(config, store, loaded).await;
    predictor
        .wait_for_metric("behavior_model_refusals_total{model=\"intent\"}", 1.0)
        .await;
    assert_version_1_kept(&predictor).await;
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_swaps_in_under_load_without_losing_a_prediction() {
    let (world, golden, models, predictor, reader) = start_swappable().await;
    let catalog: Vec<pb::Event> = golden
        .events
        .iter()
        .filter(|e| e.r#type() == EventType::Item)
        .cloned()
        .collect();
    world.publish(&catalog).await;
    let events = user_events(&golden);
    let (before, rest) = events.split_at(events.len() / 3);
    let (during, after) = rest.split_at(rest.len() / 2);

    for event in before {
        world.send(event).await;
    }
    wait_for_predictions(&reader, before.len()).await;
    models.add_intent_version("2");
    models.serve_intent("2");
    // Events keep arriving while the watcher loads, checks, warms and swaps version 2.
    for event in during {
        world.send(event).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    predictor
        .wait_for_metric("behavior_model_swaps_total{model=\"intent\"}", 1.0)
        .await;
    for event in after {
        world.send(event).await;
    }

    let predictions = wait_for_predictions(&reader, golden.expected.len()).await;
    let scored = assert_golden(&predictions, &golden);
    let mut ids: Vec<&str> = scored.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), golden.expected.len(), "every event scored once");
    assert_eq!(scored.len(), golden.expected.len(), "no duplicates");
    let versions: Vec<&str> = scored.iter().map(|(_, v)| v.as_str()).collect();
    let first_new = versions.iter().position(|v| *v == "2").unwrap();
    assert!(first_new >= before.len(), "{versions:?}");
    assert!(
        versions[..first_new].iter().all(|v| *v == "1"),
        "{versions:?}"
    );
    assert!(
        versions[first_new..].iter().all(|v| *v == "2"),
        "{versions:?}"
    );
    let last = after.last().unwrap();
    assert_eq!(
        predictor
            .intent(&last.user_id, &last.session_id)
            .await
            .model_version,
        "2"
    );
    assert_eq!(
        predictor
            .metric("behavior_model_info{model=\"intent\",version=\"2\"}")
            .await,
        1.0
    );
    assert_eq!(
        predictor
            .metric("behavior_model_info{model=\"intent\",version=\"1\"}")
            .await,
        0.0,
        "version 1 no longer reported"
    );
    assert_eq!(predictor.metric("behavior_batch_retries").await, 0.0);
    assert_eq!(predictor.metric("behavior_model_refusals_total").await, 0.0);
    predictor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_version_is_scored_alongside_and_published_only_to_its_topic() {
    let shadow_topic = |world: &World| format!("{}.bp.shadow", world.env.prefix);
    let (world, golden, _models, predictor, reader) = start_on_copy(|world, models, config| {
        models.add_intent_version("2");
        config.models.shadow_version = "2".into();
        config.topics.shadow = shadow_topic(world);
    })
    .await;
    let shadow_topic = shadow_topic(&world);
    ensure_topics(
        &KafkaConfig::new(&world.env.broker.brokers, "admin"),
        &[TopicSpec::new(&shadow_topic, 1)],
    )
    .await
    .unwrap();
    let shadow = world.env.reader(&shadow_topic);

    world.publish(&golden.events).await;
    let served = wait_for_predictions(&reader, golden.expected.len()).await;
    let shadowed = wait_for_predictions(&shadow, golden.expected.len()).await;

    let served = assert_golden(&served, &golden);
    let shadowed = assert_golden(&shadowed, &golden);
    assert_eq!(served.len(), golden.expected.len(), "{served:?}");
    assert!(served.iter().all(|(_, v)| v == "1"), "{served:?}");
    assert!(shadowed.iter().all(|(_, v)| v == "2"), "{shadowed:?}");
    let ids = |scored: &[(String, String)]| {
        let mut ids: Vec<String> = scored.iter().map(|(id, _)| id.clone()).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids(&shadowed), ids(&served), "the same events, each once");
    predictor
        .wait_for_metric(
            "behavior_shadow_predictions_total",
            golden.expected.len() as f64,
        )
        .await;
    assert_eq!(
        predictor
            .metric("behavior_model_info{model=\"intent\",version=\"1\"}")
            .await,
        1.0,
        "the shadow does not serve"
    );
    predictor.stop().await;
}
