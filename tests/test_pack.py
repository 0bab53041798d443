"""`nnpm pack` and the .nnpm archive: deterministic bytes and strict extraction (init → pack: test_pack_init.py)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import modelkit as mk
import pytest
from packages import DEMO, write_package

from nnpm.author.pack import build, default_archive_name, pack
from nnpm.errors import IntegrityError, ManifestError, PackageSafetyError
from nnpm.format.archive import extract, read_manifest
from nnpm.format.manifest import MANIFEST_NAME, Manifest
from nnpm.hashing import file_digest

FILES = {"labels.txt": b"cat\ndog\nbird\n", "README.md": b"# demo\n", "assets/notes.txt": b"notes\n",
         "assets/z/deep.txt": b"deep\n"}
EXTRA = ('[model.outputs.y]\nlabels = "labels.txt"\n'
         '[files]\ninclude = ["assets/z/deep.txt", "assets/notes.txt"]\n')


@pytest.fixture
def folder(tmp_path) -> Path:
    """A model package with external data in a subfolder, labels, a README and assets."""
    return write_package(tmp_path / "src", **DEMO, model=mk.linear(), location="data/weights.bin", files=FILES,
                         extra_toml=EXTRA, package_extra='readme = "README.md"\nlicense = "MIT"\ntags = ["test"]\n')


def _pack_to(folder: Path, out_dir: Path, *, split: bool = True) -> tuple[bytes, bytes]:
    _, archive, manifest = pack(folder, out_dir / "demo-1.0.0.nnpm", split=split)
    return archive.read_bytes(), manifest.read_bytes()


def _members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return tar.getmembers()


# ---------------------------------------------------------------- build

def test_build_lists_every_file_sorted_with_size_and_digest(folder):
    built = build(folder)
    m = built.manifest
    expected = sorted(["model.onnx", "data/weights.bin", "labels.txt", "README.md", "assets/notes.txt",
                       "assets/z/deep.txt"])
    assert [f.path for f in m.files] == expected
    for entry in m.files:
        assert file_digest(folder / entry.path) == (entry.sha256, entry.size)
        assert built.paths[entry.path] == folder / entry.path
    assert m.params == 15 and m.opsets == {"": mk.OPSET} and m.ir_version == mk.IR_VERSION
    assert [t.name for t in m.signature.inputs] == ["x"]
    assert Manifest.from_json(m.to_json()) == m


def test_build_writes_nothing(folder):
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    build(folder)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_labels_for_an_output_the_graph_lacks_are_refused(tmp_path):
    folder = write_package(tmp_path, **DEMO, model=mk.linear(), files={"labels.txt": b"a\n"},
                           extra_toml='[model.outputs.logits]\nlabels = "labels.txt"\n')
    with pytest.raises(ManifestError, match="no output 'logits'") as info:
        build(folder)
    assert info.value.key == "model.outputs.logits"
    assert "y" in info.value.one_line()


@pytest.mark.parametrize("include,error", [
    ('["missing.txt"]', "does not exist"),
    ('["assets"]', "not a regular file"),
], ids=["missing", "folder"])
def test_bad_include_on_disk_is_refused(tmp_path, include, error):
    folder = write_package(tmp_path, **DEMO, model=mk.linear(), files={"assets/a.txt": b"a"},
                           extra_toml=f"[files]\ninclude = {include}\n")
    with pytest.raises(PackageSafetyError, match=error):
        build(folder)


def test_include_under_a_file_is_a_safety_error(tmp_path):
    folder = write_package(tmp_path, **DEMO, model=mk.linear(), extra_toml='[files]\ninclude = ["model.onnx/x"]\n')
    with pytest.raises(PackageSafetyError):
        build(folder)


def test_symlinked_include_is_refused(tmp_path):
    folder = write_package(tmp_path / "pkg", **DEMO, model=mk.linear(),
                           extra_toml='[files]\ninclude = ["labels.txt"]\n')
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", folder / "labels.txt")
    with pytest.raises(PackageSafetyError, match="symbolic link"):
        build(folder)


def test_hard_linked_include_is_refused(tmp_path):
    folder = write_package(tmp_path / "pkg", **DEMO, model=mk.linear(), files={"labels.txt": b"a"},
                           extra_toml='[files]\ninclude = ["labels.txt"]\n')
    os.link(folder / "labels.txt", tmp_path / "other")
    with pytest.raises(PackageSafetyError, match="hard link"):
        build(folder)


# ---------------------------------------------------------------- deterministic bytes

def test_packing_twice_gives_identical_bytes(folder, tmp_path):
    assert _pack_to(folder, tmp_path / "a") == _pack_to(folder, tmp_path / "b")


def test_packing_after_touching_mtimes_and_modes_gives_identical_bytes(folder, tmp_path):
    first = _pack_to(folder, tmp_path / "a")
    for path in folder.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
        if path.is_file():
            path.chmod(0o600)
    assert _pack_to(folder, tmp_path / "b") == first


def test_packing_a_copy_elsewhere_gives_identical_bytes(folder, tmp_path):
    first = _pack_to(folder, tmp_path / "a")
    copy = shutil.copytree(folder, tmp_path / "somewhere" / "else" / "entirely")
    assert _pack_to(copy, tmp_path / "b") == first


def test_default_output_is_dist_name_version(folder):
    built, archive, manifest = pack(folder)
    assert archive == folder / "dist" / "demo-1.0.0.nnpm" == folder / "dist" / default_archive_name(built.manifest)
    assert manifest == folder / "dist" / "demo-1.0.0.manifest.json"
    assert manifest.read_bytes() == built.manifest.to_json()
    assert sorted(p.name for p in (folder / "dist").iterdir()) == ["demo-1.0.0.manifest.json", "demo-1.0.0.nnpm"]


def test_packing_again_with_dist_present_gives_identical_bytes(folder):
    _, archive, manifest = pack(folder)
    first = archive.read_bytes(), manifest.read_bytes()
    _, archive, manifest = pack(folder)
    assert (archive.read_bytes(), manifest.read_bytes()) == first


def test_output_must_end_in_nnpm_and_nothing_is_written(folder, tmp_path):
    with pytest.raises(ManifestError, match=".nnpm"):
        pack(folder, tmp_path / "out" / "demo.tar")
    assert not (tmp_path / "out").exists()


def test_failed_pack_writes_nothing(tmp_path):
    folder = write_package(tmp_path, **DEMO, model=mk.linear(), version="not a version")
    with pytest.raises(ManifestError):
        pack(folder)
    assert not (folder / "dist").exists()


# ---------------------------------------------------------------- archive layout

def test_archive_holds_manifest_first_then_files_sorted(folder, tmp_path):
    # The archive's own rules, on the author's layout (data/weights.bin kept: split=False).
    built, archive, manifest_path = pack(folder, tmp_path / "demo-1.0.0.nnpm", split=False)
    members = _members(archive)
    names = [m.name for m in members]
    assert names[0] == MANIFEST_NAME
    assert names[1:] == sorted(names[1:]) == [f.path for f in built.manifest.files]
    for m in members:
        assert m.isreg() and (m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) == (0o644, 0, 0, 0, "", "")
    with tarfile.open(archive) as tar:
        assert tar.extractfile(MANIFEST_NAME).read() == manifest_path.read_bytes()
        assert tar.extractfile("data/weights.bin").read() == (folder / "data/weights.bin").read_bytes()
    assert read_manifest(archive) == built.manifest


# ---------------------------------------------------------------- extract

def test_extract_round_trips(folder, tmp_path):
    built, archive, _ = pack(folder, tmp_path / "demo-1.0.0.nnpm", split=False)
    manifest = extract(archive, tmp_path / "out")
    assert manifest == built.manifest
    got = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert got == [f.path for f in manifest.files]
    for entry in manifest.files:
        assert (tmp_path / "out" / entry.path).read_bytes() == (folder / entry.path).read_bytes()
    # An extracted package packs to the very same bytes.
    (tmp_path / "out" / "nnpm.toml").write_bytes((folder / "nnpm.toml").read_bytes())
    assert _pack_to(tmp_path / "out", tmp_path / "again", split=False)[0] == archive.read_bytes()


def _rewrite(archive: Path, out: Path, change) -> Path:
    """Copy a tar member by member through `change(info, data) -> [(info, data), ...]`."""
    with tarfile.open(archive) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for info in src.getmembers():
            data = src.extractfile(info).read() if info.isreg() else b""
            for new_info, new_data in change(info, data):
                dst.addfile(new_info, io.BytesIO(new_data) if new_info.isreg() else None)
    return out


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.fixture
def archive(folder, tmp_path) -> Path:
    return pack(folder, tmp_path / "demo-1.0.0.nnpm", split=False)[1]


def test_flipped_byte_in_a_member_is_an_integrity_error(archive, tmp_path):
    with tarfile.open(archive) as tar:
        offset = tar.getmember("data/weights.bin").offset_data
    raw = bytearray(archive.read_bytes())
    raw[offset + 5] ^= 0xFF
    bad = tmp_path / "bad.nnpm"
    bad.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="data/weights.bin"):
        extract(bad, tmp_path / "out")


def test_flipped_byte_in_every_member_is_caught(archive, tmp_path):
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name != MANIFEST_NAME and m.size]
    for i, member in enumerate(members):
        raw = bytearray(archive.read_bytes())
        raw[member.offset_data + member.size - 1] ^= 0x01
        bad = tmp_path / f"bad{i}.nnpm"
        bad.write_bytes(bytes(raw))
        with pytest.raises(IntegrityError):
            extract(bad, tmp_path / f"out{i}")


def test_truncated_archive_is_refused(archive, tmp_path):
    raw = archive.read_bytes()
    bad = tmp_path / "bad.nnpm"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises((IntegrityError, ManifestError)):
        extract(bad, tmp_path / "out")


def test_extra_member_is_refused(archive, tmp_path):
    def add(info, data):
        yield info, data
        if info.name == MANIFEST_NAME:
            extra = tarfile.TarInfo("extra.txt")
            extra.size = 3
            yield extra, b"abc"
    bad = _rewrite(archive, tmp_path / "bad.nnpm", add)
    with pytest.raises(PackageSafetyError, match="extra.txt"):
        extract(bad, tmp_path / "out")


def test_duplicate_member_is_refused(archive, tmp_path):
    def twice(info, data):
        yield info, data
        if info.name == "labels.txt":
            yield info, data
    with pytest.raises(PackageSafetyError, match="labels.txt"):
        extract(_rewrite(archive, tmp_path / "bad.nnpm", twice), tmp_path / "out")


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/escape.txt", "assets/../../escape.txt"])
def test_member_escaping_the_destination_is_refused(archive, tmp_path, name):
    def add(info, data):
        yield info, data
        if info.name == MANIFEST_NAME:
            evil = tarfile.TarInfo(name)
            evil.size = 4
            yield evil, b"evil"
    with pytest.raises(PackageSafetyError):
        extract(_rewrite(archive, tmp_path / "bad.nnpm", add), tmp_path / "x" / "out")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "x" / "escape.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE], ids=["symlink", "hardlink"])
def test_link_member_in_place_of_a_file_is_refused(archive, tmp_path, kind):
    def swap(info, data):
        yield (_link(info.name, "/etc/passwd", kind), b"") if info.name == "labels.txt" else (info, data)
    with pytest.raises(PackageSafetyError, match="link"):
        extract(_rewrite(archive, tmp_path / "bad.nnpm", swap), tmp_path / "out")
    assert not (tmp_path / "out" / "labels.txt").is_symlink()


def test_extra_symlink_member_is_refused(archive, tmp_path):
    def add(info, data):
        yield info, data
        if info.name == MANIFEST_NAME:
            yield _link("passwd", "/etc/passwd"), b""
    with pytest.raises(PackageSafetyError):
        extract(_rewrite(archive, tmp_path / "bad.nnpm", add), tmp_path / "out")
    assert not (tmp_path / "out" / "passwd").exists()


def test_missing_member_is_an_integrity_error(archive, tmp_path):
    def drop(info, data):
        if info.name != "labels.txt":
            yield info, data
    with pytest.raises(IntegrityError, match="labels.txt"):
        extract(_rewrite(archive, tmp_path / "bad.nnpm", drop), tmp_path / "out")


def test_manifest_not_first_is_refused(archive, tmp_path):
    with tarfile.open(archive) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    bad = tmp_path / "bad.nnpm"
    with tarfile.open(bad, "w") as dst:
        for m, data in members[1:] + members[:1]:
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(ManifestError, match="does not start with"):
        extract(bad, tmp_path / "out")


def test_not_an_archive_is_refused(tmp_path):
    bad = tmp_path / "bad.nnpm"
    bad.write_bytes(os.urandom(2048))
    with pytest.raises(ManifestError):
        extract(bad, tmp_path / "out")


def test_member_longer_than_its_entry_is_an_integrity_error(archive, tmp_path):
    def grow(info, data):
        if info.name == "README.md":
            info.size += 1
            data += b"!"
        yield info, data
    with pytest.raises(IntegrityError, match="README.md"):
        extract(_rewrite(archive, tmp_path / "bad.nnpm", grow), tmp_path / "out")
