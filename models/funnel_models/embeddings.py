"""Item embeddings from sessions: positive pointwise mutual information (PPMI) of item
co-occurrence within a window of each sequence, factorised by a truncated eigendecomposition
(the symmetric matrix's truncated SVD, positive part), rows L2-normalised. numpy only.

Files (`models/item-embeddings/<version>/`): `embeddings.f32` little-endian float32,
row-major [count, dim]; `items.txt` one item id per line in row order; `model.json` card.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

DIM = 32
CONTEXT_SMOOTHING = 0.75  # context counts raised to this power (word2vec-style PMI smoothing)


def cooccurrence(sequences, window: int | None) -> tuple[list[str], np.ndarray]:
    """Items (sorted ids) and the symmetric count matrix of pairs of distinct items at most
    `window` positions apart in a sequence (None: anywhere in it)."""
    items = sorted({i for s in sequences for i in s})
    index = {item: k for k, item in enumerate(items)}
    counts = np.zeros((len(items), len(items)), dtype=np.float64)
    for sequence in sequences:
        ids = [index[i] for i in sequence]
        for p, a in enumerate(ids):
            end = len(ids) if window is None else min(len(ids), p + window + 1)
            for b in ids[p + 1 : end]:
                if a != b:
                    counts[a, b] += 1.0
                    counts[b, a] += 1.0
    return items, counts


def ppmi(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total == 0:
        return counts
    rows = counts.sum(axis=1)
    context = rows**CONTEXT_SMOOTHING
    context = context / context.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log((counts / total) / np.outer(rows / total, context))
    pmi[~np.isfinite(pmi)] = 0.0
    # Symmetrise (the smoothing makes the context side differ) and keep the positive part.
    return np.maximum((pmi + pmi.T) / 2.0, 0.0)


def train(sequences, dim: int = DIM, window: int | None = None) -> tuple[list[str], np.ndarray]:
    """Item ids and their float32 embeddings [count, dim]; items that co-occur with nothing
    are left out (they have no embedding)."""
    items, counts = cooccurrence(sequences, window)
    keep = counts.sum(axis=1) > 0
    items = [i for i, k in zip(items, keep) if k]
    matrix = ppmi(counts[np.ix_(keep, keep)])
    values, vectors = np.linalg.eigh(matrix)
    top = np.argsort(-values, kind="stable")[: min(dim, len(items))]
    values, vectors = np.maximum(values[top], 0.0), vectors[:, top]
    # Deterministic sign: each column's largest-magnitude entry is positive.
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    emb = vectors * signs * np.sqrt(values)
    if emb.shape[1] < dim:
        emb = np.hstack([emb, np.zeros((len(items), dim - emb.shape[1]))])
    norms = np.linalg.norm(emb, axis=1)
    keep = norms > 0
    emb = emb[keep] / norms[keep, None]
    return [i for i, k in zip(items, keep) if k], emb.astype(np.float32)


def write(directory: Path, items: list[str], emb: np.ndarray, *, name: str, version: str, metadata: dict) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(emb, dtype="<f4").tobytes()
    text = "".join(f"{i}\n" for i in items).encode("utf-8")
    (directory / "embeddings.f32").write_bytes(data)
    (directory / "items.txt").write_bytes(text)
    card = {
        "name": name,
        "version": version,
        "file": "embeddings.f32",
        "sha256": hashlib.sha256(data).hexdigest(),
        "files": {
            "embeddings.f32": hashlib.sha256(data).hexdigest(),
            "items.txt": hashlib.sha256(text).hexdigest(),
        },
        "format": "embeddings.f32: little-endian float32, row-major [count, dim], each row L2-normalised; "
        "items.txt: one item id per line, in row order",
        "dim": int(emb.shape[1]),
        "count": len(items),
        "metadata": metadata,
    }
    (directory / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def as_dict(items: list[str], emb: np.ndarray) -> dict[str, np.ndarray]:
    return {item: emb[k] for k, item in enumerate(items)}
