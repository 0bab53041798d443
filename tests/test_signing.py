"""Publisher signatures (docs/trust.md): keys, signed publishes and the registry's refusals, the packument,
verification at install, the env and project locks, and re-verification at load. The registry is the
in-process app (tests/inprocess.py); tests/test_signing_cli.py runs the commands end to end."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from packages import write_labelled_package

from nnpm import errors as E
from nnpm.author import keys as local_keys
from nnpm.author.publish import publish
from nnpm.client.api import RegistryClient
from nnpm.config import Settings
from nnpm.format.packument import Packument
from nnpm.format.signing import ManifestSignature, PublicKey, sign_key_change, sign_manifest
from nnpm.install.env import Environment
from nnpm.install.transaction import Installer

pytestmark = pytest.mark.registry_backends("sqlite-dir")


def _key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def _publish(api, token: str, root: Path, name: str, version: str = "1.0.0", signer=None):
    with api.registry_client(token) as client:
        return publish(write_labelled_package(root / f"{name}-{version}", name, version, n=50), client,
                       progress=False, signer=signer)


def _installer(api, home: Path, *, require: bool = False, client: RegistryClient | None = None) -> Installer:
    settings = Settings(home=home, env="default", registry=api.url, token=None, require_signatures=require)
    return Installer(settings, Environment(settings.envs_dir / "default", "default"),
                     client=client or api.registry_client(), progress=False)


def _env_lock(home: Path) -> dict:
    return json.loads((home / "envs" / "default" / "nnpm.lock").read_bytes())


def test_sign_verify_round_trip_and_what_breaks_it() -> None:
    key, other = _key(), _key()
    data = b'{"package":{"name":"x"}}'
    signature = sign_manifest(key, data)
    public = local_keys.public_of(key)
    assert signature.keyid == public.keyid == PublicKey.from_dict(public.to_dict()).keyid
    assert ManifestSignature.from_header(signature.header()) == signature
    signature.verify(public, data, what="x 1")
    with pytest.raises(E.SignatureError, match="does not verify"):
        signature.verify(public, data + b" ", what="x 1")
    with pytest.raises(E.SignatureError, match="not by"):
        signature.verify(local_keys.public_of(other), data, what="x 1")
    with pytest.raises(E.SignatureError):
        ManifestSignature.from_header(f"{signature.keyid} notbase64!")


def test_a_passphrase_key_round_trip_and_its_refusals(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(local_keys.PASSPHRASE_ENV, raising=False)
    made = local_keys.generate(tmp_path, "ci", passphrase="s3cret")
    assert made.encrypted and made.private_path.stat().st_mode & 0o777 == 0o600
    assert local_keys.is_encrypted(made.private_path)
    assert PublicKey.from_pem(made.public_path.read_bytes()) == made.public
    with pytest.raises(E.ConfigError, match="exists already"):
        local_keys.generate(tmp_path, "ci")
    with pytest.raises(E.ConfigError, match="no passphrase"):
        local_keys.load_private_key(made.private_path)
    with pytest.raises(E.SignatureError, match="wrong passphrase"):
        local_keys.load_private_key(made.private_path, "guess")
    monkeypatch.setenv(local_keys.PASSPHRASE_ENV, "s3cret")
    assert local_keys.public_of(local_keys.load_private_key(made.private_path)) == made.public
    assert [(k.name, k.public, k.encrypted) for k in local_keys.list_keys(tmp_path)] == [("ci", made.public, True)]
    made.private_path.chmod(0o644)
    with pytest.raises(E.ConfigError, match="too open"):
        local_keys.load_private_key(made.private_path)
    assert local_keys.generate(tmp_path, "ci", force=True).public != made.public


def test_signed_publish_is_recorded_installed_locked_and_reverified_at_load(shared_api, tmp_path: Path) -> None:
    token, key = shared_api.add_user("alice"), _key()
    _publish(shared_api, token, tmp_path, "signed-pkg", signer=key)
    with shared_api.registry_client() as client:
        packument = client.packument("signed-pkg")
        view = client.version("signed-pkg", "1.0.0")
    release = packument.releases[0]
    public = local_keys.public_of(key)
    assert release.publisher == "alice" and release.signed_data["keyid"] == public.keyid
    assert view["publisher"] == "alice" and view["signed"] == release.signed_data
    assert [k["keyid"] for k in packument.keys] == [public.keyid] and packument.keys[0]["removed_at"] is None
    assert packument.publisher_key(release) == public
    home = tmp_path / "home"
    _installer(shared_api, home, require=True).install(["signed-pkg"])
    entry = _env_lock(home)["packages"]["signed-pkg"]
    assert (entry["signer"], entry["public_key"], entry["signature"]) == (
        public.keyid, public.to_dict()["public"], release.signed_data["sig"])
    env = Environment(home / "envs" / "default", "default")
    env.get("signed-pkg").verify()
    lock_path = env.lock_path
    good = lock_path.read_text()
    sig = base64.b64decode(entry["signature"])
    lock_path.write_text(good.replace(entry["signature"], base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()))
    with pytest.raises(E.SignatureError) as info:
        env.get("signed-pkg").verify()
    assert "signed-pkg 1.0.0" in info.value.one_line() and "nnpm install --force" in info.value.one_line()
    other = local_keys.public_of(_key()).to_dict()["public"]   # a consistent swap: another key, its own id
    lock_path.write_text(good.replace(entry["public_key"], other))
    with pytest.raises(E.SignatureError, match="sha256 of its public key"):
        env.get("signed-pkg").verify()


def test_the_registry_refuses_an_unregistered_key_and_an_unsigned_publish(shared_api, tmp_path: Path) -> None:
    token, key, stranger = shared_api.add_user("alice"), _key(), _key()
    _publish(shared_api, token, tmp_path, "guarded", signer=key)
    with pytest.raises(E.SignatureError) as info:
        _publish(shared_api, token, tmp_path, "guarded", "2.0.0", signer=stranger)
    line = info.value.one_line()
    assert info.value.status == 403 and "not registered" in line and "\n" not in line
    assert local_keys.public_of(stranger).keyid[:19] in line and info.value.keyid == local_keys.public_of(stranger).keyid
    with pytest.raises(E.SignatureError) as info:
        _publish(shared_api, token, tmp_path, "guarded", "2.0.0")
    assert info.value.status == 403 and "nnpm publish --sign" in info.value.one_line()
    with shared_api.client(token) as http:   # a signature over other bytes
        body = json.dumps({"x": 1}).encode()
        bad = sign_manifest(key, body).header()
        r = http.put("/api/v1/packages/guarded/2.0.0", headers={"X-Nnpm-Signature": bad}, content=b"{}")
        assert r.status_code == 400 and r.json()["error"] == "invalid_manifest"   # the manifest is parsed first
        r = http.put("/api/v1/packages/guarded/2.0.0", headers={"X-Nnpm-Signature": "garbage"}, content=b"{}")
        assert r.status_code == 400 and r.json()["error"] == "bad_signature"
    with shared_api.registry_client() as client:
        assert [str(r.version) for r in client.packument("guarded").releases] == ["1.0.0"]


def test_an_unsigned_package_is_recorded_unsigned(shared_api, tmp_path: Path) -> None:
    token = shared_api.add_user("bob")
    _publish(shared_api, token, tmp_path, "plain-pkg")
    with shared_api.client() as http:
        raw = http.get("/api/v1/packages/plain-pkg").json()
    assert "keys" not in raw and "signed" not in raw["versions"][0] and raw["versions"][0]["publisher"] == "bob"
    home = tmp_path / "home"
    _installer(shared_api, home).install(["plain-pkg"])
    assert "signer" not in _env_lock(home)["packages"]["plain-pkg"]
    with pytest.raises(E.SignatureError) as info:
        _installer(shared_api, tmp_path / "strict", require=True).install(["plain-pkg"])
    assert "plain-pkg is not signed" in info.value.one_line()
    assert not (tmp_path / "strict" / "envs" / "default" / "nnpm.lock").exists()


def _approval(signer, action: str, package: str, keyid: str, when: str | None = None) -> tuple:
    when = when or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return sign_key_change(signer, action, package, keyid, when), when


def test_key_rotation_keeps_old_signatures_and_retires_the_old_key(shared_api, tmp_path: Path) -> None:
    token, carol, old, new = shared_api.add_user("alice"), shared_api.add_user("carol"), _key(), _key()
    _publish(shared_api, token, tmp_path, "rotated", signer=old)
    old_pub, new_pub = local_keys.public_of(old), local_keys.public_of(new)
    with shared_api.registry_client(token) as client:   # once a package has keys, changing them takes one
        client.add_package_key("rotated", new_pub, _approval(old, "add", "rotated", new_pub.keyid))
        client.add_package_key("rotated", new_pub, _approval(old, "add", "rotated", new_pub.keyid))   # idempotent
    with shared_api.client(carol) as http:
        r = http.post("/api/v1/packages/rotated/keys", json={"public": new_pub.to_dict()["public"]})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
    _publish(shared_api, token, tmp_path, "rotated", "2.0.0", signer=new)
    with shared_api.registry_client(token) as client:
        removed, keys = client.remove_package_key("rotated", old_pub.keyid,
                                                  _approval(new, "remove", "rotated", old_pub.keyid))
        assert removed["removed_at"] and [k["keyid"] for k in keys if not k["removed_at"]] == [new_pub.keyid]
        with pytest.raises(E.NotFoundError):
            client.remove_package_key("rotated", old_pub.keyid, _approval(new, "remove", "rotated", old_pub.keyid))
        packument = client.packument("rotated")
    assert [packument.publisher_key(r) for r in packument.releases] == [old_pub, new_pub]
    with pytest.raises(E.SignatureError, match="not registered"):
        _publish(shared_api, token, tmp_path, "rotated", "3.0.0", signer=old)
    with shared_api.registry_client(token) as client:   # no key left: unsigned publishes are taken again
        client.remove_package_key("rotated", new_pub.keyid, _approval(new, "remove", "rotated", new_pub.keyid))
    assert _publish(shared_api, token, tmp_path, "rotated", "3.0.0").created


def test_a_stolen_token_can_neither_add_its_own_key_nor_remove_the_owners(shared_api, tmp_path: Path) -> None:
    token, owners_key, thief = shared_api.add_user("dora"), _key(), _key()
    _publish(shared_api, token, tmp_path, "vaulted", signer=owners_key)
    thief_pub, owners_pub = local_keys.public_of(thief), local_keys.public_of(owners_key)
    hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with shared_api.registry_client(token) as client:
        attempts = [lambda: client.add_package_key("vaulted", thief_pub),   # the token alone
                    lambda: client.add_package_key("vaulted", thief_pub,   # approved by the thief's own key
                                                   _approval(thief, "add", "vaulted", thief_pub.keyid)),
                    lambda: client.add_package_key("vaulted", thief_pub,   # a real approval of another change
                                                   _approval(owners_key, "add", "vaulted", owners_pub.keyid)),
                    lambda: client.add_package_key("vaulted", thief_pub,   # a real approval, long expired
                                                   _approval(owners_key, "add", "vaulted", thief_pub.keyid, hour_ago)),
                    lambda: client.remove_package_key("vaulted", owners_pub.keyid)]
        for attempt in attempts:
            with pytest.raises(E.SignatureError) as caught:
                attempt()
            assert caught.value.status == 403
        assert [k["keyid"] for k in client.package_keys("vaulted")] == [owners_pub.keyid]
    with pytest.raises(E.SignatureError):
        _publish(shared_api, token, tmp_path, "vaulted", "2.0.0")
    with pytest.raises(E.SignatureError):
        _publish(shared_api, token, tmp_path, "vaulted", "2.0.0", signer=thief)


class _Tampering(RegistryClient):
    """A registry (or a mirror) that serves a signed release's manifest changed, or drops its keys."""

    mode = "manifest"

    def packument(self, name: str) -> Packument | None:
        found = super().packument(name)
        release = found.releases[-1]
        if self.mode == "manifest":
            data = json.loads(json.dumps(release.manifest_data))
            data["package"]["description"] = "now with a backdoor"
            return Packument.of(found.name, [replace(release, manifest_data=data)], found.keys)
        return Packument.of(found.name, found.releases, ())


@pytest.mark.parametrize("mode", ["manifest", "keys"])
def test_a_tampered_packument_is_refused_at_install_with_nothing_installed(shared_api, tmp_path: Path,
                                                                           mode: str) -> None:
    token = shared_api.add_user("alice")
    name = f"tampered-{mode}"
    _publish(shared_api, token, tmp_path, name, signer=_key())
    client = _Tampering(shared_api.url, transport=shared_api.transport)
    client.mode = mode
    home = tmp_path / "home"
    with pytest.raises(E.SignatureError) as info:
        _installer(shared_api, home, client=client).install([name])
    assert f"{name} 1.0.0" in info.value.one_line()
    assert ("does not verify" if mode == "manifest" else "not registered") in info.value.one_line()
    assert not (home / "envs" / "default" / "nnpm.lock").exists() and not (home / "store").exists()


def test_the_project_lock_records_the_signature_and_sync_checks_it(shared_api, tmp_path: Path) -> None:
    from nnpm.format.application import read_application
    from nnpm.install.store import Store
    from nnpm.project.lockfile import ProjectLock
    from nnpm.project.locking import lock_project

    token, key = shared_api.add_user("alice"), _key()
    _publish(shared_api, token, tmp_path, "proj-signed", signer=key)
    _publish(shared_api, token, tmp_path, "proj-plain")
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "nnpm.toml").write_text('[project]\nname = "app"\n\n[dependencies]\nproj-signed = "*"\n'
                                      'proj-plain = "*"\n')
    app, store = read_application(folder), Store(tmp_path / "home" / "store")
    with shared_api.registry_client() as client:
        with pytest.raises(E.SignatureError, match="proj-plain is not signed"):
            lock_project(app, client, store, require_signatures=True)
        lock, _ = lock_project(app, client, store)
    text = lock.to_text()
    assert f'signer = "{local_keys.public_of(key).keyid}"' in text and text.count("signature = ") == 1
    (folder / "nnpm.lock").write_text(text)
    again = ProjectLock.read(folder / "nnpm.lock")
    assert again.packages == lock.packages
    signed = again.packages["proj-signed"]
    sig = base64.b64decode(signed.signature)
    again.packages["proj-signed"] = replace(signed, signature=base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode())
    home = tmp_path / "home"
    with pytest.raises(E.SignatureError) as info:
        _installer(shared_api, home).install_locked(again.env_lock())
    assert "proj-signed 1.0.0" in info.value.one_line()
    assert not (home / "envs" / "default" / "nnpm.lock").exists()
    with pytest.raises(E.SignatureError, match="proj-plain is not signed"):
        _installer(shared_api, home, require=True).install_locked(lock.env_lock())
    _installer(shared_api, home).install_locked(lock.env_lock())
    assert _env_lock(home)["packages"]["proj-signed"]["signer"] == signed.signer


def test_the_card_names_the_publisher_and_the_signing_key(shared_api, tmp_path: Path) -> None:
    token, key = shared_api.add_user("erin"), _key()
    _publish(shared_api, token, tmp_path, "carded", signer=key)
    _publish(shared_api, token, tmp_path, "plain-card")
    keyid = local_keys.public_of(key).keyid
    with shared_api.client() as http:
        signed, plain = http.get("/packages/carded").text, http.get("/packages/plain-card").text
    assert "by <strong>erin</strong>" in signed and f'title="{keyid}"' in signed and "Unsigned" not in signed
    assert "by <strong>erin</strong>" in plain and "Unsigned" in plain and keyid not in plain
