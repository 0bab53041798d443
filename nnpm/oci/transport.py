"""Talking to an OCI registry through oras-py: manifests and blobs, read and written, every failure an nnpm error.

oras-py's `Registry` does the HTTP and the auth dance (anonymous, basic, and the bearer-token
challenge of the distribution spec), and reads credentials from the Docker config file
(`~/.docker/config.json`, or `DOCKER_CONFIG`). `NNPM_OCI_USERNAME` / `NNPM_OCI_PASSWORD`
give them directly. nnpm builds the manifests itself (`nnpm.format.oci`) and sends their
exact bytes, since a digest is the hash of those bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnpm.errors import AuthError, ConfigError, IntegrityError, NotFoundError, RegistryError
from nnpm.format.oci import IMAGE_MANIFEST
from nnpm.oci.reference import OciRef

if TYPE_CHECKING:
    import requests

MAX_MANIFEST = 4 * 1024 * 1024      # an image manifest, config or tag page larger than this is refused
TAG_PAGE = 1000                     # tags asked for per page
MAX_TAG_PAGES = 100                 # a registry that pages on forever is refused
_LOGIN_HINT = ("log in with 'docker login {host}' (nnpm reads ~/.docker/config.json or $DOCKER_CONFIG), "
               "or set NNPM_OCI_USERNAME and NNPM_OCI_PASSWORD")
_ACCEPT = f"{IMAGE_MANIFEST}, application/vnd.oci.artifact.manifest.v1+json;q=0.5"


def _oras():
    try:
        import oras.provider
    except ModuleNotFoundError:
        raise ConfigError("OCI registries need oras-py, which is not installed",
                          hint="pip install 'nnpm[oci]'") from None
    return oras.provider


class OciClient:
    """One OCI registry (host), authenticated as the Docker config or NNPM_OCI_* say."""

    def __init__(self, ref: OciRef) -> None:
        provider = _oras()
        self.host = ref.host
        self.base = f"{'http' if ref.plain_http else 'https'}://{ref.host}/v2"
        # oras-py's token backend reads a Basic challenge's realm as a token server: ask the
        # registry which scheme it wants first (distribution's htpasswd answers Basic).
        scheme = self._scheme()
        self._reg = provider.Registry(hostname=ref.host, insecure=ref.plain_http, auth_backend=scheme)
        # oras-py retries every failed request five times, sleeping up to 131 s in all (an auth error
        # included); nnpm's fetcher has its own bounded resume, so each request is tried once here.
        self._reg.do_request = functools.partial(type(self._reg).do_request.__wrapped__, self._reg)
        user, password = os.environ.get("NNPM_OCI_USERNAME"), os.environ.get("NNPM_OCI_PASSWORD")
        if user and password:
            self._reg.auth.set_basic_auth(user, password)
        else:
            docker = os.path.join(os.environ.get("DOCKER_CONFIG", ""), "config.json")   # as docker reads it
            self._reg.auth.load_configs(self._reg.get_container(f"{ref.host}/{ref.repository or 'x'}"),
                                        configs=[docker] if os.environ.get("DOCKER_CONFIG") and
                                        os.path.isfile(docker) else None)
        if scheme == "basic" and not getattr(self._reg.auth, "_basic_auth", None):   # oras keeps them there
            raise AuthError(f"the OCI registry {ref.host} asks for a user name and password, and none are set",
                            hint=_LOGIN_HINT.format(host=ref.host), status=401)

    def _scheme(self) -> str:
        """'basic' for a registry that challenges with Basic, else 'token' (anonymous and Bearer)."""
        import requests

        try:
            resp = requests.get(f"{self.base}/", timeout=30)
        except requests.RequestException as exc:
            raise RegistryError(f"cannot reach the OCI registry {self.host} ({type(exc).__name__})",
                                hint="check the host and port, and --insecure for a plain-HTTP registry") from None
        challenge = resp.headers.get("WWW-Authenticate", "")
        return "basic" if resp.status_code == 401 and challenge.lower().startswith("basic") else "token"

    # -- reading -------------------------------------------------------------------------------------
    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """(bytes, sha256 hex) of an image manifest; checked against the reference when it is a digest."""
        resp = self._request("GET", f"{repository}/manifests/{reference}", what=f"{repository}:{reference}",
                             headers={"Accept": _ACCEPT}, stream=True)
        raw = _bounded(resp, MAX_MANIFEST, f"the manifest of {repository}")
        digest = hashlib.sha256(raw).hexdigest()
        if reference.startswith("sha256:") and reference[7:] != digest:
            raise IntegrityError(f"{self.host}/{repository}@{reference[:19]}…: the registry sent a manifest with "
                                 f"another digest (sha256:{digest[:12]}…)")
        return raw, digest

    def small_blob(self, repository: str, digest: str, size: int) -> bytes:
        """A config or manifest blob, read whole and checked against its digest and size."""
        if size > MAX_MANIFEST:
            raise IntegrityError(f"{repository}: blob sha256:{digest[:12]}… is {size} bytes, over {MAX_MANIFEST}")
        resp = self._request("GET", f"{repository}/blobs/sha256:{digest}", what=f"blob sha256:{digest[:12]}…",
                             stream=True)
        raw = _bounded(resp, size, f"blob sha256:{digest[:12]}…")
        if len(raw) != size or hashlib.sha256(raw).hexdigest() != digest:
            raise IntegrityError(f"{self.host}/{repository}: blob sha256:{digest[:12]}… does not match its digest",
                                 hint="the registry serves other bytes than the manifest names")
        return raw

    @contextmanager
    def open_blob(self, repository: str, digest: str, start: int = 0) -> Iterator["BlobStream"]:
        """The streaming answer for a layer (206 from `start` when Range was honoured); the caller verifies."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        resp = self._request("GET", f"{repository}/blobs/sha256:{digest}", what=f"blob sha256:{digest[:12]}…",
                             headers=headers, stream=True, ok=(200, 206))
        try:
            yield BlobStream(resp)
        finally:
            resp.close()

    def blobs(self, repository: str) -> "RepositoryBlobs":
        """The installer's blob interface over one repository (what nnpm.install.fetch asks for)."""
        return RepositoryBlobs(self, repository)

    def tags(self, repository: str) -> list[str]:
        """Every tag of a repository ([] when it does not exist), following at most MAX_TAG_PAGES pages."""
        from urllib.parse import urljoin

        tags: list[str] = []
        path = f"{repository}/tags/list?n={TAG_PAGE}"
        for _ in range(MAX_TAG_PAGES):
            try:
                resp = self._request("GET", path, what=f"the tags of {repository}", stream=True)
            except NotFoundError:
                return []
            try:
                page = json.loads(_bounded(resp, MAX_MANIFEST, f"the tags of {repository}"))
                found = page.get("tags") or []
                if not isinstance(found, list) or not all(isinstance(t, str) for t in found):
                    raise ValueError("tags is not a list of strings")
            except (ValueError, AttributeError) as exc:
                raise RegistryError(f"the OCI registry {self.host} sent a malformed tag list ({exc})") from None
            tags += found
            link = resp.headers.get("Link", "")
            if not link.startswith("<") or not found:
                return tags
            nxt = urljoin(f"{self.base}/{path}", link[1:link.index(">")] if ">" in link else "")
            if not nxt.startswith(self.base + "/"):
                raise RegistryError(f"the OCI registry {self.host} points its tag list elsewhere ({nxt[:80]})")
            path = nxt[len(self.base) + 1:]
        raise RegistryError(f"the tag list of {self.host}/{repository} runs past {MAX_TAG_PAGES} pages")

    # -- writing -------------------------------------------------------------------------------------
    def has_blob(self, repository: str, digest: str) -> bool:
        """Whether the repository has a blob."""
        resp = self._request("HEAD", f"{repository}/blobs/sha256:{digest}", what="a blob", ok=(200, 404))
        return resp.status_code == 200

    def push_blob(self, repository: str, digest: str, size: int, source: Path | bytes) -> None:
        """Upload one blob (a file, or small bytes) unless the repository has it."""
        if self.has_blob(repository, digest):
            return
        container = self._reg.get_container(f"{self.host}/{repository}")
        layer = {"digest": f"sha256:{digest}", "size": size, "mediaType": "application/octet-stream"}
        with _as_file(source) as path:
            resp = self._call(lambda: self._reg.upload_blob(str(path), container, layer), what="a blob upload")
        _check(resp, (200, 201, 202), self.host, f"upload of blob sha256:{digest[:12]}…")

    def push_manifest(self, repository: str, tag: str, raw: bytes) -> None:
        """PUT an image manifest's exact bytes under a tag."""
        self._request("PUT", f"{repository}/manifests/{tag}", what=f"{repository}:{tag}", data=raw,
                      headers={"Content-Type": IMAGE_MANIFEST}, ok=(200, 201))

    # -- the one place requests go out -----------------------------------------------------------------
    def _request(self, method: str, path: str, *, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any):
        resp = self._call(lambda: self._reg.do_request(f"{self.base}/{path}", method, **kwargs), what=what)
        return _check(resp, ok, self.host, what)

    def _call(self, fn, *, what: str):
        import requests

        try:
            return fn()
        except requests.RequestException as exc:
            raise RegistryError(f"cannot reach the OCI registry {self.host} ({type(exc).__name__})",
                                hint="check the host and port, and --insecure for a plain-HTTP registry") from None
        except ValueError as exc:   # oras: no way to answer an auth challenge, or a session URL it could not read
            if "authentication" in str(exc).lower():
                raise AuthError(f"the OCI registry {self.host} asks for credentials for {what}",
                                hint=_LOGIN_HINT.format(host=self.host), status=401) from None
            raise RegistryError(f"the OCI registry {self.host} answered {what} oddly: {str(exc)[:200]}") from None


class BlobStream:
    """A blob answer as nnpm.install.fetch reads one: `status_code` and `iter_bytes()`."""

    def __init__(self, resp: "requests.Response") -> None:
        self.status_code = resp.status_code
        self._resp = resp

    def iter_bytes(self) -> Iterator[bytes]:
        """The body as it arrives."""
        return self._resp.iter_content(chunk_size=1 << 20)


class RepositoryBlobs:
    """`open_blob(digest, start, if_range)` over one repository: the fetcher's view of an OCI registry."""

    def __init__(self, client: OciClient, repository: str) -> None:
        self.client, self.repository = client, repository

    def open_blob(self, digest: str, start: int = 0, if_range: str | None = None):
        """One layer's answer (If-Range is not sent: the fetcher re-checks a 200 against what it holds)."""
        return self.client.open_blob(self.repository, digest, start)


def _check(resp, ok: tuple[int, ...], host: str, what: str):
    if resp.status_code in ok:
        return resp
    code = _oci_error(resp)
    if resp.status_code in (401, 403):
        raise AuthError(f"the OCI registry {host} refused {what} ({resp.status_code} {code or ''}".rstrip() + ")",
                        hint=_LOGIN_HINT.format(host=host), status=resp.status_code)
    if resp.status_code == 404:
        raise NotFoundError(f"{host}: {what} was not found" + (f" ({code})" if code else ""), status=404)
    raise RegistryError(f"the OCI registry {host} answered {resp.status_code} to {what}"
                        + (f" ({code})" if code else ""), status=resp.status_code)


def _oci_error(resp) -> str | None:
    try:
        errors = resp.json().get("errors") or []
        return str(errors[0].get("code"))[:40] if errors else None
    except Exception:  # not JSON: no code to name
        return None


def _bounded(resp, limit: int, what: str) -> bytes:
    """The body, read as it streams and refused once past `limit` (a hostile registry may send gigabytes)."""
    raw = bytearray()
    try:
        for chunk in resp.iter_content(chunk_size=65536):
            raw += chunk
            if len(raw) > limit:
                raise IntegrityError(f"{what} is over the {limit} bytes nnpm reads",
                                     hint="the registry serves something else than the manifest names")
    finally:
        resp.close()
    return bytes(raw)


@contextmanager
def _as_file(source: Path | bytes) -> Iterator[Path]:
    if isinstance(source, Path):
        yield source
        return
    fd, name = tempfile.mkstemp(prefix="nnpm-oci-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(source)
        yield Path(name)
    finally:
        os.unlink(name)
