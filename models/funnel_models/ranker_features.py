"""Recommender ranker features: the offline twin of the Rust serving code (crates/recommender).

`features(request)` maps one recommendation request (scenario, context item, the user's
recent items, categories, cart and purchases, the catalog records, co-visitation and
bought-together neighbours, item embeddings, category popularity and the candidates with
their sources) to one float32 row of 15 features per candidate, in candidate order. Training
(ranker.py, ml100k.py) and the golden vectors (parity.json) use this function, so what the
model learned from is exactly what the parity test checks serving against.
"""

from __future__ import annotations

import math

import numpy as np

SCENARIOS = ("home", "item_page", "cart", "post_purchase")
SOURCES = ("covis", "bought", "embedding", "popular", "recent", "content")
RANKER_FEATURES = [
    "scenario_home",
    "scenario_item_page",
    "scenario_cart",
    "scenario_post_purchase",
    "covis",
    "bought",
    "embedding",
    "content",
    "popularity",
    "category_affinity",
    "seen",
    "log_price",
    "price_ratio",
    "same_context_category",
    "n_sources",
]
RECENT_DISTINCT = 20  # recent items kept after de-duplication
MAX_ANCHORS = 5
CATEGORY_WINDOW = 20  # user categories read for the affinity
PRICE_RATIO_CAP = 10.0
EMPTY_RECORD = {"category": "", "brand": "", "title": "", "price": 0.0}


def distinct(items, limit: int | None = None) -> list[str]:
    """First occurrences in order, at most `limit`."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
            if limit is not None and len(out) == limit:
                break
    return out


def anchor_list(context: str | None, rest) -> list[str]:
    """The context item (when given) then `rest` without it, de-duplicated, at most 5."""
    head = [context] if context else []
    return distinct(head + [i for i in rest if i != context], MAX_ANCHORS)


def top_level(category: str) -> str:
    return category.split("/", 1)[0]


def tokens(title: str) -> frozenset[str]:
    """Lower-case title split on every character that is not alphanumeric, empty parts removed."""
    words, word = [], []
    for ch in title.lower():
        if ch.isalnum():
            word.append(ch)
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return frozenset(words)


class _Record:
    """What the features read of a catalog record (missing record: empty strings, price 0)."""

    __slots__ = ("leaf", "top", "brand", "tokens", "price")

    def __init__(self, record: dict | None) -> None:
        record = record or EMPTY_RECORD
        self.leaf = record.get("category", "") or ""
        self.top = top_level(self.leaf) if self.leaf else ""
        self.brand = record.get("brand", "") or ""
        self.tokens = tokens(record.get("title", "") or "")
        self.price = float(record.get("price", 0.0) or 0.0)


def content_similarity(a: _Record, c: _Record) -> float:
    score = 0.0
    if a.leaf and a.leaf == c.leaf:
        score += 0.4
    if a.top and a.top == c.top:
        score += 0.2
    if a.brand and a.brand == c.brand:
        score += 0.2
    union = a.tokens | c.tokens
    if union:
        score += 0.2 * len(a.tokens & c.tokens) / len(union)
    return score


def _neighbour_maps(table: dict, anchors: list[str], weights: list[float]) -> list[tuple[dict, float]]:
    """(neighbours, w_i / max(neighbours)) of the anchors with a non-empty map."""
    out = []
    for anchor, weight in zip(anchors, weights):
        neighbours = table.get(anchor)
        if neighbours:
            out.append((neighbours, weight / max(neighbours.values())))
    return out


def _neighbour_score(maps: list[tuple[dict, float]], total_weight: float, item: str) -> float:
    """Σ w_i · table[a_i][item] / max(table[a_i]) over anchors with a non-empty map, / Σ w_i
    over all anchors (0 without anchors)."""
    if total_weight == 0:
        return 0.0
    return sum(neighbours.get(item, 0.0) * scale for neighbours, scale in maps) / total_weight


def features(request: dict) -> np.ndarray:
    """float32 [len(candidates), 15] in RANKER_FEATURES order, computed in float64."""
    scenario = request["scenario"]
    context = request.get("context_item") or None
    user = request.get("user") or {}
    catalog = request.get("catalog") or {}
    covis = request.get("covis") or {}
    bought = request.get("bought") or {}
    embeddings = request.get("embeddings") or {}
    popularity = request.get("popularity") or {}
    categories = (user.get("categories") or [])[:CATEGORY_WINDOW]

    recent = distinct(user.get("recent") or [], RECENT_DISTINCT)
    rank = {item: r for r, item in enumerate(recent)}
    anchors = anchor_list(context, recent)
    bought_anchors = anchor_list(context, list(user.get("cart") or []) + list(user.get("purchased") or []) + recent)
    weights = [1.0 / (1 + i) for i in range(len(anchors))]
    bought_weights = [1.0 / (1 + i) for i in range(len(bought_anchors))]
    covis_maps = _neighbour_maps(covis, anchors, weights)
    bought_maps = _neighbour_maps(bought, bought_anchors, bought_weights)
    category_tops: dict[str, int] = {}
    for category in categories:
        category_tops[top_level(category)] = category_tops.get(top_level(category), 0) + 1

    records: dict[str, _Record] = {}

    def record(item: str) -> _Record:
        r = records.get(item)
        if r is None:
            r = records[item] = _Record(catalog.get(item))
        return r

    def vector(item: str):
        v = embeddings.get(item)
        # float32 as in the embeddings file, then float64 for the arithmetic.
        return None if v is None else np.asarray(v, dtype=np.float32).astype(np.float64)

    anchor_vectors = [v for v in (vector(a) for a in anchors) if v is not None]
    prices = [record(i).price for i in recent if i in catalog and record(i).price > 0]
    mean_price = sum(prices) / len(prices) if prices else None
    context_leaf = record(context).leaf if context else ""
    one_hot = [1.0 if scenario == s else 0.0 for s in SCENARIOS]

    rows = []
    for candidate in request["candidates"]:
        c = candidate["item"]
        rc = record(c)
        v = vector(c)
        embedding = 0.0
        if v is not None and anchor_vectors:
            embedding = max(float(np.dot(a, v)) for a in anchor_vectors)
        content = max((content_similarity(record(a), rc) for a in anchors if a != c), default=0.0)
        affinity = 0.0
        if categories and rc.top:
            affinity = category_tops.get(rc.top, 0) / len(categories)
        if mean_price is None:
            ratio = 1.0
        else:
            ratio = min(rc.price / mean_price, PRICE_RATIO_CAP)
        rows.append(
            one_hot
            + [
                _neighbour_score(covis_maps, sum(weights), c),
                _neighbour_score(bought_maps, sum(bought_weights), c),
                embedding,
                content,
                math.log1p(float(popularity.get(c, 0.0))),
                affinity,
                1.0 / (1 + rank[c]) if c in rank else 0.0,
                math.log1p(rc.price),
                ratio,
                1.0 if context_leaf and rc.leaf == context_leaf else 0.0,
                float(len(set(candidate.get("sources") or []))),
            ]
        )
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(RANKER_FEATURES)).astype(np.float32)
