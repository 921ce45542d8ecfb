#!/usr/bin/env python3
"""Builds the tiny ONNX models that the `funnel-model` tests load, with their cards.

Every model is written with the `onnx` helper API from fixed weights, so the files are
small, reproducible and their outputs can be computed by hand. For each model the script
writes `models/testdata/<name>/<version>/model.onnx` and a `model.json` card (signature,
ordered features, sha256 of the file and golden vectors), then checks that ONNX Runtime
reproduces the numpy reference before it writes anything.

Run from anywhere with the project's venv:

    python models/tools/make_test_models.py [--out DIR]   # (re)write the test models
    python models/tools/make_test_models.py --check       # fail if the committed ones differ

The output is byte-for-byte reproducible, so `--check` can run in CI.

Models:
- logistic/1, logistic/2: `features` float32 [batch, 4] -> MatMul + Add + Sigmoid ->
  `probability` float32 [batch, 1]; two versions with different weights (hot-swap tests).
- classifier/1: the output layout of an skl2onnx binary classifier (zipmap off):
  `label` int64 [batch] and `probabilities` float32 [batch, 2].
- text-encoder/1: `input_ids` and `attention_mask` int64 [batch, sequence] -> an int8
  embedding table (DequantizeLinear) -> masked mean -> `embedding` float32 [batch, 4].
- logistic-wrong-input/1: the logistic graph with its input named `inputs`; its card still
  promises `features`, so loading it must be refused.
- logistic-fixed-batch/1: the logistic graph exported with a fixed batch of 1; its card
  promises a dynamic batch, so loading it must be refused.
"""

from __future__ import annotations

import argparse
import filecmp
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
TOLERANCE = 1e-6

FEATURES = ["sessions_7d", "cart_adds_7d", "dwell_minutes", "is_returning"]

LOGISTIC_WEIGHTS = {
    "1": (np.array([0.5, -1.0, 0.25, 2.0], dtype=np.float32), np.float32(-0.1)),
    "2": (np.array([-0.5, 1.0, 0.75, -2.0], dtype=np.float32), np.float32(0.3)),
}
CLASSIFIER_WEIGHTS = (np.array([1.0, 0.5, -0.25, 0.0], dtype=np.float32), np.float32(0.2))

VOCAB = 16
EMBEDDING_DIM = 4
EMBEDDING_SCALE = np.float32(0.25)

# Rows every tabular golden check runs; chosen to cover negative, zero and large inputs.
GOLDEN_FEATURES = np.array(
    [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [-1.5, 0.5, 2.0, -0.25]], dtype=np.float32
)
GOLDEN_IDS = np.array([[1, 2, 3, 0], [5, 5, 0, 0]], dtype=np.int64)
GOLDEN_MASK = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=np.int64)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def embedding_table_int8() -> np.ndarray:
    return (np.arange(VOCAB * EMBEDDING_DIM, dtype=np.int64) - 32).astype(np.int8).reshape(VOCAB, EMBEDDING_DIM)


def finish(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="funnel-make-test-models",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def logistic_graph(weights: np.ndarray, bias: np.float32, input_name: str, batch) -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [input_name, "weights"], ["logit_raw"]),
            helper.make_node("Add", ["logit_raw", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["probability"]),
        ],
        "logistic",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [batch, 1])],
        initializer=[
            numpy_helper.from_array(weights.reshape(4, 1), "weights"),
            numpy_helper.from_array(np.array([bias], dtype=np.float32), "bias"),
        ],
    )
    return finish(graph, "logistic regression: sigmoid(features . weights + bias)")


def logistic_reference(weights: np.ndarray, bias: np.float32, x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) @ weights.astype(np.float64) + np.float64(bias)
    return sigmoid(z).reshape(-1, 1)


def classifier_graph() -> onnx.ModelProto:
    weights, bias = CLASSIFIER_WEIGHTS
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "weights"], ["logit_raw"]),
            helper.make_node("Add", ["logit_raw", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["positive"]),
            helper.make_node("Sub", ["one", "positive"], ["negative"]),
            helper.make_node("Concat", ["negative", "positive"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        "classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
        ],
        initializer=[
            numpy_helper.from_array(weights.reshape(4, 1), "weights"),
            numpy_helper.from_array(np.array([bias], dtype=np.float32), "bias"),
            numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        ],
    )
    return finish(graph, "binary classifier laid out like skl2onnx output (label, probabilities)")


def classifier_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weights, bias = CLASSIFIER_WEIGHTS
    p = logistic_reference(weights, bias, x)
    probabilities = np.concatenate([1.0 - p, p], axis=1)
    return np.argmax(probabilities, axis=1).astype(np.int64), probabilities


def text_encoder_graph() -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["table_int8", "table_scale", "table_zero"], ["table"]),
            helper.make_node("Gather", ["table", "input_ids"], ["token_vectors"], axis=0),
            helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["mask", "axis_last"], ["mask3"]),
            helper.make_node("Mul", ["token_vectors", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis_sequence"], ["summed"], keepdims=0),
            helper.make_node("ReduceSum", ["mask", "axis_sequence"], ["count_raw"], keepdims=1),
            helper.make_node("Max", ["count_raw", "one"], ["count"]),
            helper.make_node("Div", ["summed", "count"], ["embedding"]),
        ],
        "text_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        initializer=[
            numpy_helper.from_array(embedding_table_int8(), "table_int8"),
            numpy_helper.from_array(np.array(EMBEDDING_SCALE, dtype=np.float32), "table_scale"),
            numpy_helper.from_array(np.array(0, dtype=np.int8), "table_zero"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis_last"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_sequence"),
            numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        ],
    )
    return finish(graph, "masked mean of an int8 (DequantizeLinear) embedding table")


def text_encoder_reference(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    table = embedding_table_int8().astype(np.float64) * np.float64(EMBEDDING_SCALE)
    vectors = table[ids] * mask[..., None].astype(np.float64)
    count = np.maximum(mask.sum(axis=1, keepdims=True).astype(np.float64), 1.0)
    return vectors.sum(axis=1) / count


def tensor_json(array: np.ndarray) -> dict:
    return {"shape": list(array.shape), "data": [float(v) if array.dtype.kind == "f" else int(v) for v in array.reshape(-1)]}


def spec(name: str, dtype: str, shape: list) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape}


def check_with_runtime(model: onnx.ModelProto, inputs: dict, expected: dict) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(expected)
    for name, got in zip(names, session.run(names, inputs)):
        want = expected[name]
        if got.shape != want.shape or not np.allclose(got, want, rtol=0.0, atol=TOLERANCE):
            raise SystemExit(f"onnxruntime disagrees with the reference for `{name}`: {got} vs {want}")


def write(out: Path, model: onnx.ModelProto, card: dict) -> None:
    directory = out / card["name"] / card["version"]
    directory.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    (directory / "model.onnx").write_bytes(data)
    identity = {"name": card["name"], "version": card["version"], "file": "model.onnx", "sha256": hashlib.sha256(data).hexdigest()}
    card = {**identity, **card}
    (directory / "model.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {card['name']}/{card['version']} ({len(data)} bytes, sha256 {card['sha256'][:12]}…)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "testdata")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args()
    if not args.check:
        write_all(args.out)
        return
    with tempfile.TemporaryDirectory() as scratch:
        write_all(Path(scratch))
        stale = [
            str(path.relative_to(scratch))
            for path in sorted(Path(scratch).rglob("*"))
            if path.is_file()
            and not (
                (args.out / path.relative_to(scratch)).is_file()
                and filecmp.cmp(path, args.out / path.relative_to(scratch), shallow=False)
            )
        ]
    if stale:
        raise SystemExit("out of date, rerun make_test_models.py: " + ", ".join(stale))
    print("test models are up to date")


def write_all(out: Path) -> None:
    tabular_inputs = [spec("features", "float32", ["batch", 4])]
    for version, (weights, bias) in LOGISTIC_WEIGHTS.items():
        model = logistic_graph(weights, bias, "features", "batch")
        expected = logistic_reference(weights, bias, GOLDEN_FEATURES)
        check_with_runtime(model, {"features": GOLDEN_FEATURES}, {"probability": expected})
        write(out, model, {
            "name": "logistic",
            "version": version,
            "description": f"purchase intent, logistic regression v{version} (test model)",
            "inputs": tabular_inputs,
            "outputs": [spec("probability", "float32", ["batch", 1])],
            "features": FEATURES,
            "score": {"output": "probability", "column": 0},
            "golden": {
                "tolerance": TOLERANCE,
                "inputs": {"features": tensor_json(GOLDEN_FEATURES)},
                "outputs": {"probability": tensor_json(expected)},
            },
        })

    model = classifier_graph()
    labels, probabilities = classifier_reference(GOLDEN_FEATURES)
    check_with_runtime(model, {"features": GOLDEN_FEATURES}, {"label": labels, "probabilities": probabilities})
    write(out, model, {
        "name": "classifier",
        "version": "1",
        "description": "binary classifier with skl2onnx's output layout (test model)",
        "inputs": tabular_inputs,
        "outputs": [spec("label", "int64", ["batch"]), spec("probabilities", "float32", ["batch", 2])],
        "features": FEATURES,
        "score": {"output": "probabilities", "column": 1},
        "golden": {
            "tolerance": TOLERANCE,
            "inputs": {"features": tensor_json(GOLDEN_FEATURES)},
            "outputs": {"label": tensor_json(labels), "probabilities": tensor_json(probabilities)},
        },
    })

    model = text_encoder_graph()
    expected = text_encoder_reference(GOLDEN_IDS, GOLDEN_MASK)
    check_with_runtime(model, {"input_ids": GOLDEN_IDS, "attention_mask": GOLDEN_MASK}, {"embedding": expected})
    token_inputs = [spec("input_ids", "int64", ["batch", "sequence"]), spec("attention_mask", "int64", ["batch", "sequence"])]
    write(out, model, {
        "name": "text-encoder",
        "version": "1",
        "description": "masked mean over an int8 embedding table (test model)",
        "inputs": token_inputs,
        "outputs": [spec("embedding", "float32", ["batch", EMBEDDING_DIM])],
        "golden": {
            "tolerance": TOLERANCE,
            "inputs": {"input_ids": tensor_json(GOLDEN_IDS), "attention_mask": tensor_json(GOLDEN_MASK)},
            "outputs": {"embedding": tensor_json(expected)},
        },
    })

    weights, bias = LOGISTIC_WEIGHTS["1"]
    broken = {
        "logistic-wrong-input": logistic_graph(weights, bias, "inputs", "batch"),
        "logistic-fixed-batch": logistic_graph(weights, bias, "features", 1),
    }
    for name, model in broken.items():
        write(out, model, {
            "name": name,
            "version": "1",
            "description": "a model that does not match its card; loading it must be refused (test model)",
            "inputs": tabular_inputs,
            "outputs": [spec("probability", "float32", ["batch", 1])],
            "features": FEATURES,
        })


if __name__ == "__main__":
    main()
