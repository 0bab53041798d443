"""ImageNet-style helpers around resnet18: image preprocessing and top-5 postprocessing."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from examples.common import REQUIRES, Package, imagenet_placeholder_labels, make_model, package_table

SIZE = 224
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
K = 5


def _const(name: str, values: list[float] | list[int], dtype: type, shape: list[int] | None = None) -> onnx.TensorProto:
    array = np.array(values, dtype=dtype)
    return numpy_helper.from_array(array.reshape(shape) if shape else array, name)


def preprocess_model() -> onnx.ModelProto:
    """Return `image` uint8 [H, W, 3] RGB -> `pixels` float32 [1, 3, 224, 224], resized and normalised."""
    inits = [
        _const("batch_axis", [0], np.int64),
        _const("sizes", [1, 3, SIZE, SIZE], np.int64),
        _const("max_value", [255.0], np.float32),
        _const("mean", MEAN, np.float32, [1, 3, 1, 1]),
        _const("std", STD, np.float32, [1, 3, 1, 1]),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["image_f"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["image_f"], ["chw"], name="hwc_to_chw", perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["chw", "batch_axis"], ["nchw"], name="add_batch"),
        # roi and scales are omitted (empty names) because the target is given as sizes.
        helper.make_node("Resize", ["nchw", "", "", "sizes"], ["resized"], name="resize", mode="linear"),
        helper.make_node("Div", ["resized", "max_value"], ["unit"], name="to_unit"),
        helper.make_node("Sub", ["unit", "mean"], ["centered"], name="center"),
        helper.make_node("Div", ["centered", "std"], ["pixels"], name="normalise"),
    ]
    graph = helper.make_graph(
        nodes, "imagenet_preprocess",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["H", "W", 3])],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        initializer=inits,
    )
    return make_model(graph)


def topk_model() -> onnx.ModelProto:
    """Return `logits` float32 [N, 1000] -> softmax top-5 `scores` float32 [N, 5] and `indices` int64 [N, 5]."""
    nodes = [
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1),
        helper.make_node("TopK", ["probabilities", "k"], ["scores", "indices"], name="topk",
                         axis=-1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes, "topk",
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", K]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, ["N", K]),
        ],
        initializer=[_const("k", [K], np.int64)],
    )
    return make_model(graph)


_PREPROCESS_README = f"""# imagenet-preprocess

Turns one RGB image into the normalised tensor ImageNet classifiers such as
`resnet18` expect: cast to float, HWC -> CHW, add a batch axis, bilinear resize to
{SIZE}x{SIZE} (ONNX `Resize`, mode `linear`, given as `sizes`), divide by 255, subtract
the ImageNet mean {MEAN} and divide by the standard deviation {STD}.

The image is resized straight to {SIZE}x{SIZE}, so the aspect ratio is not kept
(torchvision's usual recipe resizes to 256 and centre-crops instead).

## Signature

| | name | type | shape |
|---|---|---|---|
| input | `image` | uint8 | `[H, W, 3]`, RGB, channels last |
| output | `pixels` | float32 | `[1, 3, {SIZE}, {SIZE}]` |
"""

_TOPK_README = f"""# topk

Softmax over the last axis of a batch of 1000-class logits, then the {K} most
probable classes, highest first.

## Signature

| | name | type | shape |
|---|---|---|---|
| input | `logits` | float32 | `[N, 1000]` |
| output | `scores` | float32 | `[N, {K}]`, softmax probabilities, descending |
| output | `indices` | int64 | `[N, {K}]`, class indices (names in `labels.txt`) |

`labels.txt` has the same 1000 placeholder lines (`class 0` ... `class 999`) as
`resnet18`: the real ImageNet class names are not available offline.
"""


def preprocess_package() -> Package:
    """Build the imagenet-preprocess package."""
    manifest = {
        "package": package_table(
            "imagenet-preprocess", "Resizes and normalises an RGB uint8 image for ImageNet classifiers",
            ["vision", "preprocessing", "imagenet", "example"],
        ),
        "model": {"file": "model.onnx"},
        "requires": dict(REQUIRES),
    }
    return Package(manifest, _PREPROCESS_README, preprocess_model())


def topk_package() -> Package:
    """Build the topk package."""
    manifest = {
        "package": package_table(
            "topk", "Softmax and top-5 classes for 1000-class logits",
            ["postprocessing", "image-classification", "imagenet", "example"],
        ),
        "model": {"file": "model.onnx", "outputs": {"indices": {"labels": "labels.txt"}}},
        "requires": dict(REQUIRES),
    }
    return Package(manifest, _TOPK_README, topk_model(), {"labels.txt": imagenet_placeholder_labels()})
