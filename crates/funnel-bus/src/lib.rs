//! The Kafka bus of Funnel (rdkafka): an at-least-once batch consumer, an
//! idempotent producer, dead-letter headers, trace-context headers and topic
//! creation.
//!
//! # Layout
//! - [`config`]: [`KafkaConfig`] with a librdkafka pass-through map, and [`Topics`].
//! - [`consumer`]: [`BatchConsumer`]: batches by size and linger, stores
//!   offsets only when the caller says a batch is durable.
//! - [`producer`]: [`Producer`]: acknowledged sends, flush on shutdown.
//! - [`headers`]: DLQ headers and W3C trace context in Kafka headers.
//! - [`admin`]: idempotent topic creation.
//! - [`lanes`]: [`Lanes`]: batches split by key over concurrent workers, offsets
//!   stored in order.

pub mod admin;
mod backoff;
pub mod config;
pub mod consumer;
pub mod headers;
pub mod lanes;
pub mod producer;

pub use config::{KafkaConfig, Topics};
pub use consumer::{BatchConsumer, ConsumerMetrics, Offsets};
pub use lanes::{BatchMetrics, Lane, LaneSettings, Lanes, LanesError};
pub use producer::{OutRecord, Producer, Sending, Unsent};
pub use rdkafka::Message;
pub use rdkafka::message::{Headers, OwnedHeaders, OwnedMessage};

/// A Kafka operation that failed, with what it was about.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("failed to create kafka {what} for brokers {brokers}: {source}")]
    Create {
        what: &'static str,
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("failed to subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: rdkafka::error::KafkaError,
    },
    #[error("failed to consume: {0}")]
    Consume(rdkafka::error::KafkaError),
    #[error("failed to produce to {topic}: {source}")]
    Produce {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("failed to commit offsets: {0}")]
    Commit(rdkafka::error::KafkaError),
    #[error("failed to create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
}
