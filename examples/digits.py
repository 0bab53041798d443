"""A real digit classifier trained on scikit-learn's bundled 8x8 digits, exported with skl2onnx."""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from examples.common import REQUIRES, Package, finalize, package_table

NAME = "digits"
_ACCURACY = re.compile(r"Held-out accuracy: ([0-9]+\.[0-9]+)")


@dataclass(frozen=True)
class Fit:
    """The train/held-out split, the scaler fitted on the train split, and the chosen classifier."""

    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    scaler: StandardScaler
    classifier: ClassifierMixin
    runner_up: str


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_digits()
    return train_test_split(data.data, data.target, test_size=0.25, random_state=0, stratify=data.target)


@functools.lru_cache(maxsize=1)
def fit() -> Fit:
    """Train the candidates on the standardized train split and keep the more accurate one."""
    x_train, x_test, y_train, y_test = _split()
    scaler = StandardScaler().fit(x_train)
    train, test = scaler.transform(x_train), scaler.transform(x_test)
    candidates: list[ClassifierMixin] = [
        MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=0),
        LogisticRegression(max_iter=2000),
    ]
    with warnings.catch_warnings():
        # A capped iteration count is a deliberate, deterministic choice here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for clf in candidates:
            clf.fit(train, y_train)
    # max() keeps the first on ties, so the choice is stable.
    best = max(candidates, key=lambda clf: clf.score(test, y_test))
    other = next(type(c).__name__ for c in candidates if c is not best)
    return Fit(x_train, x_test, y_train, y_test, scaler, best, other)


def held_out() -> tuple[np.ndarray, np.ndarray]:
    """Return the raw held-out images as int64 [n, 8, 8] (values 0-16) and their true labels."""
    _, x_test, _, y_test = _split()
    return x_test.reshape(-1, 8, 8).astype(np.int64), y_test.astype(np.int64)


def _set_batch_dim(value: onnx.ValueInfoProto) -> None:
    # skl2onnx leaves the batch dimension anonymous; nnpm signatures name it.
    value.type.tensor_type.shape.dim[0].dim_param = "N"


@functools.lru_cache(maxsize=1)
def build_model() -> onnx.ModelProto:
    """Export the fitted classifier: `features` [N, 64] -> `label` int64 [N], `probabilities` [N, 10]."""
    from skl2onnx import convert_sklearn  # slow import, only needed when building
    from skl2onnx.common.data_types import FloatTensorType

    clf = fit().classifier
    model = convert_sklearn(
        clf,
        name=NAME,
        initial_types=[("features", FloatTensorType([None, 64]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    outputs = model.graph.output
    if [o.name for o in outputs] != ["label", "probabilities"]:
        raise AssertionError(f"unexpected skl2onnx outputs {[o.name for o in outputs]}")
    for value in [*model.graph.input, *outputs]:
        _set_batch_dim(value)
    return finalize(model, ml=True)


def predict(model: onnx.ModelProto, features: np.ndarray) -> np.ndarray:
    """Run the classifier in onnxruntime and return the predicted labels."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["label"], {"features": features.astype(np.float32)})[0]


@functools.lru_cache(maxsize=1)
def held_out_correct() -> tuple[int, int]:
    """Return (correct, total) for the ONNX model on the standardized held-out split."""
    f = fit()
    predicted = predict(build_model(), f.scaler.transform(f.x_test))
    return int((predicted == f.y_test).sum()), len(f.y_test)


def format_accuracy(correct: int, total: int) -> str:
    """Render the accuracy sentence that README.md carries and claimed_accuracy() parses."""
    return f"Held-out accuracy: {correct / total:.4f} on {total} images ({correct} correct)"


def claimed_accuracy(readme_text: str) -> float:
    """Parse the held-out accuracy back out of the README text."""
    match = _ACCURACY.search(readme_text)
    if match is None:
        raise ValueError("README has no 'Held-out accuracy:' line")
    return float(match.group(1))


def _readme(kind: str, other: str, correct: int, total: int) -> str:
    return f"""# digits

A handwritten-digit classifier ({kind}) trained with scikit-learn on its bundled
copy of the UCI "Optical Recognition of Handwritten Digits" data (1797 images of
8x8 pixels, values 0-16), exported with skl2onnx.

{format_accuracy(correct, total)}, measured at build time by running this ONNX
model in onnxruntime on the standardized held-out split
(`train_test_split(test_size=0.25, random_state=0, stratify=y)`).
The classifier was chosen over the other candidate ({other}) by this same held-out
score, so treat the figure as slightly optimistic.

Data: UCI Machine Learning Repository, "Optical Recognition of Handwritten Digits"
(E. Alpaydin, C. Kaynak, 1998), CC BY 4.0.

## Signature

| | name | type | shape |
|---|---|---|---|
| input | `features` | float32 | `[N, 64]` standardized pixels |
| output | `label` | int64 | `[N]` |
| output | `probabilities` | float32 | `[N, 10]` (labels in `labels.txt`) |

The input must already be standardized with the training split's mean and scale;
`digits-preprocess` does exactly that from raw `[N, 8, 8]` pixels, and the
`digits-classifier` pipeline chains the two.
"""


def package() -> Package:
    """Build the digits package."""
    correct, total = held_out_correct()
    manifest = {
        "package": package_table(
            NAME, "Handwritten digit classifier (8x8 pixels) trained on the UCI digits data",
            ["vision", "image-classification", "digits", "example"],
        ),
        "model": {"file": "model.onnx", "outputs": {"probabilities": {"labels": "labels.txt"}}},
        "requires": dict(REQUIRES),
    }
    labels = "".join(f"{i}\n" for i in range(10))
    kind, other = type(fit().classifier).__name__, fit().runner_up
    return Package(manifest, _readme(kind, other, correct, total), build_model(), {"labels.txt": labels},
                   self_test=True, variants=({"float16": True},))
