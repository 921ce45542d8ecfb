"""Session-intent and repurchase features, written to match `crates/behavior-predictor/src/features.rs`
line for line: same order, same formulas, float64 arithmetic cast to float32 at the end.

Any change here must be made in the Rust twin too; `models/intent/1/parity.json` and the Rust
test `crates/behavior-predictor/tests/parity.rs` catch a mismatch.

Events are canonical events as dicts, in the shape the validator produces from a raw event:
`type` (search, impression, click, add_to_cart, remove_from_cart, order, review, return,
ticket, item), `ts_ms`, `user_id`, `session_id`, and the typed fields (`item_id`,
`quantity` defaulting to 1, `lines`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MS_PER_SECOND = 1000.0
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000

SEQUENCE_LEN = 5
SEQUENCE_TYPES = ["search", "impression", "click", "add_to_cart", "remove_from_cart"]
POPULARITY_CAP = 10_000
DAYS_SINCE_LAST_SESSION_CAP = 365.0

INTENT_FEATURES = [
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
] + [f"last{k}_{t}" for k in range(1, SEQUENCE_LEN + 1) for t in SEQUENCE_TYPES]

INTENT_NORMALISATION = {
    "events": "count of events in the session so far, this one included",
    "searches": "count", "impressions": "count", "clicks": "count",
    "cart_adds": "count of add_to_cart events", "cart_removes": "count of remove_from_cart events",
    "session_seconds": "(ts - first event ts) / 1000",
    "seconds_since_last_event": "(ts - previous event ts) / 1000; 0 on the first event",
    "mean_gap_seconds": "session_seconds / max(events - 1, 1)",
    "cart_quantity": "sum of quantities in the cart (adds minus removes, floored at 0 per item)",
    "cart_lines": "distinct items with quantity > 0",
    "cart_value": "sum of quantity * catalog price at add time",
    "log_cart_value": "ln(1 + cart_value)",
    "viewed_items": "distinct items clicked or added to the cart",
    "viewed_price_mean": "mean catalog price over click/add_to_cart events whose item is in the catalog; 0 if none",
    "viewed_price_min": "as above, minimum; 0 if none",
    "viewed_price_max": "as above, maximum; 0 if none",
    "viewed_price_std": "population std, sqrt(m2 / n) with Welford's running mean and m2; 0 if none",
    "item_price": "catalog price of this event's item (click, add/remove) or 0",
    "item_log_popularity": "ln(1 + min(p, 10000)), p = clicks the item received in the whole stream before this event (context input)",
    "viewed_log_popularity_mean": "mean of item_log_popularity over click/add_to_cart events of the session",
    "viewed_categories": "distinct catalog categories of clicked/added items",
    "viewed_top_categories": "distinct first category segments",
    "hour_sin": "sin(2 pi h / 24), h = (ts_ms mod 86400000) / 3600000, UTC",
    "hour_cos": "cos(2 pi h / 24)",
    "log_prior_sessions": "ln(1 + sessions of the user seen earlier in the stream)",
    "prior_orders": "orders of the user seen before this session started",
    "is_returning": "1 if the user had an earlier session, else 0",
    "days_since_last_session": "(session start - previous session start) / 86400000, capped at 365; 365 when none",
}
for _k in range(1, SEQUENCE_LEN + 1):
    for _t in SEQUENCE_TYPES:
        INTENT_NORMALISATION[f"last{_k}_{_t}"] = (
            f"1 if the {_k}-th most recent event of the session (1 = this one) is a {_t}, else 0"
        )


@dataclass
class UserHistory:
    """What the stream has shown of a user before the current session."""

    sessions: int = 0
    orders: int = 0
    last_session_start_ms: int | None = None

    def begin_session(self, ts_ms: int) -> "SessionState":
        state = SessionState(
            start_ms=ts_ms,
            last_ms=ts_ms,
            prior_sessions=self.sessions,
            prior_orders=self.orders,
            days_since_last_session=(
                min((ts_ms - self.last_session_start_ms) / MS_PER_DAY, DAYS_SINCE_LAST_SESSION_CAP)
                if self.last_session_start_ms is not None
                else DAYS_SINCE_LAST_SESSION_CAP
            ),
        )
        self.sessions += 1
        self.last_session_start_ms = ts_ms
        return state

    def record_order(self) -> None:
        self.orders += 1


@dataclass
class SessionState:
    start_ms: int
    last_ms: int
    prior_sessions: int
    prior_orders: int
    days_since_last_session: float
    events: int = 0
    counts: dict = field(default_factory=lambda: {t: 0 for t in SEQUENCE_TYPES})
    gap_ms: int = 0
    cart: dict = field(default_factory=dict)  # item_id -> [quantity, unit price]
    viewed: set = field(default_factory=set)
    price_n: int = 0
    price_mean: float = 0.0
    price_m2: float = 0.0  # Welford: sum of squared deviations from the running mean
    price_min: float = 0.0
    price_max: float = 0.0
    item_price: float = 0.0
    item_log_popularity: float = 0.0
    popularity_n: int = 0
    popularity_sum: float = 0.0
    categories: set = field(default_factory=set)
    top_categories: set = field(default_factory=set)
    recent: list = field(default_factory=list)  # most recent first

    def apply(self, event: dict, item: dict | None, item_popularity: int) -> None:
        """`item` is the catalog entry (price, category) of the event's item, if known;
        `item_popularity` the clicks that item received in the stream before this event."""
        kind = event["type"]
        ts = event["ts_ms"]
        self.gap_ms = ts - self.last_ms if self.events > 0 else 0
        self.last_ms = ts
        self.events += 1
        if kind in self.counts:
            self.counts[kind] += 1
        self.recent.insert(0, kind)
        del self.recent[SEQUENCE_LEN:]

        touches_item = kind in ("click", "add_to_cart", "remove_from_cart")
        self.item_price = item["price"] if (touches_item and item is not None) else 0.0
        self.item_log_popularity = (
            math.log1p(min(item_popularity, POPULARITY_CAP)) if touches_item else 0.0
        )
        if kind in ("click", "add_to_cart"):
            self.viewed.add(event["item_id"])
            self.popularity_n += 1
            self.popularity_sum += self.item_log_popularity
            if item is not None:
                price = item["price"]
                if self.price_n == 0:
                    self.price_min = price
                    self.price_max = price
                else:
                    self.price_min = min(self.price_min, price)
                    self.price_max = max(self.price_max, price)
                self.price_n += 1
                delta = price - self.price_mean
                self.price_mean += delta / self.price_n
                self.price_m2 += delta * (price - self.price_mean)
                self.categories.add(item["category"])
                self.top_categories.add(item["category"].split("/")[0])
        if kind == "add_to_cart":
            line = self.cart.setdefault(event["item_id"], [0, 0.0])
            line[0] += event["quantity"]
            line[1] = item["price"] if item is not None else 0.0
        elif kind == "remove_from_cart":
            line = self.cart.get(event["item_id"])
            if line is not None:
                line[0] -= event["quantity"]
                if line[0] <= 0:
                    del self.cart[event["item_id"]]

    def features(self) -> list[float]:
        session_seconds = (self.last_ms - self.start_ms) / MS_PER_SECOND
        cart_quantity = 0
        cart_value = 0.0
        for item_id in sorted(self.cart):
            quantity, price = self.cart[item_id]
            cart_quantity += quantity
            cart_value += quantity * price
        if self.price_n > 0:
            mean = self.price_mean
            std = math.sqrt(max(self.price_m2 / self.price_n, 0.0))
        else:
            mean = std = 0.0
        hour = (self.last_ms % MS_PER_DAY) / MS_PER_HOUR
        angle = 2.0 * math.pi * hour / 24.0
        values = [
            float(self.events),
            float(self.counts["search"]),
            float(self.counts["impression"]),
            float(self.counts["click"]),
            float(self.counts["add_to_cart"]),
            float(self.counts["remove_from_cart"]),
            session_seconds,
            self.gap_ms / MS_PER_SECOND,
            session_seconds / max(self.events - 1, 1),
            float(cart_quantity),
            float(len(self.cart)),
            cart_value,
            math.log1p(cart_value),
            float(len(self.viewed)),
            mean,
            self.price_min if self.price_n > 0 else 0.0,
            self.price_max if self.price_n > 0 else 0.0,
            std,
            self.item_price,
            self.item_log_popularity,
            self.popularity_sum / self.popularity_n if self.popularity_n > 0 else 0.0,
            float(len(self.categories)),
            float(len(self.top_categories)),
            math.sin(angle),
            math.cos(angle),
            math.log1p(self.prior_sessions),
            float(self.prior_orders),
            1.0 if self.prior_sessions > 0 else 0.0,
            self.days_since_last_session,
        ]
        for k in range(SEQUENCE_LEN):
            kind = self.recent[k] if k < len(self.recent) else None
            values.extend(1.0 if kind == t else 0.0 for t in SEQUENCE_TYPES)
        assert len(values) == len(INTENT_FEATURES)
        return values


# Repurchase: features of a customer's order history at a point in time.

REPURCHASE_FEATURES = [
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
]

REPURCHASE_NORMALISATION = {
    "frequency": "distinct order days - 1 (repeat purchase days, as BG/NBD counts them); 0 with no orders",
    "recency_days": "last order day - first order day; day = floor(ts_ms / 86400000)",
    "age_days": "day(now) - first order day; 0 with no orders",
    "days_since_last_order": "day(now) - last order day; 0 with no orders",
    "orders": "count of orders with ts_ms < now_ms",
    "total_value": "sum of order values",
    "mean_order_value": "total_value / orders; 0 with no orders",
    "orders_30d": "orders with now_ms - ts_ms <= 30 days",
    "orders_90d": "orders with now_ms - ts_ms <= 90 days",
    "value_90d": "value of those orders",
    "mean_days_between_orders": "recency_days / frequency; 0 when frequency is 0",
}


def repurchase_features(orders: list[tuple[int, float]], now_ms: int) -> list[float]:
    """`orders` are (ts_ms, value) in any order; only those before `now_ms` count."""
    past = [(ts, value) for ts, value in orders if ts < now_ms]
    if not past:
        return [0.0] * len(REPURCHASE_FEATURES)
    days = sorted({ts // MS_PER_DAY for ts, _ in past})
    now_day = now_ms // MS_PER_DAY
    frequency = len(days) - 1
    recency = days[-1] - days[0]
    total = 0.0
    orders_30d = orders_90d = 0
    value_90d = 0.0
    for ts, value in sorted(past):
        total += value
        if now_ms - ts <= 30 * MS_PER_DAY:
            orders_30d += 1
        if now_ms - ts <= 90 * MS_PER_DAY:
            orders_90d += 1
            value_90d += value
    values = [
        float(frequency),
        float(recency),
        float(now_day - days[0]),
        float(now_day - days[-1]),
        float(len(past)),
        total,
        total / len(past),
        float(orders_30d),
        float(orders_90d),
        value_90d,
        recency / frequency if frequency > 0 else 0.0,
    ]
    assert len(values) == len(REPURCHASE_FEATURES)
    return values
