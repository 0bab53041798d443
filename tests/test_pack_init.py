"""`nnpm init` → `nnpm pack`: a package folder from a bare ONNX file packs unchanged; init writes nothing
when it refuses."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import modelkit as mk
import pytest

from nnpm.author.init import init_package, starter_toml
from nnpm.author.pack import build, pack
from nnpm.errors import ManifestError, ModelError
from nnpm.format.archive import extract
from nnpm.format.project import project_from_dict


def test_starter_toml_is_accepted_unchanged():
    project = project_from_dict(tomllib.loads(starter_toml("my-model", "model.onnx")))
    assert project.name == "my-model" and str(project.version) == "0.1.0"
    assert project.model.file == "model.onnx"


def test_init_then_pack_without_edits(tmp_path):
    source = mk.save(mk.multi_io(), tmp_path / "exports" / "net.onnx")
    toml_path, info = init_package(tmp_path / "My_Model", source)   # named after its folder, as users mean
    assert toml_path == tmp_path / "My_Model" / "nnpm.toml"
    assert (tmp_path / "My_Model" / "model.onnx").read_bytes() == source.read_bytes()
    built, archive, _ = pack(tmp_path / "My_Model")
    assert built.manifest.name == "my-model"
    assert built.manifest.signature == info.signature
    assert archive.name == "my-model-0.1.0.nnpm"
    assert [f.path for f in built.manifest.files] == ["README.md", "model.onnx"]
    assert built.manifest.project.readme == "README.md"


@pytest.mark.parametrize("location", ["weights.bin", "data/weights.bin"])
def test_init_copies_external_data_and_packs(tmp_path, location):
    source = mk.save(mk.linear(), tmp_path / "exports" / "net.onnx", location=location)
    _, info = init_package(tmp_path / "pkg", source, name="Net")
    assert info.external_files == (location,)
    assert (tmp_path / "pkg" / location).read_bytes() == (tmp_path / "exports" / location).read_bytes()
    built, archive, _ = pack(tmp_path / "pkg", split=False)   # the author's layout, as init copied it
    assert [f.path for f in built.manifest.files] == sorted(["README.md", "model.onnx", location])
    assert built.manifest.name == "net"
    manifest = extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / location).read_bytes() == (tmp_path / "exports" / location).read_bytes()
    assert manifest == built.manifest


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_init_refuses_a_folder_with_nnpm_toml_and_writes_nothing(tmp_path):
    source = mk.save(mk.linear(), tmp_path / "net.onnx")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "nnpm.toml").write_text("# mine\n")
    with pytest.raises(ManifestError, match="exists already"):
        init_package(tmp_path / "pkg", source)
    assert _tree(tmp_path / "pkg") == ["nnpm.toml"]
    assert (tmp_path / "pkg" / "nnpm.toml").read_text() == "# mine\n"


def test_init_refuses_to_overwrite_a_model_and_writes_nothing(tmp_path):
    source = mk.save(mk.linear(), tmp_path / "net.onnx", location="weights.bin")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "weights.bin").write_bytes(b"mine")
    with pytest.raises(ManifestError, match="exists already"):
        init_package(tmp_path / "pkg", source)
    assert _tree(tmp_path / "pkg") == ["weights.bin"]
    assert (tmp_path / "pkg" / "weights.bin").read_bytes() == b"mine"


@pytest.mark.parametrize("make,error", [
    (lambda p: None, ManifestError),
    (lambda p: p.write_bytes(os.urandom(512)), ModelError),
    (lambda p: mk.save(mk.undefined_input(), p), ModelError),
    (lambda p: p.mkdir(), ManifestError),
], ids=["missing", "random-bytes", "checker-fails", "folder"])
def test_init_from_a_bad_source_writes_nothing(tmp_path, make, error):
    source = tmp_path / "net.onnx"
    make(source)
    with pytest.raises(error):
        init_package(tmp_path / "pkg", source)
    assert not (tmp_path / "pkg").exists()


def test_init_where_neither_folder_nor_file_is_a_package_name_says_use_name(tmp_path):
    source = mk.save(mk.linear(), tmp_path / "my model!.onnx")
    with pytest.raises(ManifestError, match="is a package name") as info:
        init_package(tmp_path / "my pkg!", source)
    assert "--name" in info.value.hint
    assert not (tmp_path / "my pkg!").exists()
    init_package(tmp_path / "my pkg!", source, name="my-model")
    assert build(tmp_path / "my pkg!").manifest.name == "my-model"
