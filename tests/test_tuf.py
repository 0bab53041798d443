"""The signed index (TUF, docs/trust.md): the registry signs, serves and prunes it; the client pins and reads through it.

In-process registries (tests/inprocess.py) whose keys `registry_server.tufadmin.init` makes
after the app exists (the app reads its online key when it first needs it). Attacks by a
hostile mirror are in tests/test_tuf_attacks.py; the real CLI end to end at the bottom.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cli import child_env, one_error_line, run_nnpm
from packages import write_unique_package

from nnpm.client.api import RegistryClient
from nnpm.client.trusted_index import pin_dir
from registry_server import tufadmin

pytestmark = pytest.mark.registry_backends("sqlite-dir")


def signed_registry(api_factory, keys: Path, **settings):
    """An in-process registry with its index initialised (root keys in `keys`)."""
    api = api_factory(no_measure=True, **settings)
    tufadmin.init(api.settings, keys, 1, 1)
    return api


def publish(api, root: Path, token: str, name: str, version: str = "1.0.0") -> None:
    """Publish a tiny package (raw protocol)."""
    resp = api.publish(write_unique_package(root, name, version), token)
    assert resp.status_code == 201, resp.text


def client(api, home: Path, transport=None) -> RegistryClient:
    """nnpm's RegistryClient with its pins in home/trust."""
    return RegistryClient(api.url, transport=transport or api.transport, trust_dir=home / "trust")


def versions(packument) -> dict[str, bool]:
    """{version: yanked}."""
    return {str(r.version): r.yanked for r in packument.releases}


def test_publish_and_yank_re_sign_the_index_and_the_client_pins_on_first_contact(api_factory, tmp_path):
    api = signed_registry(api_factory, tmp_path / "keys")
    token = api.add_user("alice")
    publish(api, tmp_path, token, "tiny")
    home = tmp_path / "home"
    assert versions(client(api, home).packument("tiny")) == {"1.0.0": False}
    folder = pin_dir(home / "trust", api.url)
    assert (folder / "root.json").read_bytes() == (tmp_path / "keys" / "1.root.json").read_bytes()

    with api.client(token) as c:
        plain = c.get("/api/v1/packages/tiny").content
        assert c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": "broken"}).status_code == 200
        ts = c.get("/tuf/metadata/timestamp.json")
        assert ts.headers["content-type"] == "application/json" and ts.headers["cache-control"] == "no-cache"
        snap = c.get(f"/tuf/metadata/{ts.json()['signed']['meta']['snapshot.json']['version']}.snapshot.json")
        assert "immutable" in snap.headers["cache-control"]
        old = [(sha, body) for sha, body in api.query("SELECT sha256, body FROM tuf_targets") if body.encode() == plain]
        assert old, "the packument signed is the one /api/v1 serves, byte for byte"
        again = c.get(f"/tuf/targets/packuments/{old[0][0]}.tiny.json")   # pre-yank bytes: kept for an hour
        assert again.status_code == 200 and again.content == plain and "immutable" in again.headers["cache-control"]
        assert c.get(f"/tuf/targets/packuments/{old[0][0]}.other.json").status_code == 404
        assert c.get("/tuf/metadata/99.snapshot.json").status_code == 404
        assert c.post("/tuf/metadata/timestamp.json").status_code == 405
    assert versions(client(api, home).packument("tiny")) == {"1.0.0": True}   # the same pin, a new refresh
    assert client(api, home).packument("absent") is None


def test_a_registry_without_keys_serves_no_index_and_its_clients_stay_unpinned(api_factory, tmp_path):
    api = api_factory(no_measure=True)
    token = api.add_user("alice")
    publish(api, tmp_path, token, "tiny")
    assert "no TUF online key" in api.log_text()
    with api.client() as c:
        assert c.get("/tuf/metadata/root.json").status_code == 404
        assert c.get("/tuf/metadata/timestamp.json").status_code == 404
    home = tmp_path / "home"
    with RegistryClient(api.url, transport=api.transport, cache_dir=home / "cache") as plain:
        assert versions(plain.packument("tiny")) == {"1.0.0": False}
        assert plain.trusted_index() is None
    assert not (home / "trust").exists()
    assert list((home / "cache").rglob("*.json")), "the ETag cache still serves unpinned registries"

    assert "1 packages signed" in tufadmin.init(api.settings, tmp_path / "keys", 1, 1)   # the running app picks it up
    assert versions(client(api, home).packument("tiny")) == {"1.0.0": False}
    assert (pin_dir(home / "trust", api.url) / "root.json").is_file()


def test_old_versions_are_pruned_an_hour_after_they_were_replaced_never_root(api_factory, tmp_path):
    api = signed_registry(api_factory, tmp_path / "keys")
    token = api.add_user("alice")
    publish(api, tmp_path, token, "tiny", "1.0.0")
    publish(api, tmp_path, token, "tiny", "1.1.0")
    first, second = [sha for sha, in api.query("SELECT sha256 FROM tuf_targets ORDER BY created_at")]
    db = sqlite3.connect(api.data_dir / "registry.db")
    past = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with db:
        db.execute("UPDATE tuf_metadata SET created_at = ?", (past,))
        db.execute("UPDATE tuf_targets SET created_at = strftime('%Y-%m-%d %H:%M:%f', created_at, '-2 hours')")
    db.close()
    with api.client(token) as c:
        assert c.post("/api/v1/packages/tiny/1.0.0/yank", json={}).status_code == 200
    kept = {sha for sha, in api.query("SELECT sha256 FROM tuf_targets")}
    assert first not in kept and second in kept and len(kept) == 2   # 1.1.0's was current an hour ago
    stamps = sorted(v for v, in api.query("SELECT version FROM tuf_metadata WHERE role = 'timestamp'"))
    assert stamps == [stamps[-1] - 1, stamps[-1]]
    assert api.query("SELECT version FROM tuf_metadata WHERE role = 'root'") == [(1,)]
    assert versions(client(api, tmp_path / "home").packument("tiny")) == {"1.0.0": True, "1.1.0": False}


def test_root_rotation_is_followed_without_re_pinning_and_a_new_online_key_signs(api_factory, tmp_path):
    api = signed_registry(api_factory, tmp_path / "keys")
    token = api.add_user("alice")
    publish(api, tmp_path, token, "tiny")
    home = tmp_path / "home"
    client(api, home).packument("tiny")   # pinned at root version 1
    old_online = (api.data_dir / "tuf-online.key").read_bytes()
    said = tufadmin.rotate(api.settings, tmp_path / "keys", tmp_path / "keys2", True, None, None)
    assert said.startswith("root version 2 signed") and (tmp_path / "keys2" / "root-1.key").stat().st_mode & 0o777 == 0o600
    assert (api.data_dir / "tuf-online.key").read_bytes() != old_online
    publish(api, tmp_path, token, "tiny", "1.1.0")   # the running app signs with the new online key
    assert versions(client(api, home).packument("tiny")) == {"1.0.0": False, "1.1.0": False}
    assert (pin_dir(home / "trust", api.url) / "metadata" / "root_history" / "2.root.json").is_file()
    from nnpm.errors import ConfigError

    with pytest.raises(ConfigError, match="needs 1 of its keys"):   # the old keys no longer sign root 3
        tufadmin.rotate(api.settings, tmp_path / "keys", None, False, None, None)
    with pytest.raises(ConfigError, match="already holds TUF keys"):
        tufadmin.init(api.settings, tmp_path / "keys3", 1, 1)


@pytest.mark.registry_backends("sqlite-dir", "postgres-s3")
def test_two_signers_at_once_serialise_on_the_lock(api_factory, tmp_path, registry_backend):
    """Two yanks re-signing at once: the second waits for the first's commit and signs the next versions."""
    from registry_server.db.tables import Release
    from registry_server.services import index

    api = signed_registry(api_factory, tmp_path / "keys")
    token = api.add_user("alice")
    publish(api, tmp_path, token, "left")
    publish(api, tmp_path, token, "right")
    started, errors = threading.Event(), []

    def yank(name: str, first: bool) -> None:
        try:
            with api.app.state.sessions() as session:
                row = session.query(Release).filter(Release.package.has(name=name)).one()
                row.yanked = True
                if not first:
                    started.wait(10)
                index.packages_changed(session, [name])
                if first:
                    started.set()
                    threading.Event().wait(0.3)   # hold the lock while the other one tries
                session.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=yank, args=("left", True)), threading.Thread(target=yank, args=("right", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    c = client(api, tmp_path / "home")
    assert versions(c.packument("left")) == {"1.0.0": True} and versions(c.packument("right")) == {"1.0.0": True}


def test_the_client_module_imports_no_tuf_until_a_registry_is_pinned():
    code = ("import sys, nnpm, nnpm.client.api, nnpm.client.trusted_index; "
            "assert not [m for m in sys.modules if m.startswith(('tuf', 'securesystemslib'))]")
    subprocess.run([sys.executable, "-c", code], env=child_env(), check=True)


def test_cli_keys_init_install_pins_and_a_tampered_index_is_one_error_line(registry, tmp_path):
    keys, home = tmp_path / "keys", tmp_path / "home"
    proc = run_nnpm(home, "registry", "keys", "init", "--root-keys", keys, "--data", registry.data_dir)
    assert "root version 1" in proc.stdout and (keys / "root-1.key").stat().st_mode & 0o777 == 0o600
    token = registry.add_user("alice")
    for name in ("tiny", "other"):
        assert registry.publish(write_unique_package(tmp_path, name), token).status_code == 201
    run_nnpm(home, "login", "--registry", registry.url, "--token-stdin", stdin=token + "\n")
    assert (pin_dir(home / "trust", registry.url) / "root.json").is_file()   # login pins (trust on first use)
    run_nnpm(home, "install", "-q", "tiny")
    assert (home / "trust").is_dir() and len(list((home / "trust").iterdir())) == 1

    other = tmp_path / "other-home"   # an explicit pin from the root file the operator hands out
    run_nnpm(other, "config", "set", "registry", registry.url, "--root", keys / "1.root.json")
    assert (pin_dir(other / "trust", registry.url) / "root.json").read_bytes() == (keys / "1.root.json").read_bytes()
    db = sqlite3.connect(registry.data_dir / "registry.db")
    with db:   # the stored packument of `other` altered behind the signature's back
        db.execute("UPDATE tuf_targets SET body = replace(body, '\"latest\":\"1.0.0\"', '\"latest\":\"1.0.1\"') "
                   "WHERE path = 'packuments/other.json'")
    db.close()
    line = one_error_line(run_nnpm(other, "install", "-q", "other", check=False))
    assert "changed after signing" in line and "bins-" in line
