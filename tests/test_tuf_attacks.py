"""A hostile mirror between a pinned client and its registry (docs/security.md): every attack is one IndexTrustError.

The mirror is an httpx transport over the in-process registry's: it records what the
registry answered and can answer some paths its own way (altered, replayed, or 404).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from test_tuf import client, publish, signed_registry, versions

from nnpm.errors import IndexTrustError
from nnpm.format.packument import Packument

pytestmark = pytest.mark.registry_backends("sqlite-dir")
Rule = Callable[[int, bytes], tuple[int, bytes]]


class Mirror(httpx.BaseTransport):
    """Forwards to the registry; `rules[prefix]` rewrites the (status, body) of paths starting with it."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner, self.seen, self.rules = inner, {}, {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.inner.handle_request(request)
        status, body, path = resp.status_code, resp.read(), request.url.path
        self.seen[path] = body
        for prefix, rule in self.rules.items():
            if path.startswith(prefix):
                status, body = rule(status, body)
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})


def replay(body: bytes) -> Rule:
    return lambda status, _: (200, body)


def refused(c, name: str, role: str | None, *words: str) -> IndexTrustError:
    """`c.packument(name)` is refused with one line naming `role` (a bin when None) and `words`."""
    with pytest.raises(IndexTrustError) as info:
        c.packument(name)
    err = info.value
    assert err.role == role if role else err.role.startswith("bins-"), (err.role, err.message)
    assert all(w in err.message for w in words) and "\n" not in err.message, err.message
    return err


@pytest.fixture
def signed(api_factory, tmp_path):
    """(registry, token): an index signed over `tiny` 1.0.0."""
    api = signed_registry(api_factory, tmp_path / "keys")
    token = api.add_user("alice")
    publish(api, tmp_path, token, "tiny")
    return api, token


def test_an_altered_packument_or_metadata_file_is_refused(signed, tmp_path):
    api, _ = signed
    mirror = Mirror(api.transport)
    mirror.rules["/tuf/targets/"] = lambda s, b: (s, b.replace(b'"yanked":false', b'"yanked":true '))
    refused(client(api, tmp_path / "a", mirror), "tiny", None, "changed after signing")

    mirror = Mirror(api.transport)
    mirror.rules["/tuf/targets/"] = lambda s, b: (s, b[:-1] + bytes([b[-1] ^ 1]))   # one byte of the packument
    refused(client(api, tmp_path / "b", mirror), "tiny", None, "changed after signing")

    def forged(status: int, body: bytes) -> tuple[int, bytes]:   # a later expiry, not re-signed
        doc = json.loads(body)
        doc["signed"]["expires"] = "2099-01-01T00:00:00Z"
        return status, json.dumps(doc).encode()

    mirror = Mirror(api.transport)
    mirror.rules["/tuf/metadata/timestamp.json"] = forged
    refused(client(api, tmp_path / "c", mirror), "tiny", "timestamp", "changed after signing")
    assert versions(client(api, tmp_path / "c").packument("tiny")) == {"1.0.0": False}   # the honest path still works


def test_a_mirror_that_drops_a_yank_is_refused(signed, tmp_path):
    api, token = signed
    home, mirror = tmp_path / "home", Mirror(api.transport)
    client(api, home, mirror).packument("tiny")
    before = dict(mirror.seen)
    pre_target = next(body for path, body in before.items() if path.startswith("/tuf/targets/"))
    with api.client(token) as c:
        assert c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": "unsafe"}).status_code == 200
    assert versions(client(api, home, mirror).packument("tiny")) == {"1.0.0": True}   # seen by this machine

    mirror.rules["/tuf/metadata/timestamp.json"] = replay(before["/tuf/metadata/timestamp.json"])
    err = refused(client(api, home, mirror), "tiny", "timestamp", "rolled back")
    assert "nnpm config set registry" in err.hint

    fresh = Mirror(api.transport)   # the new index, but the packument bytes from before the yank
    fresh.rules["/tuf/targets/"] = replay(pre_target)
    refused(client(api, tmp_path / "fresh", fresh), "tiny", None, "changed after signing")
    assert Packument.from_json(pre_target).releases[0].yanked is False


def test_a_frozen_timestamp_is_refused_once_it_expires_and_the_registry_re_signs_lazily(api_factory, tmp_path):
    api = signed_registry(api_factory, tmp_path / "keys", tuf_timestamp_expiry=1)
    publish(api, tmp_path, api.add_user("alice"), "tiny")
    home, mirror = tmp_path / "home", Mirror(api.transport)
    client(api, home, mirror).packument("tiny")
    captured = mirror.seen["/tuf/metadata/timestamp.json"]
    expires = datetime.strptime(json.loads(captured)["signed"]["expires"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    time.sleep(max(0.0, expires - time.time()) + 0.05)   # at most two seconds: its life, rounded up
    mirror.rules["/tuf/metadata/timestamp.json"] = replay(captured)
    refused(client(api, home, mirror), "tiny", "timestamp", "expired — the index is frozen or stale")

    with api.client() as c:   # the registry itself re-signs a timestamp past half its life, on read
        fresh = c.get("/tuf/metadata/timestamp.json").json()["signed"]
        assert fresh["version"] > json.loads(captured)["signed"]["version"]
        assert c.get("/tuf/metadata/timestamp.json").json()["signed"]["version"] == fresh["version"]
    assert versions(client(api, home).packument("tiny")) == {"1.0.0": False}


def test_a_pinned_registry_that_stops_serving_its_index_is_refused(signed, tmp_path):
    api, _ = signed
    home = tmp_path / "home"
    client(api, home).packument("tiny")
    mirror = Mirror(api.transport)
    mirror.rules["/tuf/"] = lambda s, b: (404, b'{"error": "not_found"}')
    err = refused(client(api, home, mirror), "tiny", "timestamp", "no longer serves its signed index")
    assert "--root" in err.hint
    assert client(api, tmp_path / "other", mirror).packument("tiny") is not None   # never pinned: used as before


def test_a_root_not_signed_by_the_pinned_roots_threshold_is_refused(signed, tmp_path):
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata

    from nnpm.client.trusted_index import pin_root

    api, _ = signed
    home = tmp_path / "home"
    client(api, home).packument("tiny")   # pinned at root 1
    forged = Metadata.from_bytes((tmp_path / "keys" / "1.root.json").read_bytes())
    attacker = CryptoSigner.generate_ed25519()
    for keyid in list(forged.signed.roles["root"].keyids):
        forged.signed.revoke_key(keyid, "root")
    forged.signed.add_key(attacker.public_key, "root")
    forged.signed.version = 2
    forged.signatures.clear()
    forged.sign(attacker)
    mirror = Mirror(api.transport)
    mirror.rules["/tuf/metadata/2.root.json"] = replay(forged.to_bytes())
    refused(client(api, home, mirror), "tiny", "root", "changed after signing")

    forged.signed.version = 1   # self-signed, but nothing this machine trusts: an explicit pin checks the file only
    forged.signatures.clear()
    forged.sign(attacker)
    bad = forged.to_bytes().replace(b'"sig":"', b'"sig":"00', 1)
    with pytest.raises(IndexTrustError, match="not signed by its own threshold"):
        pin_root(tmp_path / "trust", api.url, bad[:-1] + b"}" if bad.endswith(b"}") else bad, "ROOT.json")
    from nnpm.errors import ConfigError

    with pytest.raises(ConfigError, match="not a root"):
        pin_root(tmp_path / "trust", api.url, api.client().get("/tuf/metadata/timestamp.json").content, "t.json")
    assert Path(pin_root(tmp_path / "trust", api.url, forged.to_bytes(), "ROOT.json"), "root.json").is_file()
