//! Configuration of the ingest service.

use funnel_bus::{KafkaConfig, Topics};
use funnel_runtime::config::Validate;
use funnel_runtime::{AdminConfig, GrpcConfig, TelemetryConfig};
use funnel_store::RedisConfig;
use serde::{Deserialize, Serialize};

/// Everything ingest reads at start. See README "Configuration".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub redis: RedisConfig,
    pub grpc: GrpcConfig,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub ingest: IngestSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig::new("localhost:9092", "funnel-ingest"),
            topics: Topics::default(),
            redis: RedisConfig::default(),
            grpc: GrpcConfig::with_listen("0.0.0.0:50051"),
            admin: AdminConfig::default(),
            telemetry: TelemetryConfig::default(),
            ingest: IngestSettings::default(),
        }
    }
}

/// How ingest batches, deduplicates, sessionises and expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Most messages in one batch.
    pub batch_max: usize,
    /// Lanes: parts a batch is split into (by message key, so a user's events
    /// stay in order), each written and published by its own task.
    pub workers: usize,
    /// How long a batch waits for more messages after its first, in ms.
    pub batch_linger_ms: u64,
    /// How long an `event_id` is remembered for deduplication, in seconds.
    pub dedup_window_secs: u64,
    /// How far behind the user's newest event an event may be, in seconds.
    pub max_lateness_secs: u64,
    /// How far ahead of the wall clock an event may be, in seconds.
    pub max_future_skew_secs: u64,
    /// Inactivity that ends an assigned session, in seconds.
    pub session_gap_secs: u64,
    /// TTL of per-user keys, refreshed on activity, in seconds.
    pub user_ttl_secs: u64,
    /// TTL of per-session keys, in seconds.
    pub session_ttl_secs: u64,
    /// TTL of catalog records and item neighbour sets, refreshed on write, in seconds.
    pub item_ttl_secs: u64,
    /// TTL of per-query keys, in seconds.
    pub query_ttl_secs: u64,
    /// Most neighbours kept per item in the co-visitation and bought-together sets.
    pub neighbours_max: usize,
    /// Most items per category popularity bucket.
    pub category_top_max: usize,
    /// Item records (category, price) cached in memory.
    pub item_cache_size: usize,
    /// Largest accepted raw message, in bytes.
    pub max_payload_bytes: usize,
    /// Longest wait between retries of a failing batch, in ms.
    pub retry_backoff_max_ms: u64,
    /// How long shutdown may take to drain, in seconds.
    pub shutdown_grace_secs: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            batch_max: 2000,
            workers: 2,
            batch_linger_ms: 20,
            dedup_window_secs: 86_400,
            max_lateness_secs: 86_400,
            max_future_skew_secs: 300,
            session_gap_secs: 1800,
            user_ttl_secs: 30 * 86_400,
            session_ttl_secs: 86_400,
            item_ttl_secs: 30 * 86_400,
            query_ttl_secs: 30 * 86_400,
            neighbours_max: 200,
            category_top_max: 1000,
            item_cache_size: 100_000,
            max_payload_bytes: 1 << 20,
            retry_backoff_max_ms: 5_000,
            shutdown_grace_secs: 30,
        }
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.topics.validate()?;
        self.redis.validate()?;
        self.telemetry.validate()?;
        for (key, addr) in [
            ("grpc.listen", &self.grpc.listen),
            ("admin.listen", &self.admin.listen),
        ] {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("{key} {addr:?} is not host:port: {e}"))?;
        }
        let s = &self.ingest;
        for (key, v) in [
            ("ingest.batch_max", s.batch_max as u64),
            ("ingest.workers", s.workers as u64),
            ("ingest.dedup_window_secs", s.dedup_window_secs),
            ("ingest.session_gap_secs", s.session_gap_secs),
            ("ingest.user_ttl_secs", s.user_ttl_secs),
            ("ingest.session_ttl_secs", s.session_ttl_secs),
            ("ingest.item_ttl_secs", s.item_ttl_secs),
            ("ingest.query_ttl_secs", s.query_ttl_secs),
            ("ingest.neighbours_max", s.neighbours_max as u64),
            ("ingest.category_top_max", s.category_top_max as u64),
            ("ingest.item_cache_size", s.item_cache_size as u64),
            ("ingest.max_payload_bytes", s.max_payload_bytes as u64),
            ("ingest.retry_backoff_max_ms", s.retry_backoff_max_ms),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if s.workers > 64 {
            return Err("ingest.workers must be at most 64".into());
        }
        if s.batch_max > 100_000 {
            return Err("ingest.batch_max must be at most 100000".into());
        }
        Ok(())
    }
}
