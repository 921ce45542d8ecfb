"""Replays an event stream through the intent features, as behavior-predictor does online:
catalog and item clicks (the context), per-user history, per-session state."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

from .features import SessionState, UserHistory

ITEM_EVENTS = ("click", "add_to_cart", "remove_from_cart")


def normalize_category(category: str) -> str:
    return "/".join(s for s in category.strip().lower().split("/") if s.strip())


def parse_ts(value) -> int:
    if isinstance(value, int):
        return value
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def canonical(raw: dict) -> dict:
    """The fields of the canonical event that the features read, with the validator's
    defaults and normalisation (quantity 1, lower-case category paths)."""
    event = {
        "type": raw["type"],
        "ts_ms": parse_ts(raw["ts"]),
        "user_id": raw.get("user_id", ""),
        "session_id": raw.get("session_id", ""),
    }
    if "item_id" in raw:
        event["item_id"] = raw["item_id"]
    if raw["type"] in ("add_to_cart", "remove_from_cart"):
        event["quantity"] = raw.get("quantity", 1)
    if raw["type"] == "item":
        event["price"] = float(raw["price"])
        event["category"] = normalize_category(raw["category"])
    return event


class StreamReplay:
    """Feeds events in stream order; `step` returns the session's state after the event."""

    def __init__(self) -> None:
        self.catalog: dict[str, dict] = {}
        self.clicks: dict[str, int] = defaultdict(int)
        self.users: dict[str, UserHistory] = defaultdict(UserHistory)
        self.sessions: dict[str, SessionState] = {}

    def step(self, event: dict) -> SessionState | None:
        kind = event["type"]
        if kind == "item":
            self.catalog[event["item_id"]] = {"price": event["price"], "category": event["category"]}
            return None
        item = popularity = None
        if kind in ITEM_EVENTS:
            item = self.catalog.get(event["item_id"])
            popularity = self.clicks[event["item_id"]]
        user = self.users[event["user_id"]]
        state = self.sessions.get(event["session_id"])
        if state is None:
            state = user.begin_session(event["ts_ms"])
            self.sessions[event["session_id"]] = state
        state.apply(event, item, popularity or 0)
        if kind == "order":
            user.record_order()
        if kind == "click":
            self.clicks[event["item_id"]] += 1
        return state


def read_ndjson(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
