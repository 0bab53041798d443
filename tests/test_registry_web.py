"""The HTML pages, in a real headless Chromium (playwright), at desktop and phone sizes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest


@pytest.fixture(scope="module")
def published(shared_registry, examples_dir: Path):
    """The registry with the examples published and one version of `topk` yanked."""
    token = shared_registry.add_user("alice")
    for name in ("resnet18", "imagenet-preprocess", "topk", "imagenet-classifier"):
        r = shared_registry.publish(examples_dir / name, token)
        assert r.status_code == 201, r.text
    with shared_registry.client(token) as c:
        assert c.post("/api/v1/packages/topk/1.0.0/yank", json={"reason": "wrong <b>k</b>"}).status_code == 200
    return shared_registry


def test_model_card_shows_name_versions_and_signature(published, browser_context, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser_context.new_page()
    page.goto(published.url + "/packages/resnet18")
    expect(page).to_have_title("resnet18 1.0.0 · nnpm registry")
    expect(page.locator("#package-name")).to_have_text("resnet18")
    expect(page.locator("#versions")).to_be_visible()
    expect(page.locator("#versions li")).to_have_count(1)
    expect(page.locator("#versions")).to_contain_text("1.0.0")
    table = page.locator("#signature table")
    expect(table).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("input")
    expect(table).to_contain_text("[N, 3, 224, 224]")
    expect(table).to_contain_text("logits")
    expect(page.locator("#install pre").first).to_have_text("nnpm install resnet18")
    expect(page.locator("#readme .markdown h1")).to_have_text("resnet18")
    expect(page.locator("#files")).to_contain_text("model.onnx")
    expect(page.locator("#files")).to_contain_text("46.8 MB")
    page.screenshot(path=str(tmp_path / "card.png"), full_page=True)
    # no horizontal scrolling of the whole page: wide tables scroll inside their card
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(published.url + "/packages/resnet18")
    expect(page.locator("#package-name")).to_be_visible()
    expect(page.locator("#versions")).to_be_visible()
    expect(page.locator("#signature table")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "card-phone.png"), full_page=True)
    assert (tmp_path / "card.png").stat().st_size > 10_000 and (tmp_path / "card-phone.png").stat().st_size > 10_000
    if os.environ.get("NNPM_KEEP_SCREENSHOTS"):
        shutil.copy(tmp_path / "card.png", "/tmp/nnpm-card.png")
        shutil.copy(tmp_path / "card-phone.png", "/tmp/nnpm-card-phone.png")


def test_yanked_version_pipeline_and_links(published, browser_context) -> None:
    from playwright.sync_api import expect

    page = browser_context.new_page()
    page.goto(published.url + "/packages/topk")
    expect(page.locator(".alert")).to_contain_text("yanked")
    expect(page.locator(".alert")).to_contain_text("wrong <b>k</b>")  # escaped, not rendered as HTML
    expect(page.locator("#versions .yanked")).to_contain_text("wrong <b>k</b>")
    page.goto(published.url + "/packages/imagenet-classifier")
    expect(page.locator("#pipeline li")).to_have_count(3)
    page.locator("#dependencies a", has_text="resnet18").click()
    expect(page).to_have_url(published.url + "/packages/resnet18")


def test_index_search_and_friendly_404(published, browser_context) -> None:
    from playwright.sync_api import expect

    page = browser_context.new_page()
    page.goto(published.url + "/")
    for name in ("resnet18", "imagenet-preprocess", "topk", "imagenet-classifier"):
        expect(page.locator(".package-item .package-name", has_text=name).first).to_be_visible()
    page.locator("input[name=q]").fill("RESIZES")
    page.locator("input[name=q]").press("Enter")
    expect(page).to_have_url(published.url + "/?q=RESIZES")
    expect(page.locator(".package-item")).to_have_count(1)
    expect(page.locator(".package-item")).to_contain_text("imagenet-preprocess")
    response = page.goto(published.url + "/packages/no-such-model")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("main")).to_contain_text("no-such-model")


def test_api_docs_render_without_a_cdn(published, browser_context, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = browser_context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(published.url) else None)
    page.goto(published.url + "/docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=15000)
    assert page.locator(".opblock").count() >= 10
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/packages/{name}")
    page.screenshot(path=str(tmp_path / "api-docs.png"))
    assert outside == [], f"/docs fetched from outside the registry: {outside}"


def test_pages_without_a_browser(published) -> None:
    with httpx.Client(base_url=published.url) as c:
        card = c.get("/packages/resnet18")
        assert card.status_code == 200 and card.headers["content-type"].startswith("text/html")
        assert '<meta name="viewport"' in card.text
        assert c.get("/packages/ResNet18", follow_redirects=False).headers["location"] == "/packages/resnet18"
        assert c.get("/packages/resnet18/1.0").status_code == 200
        assert c.get("/packages/resnet18/9.9").status_code == 404
        assert c.get("/packages/bad%20name").status_code == 404
        assert c.get("/static/style.css").status_code == 200
        assert "<" not in c.get("/", params={"q": "<script>"}).text.split("Results for")[1].split("</h1>")[0]


def test_readme_markdown_is_rendered_without_raw_html(shared_registry, small_package) -> None:
    token = shared_registry.add_user("alice")
    readme = ("# Hello\n\n<script>alert(1)</script>\n\n[click](javascript:alert(1))\n\n"
              "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nx = 1\n```\n")
    assert shared_registry.publish(small_package("readme-test", readme=readme), token).status_code == 201
    html = httpx.get(shared_registry.url + "/packages/readme-test").text
    assert "<h1>Hello</h1>" in html and "<table>" in html and "<pre><code" in html
    assert "<script>alert" not in html and 'href="javascript:' not in html
    assert "&lt;script&gt;" in html
