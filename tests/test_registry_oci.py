"""The registry's OCI pull API (`/v2/`, docs/protocol.md "OCI pull API"): every version as a ModelPack artifact.

The answers are checked in process (tests/inprocess.py): manifests byte for byte what
`nnpm.format.oci.build_artifact` makes of the version API's manifest (so the digests are
those `nnpm push` writes anywhere), tags and their pages, blobs (layers with Range, the
config, nnpm's manifest), the OCI error shape, push methods refused. oras-py then pulls a
package from a real server (tests/registry_proc.py) as an independent client. Blobs run
on both backends (`sqlite-dir`, `postgres-s3`); the rest is backend-blind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest
from protocol import put_blob

from nnpm.format.manifest import Manifest
from nnpm.format.oci import IMAGE_MANIFEST, Artifact, build_artifact, check_config, parse_artifact

pytestmark = pytest.mark.registry_backends("sqlite-dir")
BOTH = pytest.mark.registry_backends("sqlite-dir", "postgres-s3")
ZERO = "sha256:" + "0" * 64


def artifact_of(reg, name: str, version: str, variant: str = "reference") -> Artifact:
    """What `nnpm push` would write for this version: built from the version API's manifest."""
    with reg.client() as c:
        r = c.get(f"/api/v1/packages/{name}/{version}")
    assert r.status_code == 200, r.text
    return build_artifact(Manifest.from_dict(r.json()["manifest"]), variant)


def assert_oci_error(r: httpx.Response, status: int, code: str) -> dict:
    """The distribution spec's error shape: {"errors": [{"code", "message", "detail"}]}."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert set(error) == {"code", "message", "detail"} and error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    return error


@pytest.fixture(scope="module")
def publisher(shared_api) -> str:
    return shared_api.add_user("publisher")


@pytest.fixture(scope="module")
def resnet(shared_api, publisher: str, examples_dir: Path) -> str:
    """resnet18 1.0.0 (variants int8 and int8-static) published on the module's registry."""
    assert shared_api.publish(examples_dir / "resnet18", publisher).status_code == 201
    return "resnet18"


def test_the_version_check(shared_api) -> None:
    with shared_api.client() as c:
        for path in ("/v2/", "/v2"):
            r = c.get(path)
            assert r.status_code == 200 and r.json() == {}, (path, r.text)
            assert r.headers["docker-distribution-api-version"] == "registry/2.0"


def test_manifests_by_tag_and_digest_are_the_bytes_nnpm_push_writes(shared_api, resnet: str) -> None:
    with shared_api.client() as c:
        for variant, tag in (("reference", "1.0.0"), ("int8", "1.0.0-int8"), ("int8-static", "1.0.0-int8-static")):
            want = artifact_of(shared_api, resnet, "1.0.0", variant)
            by_tag = c.get(f"/v2/{resnet}/manifests/{tag}", headers={"Accept": IMAGE_MANIFEST})
            assert by_tag.status_code == 200, by_tag.text
            assert by_tag.content == want.manifest_bytes, tag
            assert by_tag.headers["content-type"] == IMAGE_MANIFEST
            assert by_tag.headers["docker-content-digest"] == f"sha256:{want.digest}"
            assert by_tag.headers["content-length"] == str(len(want.manifest_bytes))
            assert parse_artifact(by_tag.content).variant == variant
            by_digest = c.get(f"/v2/{resnet}/manifests/sha256:{want.digest}")
            assert by_digest.status_code == 200 and by_digest.content == want.manifest_bytes
            assert by_digest.headers["docker-content-digest"] == f"sha256:{want.digest}"
            for ref in (tag, f"sha256:{want.digest}"):
                head = c.head(f"/v2/{resnet}/manifests/{ref}")
                assert head.status_code == 200 and head.content == b""
                assert head.headers["content-length"] == str(len(want.manifest_bytes))
                assert head.headers["content-type"] == IMAGE_MANIFEST
                assert head.headers["docker-content-digest"] == f"sha256:{want.digest}"
        # any spelling of the name, and an Accept that leaves the OCI manifest out: still the same bytes
        docker = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        r = c.get("/v2/ResNet18/manifests/1.0.0", headers=docker)
        assert r.status_code == 200 and r.content == artifact_of(shared_api, resnet, "1.0.0").manifest_bytes


def test_the_config_and_nnpm_manifest_blobs(shared_api, resnet: str) -> None:
    with shared_api.client() as c:
        for variant in ("reference", "int8"):
            want = artifact_of(shared_api, resnet, "1.0.0", variant)
            r = c.get(f"/v2/{resnet}/blobs/sha256:{want.config_digest}")
            assert r.status_code == 200 and r.content == want.config_bytes
            assert r.headers["docker-content-digest"] == f"sha256:{want.config_digest}"
            config = check_config(r.content)  # the ModelPack schema (closed)
            assert config["descriptor"]["name"] == "resnet18" and config["config"]["format"] == "onnx"
            nnpm_layer = parse_artifact(want.manifest_bytes).nnpm_layer
            r = c.get(f"/v2/{resnet}/blobs/sha256:{nnpm_layer.digest}")
            assert r.status_code == 200 and r.content == want.nnpm_manifest_bytes
            assert Manifest.from_json(r.content).name == "resnet18"
            part = c.get(f"/v2/{resnet}/blobs/sha256:{want.config_digest}", headers={"Range": "bytes=5-9"})
            assert part.status_code == 206 and part.content == want.config_bytes[5:10]
            head = c.head(f"/v2/{resnet}/blobs/sha256:{want.config_digest}")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(len(want.config_bytes))


def test_tags_list_with_variants_and_pages(shared_api, resnet: str) -> None:
    tags = ["1.0.0", "1.0.0-int8", "1.0.0-int8-static"]
    with shared_api.client() as c:
        r = c.get("/v2/RESNET18/tags/list")
        assert r.status_code == 200 and r.json() == {"name": "resnet18", "tags": tags}
        assert "link" not in r.headers
        first = c.get(f"/v2/{resnet}/tags/list", params={"n": 2})
        assert first.json() == {"name": "resnet18", "tags": tags[:2]}
        assert first.headers["link"] == '</v2/resnet18/tags/list?n=2&last=1.0.0-int8>; rel="next"'
        rest = c.get(first.headers["link"].split(">")[0][1:])
        assert rest.json()["tags"] == tags[2:] and "link" not in rest.headers
        assert c.get(f"/v2/{resnet}/tags/list", params={"n": 3}).headers.get("link") is None
        assert c.get(f"/v2/{resnet}/tags/list", params={"n": 0}).json()["tags"] == []
        assert c.get(f"/v2/{resnet}/tags/list", params={"last": "1.0.0"}).json()["tags"] == tags[1:]
        assert c.get(f"/v2/{resnet}/tags/list", params={"last": "9"}).json()["tags"] == []
        for bad in ("two", "-1", "1.5"):
            assert_oci_error(c.get(f"/v2/{resnet}/tags/list", params={"n": bad}), 400, "PAGINATION_NUMBER_INVALID")


def test_tags_of_local_yanked_and_epoch_versions(shared_api, publisher: str, small_package) -> None:
    for version in ("1.0.0", "1.0.0+cpu", "2.0.0", "1!0.5"):
        assert shared_api.publish(small_package("taggy", version), publisher).status_code == 201, version
    with shared_api.client(publisher) as c:
        assert c.post("/api/v1/packages/taggy/2.0.0/yank", json={"reason": "test"}).status_code == 200
        # yanked versions stay listed and pullable (a tag is an exact pin); an epoch has no tag
        assert c.get("/v2/taggy/tags/list").json()["tags"] == ["1.0.0", "1.0.0_cpu", "2.0.0"]
        for tag, version in (("1.0.0_cpu", "1.0.0+cpu"), ("2.0.0", "2.0.0")):
            r = c.get(f"/v2/taggy/manifests/{tag}")
            assert r.status_code == 200 and r.content == artifact_of(shared_api, "taggy", version).manifest_bytes
        for tag in ("1.0", "1.0.0+cpu", "1.0.0-int8", "latest", "0.5"):  # only the exact tags tags/list shows
            assert_oci_error(c.get(f"/v2/taggy/manifests/{tag}"), 404 if "+" not in tag else 400,
                             "MANIFEST_UNKNOWN" if "+" not in tag else "TAG_INVALID")


def test_unknown_and_invalid_names_references_and_digests(shared_api, resnet: str) -> None:
    with shared_api.client() as c:
        for path in ("/v2/nothere/manifests/1.0.0", "/v2/nothere/tags/list", f"/v2/nothere/blobs/{ZERO}",
                     "/v2/library/resnet18/manifests/1.0.0", "/v2/a/b/tags/list", f"/v2/org/resnet18/blobs/{ZERO}"):
            error = assert_oci_error(c.get(path), 404, "NAME_UNKNOWN")
            assert path.split("/")[2] in error["message"], error
        assert c.head("/v2/nothere/manifests/1.0.0").status_code == 404
        for path in ("/v2/-bad-/tags/list", "/v2/ends_/manifests/1.0.0", "/v2/sp%20ace/blobs/" + ZERO):
            assert_oci_error(c.get(path), 400, "NAME_INVALID")
        for ref in ("9.9.9", "1.0.0-fp16", ZERO):
            assert_oci_error(c.get(f"/v2/{resnet}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
        assert c.head(f"/v2/{resnet}/manifests/{ZERO}").status_code == 404
        assert_oci_error(c.get(f"/v2/{resnet}/manifests/-x"), 400, "TAG_INVALID")
        for ref in ("sha256:abc", "sha256:" + "A" * 64, "sha512:" + "0" * 128, "md5:" + "0" * 32):
            assert_oci_error(c.get(f"/v2/{resnet}/manifests/{ref}"), 400, "DIGEST_INVALID")
            assert_oci_error(c.get(f"/v2/{resnet}/blobs/{ref}"), 400, "DIGEST_INVALID")
        assert_oci_error(c.get(f"/v2/{resnet}/blobs/1.0.0"), 400, "DIGEST_INVALID")
        assert_oci_error(c.get(f"/v2/{resnet}/referrers/{ZERO}"), 404, "UNSUPPORTED")
        assert_oci_error(c.get("/v2/_catalog"), 404, "UNSUPPORTED")


def test_push_methods_are_405_and_reads_need_no_token(shared_api, resnet: str, publisher: str) -> None:
    want = artifact_of(shared_api, resnet, "1.0.0")
    with shared_api.client(publisher) as c:  # a valid token changes nothing: the OCI API is read-only
        for method, path in (("PUT", f"/v2/{resnet}/manifests/2.0.0"), ("DELETE", f"/v2/{resnet}/manifests/1.0.0"),
                             ("POST", f"/v2/{resnet}/blobs/uploads/"), ("PATCH", f"/v2/{resnet}/blobs/uploads/x"),
                             ("PUT", f"/v2/{resnet}/blobs/uploads/x?digest={ZERO}"),
                             ("DELETE", f"/v2/{resnet}/blobs/sha256:{want.config_digest}"),
                             ("POST", "/v2/newpackage/blobs/uploads/")):
            r = c.request(method, path, content=want.manifest_bytes if method == "PUT" else None,
                          headers={"Content-Type": IMAGE_MANIFEST})
            assert_oci_error(r, 405, "UNSUPPORTED")
            assert r.headers["allow"] == "GET, HEAD"
        assert c.get(f"/v2/{resnet}/tags/list").json()["tags"] == ["1.0.0", "1.0.0-int8", "1.0.0-int8-static"]
    with shared_api.client("nnpm_" + "x" * 43) as c:  # an unknown token is ignored, like no token
        assert c.get(f"/v2/{resnet}/manifests/1.0.0").content == want.manifest_bytes
    with shared_api.client() as c:
        assert c.get(f"/v2/{resnet}/manifests/1.0.0").content == want.manifest_bytes


@BOTH
def test_layers_are_the_package_files_and_blobs_are_per_repository(api, small_package) -> None:
    token = api.add_user("alice")
    folder = small_package("blobby", "1.0.0", weights=tuple(float(i) for i in range(3000)))
    assert api.publish(folder, token).status_code == 201
    assert api.publish(small_package("other", "1.0.0", weights=(7.0, 8.0)), token).status_code == 201
    want, other = artifact_of(api, "blobby", "1.0.0"), artifact_of(api, "other", "1.0.0")
    stray = put_blob(api, token, os.urandom(100))  # stored, but in no artifact
    with api.client() as c:
        for layer in want.layers[:-1]:
            data = (folder / layer.path).read_bytes()
            url = f"/v2/blobby/blobs/sha256:{layer.digest}"
            r = c.get(url)
            assert r.status_code == 200 and r.content == data, layer.path
            assert r.headers["docker-content-digest"] == f"sha256:{layer.digest}"
            assert r.headers["content-length"] == str(len(data)) and r.headers["etag"] == f'"sha256:{layer.digest}"'
            part = c.get(url, headers={"Range": "bytes=10-"})
            assert part.status_code == 206 and part.content == data[10:]
            assert part.headers["content-range"] == f"bytes 10-{len(data) - 1}/{len(data)}"
            head = c.head(url)
            assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(data))
            assert head.headers["docker-content-digest"] == f"sha256:{layer.digest}"
            assert c.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
            refused = c.get(url, headers={"Range": f"bytes={len(data)}-"})
            assert_oci_error(refused, 416, "RANGE_INVALID")
            assert refused.headers["content-range"] == f"bytes */{len(data)}"
        other_layer = next(layer.digest for layer in other.layers if layer.path == "model.onnx")
        assert other_layer not in {layer.digest for layer in want.layers}
        assert c.get(f"/v2/other/blobs/sha256:{other_layer}").status_code == 200
        for digest in (other_layer, other.config_digest, stray, "0" * 64):
            assert_oci_error(c.get(f"/v2/blobby/blobs/sha256:{digest}"), 404, "BLOB_UNKNOWN")
            assert c.head(f"/v2/blobby/blobs/sha256:{digest}").status_code == 404
        assert_oci_error(c.get(f"/v2/blobby/manifests/sha256:{other.digest}"), 404, "MANIFEST_UNKNOWN")
        assert c.get(f"/v2/blobby/blobs/sha256:{want.config_digest}").content == want.config_bytes


@pytest.mark.registry_backends("postgres-s3")
def test_layers_redirect_to_the_store_like_the_blob_api(api_factory, small_package) -> None:
    reg = api_factory(redirect_downloads=True)
    token = reg.add_user("alice")
    folder = small_package("redirected", "1.0.0")
    assert reg.publish(folder, token).status_code == 201
    want = artifact_of(reg, "redirected", "1.0.0")
    layer = want.layers[0]
    with reg.client() as c:
        r = c.get(f"/v2/redirected/blobs/sha256:{layer.digest}")
        assert r.status_code == 307 and r.headers["docker-content-digest"] == f"sha256:{layer.digest}"
        assert c.get(f"/api/v1/blobs/sha256:{layer.digest}").status_code == 307
        assert httpx.get(r.headers["location"]).content == (folder / layer.path).read_bytes()
        # the generated blobs are not in the store: served here
        assert c.get(f"/v2/redirected/blobs/sha256:{want.config_digest}").content == want.config_bytes


def test_oras_pulls_a_package_from_a_real_server(shared_registry, small_package, tmp_path: Path) -> None:
    import oras.client

    token = shared_registry.add_user("orasuser")
    folder = small_package("pulled", "1.0.0", labels=["cat", "dog"])
    assert shared_registry.publish(folder, token).status_code == 201
    want = artifact_of(shared_registry, "pulled", "1.0.0")
    host = shared_registry.url.removeprefix("http://")
    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.session.trust_env = False  # no proxy for 127.0.0.1
    assert client.get_tags(f"{host}/pulled") == ["1.0.0"]
    manifest = client.get_manifest(f"{host}/pulled:1.0.0")
    assert json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode() == want.manifest_bytes
    pulled = client.pull(target=f"{host}/pulled:1.0.0", outdir=str(tmp_path / "out"))
    # oras names pulled files by org.opencontainers.image.title, which nnpm sets to the file's path
    # beside ModelPack's org.cncf.model.filepath
    assert len(pulled) == len(want.layers)
    for layer in want.layers:
        data = (tmp_path / "out" / layer.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == layer.digest
        expected = want.nnpm_manifest_bytes if layer.nnpm_manifest else (folder / layer.path).read_bytes()
        assert data == expected, layer.path
    assert {layer.path for layer in want.layers} == {"manifest.json", "model.onnx", "README.md", "labels.txt"}
    # HEAD through uvicorn: the length of the body a GET would send, and none sent
    with shared_registry.client() as c:
        head = c.head("/v2/pulled/manifests/1.0.0")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(want.manifest_bytes))
        assert head.headers["docker-content-digest"] == f"sha256:{want.digest}"
        model = next(layer for layer in want.layers if layer.path == "model.onnx")
        head = c.head(f"/v2/pulled/blobs/sha256:{model.digest}")
        assert head.status_code == 200 and head.headers["content-length"] == str(model.size)
