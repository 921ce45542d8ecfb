#!/usr/bin/env python3
"""Trains every Funnel model, evaluates it on held-out data and writes, per model,
`models/<name>/<version>/model.onnx`, its card `model.json` and the golden parity vectors
`parity.json` that the Rust feature code must reproduce.

    .tools/venv/bin/python models/train.py            # every model (10-15 minutes on 2 cores)
    .tools/venv/bin/python models/train.py repurchase # one of them
    .tools/venv/bin/python models/train.py --ml100k   # the MovieLens-100k table alone

- intent: session purchase and cart-abandonment probabilities; SIMULATED data from
  `funnel simulate` (fixed seed), built from this checkout with cargo.
- repurchase: P(an order in the next 13 weeks); REAL data, the CDNOW records shipped in the
  `lifetimes` package, compared with BG/NBD.
- ranker (and item-embeddings): the recommender's pointwise click model and the item
  embeddings it reads; SIMULATED data, the same `funnel simulate` run as intent. Its card
  also carries the method's evaluation on REAL data, MovieLens-100k (evaluation only).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

# numpy's OpenBLAS picks its kernels by CPU (DYNAMIC_ARCH): on a CPU with AVX-512 it rounds
# differently from the Haswell (AVX2) kernels the committed models were made with, which is
# enough to change an MLP, an eigendecomposition and the 4th decimal of some metrics. Fixing
# the kernel keeps the output the same bytes on any x86-64 machine with AVX2.
os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))

from funnel_models import intent, ml100k, ranker, repurchase  # noqa: E402

MODELS = {"intent": intent.train, "repurchase": repurchase.train, "ranker": ranker.train}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help=f"any of {', '.join(MODELS)}; all by default")
    parser.add_argument("--ml100k", action="store_true", help="only the MovieLens-100k evaluation (printed; writes nothing)")
    args = parser.parse_args()
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"unknown models: {', '.join(sorted(unknown))}")
    random.seed(0)
    np.random.seed(0)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:6.1f}s] {message}", flush=True)

    if args.ml100k:
        print(json.dumps(ml100k.run(log)["test"], indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="funnel-train-") as work:
        for name in args.models or MODELS:
            MODELS[name](ROOT, Path(work), log)
            log(f"{name}: written to models/{name}/")


if __name__ == "__main__":
    main()
