//! Kafka settings shared by every service.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// Connection and client settings. `options` pass through unchanged to
/// librdkafka (SASL, TLS, tuning) and win over ours.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// Consumer group of this service; instances with the same group share partitions.
    pub group_id: String,
    /// `client.id` reported to the brokers.
    pub client_id: String,
    /// How long a produce may wait for its acknowledgement before the batch fails, in ms.
    pub produce_timeout_ms: u64,
    /// librdkafka properties by their own names, e.g. `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            group_id: "funnel".into(),
            client_id: "funnel".into(),
            produce_timeout_ms: 30_000,
            options: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// A config for `brokers` with the given group, other settings default.
    pub fn new(brokers: &str, group_id: &str) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            group_id: group_id.into(),
            client_id: group_id.into(),
            ..KafkaConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("kafka.brokers must name at least one broker".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("kafka.group_id must not be empty".into());
        }
        if self.produce_timeout_ms == 0 {
            return Err("kafka.produce_timeout_ms must be at least 1".into());
        }
        Ok(())
    }

    /// The librdkafka config: ours, then the pass-through options.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Small requests (a few events, an acknowledgement) go out at once instead
            // of waiting on Nagle's algorithm for the peer's delayed ACK.
            .set("socket.nagle.disable", "true");
        for (k, v) in defaults {
            cfg.set(*k, *v);
        }
        for (k, v) in &self.options {
            cfg.set(k, v);
        }
        cfg
    }
}

/// Topic names; the defaults are the contract's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// What platforms produce: raw JSON or protobuf events.
    pub raw: String,
    /// Canonical validated events, keyed by user (items by item).
    pub events: String,
    /// Compacted latest item record per item id.
    pub catalog: String,
    /// Rejected raw messages, original bytes and headers naming the error.
    pub dlq: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            raw: "funnel.events.raw".into(),
            events: "funnel.events.v1".into(),
            catalog: "funnel.catalog.v1".into(),
            dlq: "funnel.events.dlq".into(),
        }
    }
}

impl Topics {
    /// Every topic name with a prefix, for test isolation and tenants.
    pub fn with_prefix(prefix: &str) -> Self {
        let d = Topics::default();
        Topics {
            raw: format!("{prefix}{}", d.raw),
            events: format!("{prefix}{}", d.events),
            catalog: format!("{prefix}{}", d.catalog),
            dlq: format!("{prefix}{}", d.dlq),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for (key, name) in [
            ("topics.raw", &self.raw),
            ("topics.events", &self.events),
            ("topics.catalog", &self.catalog),
            ("topics.dlq", &self.dlq),
        ] {
            let valid = !name.is_empty()
                && name.len() <= 249
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
            if !valid {
                return Err(format!(
                    "{key} {name:?} is not a valid topic name (1-249 of [a-zA-Z0-9._-])"
                ));
            }
        }
        Ok(())
    }
}
