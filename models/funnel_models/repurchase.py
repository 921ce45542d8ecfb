"""Customer repurchase: P(at least one order in the next 13 weeks) from order history.

Trained and evaluated on the REAL CDNOW purchase records shipped in the `lifetimes` package
(the 23,570 customers who first bought in Q1 1997, their purchases to June 1998), against
the BG/NBD model of the same package on the same split.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import lifetimes
import numpy as np
from lifetimes import BetaGeoFitter
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import export
from .evaluate import metrics
from .features import MS_PER_DAY, REPURCHASE_FEATURES, REPURCHASE_NORMALISATION, repurchase_features

NAME, VERSION = "repurchase", "1"
SEED = 20261128
HORIZON_DAYS = 91  # 13 weeks
TEST_CUTOFF = "1997-10-01"  # end of the classic 39-week CDNOW calibration period
TRAIN_CUTOFF_DAYS_EARLIER = HORIZON_DAYS  # training labels end where the test features start
VALIDATION_EVERY = 5  # customers whose id % 5 == 0 validate the choice between candidates


def day_ms(date: str) -> int:
    return int(datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp() * 1000)


def load_cdnow() -> dict[int, list[tuple[int, float]]]:
    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_master.txt"
    customers: dict[int, list[tuple[int, float]]] = {}
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            customer, date, _cds, value = line.split()
            ts = int(datetime.strptime(date, "%Y%m%d").replace(tzinfo=timezone.utc).timestamp() * 1000)
            customers.setdefault(int(customer), []).append((ts, float(value)))
    return customers


def dataset(customers, cutoff_ms: int):
    ids = sorted(c for c, orders in customers.items() if min(ts for ts, _ in orders) < cutoff_ms)
    end = cutoff_ms + HORIZON_DAYS * MS_PER_DAY
    X = np.asarray([repurchase_features(customers[c], cutoff_ms) for c in ids], dtype=np.float64)
    y = np.asarray([any(cutoff_ms <= ts < end for ts, _ in customers[c]) for c in ids], dtype=np.int64)
    return np.asarray(ids), X, y


def bgnbd_probability(model: BetaGeoFitter, frequency, recency, age, horizon: float) -> np.ndarray:
    """P(at least one purchase in (T, T + horizon]) under BG/NBD. Dropout only happens right
    after a purchase, so with no purchase in the window the customer is either dead already,
    or alive with rate lambda ~ Gamma(r + x, alpha + T) and no Poisson event in the window."""
    r, alpha = model.params_["r"], model.params_["alpha"]
    alive = model.conditional_probability_alive(frequency, recency, age)
    none_if_alive = ((alpha + age) / (alpha + age + horizon)) ** (r + frequency)
    return alive * (1.0 - none_if_alive)


def train(root: Path, work: Path, log) -> dict:
    customers = load_cdnow()
    test_cutoff = day_ms(TEST_CUTOFF)
    train_cutoff = test_cutoff - TRAIN_CUTOFF_DAYS_EARLIER * MS_PER_DAY
    train_ids, X_train_all, y_train_all = dataset(customers, train_cutoff)
    test_ids, X_test, y_test = dataset(customers, test_cutoff)
    valid = train_ids % VALIDATION_EVERY == 0
    X_fit, y_fit, X_valid, y_valid = X_train_all[~valid], y_train_all[~valid], X_train_all[valid], y_train_all[valid]
    log(f"repurchase: {len(customers)} CDNOW customers; train rows {len(X_fit)}, validation {len(X_valid)}, test {len(X_test)}")

    candidates = {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        "gradient_boosting": GradientBoostingClassifier(
            n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=SEED
        ),
    }
    results = {"validation": {}, "test": {}}
    for name, model in candidates.items():
        started = time.time()
        model.fit(X_fit.astype(np.float32), y_fit)
        log(f"repurchase: {name} trained in {time.time() - started:.1f} s")
        results["validation"][name] = metrics(y_valid, model.predict_proba(X_valid.astype(np.float32))[:, 1])
        results["test"][name] = metrics(y_test, model.predict_proba(X_test.astype(np.float32))[:, 1])
    best = min(candidates, key=lambda n: results["validation"][n]["log_loss"])
    results["selected"] = best

    # BG/NBD sees exactly the test-time features: frequency, recency and age in days
    # computed from purchases before the test cutoff (no holdout data).
    frequency, recency, age = X_test[:, 0], X_test[:, 1], X_test[:, 2]
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(frequency, recency, age)
    results["test"]["bg_nbd"] = metrics(y_test, bgnbd_probability(bgf, frequency, recency, age, HORIZON_DAYS))
    results["bg_nbd_params"] = {k: round(float(v), 6) for k, v in bgf.params_.items()}
    results["test"]["base_rate"] = metrics(y_test, np.full(len(y_test), y_fit.mean()))
    log(f"repurchase: selected {best}; test {results['test']}")

    onnx_model = export.to_onnx(candidates[best], len(REPURCHASE_FEATURES))
    probe = X_test[:2000].astype(np.float32)
    gap = float(np.abs(export.run(onnx_model, probe)[:, 1] - candidates[best].predict_proba(probe)[:, 1]).max())
    results["onnx_vs_sklearn_max_abs_diff"] = gap
    assert gap < 1e-4, f"ONNX export differs from scikit-learn by {gap}"

    histories = parity_histories(customers, test_cutoff)
    golden = np.asarray([h["features"] for h in histories[:6]], dtype=np.float32)
    metadata = {
        "target": f"P(at least one order in the {HORIZON_DAYS} days from now), column 1",
        "training_data": {
            "kind": "REAL: CDNOW purchase records (lifetimes.datasets CDNOW_master.txt)",
            "customers": len(customers),
            "transactions": sum(len(v) for v in customers.values()),
        },
        "split": {
            "kind": "by date (calibration/holdout) and, for model choice, by customer id",
            "train": f"features at {datetime.fromtimestamp(train_cutoff / 1000, timezone.utc).date()}, label: an order in the next {HORIZON_DAYS} days; customers with id % {VALIDATION_EVERY} == 0 held out for validation",
            "test": f"features from purchases before {TEST_CUTOFF}, label: an order in [{TEST_CUTOFF}, +{HORIZON_DAYS} days); BG/NBD fitted on the same pre-{TEST_CUTOFF} purchases",
            "rows": {"train": int(len(X_fit)), "validation": int(len(X_valid)), "test": int(len(X_test))},
        },
        "selection": "the candidate with the lowest validation log-loss",
        "model": best,
        "baselines": {
            "bg_nbd": "lifetimes BetaGeoFitter (penalizer 0) on frequency, recency, age in days; P(>=1 purchase in the horizon) = P(alive) * (1 - ((alpha+T)/(alpha+T+h))^(r+x))",
            "base_rate": "the training label rate for everyone",
        },
        "seed": SEED,
        "normalisation": {
            "features": REPURCHASE_NORMALISATION,
            "in_graph": "logistic_regression standardises inside the graph; gradient_boosting takes raw values",
        },
        "metrics": results,
    }
    directory = root / "models" / NAME / VERSION
    export.write_model(
        directory,
        onnx_model,
        name=NAME,
        version=VERSION,
        description=f"customer repurchase within {HORIZON_DAYS} days from order history (trained on real CDNOW records)",
        features=REPURCHASE_FEATURES,
        score_column=1,
        golden_features=golden,
        metadata=metadata,
    )
    outputs = export.run(onnx_model, np.asarray([h["features"] for h in histories], dtype=np.float32))
    for history, out in zip(histories, outputs):
        history["outputs"] = [float(v) for v in out]
    export.write_json(
        directory / "parity.json",
        {
            "model": f"{NAME}@{VERSION}",
            "tolerance": 1e-5,
            "about": "order histories (ts_ms, value) and a time now_ms -> features (float32) -> the model's "
            "probabilities [no repurchase, repurchase] as onnxruntime computes them",
            "features": REPURCHASE_FEATURES,
            "histories": histories,
        },
    )
    return results


def parity_histories(customers, now_ms: int) -> list[dict]:
    day = MS_PER_DAY
    scripted = [
        ("cold start: no orders", []),
        ("one order today", [(now_ms - 3_600_000, 20.0)]),
        ("two orders the same day", [(now_ms - 40 * day, 10.0), (now_ms - 40 * day + 60_000, 15.5)]),
        ("regular buyer", [(now_ms - k * 30 * day, 12.0 + k) for k in range(1, 8)]),
        ("an order at now is not history", [(now_ms - 100 * day, 30.0), (now_ms, 99.0)]),
    ]
    real = [(f"CDNOW customer {c}", customers[c]) for c in sorted(customers)[:: len(customers) // 15][:15]]
    histories = []
    for name, orders in scripted + real:
        features = np.asarray(repurchase_features(orders, now_ms), dtype=np.float32)
        histories.append({
            "name": name,
            "now_ms": now_ms,
            "orders": [{"ts_ms": ts, "value": value} for ts, value in orders],
            "features": [float(v) for v in features],
        })
    return histories
