//! Idempotent topic creation for set-up, tests and the demo.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{BusError, KafkaConfig};

/// A topic to create if it does not exist.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    /// `cleanup.policy=compact` for latest-value topics like the catalog.
    pub compacted: bool,
}

impl TopicSpec {
    pub fn new(name: &str, partitions: i32) -> Self {
        TopicSpec {
            name: name.to_string(),
            partitions,
            replication: 1,
            compacted: false,
        }
    }

    pub fn compacted(mut self) -> Self {
        self.compacted = true;
        self
    }
}

/// Creates the topics that do not exist yet; existing ones are left alone.
pub async fn ensure_topics(config: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> =
        config
            .client_config(&[])
            .create()
            .map_err(|source| BusError::Create {
                what: "admin client",
                brokers: config.brokers.clone(),
                source,
            })?;
    let new_topics = specs
        .iter()
        .map(|s| {
            let t = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            );
            if s.compacted {
                t.set("cleanup.policy", "compact")
            } else {
                t
            }
        })
        .collect::<Vec<_>>();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .map_err(|e| BusError::CreateTopic {
            topic: specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            reason: e.to_string(),
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
