"""httpx client for the registry protocol (docs/protocol.md); every failure leaves as an nnpm error.

Packuments are parsed once into `nnpm.format.packument.Packument`, cached with their ETag
(`nnpm.client.packument_cache`) and revalidated with If-None-Match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

from nnpm._version import __version__
from nnpm.client.admin import AdminCalls
from nnpm.client.admin import name_seg as _name
from nnpm.client.admin import version_seg as _version
from nnpm.client.httperrors import error_for_request_error, error_for_response, safe_url
from nnpm.client.packument_cache import PackumentCache
from nnpm.client.tls import LazyCAContext
from nnpm.client.trusted_index import TrustedIndex
from nnpm.config import TRUST_NAME, Settings, normalise_url
from nnpm.errors import ConfigError, IntegrityError, ManifestError, NnpmError, RegistryError
from nnpm.format.fields import canonical_name, is_digest, parse_version
from nnpm.format.limits import MAX_ERROR_BODY_BYTES, MAX_FILES, MAX_PACKUMENT_BYTES
from nnpm.format.manifest import Manifest
from nnpm.format.packument import Packument, Release
from nnpm.hashing import verified_chunks

if TYPE_CHECKING:
    from nnpm.format.signing import ManifestSignature, PublicKey

MAX_JSON = MAX_PACKUMENT_BYTES   # a packument or answer larger than this is refused
MAX_ERROR_BODY = MAX_ERROR_BODY_BYTES
MAX_BLOB_REDIRECTS = 3           # hops a blob download may take to the bytes (e.g. to a presigned S3 URL)
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)

def _blob_path(digest: str) -> str:
    hex_ = digest.removeprefix("sha256:")
    if not is_digest(hex_):
        raise IntegrityError(f"{digest!r} is not a sha256 digest (64 lowercase hex digits)")
    return f"/blobs/sha256:{hex_}"


class _Secret:
    """A value that never shows in a repr, a traceback's locals or a log line."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"


class RegistryClient(AdminCalls):
    """One registry, over the v1 HTTP protocol; thread-safe, close it (or use `with`) when done.

    Yank, owners, tokens and publisher keys are nnpm/client/admin.py's."""

    def __init__(self, url: str, *, token: str | None = None, transport: httpx.BaseTransport | None = None,
                 cache_dir: Path | None = None, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 trust_dir: Path | None = None) -> None:
        self.url = normalise_url(url)
        try:
            httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"registry URL {safe_url(self.url)!r} is not valid: {exc}") from None
        self._token = _Secret(token) if token else None
        self._cache = PackumentCache(Path(cache_dir), self.url) if cache_dir else None
        # Signed-index pins (nnpm/client/trusted_index.py) sit beside the cache: Settings.trust_dir
        self._trust_dir, self._index = trust_dir or (Path(cache_dir).parent / TRUST_NAME if cache_dir else None), None
        headers = {"User-Agent": f"nnpm/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, transport=transport,
                                  timeout=timeout, follow_redirects=True, verify=LazyCAContext())

    @classmethod
    def for_settings(cls, settings: Settings) -> "RegistryClient":
        """The configured registry, with its token and the packument cache (ConfigError when none is set)."""
        return cls(settings.require_registry(), token=settings.token, cache_dir=settings.cache_dir)

    def __repr__(self) -> str:
        return f"RegistryClient({safe_url(self.url)!r}, token={'set' if self._token else 'none'})"

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- the one seam where failures become nnpm errors -------------------------------------
    def _redact(self, err: NnpmError) -> NnpmError:
        if self._token:
            for attr in ("message", "hint"):
                text = getattr(err, attr, None)
                if text and self._token.value in text:
                    setattr(err, attr, text.replace(self._token.value, "***"))
            err.args = (err.message,)
        return err

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except httpx.RequestError as exc:
            raise self._redact(error_for_request_error(exc, self.url)) from exc

    def _read(self, resp: httpx.Response, cap: int) -> bytes:
        chunks, n = [], 0
        for chunk in resp.iter_bytes():
            n += len(chunk)
            if n > cap:
                raise RegistryError(f"the registry at {safe_url(self.url)} sent more than {cap} bytes "
                                    f"for {resp.request.method} {resp.request.url.path}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _send(self, method: str, path: str, *, headers: dict | None = None, content=None,
              params: dict | None = None, ok: tuple[int, ...] = (200,), follow_redirects: bool = True
              ) -> httpx.Response:
        """Send a request, streaming the answer; an unexpected status raises its nnpm error."""
        with self._mapped():
            request = self._http.build_request(method, path, headers=headers, content=content, params=params)
            resp = self._http.send(request, stream=True, follow_redirects=follow_redirects)
            if resp.status_code in ok:
                return resp
            try:
                body = self._read(resp, MAX_ERROR_BODY) if resp.status_code >= 400 else b""
            except (RegistryError, httpx.RequestError):
                body = b""
            finally:
                resp.close()
        raise self._redact(error_for_response(resp.status_code, resp.headers, body, self.url))

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kw) -> tuple[int, bytes, httpx.Headers]:
        resp = self._send(method, path, ok=ok, **kw)
        try:
            with self._mapped():
                return resp.status_code, self._read(resp, MAX_JSON), resp.headers
        finally:
            resp.close()

    def _json(self, body: bytes, what: str) -> dict:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise RegistryError(f"the registry at {safe_url(self.url)} sent malformed JSON for {what}")
        return data

    def _get_json(self, method: str, path: str, what: str, **kw) -> dict:
        return self._json(self._call(method, path, **kw)[1], what)

    # -- reads ---------------------------------------------------------------------------------
    def health(self) -> dict:
        """The server's status and version."""
        return self._get_json("GET", "/health", "health")

    def whoami(self) -> str:
        """The user the token belongs to."""
        user = self._get_json("GET", "/whoami", "whoami").get("user")
        if not isinstance(user, str):
            raise RegistryError(f"the registry at {safe_url(self.url)} sent no user name for whoami")
        return user

    def packument(self, name: str) -> Packument | None:
        """Every version of a package (None when the registry has none), cached by ETag."""
        path = f"/packages/{_name(name)}"
        cached = self._cache.read(name) if self._cache else None
        headers = {"If-None-Match": cached[0]} if cached else None
        if index := self.trusted_index():   # a pinned registry: the packument only as its signed index names it
            signed = index.packument_bytes(canonical_name(name, key="name"))
            status, body, resp_headers = (404, b"", {}) if signed is None else (200, signed, {})
        else:
            status, body, resp_headers = self._call("GET", path, headers=headers, ok=(200, 304, 404))
        if status == 404:
            if self._cache:
                self._cache.drop(name)
            return None
        if status == 304:
            if not cached:
                raise RegistryError(f"the registry at {safe_url(self.url)} answered 304 to a plain request")
            data = cached[1]
        else:
            data = self._json(body, f"package {name}")
        try:
            packument = Packument.from_dict(data, source=f"the registry at {safe_url(self.url)}")
        except ManifestError as exc:
            raise RegistryError(exc.message) from None
        if status == 200 and resp_headers.get("etag") and self._cache:
            self._cache.write(name, resp_headers["etag"], data)
        return packument

    def trusted_index(self) -> TrustedIndex | None:
        """The signed index when this machine pins the registry's root (pinned now on first contact), else None."""
        if self._index is None and self._trust_dir is not None:
            self._index = TrustedIndex.open(self.url, self._trust_dir, self._http) or False
        return self._index or None

    def packument_bytes(self, name: str) -> bytes | None:
        """A packument's bytes exactly as the registry sent them (for bundles), uncached; None when it has none."""
        status, body, _ = self._call("GET", f"/packages/{_name(name)}", ok=(200, 404))
        return body if status == 200 else None

    def tuf_file(self, path: str) -> bytes | None:
        """A file of the registry's signed index (`metadata/1.root.json`) as served, unverified; None on 404."""
        status, body, _ = self._call("GET", f"{self.url}/tuf/{path}", ok=(200, 404))
        return body if status == 200 else None

    def version(self, name: str, version: str) -> dict:
        """One version: name, version, yanked, yanked_reason, published_at and the full manifest."""
        return self._get_json("GET", f"/packages/{_name(name)}/{_version(version)}", f"{name} {version}")

    def release(self, name: str, version: str) -> Release:
        """One version as a typed Release whose manifest is checked to be that very version's."""
        data = self.version(name, version)
        release = Release.from_dict(canonical_name(name, key="name"), data)
        if release is None or release.version != parse_version(str(version), key="version"):
            raise RegistryError(f"the registry at {safe_url(self.url)} answered for another version than "
                                f"{name} {version}")
        try:
            release.manifest
        except ManifestError as exc:
            raise RegistryError(f"the registry at {safe_url(self.url)} sent a bad manifest: {exc.message}",
                                hint=exc.hint) from None
        return release

    def owners(self, name: str) -> list[str]:
        """The users who may publish and yank a package."""
        return list(self._get_json("GET", f"/packages/{_name(name)}/owners", "owners").get("owners") or [])

    def search(self, q: str, limit: int = 20) -> tuple[list[dict], int]:
        """Packages whose name, description or tags match (all when q is empty), at most `limit`, and how
        many match in all (a registry that does not say is taken at its word: the results shown)."""
        data = self._get_json("GET", "/search", "search", params={"q": q, "limit": limit})
        results = data.get("results")
        found = [r for r in results if isinstance(r, dict)][:limit] if isinstance(results, list) else []
        total = data.get("total")
        return found, total if isinstance(total, int) and not isinstance(total, bool) and total >= len(found) \
            else len(found)

    def has_blob(self, digest: str) -> int | None:
        """The stored size of a blob, or None when the registry lacks it."""
        resp = self._send("HEAD", _blob_path(digest), ok=(200, 404))
        resp.close()
        if resp.status_code == 404:
            return None
        try:
            return int(resp.headers["content-length"])
        except (KeyError, ValueError):
            raise RegistryError(f"the registry at {safe_url(self.url)} sent no size for blob {digest}") from None

    def missing_blobs(self, digests: list[str]) -> list[str] | None:
        """The digests the registry lacks, in order and once each; None when it has no POST /blobs/missing."""
        named = {_blob_path(d).removeprefix("/blobs/"): d for d in digests}  # "sha256:<hex>" → as given
        wanted, missing = list(named), []
        for i in range(0, len(wanted), MAX_FILES):
            sent = wanted[i:i + MAX_FILES]
            status, body, _ = self._call("POST", "/blobs/missing", ok=(200, 404, 405),
                                         headers={"Content-Type": "application/json"},
                                         content=json.dumps({"digests": sent}).encode())
            if status != 200:
                return None
            got = self._json(body, "missing blobs").get("missing")
            if not isinstance(got, list) or not all(isinstance(d, str) and d in named for d in got):
                raise RegistryError(f"the registry at {safe_url(self.url)} sent a malformed list of missing blobs")
            lacking = set(got)
            missing += [named[d] for d in sent if d in lacking]
        return missing

    @contextmanager
    def open_blob(self, digest: str, start: int = 0, if_range: str | None = None) -> Iterator[httpx.Response]:
        """The streaming answer for a blob; 206 when a Range from `start` was honoured, else 200 from 0.

        A registry may redirect the download to where the bytes are (a presigned S3 URL);
        see `_follow_blob_redirect`. The caller checks size and sha256 either way.
        """
        headers = {}
        if start > 0:
            headers["Range"] = f"bytes={start}-"
            if if_range:
                headers["If-Range"] = if_range
        resp = self._send("GET", _blob_path(digest), headers=headers, ok=(200, 206, *REDIRECTS),
                          follow_redirects=False)
        try:
            for _ in range(MAX_BLOB_REDIRECTS):
                if resp.status_code not in REDIRECTS:
                    break
                resp = self._follow_blob_redirect(resp, digest, start)
            if resp.status_code in REDIRECTS:
                resp.close()
                raise RegistryError(f"the download of blob {digest} was redirected more than "
                                    f"{MAX_BLOB_REDIRECTS} times", hint="tell the registry's operator")
            if "x-accel-redirect" in resp.headers:
                # Meant for a front proxy, which replaces it with the file: none is between us and the registry.
                raise RegistryError(f"the registry handed the download of blob {digest} to a front proxy "
                                    "(X-Accel-Redirect), but none answered",
                                    hint="use the registry's public URL, the one behind its proxy; or tell its "
                                    "operator (--accel-redirect without nginx in front)")
            with self._mapped():
                yield resp
        finally:
            resp.close()

    def _follow_blob_redirect(self, resp: httpx.Response, digest: str, start: int) -> httpx.Response:
        """GET the Location of a blob redirect, re-sending only the Range.

        Never the Authorization header (a presigned URL carries its own signature, and an
        object store refuses a request with two), nor If-Range: the store's ETag is not
        our "sha256:…", so S3 would answer a ranged request with the whole object and a
        resume would start over. The sha256 check after the download covers both.
        """
        location = resp.headers.get("location")
        resp.close()
        if not location:
            raise RegistryError(f"the registry at {safe_url(self.url)} redirected blob {digest} nowhere "
                                f"({resp.status_code} without a Location)")
        with self._mapped():
            url = resp.url.join(location)
        if url.scheme not in ("http", "https"):
            raise RegistryError(f"the registry at {safe_url(self.url)} redirected blob {digest} to a "
                                f"{url.scheme or 'relative'}: URL")
        where = f"{url.scheme}://{url.netloc.decode('ascii', 'replace').rsplit('@', 1)[-1]}"  # no signature
        headers = {"Range": f"bytes={start}-"} if start > 0 else {}
        request = self._http.build_request("GET", url, headers=headers)  # keeps User-Agent and timeouts
        request.headers.pop("Authorization", None)
        request.headers.pop("Cookie", None)
        try:
            hop = self._http.send(request, stream=True, follow_redirects=False)
        except httpx.RequestError as exc:
            raise self._redact(error_for_request_error(exc, where)) from exc
        if hop.status_code in (200, 206) or hop.status_code in REDIRECTS:
            return hop
        hop.close()
        # No status on the error: the next attempt asks the registry again, for a fresh URL.
        raise RegistryError(f"the blob store at {where} answered {hop.status_code} "
                            f"{httpx.codes.get_reason_phrase(hop.status_code)} for blob {digest}".rstrip(),
                            hint="try again; if it persists, tell the registry's operator")

    # -- writes --------------------------------------------------------------------------------
    def upload_blob(self, digest: str, size: int, path_or_fileobj: Path | str | IO[bytes],
                    on_progress: Callable[[int], None] | None = None) -> int:
        """Stream a blob (checked against size and sha256 as it goes); 201 stored, 200 already there."""
        path = _blob_path(digest)
        hex_ = digest.removeprefix("sha256:")
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        if isinstance(path_or_fileobj, (str, os.PathLike)):
            with open(path_or_fileobj, "rb") as f:
                return self._send("PUT", path, headers=headers, ok=(200, 201),
                                  content=verified_chunks(f, size, hex_, on_progress)).status_code
        return self._send("PUT", path, headers=headers, ok=(200, 201),
                          content=verified_chunks(path_or_fileobj, size, hex_, on_progress)).status_code

    def put_manifest(self, manifest: Manifest, signature: "ManifestSignature | None" = None,
                     public_key: "PublicKey | None" = None) -> int:
        """Commit a version whose blobs are all uploaded: 201 created, 200 identical retry. A publisher
        `signature` goes in X-Nnpm-Signature, its key (registered by a new package's first publish) beside it."""
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Nnpm-Signature"] = signature.header()
        if public_key is not None:
            headers["X-Nnpm-Public-Key"] = public_key.to_dict()["public"]
        status, _, _ = self._call("PUT", f"/packages/{_name(manifest.name)}/{_version(manifest.version)}",
                                  headers=headers, content=manifest.to_json(), ok=(200, 201))
        return status

    # -- packument cache -----------------------------------------------------------------------
