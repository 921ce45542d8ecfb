//! Metric names of the recommender, declared in one place (prefix `recommender_`).

use funnel_bus::{BatchMetrics, ConsumerMetrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct Metrics {
    requests: Family<Labels, Counter>,
    pub invalid_requests: Counter,
    pub request_errors: Counter,
    pub cold_starts: Counter,
    pub request_seconds: Histogram,
    pub ranking_seconds: Histogram,
    pub candidates_per_request: Histogram,
    candidates: Family<Labels, Counter>,
    served_by_source: Family<Labels, Counter>,
    rule_drops: Family<Labels, Counter>,
    pub log_errors: Counter,
    pub catalog_items: Gauge,
    pub catalog_updates: Counter,
    pub catalog_dropped: Counter,
    pub catalog_undecodable: Counter,
    pub popularity_errors: Counter,
    pub embedding_items: Gauge,
    pub rules_reloads: Counter,
    pub model_swaps: Counter,
    pub model_refusals: Counter,
    pub rules_refusals: Counter,
    pub stats_flush_errors: Counter,
    pub batch: BatchMetrics,
    pub events_applied: Counter,
    pub undecodable: Counter,
    model_info: Family<Labels, Gauge>,
    pub consumer: ConsumerMetrics,
}

/// Registers each `(name, help, metric)` under `r`.
fn register_all<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    metrics: &[(&str, &str, &M)],
) {
    for (name, help, metric) in metrics {
        r.register(*name, *help, (*metric).clone());
    }
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let seconds = || Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let m = Metrics {
            requests: Family::default(),
            invalid_requests: Counter::default(),
            request_errors: Counter::default(),
            cold_starts: Counter::default(),
            request_seconds: seconds(),
            ranking_seconds: seconds(),
            candidates_per_request: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            candidates: Family::default(),
            served_by_source: Family::default(),
            rule_drops: Family::default(),
            log_errors: Counter::default(),
            catalog_items: Gauge::default(),
            catalog_updates: Counter::default(),
            catalog_dropped: Counter::default(),
            catalog_undecodable: Counter::default(),
            popularity_errors: Counter::default(),
            embedding_items: Gauge::default(),
            rules_reloads: Counter::default(),
            model_swaps: Counter::default(),
            model_refusals: Counter::default(),
            rules_refusals: Counter::default(),
            stats_flush_errors: Counter::default(),
            batch: BatchMetrics::default(),
            events_applied: Counter::default(),
            undecodable: Counter::default(),
            model_info: Family::default(),
            consumer: ConsumerMetrics::default(),
        };
        let r = registry.sub_registry_with_prefix("recommender");
        m.batch.register(r, "Canonical events consumed");
        register_all(
            r,
            &[
                (
                    "invalid_requests",
                    "Recommend requests refused as INVALID_ARGUMENT",
                    &m.invalid_requests,
                ),
                (
                    "request_errors",
                    "Recommend requests that failed (Redis or the ranker)",
                    &m.request_errors,
                ),
                (
                    "cold_starts",
                    "Answers for users without any history (popular and content only)",
                    &m.cold_starts,
                ),
                (
                    "log_errors",
                    "Answers that could not be published to the recommendations topic",
                    &m.log_errors,
                ),
                (
                    "catalog_updates",
                    "Catalog records applied",
                    &m.catalog_updates,
                ),
                (
                    "catalog_dropped",
                    "Records of new items dropped because catalog.max_items was reached",
                    &m.catalog_dropped,
                ),
                (
                    "catalog_undecodable",
                    "Catalog records skipped because they are not an Item",
                    &m.catalog_undecodable,
                ),
                (
                    "popularity_errors",
                    "Category popularity refreshes that failed",
                    &m.popularity_errors,
                ),
                (
                    "rules_reloads",
                    "Rules files reloaded after a change",
                    &m.rules_reloads,
                ),
                (
                    "rules_refusals",
                    "Changed rules files refused (the previous rules kept serving)",
                    &m.rules_refusals,
                ),
                (
                    "model_swaps",
                    "Ranker versions swapped in without restart",
                    &m.model_swaps,
                ),
                (
                    "model_refusals",
                    "Ranker versions named by the serving pointer that failed to load (the previous version kept serving)",
                    &m.model_refusals,
                ),
                (
                    "stats_flush_errors",
                    "Served-counter flushes to Redis that failed (retried with the next)",
                    &m.stats_flush_errors,
                ),
                (
                    "events_applied",
                    "Orders, clicks and impressions applied (not replays)",
                    &m.events_applied,
                ),
                (
                    "undecodable",
                    "Messages skipped because they are not a canonical event",
                    &m.undecodable,
                ),
            ],
        );
        register_all(
            r,
            &[
                (
                    "requests",
                    "Recommend answers, by arm and scenario",
                    &m.requests,
                ),
                (
                    "candidates",
                    "Candidates produced, by source (before rules; an item from two sources counts for both)",
                    &m.candidates,
                ),
                (
                    "served_items",
                    "Items in answers, by source that produced them",
                    &m.served_by_source,
                ),
                (
                    "rule_drops",
                    "Candidates dropped by a rule, by rule",
                    &m.rule_drops,
                ),
            ],
        );
        register_all(
            r,
            &[
                (
                    "request_seconds",
                    "Recommend latency in the service, Redis and ranking included",
                    &m.request_seconds,
                ),
                (
                    "ranking_seconds",
                    "Candidates, features, inference and rules of one request",
                    &m.ranking_seconds,
                ),
                (
                    "candidates_per_request",
                    "Candidates ranked per request, after the rules",
                    &m.candidates_per_request,
                ),
            ],
        );
        register_all(
            r,
            &[
                (
                    "catalog_items",
                    "Items in the in-memory catalog",
                    &m.catalog_items,
                ),
                (
                    "embedding_items",
                    "Items with an embedding and precomputed neighbours",
                    &m.embedding_items,
                ),
            ],
        );
        r.register(
            "model_info",
            "The ranker version serving (1 while it serves)",
            m.model_info.clone(),
        );
        m.consumer.register(registry);
        m
    }

    fn labelled(family: &Family<Labels, Counter>, name: &'static str, value: &str) -> Counter {
        family
            .get_or_create(&vec![(name, value.to_owned())])
            .clone()
    }

    pub fn requests(&self, arm: &str, scenario: &str) -> Counter {
        self.requests
            .get_or_create(&vec![
                ("arm", arm.to_owned()),
                ("scenario", scenario.to_owned()),
            ])
            .clone()
    }

    pub fn candidates(&self, source: &str) -> Counter {
        Self::labelled(&self.candidates, "source", source)
    }

    pub fn served(&self, source: &str) -> Counter {
        Self::labelled(&self.served_by_source, "source", source)
    }

    pub fn rule_drops(&self, rule: &str) -> Counter {
        Self::labelled(&self.rule_drops, "rule", rule)
    }

    pub fn model_serving(&self, model: &str, version: &str) {
        self.model_info.clear();
        self.model_info
            .get_or_create(&vec![
                ("model", model.to_owned()),
                ("version", version.to_owned()),
            ])
            .set(1);
    }
}
