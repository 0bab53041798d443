"""Issue 14, item 9 (server side): the card links every file and the whole version as a `.nnpm`.

A blob GET with `?filename=` answers `Content-Disposition: attachment` with the name
sanitised; `GET /api/v1/packages/{name}/{version}/archive` streams, from the blob store,
the very bytes `nnpm pack` writes for the same folder, with flat memory and no temp
file. In process (tests/inprocess.py), on both backends.
"""

from __future__ import annotations

import hashlib
import html as htmllib
import re
import tracemalloc
from pathlib import Path

import numpy as np
from cli import run_nnpm

from nnpm.format.archive import extract

EXTRA_TOML = '\n[files]\ninclude = ["data/notes.txt", "data/ünïcode.txt"]\n'
EXTRA_FILES = {"data/notes.txt": b"notes\n" * 100, "data/\u00fcn\u00efcode.txt": b"x" * 513}


def rich_package(small_package, name: str = "rich", **options) -> Path:
    """A package with a README, labels, external data and two included files (one in a sub-folder, non-ASCII)."""
    return small_package(name, labels=["a", "b", "c"], external_data=True, files=EXTRA_FILES,
                         extra_toml=EXTRA_TOML, **options)


def test_blob_downloads_name_the_file_when_asked(api, small_package) -> None:
    token = api.add_user("alice")
    assert api.publish(small_package("named"), token).status_code == 201
    with api.client() as c:
        files = c.get("/api/v1/packages/named/1.0.0").json()["manifest"]["files"]
        model = next(f for f in files if f["path"] == "model.onnx")
        url = f"/api/v1/blobs/sha256:{model['sha256']}"
        plain = c.get(url)
        assert "content-disposition" not in plain.headers
        named = c.get(url, params={"filename": "model.onnx"})
        assert named.content == plain.content
        assert named.headers["content-disposition"] == "attachment; filename=\"model.onnx\""
        hostile = c.get(url, params={"filename": '../../etc/pa"ss\\wd\r\n\x00;x.onnx'})
        disposition = hostile.headers["content-disposition"]
        assert disposition == "attachment; filename=\"wd;x.onnx\"", disposition
        odd = c.get(url, params={"filename": "sub/mod\u00e8le\u202e.onnx"}).headers["content-disposition"]
        assert odd == "attachment; filename=\"mod_le.onnx\"; filename*=UTF-8''mod%C3%A8le.onnx", odd
        quoted = c.get(url, params={"filename": 'a"b.onnx'}).headers["content-disposition"]
        assert quoted == 'attachment; filename="a_b.onnx"', quoted
        for empty in ("", "..", "/", "\x01"):
            got = c.get(url, params={"filename": empty}).headers["content-disposition"]
            assert got == f"attachment; filename=\"{model['sha256']}\"", (empty, got)
        part = c.get(url, params={"filename": "model.onnx"}, headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == plain.content[:10]
        assert part.headers["content-disposition"].startswith("attachment;")


def test_the_card_links_every_file_and_the_archive(api, small_package) -> None:
    token = api.add_user("alice")
    assert api.publish(rich_package(small_package), token).status_code == 201
    with api.client() as c:
        page = htmllib.unescape(c.get("/packages/rich").text)
        files = c.get("/api/v1/packages/rich/1.0.0").json()["manifest"]["files"]
        hrefs = re.findall(r'href="(/api/v1/[^"]+)"', page)
        for f in files:
            link = next(h for h in hrefs if f["sha256"] in h)
            r = c.get(link)
            assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == f["sha256"]
            assert "attachment" in r.headers["content-disposition"]
        assert "/api/v1/packages/rich/1.0.0/archive" in hrefs
        assert c.get("/packages/rich/1.0.0").text.count('/archive"') == 1


def test_the_archive_is_the_bytes_nnpm_pack_writes(api, small_package, tmp_path: Path) -> None:
    token = api.add_user("alice")
    folder = rich_package(small_package)
    assert api.publish(folder, token).status_code == 201
    packed = tmp_path / "packed.nnpm"   # api.publish sends the author's layout, so pack keeps it too
    run_nnpm(tmp_path / "home", "pack", "--no-split-tensors", folder, "-o", packed)
    with api.client() as c:
        r = c.get("/api/v1/packages/Rich/1.0/archive")
        assert r.status_code == 200, r.text
        assert r.content == packed.read_bytes()
        assert int(r.headers["content-length"]) == packed.stat().st_size
        assert r.headers["content-type"] == "application/x-tar"
        assert r.headers["content-disposition"] == 'attachment; filename="rich-1.0.0.nnpm"'
        assert c.get("/api/v1/packages/rich/9.9/archive").status_code == 404
        assert c.get("/api/v1/packages/nothing/1.0/archive").status_code == 404
    (tmp_path / "download.nnpm").write_bytes(r.content)
    manifest = extract(tmp_path / "download.nnpm", tmp_path / "unpacked")
    assert (tmp_path / "unpacked" / "data" / "\u00fcn\u00efcode.txt").read_bytes() == b"x" * 513
    assert manifest.name == "rich"


def test_the_archive_streams_with_flat_memory_and_no_temp_file(api, small_package, tmp_path: Path) -> None:
    from registry_server.services import archive, catalog

    token = api.add_user("alice")
    weights = np.random.default_rng(0).standard_normal(16 * 1024 * 1024 // 4).astype(np.float32)  # 16 MiB
    folder = small_package("big", weights=weights, external_data=True)
    assert api.publish(folder, token).status_code == 201
    with api.app.state.sessions() as session:
        manifest = catalog.manifest_of(catalog.require_version(session, "big", "1.0.0"))
    store = api.app.state.store
    tmp_before = sorted((api.data_dir / "tmp").rglob("*")) if (api.data_dir / "tmp").exists() else []

    # Python memory held after every 4th chunk, leaving out moto's S3 server (it runs in this process and holds
    # whole objects; a real S3 does not): one chunk and some headers, never a whole file.
    not_moto = [tracemalloc.Filter(False, f"*/{pkg}/*", all_frames=True) for pkg in ("moto", "werkzeug", "flask")]
    digest, total, biggest, held = hashlib.sha256(), 0, 0, 0
    tracemalloc.start(30)
    try:
        length, chunks = archive.stream(manifest, store)
        for i, chunk in enumerate(chunks):
            digest.update(chunk)
            total += len(chunk)
            biggest = max(biggest, len(chunk))
            if i % 4 == 3:
                held = max(held, sum(t.size for t in tracemalloc.take_snapshot().filter_traces(not_moto).traces))
    finally:
        tracemalloc.stop()
    assert total == length > 16 * 1024 * 1024
    assert biggest <= 1024 * 1024 + 1024 and held < 4 * 1024 * 1024, (biggest, held)
    now = sorted((api.data_dir / "tmp").rglob("*")) if (api.data_dir / "tmp").exists() else []
    assert now == tmp_before
    packed = tmp_path / "big.nnpm"
    run_nnpm(tmp_path / "home", "pack", "--no-split-tensors", folder, "-o", packed)
    assert digest.hexdigest() == hashlib.sha256(packed.read_bytes()).hexdigest()
