"""manifest.json: strict parsing (every field, one bad value at a time), canonical bytes whatever the
input order, and round trips (hand-picked and property-based).
"""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from formatkit import DIGEST, MODEL, PIPELINE_EXAMPLE, load_toml, pep440_versions, pkg, valid_names
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from nnpm.errors import ManifestError
from nnpm.format.fields import is_digest
from nnpm.format.manifest import FORMAT, FileEntry, Manifest, Signature, TensorSpec
from nnpm.format.project import (
    ModelSection,
    OutputInfo,
    Project,
)

# ---------------------------------------------------------------- manifest.json

def _manifest(**changes) -> Manifest:
    project = Project(
        name="demo", version=Version("1.0.0"), description="A demo", license="MIT", readme="README.md",
        tags=("vision",), models={"model": ModelSection("model.onnx", {"y": OutputInfo("labels.txt")})},
        dependencies={"other": SpecifierSet(">=1,<2")}, requires={"onnxruntime": SpecifierSet(">=1.17")},
        include=("assets/a.txt",))
    files = (FileEntry("README.md", 3, "1" * 64), FileEntry("assets/a.txt", 0, "2" * 64),
             FileEntry("labels.txt", 5, "3" * 64), FileEntry("model.onnx", 100, "4" * 64))
    sig = Signature(inputs=(TensorSpec("x", "float32", ("N", 4)), TensorSpec("m", "int64", (None,))),
                    outputs=(TensorSpec("y", "float16", None),))
    fields = dict(project=project, files=files, signature=sig, opsets={"": 17, "com.example": 1},
                  ir_version=8, params=15) | changes
    return Manifest(**fields)


def _valid_dict() -> dict:
    return copy.deepcopy(_manifest().to_dict())


def test_manifest_round_trips_through_json():
    m = _manifest()
    raw = m.to_json()
    again = Manifest.from_json(raw)
    assert again == m
    assert again.to_json() == raw


def test_pipeline_manifest_round_trips_through_json(tmp_path):
    project, _ = load_toml(tmp_path, PIPELINE_EXAMPLE)
    m = Manifest(project=project, files=())
    again = Manifest.from_json(m.to_json())
    assert again == m and again.to_json() == m.to_json()
    assert m.to_dict()["signature"] is None


def test_manifest_json_is_canonical_whatever_the_input_order():
    data = _valid_dict()
    shuffled = dict(reversed(list(data.items())))
    shuffled["package"] = dict(reversed(list(shuffled["package"].items())))
    shuffled["opsets"] = dict(reversed(list(shuffled["opsets"].items())))
    assert Manifest.from_dict(shuffled).to_json() == _manifest().to_json()


def test_manifest_json_bytes_are_pinned():
    # The registry hashes these bytes; any change to the canonical form breaks published hashes.
    m = Manifest(project=Project(name="demo", version=Version("1.0"), models={"model": ModelSection("m.onnx")}),
                 files=(FileEntry("m.onnx", 7, "a" * 64),),
                 signature=Signature((TensorSpec("x", "float32", ("N", 2)),), ()), opsets={"": 17},
                 ir_version=8, params=0)
    assert m.to_json() == (
        '{\n "files": [\n  {\n   "path": "m.onnx",\n   "sha256": "' + "a" * 64 + '",\n   "size": 7\n  }\n ],\n'
        ' "format": 1,\n "ir_version": 8,\n "model": {\n  "file": "m.onnx"\n },\n'
        ' "opsets": {\n  "": 17\n },\n "package": {\n  "name": "demo",\n  "version": "1.0"\n },\n'
        ' "params": 0,\n "signature": {\n  "inputs": [\n   {\n    "dtype": "float32",\n    "name": "x",\n'
        '    "shape": [\n     "N",\n     2\n    ]\n   }\n  ],\n  "outputs": []\n }\n}\n').encode()


def test_manifest_normalises_name_and_version_from_dict():
    data = _valid_dict()
    data["package"] |= {"name": "Demo_Package", "version": "01.0"}
    data["dependencies"] = {"Other.Thing": ">=1"}
    m = Manifest.from_dict(data)
    assert m.name == "demo-package"
    assert m.to_dict()["package"]["version"] == "1.0"
    assert list(m.to_dict()["dependencies"]) == ["other-thing"]


def _set(path: str, value):
    """A mutation of the valid manifest dict: set a dotted path (list indexes as ints); value DROP deletes."""
    def mutate(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if value is DROP:
            del d[int(last) if isinstance(d, list) else last]
        else:
            d[int(last) if isinstance(d, list) else last] = value
    return mutate


DROP = object()


def _files(*entries) -> list:
    return [{"path": p, "size": 1, "sha256": DIGEST} for p in entries]


BAD_MANIFEST = [
    ("format-missing", _set("format", DROP), "format"),
    ("format-future", _set("format", 2), "format"),
    ("format-string", _set("format", "1"), "format"),
    ("unknown-key", _set("extra", 1), "extra"),
    ("files-missing", _set("files", DROP), "files"),
    ("files-not-list", _set("files", {"model.onnx": DIGEST}), "files"),
    ("file-entry-not-table", _set("files.0", "README.md"), "files[0]"),
    ("file-entry-unknown-key", _set("files.0.mode", 420), "files[0].mode"),
    ("digest-uppercase", _set("files.0.sha256", "A" * 64), "files[0].sha256"),
    ("digest-short", _set("files.0.sha256", "a" * 63), "files[0].sha256"),
    ("digest-prefixed", _set("files.0.sha256", "sha256:" + "a" * 64), "files[0].sha256"),
    ("digest-integer", _set("files.0.sha256", 0), "files[0].sha256"),
    ("digest-missing", _set("files.0.sha256", DROP), "files[0].sha256"),
    ("size-negative", _set("files.0.size", -1), "files[0].size"),
    ("size-bool", _set("files.0.size", True), "files[0].size"),
    ("size-float", _set("files.0.size", 3.0), "files[0].size"),
    ("size-string", _set("files.0.size", "3"), "files[0].size"),
    ("path-escapes", _set("files.0.path", "../README.md"), "files[0].path"),
    ("path-absolute", _set("files.0.path", "/etc/passwd"), "files[0].path"),
    ("path-backslash", _set("files.0.path", "assets\\a.txt"), "files[0].path"),
    ("path-duplicate", _set("files", _files("README.md", "README.md", "labels.txt", "model.onnx")), "files"),
    ("files-unsorted", _set("files", _files("model.onnx", "README.md", "labels.txt")), "files"),
    ("file-and-folder", _set("files", _files("README.md", "labels.txt", "model.onnx", "model.onnx/x")),
     "files"),
    ("declared-model-not-listed", _set("files", _files("README.md", "assets/a.txt", "labels.txt")), "files"),
    ("declared-include-not-listed", _set("files", _files("README.md", "labels.txt", "model.onnx")), "files"),
    ("declared-labels-not-listed", _set("files", _files("README.md", "assets/a.txt", "model.onnx")), "files"),
    ("signature-missing-for-model", _set("signature", None), "signature"),
    ("signature-not-table", _set("signature", []), "signature"),
    ("signature-unknown-key", _set("signature.attrs", {}), "signature.attrs"),
    ("signature-inputs-missing", _set("signature.inputs", DROP), "signature.inputs"),
    ("signature-inputs-not-list", _set("signature.inputs", {"x": "float32"}), "signature.inputs"),
    ("spec-not-table", _set("signature.inputs.0", "x"), "signature.inputs[0]"),
    ("spec-name-integer", _set("signature.inputs.0.name", 1), "signature.inputs[0]"),
    ("spec-dtype-missing", _set("signature.inputs.0.dtype", DROP), "signature.inputs[0]"),
    ("spec-unknown-key", _set("signature.outputs.0.layout", "NCHW"), "signature.outputs[0].layout"),
    ("shape-string", _set("signature.inputs.0.shape", "N,4"), "signature.inputs[0]"),
    ("shape-float-dim", _set("signature.inputs.0.shape", [1.5]), "signature.inputs[0]"),
    ("shape-bool-dim", _set("signature.inputs.0.shape", [True]), "signature.inputs[0]"),
    ("shape-nested", _set("signature.inputs.0.shape", [[1]]), "signature.inputs[0]"),
    ("opsets-not-table", _set("opsets", [17]), "opsets"),
    ("opset-string", _set("opsets.", "17"), "opsets"),
    ("opset-bool", _set("opsets.", True), "opsets"),
    ("ir-version-string", _set("ir_version", "8"), "ir_version"),
    ("ir-version-bool", _set("ir_version", True), "ir_version"),
    ("params-negative", _set("params", -1), "params"),
    ("params-float", _set("params", 1.0), "params"),
    ("package-missing", _set("package", DROP), "package"),
    ("name-invalid", _set("package.name", "../evil"), "package.name"),
    ("version-invalid", _set("package.version", "one"), "package.version"),
    ("include-escapes", _set("include", ["../x"]), "files.include"),
]


@pytest.mark.parametrize("mutate,key", [c[1:] for c in BAD_MANIFEST], ids=[c[0] for c in BAD_MANIFEST])
def test_manifest_from_dict_is_strict(mutate, key):
    data = _valid_dict()
    mutate(data)
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(data, file="x-1.0.manifest.json")
    assert info.value.file == "x-1.0.manifest.json"
    assert info.value.key == key
    assert info.value.one_line().startswith(f"x-1.0.manifest.json: {key}: ")


@pytest.mark.parametrize("value", [True, 1.0], ids=["bool", "float"])
def test_manifest_format_must_be_the_integer_1(value):
    data = _valid_dict()
    data["format"] = value
    with pytest.raises(ManifestError):
        Manifest.from_dict(data)


def test_digest_with_trailing_newline_is_rejected():
    assert not is_digest("a" * 64 + "\n")
    data = _valid_dict()
    data["files"][0]["sha256"] = "a" * 64 + "\n"
    with pytest.raises(ManifestError):
        Manifest.from_dict(data)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff", b"[" * 100_000, b'{"format": 1'],
                         ids=["empty", "unclosed", "list", "null", "not-utf8", "deep", "truncated"])
def test_manifest_from_json_rejects_garbage_with_manifest_error(raw):
    with pytest.raises(ManifestError):
        Manifest.from_json(raw)


def test_manifest_signature_shapes_keep_ints_strings_and_unknowns():
    m = Manifest.from_dict(_valid_dict())
    assert m.signature.inputs[0].shape == ("N", 4)
    assert m.signature.inputs[1].shape == (None,)
    assert m.signature.outputs[0].shape is None
    assert [t.shape_text() for t in m.signature.inputs + m.signature.outputs] == ["[N, 4]", "[?]", "?"]


def test_empty_homepage_round_trips(tmp_path):
    project, _ = load_toml(tmp_path, pkg(homepage='""', repository='""') + MODEL)
    m = dataclasses.replace(_manifest(), project=dataclasses.replace(project, readme=None))
    assert Manifest.from_json(m.to_json()) == m



# ---------------------------------------------------------------- manifest round trip (property test)

_tag = st.text("abcdefghij-", min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(name=valid_names, version=pep440_versions(), tags=st.lists(_tag, max_size=4),
       description=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp")), max_size=30),
       deps=st.dictionaries(valid_names, st.sampled_from(
           ["", ">=1", ">=1.0,<2", "==1.2.*", "~=1.4", "!=3"]), max_size=3),
       shape=st.lists(st.one_of(st.integers(0, 10), st.text("NSeq", min_size=1, max_size=3), st.none()),
                      max_size=4))
def test_manifest_round_trip_property(name, version, tags, description, deps, shape):
    raw = {"format": FORMAT, "package": {"name": name, "version": version, "description": description,
                                         "tags": tags},
           "model": {"file": "model.onnx"}, "dependencies": deps,
           "signature": {"inputs": [{"name": "x", "dtype": "float32", "shape": shape}], "outputs": []},
           "opsets": {"": 17}, "ir_version": 8, "params": 3,
           "files": [{"path": "model.onnx", "size": 10, "sha256": DIGEST}]}
    canon = {canonicalize_name(d) for d in deps}
    assume(len(canon) == len(deps) and canonicalize_name(name) not in canon)
    m = Manifest.from_dict(raw)
    raw_json = m.to_json()
    again = Manifest.from_json(raw_json)
    assert again == m
    assert again.to_json() == raw_json
    assert json.loads(raw_json)["package"]["name"] == canonicalize_name(name)
