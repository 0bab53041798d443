"""ResNet-18 (torchvision's architecture) written with onnx.helper and filled with seeded random weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from examples.common import REQUIRES, Package, imagenet_placeholder_labels, make_model, package_table

NAME = "resnet18"
SEED = 0
NUM_CLASSES = 1000
STAGES = [(64, 1), (128, 2), (256, 2), (512, 2)]  # (channels, stride of the first block)


class _Builder:
    """Accumulates nodes and initializers; names follow torchvision's state_dict keys."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def param(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int, pad: int) -> str:
        # He-normal with fan_in so activations keep roughly unit variance through the stack.
        std = np.sqrt(2.0 / (cin * k * k))
        w = self.param(f"{name}.weight", self.rng.standard_normal((cout, cin, k, k), dtype=np.float32) * std)
        self.nodes.append(helper.make_node(
            "Conv", [x, w], [name], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
        ))
        return name

    def bn(self, x: str, name: str, c: int) -> str:
        # Identity-like statistics: no trained data exists, and this keeps outputs finite.
        ins = [
            self.param(f"{name}.weight", np.ones(c)),
            self.param(f"{name}.bias", np.zeros(c)),
            self.param(f"{name}.running_mean", np.zeros(c)),
            self.param(f"{name}.running_var", np.ones(c)),
        ]
        self.nodes.append(helper.make_node("BatchNormalization", [x, *ins], [name], name=name, epsilon=1e-5))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def basic_block(self, x: str, name: str, cin: int, cout: int, stride: int) -> str:
        out = self.conv(x, f"{name}.conv1", cin, cout, 3, stride, 1)
        out = self.op("Relu", [self.bn(out, f"{name}.bn1", cout)], f"{name}.relu1")
        out = self.bn(self.conv(out, f"{name}.conv2", cout, cout, 3, 1, 1), f"{name}.bn2", cout)
        identity = x
        if stride != 1 or cin != cout:
            identity = self.conv(x, f"{name}.downsample.0", cin, cout, 1, stride, 0)
            identity = self.bn(identity, f"{name}.downsample.1", cout)
        return self.op("Relu", [self.op("Add", [out, identity], f"{name}.add")], f"{name}.relu2")


def build_model(seed: int = SEED) -> onnx.ModelProto:
    """Return the ResNet-18 graph with seeded random weights, input `input` and output `logits`."""
    b = _Builder(np.random.default_rng(seed))
    x = b.conv("input", "conv1", 3, 64, 7, 2, 3)
    x = b.op("Relu", [b.bn(x, "bn1", 64)], "relu")
    x = b.op("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for i, (cout, stride) in enumerate(STAGES, start=1):
        x = b.basic_block(x, f"layer{i}.0", cin, cout, stride)
        x = b.basic_block(x, f"layer{i}.1", cout, cout, 1)
        cin = cout
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x], "avgpool")], "flatten", axis=1)
    # torchvision's nn.Linear default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / np.sqrt(cin)
    w = b.param("fc.weight", b.rng.uniform(-bound, bound, (NUM_CLASSES, cin)))
    bias = b.param("fc.bias", b.rng.uniform(-bound, bound, NUM_CLASSES))
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        b.nodes, "resnet18",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
        initializer=b.inits,
    )
    return make_model(graph)


def parameter_count(model: onnx.ModelProto, trainable_only: bool = False) -> int:
    """Count initializer elements, optionally leaving out BatchNorm running mean/variance."""
    return sum(
        int(np.prod(t.dims))
        for t in model.graph.initializer
        if not (trainable_only and t.name.endswith(("running_mean", "running_var")))
    )


def _readme(total: int, trainable: int) -> str:
    return f"""# resnet18

The ResNet-18 architecture exactly as in torchvision (`torchvision.models.resnet18`),
written node by node with `onnx.helper`.

**The weights are random** (numpy `default_rng({SEED})`, He-normal convolutions,
identity BatchNorm statistics). The outputs are meaningless; this package exists to
exercise nnpm with a realistically sized model (about 47 MB of float32 weights
stored inside `model.onnx`). Do not use it to classify anything.

## Signature

| | name | type | shape |
|---|---|---|---|
| input | `input` | float32 | `[N, 3, 224, 224]` (normalised RGB, NCHW) |
| output | `logits` | float32 | `[N, 1000]` |

## Parameters

- {trainable:,} trainable parameters (the same count torchvision reports)
- {total:,} values in total including BatchNorm running mean/variance

## Labels

`labels.txt` has 1000 lines `class 0` ... `class 999`: the real ImageNet class names
are not available offline, so these are placeholders. Line *i* names class *i*.

Pair it with `imagenet-preprocess` and `topk`, or use the `imagenet-classifier` pipeline.
"""


def package() -> Package:
    """Build the resnet18 package."""
    model = build_model()
    manifest = {
        "package": package_table(
            NAME, "ResNet-18 architecture with random weights (outputs are meaningless)",
            ["vision", "image-classification", "example"],
        ),
        "model": {"file": "model.onnx", "outputs": {"logits": {"labels": "labels.txt"}}},
        "requires": dict(REQUIRES),
    }
    readme = _readme(parameter_count(model), parameter_count(model, trainable_only=True))
    return Package(manifest, readme, model, {"labels.txt": imagenet_placeholder_labels()}, self_test=True,
                   variants=({"quantize": "int8"}, {"quantize": "int8", "calibrate": "tests/inputs.npz", "name": "int8-static"}))
