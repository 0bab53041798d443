"""Publishing: folder or archive → missing blobs up → manifest committed; nothing unverified leaves.

Against FakeRegistry, just enough of the protocol in memory, recording every request.
Against the real registry: tests/test_publish_registry.py (in process) and
tests/test_publish_cli.py (the CLI and a real server).
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import httpx
import pytest
from packages import tamper, write_labelled_package

from nnpm import errors as E
from nnpm.author.pack import pack
from nnpm.author.publish import publish, upload
from nnpm.client.api import RegistryClient
from nnpm.format.manifest import Manifest

URL = "http://registry.test"
TOKEN = "nnpm_publish-test-token"


class FakeRegistry:
    """Just enough of the protocol, in memory, recording every request."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.versions: dict[tuple[str, str], bytes] = {}
        self.log: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        self.log.append((request.method, path))
        if path == "/blobs/missing":   # a registry from before POST /blobs/missing: the client asks by HEAD
            return httpx.Response(405, json={"error": "method_not_allowed", "detail": "no POST here"})
        if path.startswith("/blobs/sha256:"):
            digest = path.rsplit(":", 1)[1]
            if request.method == "HEAD":
                if digest not in self.blobs:
                    return httpx.Response(404, headers={"X-Error-Code": "not_found"})
                return httpx.Response(200, headers={"Content-Length": str(len(self.blobs[digest]))})
            body = request.read()
            if hashlib.sha256(body).hexdigest() != digest or len(body) != int(request.headers["content-length"]):
                return httpx.Response(400, json={"error": "integrity_error", "detail": "digest mismatch"})
            status = 200 if digest in self.blobs else 201
            self.blobs[digest] = body
            return httpx.Response(status)
        _, _, name, version = path.split("/")
        body = request.read()
        manifest = Manifest.from_json(body)
        for f in manifest.files:
            if f.sha256 not in self.blobs:
                return httpx.Response(404, json={"error": "not_found", "detail": f"blob {f.sha256} is missing"})
        old = self.versions.get((name, version))
        if old is not None:
            if old != body:
                return httpx.Response(409, json={"error": "conflict", "detail": f"{name} {version} exists"})
            return httpx.Response(200, json={})
        self.versions[(name, version)] = body
        return httpx.Response(201, json={})

    def client(self) -> RegistryClient:
        return RegistryClient(URL, token=TOKEN, transport=httpx.MockTransport(self))


@pytest.fixture
def fake() -> FakeRegistry:
    return FakeRegistry()


# -- against an in-memory registry ----------------------------------------------------------------

def test_publish_folder_uploads_every_blob_then_commits(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = write_labelled_package(tmp_path / "tiny")
    with fake.client() as c:
        result = publish(folder, c, progress=False)
    assert result.created and result.name == "tiny" and result.version == "1.0.0"
    assert {e.path for e in result.uploaded} == {"README.md", "labels.txt", "model.onnx"}
    assert result.skipped == () and result.bytes_sent == result.manifest.total_size
    assert [m for m, _ in fake.log] == ["POST"] + ["HEAD"] * 3 + ["PUT"] * 3 + ["PUT"]   # POST: 405, then HEADs
    assert fake.log[-1] == ("PUT", "/packages/tiny/1.0.0")
    assert fake.versions[("tiny", "1.0.0")] == result.manifest.to_json()


def test_publish_same_again_uploads_nothing_and_is_not_created(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = write_labelled_package(tmp_path / "tiny")
    with fake.client() as c:
        publish(folder, c, progress=False)
        fake.log.clear()
        again = publish(folder, c, progress=False)
    assert not again.created and again.uploaded == () and again.bytes_sent == 0
    assert len(again.skipped) == 3
    assert [m for m, _ in fake.log] == ["POST"] + ["HEAD"] * 3 + ["PUT"]


def test_new_version_uploads_only_changed_files(tmp_path: Path, fake: FakeRegistry) -> None:
    with fake.client() as c:
        publish(write_labelled_package(tmp_path / "a", version="1.0.0"), c, progress=False)
        second = publish(write_labelled_package(tmp_path / "b", version="1.1.0", n=1001), c, progress=False)
    assert [e.path for e in second.uploaded] == ["model.onnx"]
    assert {e.path for e in second.skipped} == {"README.md", "labels.txt"}


def test_identical_files_are_one_blob(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = write_labelled_package(tmp_path / "tiny")
    (folder / "labels.txt").write_bytes((folder / "README.md").read_bytes())  # same bytes as README.md
    with fake.client() as c:
        result = publish(folder, c, progress=False)
    assert len(result.uploaded) == 2 and [m for m, _ in fake.log].count("HEAD") == 2


def test_publish_conflict_is_conflict_error(tmp_path: Path, fake: FakeRegistry) -> None:
    with fake.client() as c:
        publish(write_labelled_package(tmp_path / "a"), c, progress=False)
        with pytest.raises(E.ConflictError):
            publish(write_labelled_package(tmp_path / "b", n=999), c, progress=False)


def test_publish_archive(tmp_path: Path, fake: FakeRegistry) -> None:
    _, archive, _ = pack(write_labelled_package(tmp_path / "tiny"))
    with fake.client() as c:
        result = publish(archive, c, progress=False)
    assert result.created and len(result.uploaded) == 3
    assert set(fake.blobs) == {f.sha256 for f in result.manifest.files}



def test_tampered_archive_is_refused_before_anything_is_uploaded(tmp_path: Path, fake: FakeRegistry) -> None:
    _, archive, _ = pack(write_labelled_package(tmp_path / "tiny"))
    tamper(archive, "model.onnx")
    with fake.client() as c:
        with pytest.raises(E.IntegrityError):
            publish(archive, c, progress=False)
    assert fake.log == []


def test_archive_with_an_unlisted_member_is_refused(tmp_path: Path, fake: FakeRegistry) -> None:
    _, archive, _ = pack(write_labelled_package(tmp_path / "tiny"))
    extra = tmp_path / "evil.sh"
    extra.write_text("rm -rf /\n")
    with tarfile.open(archive, "a") as tar:
        tar.add(extra, arcname="evil.sh")
    with fake.client() as c:
        with pytest.raises(E.PackageSafetyError):
            publish(archive, c, progress=False)
    assert fake.log == []


def test_file_changed_after_hashing_is_refused_and_not_committed(tmp_path: Path, fake: FakeRegistry) -> None:
    from nnpm.author.pack import build

    built = build(write_labelled_package(tmp_path / "tiny"))
    (tmp_path / "tiny" / "labels.txt").write_text("c\nd\n")
    with fake.client() as c:
        with pytest.raises(E.IntegrityError):
            upload(built.manifest, built.paths, c, progress=False)
    assert not fake.versions and all(m != "PUT" or "/blobs/" in p for m, p in fake.log)


def test_registry_holding_a_blob_with_another_size_is_integrity_error(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = write_labelled_package(tmp_path / "tiny")
    digest = hashlib.sha256((folder / "README.md").read_bytes()).hexdigest()
    fake.blobs[digest] = b"something else entirely"
    with fake.client() as c:
        with pytest.raises(E.IntegrityError, match="README.md"):
            publish(folder, c, progress=False)
    assert not fake.versions


def test_invalid_folder_fails_before_any_request(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = write_labelled_package(tmp_path / "tiny")
    (folder / "labels.txt").unlink()
    with fake.client() as c:
        with pytest.raises(E.PackageSafetyError):
            publish(folder, c, progress=False)
        with pytest.raises(E.ManifestError, match="does not exist"):
            publish(tmp_path / "nope", c, progress=False)
        with pytest.raises(E.ManifestError, match="not a .nnpm archive"):
            publish(folder / "README.md", c, progress=False)
    assert fake.log == []


def test_progress_reports_every_byte(tmp_path: Path, fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager

    seen: dict[int, int] = {}

    class Recorder:
        def add_file(self, label: str, size: int, completed: int = 0) -> int:
            seen[len(seen)] = 0
            return len(seen) - 1

        def advance(self, task: int, n: int) -> None:
            seen[task] += n

        def finish(self, task: int) -> None:
            pass

    @contextmanager
    def fake_progress(total: int, enabled=None, **kw):
        yield Recorder()

    monkeypatch.setattr("nnpm.author.publish.transfer_progress", fake_progress)
    folder = write_labelled_package(tmp_path / "tiny", n=300_000)
    with fake.client() as c:
        result = publish(folder, c, progress=True)
    assert sum(seen.values()) == result.bytes_sent > 1_000_000
