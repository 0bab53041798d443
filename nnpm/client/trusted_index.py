"""A registry's signed index (TUF) on the client: the pinned root, python-tuf's updater, packuments through it.

Pins live in `NNPM_HOME/trust/<sha256(url)[:16]>/`: `root.json` (the root this machine
trusts first: on first contact, from `nnpm login`, or `nnpm config set registry URL
--root`), `metadata/` (the updater's verified files, so a rolled-back version is caught
on the next run too) and `targets/` (packuments as signed). A registry without `/tuf/`
is not pinned. python-tuf is imported only when a registry is pinned or first met, so a
plain `nnpm.load` never loads it.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from nnpm.client.httperrors import error_for_request_error, safe_url
from nnpm.errors import ConfigError, IndexTrustError, RegistryError
from nnpm.format.tufverify import bin_of, load_tuf, target_path
from nnpm.fsutil import atomic_path, atomic_write, remove_tree

PIN = "root.json"
METADATA = "metadata"        # the updater's verified files, beside the pin
MAX_ROOT_BYTES = 512_000
_ROLE = re.compile(r"\b(root|timestamp|snapshot|targets|bins-[0-9a-f]{2})\b")


def pin_dir(trust_dir: Path, url: str) -> Path:
    """The folder of one registry's pin and metadata."""
    return Path(trust_dir) / hashlib.sha256(url.encode()).hexdigest()[:16]


def trusted_root(folder: Path) -> bytes | None:
    """The newest root a pin's folder trusts: the updater's verified one, else the pinned one; None unpinned."""
    for path in (Path(folder) / METADATA / PIN, Path(folder) / PIN):
        if path.is_file():
            return path.read_bytes()
    return None


def check_root(data: bytes, source: str) -> None:
    """ConfigError unless `data` is TUF root metadata; IndexTrustError unless signed by its own threshold."""
    load_tuf()
    from tuf.api.exceptions import UnsignedMetadataError
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata.from_bytes(data)
    except Exception:  # python-tuf raises DeserializationError, or anything from a hostile body
        raise ConfigError(f"{source} is not TUF metadata") from None
    if not isinstance(md.signed, Root):
        raise ConfigError(f"{source} is TUF {md.signed.type} metadata, not a root")
    try:
        md.verify_delegate(Root.type, md)
    except UnsignedMetadataError:
        raise IndexTrustError(f"{source} is not signed by its own threshold of root keys", role="root") from None


def pin_root(trust_dir: Path, url: str, data: bytes, source: str, *, replace: bool = True) -> Path:
    """Pin `data` (checked by `check_root`) as the root of the registry at `url`; its folder.

    `replace`: drop any pin first; else (first contact) a pin another process just made stays."""
    check_root(data, source)
    folder = pin_dir(trust_dir, url)
    if replace:
        remove_tree(folder)   # the old chain, timestamps and targets belong to the old pin
    elif (folder / PIN).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "registry.txt").write_text(safe_url(url) + "\n")
    atomic_write(folder / PIN, data, durable=True)
    return folder


def _first_contact(http: httpx.Client, url: str) -> bytes | None:
    """The registry's newest root, or None when it serves no signed index."""
    try:
        with http.stream("GET", f"{url}/tuf/metadata/root.json") as resp:
            if resp.status_code != 200:
                return None
            data = b""
            for chunk in resp.iter_bytes():
                data += chunk
                if len(data) > MAX_ROOT_BYTES:
                    raise RegistryError(f"the registry at {safe_url(url)} sent a root over {MAX_ROOT_BYTES} bytes")
            return data
    except httpx.RequestError as exc:
        raise error_for_request_error(exc, url) from exc


def _fetcher(http: httpx.Client) -> Any:
    """A python-tuf FetcherInterface over the client's own httpx.Client (its transport, TLS and timeouts)."""
    load_tuf()
    from tuf.api.exceptions import DownloadHTTPError
    from tuf.ngclient import FetcherInterface

    class HttpxFetcher(FetcherInterface):
        last_url = ""

        def _fetch(self, url: str) -> Iterator[bytes]:
            self.last_url = url
            resp = http.send(http.build_request("GET", url), stream=True)
            if resp.status_code != 200:
                resp.close()
                raise DownloadHTTPError(f"HTTP {resp.status_code}", resp.status_code)
            return self._chunks(resp)

        @staticmethod
        def _chunks(resp: httpx.Response) -> Iterator[bytes]:
            try:   # python-tuf stops reading past the length it expects: the size bound
                yield from resp.iter_bytes()
            finally:
                resp.close()

    return HttpxFetcher()


class TrustedIndex:
    """One pinned registry's signed index: refreshed once per instance, then read for many packuments."""

    def __init__(self, url: str, folder: Path, http: httpx.Client) -> None:
        self.url = url
        self.folder = folder
        self._http = http
        self._fetcher = _fetcher(http)
        self._updater: Any = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, trust_dir: Path, http: httpx.Client) -> "TrustedIndex | None":
        """The index when `url`'s root is pinned (pinned now on first contact, TOFU); None without /tuf/."""
        folder = pin_dir(trust_dir, url)
        if not (folder / PIN).is_file():
            data = _first_contact(http, url)
            if data is None:
                return None
            try:
                pin_root(trust_dir, url, data, f"the root of {safe_url(url)}", replace=False)
            except ConfigError:   # not TUF at all (a server that answers every path): no index to pin, as a 404
                return None
        return cls(url, folder, http)

    @property
    def metadata_dir(self) -> Path:
        """Where python-tuf's updater keeps the metadata it verified (what a bundle carries)."""
        return self.folder / METADATA

    def packument_bytes(self, name: str) -> bytes | None:
        """The packument of `name` exactly as signed (None: the index names no such package); IndexTrustError."""
        path = target_path(name)
        with self._lock, self._mapped(path):
            updater = self._refreshed()
            info = updater.get_targetinfo(path)
            return None if info is None else self._target(updater, info)

    def _refreshed(self) -> Any:
        if self._updater is None:
            load_tuf()
            from tuf.ngclient import Updater, UpdaterConfig

            self.metadata_dir.mkdir(parents=True, exist_ok=True)
            updater = Updater(str(self.metadata_dir), f"{self.url}/tuf/metadata/", str(self.folder / "targets"),
                              f"{self.url}/tuf/targets/", self._fetcher, UpdaterConfig(prefix_targets_with_hash=True),
                              bootstrap=(self.folder / PIN).read_bytes())
            updater.refresh()
            self._updater = updater   # only a refresh that succeeded is kept: a failed one is tried again
        return self._updater

    def _target(self, updater: Any, info: Any) -> bytes:
        from tuf.api.exceptions import LengthOrHashMismatchError

        cached = self.folder / "targets" / quote(info.path, safe="")
        try:
            data = cached.read_bytes()
            info.verify_length_and_hashes(data)   # the bytes read are the bytes checked
            return data
        except (OSError, LengthOrHashMismatchError):
            pass
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            updater.download_target(info, str(tmp))
            data = tmp.read_bytes()
        info.verify_length_and_hashes(data)
        return data

    def _role(self, exc: Exception, path: str) -> str:
        found = _ROLE.search(str(exc))
        if found:
            return found[1]
        last = getattr(self._fetcher, "last_url", "")
        if "/tuf/targets/" in last:
            return bin_of(path)   # the bin that signs the packument
        found = _ROLE.search(last.rsplit("/", 1)[-1])
        return found[1] if found else "timestamp"

    @contextmanager
    def _mapped(self, path: str) -> Iterator[None]:
        """python-tuf's failures as one IndexTrustError line naming the role; transport failures as usual."""
        from tuf.api import exceptions as tuf_errors

        url = safe_url(self.url)
        repin = (f"if the registry was really reset, pin its new root with 'nnpm config set registry {url} --root "
                 f"ROOT.json', or remove {self.folder}")
        try:
            yield
        except httpx.RequestError as exc:
            raise error_for_request_error(exc, self.url) from exc
        except tuf_errors.DownloadHTTPError as exc:
            role = self._role(exc, path)
            if exc.status_code in (403, 404):
                raise IndexTrustError(f"{url} no longer serves its signed index (HTTP {exc.status_code} for {role}), "
                                      "though this machine pinned its root", role=role, hint=repin) from None
            raise RegistryError(f"the registry at {url} answered HTTP {exc.status_code} for its signed index "
                                f"({role})") from None
        except tuf_errors.DownloadError as exc:
            if isinstance(exc.__cause__, httpx.RequestError):
                raise error_for_request_error(exc.__cause__, self.url) from exc
            role = self._role(exc, path)
            raise IndexTrustError(f"the signed index of {url} was refused: {role} is larger than signed "
                                  "(changed after signing)", role=role) from None
        except tuf_errors.RepositoryError as exc:
            role = self._role(exc, path)
            subject = f"{path} (listed in {role})" if "/tuf/targets/" in self._fetcher.last_url else role
            if isinstance(exc, tuf_errors.ExpiredMetadataError):
                what, hint = "expired — the index is frozen or stale", "a mirror may be replaying old files"
            elif isinstance(exc, tuf_errors.BadVersionNumberError):
                what, hint = "was rolled back to an older version", repin
            else:
                what, hint = "changed after signing", "the registry or a mirror in between served altered files"
            raise IndexTrustError(f"the signed index of {url} was refused: {subject} {what}", role=role,
                                  hint=hint) from None


def pin_file(trust_dir: Path, key: str, url: str, root_file: str) -> Path:
    """`nnpm config set registry URL --root ROOT.json`: pin that file as the registry's root; the pin's folder."""
    from nnpm.config import normalise_url

    if key != "registry":
        raise ConfigError(f"--root goes with 'nnpm config set registry URL', not with {key!r}")
    try:
        data = Path(root_file).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {root_file}: {exc.strerror or exc}") from None
    return pin_root(trust_dir, normalise_url(url), data, root_file)
