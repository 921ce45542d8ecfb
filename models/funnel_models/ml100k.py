"""Offline evaluation of the recommender method on REAL data: MovieLens-100k (the copy shipped in
the `recbole` package, `dataset_example/ml-100k`), used for evaluation and tuning only; the
shipped ranker is trained on simulated traffic.

Protocol: every rating is an interaction; each user's interactions sorted by time (ties in
file order); leave-last-out: the last interaction is the test item, the second to last the
validation item. Metrics over the full item set minus the user's earlier items (no sampled
negatives): HR@10, NDCG@10, MRR.

Methods, all fitted on the interactions before the held-out one:
- popularity: items by interaction count;
- item-kNN: cosine similarity of item columns of the binary user × item matrix, each item's
  `k` most similar kept, score = sum of similarities to the user's items (`k` tuned on
  validation);
- funnel: the recommender's method. Candidates: co-visitation (pairs at most `window` apart
  in a user's sequence) and embedding neighbours (PPMI + truncated SVD of the same
  co-occurrence, embeddings.py) of the user's 5 latest items, the most popular items of the
  recent `pop_days` days, and content (same genres) neighbours; ranked by the pointwise
  ranker (gradient boosting on the 15 features of ranker_features.py) trained on the step
  before: for validation, the ranker learns from each user's third-to-last item with the
  interactions before it; for test, from the second-to-last with those before it. Items
  outside the candidates follow, by popularity.

On ml-100k some features are constant: the scenario (home), bought (no orders), seen (the
user's items are never candidates), log_price and price_ratio (no prices: 0 and 1),
same_context_category (no context item) and the brand term of content (no brands).
"""

from __future__ import annotations

import importlib.util
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from . import embeddings
from .ranker_features import SOURCES, distinct, features
from .ranking import leave_one_out

SEED = 20261129
K = 10
DAY_S = 86_400
KNN_K = (20, 50, 100, 200, None)
GRID = [  # our method's settings tried on validation
    {"window": 5, "pop_days": None},
    {"window": 20, "pop_days": None},
]
CANDIDATES_PER_ANCHOR = 50
POPULAR_CANDIDATES = 100
CONTENT_CANDIDATES = 20
NEGATIVES_PER_USER = 50


def data_dir() -> Path:
    """The data files recbole ships (found without importing the package, whose models need torch)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise SystemExit("ml-100k: the recbole package is missing (scripts/setup.sh installs it with --no-deps)")
    return Path(spec.origin).resolve().parent / "dataset_example" / "ml-100k"


def load():
    """Per user, [(item, ts)] in time order (ties in file order); the item catalog."""
    directory = data_dir()
    rows = []
    with open(directory / "ml-100k.inter", encoding="utf-8") as f:
        next(f)
        for n, line in enumerate(f):
            user, item, _rating, ts = line.rstrip("\n").split("\t")
            rows.append((user, int(float(ts)), n, item))
    sequences: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for user, ts, _n, item in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        sequences[user].append((item, ts))
    catalog = {}
    with open(directory / "ml-100k.item", encoding="latin-1") as f:
        next(f)
        for line in f:
            item, title, _year, genres = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
            catalog[item] = {"category": "/".join(g.lower() for g in genres.split()), "brand": "", "title": title, "price": 0.0}
    return dict(sorted(sequences.items())), catalog


class Stats:
    """What the methods learn from the interactions of a portion (every user's history)."""

    def __init__(self, histories: dict[str, list[tuple[str, int]]], items: list[str], window: int, catalog: dict) -> None:
        self.items = items
        self.index = {item: k for k, item in enumerate(items)}
        self.histories = histories
        sequences = [[i for i, _ in h] for h in histories.values()]
        self.count = np.zeros(len(items))
        for seq in sequences:
            for i in seq:
                self.count[self.index[i]] += 1
        self.covis: dict[str, dict[str, float]] = defaultdict(dict)
        for seq in sequences:
            for p, a in enumerate(seq):
                for b in seq[p + 1 : p + 1 + window]:
                    if a != b:
                        self.covis[a][b] = self.covis[a].get(b, 0.0) + 1.0
                        self.covis[b][a] = self.covis[b].get(a, 0.0) + 1.0
        self.emb_items, emb = embeddings.train(sequences, window=window)
        self.emb = emb.astype(np.float64)
        self.emb_row = {item: k for k, item in enumerate(self.emb_items)}
        self.vectors = embeddings.as_dict(self.emb_items, emb)
        events = sorted((ts, self.index[i]) for h in histories.values() for i, ts in h)
        self.event_ts = np.array([t for t, _ in events])
        self.event_item = np.array([k for _, k in events])
        self.by_leaf: dict[str, list[str]] = defaultdict(list)
        for item in sorted(items, key=lambda i: (-self.count[self.index[i]], self.index[i])):
            self.by_leaf[catalog[item]["category"]].append(item)

    def popularity_at(self, ts: int, days: int | None) -> np.ndarray:
        """Interaction counts per item, all of the portion or its `days` days up to `ts`."""
        if days is None:
            return self.count
        lo, hi = np.searchsorted(self.event_ts, [ts - days * DAY_S, ts], side="right")
        return np.bincount(self.event_item[lo:hi], minlength=len(self.items)).astype(np.float64)


def funnel_rows(stats: Stats, catalog: dict, user: str, history: list[tuple[str, int]], pop_days: int | None):
    """Candidates of one user (never their own items) and their 15 features."""
    recent = [i for i, _ in reversed(history)]
    seen = set(recent)
    anchors = distinct(recent, 5)
    popularity = stats.popularity_at(history[-1][1], pop_days)
    sources: dict[str, set[str]] = defaultdict(set)
    for a in anchors:
        neighbours = stats.covis.get(a, {})
        for b in sorted(neighbours, key=lambda b: (-neighbours[b], b))[:CANDIDATES_PER_ANCHOR]:
            sources[b].add("covis")
        if a in stats.emb_row:
            sims = stats.emb @ stats.emb[stats.emb_row[a]]
            for j in np.argsort(-sims, kind="stable")[: CANDIDATES_PER_ANCHOR + 1]:
                sources[stats.emb_items[j]].add("embedding")
        for b in stats.by_leaf[catalog[a]["category"]][:CONTENT_CANDIDATES]:
            sources[b].add("content")
    for j in np.argsort(-popularity, kind="stable")[:POPULAR_CANDIDATES]:
        sources[stats.items[j]].add("popular")
    items = [c for c in stats.items if c in sources and c not in seen]
    request = {
        "scenario": "home",
        "context_item": None,
        "user": {"recent": recent, "categories": [catalog[i]["category"] for i in recent], "cart": [], "purchased": []},
        "catalog": catalog,
        "covis": {a: stats.covis[a] for a in anchors if a in stats.covis},
        "bought": {},
        "embeddings": stats.vectors,
        "popularity": {c: float(popularity[stats.index[c]]) for c in items},
        "candidates": [{"item": c, "sources": [s for s in SOURCES if s in sources[c]]} for c in items],
    }
    return items, features(request), popularity


def rank_of(target: int, primary: np.ndarray, secondary: np.ndarray, excluded: np.ndarray) -> int:
    """1-based rank of `target` by (primary, secondary) descending, then item index, among
    items not excluded."""
    better = (primary > primary[target]) | ((primary == primary[target]) & (secondary > secondary[target]))
    tie = (primary == primary[target]) & (secondary == secondary[target]) & (np.arange(len(primary)) < target)
    return 1 + int(((better | tie) & ~excluded).sum())


def portion(sequences, back: int):
    """Histories without the last `back` interactions, and the held-out one (the `back`-th from the end)."""
    histories = {u: s[:-back] for u, s in sequences.items()}
    targets = {u: s[-back][0] for u, s in sequences.items()}
    return histories, targets


def fit_ranker(stats: Stats, catalog, histories, targets, pop_days, rng) -> GradientBoostingClassifier:
    X, y = [], []
    for user, history in histories.items():
        items, rows, _ = funnel_rows(stats, catalog, user, history, pop_days)
        labels = np.array([c == targets[user] for c in items])
        negatives = np.flatnonzero(~labels)
        keep = np.concatenate([np.flatnonzero(labels), rng.choice(negatives, min(NEGATIVES_PER_USER, len(negatives)), replace=False)])
        X.append(rows[keep])
        y.append(labels[keep])
    model = GradientBoostingClassifier(n_estimators=150, max_depth=3, learning_rate=0.05, subsample=0.7, random_state=SEED)
    return model.fit(np.vstack(X), np.concatenate(y).astype(int))


def evaluate_stage(sequences, catalog, items, back: int, settings: dict, knn_ks) -> dict:
    """Every method with histories before the `back`-th last item, scored on that item; our
    ranker learns from the item before it."""
    rng = np.random.default_rng(SEED)
    histories, targets = portion(sequences, back)
    stats = Stats(histories, items, settings["window"], catalog)
    fit_histories, fit_targets = portion(sequences, back + 1)
    ranker = fit_ranker(Stats(fit_histories, items, settings["window"], catalog), catalog, fit_histories, fit_targets, settings["pop_days"], rng)
    n = len(items)
    index = stats.index
    users = list(histories)
    R = np.zeros((len(users), n))
    for u, user in enumerate(users):
        for i, _ in histories[user]:
            R[u, index[i]] = 1.0
    norms = np.sqrt(R.sum(axis=0))
    norms[norms == 0] = 1.0
    sim = (R.T @ R) / np.outer(norms, norms)
    np.fill_diagonal(sim, 0.0)
    ranks = {"popularity": [], "funnel": [], "funnel_candidates_recall": [], "candidates": []}
    knn = {k: [] for k in knn_ks}
    pruned = {}
    for k in knn_ks:
        if k is None:
            pruned[k] = sim
        else:
            cut = np.sort(sim, axis=1)[:, -k][:, None]
            pruned[k] = np.where(sim >= cut, sim, 0.0)
    for u, user in enumerate(users):
        target = index[targets[user]]
        excluded = R[u] > 0
        ranks["popularity"].append(rank_of(target, stats.count, np.zeros(n), excluded))
        for k in knn_ks:
            knn[k].append(rank_of(target, pruned[k].T @ R[u], stats.count, excluded))
        cands, rows, popularity = funnel_rows(stats, catalog, user, histories[user], settings["pop_days"])
        primary = np.zeros(n)
        secondary = popularity.copy()
        if cands:
            idx = np.array([index[c] for c in cands])
            primary[idx] = 1.0
            secondary[idx] = ranker.predict_proba(rows)[:, 1]
        ranks["funnel"].append(rank_of(target, primary, secondary, excluded))
        ranks["funnel_candidates_recall"].append(1 if primary[target] else 0)
        ranks["candidates"].append(len(cands))
    out = {"popularity": leave_one_out(ranks["popularity"], K)}
    for k in knn_ks:
        out[f"item_knn_k{k or 'all'}"] = leave_one_out(knn[k], K)
    out["funnel"] = leave_one_out(ranks["funnel"], K)
    out["funnel"]["candidate_recall"] = round(float(np.mean(ranks["funnel_candidates_recall"])), 4)
    out["funnel"]["mean_candidates"] = round(float(np.mean(ranks["candidates"])), 1)
    return out


def run(log=print) -> dict:
    started = time.time()
    sequences, catalog = load()
    items = sorted(catalog, key=int)
    log(f"ml-100k: {len(sequences)} users, {len(items)} items, {sum(map(len, sequences.values()))} interactions")
    validation = {}
    for n, settings in enumerate(GRID):
        key = f"window={settings['window']},pop_days={settings['pop_days']}"
        validation[key] = evaluate_stage(sequences, catalog, items, 2, settings, KNN_K if n == 0 else ())
        log(f"ml-100k validation {key}: funnel {validation[key]['funnel']} ({time.time() - started:.0f} s)")
    first = next(iter(validation.values()))
    best_k = max(KNN_K, key=lambda k: first[f"item_knn_k{k or 'all'}"][f"ndcg@{K}"])
    best = max(GRID, key=lambda s: validation[f"window={s['window']},pop_days={s['pop_days']}"]["funnel"][f"ndcg@{K}"])
    log(f"ml-100k: chosen on validation: item-kNN k={best_k}, funnel {best}")
    test = evaluate_stage(sequences, catalog, items, 1, best, (best_k,))
    log(f"ml-100k test: {test} ({time.time() - started:.0f} s)")
    return {
        "title": "MovieLens-100k (REAL), leave-last-out test: HR@10, NDCG@10, MRR over all items the user has not rated",
        "data": "MovieLens-100k as shipped in the recbole package (dataset_example/ml-100k): 943 users, 1,682 movies, 100,000 ratings, every rating an interaction",
        "protocol": "per user, interactions by time (ties in file order); last = test, second to last = validation; "
        "methods fitted on the interactions before the held-out one; candidates: every movie the user has not rated (no sampled negatives); ties by popularity, then item id",
        "constant_features": ["scenario_* (home)", "bought (no orders)", "seen (rated items are never candidates)", "log_price (0)", "price_ratio (1)", "same_context_category (no context)", "the brand term of content"],
        "category": "the movie's genres joined by '/' in the data's order (top level = the first genre)",
        "validation": validation,
        "chosen": {"item_knn_k": best_k, "funnel": best},
        "test": test,
        "used_for": "evaluation and tuning of the method only; the shipped ranker is trained on simulated traffic",
    }

