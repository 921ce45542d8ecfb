"""Replays a raw event stream into the state the recommender reads from ingest's feature
store (crates/ingest/src/features.rs), as it stands just before each event:

- catalog record per item (title, category, brand, price; the latest `item` event);
- per user: `recent` (clicked or carted items, newest first, 100 kept), `cats` (the
  categories of those items that have a catalog record, newest first, 40 kept), `cart`
  (item → quantity; ordered items removed), and the items the user ordered;
- per item: `covis` (items clicked/carted in the same session: each engagement adds 1 both
  ways with each of the session's last 10 distinct engaged items) and `bought` (1 for every
  ordered pair of lines with different items among an order's first 20 lines), each kept to
  its 200 best (lowest score dropped first, ties: smallest id first, as Redis trims);
- category popularity per day bucket (UTC day of the event): click 1, add_to_cart 3, order
  5 × quantity, for the item's category (and, in ingest, every ancestor: the features read
  the item's own full category path).

Ingest trims a sorted set once per batch; this replay trims after every event, which is the
same as a batch of one event.
"""

from __future__ import annotations

from collections import defaultdict

from .stream import normalize_category, parse_ts

RECENT_ITEMS_KEPT = 100
RECENT_CATEGORIES_KEPT = 40
SESSION_ITEMS_IN_STATE = 10
NEIGHBOURS_MAX = 200
BOUGHT_TOGETHER_LINES = 20
DAY_MS = 86_400_000
WEIGHTS = {"click": 1.0, "add_to_cart": 3.0, "order": 5.0}


def _zincr(zset: dict, member: str, by: float) -> None:
    zset[member] = zset.get(member, 0.0) + by
    if len(zset) > NEIGHBOURS_MAX:
        del zset[min(zset, key=lambda m: (zset[m], m))]


class UserFeatures:
    __slots__ = ("recent", "cats", "cart", "purchased", "session", "session_items", "last_clicked")

    def __init__(self) -> None:
        self.recent: list[str] = []
        self.cats: list[str] = []
        self.cart: dict[str, int] = {}
        self.purchased: list[str] = []  # newest order first, lines in order, distinct
        self.session = ""
        self.session_items: list[str] = []
        self.last_clicked = ""  # the item page the user is on (latest click of the session)

    def cart_items(self) -> list[str]:
        """Items with a positive quantity, by item id (the order the feature reader returns)."""
        return sorted(i for i, q in self.cart.items() if q > 0)


class FeatureStore:
    """Feed raw events in stream order with `apply`."""

    def __init__(self) -> None:
        self.catalog: dict[str, dict] = {}
        self.users: dict[str, UserFeatures] = defaultdict(UserFeatures)
        self.covis: dict[str, dict[str, float]] = defaultdict(dict)
        self.bought: dict[str, dict[str, float]] = defaultdict(dict)
        self.popularity: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)

    def popularity_at(self, item: str, ts_ms: int) -> float:
        """The item's score in its category, today's and yesterday's buckets summed."""
        record = self.catalog.get(item)
        if record is None:
            return 0.0
        day = ts_ms // DAY_MS
        return sum(self.popularity.get((record["category"], d), {}).get(item, 0.0) for d in (day, day - 1))

    def _popular(self, item: str, weight: float, ts_ms: int) -> None:
        record = self.catalog.get(item)
        if record is not None:
            bucket = self.popularity[(record["category"], ts_ms // DAY_MS)]
            bucket[item] = bucket.get(item, 0.0) + weight

    def _engaged(self, user: UserFeatures, item: str, weight: float, ts_ms: int) -> None:
        user.recent.insert(0, item)
        del user.recent[RECENT_ITEMS_KEPT:]
        for prior in user.session_items:
            if prior != item:
                _zincr(self.covis[prior], item, 1.0)
                _zincr(self.covis[item], prior, 1.0)
        user.session_items = [item] + [p for p in user.session_items if p != item]
        del user.session_items[SESSION_ITEMS_IN_STATE:]
        record = self.catalog.get(item)
        if record is not None:
            self._popular(item, weight, ts_ms)
            user.cats.insert(0, record["category"])
            del user.cats[RECENT_CATEGORIES_KEPT:]

    def apply(self, raw: dict) -> None:
        kind = raw["type"]
        if kind == "item":
            self.catalog[raw["item_id"]] = {
                "title": raw.get("title", ""),
                "category": normalize_category(raw["category"]),
                "brand": raw.get("brand", "") or "",
                "price": float(raw["price"]),
            }
            return
        if "user_id" not in raw:
            return
        ts = parse_ts(raw["ts"])
        user = self.users[raw["user_id"]]
        session = raw.get("session_id", "")
        if session and session != user.session:
            user.session = session
            user.session_items = []
            user.last_clicked = ""
        if kind == "click":
            user.last_clicked = raw["item_id"]
            self._engaged(user, raw["item_id"], WEIGHTS["click"], ts)
        elif kind == "add_to_cart":
            item = raw["item_id"]
            user.cart[item] = user.cart.get(item, 0) + int(raw.get("quantity", 1))
            self._engaged(user, item, WEIGHTS["add_to_cart"], ts)
        elif kind == "remove_from_cart":
            item = raw["item_id"]
            user.cart[item] = user.cart.get(item, 0) - int(raw.get("quantity", 1))
        elif kind == "order":
            lines = raw.get("lines", [])
            for line in lines:
                self._popular(line["item_id"], WEIGHTS["order"] * int(line.get("quantity", 1)), ts)
                user.cart.pop(line["item_id"], None)
            ordered = [line["item_id"] for line in lines]
            user.purchased = list(dict.fromkeys(ordered + [i for i in user.purchased if i not in ordered]))
            head = ordered[:BOUGHT_TOGETHER_LINES]
            for a in head:
                for b in head:
                    if a != b:
                        _zincr(self.bought[a], b, 1.0)
