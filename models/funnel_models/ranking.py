"""Ranking metrics: per-list NDCG@k, hit rate and reciprocal rank, and the full-catalogue
leave-one-out metrics (HR@k, NDCG@k, MRR)."""

from __future__ import annotations

import numpy as np


def order(scores: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Indices by score, highest first; equal scores in `tiebreak` order (ascending)."""
    return np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64)))


def list_metrics(lists, k: int = 10, hit_at: int = 3) -> dict:
    """`lists`: (scores, labels, tiebreak) per shown list with at least one click. NDCG@k with
    binary gains, HR@hit_at (a clicked item in the top `hit_at`), MRR of the first click."""
    ndcg, hit, rr = [], [], []
    for scores, labels, tiebreak in lists:
        ranked = np.asarray(labels)[order(scores, tiebreak)]
        gains = ranked[:k] / np.log2(np.arange(2, min(k, len(ranked)) + 2))
        ideal = np.sort(ranked)[::-1][:k] / np.log2(np.arange(2, min(k, len(ranked)) + 2))
        ndcg.append(gains.sum() / ideal.sum())
        hit.append(float(ranked[:hit_at].any()))
        rr.append(1.0 / (1 + int(np.argmax(ranked > 0))))
    return {
        f"ndcg@{k}": round(float(np.mean(ndcg)), 4),
        f"hr@{hit_at}": round(float(np.mean(hit)), 4),
        "mrr": round(float(np.mean(rr)), 4),
        "lists": len(ndcg),
    }


def leave_one_out(ranks, k: int = 10) -> dict:
    """`ranks`: the 1-based rank of each user's held-out item among all its candidates."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return {
        f"hr@{k}": round(float((ranks <= k).mean()), 4),
        f"ndcg@{k}": round(float(np.where(ranks <= k, 1.0 / np.log2(ranks + 1), 0.0).mean()), 4),
        "mrr": round(float((1.0 / ranks).mean()), 4),
        "users": int(len(ranks)),
    }

