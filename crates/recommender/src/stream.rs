//! The event stream: orders keep each user's purchased items current (the repurchase
//! rule reads them on the next request), and impressions, clicks and orders are joined
//! back to the answers whose `recomm_id` they carry.
//!
//! At least once: a batch is applied by one Lua script run that sets a marker per event
//! (`SET NX`) and applies only the events whose marker was not set yet, all atomically;
//! offsets are stored only after it returned. A replayed batch finds its markers and
//! changes nothing. An order is credited to the answers whose items the user clicked
//! (the click recorded `P:rec:ck:{user}:{item}` → recomm_id), once per order and answer.

use std::time::Duration;

use funnel_bus::{BatchConsumer, Lane, LaneSettings, Lanes, LanesError, Message, OwnedMessage};
use funnel_core::pb::{self, event::Payload};
use funnel_runtime::Shutdown;
use prost::Message as _;

use crate::config::StreamSettings;
use crate::metrics::Metrics;
use crate::state::{RecStore, StreamEvent, StreamLimits};

/// What the recommender takes from one canonical event, if anything.
pub fn stream_event(event: &pb::Event) -> Option<StreamEvent> {
    let (t, recomm, items): (&'static str, &str, Vec<String>) = match event.payload.as_ref()? {
        Payload::Order(o) => (
            "order",
            "",
            o.lines.iter().map(|l| l.item_id.clone()).collect(),
        ),
        Payload::Click(c) => ("click", &c.recomm_id, vec![c.item_id.clone()]),
        Payload::Impression(i) => ("impression", &i.recomm_id, i.item_ids.clone()),
        _ => return None,
    };
    let attributable = t == "order" || !recomm.is_empty();
    (attributable && !event.user_id.is_empty() && !items.is_empty()).then(|| StreamEvent {
        id: event.event_id.clone(),
        t,
        u: event.user_id.clone(),
        ts: event.ts_ms,
        r: recomm.to_owned(),
        items,
    })
}

impl From<&StreamSettings> for StreamLimits {
    fn from(s: &StreamSettings) -> Self {
        StreamLimits {
            marker_ttl_secs: s.marker_ttl_secs,
            attribution_ttl_secs: s.attribution_ttl_secs,
            purchased_ttl_secs: s.purchased_ttl_secs,
            purchased_max: s.purchased_max,
            stats_ttl_secs: s.stats_ttl_secs,
        }
    }
}

fn decode(batch: &[OwnedMessage], metrics: &Metrics) -> Vec<StreamEvent> {
    batch
        .iter()
        .filter_map(|m| match pb::Event::decode(m.payload().unwrap_or_default()) {
            Ok(event) => stream_event(&event),
            Err(e) => {
                metrics.undecodable.inc();
                tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "skipping a message that is not a canonical event");
                None
            }
        })
        .collect()
}

/// Applies batches until `stop` through one [`Lanes`] lane (one script run per batch, in
/// stream order), which retries a failing batch with backoff and stores its offsets once it
/// is applied. Ends early only if the lane fails.
pub async fn consume(
    consumer: &BatchConsumer,
    store: &RecStore,
    settings: &StreamSettings,
    metrics: &Metrics,
    stop: &Shutdown,
) -> Result<(), LanesError> {
    let lane = StreamLane {
        store: store.clone(),
        limits: StreamLimits::from(settings),
        metrics: metrics.clone(),
        decoded: None,
    };
    let lanes = LaneSettings {
        batch_max: settings.batch_max,
        linger: Duration::from_millis(settings.batch_linger_ms),
        retry_backoff_max: Duration::from_millis(settings.retry_backoff_max_ms),
        max_inflight: 1,
    };
    Lanes::new(vec![lane])
        .run(consumer, &lanes, &metrics.batch, stop)
        .await
}

/// The stream's lane: decodes a batch once, applies it in one script run.
struct StreamLane {
    store: RecStore,
    limits: StreamLimits,
    metrics: Metrics,
    /// The last part decoded, by its first message's partition and offset and its length,
    /// so that a retried part is not decoded (and its undecodable messages not counted)
    /// again.
    decoded: Option<((i32, i64, usize), Vec<StreamEvent>)>,
}

impl Lane for StreamLane {
    type Error = redis::RedisError;
    type Finish = funnel_bus::lanes::Done;

    async fn process(
        &mut self,
        messages: &[OwnedMessage],
    ) -> Result<Self::Finish, redis::RedisError> {
        let id = messages
            .first()
            .map_or((0, -1, 0), |m| (m.partition(), m.offset(), messages.len()));
        let events = match self.decoded.take() {
            Some((decoded, events)) if decoded == id => events,
            _ => decode(messages, &self.metrics),
        };
        match self.store.apply_events(&events, &self.limits).await {
            Ok(applied) => {
                self.metrics.events_applied.inc_by(applied);
                Ok(funnel_bus::lanes::done())
            }
            Err(e) => {
                self.decoded = Some((id, events));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: Payload) -> pb::Event {
        pb::Event {
            event_id: "e1".into(),
            user_id: "u1".into(),
            ts_ms: 7,
            payload: Some(payload),
            ..pb::Event::default()
        }
    }

    #[test]
    fn orders_and_attributable_clicks_and_impressions_are_taken() {
        let order = event(Payload::Order(pb::Order {
            lines: vec![pb::OrderLine {
                item_id: "a".into(),
                ..pb::OrderLine::default()
            }],
            ..pb::Order::default()
        }));
        let e = stream_event(&order).unwrap();
        assert_eq!(
            (e.t, e.items.as_slice(), e.ts),
            ("order", &["a".to_owned()][..], 7)
        );
        let click = |recomm: &str| {
            event(Payload::Click(pb::Click {
                item_id: "a".into(),
                recomm_id: recomm.into(),
                ..pb::Click::default()
            }))
        };
        assert_eq!(stream_event(&click("r1")).unwrap().r, "r1");
        assert!(stream_event(&click("")).is_none());
        let search = event(Payload::Search(pb::Search::default()));
        assert!(stream_event(&search).is_none());
    }
}
