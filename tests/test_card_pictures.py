"""The model card's pictures: the pipeline diagram and the variant trade-off chart (docs/server.md, "Model cards").

One in-process registry for the module (tests/inprocess.py) holds the examples (the
imagenet-classifier pipeline, resnet18 with its int8 and int8-static variants) and a few
hostile packages: port names with markup, Unicode and 150 characters, a nested pipeline and
a wire that skips a step, a 64-character variant name and a variant the registry cannot run.
The SVGs are parsed as XML: every step and variant named, wires labelled, the reference
marked, axes labelled, hostile text escaped and cut. One headless Chromium (tests/browser.py)
draws both cards at 1280 and 390 px, served from the same app, and checks nothing overflows.
"""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import modelkit
import pytest
from packages import write_package

pytestmark = pytest.mark.registry_backends("sqlite-dir")   # the pages, not the backend, are the subject

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & ünïcödé 漢字 ' + "long-port-name-" * 8
EXAMPLES = ("imagenet-preprocess", "resnet18", "topk", "imagenet-classifier")
LONG_VARIANT = "int8-" + "x" * 59


def _variant_package(folder: Path, name: str, variants: dict[str, str]) -> Path:
    """`y = x @ W + b` with an int8 variant (quantize_dynamic) under each name; `variants` maps names to extra TOML."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True)
    modelkit.save(modelkit.linear(16, 10), folder / "model.onnx")
    toml = f'[package]\nname = "{name}"\nversion = "1.0.0"\n\n[model]\nfile = "model.onnx"\n'
    for i, (variant, extra) in enumerate(variants.items()):
        quantize_dynamic(str(folder / "model.onnx"), str(folder / f"model_{i}.onnx"), weight_type=QuantType.QInt8)
        toml += f'\n[variants.{variant}]\nprecision = "int8"\nmodels = {{ model = "model_{i}.onnx" }}\n{extra}'
    (folder / "nnpm.toml").write_text(toml, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def cards(shared_api, examples_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The registry with the examples and the hostile packages published."""
    root = tmp_path_factory.mktemp("pictures")
    token = shared_api.add_user("alice")
    shape = ("N", 3)
    folders = [examples_dir / name for name in EXAMPLES] + [
        write_package(root / "a", "pic-a", model=modelkit.unary("Relu", "x", HOSTILE, shape)),
        write_package(root / "b", "pic-b", model=modelkit.unary("Relu", HOSTILE, "y", shape)),
        write_package(root / "c", "pic-c", model=modelkit.unary("Relu", "y", "z", shape)),
        write_package(root / "d", "pic-d", model=modelkit.adder()),
        write_package(root / "inner", "pic-inner", dependencies={"pic-a": ">=1", "pic-b": ">=1"},
                      pipeline=["pic-a", "pic-b"], description="<img src=x onerror=alert(1)> " + "é" * 200),
        write_package(root / "outer", "pic-outer", dependencies={"pic-inner": ">=1", "pic-c": ">=1", "pic-d": ">=1"},
                      pipeline=["pic-inner", "pic-c", "pic-d"],
                      connect={"pic-c.y": "pic-inner.y", "pic-d.a": "pic-c.z", "pic-d.b": "pic-inner.y"}),
        write_package(root / "gone", "pic-gone", weights=(1.0, 2.0, 3.0)),
        write_package(root / "lonely", "pic-lonely", dependencies={"pic-gone": ">=1", "pic-c": ">=1"},
                      pipeline=["pic-gone", "pic-c"]),
        _variant_package(root / "v", "pic-variants", {LONG_VARIANT: "", "cuda": 'requires.providers = '
                                                      '["CUDAExecutionProvider"]\n'}),
    ]
    for folder in folders:
        r = shared_api.publish(folder, token)
        assert r.status_code == 201, (folder, r.text)
    with shared_api.client(token) as c:   # the only version of one of pic-lonely's steps yanked
        assert c.post("/api/v1/packages/pic-gone/1.0.0/yank", json={"reason": "x"}).status_code == 200
    return shared_api


def card(api, name: str) -> str:
    with api.client() as c:
        r = c.get(f"/packages/{name}")
    assert r.status_code == 200, r.text
    return r.text


def svgs(html: str, section: str) -> list[ET.Element]:
    """The inline SVGs inside the card's `section`, parsed as XML (so they are well-formed)."""
    start = html.index(f'id="{section}"')
    body = html[start:html.index("</section>", start)]
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", body, re.S)]


def texts(svg: ET.Element, cls: str | None = None) -> list[str]:
    """The text of every <text> (with `cls`), without its <title>."""
    return [(t.text or "") for t in svg.iter(SVG + "text") if cls is None or cls in t.get("class", "").split()]


def titles(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(SVG + "title")]


def accessible(svg: ET.Element) -> tuple[str, str]:
    """The SVG's role=img name and description, checked to be what aria-labelledby points at."""
    assert svg.get("role") == "img" and svg.get("viewBox") and svg.get("width") == "100%"
    title_id, desc_id = svg.get("aria-labelledby").split()
    title, desc = svg.find(SVG + "title"), svg.find(SVG + "desc")
    assert (title.get("id"), desc.get("id")) == (title_id, desc_id)
    return title.text, desc.text


# -- the pipeline diagram ------------------------------------------------------------------------

def test_the_imagenet_classifier_card_draws_its_steps_and_labelled_wires(cards) -> None:
    html = card(cards, "imagenet-classifier")
    (svg,) = svgs(html, "pipeline")
    assert texts(svg, "pic-name") == ["imagenet-preprocess", "resnet18", "topk"]   # the steps, in order
    assert texts(svg, "pic-sub")[1:4] == ["1.0.0 · model"] * 3 and texts(svg, "pic-sub")[::4] == ["inputs", "outputs"]
    ports, types = texts(svg, "pic-port"), texts(svg, "pic-type")
    assert ports == ["image", "pixels → input", "logits", "scores", "indices"]
    assert types == ["uint8 [H, W, 3]", "float32 [1, 3, 224, 224]", "float32 [N, 1000]", "float32 [N, 5]",
                     "int64 [N, 5]"]
    assert len(svg.findall(SVG + "rect")) == 5 and len(svg.findall(SVG + "polygon")) == 4   # boxes, arrowheads
    title, desc = accessible(svg)
    assert "imagenet-classifier" in title
    assert "imagenet-preprocess.pixels to resnet18.input: float32 [1, 3, 224, 224]" in desc
    assert "Output scores (float32 [N, 5]) from topk.scores" in desc
    assert html.index('id="pipeline"') < html.index("<svg") < html.index('class="steps"')
    assert "style=" not in html and "<script" not in html.replace("&lt;script", "")
    assert "<svg" not in card(cards, "topk")          # a model has no diagram


def test_a_nested_pipeline_is_a_group_and_a_skipping_wire_has_a_lane(cards) -> None:
    (svg,) = svgs(card(cards, "pic-outer"), "pipeline")
    names = texts(svg, "pic-name")
    assert names == ["pic-inner", "pic-a", "pic-b", "pic-c", "pic-d"]
    assert [r.get("class") for r in svg.iter(SVG + "rect")].count("pic-group") == 1
    group = next(r for r in svg.iter(SVG + "rect") if r.get("class") == "pic-group")
    inner = [r for r in svg.iter(SVG + "rect") if r.get("class") == "pic-step"][:2]
    top, bottom = float(group.get("y")), float(group.get("y")) + float(group.get("height"))
    assert all(top < float(r.get("y")) and float(r.get("y")) + float(r.get("height")) < bottom for r in inner)
    assert all(float(r.get("x")) > float(group.get("x")) for r in inner)   # drawn inside the group
    assert "pic-inner.y → b" in texts(svg, "pic-port")              # the wire from two steps up names its step
    assert len(svg.findall(SVG + "circle")) == 1                     # where it joins pic-d's wires
    assert "sum" in texts(svg, "pic-port") and "pic-d (1.0.0 · model)" in accessible(svg)[1]


def test_hostile_port_names_are_escaped_and_cut_with_the_full_text_in_a_title(cards) -> None:
    html = card(cards, "pic-inner")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; ünïcödé 漢字" in html
    (svg,) = svgs(html, "pipeline")
    (cut,) = [t for t in svg.iter(SVG + "text") if HOSTILE[:20] in (t.text or "")]
    assert cut.text.endswith("…") and len(cut.text) < 60 and HOSTILE.startswith(cut.text[:-1].rstrip())
    assert cut.find(SVG + "title").text == HOSTILE.strip()
    assert HOSTILE.strip() in accessible(svg)[1]
    x = float(cut.get("x"))
    assert x + 0.6 * 11 * len(cut.text) <= float(svg.get("viewBox").split()[2])  # it fits inside the picture


def test_a_step_missing_here_draws_the_steps_in_order_and_says_why(cards) -> None:
    html = card(cards, "pic-lonely")
    (svg,) = svgs(html, "pipeline")
    assert texts(svg, "pic-name") == ["pic-gone", "pic-c"] and "not on this registry" in texts(svg, "pic-sub")
    assert not texts(svg, "pic-port") and len(svg.findall(SVG + "polygon")) == 3   # plain arrows, no labels
    assert "The wiring is not drawn: pic-gone&gt;=1 has no published version here." in html


# -- the variant chart ---------------------------------------------------------------------------

def test_resnet18_has_a_latency_and_a_size_chart_with_the_reference_marked(cards) -> None:
    html = card(cards, "resnet18")
    views = svgs(html, "variants")
    assert [accessible(v)[0] for v in views] == ["Latency against drift for each variant",
                                                 "Size against drift for each variant"]
    for svg in views:
        points = {g.get("data-variant"): g for g in svg.iter(SVG + "g")}
        assert set(points) == {"reference", "int8", "int8-static"}
        assert "chart-reference" in points["reference"].get("class")
        assert points["reference"].find(SVG + "polygon") is not None and points["int8"].find(SVG + "circle") is not None
        assert all(texts(g, "pic-point-name") == [name] for name, g in points.items())
        axis = texts(svg, "pic-axis-title")
        assert axis[0] == "Drift from the reference (relative L2)" and axis[1] in ("Latency, median (ms)",
                                                                                     "Size of its files")
        ticks = texts(svg, "pic-tick")
        assert "0" in ticks and len(ticks) >= 4
        desc = accessible(svg)[1]
        assert "reference:" in desc and "int8-static:" in desc and "(the reference)" in desc
    assert all(float(t) >= 0 for t in texts(views[0], "pic-tick"))          # milliseconds, said by the axis title
    assert any(t.endswith(" MB") for t in texts(views[1], "pic-tick"))
    # the CSS-only switch: two radios, latency first and checked; the machine in the caption; the table below
    assert len(re.findall(r'<input class="chart-radio" type="radio" name="chart-cost"', html)) == 2
    assert re.search(r'id="chart-show-latency"[^>]* checked', html)
    import onnxruntime

    caption = re.search(r"<figcaption[^>]*>(.*?)</figcaption>", html[html.index('id="variants"'):], re.S).group(1)
    assert f"onnxruntime {onnxruntime.__version__}" in caption and "diamond" in caption
    assert html.index("chart-view-size") < html.index('class="variants-table"')


def test_a_long_variant_name_is_cut_and_an_unrun_variant_is_left_out_of_latency(cards) -> None:
    html = card(cards, "pic-variants")
    latency, size = svgs(html, "variants")
    assert {g.get("data-variant") for g in latency.iter(SVG + "g")} == {"reference", LONG_VARIANT}
    assert {g.get("data-variant") for g in size.iter(SVG + "g")} == {"reference", LONG_VARIANT}   # no drift: not cuda
    (name,) = [t for t in latency.iter(SVG + "text") if (t.text or "").startswith("int8-x")]
    assert name.text.endswith("…") and name.find(SVG + "title").text == LONG_VARIANT
    assert "cuda: not plotted (needs CUDAExecutionProvider)" in accessible(latency)[1]
    assert "Not drawn: cuda (needs CUDAExecutionProvider)." in html
    for svg in (latency, size):
        width = float(svg.get("viewBox").split()[2])
        for t in svg.iter(SVG + "text"):
            if t.get("class") == "pic-point-name":
                x, n = float(t.get("x")), 0.6 * 11 * len(t.text)
                assert (x + n if t.get("text-anchor") == "start" else x) <= width and x - n >= 0
    assert "<svg" not in card(cards, "pic-a")   # one variant: no chart


# -- the helper ----------------------------------------------------------------------------------

def test_the_svg_helper_cuts_cleans_and_scales() -> None:
    from registry_server.web.svg import Scale, clean, fit, number

    assert fit("short", 100, 10) == "short"
    assert fit("a" * 40, 60, 10) == "a" * 9 + "…"          # 0.6 em a glyph: 10 fit in 60, one for the ellipsis
    assert fit("漢字" * 10, 60, 10) == "漢字漢字漢…"          # wide glyphs count a whole em
    assert clean("a\x00b\u202ec\nd") == "abc d"
    scale = Scale.over([0.0, 0.0037, 0.012], 0, 100)
    assert scale.ticks() == [0, 0.005, 0.01, 0.015] and scale(0.015) == 100 and scale(0) == 0 and scale(1) == 100
    assert Scale.over([0.0], 0, 10).ticks() == [0, 1.0]
    assert [number(v) for v in (0, 0.005, 2.5, 40, 1.2e-05, 46_800_000)] == ["0", "0.005", "2.5", "40", "1.2e-05",
                                                                              "4.7e+07"]


# -- in a browser --------------------------------------------------------------------------------

def test_both_cards_in_chromium_at_desktop_and_phone_width(cards, browser_context, tmp_path: Path) -> None:
    """Chromium fetches the pages from the in-process app (page.route), headers (the CSP) included."""
    with cards.client() as client:
        _draw_both_cards(cards.url, client, browser_context, tmp_path)


def _draw_both_cards(url: str, client, browser_context, tmp_path: Path) -> None:
    """Both widths, four cards: the SVG visible inside the viewport, no overflow, the switch working, no CSP refusal."""
    errors: list[str] = []

    def serve(route) -> None:
        r = client.get(route.request.url.removeprefix(url))
        route.fulfill(status=r.status_code, headers=dict(r.headers), body=r.content)

    page = browser_context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.route(url + "/**", serve)
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        for name, section in (("imagenet-classifier", "#pipeline"), ("resnet18", "#variants"),
                              ("pic-inner", "#pipeline"), ("pic-variants", "#variants")):
            page.goto(f"{url}/packages/{name}")
            svg = page.locator(f"{section} svg").first
            svg.scroll_into_view_if_needed()
            box = svg.bounding_box()
            assert svg.is_visible() and box["width"] > 250 and box["height"] > 150, (name, width, box)
            assert 0 <= box["x"] and box["x"] + box["width"] <= width, (name, width, box)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (name, width)
            shot = tmp_path / f"{name}-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("NNPM_KEEP_SCREENSHOTS"):
                shutil.copy(shot, Path(os.environ["NNPM_KEEP_SCREENSHOTS"]) / shot.name)
                page.locator(section).screenshot(path=Path(os.environ["NNPM_KEEP_SCREENSHOTS"]) / f"{name}-{width}-pic.png")
        # the switch: size hidden until its radio is chosen, then latency hidden
        size, latency = page.locator("#variants .chart-view-size svg"), page.locator("#variants .chart-view-latency svg")
        assert latency.is_visible() and not size.is_visible()
        page.locator('label[for="chart-show-size"]').click()
        assert size.is_visible() and not latency.is_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert not [e for e in errors if "Content Security Policy" in e], errors
