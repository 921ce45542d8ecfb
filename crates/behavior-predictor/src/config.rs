//! Configuration of the behavior-predictor service: every key with its default.

use funnel_bus::KafkaConfig;
use funnel_runtime::config::Validate;
use funnel_runtime::{AdminConfig, GrpcConfig, TelemetryConfig};
use funnel_store::RedisConfig;
use serde::{Deserialize, Serialize};

/// Everything behavior-predictor reads at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Brokers and consumer group (default group `funnel-behavior-predictor`).
    pub kafka: KafkaConfig,
    pub topics: BehaviorTopics,
    /// Redis; `key_prefix` is shared with ingest, whose catalog records are read.
    pub redis: RedisConfig,
    /// The `BehaviorPredictor` gRPC server (default `0.0.0.0:50052`).
    pub grpc: GrpcConfig,
    /// `/metrics`, `/healthz`, `/readyz` (default `0.0.0.0:9465`).
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub models: ModelsConfig,
    pub predictor: PredictorSettings,
    pub policy: PolicyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig::new("localhost:9092", "funnel-behavior-predictor"),
            topics: BehaviorTopics::default(),
            redis: RedisConfig::default(),
            grpc: GrpcConfig::with_listen("0.0.0.0:50052"),
            admin: AdminConfig {
                listen: "0.0.0.0:9465".into(),
            },
            telemetry: TelemetryConfig::default(),
            models: ModelsConfig::default(),
            predictor: PredictorSettings::default(),
            policy: PolicyConfig::default(),
        }
    }
}

/// Topics read and written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviorTopics {
    /// Canonical events in (protobuf `funnel.events.v1.Event`). Default `funnel.events.v1`.
    pub events: String,
    /// Intent predictions out (protobuf `funnel.behavior.v1.IntentPrediction`, key
    /// `user_id`). Default `funnel.predictions.behavior.v1`.
    pub predictions: String,
    /// Conversion actions out (protobuf `funnel.behavior.v1.ConversionAction`, key
    /// `user_id`). Default `funnel.actions.conversion.v1`.
    pub actions: String,
    /// Shadow model predictions out (protobuf `funnel.behavior.v1.IntentPrediction` with the
    /// shadow's version, key `user_id`), written only when `models.shadow_version` is set.
    /// Default `funnel.predictions.behavior.shadow.v1`.
    pub shadow: String,
}

impl Default for BehaviorTopics {
    fn default() -> Self {
        BehaviorTopics {
            events: "funnel.events.v1".into(),
            predictions: "funnel.predictions.behavior.v1".into(),
            actions: "funnel.actions.conversion.v1".into(),
            shadow: "funnel.predictions.behavior.shadow.v1".into(),
        }
    }
}

/// Where the models are and which versions serve.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Directory holding `<name>/<version>/model.json`. Default `models`.
    pub root: String,
    /// The ONNX Runtime shared library. Default `.tools/onnxruntime/libonnxruntime.so`
    /// (where `scripts/setup.sh` puts it).
    pub runtime_library: String,
    /// Session intent model name. Default `intent`.
    pub intent: String,
    /// Its version. Default `1`.
    pub intent_version: String,
    /// Customer repurchase model name. Default `repurchase`.
    pub repurchase: String,
    /// Its version. Default `1`.
    pub repurchase_version: String,
    /// ONNX Runtime sessions per model, i.e. runs that can proceed at once (the stream's
    /// batches and gRPC requests share them). Default 2.
    pub sessions: usize,
    /// How often, in seconds, each model's serving version is checked for a change (its
    /// `<root>/<name>/serving` pointer file, or the files of the version serving); a
    /// change is loaded, validated and warmed off the serving path, then swapped in
    /// atomically, or refused while the old version keeps serving. 0: never. Default 5.
    pub reload_secs: u64,
    /// A version of the intent model scored alongside the serving one on the same rows and
    /// published only to `topics.shadow`; it never affects predictions or actions. Loaded
    /// and validated at start like a serving version. Empty: no shadow. Default empty.
    pub shadow_version: String,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            root: "models".into(),
            runtime_library: ".tools/onnxruntime/libonnxruntime.so".into(),
            intent: "intent".into(),
            intent_version: "1".into(),
            repurchase: "repurchase".into(),
            repurchase_version: "1".into(),
            sessions: 2,
            reload_secs: 5,
            shadow_version: String::new(),
        }
    }
}

/// Batching, debouncing and state lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictorSettings {
    /// Most events in one batch (one Redis read, one inference run, one write). Default 1000.
    pub batch_max: usize,
    /// How long a batch waits for more events after its first, in ms. Default 2: with
    /// one batch in flight, the events that arrive while a batch is in hand are already
    /// waiting when it is done, so a longer wait adds latency without making batches
    /// much larger under load.
    pub batch_linger_ms: u64,
    /// Lanes: parts a batch is split into by key (user), processed concurrently while
    /// the next batch is fetched. Default 4.
    pub workers: usize,
    /// Batches fetched and not yet processed, at most. Few keep an event from waiting
    /// behind batches in hand (latency); when the lanes are busy the next batch grows
    /// instead. Default 1: the next batch is fetched when the last is written and its
    /// predictions handed to the producer; batches whose predictions are still being
    /// acknowledged do not count (their offsets wait for the acknowledgements).
    pub inflight_batches: usize,
    /// Per session, in event time: with 0 every event gets a prediction; otherwise only a
    /// session's latest event in a batch does, and only when at least this many ms of
    /// event time passed since the session's last published prediction (or it has none).
    /// Default 1000.
    pub debounce_ms: u64,
    /// TTL of session states and of the per-event markers that make replays harmless,
    /// in seconds. Default 86400 (1 day).
    pub session_ttl_secs: u64,
    /// TTL of a user's history (sessions, orders, latest session), refreshed on
    /// activity, in seconds. Default 7776000 (90 days).
    pub user_ttl_secs: u64,
    /// TTL of an item's click count (its popularity), refreshed on clicks, in seconds.
    /// Default 2592000 (30 days).
    pub item_ttl_secs: u64,
    /// Most orders kept per user for the repurchase features (the latest). Default 200.
    pub orders_max: usize,
    /// Longest wait between retries of a failing batch, in ms. Default 5000.
    pub retry_backoff_max_ms: u64,
    /// How long shutdown may take to drain, in seconds. Default 30.
    pub shutdown_grace_secs: u64,
}

impl Default for PredictorSettings {
    fn default() -> Self {
        PredictorSettings {
            batch_max: 1000,
            batch_linger_ms: 2,
            workers: 4,
            inflight_batches: 1,
            debounce_ms: 1000,
            session_ttl_secs: 86_400,
            user_ttl_secs: 90 * 86_400,
            item_ttl_secs: 30 * 86_400,
            orders_max: 200,
            retry_backoff_max_ms: 5_000,
            shutdown_grace_secs: 30,
        }
    }
}

/// The conversion policy: where its file is and how often it and idle sessions are checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The policy file (TOML, see [`crate::policy::Policy`]); read and validated at start,
    /// reloaded when its modification time changes. Empty: no conversion actions.
    /// Default `models/policy.toml` (the shipped example; relative to the working
    /// directory like `models.root`, so it resolves in the repository and in the image,
    /// which copies `models/`).
    pub file: String,
    /// How often the file's modification time is checked, in seconds. Default 2.
    pub reload_secs: u64,
    /// How often idle sessions with a non-empty cart are looked for, in ms. Default 1000.
    pub idle_scan_ms: u64,
    /// Most idle sessions claimed per scan. Default 500.
    pub idle_scan_max: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            file: "models/policy.toml".into(),
            reload_secs: 2,
            idle_scan_ms: 1_000,
            idle_scan_max: 500,
        }
    }
}

fn check_topic(key: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{key} {name:?} is not a valid topic name (1-249 of [a-zA-Z0-9._-])"
        ))
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.redis.validate()?;
        self.telemetry.validate()?;
        check_topic("topics.events", &self.topics.events)?;
        check_topic("topics.predictions", &self.topics.predictions)?;
        check_topic("topics.actions", &self.topics.actions)?;
        if !self.models.shadow_version.is_empty() {
            check_topic("topics.shadow", &self.topics.shadow)?;
        }
        for (key, addr) in [
            ("grpc.listen", &self.grpc.listen),
            ("admin.listen", &self.admin.listen),
        ] {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("{key} {addr:?} is not host:port: {e}"))?;
        }
        for (key, value) in [
            ("models.root", &self.models.root),
            ("models.runtime_library", &self.models.runtime_library),
            ("models.intent", &self.models.intent),
            ("models.intent_version", &self.models.intent_version),
            ("models.repurchase", &self.models.repurchase),
            ("models.repurchase_version", &self.models.repurchase_version),
        ] {
            if value.is_empty() {
                return Err(format!("{key} must not be empty"));
            }
        }
        let s = &self.predictor;
        for (key, v) in [
            ("predictor.batch_max", s.batch_max as u64),
            ("predictor.workers", s.workers as u64),
            ("predictor.inflight_batches", s.inflight_batches as u64),
            ("predictor.session_ttl_secs", s.session_ttl_secs),
            ("predictor.user_ttl_secs", s.user_ttl_secs),
            ("predictor.item_ttl_secs", s.item_ttl_secs),
            ("predictor.orders_max", s.orders_max as u64),
            ("predictor.retry_backoff_max_ms", s.retry_backoff_max_ms),
            ("models.sessions", self.models.sessions as u64),
            ("policy.reload_secs", self.policy.reload_secs),
            ("policy.idle_scan_ms", self.policy.idle_scan_ms),
            ("policy.idle_scan_max", self.policy.idle_scan_max as u64),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if s.workers > 64 {
            return Err("predictor.workers must be at most 64".into());
        }
        if s.batch_max > 100_000 {
            return Err("predictor.batch_max must be at most 100000".into());
        }
        if !self.policy.file.is_empty() {
            crate::policy::Policy::load(std::path::Path::new(&self.policy.file))
                .map_err(|e| format!("policy.file {}: {e}", self.policy.file))?;
        }
        Ok(())
    }
}
