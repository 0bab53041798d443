"""Publisher signatures end to end with the real CLI and a real registry: keys generate, sign = true,
owner key add/remove, publish --key with a passphrase, install --require-signatures, then nnpm.load
re-verifying the lock's signature (docs/trust.md). The API's answers are tests/test_signing.py's."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cli import one_error_line, run_nnpm
from packages import write_labelled_package

from nnpm import errors as E

pytestmark = pytest.mark.registry_backends("sqlite-dir")


def _keyid(stdout: str) -> str:
    return next(word for word in stdout.split() if word.startswith("sha256:"))


def test_keys_publish_sign_rotate_install_and_load(registry, tmp_path: Path, monkeypatch) -> None:
    home, token = tmp_path / "home", registry.add_user("alice")
    env = {"NNPM_TOKEN": token, "NNPM_KEY_PASSPHRASE": "pw"}

    def nnpm(*args, check: bool = True):
        return run_nnpm(home, *args, registry=registry.url, env=env, check=check)

    first = _keyid(nnpm("keys", "generate").stdout)
    nnpm("config", "set", "sign", "true")   # publish signs with the default key without --sign
    nnpm("publish", write_labelled_package(tmp_path / "v1", "cli-signed", "1.0.0", n=20), "--no-progress")
    second = _keyid(nnpm("keys", "generate", "ci", "--passphrase").stdout)
    assert "encrypted" in nnpm("keys", "list").stdout
    nnpm("owner", "key", "add", "cli-signed", home / "keys" / "ci.pub")
    nnpm("publish", write_labelled_package(tmp_path / "v2", "cli-signed", "2.0.0", n=21), "--key", "ci",
         "--no-progress")
    nnpm("owner", "key", "remove", "cli-signed", first)
    listed = nnpm("owner", "key", "list", "cli-signed").stdout
    assert f"{first}  removed" in listed and f"{second}  active" in listed
    line = one_error_line(nnpm("publish", write_labelled_package(tmp_path / "v3", "cli-signed", "3.0.0", n=22),
                               "--no-progress", check=False))
    assert "not registered" in line and first[:19] in line

    nnpm("install", "cli-signed", "--require-signatures")
    lock_path = home / "envs" / "default" / "nnpm.lock"
    entry = json.loads(lock_path.read_bytes())["packages"]["cli-signed"]
    assert entry["version"] == "2.0.0" and entry["signer"] == second

    import nnpm as api

    monkeypatch.setenv("NNPM_HOME", str(home))
    monkeypatch.delenv("NNPM_PROJECT", raising=False)
    assert api.load("cli-signed") is not None
    sig = base64.b64decode(entry["signature"])
    forged = base64.b64encode(bytes([sig[0] ^ 0x80]) + sig[1:]).decode()
    lock_path.write_text(lock_path.read_text().replace(entry["signature"], forged))
    with pytest.raises(E.SignatureError) as info:
        api.load("cli-signed")
    assert "cli-signed 2.0.0" in info.value.one_line() and "\n" not in info.value.one_line()
