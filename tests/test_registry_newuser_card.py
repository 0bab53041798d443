"""Issue 14, item 5 (server side): a pipeline's card and API answers show its interface.

The signature of a pipeline is computed at publish from the wiring of the newest steps
that match its ranges, stored with the version (`versions.signature_json`, revision 0003)
and sent in the packument and the version object; the card shows it, a size that counts
the steps, no empty files table and the dependencies in step order. In process
(tests/inprocess.py), on both backends.
"""

from __future__ import annotations

import json
import re

from migrationkit import at_revision, upgraded
from sqlalchemy import text

from nnpm.format.packument import Packument

SIGNATURE = {"inputs": [{"name": "X", "dtype": "float32", "shape": ["N", 3]}],
             "outputs": [{"name": "Y", "dtype": "float32", "shape": ["N", 3]}]}


def publish_pipeline(api, small_package, steps=("zeta-step", "alpha-step"), name="pipe") -> str:
    """Two Y = X + W steps (published in name order), then a pipeline `name` chaining them in `steps` order."""
    token = api.add_user("alice")
    for i, step in enumerate(sorted(steps)):
        r = api.publish(small_package(step, weights=[float(i)] * 3), token)
        assert r.status_code == 201, r.text
    r = api.publish(small_package(name, bare=True, dependencies={s: ">=1,<2" for s in steps}, pipeline=list(steps)),
                    token)
    assert r.status_code == 201, r.text
    return token


def section(html: str, ident: str) -> str:
    """The HTML of `<section ... id="ident">` up to its closing tag."""
    start = html.index(f'id="{ident}"')
    return html[start:html.index("</section>", start)]


def test_the_packument_and_the_version_carry_a_pipelines_signature(api, small_package) -> None:
    publish_pipeline(api, small_package)
    with api.client() as c:
        doc = c.get("/api/v1/packages/pipe").json()
        (entry,) = doc["versions"]
        assert entry["signature"] == SIGNATURE
        assert "signature" not in c.get("/api/v1/packages/alpha-step").json()["versions"][0]  # models: in the manifest
        view = c.get("/api/v1/packages/pipe/1.0.0").json()
        assert view["signature"] == SIGNATURE and view["manifest"]["signature"] is None
        assert "signature" not in c.get("/api/v1/packages/alpha-step/1.0.0").json()
        raw = c.get("/api/v1/packages/pipe").content
    release = Packument.from_json(raw).release("1.0.0")  # what the client reads
    assert release.manifest.project.pipeline is not None and release.signature.to_dict() == SIGNATURE
    (stored,) = api.query("SELECT v.signature_json FROM versions v JOIN packages p ON p.id = v.package_id "
                          "WHERE p.name = 'pipe'")
    assert json.loads(stored[0]) == SIGNATURE
    assert api.query("SELECT count(*) FROM versions WHERE signature_json IS NOT NULL") == [(1,)]


def test_a_pipeline_card_shows_inputs_outputs_size_and_steps_in_order(api, small_package) -> None:
    publish_pipeline(api, small_package)
    with api.client() as c:
        html = c.get("/packages/pipe").text
        steps_total = sum(f["size"] for s in ("zeta-step", "alpha-step")
                          for f in c.get(f"/api/v1/packages/{s}/1.0.0").json()["manifest"]["files"])
    from registry_server.web.render import human_size

    sig = section(html, "signature")
    assert re.search(r"input</span></td>\s*<td><code>X</code></td>\s*<td><code>float32</code></td>\s*"
                     r"<td><code>\[N, 3\]</code>", sig), sig
    assert re.search(r"output</span></td>\s*<td><code>Y</code>", sig), sig
    size = re.search(r"Size <strong[^>]*>([^<]+)</strong>(.*?)</span>", html)
    assert size is not None and size.group(1) == human_size(steps_total) != "0 B", html
    assert "with its steps" in size.group(2)
    assert "files-table" not in html and "no files of its own" in section(html, "files")
    deps = section(html, "dependencies")
    assert deps.index("zeta-step") < deps.index("alpha-step"), deps  # step order, not alphabetical
    assert 'href="/packages/zeta-step"' in deps and 'href="/packages/alpha-step"' in deps
    pipeline = section(html, "pipeline")
    assert 'href="/packages/zeta-step/1.0.0"' in pipeline and pipeline.index("zeta-step") < pipeline.index("alpha")


def test_a_pipeline_with_its_own_files_shows_them_and_says_what_the_size_holds(api, small_package) -> None:
    token = api.add_user("alice")
    assert api.publish(small_package("only-step"), token).status_code == 201
    r = api.publish(small_package("readme-pipe", dependencies={"only-step": ">=1"}, pipeline=["only-step"]), token)
    assert r.status_code == 201, r.text
    with api.client() as c:
        html = c.get("/packages/readme-pipe").text
        own = c.get("/api/v1/packages/readme-pipe/1.0.0").json()["manifest"]["files"]
    assert [f["path"] for f in own] == ["README.md"]
    assert "files-table" in html and "README.md" in section(html, "files")
    assert "its own files" in html and "with its steps" in html


def test_a_model_card_is_unchanged(api, small_package) -> None:
    token = api.add_user("alice")
    assert api.publish(small_package("plain"), token).status_code == 201
    with api.client() as c:
        html = c.get("/packages/plain").text
    assert "with its steps" not in html and "files-table" in html and "model.onnx" in html


# -- revision 0003 ---------------------------------------------------------------------------------



def test_a_database_at_0002_gains_the_new_columns_and_keeps_its_rows(database_url: str) -> None:
    from registry_server.db.migrations import current_revision, head_revision

    at_revision(database_url, "0002",
                ("INSERT INTO users (id, name, created_at) VALUES (1, 'alice', CURRENT_TIMESTAMP)", {}),
                ("INSERT INTO tokens (user_id, token_sha256, created_at) VALUES (1, :sha, CURRENT_TIMESTAMP)",
                 {"sha": "1" * 64}),
                ("INSERT INTO packages (id, name, created_at) VALUES (1, 'kept', CURRENT_TIMESTAMP)", {}),
                ("INSERT INTO versions (package_id, version, version_key, manifest_json, manifest_sha256, description, "
                 "tags, yanked, published_at) VALUES (1, '1.0', '1', '{}', :sha, 'd', 't', :no, CURRENT_TIMESTAMP)",
                 {"sha": "0" * 64, "no": False}))
    with upgraded(database_url) as conn:
        assert current_revision(conn) == head_revision() >= "0003"
        assert conn.execute(text("SELECT version, signature_json FROM versions")).all() == [("1.0", None)]
        assert conn.execute(text("SELECT token_sha256, prefix, last_used_at FROM tokens")).all() == [
            ("1" * 64, None, None)]
