//! Metric names of ingest, declared in one place.

use funnel_bus::{BatchMetrics, ConsumerMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub events_out: Family<TypeLabel, Counter>,
    pub dlq: Family<ReasonLabel, Counter>,
    pub dedup_hits: Counter,
    pub replays: Counter,
    pub store_conflicts: Counter,
    pub batch: BatchMetrics,
    pub consumer: ConsumerMetrics,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            events_out: Family::default(),
            dlq: Family::default(),
            dedup_hits: Counter::default(),
            replays: Counter::default(),
            store_conflicts: Counter::default(),
            batch: BatchMetrics::default(),
            consumer: ConsumerMetrics::default(),
        };
        let r = registry.sub_registry_with_prefix("ingest");
        m.batch.register(r, "Raw messages consumed");
        r.register(
            "events_out",
            "Canonical events published, by type",
            m.events_out.clone(),
        );
        r.register(
            "dlq",
            "Messages sent to the dead-letter topic, by reason",
            m.dlq.clone(),
        );
        r.register(
            "dedup_hits",
            "Events dropped as duplicates of an earlier event_id",
            m.dedup_hits.clone(),
        );
        r.register(
            "replays",
            "Messages seen again after a restart or rebalance (republished, not recounted)",
            m.replays.clone(),
        );
        r.register(
            "store_conflicts",
            "Batches re-planned because a dedup marker changed concurrently",
            m.store_conflicts.clone(),
        );
        m.consumer.register(registry);
        m
    }
}
