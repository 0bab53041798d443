"""Publishing: folder or archive → missing blobs up → manifest committed; nothing unverified leaves."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from nnpm import errors as E
from nnpm.author.pack import pack
from nnpm.author.publish import publish, upload
from nnpm.client.api import RegistryClient
from nnpm.format.manifest import Manifest

URL = "http://registry.test"
TOKEN = "nnpm_publish-test-token"


def make_package(folder: Path, name: str = "tiny", version: str = "1.0.0", n: int = 1000) -> Path:
    """A small model package: y = x + w, with a README and a labels file."""
    w = numpy_helper.from_array(np.arange(n, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    (folder / "README.md").write_text(f"# {name}\n")
    (folder / "labels.txt").write_text(f"{name}-a\n{name}-b\n")
    (folder / "nnpm.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "{version}"\ndescription = "test"\nreadme = "README.md"\n\n'
        '[model]\nfile = "model.onnx"\n\n[model.outputs.y]\nlabels = "labels.txt"\n')
    return folder


class FakeRegistry:
    """Just enough of the protocol, in memory, recording every request."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.versions: dict[tuple[str, str], bytes] = {}
        self.log: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        self.log.append((request.method, path))
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
    folder = make_package(tmp_path / "tiny")
    with fake.client() as c:
        result = publish(folder, c, progress=False)
    assert result.created and result.name == "tiny" and result.version == "1.0.0"
    assert {e.path for e in result.uploaded} == {"README.md", "labels.txt", "model.onnx"}
    assert result.skipped == () and result.bytes_sent == result.manifest.total_size
    assert [m for m, _ in fake.log] == ["HEAD"] * 3 + ["PUT"] * 3 + ["PUT"]
    assert fake.log[-1] == ("PUT", "/packages/tiny/1.0.0")
    assert fake.versions[("tiny", "1.0.0")] == result.manifest.to_json()


def test_publish_same_again_uploads_nothing_and_is_not_created(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = make_package(tmp_path / "tiny")
    with fake.client() as c:
        publish(folder, c, progress=False)
        fake.log.clear()
        again = publish(folder, c, progress=False)
    assert not again.created and again.uploaded == () and again.bytes_sent == 0
    assert len(again.skipped) == 3
    assert [m for m, _ in fake.log] == ["HEAD"] * 3 + ["PUT"]


def test_new_version_uploads_only_changed_files(tmp_path: Path, fake: FakeRegistry) -> None:
    with fake.client() as c:
        publish(make_package(tmp_path / "a", version="1.0.0"), c, progress=False)
        second = publish(make_package(tmp_path / "b", version="1.1.0", n=1001), c, progress=False)
    assert [e.path for e in second.uploaded] == ["model.onnx"]
    assert {e.path for e in second.skipped} == {"README.md", "labels.txt"}


def test_identical_files_are_one_blob(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = make_package(tmp_path / "tiny")
    (folder / "labels.txt").write_text("# tiny\n")  # same bytes as README.md
    with fake.client() as c:
        result = publish(folder, c, progress=False)
    assert len(result.uploaded) == 2 and [m for m, _ in fake.log].count("HEAD") == 2


def test_publish_conflict_is_conflict_error(tmp_path: Path, fake: FakeRegistry) -> None:
    with fake.client() as c:
        publish(make_package(tmp_path / "a"), c, progress=False)
        with pytest.raises(E.ConflictError):
            publish(make_package(tmp_path / "b", n=999), c, progress=False)


def test_publish_archive(tmp_path: Path, fake: FakeRegistry) -> None:
    _, archive, _ = pack(make_package(tmp_path / "tiny"))
    with fake.client() as c:
        result = publish(archive, c, progress=False)
    assert result.created and len(result.uploaded) == 3
    assert set(fake.blobs) == {f.sha256 for f in result.manifest.files}


def _tamper(archive: Path, member: str) -> None:
    with tarfile.open(archive) as tar:
        offset = tar.getmember(member).offset_data
    with open(archive, "r+b") as f:
        f.seek(offset + 10)
        byte = f.read(1)
        f.seek(offset + 10)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_tampered_archive_is_refused_before_anything_is_uploaded(tmp_path: Path, fake: FakeRegistry) -> None:
    _, archive, _ = pack(make_package(tmp_path / "tiny"))
    _tamper(archive, "model.onnx")
    with fake.client() as c:
        with pytest.raises(E.IntegrityError):
            publish(archive, c, progress=False)
    assert fake.log == []


def test_archive_with_an_unlisted_member_is_refused(tmp_path: Path, fake: FakeRegistry) -> None:
    _, archive, _ = pack(make_package(tmp_path / "tiny"))
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

    built = build(make_package(tmp_path / "tiny"))
    (tmp_path / "tiny" / "labels.txt").write_text("c\nd\n")
    with fake.client() as c:
        with pytest.raises(E.IntegrityError):
            upload(built.manifest, built.paths, c, progress=False)
    assert not fake.versions and all(m != "PUT" or "/blobs/" in p for m, p in fake.log)


def test_registry_holding_a_blob_with_another_size_is_integrity_error(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = make_package(tmp_path / "tiny")
    digest = hashlib.sha256((folder / "README.md").read_bytes()).hexdigest()
    fake.blobs[digest] = b"something else entirely"
    with fake.client() as c:
        with pytest.raises(E.IntegrityError, match="README.md"):
            publish(folder, c, progress=False)
    assert not fake.versions


def test_invalid_folder_fails_before_any_request(tmp_path: Path, fake: FakeRegistry) -> None:
    folder = make_package(tmp_path / "tiny")
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
    folder = make_package(tmp_path / "tiny", n=300_000)
    with fake.client() as c:
        result = publish(folder, c, progress=True)
    assert sum(seen.values()) == result.bytes_sent > 1_000_000


def test_progress_is_silent_when_not_on_a_terminal(capfd: pytest.CaptureFixture) -> None:
    from nnpm.progress import transfer_progress

    with transfer_progress(100) as p:
        task = p.add_file("x", 100)
        p.advance(task, 100)
        p.finish(task)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_bars_are_thread_safe() -> None:
    import io
    import threading

    from rich.console import Console
    from rich.progress import Progress

    from nnpm.progress import _Bars

    progress = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    bars = _Bars(progress, 8 * 1000, "total")

    def work(i: int) -> None:
        task = bars.add_file(f"f{i}", 1000)
        for _ in range(1000):
            bars.advance(task, 1)
        bars.finish(task)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert progress.tasks[0].completed == 8000 and len(progress.tasks) == 1


# -- the CLI without a registry ---------------------------------------------------------------------

def _nnpm(*args: str, home: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NNPM_")}
    environ.update({"NNPM_HOME": str(home), **(env or {})})
    return subprocess.run([sys.executable, "-m", "nnpm", *args], capture_output=True, text=True,
                          env=environ, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cli_registered() -> None:
    from nnpm.cli import app

    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    if "publish" not in names:
        pytest.skip("nnpm/cli/publish.py is not registered in nnpm/cli/__init__.py yet")


def test_cli_publish_without_registry_says_how_to_set_one(tmp_path: Path, cli_registered: None) -> None:
    line = _one_line_error(_nnpm("publish", str(make_package(tmp_path / "tiny")), home=tmp_path / "home"))
    assert "no registry configured" in line and "nnpm login" in line


def test_cli_publish_without_token_says_how_to_log_in(tmp_path: Path, cli_registered: None) -> None:
    proc = _nnpm("publish", str(make_package(tmp_path / "tiny")), "--registry", "http://127.0.0.1:9",
                 home=tmp_path / "home")
    assert "no token for http://127.0.0.1:9" in _one_line_error(proc)


def test_cli_publish_unreachable_registry_is_one_line(tmp_path: Path, cli_registered: None) -> None:
    proc = _nnpm("publish", str(make_package(tmp_path / "tiny")), "--registry", "http://127.0.0.1:9",
                 home=tmp_path / "home", env={"NNPM_TOKEN": TOKEN})
    line = _one_line_error(proc)
    assert "cannot reach the registry at http://127.0.0.1:9" in line and TOKEN not in proc.stderr + proc.stdout


def test_cli_yank_needs_name_and_version(tmp_path: Path, cli_registered: None) -> None:
    proc = _nnpm("yank", "resnet18", "--reason", "x", "--registry", "http://127.0.0.1:9",
                 home=tmp_path / "home", env={"NNPM_TOKEN": TOKEN})
    assert "NAME==VERSION" in _one_line_error(proc)


# -- against a real registry (tests/conftest.py: one server for this module, so distinct names) ----

def test_real_publish_folder_then_same_again(shared_registry, tmp_path: Path) -> None:
    token = shared_registry.add_user("alice")
    folder = make_package(tmp_path / "p", name="again")
    with RegistryClient(shared_registry.url, token=token) as c:
        first = publish(folder, c, progress=False)
        second = publish(folder, c, progress=False)
        packument = c.packument("again")
    assert first.created and len(first.uploaded) == 3 and first.bytes_sent == first.manifest.total_size
    assert not second.created and second.uploaded == () and len(second.skipped) == 3
    assert second.bytes_sent == 0
    assert str(packument.latest.version) == "1.0.0"
    assert packument.releases[0].manifest == first.manifest


def test_real_publish_example_package_and_download_it_back(shared_registry, examples_dir: Path) -> None:
    token = shared_registry.add_user("alice")
    folder = examples_dir / "digits"
    with RegistryClient(shared_registry.url, token=token) as c:
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


def test_real_publish_archive(shared_registry, tmp_path: Path) -> None:
    token = shared_registry.add_user("alice")
    _, archive, _ = pack(make_package(tmp_path / "p", name="archived"))
    with RegistryClient(shared_registry.url, token=token) as c:
        result = publish(archive, c, progress=False)
        assert result.created and len(result.uploaded) == 3
        assert c.version("archived", "1.0.0")["manifest"] == result.manifest.to_dict()


def test_real_tampered_archive_uploads_nothing(shared_registry, tmp_path: Path) -> None:
    from nnpm.format.archive import read_manifest

    token = shared_registry.add_user("alice")
    _, archive, _ = pack(make_package(tmp_path / "p", name="tampered"))
    _tamper(archive, "model.onnx")
    manifest = read_manifest(archive)
    with RegistryClient(shared_registry.url, token=token) as c:
        with pytest.raises(E.IntegrityError):
            publish(archive, c, progress=False)
        assert all(c.has_blob(f.sha256) is None for f in manifest.files)
        assert c.packument("tampered") is None


def test_real_blob_changed_while_uploading_is_not_stored(shared_registry) -> None:
    token = shared_registry.add_user("alice")
    data = os.urandom(3 * 1024 * 1024 + 3)
    digest = hashlib.sha256(data).hexdigest()
    changed = io.BytesIO(data[:-1] + bytes([data[-1] ^ 1]))
    with RegistryClient(shared_registry.url, token=token) as c:
        with pytest.raises(E.IntegrityError):
            c.upload_blob(digest, len(data), changed)
        assert c.has_blob(digest) is None
        assert c.upload_blob(digest, len(data), io.BytesIO(data)) == 201
        assert c.upload_blob(digest, len(data), io.BytesIO(data)) == 200
        assert c.has_blob(digest) == len(data)


def test_real_conflict_and_ownership(shared_registry, tmp_path: Path) -> None:
    alice, bob = shared_registry.add_user("alice"), shared_registry.add_user("bob")
    url = shared_registry.url
    with RegistryClient(url, token=alice) as a, RegistryClient(url, token=bob) as b:
        publish(make_package(tmp_path / "v1", name="owned"), a, progress=False)
        with pytest.raises(E.ConflictError) as info:
            publish(make_package(tmp_path / "other", name="owned", n=999), a, progress=False)
        assert info.value.status == 409
        with pytest.raises(E.AuthError) as info:
            publish(make_package(tmp_path / "v2", name="owned", version="2.0.0"), b, progress=False)
        assert info.value.status == 403 and "owner" in info.value.one_line()
        assert a.add_owner("owned", "bob") == ["alice", "bob"]
        assert publish(tmp_path / "v2", b, progress=False).created
        with pytest.raises(E.NotFoundError):
            a.add_owner("owned", "nobody-here")


def test_real_bad_token_is_auth_error_without_the_token(shared_registry, tmp_path: Path) -> None:
    with RegistryClient(shared_registry.url, token="wrong-" + TOKEN) as c:
        with pytest.raises(E.AuthError) as info:
            publish(make_package(tmp_path / "p", name="badtoken"), c, progress=False)
    assert info.value.status == 401 and TOKEN not in info.value.one_line()


def test_real_version_spellings_name_the_same_version(shared_registry, tmp_path: Path) -> None:
    token = shared_registry.add_user("alice")
    with RegistryClient(shared_registry.url, token=token) as c:
        publish(make_package(tmp_path / "p", name="spelled"), c, progress=False)
        assert c.version("spelled", "1.0")["version"] == "1.0.0"
        assert c.yank("spelled", "1.0", "spelled short")["yanked"]
        assert c.unyank("spelled", "1.0.0")["yanked"] is False


def test_real_cli_login_publish_yank_owner(shared_registry, tmp_path: Path) -> None:
    url, token, home = shared_registry.url, shared_registry.add_user("carol"), tmp_path / "home"
    shared_registry.add_user("dave")
    folder = make_package(tmp_path / "p", name="clitiny")

    proc = _nnpm("login", "--registry", url, "--token", token, home=home)
    assert proc.returncode == 0, proc.stderr
    assert "as carol" in proc.stdout and token not in proc.stdout + proc.stderr
    config = home / "config.toml"
    assert config.stat().st_mode & 0o777 == 0o600 and token in config.read_text()

    proc = _nnpm("publish", str(folder), home=home)
    assert proc.returncode == 0, proc.stderr
    assert f"published clitiny 1.0.0 to {url} (3 files" in proc.stdout
    assert f"{url}/packages/clitiny" in proc.stdout and token not in proc.stdout + proc.stderr

    proc = _nnpm("publish", str(folder), home=home)
    assert proc.returncode == 0 and "identical" in proc.stdout and "0 files" in proc.stdout

    proc = _nnpm("yank", "CliTiny==1.0", "--reason", "broken weights", home=home)
    assert proc.returncode == 0 and "yanked clitiny 1.0" in proc.stdout, proc.stderr
    proc = _nnpm("owner", "add", "clitiny", "dave", home=home)
    assert proc.returncode == 0 and "carol, dave" in proc.stdout, proc.stderr
    with RegistryClient(url) as c:
        version = c.version("clitiny", "1.0.0")
    assert version["yanked"] and version["yanked_reason"] == "broken weights"


def test_real_cli_errors_are_one_line(shared_registry, tmp_path: Path) -> None:
    url, home = shared_registry.url, tmp_path / "home"
    proc = _nnpm("login", "--registry", url, "--token", TOKEN, home=home)
    assert TOKEN not in _one_line_error(proc)
    assert not (home / "config.toml").exists()

    folder = make_package(tmp_path / "p", name="clierr")
    proc = _nnpm("publish", str(folder), "--registry", url, "--token", TOKEN, home=home)
    assert TOKEN not in _one_line_error(proc)

    token = shared_registry.add_user("erin")
    bad = make_package(tmp_path / "bad", name="clibad")
    (bad / "model.onnx").write_bytes(b"not a model")
    _one_line_error(_nnpm("publish", str(bad), "--registry", url, "--token", token, home=home))

    proc = _nnpm("yank", "clierr==1.0.0", "--reason", "x", "--registry", url, "--token", token, home=home)
    assert "clierr" in _one_line_error(proc)
