"""Bundles at the format level: the tar written deterministically and read without trusting it
(nnpm/format/bundle.py), and the signed index verified offline (nnpm/format/tufverify.py) against
metadata signed here with python-tuf (tests/tufkit.py). No registry: these run in about a second.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from tufkit import TufRepo, members, rewrite

from nnpm.errors import IndexTrustError, IntegrityError, ManifestError, NnpmError, PackageSafetyError
from nnpm.format.bundle import BundledPackage, BundleInfo, BundleMetadata, read_bundle, write_bundle
from nnpm.format.tufverify import verify_index, verify_root_chain

BLOB = b"weights" * 1000
DIGEST = hashlib.sha256(BLOB).hexdigest()
PACKUMENTS = {"alpha": b'{"name":"alpha","versions":[]}', "beta-two": b'{"name":"beta-two","versions":[]}'}


def _meta() -> BundleMetadata:
    info = BundleInfo("http://registry.test", "2026-01-31T12:00:00Z",
                      (BundledPackage("alpha", "1.0.0", "a" * 64), BundledPackage("beta-two", "2.0", "b" * 64, "int8")),
                      ("alpha",))
    return BundleMetadata(info, {1: b"root1", 2: b"root2"}, {"timestamp": b"t", "snapshot": b"s", "targets": b"x",
                                                           "bins-0e": b"b"}, dict(PACKUMENTS))


def _write(tmp_path: Path, name: str = "b.nnpmb") -> Path:
    blob = tmp_path / "blob"
    blob.write_bytes(BLOB)
    out = tmp_path / name
    write_bundle(out, _meta(), [(DIGEST, len(BLOB), blob)])
    return out


def _read(path: Path, tmp_path: Path, wanted: dict | None = None) -> BundleMetadata:
    scratch = tmp_path / f"scratch-{len(list(tmp_path.iterdir()))}"
    scratch.mkdir()
    return read_bundle(path, scratch, lambda meta: {DIGEST: len(BLOB)} if wanted is None else wanted)


def test_a_bundle_writes_the_same_bytes_twice_and_reads_back(tmp_path: Path) -> None:
    first, second = _write(tmp_path, "one.nnpmb"), _write(tmp_path, "two.nnpmb")
    assert first.read_bytes() == second.read_bytes()
    names = [m.name for m, _ in members(first)]
    assert names == ["bundle.json", "tuf/root/1.root.json", "tuf/root/2.root.json", "tuf/bins-0e.json",
                     "tuf/snapshot.json", "tuf/targets.json", "tuf/timestamp.json", "packuments/alpha.json",
                     "packuments/beta-two.json", f"blobs/sha256-{DIGEST}"]
    assert all((m.mtime, m.uid, m.gid, m.mode) == (0, 0, 0, 0o644) for m, _ in members(first))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    meta = read_bundle(first, scratch, lambda meta: {DIGEST: len(BLOB)})
    assert meta.info == _meta().info and meta.roots == _meta().roots and meta.packuments == PACKUMENTS
    assert (scratch / DIGEST).read_bytes() == BLOB


def _hostile_variants(good: list) -> dict[str, list]:
    """name -> the good of a bundle altered one way (each must be refused)."""
    def renamed(old: str, new: str) -> list:
        out = []
        for info, data in good:
            if info.name == old:
                info = tarfile.TarInfo(new)
                info.mode = 0o644
            out.append((info, data))
        return out

    link = tarfile.TarInfo("packuments/gamma.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    blob_name = f"blobs/sha256-{DIGEST}"
    return {
        "dot-dot name": renamed("packuments/beta-two.json", "packuments/../../beta-two.json"),
        "absolute name": renamed(blob_name, "/tmp/" + blob_name),
        "unknown member": good + [(tarfile.TarInfo("README"), b"hi")],
        "symlink": good[:9] + [(link, b"")] + good[9:],
        "bundle.json not first": [good[1], good[0], *good[2:]],
        "repeated member": good[:8] + [good[7]] + good[8:],
        "blob before packuments": [*good[:7], good[9], *good[7:9]],
        "extra blob": good + [(tarfile.TarInfo("blobs/sha256-" + "f" * 64), b"x")],
    }


def test_a_bundle_with_a_member_that_does_not_belong_is_refused(tmp_path: Path) -> None:
    good = _write(tmp_path)
    for what, altered in _hostile_variants(members(good)).items():
        bad = rewrite(tmp_path / f"{what.replace(' ', '-')}.nnpmb", altered)
        with pytest.raises(PackageSafetyError) as caught:
            _read(bad, tmp_path)
        assert "\n" not in caught.value.one_line(), what
    assert not list(tmp_path.glob("*/../../beta-two.json")) and not (Path("/tmp") / f"blobs/sha256-{DIGEST}").exists()


def test_blob_bytes_sizes_and_absences_are_refused(tmp_path: Path) -> None:
    good = members(_write(tmp_path))
    flipped = [(m, d if not m.name.startswith("blobs/") else d[:10] + bytes([d[10] ^ 1]) + d[11:]) for m, d in good]
    with pytest.raises(IntegrityError, match="does not match its name"):
        _read(rewrite(tmp_path / "flipped.nnpmb", flipped), tmp_path)
    with pytest.raises(IntegrityError, match="lacks blob"):
        _read(rewrite(tmp_path / "missing.nnpmb", good[:-1]), tmp_path)
    with pytest.raises(IntegrityError, match="manifest says 7"):
        _read(_write(tmp_path, "sized.nnpmb"), tmp_path, {DIGEST: 7})
    with pytest.raises(PackageSafetyError, match="not a file of any bundled version"):
        _read(_write(tmp_path, "unwanted.nnpmb"), tmp_path, {})
    with pytest.raises(IntegrityError, match="truncated"):
        raw = _write(tmp_path, "cut.nnpmb").read_bytes()
        (tmp_path / "cut.nnpmb").write_bytes(raw[:len(raw) // 2 + 100])
        _read(tmp_path / "cut.nnpmb", tmp_path)


@pytest.mark.parametrize("edit", [
    lambda d: d | {"extra": 1}, lambda d: d | {"format": "nnpm-bundle/9"}, lambda d: d | {"registry": "file:///x"},
    lambda d: d | {"packages": [{"name": "../x", "version": "1", "manifest_sha256": "a" * 64, "variant": None}]},
    lambda d: d | {"created_at": "yesterday"}])
def test_bundle_json_is_parsed_strictly(edit) -> None:
    data = json.loads(_meta().info.to_json())
    with pytest.raises(ManifestError):
        BundleInfo.from_json(json.dumps(edit(data)).encode())


def test_the_index_verifies_through_a_root_rotation() -> None:
    repo = TufRepo(PACKUMENTS, root_keys=2, threshold=2)
    repo.rotate_root()
    index = verify_index(repo.roots[1], repo.roots, repo.roles, PACKUMENTS)
    assert index.root_version == 2 and index.expires == repo.expires
    assert verify_root_chain(repo.roots[2], repo.roots).version == 2   # a machine pinned at 2 needs nothing older


def _edited(data: bytes, key: str = "version", value=99) -> bytes:
    doc = json.loads(data)
    doc["signed"][key] = value
    return json.dumps(doc).encode()


def _index_tampers(repo: TufRepo) -> dict[str, tuple[str, tuple]]:
    """what -> (the role the error names, the arguments of verify_index)."""
    roots, roles, pk = repo.roots, repo.roles, PACKUMENTS
    other = TufRepo(PACKUMENTS)
    bin_name = next(r for r in roles if r.startswith("bins-"))
    forged_root = {**roots, 3: other.resigned_root(3)}   # signed by its own keys only
    return {
        "a packument edited": (bin_name, (roots[1], roots, roles, {**pk, "alpha": pk["alpha"] + b" "})),
        "timestamp edited": ("timestamp", (roots[1], roots, {**roles, "timestamp": _edited(roles["timestamp"])}, pk)),
        "snapshot edited": ("snapshot", (roots[1], roots, {**roles, "snapshot": _edited(roles["snapshot"])}, pk)),
        "targets edited": ("targets", (roots[1], roots, {**roles, "targets": _edited(roles["targets"])}, pk)),
        "a bin edited": (bin_name, (roots[1], roots, {**roles, bin_name: _edited(roles[bin_name])}, pk)),
        "a bin missing": (bin_name, (roots[1], roots, {k: v for k, v in roles.items() if k != bin_name}, pk)),
        "another registry's index": ("timestamp", (roots[1], roots, other.roles, pk)),
        "another registry's root": ("timestamp", (other.roots[1], {}, roles, pk)),
        "root 3 not signed by root 2": ("root", (roots[1], forged_root, roles, pk)),
        "a gap in the chain": ("root", (roots[1], {1: roots[1], 3: roots[2]}, roles, pk)),
        "a package the index lacks": (None, (roots[1], roots, roles, {**pk, "zeta": b"{}"})),
    }


def test_a_tampered_index_is_refused_naming_the_role() -> None:
    repo = TufRepo(PACKUMENTS)
    repo.rotate_root()
    for what, (role, args) in _index_tampers(repo).items():
        with pytest.raises(IndexTrustError) as caught:
            verify_index(*args)
        if role is not None:
            assert caught.value.role == role, (what, caught.value.message)
        assert isinstance(caught.value, NnpmError) and "\n" not in caught.value.one_line(), what
