"""Manifests and request bodies the registry must refuse, in process (tests/inprocess.py).

Each refusal is the one error shape (status, code, a detail naming the problem) and leaves
nothing published. One app per module and backend: tests use their own package names.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx
import pytest
from protocol import assert_error, assert_nothing_published, built, put_blob, put_manifest, upload_blobs

from nnpm import errors as E


def _manifest(b) -> dict:
    return json.loads(b.manifest.to_json())


def _external_escape(tmp_path: Path) -> tuple[bytes, dict]:
    """A model whose weights live 'outside' the package (location ../weights.bin) and its manifest."""
    import onnx
    from onnx import TensorProto, helper

    from nnpm.format.onnxinfo import signature_of

    w = helper.make_tensor("W", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])
    graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    init = model.graph.initializer[0]
    init.ClearField("float_data")
    init.data_location = TensorProto.EXTERNAL
    for k, v in {"location": "../weights.bin", "offset": "0", "length": "12"}.items():
        init.external_data.add(key=k, value=v)
    data = model.SerializeToString()
    manifest = {"format": 1, "package": {"name": "escape", "version": "1.0.0"},
                "model": {"file": "model.onnx"}, "signature": signature_of(model.graph).to_dict(),
                "opsets": {"": 17}, "ir_version": 8, "params": 3,
                "files": [{"path": "model.onnx", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}
    assert onnx.load_from_string(data).graph.initializer[0].external_data[0].value == "../weights.bin"
    return data, manifest


def _case_unknown_key(m: dict) -> None:
    m["package"]["colour"] = "blue"


def _case_invalid_version(m: dict) -> None:
    m["package"]["version"] = "one point oh"


def _case_invalid_name(m: dict) -> None:
    m["package"]["name"] = "bad name!"


def _case_dotdot_path(m: dict) -> None:
    m["files"][0]["path"] = "../" + m["files"][0]["path"]


def _case_signature_differs(m: dict) -> None:
    m["signature"]["inputs"][0]["dtype"] = "int64"
    m.pop("graphs")   # a manifest without a graphs table is one the worker alone can catch lying


def _case_params_differ(m: dict) -> None:
    m["params"] += 1


def _case_opsets_differ(m: dict) -> None:
    m["opsets"] = {"": 13}


def _case_format(m: dict) -> None:
    m["format"] = 99


def _case_no_signature(m: dict) -> None:
    m["signature"] = None


BAD_MANIFESTS = {  # case → (status, code, words the detail must contain)
    "unknown_key": (_case_unknown_key, 400, "invalid_manifest", ["colour"]),
    "invalid_version": (_case_invalid_version, 400, "invalid_manifest", ["version"]),
    "invalid_name": (_case_invalid_name, 400, "invalid_manifest", ["name"]),
    "dotdot_path": (_case_dotdot_path, 400, "invalid_manifest", [".."]),
    "signature_differs": (_case_signature_differs, 422, "invalid_manifest", ["signature.inputs"]),
    "params_differ": (_case_params_differ, 422, "invalid_manifest", ["params"]),
    "opsets_differ": (_case_opsets_differ, 422, "invalid_manifest", ["opsets"]),
    "unknown_format": (_case_format, 400, "invalid_manifest", ["format"]),
    "no_signature": (_case_no_signature, 400, "invalid_manifest", ["signature"]),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_invalid_manifest_is_refused_and_nothing_stored(shared_api, small_package, case: str) -> None:
    mutate, status, code, words = BAD_MANIFESTS[case]
    token = shared_api.add_user("alice")
    name = f"bad-{case.replace('_', '-')}"
    b = built(small_package(name))
    upload_blobs(shared_api, token, b)
    m = _manifest(b)
    mutate(m)
    assert_error(put_manifest(shared_api, token, name, "1.0.0", m), status, code, *words)
    assert_nothing_published(shared_api, name)


def test_manifest_for_another_name_or_version_than_the_url_is_400(shared_api, small_package) -> None:
    token = shared_api.add_user("alice")
    b = built(small_package("url-match"))
    upload_blobs(shared_api, token, b)
    assert_error(put_manifest(shared_api, token, "url-other", "1.0.0", _manifest(b)), 400,
                 "invalid_manifest", "url-match")
    assert_error(put_manifest(shared_api, token, "url-match", "2.0.0", _manifest(b)), 400,
                 "invalid_manifest", "version")
    assert_nothing_published(shared_api, "url-match")
    assert_nothing_published(shared_api, "url-other")


def test_manifest_naming_a_missing_blob_is_404_naming_the_file(shared_api, small_package) -> None:
    token = shared_api.add_user("alice")
    b = built(small_package("missing-blob", readme="# a README no other test uploads\n"))
    readme = b.manifest.file("README.md")
    for f in b.manifest.files:
        if f.path != "README.md":
            put_blob(shared_api, token, b.paths[f.path].read_bytes())
    assert_error(put_manifest(shared_api, token, "missing-blob", "1.0.0", _manifest(b)), 404, "not_found",
                 "README.md", readme.sha256)
    m = _manifest(b)
    for f in m["files"]:
        if f["path"] == "README.md":
            f["size"] += 1  # the blob exists, but the manifest lies about its size
    put_blob(shared_api, token, b.paths["README.md"].read_bytes())
    assert_error(put_manifest(shared_api, token, "missing-blob", "1.0.0", m), 400, "integrity_error",
                 "README.md")
    assert_nothing_published(shared_api, "missing-blob")


def test_random_bytes_as_model_onnx_is_422(shared_api, small_package) -> None:
    token = shared_api.add_user("alice")
    b = built(small_package("random-model"))
    upload_blobs(shared_api, token, b)
    junk = os.urandom(4096)
    m = _manifest(b)
    for f in m["files"]:
        if f["path"] == "model.onnx":
            f.update(size=len(junk), sha256=put_blob(shared_api, token, junk))
    m.pop("graphs")   # what pack read from the real graph no longer describes the junk
    assert_error(put_manifest(shared_api, token, "random-model", "1.0.0", m), 422, "invalid_model",
                 "model.onnx")
    assert_nothing_published(shared_api, "random-model")


def test_external_data_outside_the_package_is_422(shared_api, tmp_path: Path) -> None:
    token = shared_api.add_user("alice")
    data, m = _external_escape(tmp_path)
    put_blob(shared_api, token, data)
    assert_error(put_manifest(shared_api, token, "escape", "1.0.0", m), 422, "unsafe_package",
                 "../weights.bin", "outside")
    assert_nothing_published(shared_api, "escape")


def test_external_data_inside_the_package_is_accepted(shared_api, small_package) -> None:
    token = shared_api.add_user("alice")
    folder = small_package("external-ok", external_data=True)
    assert (folder / "weights.bin").is_file()
    r = shared_api.publish(folder, token)
    assert r.status_code == 201, r.text
    assert [f["path"] for f in r.json()["manifest"]["files"]] == ["README.md", "model.onnx", "weights.bin"]


def test_manifest_leaving_out_an_external_data_file_is_422(shared_api, small_package) -> None:
    token = shared_api.add_user("alice")
    b = built(small_package("external-unlisted", external_data=True))
    upload_blobs(shared_api, token, b)
    m = _manifest(b)
    m["files"] = [f for f in m["files"] if f["path"] != "weights.bin"]
    m.pop("graphs")   # the graphs table would name weights.bin; without it only the worker can tell
    assert_error(put_manifest(shared_api, token, "external-unlisted", "1.0.0", m), 422, "unsafe_package",
                 "weights.bin")
    assert_nothing_published(shared_api, "external-unlisted")


def test_package_files_named_like_modules_are_never_imported_by_the_worker(shared_api, small_package,
                                                                          tmp_path: Path) -> None:
    token = shared_api.add_user("alice")
    marker = tmp_path / "imported"
    folder = small_package("module-names", extra_toml='[files]\ninclude = ["onnx.py", "nnpm/__init__.py"]\n')
    (folder / "nnpm").mkdir()
    for rel in ("onnx.py", "nnpm/__init__.py"):
        (folder / rel).write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    r = shared_api.publish(folder, token)
    assert r.status_code == 201, r.text
    assert not marker.exists()


@pytest.mark.parametrize("path", ["/api/v1/packages/a%2Fb/1.0.0", "/api/v1/packages/%2E%2E/1.0.0",
                                  "/api/v1/packages/..%2F..%2Fetc/1.0.0", "/api/v1/packages/a%5Cb/1.0.0",
                                  "/api/v1/packages/-bad-/1.0.0", "/api/v1/packages/a%20b/1.0.0"])
def test_name_with_slash_dotdot_or_spaces_is_400(shared_api, path: str) -> None:
    token = shared_api.add_user("alice")
    with shared_api.client(token) as c:
        for method in ("GET", "PUT"):
            r = c.request(method, httpx.URL(shared_api.url + path), content=b"{}")
            assert_error(r, 400, "invalid_manifest", "name")


def test_deeply_nested_json_is_400_not_500(shared_api) -> None:
    token = shared_api.add_user("alice")
    for body in (b"[" * 100_000, b"[" * 50_000 + b"]" * 50_000, b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
                 b"[" * 900 + b"]" * 900):
        r = put_manifest(shared_api, token, "deep", "1.0.0", body)
        assert_error(r, 400, "invalid_manifest", "nested")
    for body in (b"not json", b"\xff\xfe\x00", b"[]", b"{}", b"1" * 5000, b'{"format": 1e999999}'):
        assert_error(put_manifest(shared_api, token, "deep", "1.0.0", body), 400, "invalid_manifest")
    assert_nothing_published(shared_api, "deep")
    with shared_api.client() as c:
        assert c.get("/api/v1/health").status_code == 200


def test_numbers_past_pythons_int_digit_limit_are_400(shared_api) -> None:
    token = shared_api.add_user("alice")
    huge = "1.post" + "9" * 5000
    with shared_api.client(token) as c:
        assert_error(c.get(f"/api/v1/packages/tiny/{huge}"), 400, "invalid_manifest", "version")
        assert_error(c.put(f"/api/v1/packages/tiny/{huge}", content=b"{}"), 400, "invalid_manifest", "version")
    body = {"format": 1, "package": {"name": "digits-limit", "version": huge}}
    assert_error(put_manifest(shared_api, token, "digits-limit", "1.0.0", body), 400, "invalid_manifest")
    assert_nothing_published(shared_api, "digits-limit")


def test_huge_json_is_413(shared_api) -> None:
    token = shared_api.add_user("alice")
    huge = json.dumps({"format": 1, "files": [{"path": f"f{i}", "size": 1, "sha256": "0" * 64}
                                              for i in range(60_000)]}).encode()
    assert len(huge) > 4 * 1024 * 1024
    assert_error(put_manifest(shared_api, token, "huge", "1.0.0", huge), 413, "too_large")
    assert_nothing_published(shared_api, "huge")



# -- the error map ------------------------------------------------------------------------------------

def test_every_nnpm_error_class_has_a_4xx_status() -> None:
    for cls in E.all_error_classes():
        exc = cls.__new__(cls)
        Exception.__init__(exc, "x")
        status = exc.response_status()
        assert 400 <= status < 500 or cls is E.RegistryError, (cls, status)
    assert E.ForbiddenError("x").response_status() == 403 and E.UnauthenticatedError("x").response_status() == 401
    assert E.ModelError("x").response_status() == 422 and E.ManifestError("x").response_status() == 400
    assert E.ManifestError("x", status=422).response_status() == 422

