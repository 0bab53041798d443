"""Bundles end to end (docs/trust.md, "Air-gapped bundles"): a project's lock exported from a registry that
signs its index, imported into a fresh NNPM_HOME and installed with no registry reachable; loaded into a
second registry as published; and every tampered bundle refused with one line and nothing imported.

One in-process source registry per module (tests/inprocess.py) with its TUF keys made by
`registry_server.tufadmin.init`; three CLI runs (install --locked, bundle import, registry import).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli import one_error_line, run_nnpm
from packages import write_package
from registry_proc import free_port
from tufkit import members, rewrite

from nnpm.config import Settings
from nnpm.errors import NnpmError
from registry_server import tufadmin

pytestmark = pytest.mark.registry_backends("sqlite-dir")
NAMES = ("alpha", "beta", "gamma")


def _settings(home: Path, registry: str | None = None) -> Settings:
    return Settings(home=home, env="default", registry=registry, token=None)


@pytest.fixture(scope="module")
def source(shared_api, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """alpha (signed), beta (depends on gamma) and gamma, on a registry that signs its index; a project locking
    alpha and beta; its bundle, exported through the exporting machine's pin."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from nnpm.author.publish import publish
    from nnpm.format.application import read_application
    from nnpm.install.store import Store
    from nnpm.project.locking import lock_project
    from nnpm.trust.export import export

    api, tmp = shared_api, tmp_path_factory.mktemp("bundle")
    tufadmin.init(api.settings, tmp / "root-keys", 1, 1)
    token = api.add_user("alice")
    with api.registry_client(token) as client:
        publish(write_package(tmp / "a", "alpha", "1.0.0", (1.0, 2.0, 3.0)), client, progress=False,
                signer=Ed25519PrivateKey.generate())
        publish(write_package(tmp / "g", "gamma", "2.0.0", (8.0, 9.0, 1.0)), client, progress=False)
        publish(write_package(tmp / "b", "beta", "1.0.0", (5.0, 6.0, 7.0), dependencies={"gamma": ">=2"}), client,
                progress=False)
    project = tmp / "project"
    project.mkdir()
    (project / "nnpm.toml").write_text('[project]\nname = "app"\n\n[dependencies]\nalpha = ">=1"\nbeta = "*"\n')
    home = tmp / "home-a"
    settings = _settings(home, api.url)
    with api.registry_client(trust_dir=home / "trust", cache_dir=home / "cache") as client:
        app = read_application(project)
        lock, _ = lock_project(app, client, Store(settings.store_dir))
        lock.write(app.lock_path)
        result = export(tmp / "site.nnpmb", client, settings, lock=app.lock_path, progress=False)
    assert result.signed_index and sorted(v[0] for v in result.versions) == list(NAMES)
    return SimpleNamespace(api=api, tmp=tmp, project=project, lock=lock, bundle=tmp / "site.nnpmb",
                           root=tmp / "root-keys" / "1.root.json")


def _blob(api, digest: str) -> bytes:
    with api.client() as c:
        return c.get(f"/api/v1/blobs/sha256:{digest}").content


def test_a_bundle_installs_the_lock_offline_byte_for_byte(source, tmp_path: Path) -> None:
    from nnpm.trust.bundle import import_

    home = tmp_path / "home-b"
    result = import_(source.bundle, _settings(home), progress=False)
    assert sorted(result.versions) == [("alpha", "1.0.0"), ("beta", "1.0.0"), ("gamma", "2.0.0")]
    assert result.signed == [("alpha", "1.0.0")] and result.index_expires
    assert len(result.notes) == 1 and "trusting the bundle's own root (version 1)" in result.notes[0]
    project = tmp_path / "project"
    shutil.copytree(source.project, project)
    nowhere = f"http://127.0.0.1:{free_port()}"   # nothing listens: any request would fail the install
    run_nnpm(home, "install", "--locked", "-q", registry=nowhere, cwd=project)
    for name, locked in source.lock.packages.items():
        folder = project / ".nnpm" / "pkgs" / f"{name}-{locked.version}" / "files"
        assert locked.files
        for path, size, digest in locked.files:
            assert (folder / path).read_bytes() == _blob(source.api, digest), (name, path)
    again = import_(source.bundle, _settings(home), progress=False)   # a second import adds nothing
    assert (again.added, again.present) == (0, result.added)


def test_the_machines_pin_decides_which_index_a_bundle_may_carry(source, tmp_path: Path) -> None:
    from tufkit import TufRepo

    from nnpm.client.trusted_index import pin_root
    from nnpm.errors import IndexTrustError
    from nnpm.trust.bundle import import_

    strange, known = tmp_path / "strange", tmp_path / "known"
    pin_root(strange / "trust", source.api.url, TufRepo({}).roots[1], "another root")
    with pytest.raises(IndexTrustError) as caught:   # --root does not override this machine's own pin
        import_(source.bundle, _settings(strange), source.root, progress=False)
    assert caught.value.role == "timestamp"
    pin_root(known / "trust", source.api.url, source.root.read_bytes(), "the registry's root")
    result = import_(source.bundle, _settings(known), progress=False)
    assert result.notes == [] and len(result.versions) == 3


def test_a_bundle_loads_into_another_registry_as_published(source, api_factory, tmp_path: Path) -> None:
    from nnpm.client.api import RegistryClient
    from registry_server.bundle_import import main

    target = api_factory(no_measure=True)
    tufadmin.init(target.settings, tmp_path / "target-keys", 1, 1)
    run_nnpm(tmp_path / "home", "registry", "import", source.bundle, "--data", target.data_dir,
             "--root", source.root, env={"NNPM_REGISTRY_TUF_ONLINE_KEY": str(target.settings.tuf_key_path)})
    with source.api.client() as a, target.client() as b:
        before = {n: a.get(f"/api/v1/packages/{n}").json() for n in NAMES}
        after = {n: b.get(f"/api/v1/packages/{n}").json() for n in NAMES}
    assert after == before   # publisher, signature, publish date, keys, measurement, yank state
    assert before["alpha"]["versions"][0]["signed"] and before["alpha"]["keys"]
    assert {v["publisher"] for p in after.values() for v in p["versions"]} == {"alice"}
    with RegistryClient(target.url, transport=target.transport, trust_dir=tmp_path / "trust") as client:
        # the target re-signed its index over the imported packages
        assert json.loads(client.trusted_index().packument_bytes("alpha")) == after["alpha"]
    assert main([str(source.bundle), "--data", str(target.data_dir)]) == 0   # again: nothing new
    assert target.query("SELECT count(*) FROM versions") == [(3,)]
    assert target.query("SELECT count(*) FROM versions WHERE overview_json IS NULL") == [(0,)]   # read at import too
    assert target.query("SELECT name FROM users") == [("alice",)]


def _tampered(source, tmp: Path) -> dict[str, Path]:
    """what -> a copy of the bundle altered that one way."""
    good = members(source.bundle)

    def altered(what: str, change) -> Path:
        return rewrite(tmp / f"{what.replace(' ', '-')}.nnpmb", [change(m, d) for m, d in good])

    def flip(name_start: str):
        return lambda m, d: (m, d[:-3] + bytes([d[-3] ^ 1]) + d[-2:] if m.name.startswith(name_start) else d)

    evil = type(good[0][0])("packuments/../../evil.json")
    unsigned = [(m, d) for m, d in good if not m.name.startswith("tuf/")]
    return {
        "a blob byte flipped": altered("blob", flip("blobs/")),
        "a packument edited": altered("packument", lambda m, d: (m, d.replace(b'"alice"', b'"mallory"')
                                                                 if m.name == "packuments/alpha.json" else d)),
        "a TUF file edited": altered("tuf", lambda m, d: (m, _bumped(d) if m.name == "tuf/timestamp.json" else d)),
        "a member with ../ in its name": rewrite(tmp / "dotdot.nnpmb", good[:5] + [(evil, b"{}")] + good[5:]),
        "a signature edited (no index)": rewrite(tmp / "sig.nnpmb", [
            (m, _resigned(d) if m.name == "packuments/alpha.json" else d) for m, d in unsigned]),
    }


def _bumped(metadata: bytes) -> bytes:
    """TUF metadata with its version one higher (its signature no longer covers it)."""
    doc = json.loads(metadata)
    doc["signed"]["version"] += 1
    return json.dumps(doc).encode()


def _resigned(packument: bytes) -> bytes:
    """alpha's packument with its signature's first byte changed (still valid base64)."""
    doc = json.loads(packument)
    sig = doc["versions"][0]["signed"]["sig"]
    doc["versions"][0]["signed"]["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    return json.dumps(doc).encode()


def _tree(home: Path) -> list[tuple[str, str]]:
    """Every path under `home` with a digest of its bytes (folders as 'dir')."""
    return sorted((str(p.relative_to(home)), "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest())
                  for p in home.rglob("*"))


def test_a_tampered_bundle_is_refused_in_one_line_and_imports_nothing(source, tmp_path: Path) -> None:
    from nnpm.install.store import Store
    from nnpm.trust.bundle import import_

    home = tmp_path / "home-c"
    with Store(_settings(home).store_dir).using():   # a store in use before: its lock file exists
        before = _tree(home)
    refused = {}
    for what, bundle in _tampered(source, tmp_path).items():
        with pytest.raises(NnpmError) as caught:
            import_(bundle, _settings(home), progress=False)
        refused[what] = type(caught.value).__name__
        assert "\n" not in caught.value.one_line(), what
        assert _tree(home) == before, what
    assert refused == {"a blob byte flipped": "IntegrityError", "a packument edited": "IndexTrustError",
                       "a TUF file edited": "IndexTrustError", "a member with ../ in its name": "PackageSafetyError",
                       "a signature edited (no index)": "SignatureError"}
    line = one_error_line(run_nnpm(home, "bundle", "import", tmp_path / "blob.nnpmb", "-q", check=False))
    assert "does not match its name" in line and _tree(home) == before


def test_a_registry_refuses_a_bad_signature_or_a_conflict_and_imports_nothing(source, api_factory, tmp_path,
                                                                               capsys) -> None:
    from registry_server.bundle_import import main

    target = api_factory(no_measure=True)
    token = target.add_user("alice")
    bad = _tampered(source, tmp_path)["a signature edited (no index)"]
    assert main([str(bad), "--data", str(target.data_dir)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: alpha 1.0.0: the publisher signature does not verify"), err
    assert target.query("SELECT count(*) FROM packages") == [(0,)] and target.stored_blobs() == set()
    assert target.publish(write_package(tmp_path / "other", "gamma", "2.0.0", (0.0, 0.0, 1.0)), token).status_code == 201
    assert main([str(source.bundle), "--data", str(target.data_dir), "--root", str(source.root)]) == 1
    assert "gamma 2.0.0 is already published here with other content" in capsys.readouterr().err
    assert target.query("SELECT name FROM packages") == [("gamma",)]
