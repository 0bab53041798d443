"""The registry measures what it publishes (docs/format.md, "Measured by the registry").

At publish the validation worker reads every graph of every variant, refuses a package
whose real files contradict its manifest (or a variant whose interface is not the
reference's), runs the reference's self-test (a failure is 422 naming the graph, the output
and the largest difference; nothing is stored) and measures every variant: the packument,
the version object and the model card carry `measured` (revision 0004 stores it). Most
tests run in process (tests/inprocess.py); the card is also checked in headless Chromium.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import modelkit
import numpy as np
import pytest
from migrationkit import at_revision, upgraded
from protocol import assert_error, assert_nothing_published, built, put_blob, put_manifest, upload_blobs
from sqlalchemy import text

from nnpm.format.packument import Packument

# Measuring does not depend on the backend: one sqlite-dir run each, and the two tests that store
# (or refuse to store) a measurement run on postgres-s3 too.
pytestmark = pytest.mark.registry_backends("sqlite-dir")
BOTH = pytest.mark.registry_backends("sqlite-dir", "postgres-s3")

ROWS = 3  # rows of the test inputs


def variant_package(folder: Path, name: str, *, n_in: int = 16, n_out: int = 10, variant: str = "int8",
                    failing: bool = False, tests: bool = True, variant_toml: str = "", variant_model=None,
                    version: str = "1.0.0") -> Path:
    """`y = x @ W + b` (x [N, n_in] → y [N, n_out]) with a self-test and one variant made by quantize_dynamic
    (or `variant_model`, saved as the variant's file). `failing`: the expected outputs are off by 1."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    modelkit.save(modelkit.linear(n_in, n_out), folder / "model.onnx")
    if variant_model is None:
        quantize_dynamic(str(folder / "model.onnx"), str(folder / f"model_{variant}.onnx"), weight_type=QuantType.QInt8)
    else:
        modelkit.save(variant_model, folder / f"model_{variant}.onnx")
    toml = f'[package]\nname = "{name}"\nversion = "{version}"\n\n[model]\nfile = "model.onnx"\n'
    if tests:
        x = np.random.default_rng(7).standard_normal((ROWS, n_in)).astype(np.float32)
        y = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        (folder / "tests").mkdir(exist_ok=True)
        np.savez(folder / "tests/inputs.npz", x=x)
        np.savez(folder / "tests/outputs.npz", y=y + (1.0 if failing else 0.0))
        toml += '\n[tests]\ninputs = "tests/inputs.npz"\noutputs = "tests/outputs.npz"\n'
    toml += (f'\n[variants.{variant}]\nprecision = "int8"\nmodels = {{ model = "model_{variant}.onnx" }}\n'
             + variant_toml)
    (folder / "nnpm.toml").write_text(toml, encoding="utf-8")
    return folder


def float64_input_linear(n_in: int = 16, n_out: int = 10):
    """The linear graph (same weights) with a float64 input x, cast inside: another dtype, same names and ranks."""
    from onnx import TensorProto, helper

    weights = list(modelkit.linear(n_in, n_out).graph.initializer)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
         helper.make_node("MatMul", ["x32", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear64", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])], initializer=weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", modelkit.OPSET)],
                             ir_version=modelkit.IR_VERSION)


def entry(api, name: str, version: str = "1.0.0") -> dict:
    with api.client() as c:
        (found,) = [v for v in c.get(f"/api/v1/packages/{name}").json()["versions"] if v["version"] == version]
    return found


def section(html: str, ident: str) -> str:
    start = html.index(f'id="{ident}"')
    return html[start:html.index("</section>", start)]


# -- measured at publish ---------------------------------------------------------------------------

@BOTH
def test_a_package_with_tests_and_a_variant_is_measured(api, tmp_path: Path) -> None:
    import onnxruntime

    token = api.add_user("alice")
    r = api.publish(variant_package(tmp_path / "p", "measured-pkg"), token)
    assert r.status_code == 201, r.text
    measured = entry(api, "measured-pkg")["measured"]
    assert measured["inputs"] == "tests"
    assert measured["machine"]["onnxruntime"] == onnxruntime.__version__ and measured["machine"]["cores"] >= 1
    assert measured["self_test"]["passed"] is True
    (check,) = measured["self_test"]["outputs"]
    assert check["graph"] == "model" and check["output"] == "y" and check["tolerance_exceeded"] is False
    ref, int8 = measured["variants"]["reference"], measured["variants"]["int8"]
    for m in (ref, int8):
        assert m["latency_ms"] > 0 and 5 <= m["runs"] <= 50 and m["peak_memory"] >= 0
    assert ref["drift"] is None
    assert int8["drift"]["rel_l2"] >= 0 and int8["drift"]["max_abs"] >= 0
    assert 0 <= int8["drift"]["argmax_agreement"] <= 1   # y is [N, 10]: class-score shaped
    assert int8["drift"]["outputs"][0]["output"] == "y"
    assert r.json()["measured"] == measured                               # the publish answer: the version object
    with api.client() as c:
        assert c.get("/api/v1/packages/measured-pkg/1.0.0").json()["measured"] == measured
        raw = c.get("/api/v1/packages/measured-pkg").content
    assert Packument.from_json(raw).release("1.0.0") is not None        # the client still reads it
    (stored,) = api.query("SELECT v.measured_json FROM versions v JOIN packages p ON p.id = v.package_id "
                          "WHERE p.name = 'measured-pkg'")
    assert json.loads(stored[0]) == measured


def test_without_tests_it_is_measured_on_seeded_inputs(api, tmp_path: Path) -> None:
    token = api.add_user("alice")
    r = api.publish(variant_package(tmp_path / "p", "seeded-pkg", tests=False), token)
    assert r.status_code == 201, r.text
    measured = entry(api, "seeded-pkg")["measured"]
    assert measured["inputs"] == "seeded" and measured["self_test"] is None
    assert measured["variants"]["int8"]["drift"]["rel_l2"] >= 0


def test_a_variant_for_a_provider_the_registry_lacks_is_skipped(api, tmp_path: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    token = api.add_user("alice")
    folder = variant_package(tmp_path / "p", "gpu-pkg", variant="cuda",
                             variant_toml='requires.providers = ["CUDAExecutionProvider"]\n')
    assert api.publish(folder, token).status_code == 201
    variants = entry(api, "gpu-pkg")["measured"]["variants"]
    assert variants["cuda"] == {"skipped": "needs CUDAExecutionProvider"} and variants["reference"]["latency_ms"] > 0


def test_a_variant_that_changes_io_is_measured_on_cast_inputs(api, tmp_path: Path) -> None:
    token = api.add_user("alice")
    folder = variant_package(tmp_path / "p", "io-pkg", variant="f64in", variant_model=float64_input_linear(),
                             variant_toml="changes-io = true\n")
    r = api.publish(folder, token)
    assert r.status_code == 201, r.text
    drift = entry(api, "io-pkg")["measured"]["variants"]["f64in"]["drift"]
    assert drift["max_abs"] < 1e-4 and drift["argmax_agreement"] == 1.0


def test_a_variant_that_fails_to_run_is_recorded_not_refused(api, tmp_path: Path) -> None:
    """Its graph reads fine but onnxruntime fails at run time (a Reshape the test inputs cannot take)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [7, -1])])
    broken = helper.make_model(graph, opset_imports=[helper.make_opsetid("", modelkit.OPSET)],
                               ir_version=modelkit.IR_VERSION)
    token = api.add_user("alice")
    r = api.publish(variant_package(tmp_path / "p", "broken-variant", variant_model=broken), token)
    assert r.status_code == 201, r.text
    variants = entry(api, "broken-variant")["measured"]["variants"]
    assert set(variants["int8"]) == {"error"} and "failed to run" in variants["int8"]["error"]
    assert str(api.data_dir) not in variants["int8"]["error"] and "validate-" not in variants["int8"]["error"]
    assert variants["reference"]["latency_ms"] > 0


def test_no_measure_publishes_without_a_measurement(api_factory, small_package, tmp_path: Path) -> None:
    api = api_factory(no_measure=True)
    token = api.add_user("alice")
    r = api.publish(variant_package(tmp_path / "p", "quiet-pkg", failing=True), token)
    assert r.status_code == 201, r.text          # no self-test runs either
    assert "measured" not in entry(api, "quiet-pkg") and "measured" not in r.json()
    assert api.publish(small_package("plain-model"), api.add_user("bob")).status_code == 201
    with api.client() as c:                     # a model without variants or a measurement: no Variants table
        assert "not measured" in section(c.get("/packages/quiet-pkg").text, "variants")
        assert 'id="variants"' not in c.get("/packages/plain-model").text


def two_graph_package(folder: Path, name: str, *, failing: bool = False) -> Path:
    """Graphs `enc` (x [N, 8] → y [N, 6]) and `dec` (x [N, 6] → y [N, 4], labelled), a self-test keyed GRAPH/PORT
    and an int8 variant of both. `failing`: dec's expected output is off by 0.25."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True)
    for graph, (n_in, n_out) in {"enc": (8, 6), "dec": (6, 4)}.items():
        modelkit.save(modelkit.linear(n_in, n_out, seed=n_in), folder / f"{graph}.onnx")
        quantize_dynamic(str(folder / f"{graph}.onnx"), str(folder / f"{graph}_int8.onnx"), weight_type=QuantType.QInt8)
    run = {g: ort.InferenceSession(str(folder / f"{g}.onnx"), providers=["CPUExecutionProvider"])
           for g in ("enc", "dec")}
    x = np.random.default_rng(1).standard_normal((ROWS, 8)).astype(np.float32)
    h = run["enc"].run(None, {"x": x})[0]
    y = run["dec"].run(None, {"x": h})[0]
    (folder / "tests").mkdir()
    np.savez(folder / "tests/inputs.npz", **{"enc/x": x, "dec/x": h})
    np.savez(folder / "tests/outputs.npz", **{"enc/y": h, "dec/y": y + (0.25 if failing else 0.0)})
    (folder / "labels.txt").write_text("a\nb\nc\nd\n", encoding="utf-8")
    (folder / "nnpm.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "1.0.0"\n\n[models.enc]\nfile = "enc.onnx"\n\n[models.dec]\n'
        'file = "dec.onnx"\noutputs.y.labels = "labels.txt"\n\n[tests]\ninputs = "tests/inputs.npz"\n'
        'outputs = "tests/outputs.npz"\n\n[variants.int8]\nprecision = "int8"\n'
        'models = { enc = "enc_int8.onnx", dec = "dec_int8.onnx" }\n', encoding="utf-8")
    return folder


def test_a_package_of_several_graphs_is_tested_and_measured_graph_by_graph(api, tmp_path: Path) -> None:
    token = api.add_user("alice")
    assert api.publish(two_graph_package(tmp_path / "ok", "two-graphs"), token).status_code == 201
    measured = entry(api, "two-graphs")["measured"]
    assert sorted((o["graph"], o["output"]) for o in measured["self_test"]["outputs"]) == [("dec", "y"), ("enc", "y")]
    drift = measured["variants"]["int8"]["drift"]
    assert sorted(o["graph"] for o in drift["outputs"]) == ["dec", "enc"]
    assert drift["rel_l2"] == max(o["rel_l2"] for o in drift["outputs"])
    r = api.publish(two_graph_package(tmp_path / "bad", "two-failing", failing=True), token)
    assert_error(r, 422, "invalid_model", "graph 'dec'", "output 'y'", "0.25")
    assert_nothing_published(api, "two-failing")


# -- refused ---------------------------------------------------------------------------------------

@BOTH
def test_a_failing_self_test_is_refused_naming_the_output(api, tmp_path: Path) -> None:
    token = api.add_user("alice")
    r = api.publish(variant_package(tmp_path / "p", "failing-pkg", failing=True), token)
    body = assert_error(r, 422, "invalid_model", "self-test", "'model'", "'y'", "tests/outputs.npz")
    assert "by up to 1" in body["detail"] and "/tmp" not in body["detail"], body
    assert_nothing_published(api, "failing-pkg")


def _swap_variant_file(api, token: str, b, data: bytes, *, claim: dict | None = None) -> dict:
    """The built manifest with the int8 graph's bytes replaced by `data` (uploaded), its signature claimed as
    `claim` (default: left as the reference's)."""
    m = json.loads(b.manifest.to_json())
    digest = put_blob(api, token, data)
    for f in m["files"]:
        if f["path"] == "model_int8.onnx":
            f.update(size=len(data), sha256=digest)
    m["graphs"]["int8"]["model"]["bytes"] = len(data)
    m["graphs"]["int8"]["model"]["params"] = 170
    if claim is not None:
        m["graphs"]["int8"]["model"]["signature"] = claim
    return m


def test_a_variant_whose_file_has_another_signature_is_refused(api, tmp_path: Path) -> None:
    from nnpm.format.onnxinfo import signature_of

    token = api.add_user("alice")
    b = built(variant_package(tmp_path / "p", "lying-pkg"))
    upload_blobs(api, token, b)
    other = float64_input_linear()
    m = _swap_variant_file(api, token, b, other.SerializeToString())   # the manifest claims the reference's
    assert_error(put_manifest(api, token, "lying-pkg", "1.0.0", m), 422, "invalid_manifest",
                 "graphs.int8.model.signature.inputs", "float64")
    assert_nothing_published(api, "lying-pkg")
    honest = _swap_variant_file(api, token, b, other.SerializeToString(),
                                claim=signature_of(other.graph).to_dict())   # the truth: not the same interface
    assert_error(put_manifest(api, token, "lying-pkg", "1.0.0", honest), 400, "invalid_manifest",
                 "int8", "float64")
    assert_nothing_published(api, "lying-pkg")


def test_every_graph_file_is_read_not_only_the_reference(api, tmp_path: Path) -> None:
    token = api.add_user("alice")
    b = built(variant_package(tmp_path / "p", "junk-variant"))
    upload_blobs(api, token, b)
    m = _swap_variant_file(api, token, b, os.urandom(2048))
    assert_error(put_manifest(api, token, "junk-variant", "1.0.0", m), 422, "invalid_model", "model_int8.onnx")
    assert_nothing_published(api, "junk-variant")


def test_the_measuring_phase_has_its_own_clock(tmp_path: Path) -> None:
    """Once a worker says its checks passed, the server gives it --measure-budget seconds from then on."""
    import sys

    from registry_server.services.validate import CHECKED
    from registry_server.services.workers import Worker

    script = ("import sys, time; print('{\"ready\": true}', flush=True); sys.stdin.readline(); time.sleep(0.3); "
              f"print({CHECKED!r}, flush=True); time.sleep(1.5); print('{{\"ok\": 1}}', flush=True)")
    worker = Worker([sys.executable, "-c", script], tmp_path)
    try:
        assert worker.ask({}, time.monotonic() + 1.0, measuring=5.0) == b'{"ok": 1}' and worker.measuring
    finally:
        worker.kill()
    worker = Worker([sys.executable, "-c", script], tmp_path)
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            worker.ask({}, start + 30.0, measuring=0.5)
        assert worker.measuring and time.monotonic() - start < 10
    finally:
        worker.kill()


# -- the model card --------------------------------------------------------------------------------

def test_the_card_shows_a_variants_table_and_the_machine(api, tmp_path: Path) -> None:
    token = api.add_user("alice")
    assert api.publish(variant_package(tmp_path / "p", "card-pkg", n_in=256, n_out=256), token).status_code == 201
    with api.client() as c:
        html = c.get("/packages/card-pkg").text
        plain = c.get("/packages/card-pkg/1.0.0").text
    table = section(html, "variants")
    assert 'data-variant="reference"' in table and 'data-variant="int8"' in table
    assert table.index('data-variant="reference"') < table.index('data-variant="int8"')
    int8 = table[table.index('data-variant="int8"'):]
    assert "smaller than reference" in int8 and "<code>int8</code>" in int8 and " ms<" in int8
    assert "onnxruntime" in table and "self-test passed" in table
    assert section(plain, "variants") == table


@pytest.mark.registry_backends("sqlite-dir")  # the browser, not the backend, is the subject
def test_the_variants_table_in_a_browser(registry, browser_context, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    token = registry.add_user("alice")
    assert registry.publish(variant_package(tmp_path / "p", "browser-pkg"), token).status_code == 201
    assert httpx.get(registry.url + "/packages/browser-pkg").status_code == 200
    page = browser_context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(registry.url + "/packages/browser-pkg")
    expect(page.locator("#variants")).to_be_visible()
    expect(page.locator("#variants .variant-row")).to_have_count(2)
    expect(page.locator('#variants tr[data-variant="int8"] td').first).to_have_text("int8")
    expect(page.locator('#variants tr[data-variant="reference"] .variant-latency')).to_contain_text("ms")
    expect(page.locator("#variants .machine")).to_contain_text("onnxruntime")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert [e for e in errors if "Content Security Policy" in e or "Refused" in e] == [], errors
    page.screenshot(path=str(tmp_path / "variants-phone.png"), full_page=True)


# -- revision 0004 ---------------------------------------------------------------------------------



def test_a_database_at_0003_gains_measured_json_and_keeps_its_rows(database_url: str) -> None:
    from registry_server.db.migrations import current_revision, head_revision

    at_revision(database_url, "0003",
                ("INSERT INTO packages (id, name, created_at) VALUES (1, 'kept', CURRENT_TIMESTAMP)", {}),
                ("INSERT INTO versions (package_id, version, version_key, manifest_json, manifest_sha256, description, "
                 "tags, yanked, published_at, signature_json) VALUES (1, '1.0', '1', '{}', :sha, 'd', 't', :no, "
                 "CURRENT_TIMESTAMP, NULL)", {"sha": "0" * 64, "no": False}))
    with upgraded(database_url) as conn:
        assert current_revision(conn) == head_revision() >= "0004"
        assert conn.execute(text("SELECT version, measured_json FROM versions")).all() == [("1.0", None)]
