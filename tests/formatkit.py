"""The package format's building blocks for tests: nnpm.toml snippets and loaders, and hypothesis
strategies for PEP 503 names and PEP 440 versions.

- ``PKG``, ``MODEL``: a minimal [package] and [model] table; ``DIGEST``: a valid sha256;
  ``DESIGN_EXAMPLE``, ``PIPELINE_EXAMPLE``: the documented nnpm.toml of a model and of a pipeline;
  ``pkg(**fields)``: [package] with raw TOML values (None drops a key);
- ``load_toml(tmp_path, text)`` → (Project, path); ``toml_error(tmp_path, text)`` → (ManifestError, path);
- ``VALID_NAME``: a strict statement of PEP 508 names, the oracle for the property tests;
  ``valid_names`` and ``pep440_versions()``: hypothesis strategies.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import strategies as st

from nnpm.errors import ManifestError
from nnpm.format.project import load_project

PKG = '[package]\nname = "demo"\nversion = "1.0.0"\n'
MODEL = '[model]\nfile = "model.onnx"\n'
DIGEST = "0" * 64

DESIGN_EXAMPLE = """
[package]
name = "ResNet_18"
version = "1.0"
description = "ResNet-18 image classifier, ImageNet-1k classes"
license = "Apache-2.0"
readme = "README.md"
tags = ["vision", "image-classification"]
authors = ["A. Author <a@example.org>"]
homepage = "https://example.org"

[model]
file = "model.onnx"

[model.outputs.logits]
labels = "labels.txt"

[dependencies]
"Imagenet.Preprocess" = ">=1.0,<2"
other = "*"

[requires]
onnxruntime = ">=1.17"

[files]
include = ["labels.txt", "README.md", "assets/notes.txt"]
"""

PIPELINE_EXAMPLE = """
[package]
name = "imagenet-classifier"
version = "1.0.0"

[dependencies]
imagenet-preprocess = ">=1,<2"
resnet18 = ">=1,<2"

[pipeline]
steps = ["imagenet-preprocess", "resnet18"]

[pipeline.connect]
"resnet18.input" = "imagenet-preprocess.pixels"

[pipeline.outputs]
logits = "resnet18.logits"
"""


# A strict statement of PEP 508 names, used as the oracle for the property tests.
VALID_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")

valid_names = st.from_regex(r"\A[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?\Z")


def load_toml(tmp_path, text: str | bytes):
    """Write `text` as tmp_path/nnpm.toml and load it: (Project, path)."""
    path = tmp_path / "nnpm.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_project(tmp_path), path


def toml_error(tmp_path, text: str | bytes) -> tuple[ManifestError, str]:
    """Write `text` as tmp_path/nnpm.toml; the ManifestError loading it raises, and the file's path."""
    path = tmp_path / "nnpm.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ManifestError) as info:
        load_project(tmp_path)
    return info.value, str(path)


def pkg(**fields: str) -> str:
    """[package] with name/version defaults, each value given as raw TOML; None drops a key."""
    values = {"name": '"demo"', "version": '"1.0.0"'} | fields
    return "[package]\n" + "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)


@st.composite
def pep440_versions(draw) -> str:
    """Valid PEP 440 versions in their many spellings (pre/post/dev/local, epochs, 'v', case)."""
    text = draw(st.sampled_from(["", "v", "V"]))
    if draw(st.booleans()):
        text += f"{draw(st.integers(0, 3))}!"
    text += ".".join(str(draw(st.integers(0, 30))) for _ in range(draw(st.integers(1, 4))))
    if draw(st.booleans()):
        text += draw(st.sampled_from(["", ".", "-", "_"])) + draw(
            st.sampled_from(["a", "b", "rc", "alpha", "beta", "c", "pre", "preview", "RC"])) + str(
            draw(st.integers(0, 5)))
    if draw(st.booleans()):
        text += draw(st.sampled_from([".post", "-post", "post", "-r", ".rev", "-"])) + str(draw(st.integers(0, 5)))
    if draw(st.booleans()):
        text += draw(st.sampled_from([".dev", "dev", "-dev", "_DEV"])) + str(draw(st.integers(0, 5)))
    if draw(st.booleans()):
        text += "+" + draw(st.from_regex(r"\A[a-z0-9]{1,4}([._-][a-z0-9]{1,4}){0,2}\Z"))
    return text
