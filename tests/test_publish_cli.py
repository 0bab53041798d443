"""Publishing as a user does: the real `nnpm` CLI (login, publish, yank, owner) in a subprocess, first
without a registry, then against a real registry subprocess (tests/registry_proc.py: one server
per module and backend, so distinct package names); and a blob that changes under a real socket.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from cli import one_error_line, run_nnpm
from packages import write_labelled_package

from nnpm import errors as E
from nnpm.client.api import RegistryClient

# The subject is the CLI and the client; the registry's answers on both backends: test_registry_api_*.py
# (the aborted upload below runs on both: what the store keeps is its subject).
pytestmark = pytest.mark.registry_backends("sqlite-dir")

TOKEN = "nnpm_publish-test-token"


# -- the CLI without a registry ---------------------------------------------------------------------

def test_cli_publish_without_registry_says_how_to_set_one(tmp_path: Path) -> None:
    folder = write_labelled_package(tmp_path / "tiny")
    line = one_error_line(run_nnpm(tmp_path / "home", "publish", str(folder), check=False))
    assert "no registry configured" in line and "nnpm login" in line


def test_cli_publish_without_token_says_how_to_log_in(tmp_path: Path) -> None:
    folder = write_labelled_package(tmp_path / "tiny")
    proc = run_nnpm(tmp_path / "home", "publish", str(folder), "--registry", "http://127.0.0.1:9", check=False)
    assert "no token for http://127.0.0.1:9" in one_error_line(proc)


def test_cli_publish_unreachable_registry_is_one_line(tmp_path: Path) -> None:
    folder = write_labelled_package(tmp_path / "tiny")
    proc = run_nnpm(tmp_path / "home", "publish", str(folder), "--registry", "http://127.0.0.1:9",
                    env={"NNPM_TOKEN": TOKEN}, check=False)
    line = one_error_line(proc)
    assert "cannot reach the registry at http://127.0.0.1:9" in line and TOKEN not in proc.stderr + proc.stdout


def test_cli_yank_needs_name_and_version(tmp_path: Path) -> None:
    proc = run_nnpm(tmp_path / "home", "yank", "resnet18", "--reason", "x", "--registry", "http://127.0.0.1:9",
                    env={"NNPM_TOKEN": TOKEN}, check=False)
    assert "NAME==VERSION" in one_error_line(proc)


# -- against a real registry subprocess -------------------------------------------------------------

@pytest.mark.registry_backends("sqlite-dir", "postgres-s3")  # an aborted upload into each store
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


def test_real_cli_login_publish_yank_owner(shared_registry, tmp_path: Path) -> None:
    url, token, home = shared_registry.url, shared_registry.add_user("carol"), tmp_path / "home"
    shared_registry.add_user("dave")
    folder = write_labelled_package(tmp_path / "p", name="clitiny")

    proc = run_nnpm(home, "login", "--registry", url, "--token", token, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "as carol" in proc.stdout and token not in proc.stdout + proc.stderr
    config = home / "config.toml"
    assert config.stat().st_mode & 0o777 == 0o600 and token in config.read_text()

    proc = run_nnpm(home, "publish", str(folder), check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"published clitiny 1.0.0 to {url} (3 files" in proc.stdout
    assert f"{url}/packages/clitiny" in proc.stdout and token not in proc.stdout + proc.stderr

    proc = run_nnpm(home, "publish", str(folder), check=False)
    assert proc.returncode == 0 and "identical" in proc.stdout and "0 files" in proc.stdout

    proc = run_nnpm(home, "yank", "CliTiny==1.0", "--reason", "broken weights", check=False)
    assert proc.returncode == 0 and "yanked clitiny 1.0" in proc.stdout, proc.stderr
    proc = run_nnpm(home, "owner", "add", "clitiny", "dave", check=False)
    assert proc.returncode == 0 and "carol, dave" in proc.stdout, proc.stderr
    with RegistryClient(url) as c:
        version = c.version("clitiny", "1.0.0")
    assert version["yanked"] and version["yanked_reason"] == "broken weights"


def test_real_cli_errors_are_one_line(shared_registry, tmp_path: Path) -> None:
    url, home = shared_registry.url, tmp_path / "home"
    proc = run_nnpm(home, "login", "--registry", url, "--token", TOKEN, check=False)
    assert TOKEN not in one_error_line(proc)
    assert not (home / "config.toml").exists()

    folder = write_labelled_package(tmp_path / "p", name="clierr")
    proc = run_nnpm(home, "publish", str(folder), "--registry", url, "--token", TOKEN, check=False)
    assert TOKEN not in one_error_line(proc)

    token = shared_registry.add_user("erin")
    bad = write_labelled_package(tmp_path / "bad", name="clibad")
    (bad / "model.onnx").write_bytes(b"not a model")
    one_error_line(run_nnpm(home, "publish", str(bad), "--registry", url, "--token", token, check=False))

    proc = run_nnpm(home, "yank", "clierr==1.0.0", "--reason", "x", "--registry", url, "--token", token, check=False)
    assert "clierr" in one_error_line(proc)
