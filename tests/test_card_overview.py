"""The model card's Graph overview (docs/server.md, "The model card").

At publish the validation worker reads, from the graphs it parses anyway, each graph's
operator counts and largest initializers (nnpm/format/overview.py), with or without
measuring; revision 0006 stores them (`versions.overview_json`) and the card shows them
per graph and per variant beside the manifest's parameters, MACs and opsets. Most tests
run in process (tests/inprocess.py); one looks at resnet18's card in headless Chromium.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import modelkit
import numpy as np
import pytest
from migrationkit import at_revision, upgraded
from onnx import TensorProto, helper, numpy_helper
from packages import write_package
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from test_registry_variants import section, two_graph_package, variant_package

from nnpm.format.overview import MAX_OVERVIEW_BYTES, bounded, graph_overview

pytestmark = pytest.mark.registry_backends("sqlite-dir")   # the overview does not depend on the backend
FITS = "[...document.querySelectorAll('#overview .table-wrap')].every(w => w.scrollWidth <= w.clientWidth + 1)"
HOSTILE = "<script>alert('w')</script>" + "ü" * 40 + "\u202egnp.exe" + "x" * 300   # markup, Unicode, long


def stored(api, name: str, version: str = "1.0.0") -> dict | None:
    """The version's overview_json, parsed (None: NULL)."""
    ((value,),) = api.query("SELECT v.overview_json FROM versions v JOIN packages p ON p.id = v.package_id "
                            "WHERE p.name = :n AND v.version = :v", n=name, v=version)
    return json.loads(value) if value is not None else None


def card(api, name: str) -> str:
    """The card's Graph overview section, without the <wbr> break points between the pieces of long names."""
    with api.client() as c:
        page = c.get(f"/packages/{name}")
    assert page.status_code == 200
    return section(page.text, "overview").replace("<wbr>", "")


def row(html: str, figure: str) -> str:
    """One figure's row of an overview table (`nodes`, `params`, ...)."""
    start = html.index(f'<tr class="overview-{figure}">')
    return html[start:html.index("</tr>", start)]


def execute(api, sql: str, **params) -> None:
    from registry_server.db.engine import engine_url

    engine = create_engine(engine_url(api.database_url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


def onnx_ops(path: Path) -> dict[str, int]:
    """Operator counts as onnx reads them from a graph file (every node of the main graph)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
                        for n in model.graph.node))


# -- reading a graph -------------------------------------------------------------------------------

def test_a_graph_is_read_by_operator_and_initializer_without_its_external_data() -> None:
    inits = [numpy_helper.from_array(np.zeros((i + 1, 4), np.float32), f"w{i:02d}") for i in range(14)]
    names = [t.name for t in inits]
    nodes = [helper.make_node("Add", ["x", names[0]], ["a0"])]
    nodes += [helper.make_node("Add", [f"a{i - 1}", "w00"], [f"a{i}"]) for i in range(1, 3)]
    nodes += [helper.make_node("FusedMatMul", ["a2", "a2"], ["y"], domain="com.microsoft")]
    big = TensorProto(name="far", data_type=TensorProto.FLOAT, dims=[1000, 1000])
    big.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "nowhere.bin"), ("length", "4000000")):   # no such file: never opened
        entry = big.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(nodes, "g", [modelkit.vi("x", shape=(1, 4))], [modelkit.vi("y", shape=(1, 4))],
                              initializer=[*inits, big])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    read = graph_overview(model)
    assert read["ops"] == [["Add", 3], ["com.microsoft:FusedMatMul", 1]] and read["nodes"] == 4 and read["other"] == 0
    assert read["initializers"] == 15 and read["external_bytes"] == 4_000_000
    assert read["initializer_bytes"] == 4_000_000 + sum(16 * (i + 1) for i in range(14))
    largest = read["largest"]
    assert len(largest) == 10 and [t["bytes"] for t in largest] == sorted((t["bytes"] for t in largest), reverse=True)
    assert largest[0] == {"name": "far", "dtype": "float32", "shape": [1000, 1000], "rank": 2, "bytes": 4_000_000,
                          "external": True}
    assert [t["name"] for t in largest[1:]] == [f"w{i:02d}" for i in range(13, 4, -1)]
    assert graph_overview(model, max_ops=1)["ops"] == [["Add", 3]] and graph_overview(model, max_ops=1)["other"] == 1


def test_what_a_worker_answers_is_rebuilt_typed_and_bounded() -> None:
    assert bounded(None) is None and bounded({"variants": []}) is None and bounded([1]) is None
    hostile = {"variants": {"reference": {"model": {
        "nodes": "many", "ops": [["Conv", 3], ["Relu", -1], "Add", [7, 1], ["\ud800x", 2]], "other": True,
        "initializers": 2, "largest": [{"name": "w", "bytes": 8, "shape": [2, "N", 2], "dtype": 5, "evil": 1},
                                       {"name": 3, "bytes": 1}], "extra": "dropped"}, "bad": [1]}, "int8": "no"}}
    out = bounded(hostile)
    graph = out["variants"]["reference"]["model"]
    assert set(out["variants"]) == {"reference"} and set(out["variants"]["reference"]) == {"model"}
    assert graph["nodes"] is None and graph["other"] == 0 and graph["initializers"] == 2 and "extra" not in graph
    assert graph["ops"] == [["Conv", 3], ["?x", 2]]
    assert graph["largest"] == [{"name": "w", "dtype": None, "shape": [2, 2], "rank": 2, "bytes": 8, "external": False}]
    many = {"variants": {f"v{i}": {"model": {"nodes": 1, "ops": [[f"{'o' * 150}{j}", 1] for j in range(100)],
                                              "largest": [{"name": "n" * 500, "bytes": 1}] * 10}}
                         for i in range(30)}}
    trimmed = bounded(many)
    assert len(json.dumps(trimmed)) <= MAX_OVERVIEW_BYTES
    assert 0 < len(trimmed["variants"]["v0"]["model"]["ops"]) < 100
    assert trimmed["variants"]["v0"]["model"]["other"] == 100 - len(trimmed["variants"]["v0"]["model"]["ops"])


# -- stored at publish -----------------------------------------------------------------------------

def test_a_publish_stores_what_the_graphs_hold_and_the_card_shows_it(api, tmp_path: Path) -> None:
    token = api.add_user("alice")
    folder = variant_package(tmp_path / "p", "ov-pkg", n_in=64, n_out=32)
    assert api.publish(folder, token).status_code == 201   # measured (the default): the overview too
    overview = stored(api, "ov-pkg")["variants"]
    assert set(overview) == {"reference", "int8"}
    for variant, file in (("reference", "model.onnx"), ("int8", "model_int8.onnx")):
        read = overview[variant]["model"]
        with api.client() as c:   # the graph as published, read back from the registry
            (entry,) = [f for f in c.get("/api/v1/packages/ov-pkg/1.0.0").json()["manifest"]["files"]
                        if f["path"] == file]
            (tmp_path / file).write_bytes(c.get(f"/api/v1/blobs/sha256:{entry['sha256']}").content)
        assert dict(map(tuple, read["ops"])) == onnx_ops(tmp_path / file) and read["other"] == 0
        sizes = [t["bytes"] for t in read["largest"]]
        assert sizes == sorted(sizes, reverse=True) and 0 < len(sizes) <= 10
    assert overview["reference"]["model"]["largest"][0] == {
        "name": "W", "dtype": "float32", "shape": [64, 32], "rank": 2, "bytes": 64 * 32 * 4, "external": False}
    assert "MatMulInteger" in dict(map(tuple, overview["int8"]["model"]["ops"]))
    html = card(api, "ov-pkg")
    assert 'data-variant="reference"' in html and 'data-variant="int8"' in html
    assert 'overview-name">DynamicQuantizeLinear<' in html and 'overview-name">MatMul<' in html
    assert "ai.onnx 17" in row(html, "opsets") and row(html, "params").count("2.1k") == 2   # 64×32 + 32, per variant
    nodes = len(onnx_ops(tmp_path / "model.onnx"))
    assert f'data-variant="reference">{nodes}<' in row(html, "nodes")
    assert html.count('class="overview-graph"') == 1 and "Graph <code>" not in html   # one graph: no graph heading
    assert 'overview-name">W<' in html and "8.2 KB" in html and "not recorded" not in html


def test_several_graphs_and_no_measure_pipelines_and_old_versions(api_factory, tmp_path: Path) -> None:
    api = api_factory(no_measure=True)
    token = api.add_user("alice")
    assert api.publish(two_graph_package(tmp_path / "two", "two-ov"), token).status_code == 201
    overview = stored(api, "two-ov")["variants"]
    assert {v: sorted(g) for v, g in overview.items()} == {"reference": ["dec", "enc"], "int8": ["dec", "enc"]}
    assert overview["reference"]["enc"]["largest"][0]["shape"] == [8, 6]
    assert overview["reference"]["dec"]["largest"][0]["shape"] == [6, 4]
    blocks = card(api, "two-ov").split('class="overview-graph"')[1:]
    assert [b[:40].split('"')[1] for b in blocks] == ["dec", "enc"]   # one block per graph (as the manifest keeps them)
    for block in blocks:
        assert block.count('<th class="num" data-variant=') == 2 and "Graph <code>" in block
        assert "Largest initializers of <code>int8</code>" in block
    assert "[6, 4]" in blocks[0] and "[8, 6]" in blocks[1] and "[8, 6]" not in blocks[0]

    assert api.publish(write_package(tmp_path / "step", "ov-step", bare=True), token).status_code == 201
    pipe = write_package(tmp_path / "pipe", "ov-pipe", bare=True, dependencies={"ov-step": ">=1,<2"},
                         pipeline=["ov-step"])
    assert api.publish(pipe, token).status_code == 201
    assert stored(api, "ov-pipe") is None and stored(api, "ov-step") is not None
    with api.client() as c:
        assert 'id="overview"' not in c.get("/packages/ov-pipe").text   # no graph of its own

    execute(api, "UPDATE versions SET overview_json = NULL")   # as a version published before revision 0006
    old = card(api, "two-ov")
    assert "were not recorded" in old and 'overview-name">enc.onnx<' in old and "ai.onnx 17" in old
    assert 'class="overview-op"' not in old and "overview-largest" not in old
    wrong = {"variants": {"reference": {"enc": {"nodes": "x", "ops": {"Conv": 1}, "largest": [{"name": 5}],
                                                "initializers": -3}, "dec": [1]}, "int8": 7}}
    execute(api, "UPDATE versions SET overview_json = :j", j=json.dumps(wrong))
    enc = card(api, "two-ov").split('data-graph="enc"')[1]
    assert row(enc, "nodes").count(">—</td>") == 2 and row(enc, "params").count(">—</td>") == 0
    assert "not recorded" not in enc and 'class="overview-op"' not in enc


def hostile_model():
    """y = x + W (a long name with markup and Unicode) through an operator of that kind in com.microsoft."""
    w = numpy_helper.from_array(np.ones((1, 4), np.float32), HOSTILE)
    nodes = [helper.make_node("Add", ["x", HOSTILE], ["s"]),
             helper.make_node("<b>Op</b>" + "é" * 20, ["s"], ["y"], domain="com.microsoft")]
    graph = helper.make_graph(nodes, "hostile", [modelkit.vi("x", shape=(1, 4))], [modelkit.vi("y", shape=(1, 4))],
                              initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                             ir_version=modelkit.IR_VERSION)


def test_hostile_names_are_escaped(api_factory, tmp_path: Path) -> None:
    api = api_factory(no_measure=True)
    token = api.add_user("alice")
    r = api.publish(write_package(tmp_path / "h", "hostile-ov", bare=True, model=hostile_model()), token)
    assert r.status_code == 201, r.text
    read = stored(api, "hostile-ov")["variants"]["reference"]["model"]
    assert read["largest"][0]["name"] == HOSTILE[:200]
    assert ["com.microsoft:<b>Op</b>" + "é" * 20, 1] in read["ops"]
    html = card(api, "hostile-ov")
    assert "<script>" not in html and "<b>Op</b>" not in html
    assert "&lt;script&gt;alert(&#39;w&#39;)&lt;/script&gt;" + "ü" * 40 in html
    assert "com.microsoft:&lt;b&gt;Op&lt;/b&gt;" + "é" * 20 in html


def test_a_database_at_0005_gains_overview_json_and_keeps_its_rows(tmp_path: Path) -> None:
    from registry_server.db.migrations import current_revision, head_revision

    url = f"sqlite:///{tmp_path / 'registry.db'}"   # revision 0006 is one nullable column: SQLite says enough
    at_revision(url, "0005",
                ("INSERT INTO packages (id, name, created_at) VALUES (1, 'kept', CURRENT_TIMESTAMP)", {}),
                ("INSERT INTO versions (package_id, version, version_key, manifest_json, manifest_sha256, description, "
                 "tags, yanked, published_at, measured_json) VALUES (1, '1.0', '1', '{}', :sha, 'd', 't', 0, "
                 "CURRENT_TIMESTAMP, '{}')", {"sha": "0" * 64}))
    with upgraded(url) as conn:
        assert current_revision(conn) == head_revision() >= "0006"
        assert conn.execute(text("SELECT version, measured_json, overview_json FROM versions")).all() == \
            [("1.0", "{}", None)]


# -- in a browser ----------------------------------------------------------------------------------

def test_resnet18s_overview_in_a_browser_at_desktop_and_phone_widths(registry_factory, browser_context,
                                                                     examples_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    registry = registry_factory(measure_budget=2, measure_time=0.1)   # the flags take values: a short measuring
    token = registry.add_user("alice")
    assert registry.publish(examples_dir / "resnet18", token).status_code == 201
    hostile = write_package(tmp_path / "h", "hostile-ov", bare=True, model=hostile_model())
    assert registry.publish(hostile, token).status_code == 201
    assert httpx.get(registry.url + "/packages/resnet18").status_code == 200
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(registry.url + "/packages/resnet18")
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        overview = page.locator("#overview")
        expect(overview).to_be_visible()
        expect(overview.locator(".overview-table thead th[data-variant]")).to_have_count(3)
        expect(overview.locator('.overview-nodes td[data-variant="reference"]')).not_to_have_text("—")
        expect(overview.locator(".overview-ops")).to_contain_text("Conv")
        expect(overview.locator(".overview-largest[open] .overview-tensor")).to_have_count(10)
        expect(overview.locator(".overview-largest[open] .overview-tensor").first).to_contain_text("MB")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
        assert page.evaluate(FITS), width   # and no table of the overview needs to scroll in its box
        box = overview.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (width, box)
        page.screenshot(path=str(tmp_path / f"card-{width}.png"), full_page=True)
        overview.screenshot(path=str(tmp_path / f"overview-{width}.png"))
    page.goto(registry.url + "/packages/hostile-ov")   # at 390 px: long markup and Unicode names wrap, as text
    expect(page.locator("#overview .overview-tensor-name")).to_contain_text("<script>alert('w')</script>" + "ü" * 40)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "hostile-390.png"), full_page=True)
    assert [e for e in errors if "Content Security Policy" in e or "Refused" in e] == [], errors
