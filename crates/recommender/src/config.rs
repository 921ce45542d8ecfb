//! Configuration of the recommender service: every key with its default.

use funnel_bus::KafkaConfig;
use funnel_runtime::config::Validate;
use funnel_runtime::{AdminConfig, GrpcConfig, TelemetryConfig};
use funnel_store::RedisConfig;
use serde::{Deserialize, Serialize};

/// Everything the recommender reads at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Brokers and the consumer group of the event stream (default group
    /// `funnel-recommender`). The catalog is read outside any group.
    pub kafka: KafkaConfig,
    pub topics: RecommenderTopics,
    /// Redis; `key_prefix` is shared with ingest, whose user and item keys are read.
    pub redis: RedisConfig,
    /// The `Recommender` gRPC server (default `0.0.0.0:50053`).
    pub grpc: GrpcConfig,
    /// `/metrics`, `/healthz`, `/readyz` (default `0.0.0.0:9466`).
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub models: ModelsConfig,
    pub candidates: CandidateLimits,
    pub catalog: CatalogSettings,
    pub rules: RulesConfig,
    pub experiment: ExperimentConfig,
    pub stream: StreamSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kafka: KafkaConfig::new("localhost:9092", "funnel-recommender"),
            topics: RecommenderTopics::default(),
            redis: RedisConfig::default(),
            grpc: GrpcConfig::with_listen("0.0.0.0:50053"),
            admin: AdminConfig {
                listen: "0.0.0.0:9466".into(),
            },
            telemetry: TelemetryConfig::default(),
            models: ModelsConfig::default(),
            candidates: CandidateLimits::default(),
            catalog: CatalogSettings::default(),
            rules: RulesConfig::default(),
            experiment: ExperimentConfig::default(),
            stream: StreamSettings::default(),
        }
    }
}

/// Topics read and written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecommenderTopics {
    /// Canonical events in (orders, clicks, impressions), in the consumer group.
    /// Default `funnel.events.v1`.
    pub events: String,
    /// The compacted catalog (`funnel.events.v1.Item` keyed by item id), read whole from
    /// the beginning by every instance. Default `funnel.catalog.v1`.
    pub catalog: String,
    /// Every answer out (protobuf `funnel.recommender.v1.Recommendation`, key `user_id`).
    /// Default `funnel.recommendations.v1`.
    pub recommendations: String,
}

impl Default for RecommenderTopics {
    fn default() -> Self {
        RecommenderTopics {
            events: "funnel.events.v1".into(),
            catalog: "funnel.catalog.v1".into(),
            recommendations: "funnel.recommendations.v1".into(),
        }
    }
}

/// The ranker and the item embeddings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Directory holding `<name>/<version>/`. Default `models`.
    pub root: String,
    /// The ONNX Runtime shared library. Default `.tools/onnxruntime/libonnxruntime.so`.
    pub runtime_library: String,
    /// Ranker model name. Default `ranker`.
    pub ranker: String,
    /// Its version (a `<root>/<ranker>/serving` pointer file wins). Default `1`.
    pub ranker_version: String,
    /// ONNX Runtime sessions of the ranker, i.e. requests ranked at once. Default 2.
    pub sessions: usize,
    /// How often the ranker's serving version is checked for a change, in seconds (a
    /// change is loaded, validated and swapped in, or refused). 0: never. Default 5.
    pub reload_secs: u64,
    /// Item embeddings name. Default `item-embeddings`.
    pub embeddings: String,
    /// Their version. Empty: no embedding source (the feature is 0). Default `1`.
    pub embeddings_version: String,
    /// Nearest neighbours kept per item, found by exact search at load. Default 50.
    pub embedding_neighbours: usize,
    /// Largest number of embedded items searched exactly (n² dot products at load:
    /// 20000 items of dim 32 take about 13 G multiply-adds); a larger file is refused at
    /// start. Default 20000.
    pub exact_search_max_items: usize,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            root: "models".into(),
            runtime_library: ".tools/onnxruntime/libonnxruntime.so".into(),
            ranker: "ranker".into(),
            ranker_version: "3".into(),
            sessions: 2,
            reload_secs: 5,
            embeddings: "item-embeddings".into(),
            embeddings_version: "1".into(),
            embedding_neighbours: 50,
            exact_search_max_items: 20_000,
        }
    }
}

/// Most candidates each source contributes to one request (before rules and ranking).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CandidateLimits {
    /// Co-visited with the anchors. Default 300.
    pub covis: usize,
    /// Bought together with the bought anchors. Default 100.
    pub bought: usize,
    /// Nearest embedding neighbours of the anchors. Default 200.
    pub embedding: usize,
    /// Popular in the user's and the context item's categories, and trending overall.
    /// Default 300.
    pub popular: usize,
    /// The user's own recent items. Default 20.
    pub recent: usize,
    /// Same leaf category, brand or title words as the anchors, new items first.
    /// Default 100.
    pub content: usize,
    /// Most candidates ranked per request, all sources together. Default 1000.
    pub total_max: usize,
    /// Neighbours read per anchor from ingest's co-visitation and bought-together sets
    /// (the highest scores). Default 100.
    pub neighbours_per_anchor: usize,
}

impl Default for CandidateLimits {
    fn default() -> Self {
        CandidateLimits {
            covis: 300,
            bought: 100,
            embedding: 200,
            popular: 300,
            recent: 20,
            content: 100,
            total_max: 1000,
            neighbours_per_anchor: 100,
        }
    }
}

/// The in-memory catalog and category popularity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSettings {
    /// Most items kept; records of further new items are dropped and counted
    /// (`recommender_catalog_dropped_total`). Default 200000.
    pub max_items: usize,
    /// Items kept per leaf category, brand and title word for content candidates (the
    /// newest). Default 200.
    pub index_per_key: usize,
    /// Items of the popularity top list read per category and day. Default 200.
    pub popular_per_category: usize,
    /// How often category popularity is read from Redis, in ms. Default 5000.
    pub popularity_refresh_ms: u64,
    /// How long start waits for the catalog topic to be read up to its end before
    /// serving anyway, in seconds. Default 30.
    pub load_timeout_secs: u64,
    /// An item first seen less than this many seconds ago is new (content candidates
    /// prefer it). Default 604800 (7 days).
    pub new_item_secs: u64,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            max_items: 200_000,
            index_per_key: 200,
            popular_per_category: 200,
            popularity_refresh_ms: 5_000,
            load_timeout_secs: 30,
            new_item_secs: 7 * 86_400,
        }
    }
}

/// The business rules file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// The rules (TOML, see [`crate::rules::Rules`]); validated at start, reloaded when it
    /// changes (a bad version is refused and the old one serves). Default
    /// `models/rules.toml`.
    pub file: String,
    /// How often the file is checked for a change, in seconds. Default 2.
    pub reload_secs: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            file: "models/rules.toml".into(),
            reload_secs: 2,
        }
    }
}

/// The A/B split: arm `ranker` (the ONNX ranker) and arm `covis` (co-visitation and
/// bought-together scores only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// Share of users in arm `ranker`, 0 to 1; the rest are in `covis`. A user's arm is
    /// xxh3_64(salt + user id) mod 10000 < share × 10000. Default 0.5.
    pub ranker_share: f64,
    /// Changes the split without changing the share. Default `recommender-1`.
    pub salt: String,
    /// How often served counters are added to Redis, in ms. Default 1000.
    pub stats_flush_ms: u64,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            ranker_share: 0.5,
            salt: "recommender-1".into(),
            stats_flush_ms: 1_000,
        }
    }
}

/// The event stream: purchases and attribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Most events in one batch (one Redis script run). Default 1000.
    pub batch_max: usize,
    /// How long a batch waits for more events after its first, in ms. Default 10.
    pub batch_linger_ms: u64,
    /// TTL of a user's purchased-items set, refreshed on orders, in seconds; also the
    /// longest repurchase window the rules can use. Default 31536000 (365 days).
    pub purchased_ttl_secs: u64,
    /// Most purchased items kept per user (the latest). Default 500.
    pub purchased_max: usize,
    /// How long a recomm_id can be attributed: TTL of its record and of the click
    /// records that join orders to it, in seconds. Default 604800 (7 days).
    pub attribution_ttl_secs: u64,
    /// TTL of the per-event markers that make replays harmless, in seconds. Default
    /// 86400.
    pub marker_ttl_secs: u64,
    /// TTL of the experiment counters, refreshed on every update, in seconds. Default
    /// 7776000 (90 days).
    pub stats_ttl_secs: u64,
    /// Longest wait between retries of a failing batch, in ms. Default 5000.
    pub retry_backoff_max_ms: u64,
    /// How long shutdown may take to drain, in seconds. Default 30.
    pub shutdown_grace_secs: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            batch_max: 1000,
            batch_linger_ms: 10,
            purchased_ttl_secs: 365 * 86_400,
            purchased_max: 500,
            attribution_ttl_secs: 7 * 86_400,
            marker_ttl_secs: 86_400,
            stats_ttl_secs: 90 * 86_400,
            retry_backoff_max_ms: 5_000,
            shutdown_grace_secs: 30,
        }
    }
}

/// A Kafka topic name: 1-249 of `[a-zA-Z0-9._-]`.
fn topic_name(key: &str, name: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    match (1..=249).contains(&name.len()) && name.bytes().all(ok) {
        true => Ok(()),
        false => Err(format!("{key} {name:?} is not a valid topic name")),
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), String> {
        self.kafka.validate()?;
        self.redis.validate()?;
        self.telemetry.validate()?;
        let t = &self.topics;
        topic_name("topics.events", &t.events)?;
        topic_name("topics.catalog", &t.catalog)?;
        topic_name("topics.recommendations", &t.recommendations)?;
        for (key, addr) in [
            ("grpc.listen", &self.grpc.listen),
            ("admin.listen", &self.admin.listen),
        ] {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("{key} {addr:?} is not host:port: {e}"))?;
        }
        let m = &self.models;
        let required = [
            ("models.root", &m.root),
            ("models.runtime_library", &m.runtime_library),
            ("models.ranker", &m.ranker),
            ("models.ranker_version", &m.ranker_version),
            ("models.embeddings", &m.embeddings),
        ];
        if let Some((key, _)) = required.iter().find(|(_, v)| v.is_empty()) {
            return Err(format!("{key} must not be empty"));
        }
        let (c, k, s) = (&self.candidates, &self.catalog, &self.stream);
        let positive = [
            ("models.sessions", m.sessions as u64),
            ("models.embedding_neighbours", m.embedding_neighbours as u64),
            (
                "models.exact_search_max_items",
                m.exact_search_max_items as u64,
            ),
            ("candidates.total_max", c.total_max as u64),
            (
                "candidates.neighbours_per_anchor",
                c.neighbours_per_anchor as u64,
            ),
            ("catalog.max_items", k.max_items as u64),
            ("catalog.index_per_key", k.index_per_key as u64),
            (
                "catalog.popular_per_category",
                k.popular_per_category as u64,
            ),
            ("catalog.popularity_refresh_ms", k.popularity_refresh_ms),
            ("rules.reload_secs", self.rules.reload_secs),
            ("experiment.stats_flush_ms", self.experiment.stats_flush_ms),
            ("stream.batch_max", s.batch_max as u64),
            ("stream.purchased_ttl_secs", s.purchased_ttl_secs),
            ("stream.purchased_max", s.purchased_max as u64),
            ("stream.attribution_ttl_secs", s.attribution_ttl_secs),
            ("stream.marker_ttl_secs", s.marker_ttl_secs),
            ("stream.stats_ttl_secs", s.stats_ttl_secs),
            ("stream.retry_backoff_max_ms", s.retry_backoff_max_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{key} must be at least 1"));
        }
        if c.neighbours_per_anchor > 1000 || c.total_max > 10_000 {
            return Err(
                "candidates.neighbours_per_anchor must be at most 1000 and candidates.total_max at most 10000"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.experiment.ranker_share) {
            return Err("experiment.ranker_share must be in [0, 1]".into());
        }
        if !self.rules.file.is_empty() {
            crate::rules::Rules::load(std::path::Path::new(&self.rules.file))
                .map_err(|e| format!("rules.file {}: {e}", self.rules.file))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Config, String> {
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        // Tests run in the crate's directory; the shipped rules are two levels up.
        env.push((
            "FUNNEL_RULES__FILE".into(),
            "../../models/rules.toml".into(),
        ));
        funnel_runtime::load_config::<Config>(None, env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_defaults_are_valid() {
        let c = load(&[]).unwrap();
        assert_eq!(c.kafka.group_id, "funnel-recommender");
        assert_eq!(c.topics.recommendations, "funnel.recommendations.v1");
    }

    #[test]
    fn a_bad_key_or_value_is_refused_naming_the_key() {
        let err = load(&[("FUNNEL_CANDIDATES__COVISS", "5")]).unwrap_err();
        assert!(err.contains("candidates.coviss"), "{err}");
        let err = load(&[("FUNNEL_STREAM__BATCH_MAX", "0")]).unwrap_err();
        assert!(err.contains("stream.batch_max must be at least 1"), "{err}");
        let err = load(&[("FUNNEL_STREAM__RETRY_BACKOFF_MAX_MS", "0")]).unwrap_err();
        assert!(
            err.contains("stream.retry_backoff_max_ms must be at least 1"),
            "{err}"
        );
        let err = load(&[("FUNNEL_EXPERIMENT__RANKER_SHARE", "1.5")]).unwrap_err();
        assert!(err.contains("experiment.ranker_share"), "{err}");
        let err = load(&[("FUNNEL_TOPICS__RECOMMENDATIONS", "a b")]).unwrap_err();
        assert!(err.contains("topics.recommendations"), "{err}");
    }
}
