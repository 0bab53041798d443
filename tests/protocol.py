"""The registry protocol by hand (docs/protocol.md), and a look behind a registry's back.

``RegistryHandle`` is what tests/registry_proc.py's ``Registry`` (a server subprocess) and
tests/inprocess.py's ``InProcessRegistry`` (the app behind an in-memory transport) share:
``.client(token)`` (an httpx.Client on it; each subclass says how), ``.add_user(name) ->
token``, ``.publish(folder, token)`` (the raw protocol: HEAD, PUT missing blobs, PUT the
manifest; returns the manifest's response), ``.query(sql, **params)`` (rows from its
database), ``.stored_blobs()`` (digests in its blob store), ``.uploads_in_flight()`` (temp
files, or unfinished multipart uploads), ``.backend`` ('sqlite-dir', 'postgres-s3' or
'custom') and ``.database_url`` / ``.storage_url``.

Protocol calls and checks for either: ``built(folder)``, ``upload_blobs(reg, token, built)``,
``put_blob(reg, token, data) -> digest``, ``put_manifest(reg, token, name, version, body)``,
``assert_error(response, status, code, *words)`` (the one error shape),
``assert_nothing_published(reg, name)`` and ``tmp_entries(reg)`` (the scratch folder).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx


class RegistryHandle:
    """A registry over `data_dir` and `flags`-style settings; subclasses give `client()`."""

    data_dir: Path
    bucket = None  # the S3Bucket of tests/s3server.py, when the blobs live in one

    def _setting(self, name: str) -> str | None:
        raise NotImplementedError

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        raise NotImplementedError

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL the server uses (the setting, else the SQLite file in the data folder)."""
        return self._setting("database_url") or f"sqlite:///{self.data_dir / 'registry.db'}"

    @property
    def storage_url(self) -> str:
        """The storage URL setting, or "" for the blob folder inside the data folder."""
        return self._setting("storage_url") or ""

    @property
    def backend(self) -> str:
        """'sqlite-dir', 'postgres-s3', or 'custom' for other combinations."""
        pg, s3 = self.database_url.startswith("postgres"), self.storage_url.startswith("s3://")
        return "sqlite-dir" if not (pg or s3 or self.storage_url) else "postgres-s3" if pg and s3 else "custom"

    def add_user(self, name: str) -> str:
        """Create `name` if needed and return a new API token for it (same database as the server)."""
        from registry_server.services.auth import add_user

        return add_user(self.database_url, name)

    def publish(self, folder: Path, token: str) -> httpx.Response:
        """Publish a package folder with raw protocol calls; the manifest PUT's response."""
        b = built(folder)
        manifest = b.manifest
        with self.client(token) as c:
            for f in manifest.files:
                if c.head(f"/api/v1/blobs/sha256:{f.sha256}").status_code == 404:
                    with open(b.paths[f.path], "rb") as fh:
                        r = c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=fh,
                                  headers={"Content-Length": str(f.size)})
                    assert r.status_code in (200, 201), r.text
            return c.put(f"/api/v1/packages/{manifest.name}/{manifest.version}", content=manifest.to_json(),
                         headers={"Content-Type": "application/json"})

    # -- looking behind the server's back ----------------------------------------------------------
    def query(self, sql: str, **params) -> list[tuple]:
        """Rows of one SQL statement on the server's database (SQLite or PostgreSQL), in its own connection."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        from registry_server.db.engine import engine_url

        engine = create_engine(engine_url(self.database_url), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def _s3(self):
        if self.bucket is None:
            raise RuntimeError(f"this registry was made without its S3Bucket ({self.storage_url})")
        prefix = self.storage_url.removeprefix(f"s3://{self.bucket.name}").strip("/")
        return self.bucket, (prefix + "/" if prefix else "") + "blobs/"

    def _blob_folder(self) -> Path:
        return Path(self.storage_url.removeprefix("file://")) if self.storage_url else self.data_dir

    def stored_blobs(self) -> set[str]:
        """The digests of every blob in the server's blob store."""
        if self.storage_url.startswith("s3://"):
            bucket, prefix = self._s3()
            return {key.rpartition("/")[2] for key in bucket.keys(prefix)}
        return {p.name for p in (self._blob_folder() / "blobs").rglob("*") if p.is_file()}

    def uploads_in_flight(self) -> list[str]:
        """Uploads begun and never finished: temp files in the folder store, or open multipart uploads in S3."""
        if self.storage_url.startswith("s3://"):
            bucket, prefix = self._s3()
            return [key for key, _ in bucket.open_uploads(prefix)]
        return sorted(str(p) for p in (self._blob_folder() / "tmp").glob("upload-*.part"))


# -- protocol calls ----------------------------------------------------------------------------------

def built(folder: Path):
    """nnpm.author.pack.build(folder): the manifest and the path of every file."""
    from nnpm.author.pack import build

    return build(folder)


def upload_blobs(reg: RegistryHandle, token: str, b) -> None:
    """PUT every file of a built package."""
    with reg.client(token) as c:
        for f in b.manifest.files:
            r = c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=b.paths[f.path].read_bytes())
            assert r.status_code in (200, 201), r.text


def put_blob(reg: RegistryHandle, token: str, data: bytes) -> str:
    """PUT one blob; its digest."""
    digest = hashlib.sha256(data).hexdigest()
    with reg.client(token) as c:
        r = c.put(f"/api/v1/blobs/sha256:{digest}", content=data)
    assert r.status_code in (200, 201), r.text
    return digest


def put_manifest(reg: RegistryHandle, token: str | None, name: str, version: str,
                 body: bytes | dict) -> httpx.Response:
    """PUT a manifest (bytes as they are, a dict as JSON)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    with reg.client(token) as c:
        return c.put(f"/api/v1/packages/{name}/{version}", content=body,
                     headers={"Content-Type": "application/json"})


def assert_error(r: httpx.Response, status: int, code: str, *words: str) -> dict:
    """The one error shape: status, JSON {"error", "detail", "hint", "fields"}, X-Error-Code; detail names `words`."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail", "hint", "fields"}, body
    assert isinstance(body["fields"], dict) and (body["hint"] is None or isinstance(body["hint"], str)), body
    assert body["error"] == code and r.headers["x-error-code"] == code, body
    for w in words:
        assert w.lower() in body["detail"].lower(), (w, body)
    return body


def assert_nothing_published(reg: RegistryHandle, name: str) -> None:
    """No packument and no version row for `name`."""
    with reg.client() as c:
        assert c.get(f"/api/v1/packages/{name}").status_code == 404
    assert reg.query("SELECT count(*) FROM versions v JOIN packages p ON p.id = v.package_id "
                     "WHERE p.name = :name", name=name) == [(0,)]


def tmp_entries(reg: RegistryHandle) -> list[str]:
    """What is left in the server's scratch folder (uploads in flight, worker folders): must be nothing."""
    tmp = reg.data_dir / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []
