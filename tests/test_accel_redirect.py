"""`--accel-redirect PREFIX`: blob downloads handed to a front proxy (docs/deploy.md "Blobs served by nginx").

In process (tests/inprocess.py): a whole-blob GET answers 200 with no body, the blob's own
headers and `X-Accel-Redirect: PREFIX/sha256/<ab>/<hex>`, a path that exists under the
blobs folder; 304, 404, Range (a resumed download) and HEAD stay the registry's own; the
OCI API's layers go the same way. Settings the proxy could not use stop the server at
start-up; a client that reaches such a registry without its proxy gets one clear line.
Then for real: nginx (Debian's package) in front of `python -m registry_server`, with the
configuration docs/deploy.md gives, serves `nnpm install`'s blobs byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from cli import one_error_line, run_nnpm
from nginxproc import NginxFront
from protocol import put_blob

from nnpm.errors import ConfigError
from registry_server.settings import ServerSettings
from registry_server.storage import storage_from_settings

pytestmark = pytest.mark.registry_backends("sqlite-dir")   # a folder store is what a proxy can read
PREFIX = "/_nnpm_blobs/"


def test_a_whole_blob_is_handed_to_the_proxy_with_its_headers(api_factory) -> None:
    api = api_factory(accel_redirect=PREFIX)
    token = api.add_user("alice")
    data = os.urandom(200_000)
    digest = put_blob(api, token, data)
    url = f"/api/v1/blobs/sha256:{digest}"
    with api.client() as c:
        r = c.get(url)
        assert r.status_code == 200 and r.content == b""
        where = r.headers["x-accel-redirect"]
        assert where == f"{PREFIX}sha256/{digest[:2]}/{digest}"
        assert (api.data_dir / "blobs" / where.removeprefix(PREFIX)).read_bytes() == data
        assert r.headers["etag"] == f'"sha256:{digest}"'
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["content-type"] == "application/octet-stream"
        named = c.get(url, params={"filename": "model.onnx"})
        assert "x-accel-redirect" in named.headers and "model.onnx" in named.headers["content-disposition"]
        # what the proxy could get wrong stays here: a conditional GET, a resumed download, HEAD, absence
        assert c.get(url, headers={"If-None-Match": f'"sha256:{digest}"'}).status_code == 304
        resumed = c.get(url, headers={"Range": "bytes=10-", "If-Range": f'"sha256:{digest}"'})
        assert resumed.status_code == 206 and resumed.content == data[10:]
        assert "x-accel-redirect" not in resumed.headers
        head = c.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(len(data))
        assert "x-accel-redirect" not in head.headers
        assert c.get("/api/v1/blobs/sha256:" + "0" * 64).status_code == 404


def test_oci_layers_are_handed_to_the_proxy_too(api_factory, small_package) -> None:
    api = api_factory(accel_redirect=PREFIX)
    token = api.add_user("alice")
    assert api.publish(small_package("accel-oci"), token).status_code == 201
    with api.client() as c:
        files = c.get("/api/v1/packages/accel-oci/1.0.0").json()["manifest"]["files"]
        model = next(f for f in files if f["path"] == "model.onnx")
        r = c.get(f"/v2/accel-oci/blobs/sha256:{model['sha256']}")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["x-accel-redirect"].endswith(f"/sha256/{model['sha256'][:2]}/{model['sha256']}")
        assert r.headers["docker-content-digest"] == f"sha256:{model['sha256']}"


@pytest.mark.parametrize("prefix, storage, words", [
    ("/_nnpm_blobs/", "s3://bucket/prefix", "needs blobs in a folder"),
    ("_nnpm_blobs/", "", "is not a URL path"),
    ("/blobs here/", "", "is not a URL path"),
    ("/blobs/\r\nX-Evil: 1", "", "is not a URL path"),
])
def test_settings_a_proxy_could_not_use_are_refused(tmp_path, prefix: str, storage: str, words: str) -> None:
    settings = ServerSettings(data_dir=tmp_path, accel_redirect=prefix, storage_url=storage)
    with pytest.raises(ConfigError, match=words):
        storage_from_settings(settings)


def test_nginx_in_front_serves_every_blob_of_an_install(tmp_path, registry_factory, small_package) -> None:
    reg = registry_factory(accel_redirect=PREFIX)
    token = reg.add_user("alice")
    folder = small_package("behind-nginx", external_data=True, labels=["a", "b", "c"])
    assert reg.publish(small_package("no-proxy"), token).status_code == 201
    # a client that reaches the registry past its proxy: one line, nothing installed
    proc = run_nnpm(tmp_path / "stray", "install", "no-proxy", registry=reg.url, check=False)
    assert "X-Accel-Redirect" in one_error_line(proc)
    assert not list((tmp_path / "stray").glob("envs/*/pkgs/no-proxy-*"))
    with NginxFront(tmp_path / "nginx", upstream=reg.url, blobs=reg.data_dir / "blobs", prefix=PREFIX) as front:
        assert reg.publish(folder, token).status_code == 201   # uploads go past nginx: downloads are the subject
        home = tmp_path / "home"
        run_nnpm(home, "install", "behind-nginx", registry=front.url)
        lock = json.loads((home / "envs" / "default" / "nnpm.lock").read_text())
        files = lock["packages"]["behind-nginx"]["files"]
        served = front.blob_requests(PREFIX)
    installed = home / "envs" / "default" / "pkgs" / "behind-nginx-1.0.0" / "files"
    for f in files:   # every file the install wrote is the registry's blob, byte for byte
        blob = reg.data_dir / "blobs" / "sha256" / f["sha256"][:2] / f["sha256"]
        assert (installed / f["path"]).read_bytes() == blob.read_bytes()
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == f["sha256"]
    # and nginx sent each of them itself, from the blobs folder, whole
    want = sorted((f"{PREFIX}sha256/{f['sha256'][:2]}/{f['sha256']}", f["size"]) for f in files)
    assert sorted((uri, sent) for status, uri, sent in served if status == 200) == want, served
