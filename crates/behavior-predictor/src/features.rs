//! Model features, computed exactly as training computes them
//! (`models/funnel_models/features.py`): same order, same formulas, `f64` arithmetic cast
//! to `f32` at the end. The golden vectors of `models/*/1/parity.json` hold the two together.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use funnel_core::pb;
use funnel_core::pb::EventType;
use funnel_core::pb::event::Payload;
use serde::{Deserialize, Serialize};

use crate::context::{EventContext, item_of};

const MS_PER_SECOND: f64 = 1000.0;
const MS_PER_HOUR: f64 = 3_600_000.0;
const MS_PER_DAY: i64 = 86_400_000;
const POPULARITY_CAP: u64 = 10_000;
const DAYS_SINCE_LAST_SESSION_CAP: f64 = 365.0;

/// How many of the latest events the sequence window one-hot encodes.
pub const SEQUENCE_LEN: usize = 5;
/// The event types of the sequence window, in the order of their one-hot columns.
pub const SEQUENCE_TYPES: [EventType; 5] = [
    EventType::Search,
    EventType::Impression,
    EventType::Click,
    EventType::AddToCart,
    EventType::RemoveFromCart,
];
const AGGREGATE_FEATURES: usize = 29;

/// Columns of the intent model's input.
pub const INTENT_FEATURE_COUNT: usize = AGGREGATE_FEATURES + SEQUENCE_LEN * SEQUENCE_TYPES.len();
pub type IntentFeatures = [f32; INTENT_FEATURE_COUNT];

/// The intent model's feature names, in column order; a card must list exactly these.
pub const INTENT_FEATURES: [&str; INTENT_FEATURE_COUNT] = [
    "events",
    "searches",
    "impressions",
    "clicks",
    "cart_adds",
    "cart_removes",
    "session_seconds",
    "seconds_since_last_event",
    "mean_gap_seconds",
    "cart_quantity",
    "cart_lines",
    "cart_value",
    "log_cart_value",
    "viewed_items",
    "viewed_price_mean",
    "viewed_price_min",
    "viewed_price_max",
    "viewed_price_std",
    "item_price",
    "item_log_popularity",
    "viewed_log_popularity_mean",
    "viewed_categories",
    "viewed_top_categories",
    "hour_sin",
    "hour_cos",
    "log_prior_sessions",
    "prior_orders",
    "is_returning",
    "days_since_last_session",
    "last1_search",
    "last1_impression",
    "last1_click",
    "last1_add_to_cart",
    "last1_remove_from_cart",
    "last2_search",
    "last2_impression",
    "last2_click",
    "last2_add_to_cart",
    "last2_remove_from_cart",
    "last3_search",
    "last3_impression",
    "last3_click",
    "last3_add_to_cart",
    "last3_remove_from_cart",
    "last4_search",
    "last4_impression",
    "last4_click",
    "last4_add_to_cart",
    "last4_remove_from_cart",
    "last5_search",
    "last5_impression",
    "last5_click",
    "last5_add_to_cart",
    "last5_remove_from_cart",
];

/// What the stream has shown of a user before the current session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserHistory {
    pub sessions: u32,
    pub orders: u32,
    pub last_session_start_ms: Option<i64>,
}

impl UserHistory {
    /// Opens a session starting at `ts_ms`: the session keeps the history as it was, and the
    /// history counts the session.
    pub fn begin_session(&mut self, ts_ms: i64) -> SessionState {
        let days_since_last_session = self
            .last_session_start_ms
            .map_or(DAYS_SINCE_LAST_SESSION_CAP, |last| {
                ((ts_ms - last) as f64 / MS_PER_DAY as f64).min(DAYS_SINCE_LAST_SESSION_CAP)
            });
        let state = SessionState {
            start_ms: ts_ms,
            last_ms: ts_ms,
            prior_sessions: self.sessions,
            prior_orders: self.orders,
            days_since_last_session,
            ..SessionState::default()
        };
        self.sessions += 1;
        self.last_session_start_ms = Some(ts_ms);
        state
    }

    pub fn record_order(&mut self) {
        self.orders += 1;
    }
}

/// One line of the cart: quantity and the catalog price when it was last added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct CartLine {
    quantity: i64,
    unit_price: f64,
}

/// Everything the intent features need of one session, updated event by event; small and
/// serialisable so it can live in the feature store between events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    start_ms: i64,
    last_ms: i64,
    prior_sessions: u32,
    prior_orders: u32,
    days_since_last_session: f64,
    events: u32,
    /// Events per type of [`SEQUENCE_TYPES`].
    counts: [u32; SEQUENCE_TYPES.len()],
    gap_ms: i64,
    cart: BTreeMap<String, CartLine>,
    viewed: BTreeSet<String>,
    price_n: u32,
    price_mean: f64,
    /// Welford's sum of squared deviations from the running mean: no cancellation, so the
    /// standard deviation of equal prices is exactly 0.
    price_m2: f64,
    price_min: f64,
    price_max: f64,
    item_price: f64,
    item_log_popularity: f64,
    popularity_n: u32,
    popularity_sum: f64,
    categories: BTreeSet<String>,
    top_categories: BTreeSet<String>,
    /// Types of the latest events, most recent first.
    recent: VecDeque<i32>,
}

impl SessionState {
    /// Takes in the session's next event with its context.
    pub fn apply(&mut self, event: &pb::Event, context: &EventContext<'_>) {
        let kind = event.r#type();
        let ts = event.ts_ms;
        self.gap_ms = if self.events > 0 {
            ts - self.last_ms
        } else {
            0
        };
        self.last_ms = ts;
        self.events += 1;
        if let Some(slot) = SEQUENCE_TYPES.iter().position(|t| *t == kind) {
            self.counts[slot] += 1;
        }
        self.recent.push_front(kind as i32);
        self.recent.truncate(SEQUENCE_LEN);

        let item_id = item_of(event);
        let item = context.item.filter(|_| item_id.is_some());
        self.item_price = item.map_or(0.0, |item| item.price);
        self.item_log_popularity = if item_id.is_some() {
            (context.item_popularity.min(POPULARITY_CAP) as f64).ln_1p()
        } else {
            0.0
        };
        let Some(item_id) = item_id else {
            return;
        };
        if matches!(kind, EventType::Click | EventType::AddToCart) {
            self.viewed.insert(item_id.to_owned());
            self.popularity_n += 1;
            self.popularity_sum += self.item_log_popularity;
            if let Some(item) = item {
                self.observe_price(item.price);
                self.categories.insert(item.category.clone());
                let top = item.category.split('/').next().unwrap_or_default();
                self.top_categories.insert(top.to_owned());
            }
        }
        let quantity = match &event.payload {
            Some(Payload::Cart(cart)) => i64::from(cart.quantity),
            _ => 0,
        };
        match kind {
            EventType::AddToCart => {
                let line = self.cart.entry(item_id.to_owned()).or_default();
                line.quantity += quantity;
                line.unit_price = item.map_or(0.0, |item| item.price);
            }
            EventType::RemoveFromCart => {
                if let Some(line) = self.cart.get_mut(item_id) {
                    line.quantity -= quantity;
                    if line.quantity <= 0 {
                        self.cart.remove(item_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn observe_price(&mut self, price: f64) {
        if self.price_n == 0 {
            self.price_min = price;
            self.price_max = price;
        } else {
            self.price_min = self.price_min.min(price);
            self.price_max = self.price_max.max(price);
        }
        self.price_n += 1;
        let delta = price - self.price_mean;
        self.price_mean += delta / f64::from(self.price_n);
        self.price_m2 += delta * (price - self.price_mean);
    }

    /// Time of the session's latest event, epoch milliseconds.
    pub fn last_event_ms(&self) -> i64 {
        self.last_ms
    }

    /// Whether the cart holds anything.
    pub fn cart_is_empty(&self) -> bool {
        self.cart.is_empty()
    }
}

/// The intent model's input for a session after its latest event, in [`INTENT_FEATURES`] order.
///
/// The model learnt from the events of a session up to its order; once a session has
/// ordered, its outcome is known and the scores say nothing more.
pub fn intent_features(state: &SessionState) -> IntentFeatures {
    let session_seconds = (state.last_ms - state.start_ms) as f64 / MS_PER_SECOND;
    let (cart_quantity, cart_value) =
        state
            .cart
            .values()
            .fold((0_i64, 0.0_f64), |(quantity, value), line| {
                (
                    quantity + line.quantity,
                    value + line.quantity as f64 * line.unit_price,
                )
            });
    let (price_mean, price_std, price_min, price_max) = if state.price_n > 0 {
        let std = (state.price_m2 / f64::from(state.price_n)).max(0.0).sqrt();
        (state.price_mean, std, state.price_min, state.price_max)
    } else {
        (0.0, 0.0, 0.0, 0.0)
    };
    let hour = state.last_ms.rem_euclid(MS_PER_DAY) as f64 / MS_PER_HOUR;
    let angle = 2.0 * std::f64::consts::PI * hour / 24.0;
    let popularity_mean = if state.popularity_n > 0 {
        state.popularity_sum / f64::from(state.popularity_n)
    } else {
        0.0
    };
    let aggregates: [f64; AGGREGATE_FEATURES] = [
        f64::from(state.events),
        f64::from(state.counts[0]),
        f64::from(state.counts[1]),
        f64::from(state.counts[2]),
        f64::from(state.counts[3]),
        f64::from(state.counts[4]),
        session_seconds,
        state.gap_ms as f64 / MS_PER_SECOND,
        session_seconds / f64::from(state.events.saturating_sub(1).max(1)),
        cart_quantity as f64,
        state.cart.len() as f64,
        cart_value,
        cart_value.ln_1p(),
        state.viewed.len() as f64,
        price_mean,
        price_min,
        price_max,
        price_std,
        state.item_price,
        state.item_log_popularity,
        popularity_mean,
        state.categories.len() as f64,
        state.top_categories.len() as f64,
        angle.sin(),
        angle.cos(),
        f64::from(state.prior_sessions).ln_1p(),
        f64::from(state.prior_orders),
        if state.prior_sessions > 0 { 1.0 } else { 0.0 },
        state.days_since_last_session,
    ];
    let mut features = [0.0_f32; INTENT_FEATURE_COUNT];
    for (slot, value) in features.iter_mut().zip(aggregates) {
        *slot = value as f32;
    }
    for (position, kind) in state.recent.iter().enumerate() {
        if let Some(column) = SEQUENCE_TYPES.iter().position(|t| *t as i32 == *kind) {
            features[AGGREGATE_FEATURES + position * SEQUENCE_TYPES.len() + column] = 1.0;
        }
    }
    features
}

/// Columns of the repurchase model's input.
pub const REPURCHASE_FEATURE_COUNT: usize = 11;
pub type RepurchaseFeatures = [f32; REPURCHASE_FEATURE_COUNT];

/// The repurchase model's feature names, in column order; a card must list exactly these.
pub const REPURCHASE_FEATURES: [&str; REPURCHASE_FEATURE_COUNT] = [
    "frequency",
    "recency_days",
    "age_days",
    "days_since_last_order",
    "orders",
    "total_value",
    "mean_order_value",
    "orders_30d",
    "orders_90d",
    "value_90d",
    "mean_days_between_orders",
];

/// One order of a customer: when, and its total value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub ts_ms: i64,
    pub value: f64,
}

/// The repurchase model's input for a customer at `now_ms`, from the orders placed before
/// it (in any order), in [`REPURCHASE_FEATURES`] order. Days are UTC days,
/// `floor(ts_ms / 86 400 000)`; frequency, recency and age are as BG/NBD defines them.
pub fn repurchase_features(orders: &[OrderRecord], now_ms: i64) -> RepurchaseFeatures {
    let mut past: Vec<OrderRecord> = orders
        .iter()
        .copied()
        .filter(|o| o.ts_ms < now_ms)
        .collect();
    if past.is_empty() {
        return [0.0; REPURCHASE_FEATURE_COUNT];
    }
    past.sort_by(|a, b| a.ts_ms.cmp(&b.ts_ms).then(a.value.total_cmp(&b.value)));
    let days: BTreeSet<i64> = past
        .iter()
        .map(|o| o.ts_ms.div_euclid(MS_PER_DAY))
        .collect();
    let (first_day, last_day) = (days.first().copied(), days.last().copied());
    let (first_day, last_day) = (first_day.unwrap_or(0), last_day.unwrap_or(0));
    let now_day = now_ms.div_euclid(MS_PER_DAY);
    let frequency = (days.len() - 1) as f64;
    let recency = (last_day - first_day) as f64;
    let mut total = 0.0;
    let (mut orders_30d, mut orders_90d, mut value_90d) = (0_u32, 0_u32, 0.0);
    for order in &past {
        total += order.value;
        if now_ms - order.ts_ms <= 30 * MS_PER_DAY {
            orders_30d += 1;
        }
        if now_ms - order.ts_ms <= 90 * MS_PER_DAY {
            orders_90d += 1;
            value_90d += order.value;
        }
    }
    let count = past.len() as f64;
    let values: [f64; REPURCHASE_FEATURE_COUNT] = [
        frequency,
        recency,
        (now_day - first_day) as f64,
        (now_day - last_day) as f64,
        count,
        total,
        total / count,
        f64::from(orders_30d),
        f64::from(orders_90d),
        value_90d,
        if frequency > 0.0 {
            recency / frequency
        } else {
            0.0
        },
    ];
    values.map(|value| value as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_history_is_all_zeros() {
        assert_eq!(
            repurchase_features(&[], 1_000),
            [0.0; REPURCHASE_FEATURE_COUNT]
        );
    }

    #[test]
    fn orders_at_or_after_now_are_not_history() {
        let orders = [
            OrderRecord {
                ts_ms: 0,
                value: 10.0,
            },
            OrderRecord {
                ts_ms: 2 * MS_PER_DAY,
                value: 30.0,
            },
        ];
        let features = repurchase_features(&orders, 2 * MS_PER_DAY);
        assert_eq!(features[4], 1.0, "one order before now");
        assert_eq!(features[2], 2.0, "age in days");
        assert_eq!(features[5], 10.0, "total value");
    }

    #[test]
    fn the_sequence_window_marks_the_latest_event_first() {
        let mut history = UserHistory::default();
        let mut state = history.begin_session(0);
        for (ts_ms, kind) in [(0, EventType::Search), (1_000, EventType::Impression)] {
            let event = pb::Event {
                r#type: kind as i32,
                ts_ms,
                ..pb::Event::default()
            };
            state.apply(&event, &EventContext::default());
        }
        let features = intent_features(&state);
        let column = |name: &str| INTENT_FEATURES.iter().position(|f| *f == name).unwrap();
        assert_eq!(features[column("last1_impression")], 1.0);
        assert_eq!(features[column("last2_search")], 1.0);
        assert_eq!(features[column("last1_search")], 0.0);
        assert_eq!(features[column("seconds_since_last_event")], 1.0);
        assert_eq!(history.sessions, 1);
    }
}
