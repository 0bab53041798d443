"""Issue 14, item 6 (server side): search answers how many matched; the home page pages and sorts.

`GET /api/v1/search` answers `{"results": [...], "total": N}` (N counts every match, the
results stop at `limit`, from `offset`); `/` shows 50 packages a page (`?page=`), sorted
by name or by newest publish (`?sort=name|recent`), with links, and reads at 390 px wide.
Packages here are pipelines over one step (no graph to check, so publishing 55 is quick).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest


def publish_many(reg, small_package, n: int) -> list[str]:
    """`a-step` and n pipelines p-00... over it, published in that order; their names."""
    token = reg.add_user("alice")
    assert reg.publish(small_package("a-step", description="the step"), token).status_code == 201
    names = [f"p-{i:02d}" for i in range(n)]
    for name in names:
        r = reg.publish(small_package(name, description=f"pipeline {name}", tags=("pipe",),
                                      readme=None, dependencies={"a-step": ">=1"}, pipeline=["a-step"]), token)
        assert r.status_code == 201, r.text
    return ["a-step", *names]


def listed(html: str) -> list[str]:
    return re.findall(r'class="package-name" href="/packages/([^"]+)"', html)


def test_search_answers_the_total_and_cuts_the_results_at_limit(api, small_package) -> None:
    names = publish_many(api, small_package, 4)
    with api.client() as c:
        doc = c.get("/api/v1/search", params={"q": "", "limit": 2}).json()
        assert doc["total"] == 5 and [r["name"] for r in doc["results"]] == names[:2]
        doc = c.get("/api/v1/search", params={"q": "pipeline", "limit": 3}).json()
        assert doc["total"] == 4 and len(doc["results"]) == 3
        doc = c.get("/api/v1/search", params={"q": "p-0", "limit": 3, "offset": 3}).json()
        assert doc["total"] == 4 and [r["name"] for r in doc["results"]] == ["p-03"]
        doc = c.get("/api/v1/search", params={"q": "", "sort": "recent", "limit": 2}).json()
        assert [r["name"] for r in doc["results"]] == ["p-03", "p-02"] and doc["total"] == 5
        doc = c.get("/api/v1/search", params={"q": "step", "sort": "name"}).json()
        assert [r["name"] for r in doc["results"]] == ["a-step"] and doc["total"] == 1
        assert c.get("/api/v1/search", params={"q": "nothing-here"}).json() == {"results": [], "total": 0}
        assert c.get("/api/v1/search", params={"sort": "sideways"}).status_code == 400
        assert c.get("/api/v1/search", params={"offset": -1}).status_code == 400


def test_the_home_page_pages_and_sorts_with_links(api, small_package) -> None:
    names = publish_many(api, small_package, 54)  # 55 packages: 50 on page 1, 5 on page 2
    with api.client() as c:
        first = c.get("/").text
        assert listed(first) == names[:50]
        assert "55 packages" in first and 'href="/?page=2"' in first and "?page=0" not in first
        second = c.get("/", params={"page": 2}).text
        assert listed(second) == names[50:] and 'href="/?page=1"' in second and "?page=3" not in second
        recent = c.get("/", params={"sort": "recent"}).text
        assert listed(recent)[:3] == ["p-53", "p-52", "p-51"]
        assert 'href="/?sort=recent&amp;page=2"' in recent
        assert 'href="/?sort=name"' in recent and 'aria-current="true">Recently published<' in recent
        assert 'href="/?sort=recent"' in first and 'aria-current="true">Name<' in first
        found = c.get("/", params={"q": "pipeline", "page": 2}).text
        assert listed(found) == names[51:] and "54 packages" in found and 'href="/?q=pipeline&amp;page=1"' in found
        past = c.get("/", params={"page": 9})
        assert past.status_code == 200 and listed(past.text) == [] and 'href="/?page=1"' in past.text
        for odd in ("0", "-3", "lots"):  # a hand-typed page is read leniently: the first page
            assert listed(c.get("/", params={"page": odd}).text) == names[:50]
        assert listed(c.get("/", params={"sort": "sideways"}).text) == names[:50]


@pytest.mark.registry_backends("sqlite-dir")  # the browser, not the backend, is the subject
def test_the_paged_home_page_reads_at_390_px(registry, small_package, browser_context, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    publish_many(registry, small_package, 54)
    assert httpx.get(registry.url + "/").status_code == 200
    page = browser_context.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(registry.url + "/?sort=recent")
    expect(page.locator(".package-item")).to_have_count(50)
    expect(page.locator(".pager")).to_be_visible()
    expect(page.locator(".sort-bar")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.locator(".pager a", has_text="Next").click()
    expect(page).to_have_url(registry.url + "/?sort=recent&page=2")
    expect(page.locator(".package-item")).to_have_count(5)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(tmp_path / "home-phone.png"), full_page=True)
