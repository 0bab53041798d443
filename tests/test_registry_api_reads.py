"""Reading the registry in process (tests/inprocess.py): yank and latest, the packument's ETag, search.

Every test runs on both backends (`sqlite-dir`, `postgres-s3`).
"""

from __future__ import annotations

from protocol import assert_error


def test_yank_unyank_and_latest(api, small_package) -> None:
    token = api.add_user("alice")
    for version in ("1.0.0", "1.1.0", "2.0.0rc1"):
        assert api.publish(small_package("tiny", version), token).status_code == 201
    with api.client(token) as c:
        assert c.get("/api/v1/packages/tiny").json()["latest"] == "1.1.0"  # pre-releases are not latest
        r = c.post("/api/v1/packages/tiny/1.1.0/yank", json={"reason": "wrong weights"})
        assert r.status_code == 200
        assert (r.json()["yanked"], r.json()["yanked_reason"], r.json()["version"]) == (True, "wrong weights", "1.1.0")
        doc = c.get("/api/v1/packages/tiny").json()
        assert doc["latest"] == "1.0.0"
        assert [(v["version"], v["yanked"]) for v in doc["versions"]] == [
            ("1.0.0", False), ("1.1.0", True), ("2.0.0rc1", False)]
        r = c.delete("/api/v1/packages/tiny/1.1.0/yank")
        assert (r.json()["yanked"], r.json()["yanked_reason"]) == (False, None)
        assert c.get("/api/v1/packages/tiny").json()["latest"] == "1.1.0"
        assert c.post("/api/v1/packages/tiny/1.0.0/yank").json()["yanked"] is True  # the reason is optional
        assert_error(c.post("/api/v1/packages/tiny/9.9.9/yank", json={}), 404, "not_found", "9.9.9")
        assert_error(c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": 5}), 400, "invalid_manifest")
        # yanked versions stay downloadable: yanking never deletes
        assert c.get("/api/v1/packages/tiny/1.0.0").json()["yanked"] is True


def test_packument_etag_gives_304_and_changes_on_publish_and_yank(api, small_package) -> None:
    token = api.add_user("alice")
    api.publish(small_package("tiny", "1.0.0"), token)
    with api.client(token) as c:
        r = c.get("/api/v1/packages/tiny")
        etag = r.headers["etag"]
        assert etag.startswith('"') and r.headers["content-type"].startswith("application/json")
        not_modified = c.get("/api/v1/packages/tiny", headers={"If-None-Match": etag})
        assert not_modified.status_code == 304 and not_modified.headers["etag"] == etag and not not_modified.content
        assert c.get("/api/v1/packages/tiny", headers={"If-None-Match": '"other"'}).status_code == 200
        c.post("/api/v1/packages/tiny/1.0.0/yank", json={"reason": "x"})
        yanked = c.get("/api/v1/packages/tiny", headers={"If-None-Match": etag})
        assert yanked.status_code == 200 and yanked.headers["etag"] != etag
    api.publish(small_package("tiny", "1.1.0"), token)
    with api.client() as c:
        assert c.get("/api/v1/packages/tiny", headers={"If-None-Match": yanked.headers["etag"]}).status_code == 200


def test_search_by_name_description_and_tag_case_insensitive(api, small_package) -> None:
    token = api.add_user("alice")
    api.publish(small_package("alpha-net", description="Classifies Cats", tags=("vision",)), token)
    api.publish(small_package("beta", description="Speech to text", tags=("audio", "asr")), token)
    api.publish(small_package("alpha-net", "2.0.0", description="Classifies Cats and dogs",
                                   tags=("vision",)), token)

    def names(q: str, **params) -> list[str]:
        with api.client() as c:
            return [r["name"] for r in c.get("/api/v1/search", params={"q": q, **params}).json()["results"]]

    assert names("ALPHA") == ["alpha-net"]
    assert names("alpha_net") == ["alpha-net"]
    assert names("cats") == ["alpha-net"]
    assert names("Audio") == ["beta"]
    assert names("") == ["alpha-net", "beta"]
    assert names("", limit=1) == ["alpha-net"]
    assert names("%") == [] and names("a%t") == []  # LIKE wildcards are matched literally
    assert names("alpha net") == ["alpha-net"]
    assert names("nothing-like-this") == []
    with api.client() as c:
        (hit,) = c.get("/api/v1/search", params={"q": "dogs"}).json()["results"]
        assert hit == {"name": "alpha-net", "version": "2.0.0", "description": "Classifies Cats and dogs",
                       "tags": ["vision"]}
        assert_error(c.get("/api/v1/search", params={"limit": "lots"}), 400, "invalid_manifest", "limit")

