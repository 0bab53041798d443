"""Pipeline packages: no model of their own, just an ordered list of dependency steps."""

from __future__ import annotations

from examples.common import REQUIRES, Package, package_table

_SPEC = ">=1,<2"


def _pipeline(name: str, description: str, tags: list[str], steps: list[str], readme: str) -> Package:
    manifest = {
        "package": package_table(name, description, tags),
        "dependencies": {step: _SPEC for step in steps},
        "requires": dict(REQUIRES),
        "pipeline": {"steps": steps},
    }
    return Package(manifest, readme)


def digits_classifier() -> Package:
    """Build the digits-classifier pipeline: digits-preprocess then digits."""
    readme = """# digits-classifier

Classifies raw 8x8 handwritten digits end to end by running two packages in order:

1. `digits-preprocess`: `pixels` int64 `[N, 8, 8]` (values 0-16) -> `features` float32 `[N, 64]`
2. `digits`: `features` -> `label` int64 `[N]`, `probabilities` float32 `[N, 10]`

See the `digits` README for the held-out accuracy.
"""
    return _pipeline(
        "digits-classifier", "Raw 8x8 digit pixels to digit labels (digits-preprocess + digits)",
        ["vision", "image-classification", "digits", "pipeline", "example"],
        ["digits-preprocess", "digits"], readme,
    )


def imagenet_classifier() -> Package:
    """Build the imagenet-classifier pipeline: imagenet-preprocess, resnet18, topk."""
    readme = """# imagenet-classifier

Runs three packages in order:

1. `imagenet-preprocess`: `image` uint8 `[H, W, 3]` -> `pixels` float32 `[1, 3, 224, 224]`
2. `resnet18`: `pixels` -> `logits` float32 `[1, 1000]`
3. `topk`: `logits` -> `scores` float32 `[1, 5]`, `indices` int64 `[1, 5]`

**The resnet18 example has random weights, so the predictions are meaningless.**
The pipeline demonstrates wiring, not classification. Class names are the
placeholders `class 0` ... `class 999`.
"""
    return _pipeline(
        "imagenet-classifier", "RGB image to top-5 classes (imagenet-preprocess + resnet18 + topk; random weights)",
        ["vision", "image-classification", "imagenet", "pipeline", "example"],
        ["imagenet-preprocess", "resnet18", "topk"], readme,
    )
