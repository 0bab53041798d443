"""Publishing to the real registry app in process (tests/inprocess.py), through nnpm's RegistryClient.

One app per module: tests use distinct package names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packages import tamper, write_labelled_package

from nnpm import errors as E
from nnpm.author.pack import pack
from nnpm.author.publish import publish

# The subject is nnpm's publish and RegistryClient; the registry's answers on both backends (Range and
# If-Range included) are checked in test_registry_api_*.py.
pytestmark = pytest.mark.registry_backends("sqlite-dir")

TOKEN = "nnpm_publish-test-token"


def test_real_publish_folder_then_same_again(shared_api, tmp_path: Path) -> None:
    token = shared_api.add_user("alice")
    folder = write_labelled_package(tmp_path / "p", name="again")
    with shared_api.registry_client(token) as c:
        first = publish(folder, c, progress=False)
        second = publish(folder, c, progress=False)
        packument = c.packument("again")
    assert first.created and len(first.uploaded) == 3 and first.bytes_sent == first.manifest.total_size
    assert not second.created and second.uploaded == () and len(second.skipped) == 3
    assert second.bytes_sent == 0
    assert str(packument.latest.version) == "1.0.0"
    assert packument.releases[0].manifest == first.manifest


def test_real_publish_example_package_and_download_it_back(shared_api, examples_dir: Path) -> None:
    token = shared_api.add_user("alice")
    folder = examples_dir / "digits"
    with shared_api.registry_client(token) as c:
        result = publish(folder, c, progress=False)
        entry = result.manifest.file(result.manifest.project.model.file)
        with c.open_blob(entry.sha256) as resp:
            assert resp.status_code == 200
            whole = b"".join(resp.iter_bytes())
        with c.open_blob(entry.sha256, start=100, if_range=resp.headers.get("etag")) as resp:
            assert resp.status_code == 206
            tail = b"".join(resp.iter_bytes())
    assert whole == (folder / entry.path).read_bytes() and tail == whole[100:]
    assert result.created and result.name == "digits"


def test_real_publish_archive(shared_api, tmp_path: Path) -> None:
    token = shared_api.add_user("alice")
    _, archive, _ = pack(write_labelled_package(tmp_path / "p", name="archived"))
    with shared_api.registry_client(token) as c:
        result = publish(archive, c, progress=False)
        assert result.created and len(result.uploaded) == 3
        assert c.version("archived", "1.0.0")["manifest"] == result.manifest.to_dict()


def test_real_tampered_archive_uploads_nothing(shared_api, tmp_path: Path) -> None:
    from nnpm.format.archive import read_manifest

    token = shared_api.add_user("alice")
    _, archive, _ = pack(write_labelled_package(tmp_path / "p", name="tampered"))
    tamper(archive, "model.onnx")
    manifest = read_manifest(archive)
    with shared_api.registry_client(token) as c:
        with pytest.raises(E.IntegrityError):
            publish(archive, c, progress=False)
        assert all(c.has_blob(f.sha256) is None for f in manifest.files)
        assert c.packument("tampered") is None


def test_real_conflict_and_ownership(shared_api, tmp_path: Path) -> None:
    alice, bob = shared_api.add_user("alice"), shared_api.add_user("bob")
    with shared_api.registry_client(alice) as a, shared_api.registry_client(bob) as b:
        publish(write_labelled_package(tmp_path / "v1", name="owned"), a, progress=False)
        with pytest.raises(E.ConflictError) as info:
            publish(write_labelled_package(tmp_path / "other", name="owned", n=999), a, progress=False)
        assert info.value.status == 409
        with pytest.raises(E.AuthError) as info:
            publish(write_labelled_package(tmp_path / "v2", name="owned", version="2.0.0"), b, progress=False)
        assert info.value.status == 403 and "owner" in info.value.one_line()
        assert a.add_owner("owned", "bob") == ["alice", "bob"]
        assert publish(tmp_path / "v2", b, progress=False).created
        with pytest.raises(E.NotFoundError):
            a.add_owner("owned", "nobody-here")


def test_real_bad_token_is_auth_error_without_the_token(shared_api, tmp_path: Path) -> None:
    with shared_api.registry_client("wrong-" + TOKEN) as c:
        with pytest.raises(E.AuthError) as info:
            publish(write_labelled_package(tmp_path / "p", name="badtoken"), c, progress=False)
    assert info.value.status == 401 and TOKEN not in info.value.one_line()


def test_real_version_spellings_name_the_same_version(shared_api, tmp_path: Path) -> None:
    token = shared_api.add_user("alice")
    with shared_api.registry_client(token) as c:
        publish(write_labelled_package(tmp_path / "p", name="spelled"), c, progress=False)
        assert c.version("spelled", "1.0")["version"] == "1.0.0"
        assert c.yank("spelled", "1.0", "spelled short")["yanked"]
        assert c.unyank("spelled", "1.0.0")["yanked"] is False
