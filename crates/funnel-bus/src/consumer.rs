//! An at-least-once batch consumer.
//!
//! Offsets are stored (`enable.auto.offset.store=false`) only when the caller
//! says a batch is durable — its outputs acknowledged and its state written —
//! and librdkafka commits stored offsets in the background, on rebalance and
//! on close. A crash replays at most the batches not yet stored; idempotent
//! effects downstream make the replay harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, Offset, Statistics, TopicPartitionList};
use tokio::time::Instant;

use crate::{BusError, KafkaConfig};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

/// Consumer metrics, registered by the service that owns the consumer.
#[derive(Clone, Default)]
pub struct ConsumerMetrics {
    /// Messages between the committed offset and the high watermark, from
    /// librdkafka statistics.
    pub lag: Family<PartitionLabels, Gauge>,
    /// Partitions assigned to this instance.
    pub assigned: Gauge,
}

impl ConsumerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_consumer_lag",
            "Messages behind the high watermark, per partition",
            self.lag.clone(),
        );
        registry.register(
            "kafka_assigned_partitions",
            "Partitions assigned to this consumer",
            self.assigned.clone(),
        );
    }
}

/// Logs rebalances and turns statistics into lag metrics.
pub struct BusContext {
    metrics: ConsumerMetrics,
}

impl ClientContext for BusContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in stats.topics {
            for (partition, p) in t.partitions {
                if partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition,
                    })
                    .set(p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for BusContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                self.metrics.lag.clear();
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        _rebalance: &Rebalance<'_>,
    ) {
        if let Ok(tpl) = consumer.assignment() {
            self.metrics.assigned.set(tpl.count() as i64);
        }
    }
}

/// A consumer that hands out batches and stores offsets on request.
pub struct BatchConsumer {
    consumer: Arc<StreamConsumer<BusContext>>,
}

impl BatchConsumer {
    /// Joins `config.group_id` and subscribes to `topics`.
    pub fn subscribe(
        config: &KafkaConfig,
        topics: &[&str],
        metrics: ConsumerMetrics,
    ) -> Result<BatchConsumer, BusError> {
        let consumer: StreamConsumer<BusContext> = config
            .client_config(&[
                ("group.id", config.group_id.as_str()),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                // librdkafka prefetches up to 100k messages or 64 MiB of
                // payload by default, and each queued message costs a few
                // hundred bytes beyond its payload. A service's memory budget
                // is 150 MB, so prefetch a few batches' worth instead.
                ("queued.min.messages", "10000"),
                ("queued.max.messages.kbytes", "32768"),
                // Once a partition's queue is full, librdkafka waits this long
                // before fetching again (1 s by default): with a small queue
                // that wait, not the broker, would set the pace.
                ("fetch.queue.backoff.ms", "10"),
                ("statistics.interval.ms", "5000"),
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "1000"),
                ("max.poll.interval.ms", "300000"),
            ])
            .create_with_context(BusContext { metrics })
            .map_err(|source| BusError::Create {
                what: "consumer",
                brokers: config.brokers.clone(),
                source,
            })?;
        consumer
            .subscribe(topics)
            .map_err(|source| BusError::Subscribe {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                source,
            })?;
        Ok(BatchConsumer {
            consumer: Arc::new(consumer),
        })
    }

    /// Waits for the first message, then takes what arrives within `linger`,
    /// up to `max` messages. Not cancel-safe: messages the future took before
    /// it is dropped are not delivered again by this consumer. Their offsets
    /// are not stored, so drop it only when stopping (the partitions' next
    /// owner then replays them), never to poll something else meanwhile.
    pub async fn next_batch(
        &self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<OwnedMessage>, BusError> {
        let first = self.consumer.recv().await.map_err(BusError::Consume)?;
        let mut batch = Vec::with_capacity(max.min(4096));
        batch.push(first.detach());
        let deadline = Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consume error inside a batch; closing the batch early");
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    /// Marks every message of `batch` as done: the next commit resumes after
    /// the highest offset per partition. Partitions revoked meanwhile are
    /// skipped — their new owner replays them, which dedup makes harmless.
    pub fn store_offsets<'a>(
        &self,
        batch: impl IntoIterator<Item = &'a OwnedMessage>,
    ) -> Result<(), BusError> {
        self.store(&Offsets::of(batch))
    }

    /// Stores offsets taken from a batch earlier (see [`Offsets::of`]).
    pub fn store(&self, offsets: &Offsets) -> Result<(), BusError> {
        if offsets.next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.next.len());
        for ((topic, partition), offset) in &offsets.next {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(topic, partition, error = %e, "invalid offset, not stored");
            }
        }
        match self.consumer.store_offsets(&tpl) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "offsets not stored (partitions revoked?); they will be replayed");
                Ok(())
            }
        }
    }

    /// Commits stored offsets now and waits for the broker. Blocking: called
    /// on shutdown from a blocking thread.
    pub fn commit_blocking(&self) -> Result<(), BusError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            // Nothing stored since the last commit.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => Ok(()),
            Err(e) => Err(BusError::Commit(e)),
        }
    }

    /// Commits stored offsets without blocking the async workers.
    pub async fn commit(&self) -> Result<(), BusError> {
        let consumer = Arc::clone(&self.consumer);
        let this = BatchConsumer { consumer };
        tokio::task::spawn_blocking(move || this.commit_blocking())
            .await
            .unwrap_or_else(|e| {
                Err(BusError::Commit(rdkafka::error::KafkaError::Canceled)).inspect_err(|_| {
                    tracing::error!(error = %e, "commit task failed");
                })
            })
    }

    /// Partitions currently assigned to this instance.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer
            .assignment()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The next offset to consume per partition after a batch: what storing the
/// batch as done records. Small, so a batch's messages can move on while its
/// offsets wait for every part of it to finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offsets {
    next: HashMap<(String, i32), i64>,
}

impl Offsets {
    pub fn of<'a>(batch: impl IntoIterator<Item = &'a OwnedMessage>) -> Offsets {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for m in batch {
            let e = next.entry((m.topic(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        Offsets {
            next: next
                .into_iter()
                .map(|((topic, partition), offset)| ((topic.to_string(), partition), offset))
                .collect(),
        }
    }

    /// The next offset of `partition` of `topic`, if the batch had messages there.
    pub fn next(&self, topic: &str, partition: i32) -> Option<i64> {
        self.next.get(&(topic.to_string(), partition)).copied()
    }
}
