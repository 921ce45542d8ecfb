//! Metric names of behavior-predictor, declared in one place (prefix `behavior_`).

use funnel_bus::{BatchMetrics, ConsumerMetrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets, linear_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct Metrics {
    pub predictions: Counter,
    pub debounced: Counter,
    pub replays: Counter,
    pub republished: Counter,
    pub undecodable: Counter,
    pub store_conflicts: Counter,
    pub batch: BatchMetrics,
    pub inference_batch_size: Histogram,
    pub inference_seconds: Histogram,
    pub read_seconds: Histogram,
    pub publish_seconds: Histogram,
    pub write_seconds: Histogram,
    pub purchase_probability: Histogram,
    pub abandonment_probability: Histogram,
    pub consumer: ConsumerMetrics,
    actions: Family<Labels, Counter>,
    actions_suppressed: Family<Labels, Counter>,
    pub policy_reloads: Counter,
    pub policy_refusals: Counter,
    pub policy_errors: Counter,
    pub idle_claimed: Counter,
    pub shadow_predictions: Counter,
    pub shadow_errors: Counter,
    pub shadow_skipped: Counter,
    model_info: Family<Labels, Gauge>,
    model_swaps: Family<Labels, Counter>,
    model_refusals: Family<Labels, Counter>,
}

type Labels = Vec<(&'static str, String)>;

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let probability = || Histogram::new(linear_buckets(0.05, 0.05, 20));
        let m = Metrics {
            predictions: Counter::default(),
            debounced: Counter::default(),
            replays: Counter::default(),
            republished: Counter::default(),
            undecodable: Counter::default(),
            store_conflicts: Counter::default(),
            batch: BatchMetrics::default(),
            inference_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 17)),
            inference_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 20)),
            read_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            publish_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            write_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            purchase_probability: probability(),
            abandonment_probability: probability(),
            consumer: ConsumerMetrics::default(),
            actions: Family::default(),
            actions_suppressed: Family::default(),
            policy_reloads: Counter::default(),
            policy_refusals: Counter::default(),
            policy_errors: Counter::default(),
            idle_claimed: Counter::default(),
            shadow_predictions: Counter::default(),
            shadow_errors: Counter::default(),
            shadow_skipped: Counter::default(),
            model_info: Family::default(),
            model_swaps: Family::default(),
            model_refusals: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("behavior");
        m.batch.register(r, "Canonical events consumed");
        r.register(
            "predictions",
            "Intent predictions published (rate: predictions/s)",
            m.predictions.clone(),
        );
        r.register(
            "debounced",
            "Events applied without a prediction of their own (debounce)",
            m.debounced.clone(),
        );
        r.register(
            "replays",
            "Events not applied because their marker was set (replay or republished event)",
            m.replays.clone(),
        );
        r.register(
            "republished",
            "Predictions published again from their event's marker: the event was replayed \
             by this consumer group after its state was written",
            m.republished.clone(),
        );
        r.register(
            "undecodable",
            "Messages skipped because they are not a canonical event",
            m.undecodable.clone(),
        );
        r.register(
            "store_conflicts",
            "Batches planned again because an event marker changed concurrently",
            m.store_conflicts.clone(),
        );
        r.register(
            "inference_batch_size",
            "Rows per intent inference run of the stream",
            m.inference_batch_size.clone(),
        );
        r.register(
            "inference_seconds",
            "Time of one intent inference run of the stream, blocking thread included",
            m.inference_seconds.clone(),
        );
        r.register(
            "read_seconds",
            "Time of a batch part's one Redis read (markers, sessions, users, items)",
            m.read_seconds.clone(),
        );
        r.register(
            "publish_seconds",
            "Time from producing a batch part's predictions to their acknowledgement",
            m.publish_seconds.clone(),
        );
        r.register(
            "write_seconds",
            "Time of a batch part's one Redis MULTI/EXEC",
            m.write_seconds.clone(),
        );
        r.register(
            "purchase_probability",
            "Published P(order in this session)",
            m.purchase_probability.clone(),
        );
        r.register(
            "abandonment_probability",
            "Published P(cart abandoned)",
            m.abandonment_probability.clone(),
        );
        r.register(
            "actions",
            "Conversion actions published, by action and arm (holdout: decided, not acted on)",
            m.actions.clone(),
        );
        r.register(
            "actions_suppressed",
            "Conversion decisions not published, by action and reason (cooldown, cap)",
            m.actions_suppressed.clone(),
        );
        r.register(
            "policy_reloads",
            "Conversion policy files reloaded after a change",
            m.policy_reloads.clone(),
        );
        r.register(
            "policy_refusals",
            "Changed conversion policy files refused (the previous version kept serving)",
            m.policy_refusals.clone(),
        );
        r.register(
            "policy_errors",
            "Conversion policy runs (after a batch, idle scan) that failed on Redis or Kafka",
            m.policy_errors.clone(),
        );
        r.register(
            "idle_sessions_claimed",
            "Idle sessions with a cart this instance claimed from the idle set",
            m.idle_claimed.clone(),
        );
        r.register(
            "model_info",
            "The model version serving, by model and version (1 while it serves)",
            m.model_info.clone(),
        );
        r.register(
            "model_swaps",
            "Model versions swapped in without restart, by model",
            m.model_swaps.clone(),
        );
        r.register(
            "model_refusals",
            "Changed model versions refused (failed validation; the previous version kept serving), by model",
            m.model_refusals.clone(),
        );
        r.register(
            "shadow_predictions",
            "Shadow model predictions published to the shadow topic",
            m.shadow_predictions.clone(),
        );
        r.register(
            "shadow_errors",
            "Shadow runs that failed (inference or publish); their batch has no shadow predictions",
            m.shadow_errors.clone(),
        );
        r.register(
            "shadow_skipped",
            "Rows not shadow-scored because too many shadow runs were pending",
            m.shadow_skipped.clone(),
        );
        m.consumer.register(registry);
        m
    }

    /// The counter of published `action`s in `arm`.
    pub fn actions(&self, action: &str, arm: &str) -> Counter {
        labelled(&self.actions, action, ("arm", arm))
    }

    /// Marks `version` of `model` as the one serving, and `replaced` (if any) as no longer.
    pub fn model_serving(&self, model: &str, version: &str, replaced: Option<&str>) {
        if let Some(old) = replaced
            && old != version
        {
            self.model_info.remove(&vec![
                ("model", model.to_owned()),
                ("version", old.to_owned()),
            ]);
        }
        self.model_info
            .get_or_create(&vec![
                ("model", model.to_owned()),
                ("version", version.to_owned()),
            ])
            .set(1);
    }

    /// The counter of versions of `model` swapped in.
    pub fn model_swaps(&self, model: &str) -> Counter {
        self.model_swaps
            .get_or_create(&vec![("model", model.to_owned())])
            .clone()
    }

    /// The counter of versions of `model` refused.
    pub fn model_refusals(&self, model: &str) -> Counter {
        self.model_refusals
            .get_or_create(&vec![("model", model.to_owned())])
            .clone()
    }

    /// The counter of `action`s suppressed for `reason`.
    pub fn suppressed(&self, action: &str, reason: &str) -> Counter {
        labelled(&self.actions_suppressed, action, ("reason", reason))
    }
}

/// The counter of `action` with one more label.
fn labelled(
    family: &Family<Labels, Counter>,
    action: &str,
    (name, value): (&'static str, &str),
) -> Counter {
    family
        .get_or_create(&vec![
            ("action", action.to_owned()),
            (name, value.to_owned()),
        ])
        .clone()
}
