"""Session intent: P(order in this session) and P(cart abandoned), at every event.

Trained on `funnel simulate` traffic (SIMULATED data), with the simulator's hidden truths as
labels and its latent purchase probability as the oracle.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import export
from .evaluate import metrics
from .features import INTENT_FEATURES, INTENT_NORMALISATION, SEQUENCE_LEN
from .stream import StreamReplay, canonical, read_ndjson

NAME, VERSION = "intent", "1"
SEED = 20261128
SIM = {"seed": 7, "users": 20000, "items": 2000, "sessions": 60000, "start": "2026-01-05T00:00:00Z"}
SPLIT = (0.6, 0.2, 0.2)  # train, validation, test: by session start time
FUNNEL_TYPES = {"search", "impression", "click", "add_to_cart", "remove_from_cart"}
TARGETS = ("purchase", "abandonment")


def simulate(root: Path, work: Path) -> tuple[Path, Path]:
    subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "funnel"], cwd=root, check=True)
    events, truths = work / "events.ndjson", work / "truths.ndjson"
    args = [str(root / "target/release/funnel"), "simulate", "--output", str(events), "--truths", str(truths)]
    for key, value in SIM.items():
        args += [f"--{key}", str(value)]
    subprocess.run(args, check=True)
    return events, truths


def build_rows(raw_events: list[dict], truths: dict[str, dict]):
    """One row per funnel event of a session with a truth, up to (not including) its order:
    the features after the event, the session's labels and its split position."""
    replay = StreamReplay()
    ordered_sessions: set[str] = set()
    rows, sessions = [], []
    for raw in raw_events:
        event = canonical(raw)
        state = replay.step(event)
        sid = event.get("session_id", "")
        if event["type"] == "order":
            ordered_sessions.add(sid)
        if state is None or sid not in truths or sid in ordered_sessions or event["type"] not in FUNNEL_TYPES:
            continue
        rows.append(state.features())
        sessions.append(sid)
    return np.asarray(rows, dtype=np.float32), sessions


def candidates(seed: int) -> dict:
    return {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        "gradient_boosting": GradientBoostingClassifier(
            n_estimators=150, max_depth=3, learning_rate=0.1, subsample=0.7, random_state=seed
        ),
        "mlp": make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=(64, 32), alpha=1e-3, batch_size=512, learning_rate_init=1e-3,
                max_iter=40, early_stopping=True, n_iter_no_change=5, random_state=seed,
            ),
        ),
    }


def train(root: Path, work: Path, log) -> dict:
    events_path, truths_path = simulate(root, work)
    raw_events = read_ndjson(events_path)
    truths = {t["session_id"]: t for t in read_ndjson(truths_path)}
    X, sessions = build_rows(raw_events, truths)
    log(f"intent: {len(raw_events)} simulated events, {len(truths)} sessions, {len(X)} rows")

    order = sorted(truths, key=lambda s: (truths[s]["start_ms"], s))
    cut1, cut2 = int(len(order) * SPLIT[0]), int(len(order) * (SPLIT[0] + SPLIT[1]))
    part = {s: (0 if i < cut1 else 1 if i < cut2 else 2) for i, s in enumerate(order)}
    split = np.array([part[s] for s in sessions])
    labels = {
        "purchase": np.array([truths[s]["ordered"] for s in sessions], dtype=np.int64),
        "abandonment": np.array([truths[s]["cart_abandoned"] for s in sessions], dtype=np.int64),
    }
    oracle = np.array([truths[s]["purchase_probability"] for s in sessions])
    # Sessions interleave in the stream: a session's first row is the first time its id appears.
    seen: set[str] = set()
    first_event = np.array([not (s in seen or seen.add(s)) for s in sessions])
    train_, valid, test = split == 0, split == 1, split == 2

    chosen, results = {}, {}
    for target in TARGETS:
        y = labels[target]
        results[target] = {"validation": {}, "test": {}, "test_first_event": {}}
        fitted = {}
        for name, model in candidates(SEED).items():
            started = time.time()
            model.fit(X[train_], y[train_])
            fitted[name] = model
            results[target]["validation"][name] = metrics(y[valid], model.predict_proba(X[valid])[:, 1])
            log(f"intent/{target}: {name} trained in {time.time() - started:.0f} s; validation {results[target]['validation'][name]}")
        best = min(fitted, key=lambda n: results[target]["validation"][n]["log_loss"])
        chosen[target] = (best, fitted[best])
        for name, model in fitted.items():
            p = model.predict_proba(X[test])[:, 1]
            results[target]["test"][name] = metrics(y[test], p)
            results[target]["test_first_event"][name] = metrics(y[test & first_event], model.predict_proba(X[test & first_event])[:, 1])
        if target == "purchase":
            results[target]["test"]["oracle"] = metrics(y[test], oracle[test])
            results[target]["test_first_event"]["oracle"] = metrics(y[test & first_event], oracle[test & first_event])
        results[target]["selected"] = best
        log(f"intent/{target}: selected {best}; test {results[target]['test']}")

    graph = export.positive_column_graph(
        {target: export.to_onnx(chosen[target][1], len(INTENT_FEATURES)) for target in TARGETS},
        len(INTENT_FEATURES),
    )
    # The exported graph must agree with scikit-learn on held-out rows (float32 inputs).
    probe = X[test][:2000]
    onnx_out = export.run(graph, probe)
    for k, target in enumerate(TARGETS):
        gap = float(np.abs(onnx_out[:, k] - chosen[target][1].predict_proba(probe)[:, 1]).max())
        results[target]["onnx_vs_sklearn_max_abs_diff"] = gap
        assert gap < 1e-4, f"ONNX export of {target} differs from scikit-learn by {gap}"

    parity_streams = parity_scenarios(raw_events, truths)
    golden = np.asarray([row["features"] for row in parity_streams[0]["expected"]][:8], dtype=np.float32)
    metadata = {
        "targets": {"column 0": "P(order in this session)", "column 1": "P(cart abandoned: cart non-empty and no order when the session ends)"},
        "training_data": {
            "kind": "SIMULATED (not real-world traffic)",
            "source": "funnel simulate",
            "simulate_args": SIM,
            "events": len(raw_events),
            "sessions": len(truths),
            "rows": "one per search/impression/click/add_to_cart/remove_from_cart event of a session, up to its order",
            "labels": "the simulator's hidden truths: ordered, cart_abandoned",
        },
        "split": {
            "kind": "by session start time",
            "shares": {"train": SPLIT[0], "validation": SPLIT[1], "test": SPLIT[2]},
            "rows": {"train": int(train_.sum()), "validation": int(valid.sum()), "test": int(test.sum())},
        },
        "selection": "per target, the candidate with the lowest validation log-loss",
        "models": {t: chosen[t][0] for t in TARGETS},
        "seed": SEED,
        "normalisation": {
            "features": INTENT_NORMALISATION,
            "in_graph": "logistic_regression and mlp standardise inside the graph (StandardScaler); gradient_boosting takes raw values",
        },
        "sequence_window": f"last {SEQUENCE_LEN} event types one-hot (last1_* = this event)",
        "sequence_model": "no RNN/attention model was trained: the PyPI torch wheel pulls ~5.8 GB of CUDA packages here; the last-5 one-hot window feeds the GBDT and the MLP instead",
        "oracle": "the simulator's purchase_probability: the latent chance of an order given what is known at the session's start; later events (a filling cart) reveal more, so a model can beat it on late prefixes",
        "metrics": results,
    }
    export.write_model(
        root / "models" / NAME / VERSION,
        graph,
        name=NAME,
        version=VERSION,
        description="session intent: purchase and cart-abandonment probabilities after each event (trained on simulated traffic)",
        features=INTENT_FEATURES,
        score_column=0,
        golden_features=golden,
        metadata=metadata,
    )
    write_parity(root / "models" / NAME / VERSION / "parity.json", graph, parity_streams)
    return results


def scripted_stream() -> list[dict]:
    """A hand-written stream covering the feature paths: catalog updates, popularity from
    other users' clicks, a returning user with an order, cart adds and removes, an item
    missing from the catalog, sessions interleaved."""
    t0 = 1_795_165_200_000  # 2026-11-20T09:00:00Z

    def ev(n, kind, ts, user="", session="", **fields):
        event = {"event_id": f"p-{n}", "type": kind, "ts": t0 + ts, **fields}
        if user:
            event["user_id"] = user
        if session:
            event["session_id"] = session
        return event

    item = lambda n, sku, cat, price: ev(n, "item", 0, item_id=sku, title=sku, category=cat, brand="b", price=price)  # noqa: E731
    return [
        item(1, "sku-1", "Electronics/Audio/Headphones", 59.9),
        item(2, "sku-2", "electronics/audio/speakers", 35.0),
        item(3, "sku-3", "home/kitchen/kettles", 24.5),
        ev(4, "click", 1_000, "u-other", "s-o1", item_id="sku-1", position=1),
        ev(5, "click", 2_000, "u-other", "s-o1", item_id="sku-1", position=1),
        ev(6, "search", 60_000, "u-42", "s-a", query="headphones", results=["sku-1", "sku-2"]),
        ev(7, "click", 65_000, "u-42", "s-a", item_id="sku-1", position=1),
        ev(8, "add_to_cart", 90_000, "u-42", "s-a", item_id="sku-1"),
        ev(9, "order", 120_000, "u-42", "s-a", order_id="o-1", currency="EUR", lines=[{"item_id": "sku-1", "quantity": 1, "price": 59.9}]),
        ev(10, "item", 3_600_000, item_id="sku-2", title="sku-2", category="electronics/audio/speakers", brand="b", price=29.0),
        ev(11, "search", 86_400_000 * 3, "u-42", "s-b", query="speaker"),
        ev(12, "impression", 86_400_000 * 3 + 1_000, "u-42", "s-b", item_ids=["sku-2", "sku-3"], list="search"),
        ev(13, "click", 86_400_000 * 3 + 4_000, "u-42", "s-b", item_id="sku-2", position=1),
        ev(14, "click", 86_400_000 * 3 + 5_000, "u-new", "s-c", item_id="sku-2", position=2),
        ev(15, "add_to_cart", 86_400_000 * 3 + 30_000, "u-42", "s-b", item_id="sku-2", quantity=3),
        ev(16, "click", 86_400_000 * 3 + 50_000, "u-42", "s-b", item_id="sku-3", position=2),
        ev(17, "add_to_cart", 86_400_000 * 3 + 70_000, "u-42", "s-b", item_id="sku-3"),
        ev(18, "add_to_cart", 86_400_000 * 3 + 75_000, "u-new", "s-c", item_id="sku-404"),
        ev(19, "remove_from_cart", 86_400_000 * 3 + 90_000, "u-42", "s-b", item_id="sku-2", quantity=2),
        ev(20, "click", 86_400_000 * 3 + 95_000, "u-new", "s-c", item_id="sku-1", position=1),
        ev(21, "remove_from_cart", 86_400_000 * 3 + 100_000, "u-42", "s-b", item_id="sku-3"),
        ev(22, "search", 86_400_000 * 3 + 600_000, "u-42", "s-b", query="kettle"),
    ]


def simulated_excerpt(raw_events: list[dict], truths: dict[str, dict], per_group: int = 5) -> list[dict]:
    """Every event of a few simulated users, in stream order, with the catalog events of the
    items they name: the users (by id) whose sessions include an order, an abandoned cart and
    a return to the cart, so every feature path and the after-sales event types appear."""
    groups = [
        lambda t: t["ordered"],
        lambda t: t["cart_abandoned"],
        lambda t: t["kind"] == "return_to_cart",
    ]
    users: set[str] = set()
    for wanted in groups:
        users.update(sorted({t["user_id"] for t in truths.values() if wanted(t)})[:per_group])
    excerpt = [r for r in raw_events if r["type"] != "item" and r.get("user_id") in users]
    named = {r["item_id"] for r in excerpt if "item_id" in r}
    keep = {id(r) for r in excerpt}
    return [r for r in raw_events if id(r) in keep or (r["type"] == "item" and r["item_id"] in named)]


def parity_scenarios(raw_events: list[dict], truths: dict[str, dict]) -> list[dict]:
    streams = []
    for name, stream in (("scripted", scripted_stream()), ("simulated_users", simulated_excerpt(raw_events, truths))):
        replay = StreamReplay()
        expected = []
        for raw in stream:
            state = replay.step(canonical(raw))
            if state is not None:
                expected.append({"event_id": raw["event_id"], "features": state.features()})
        streams.append({"name": name, "events": stream, "expected": expected})
    return streams


def write_parity(path: Path, graph, streams: list[dict]) -> None:
    for stream in streams:
        features = np.asarray([row["features"] for row in stream["expected"]], dtype=np.float32)
        outputs = export.run(graph, features)
        for row, f32, out in zip(stream["expected"], features, outputs):
            # The shortest decimal that reads back as the same float32.
            row["features"] = [float(str(v)) for v in f32]
            row["outputs"] = [float(str(v)) for v in out]
    document = {
        "model": f"{NAME}@{VERSION}",
        "tolerance": 1e-5,
        "about": "raw events in stream order (item events feed the catalog); after every user event the "
        "features of its session (float32) and the model's probabilities [purchase, abandonment] "
        "as onnxruntime computes them. Replayed by crates/behavior-predictor/tests/parity.rs.",
        "features": INTENT_FEATURES,
        "streams": streams,
    }
    export.write_json(path, document)

