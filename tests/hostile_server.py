"""A registry that lies about blobs, for the install fault tests.

Packuments and version answers are correct (made from packages built with
`nnpm.author.pack.build`); blob GETs misbehave according to `mode`, which a test may change
between installs:

    ok                     honest: 200, or 206 for `Range: bytes=N-` (If-Range honoured)
    truncate               every answer promises its full Content-Length, sends half, closes
    extra                  the blob plus EXTRA bytes, with a Content-Length that covers them
    wrong                  the right length, one byte flipped in the middle
    ignore-range           always 200 with the whole blob, whatever Range says
    cut-once               the first GET of each blob sends `cut_at` bytes and closes; later
                           GETs are honest (206 for a Range)
    cut-then-ignore-range  the first GET is cut as above; later GETs ignore Range (200, whole)
    slow-cut               every GET sends slowly (`delay` per 64 kB) and closes after `cut_at`
                           bytes of its body
    slow                   honest, but `delay` per 64 kB (a long download to kill mid-way)
    stall                  headers, then nothing until the client gives up
    error500               500 with a JSON error body

Every request is recorded in `requests` (method, path, lower-cased headers) so tests can
count what the client really asked for.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from nnpm.format.manifest import Manifest

EXTRA = 1000
SLICE = 64 * 1024
MODES = ("ok", "truncate", "extra", "wrong", "ignore-range", "cut-once", "cut-then-ignore-range",
         "slow-cut", "slow", "stall", "error500")


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]

    @property
    def digest(self) -> str | None:
        """The blob's hex digest for a blob request, else None."""
        prefix = "/api/v1/blobs/sha256:"
        return self.path[len(prefix):] if self.path.startswith(prefix) else None

    @property
    def range_start(self) -> int | None:
        """N of a `Range: bytes=N-` header, or None when there was none."""
        value = self.headers.get("range")
        if not value:
            return None
        return int(value.removeprefix("bytes=").split("-", 1)[0])


@dataclass
class HostileRegistry:
    """A tiny registry on 127.0.0.1:<free port> serving `packages` with lying blob GETs."""

    packages: list[tuple[Manifest, dict[str, Path]]]
    mode: str = "ok"
    cut_at: int = 1_500_000          # body bytes sent before a cut (cut-once, slow-cut)
    delay: float = 0.01              # seconds per 64 kB slice (slow, slow-cut)
    requests: list[Seen] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)   # body bytes sent per digest

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")
        self.blobs: dict[str, bytes] = {}
        self.versions: dict[str, list[dict]] = {}
        for manifest, paths in self.packages:
            for entry in manifest.files:
                data = Path(paths[entry.path]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == entry.sha256, entry.path
                self.blobs[entry.sha256] = data
            self.versions.setdefault(manifest.name, []).append({
                "version": str(manifest.version), "yanked": False, "yanked_reason": None,
                "published_at": "2026-01-01T00:00:00Z", "manifest": manifest.to_dict()})
        self._lock = threading.Lock()
        self._gets: dict[str, int] = {}
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # -- what tests look at ----------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL (no /api/v1)."""
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def blob_gets(self, digest: str | None = None) -> list[Seen]:
        """The blob GETs received (for one digest, or all)."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.digest is not None
                    and (digest is None or r.digest == digest)]

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "HostileRegistry":
        """Listen on a free port and serve from a daemon thread."""
        registry = self

        class Handler(_Handler):
            owner = registry

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving (stalled answers are released)."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "HostileRegistry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- bookkeeping used by the handler ---------------------------------------------------
    def _record(self, seen: Seen) -> int:
        with self._lock:
            self.requests.append(seen)
            if seen.method == "GET" and seen.digest is not None:
                self._gets[seen.digest] = self._gets.get(seen.digest, 0) + 1
                return self._gets[seen.digest]
            return 0

    def _count(self, digest: str, n: int) -> None:
        with self._lock:
            self.served[digest] = self.served.get(digest, 0) + n

    def packument(self, name: str) -> dict | None:
        """The packument for a canonical name, as docs/protocol.md shapes it."""
        versions = self.versions.get(name)
        if versions is None:
            return None
        return {"name": name, "latest": versions[-1]["version"], "versions": versions}


class _Handler(BaseHTTPRequestHandler):
    owner: HostileRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:   # keep test output clean
        pass

    # -- plumbing ----------------------------------------------------------------------------
    def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, detail: str) -> None:
        self._json(status, {"error": code, "detail": detail}, {"X-Error-Code": code})

    def _cut(self) -> None:
        """Close the connection now, mid-body (FIN, not RST, so sent bytes arrive)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _send_body(self, digest: str, body: bytes, *, limit: int | None = None, delay: float = 0.0) -> None:
        """Write `body` (only its first `limit` bytes, then cut, when limit is given)."""
        stop = len(body) if limit is None else min(limit, len(body))
        sent = 0
        try:
            while sent < stop:
                if self.owner._stop.is_set():
                    break
                piece = body[sent:min(stop, sent + SLICE)]
                self.wfile.write(piece)
                sent += len(piece)
                self.owner._count(digest, len(piece))
                if delay:
                    time.sleep(delay)
        except OSError:        # the client went away (a killed install): nothing to do
            self.close_connection = True
            return
        if limit is not None and stop < len(body):
            self._cut()

    # -- routes ------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        nth = self.owner._record(Seen(self.command, path, headers))
        parts = path.removeprefix("/api/v1/").split("/")
        if path.startswith("/api/v1/blobs/sha256:"):
            return self._blob(path.rsplit(":", 1)[1], nth, headers)
        if path == "/api/v1/health":
            return self._json(200, {"status": "ok", "version": "hostile"})
        if path == "/api/v1/search":
            results = [{"name": n, "version": v[-1]["version"], "description": "", "tags": []}
                       for n, v in self.owner.versions.items()]
            return self._json(200, {"results": results})
        if parts[0] == "packages" and len(parts) == 2:
            pack = self.owner.packument(parts[1])
            if pack is None:
                return self._error(404, "not_found", f"no package named {parts[1]}")
            etag = '"' + hashlib.sha256(json.dumps(pack, sort_keys=True).encode()).hexdigest() + '"'
            return self._json(200, pack, {"ETag": etag})
        if parts[0] == "packages" and len(parts) == 3:
            for v in self.owner.versions.get(parts[1], []):
                if v["version"] == parts[2]:
                    return self._json(200, {"name": parts[1], **v})
            return self._error(404, "not_found", f"no version {parts[2]} of {parts[1]}")
        return self._error(404, "not_found", f"no route {path}")

    def _blob(self, digest: str, nth: int, headers: dict[str, str]) -> None:
        owner = self.owner
        body = owner.blobs.get(digest)
        if body is None:
            return self._error(404, "not_found", f"no blob sha256:{digest}")
        mode = owner.mode
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return
        if mode == "error500":
            return self._error(500, "registry_error", "the blob store is on fire")
        etag = f'"sha256:{digest}"'
        start = 0
        honour_range = mode in ("ok", "truncate", "slow", "slow-cut", "stall") or (mode == "cut-once" and nth > 1)
        if honour_range and headers.get("range", "").startswith("bytes="):
            first, _, last = headers["range"].removeprefix("bytes=").partition("-")
            if headers.get("if-range", etag) == etag:
                start = int(first)
                if start >= len(body):
                    return self._error(416, "registry_error", "range not satisfiable")
                end = int(last) + 1 if last else len(body)
                body = body[start:end]
        if mode == "wrong":
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
        if mode == "extra":
            body = body + b"\0" * EXTRA
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(owner.blobs[digest])}")
        self.end_headers()
        if mode == "truncate":
            return self._send_body(digest, body, limit=len(body) // 2)
        if mode in ("cut-once", "cut-then-ignore-range") and nth == 1:
            return self._send_body(digest, body, limit=owner.cut_at)
        if mode == "slow-cut":
            return self._send_body(digest, body, limit=owner.cut_at, delay=owner.delay)
        if mode == "slow":
            return self._send_body(digest, body, delay=owner.delay)
        if mode == "stall":
            owner._stop.wait(30)
            return self._cut()
        return self._send_body(digest, body)


def assert_store_clean(store_root: Path) -> int:
    """Every committed blob under store/v1/sha256 re-hashes to its name; returns how many there are."""
    base = Path(store_root) / "v1" / "sha256"
    count = 0
    if base.is_dir():
        for path in base.rglob("*"):
            if path.is_file():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"corrupt blob {path}"
                assert path.parent.name == path.name[:2], f"misplaced blob {path}"
                count += 1
    return count
