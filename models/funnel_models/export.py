"""ONNX export (skl2onnx), merging two binary classifiers into one graph, and model cards."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, compose, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT = "features"
OUTPUT = "probabilities"
GOLDEN_TOLERANCE = 1e-5


def to_onnx(model, n_features: int) -> onnx.ModelProto:
    """A fitted scikit-learn classifier (or pipeline) with `features` float32 [batch, n] in
    and `probabilities` float32 [batch, 2] out (ZipMap off)."""
    options = {id(model): {"zipmap": False}}
    return convert_sklearn(
        model,
        initial_types=[(INPUT, FloatTensorType([None, n_features]))],
        options=options,
        target_opset=TARGET_OPSET,
    )


def trees_as_regressor(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its binary TreeEnsembleClassifier (which computes a label and both
    probabilities for every row) replaced by the same trees as a TreeEnsembleRegressor giving
    the raw score, a Sigmoid, and `[1 - p, p]` for the classifier's probabilities; the
    label output is dropped. The same probabilities to float32 rounding, in about half of
    onnxruntime's time on a recommendation request's rows."""
    (node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert list(attributes["classlabels_int64s"]) == [0, 1], "a binary classifier"
    assert set(attributes["class_ids"]) == {0}, "one score per tree leaf"
    assert attributes["post_transform"] == b"LOGISTIC", attributes["post_transform"]
    renamed = {f"target_{k[len('class_'):]}": v for k, v in attributes.items() if k.startswith("class_")}
    kept = {k: v for k, v in attributes.items() if not k.startswith("class") and k != "post_transform"}
    label, probabilities = node.output
    raw, positive, negative, one = (f"{probabilities}_{s}" for s in ("raw", "positive", "negative", "one"))
    nodes = [
        helper.make_node("TreeEnsembleRegressor", list(node.input), [raw], domain="ai.onnx.ml", n_targets=1, post_transform="NONE", **renamed, **kept),
        helper.make_node("Sigmoid", [raw], [positive]),
        helper.make_node("Sub", [one, positive], [negative]),
        helper.make_node("Concat", [negative, positive], [probabilities], axis=1),
    ]
    at = list(model.graph.node).index(node)
    rebuilt = list(model.graph.node)[:at] + nodes + list(model.graph.node)[at + 1 :]
    del model.graph.node[:]
    model.graph.node.extend(rebuilt)
    model.graph.initializer.append(helper.make_tensor(one, TensorProto.FLOAT, [1], [1.0]))
    outputs = [o for o in model.graph.output if o.name != label]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    onnx.checker.check_model(model, full_check=True)
    return model


def positive_column_graph(models: dict[str, onnx.ModelProto], n_features: int) -> onnx.ModelProto:
    """One graph that runs each binary classifier on the same `features` and outputs
    `probabilities` [batch, len(models)]: column k is P(class 1) of the k-th model."""
    nodes, initializers, columns = [], [], []
    opsets: dict[str, int] = {}
    for prefix, model in models.items():
        prefixed = compose.add_prefix(model, prefix=f"{prefix}_")
        for node in prefixed.graph.node:
            node.input[:] = [INPUT if name == f"{prefix}_{INPUT}" else name for name in node.input]
            nodes.append(node)
        initializers.extend(prefixed.graph.initializer)
        for opset in prefixed.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
        column = f"{prefix}_positive"
        index = f"{prefix}_positive_index"
        initializers.append(helper.make_tensor(index, TensorProto.INT64, [1], [1]))
        nodes.append(helper.make_node("Gather", [f"{prefix}_{OUTPUT}", index], [column], axis=1))
        columns.append(column)
    nodes.append(helper.make_node("Concat", columns, [OUTPUT], axis=1))
    graph = helper.make_graph(
        nodes,
        "funnel",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", len(models)])],
        initializer=initializers,
    )
    merged = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items())],
        producer_name="funnel models/train.py",
    )
    merged.ir_version = max(m.ir_version for m in models.values())
    onnx.checker.check_model(merged, full_check=True)
    return merged


def run(model: onnx.ModelProto, features: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: np.asarray(features, dtype=np.float32)})[0]


def write_model(
    directory: Path,
    model: onnx.ModelProto,
    *,
    name: str,
    version: str,
    description: str,
    features: list[str],
    score_column: int,
    golden_features: np.ndarray,
    metadata: dict,
) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    # skl2onnx names graphs with a random uuid and lists opsets in set order (which varies
    # with Python's hash seed); a fixed name and sorted opsets keep the file reproducible.
    model.graph.name = name
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets)
    data = model.SerializeToString()
    (directory / "model.onnx").write_bytes(data)
    golden_features = np.asarray(golden_features, dtype=np.float32)
    outputs = run(model, golden_features)
    width = outputs.shape[1]
    card = {
        "name": name,
        "version": version,
        "file": "model.onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "description": description,
        "inputs": [{"name": INPUT, "dtype": "float32", "shape": ["batch", len(features)]}],
        "outputs": [{"name": OUTPUT, "dtype": "float32", "shape": ["batch", width]}],
        "features": features,
        "score": {"output": OUTPUT, "column": score_column},
        "golden": {
            "tolerance": GOLDEN_TOLERANCE,
            "inputs": {INPUT: {"shape": list(golden_features.shape), "data": [float(v) for v in golden_features.ravel()]}},
            "outputs": {OUTPUT: {"shape": list(outputs.shape), "data": [float(v) for v in outputs.ravel()]}},
        },
        "metadata": metadata,
    }
    (directory / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def write_json(path: Path, document) -> None:
    """Indented JSON with every list of numbers on one line (one line per feature row)."""
    text = json.dumps(document, indent=1)
    numbers = re.compile(r"\[\s*(-?[0-9][-0-9.e+]*(?:,\s*-?[0-9][-0-9.e+]*)*)\s*\]")
    text = numbers.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")
