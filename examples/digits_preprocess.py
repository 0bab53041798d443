"""Standardization of raw 8x8 digit pixels as an ONNX graph, matching the digits classifier."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from examples import digits
from examples.common import REQUIRES, Package, make_model, package_table

NAME = "digits-preprocess"


def build_model(mean: np.ndarray, scale: np.ndarray) -> onnx.ModelProto:
    """Return `pixels` int64 [N, 8, 8] -> `features` float32 [N, 64] = (x - mean) / scale."""
    inits = [
        numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
        numpy_helper.from_array(mean.astype(np.float32), "mean"),
        numpy_helper.from_array(scale.astype(np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("Reshape", ["pixels", "shape"], ["flat"], name="flatten"),
        helper.make_node("Cast", ["flat"], ["flat_f"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["flat_f", "mean"], ["centered"], name="center"),
        helper.make_node("Div", ["centered", "scale"], ["features"], name="scale"),
    ]
    graph = helper.make_graph(
        nodes, "digits_preprocess",
        [helper.make_tensor_value_info("pixels", TensorProto.INT64, ["N", 8, 8])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 64])],
        initializer=inits,
    )
    return make_model(graph)


def chain_correct(pre: onnx.ModelProto, clf: onnx.ModelProto, pixels: np.ndarray, labels: np.ndarray) -> int:
    """Count correct predictions of preprocess -> classifier run as two onnxruntime sessions."""
    session = ort.InferenceSession(pre.SerializeToString(), providers=["CPUExecutionProvider"])
    features = session.run(["features"], {"pixels": pixels})[0]
    return int((digits.predict(clf, features) == labels).sum())


def _readme() -> str:
    return """# digits-preprocess

Turns raw 8x8 digit images into the standardized features the `digits` classifier
expects: flatten to 64 values, cast to float32, subtract the per-pixel mean and
divide by the per-pixel standard deviation. Both come from the StandardScaler fitted
on the same training split as `digits` and are stored as constants in the graph
(pixels that are always 0 in training keep a scale of 1).

## Signature

| | name | type | shape |
|---|---|---|---|
| input | `pixels` | int64 | `[N, 8, 8]`, raw values 0-16 |
| output | `features` | float32 | `[N, 64]` |

Use the `digits-classifier` pipeline to go from pixels to a digit in one step.
"""


def package() -> Package:
    """Build the digits-preprocess package, checking the chain reproduces the digits README accuracy."""
    scaler = digits.fit().scaler
    model = build_model(scaler.mean_, scaler.scale_)
    pixels, labels = digits.held_out()
    correct, total = digits.held_out_correct()
    got = chain_correct(model, digits.build_model(), pixels, labels)
    if (got, len(labels)) != (correct, total):
        raise AssertionError(f"preprocess->digits got {got}/{len(labels)}, digits README claims {correct}/{total}")
    manifest = {
        "package": package_table(
            NAME, "Standardizes raw 8x8 digit pixels into features for the digits classifier",
            ["vision", "preprocessing", "digits", "example"],
        ),
        "model": {"file": "model.onnx"},
        "requires": dict(REQUIRES),
    }
    return Package(manifest, _readme(), model)
