"""Concurrent installs against one HTTP server: many virtual clients at once, run as its own process.

    python -m bench.installload URL --package NAME --blobs FILE.json [--clients 100] [--installs 1]
                                [--connections 4] [--timeout 120]

FILE.json is a list of [sha256, size]: the blobs one install fetches. An install is what
`nnpm install` asks of the server: GET /api/v1/packages/NAME (the packument) over one
connection, then GET /api/v1/blobs/sha256:<hex> for every blob, spread over CONNECTIONS
keep-alive HTTP/1.1 connections (nnpm/install/fetch.py fetches 4 at a time), every body read
in full. CLIENTS virtual clients start at once, each doing INSTALLS installs one after the
other; a new install opens new connections, as a new `nnpm install` process would.

Prints one JSON line: {"bytes", "seconds", "mbps", "requests", "errors", "statuses", ...}.
Checked on every response: status 200 and a Content-Length equal to the blob's size. Hashed:
only the first client's first install (every one of its blobs against its digest), because
sha256 of every byte would cost this one process ~2.5 s of CPU per GB and make the client,
not the server, the bottleneck. Bodies are read with `sock_recv_into` into one buffer per
connection and only counted, so the client copies nothing it does not hash.
Standard library only; 127.0.0.1 is what the bench points it at.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import socket
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.loadgen import parse_head

BUFFER = 256 * 1024          # one receive buffer per connection
HEAD_MAX = 64 * 1024         # a response head larger than this is an error


@dataclass
class Stats:
    """What every install added up to."""

    bytes: int = 0
    requests: int = 0
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    verified: int = 0
    mismatches: int = 0
    install_seconds: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:200])


class Conn:
    """One keep-alive HTTP/1.1 connection; a request's body is counted (and hashed when asked), never kept."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.sock, self.host = sock, host
        self.buf = bytearray(BUFFER)
        self.view = memoryview(self.buf)

    @classmethod
    async def open(cls, host: str, port: int) -> "Conn":
        """A connected non-blocking socket to host:port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock, f"{host}:{port}")

    def close(self) -> None:
        self.sock.close()

    async def get(self, path: str, sink: "hashlib._Hash | None" = None) -> tuple[int, int]:
        """GET path; (status, body bytes read)."""
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self.sock, f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                                           "User-Agent: nnpm-bench\r\n\r\n".encode())
        have, end = 0, -1
        while end < 0:
            n = await loop.sock_recv_into(self.sock, self.view[have:HEAD_MAX])
            if not n:
                raise ConnectionError("the server closed the connection before answering")
            have += n
            end = self.buf.find(b"\r\n\r\n", 0, have)
            if end < 0 and have >= HEAD_MAX:
                raise RuntimeError("a response head over 64 KiB")
        status, length = parse_head(bytes(self.buf[:end]))
        got = have - end - 4
        if got > length:  # no pipelining, so nothing may follow the body
            raise RuntimeError("more bytes than Content-Length")
        if sink is not None and got:
            sink.update(self.view[end + 4:have])
        while got < length:
            n = await loop.sock_recv_into(self.sock, self.view[:min(length - got, BUFFER)])
            if not n:
                raise ConnectionError(f"the connection closed after {got} of {length} body bytes")
            if sink is not None:
                sink.update(self.view[:n])
            got += n
        return status, got


async def _fetch_blobs(conn: Conn, queue: list[tuple[str, int]], verify: bool, stats: Stats) -> None:
    """Take blobs off the shared queue until it is empty, fetching each over this connection."""
    while queue:
        digest, size = queue.pop()
        sink = hashlib.sha256() if verify else None
        status, got = await conn.get(f"/api/v1/blobs/sha256:{digest}", sink)
        stats.requests += 1
        stats.bytes += got
        stats.statuses[status] += 1
        if status != 200 or got != size:
            stats.error(f"blob {digest[:12]}: status {status}, {got} bytes, expected {size}")
        if sink is not None:
            ok = sink.hexdigest() == digest
            stats.verified += ok
            stats.mismatches += not ok


async def _install(host: str, port: int, package: str, blobs: list[tuple[str, int]], connections: int,
                   verify: bool, stats: Stats) -> None:
    """One install: the packument over one connection, then the blobs over up to `connections`."""
    start = time.perf_counter()
    conns = [await Conn.open(host, port)]
    try:
        status, got = await conns[0].get(f"/api/v1/packages/{package}")
        stats.requests += 1
        stats.bytes += got
        stats.statuses[status] += 1
        if status != 200:
            stats.error(f"packument: status {status}")
            return
        # Largest first, popped from the end: the big tensors start early, as a pool would.
        queue = sorted(blobs, key=lambda b: b[1])
        more = min(connections, len(queue)) - 1
        conns += await asyncio.gather(*(Conn.open(host, port) for _ in range(more)))
        await asyncio.gather(*(_fetch_blobs(c, queue, verify, stats) for c in conns))
    finally:
        for c in conns:
            c.close()
    stats.install_seconds.append(time.perf_counter() - start)


async def _client(n: int, host: str, port: int, package: str, blobs: list[tuple[str, int]], installs: int,
                  connections: int, timeout: float, stats: Stats) -> None:
    """One virtual client: `installs` installs in a row, each bounded by `timeout` seconds."""
    for i in range(installs):
        try:
            async with asyncio.timeout(timeout):
                await _install(host, port, package, blobs, connections, n == 0 and i == 0, stats)
        except (OSError, RuntimeError, ValueError, TimeoutError) as exc:
            stats.error(f"client {n} install {i}: {type(exc).__name__}: {exc}")


async def run(url: str, package: str, blobs: list[tuple[str, int]], clients: int, installs: int,
              connections: int, timeout: float) -> dict:
    """Run every client at once; the totals as a JSON-able dict."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stats = Stats()
    cpu0, start, started = _cpu(), time.perf_counter(), time.monotonic()
    await asyncio.gather(*(_client(n, host, port, package, blobs, installs, connections, timeout, stats)
                           for n in range(clients)))
    seconds = time.perf_counter() - start
    times = stats.install_seconds or [0.0]
    return {"clients": clients, "installs": installs * clients, "installs_done": len(stats.install_seconds),
            "connections_per_install": connections, "bytes": stats.bytes, "seconds": seconds,
            "mbps": stats.bytes / seconds / 1e6, "requests": stats.requests, "errors": stats.errors,
            "error_samples": stats.error_samples, "statuses": {str(k): v for k, v in stats.statuses.items()},
            "verified": stats.verified, "mismatches": stats.mismatches,
            "install_seconds": {"min": min(times), "median": statistics.median(times), "max": max(times)},
            "client_cpu": _cpu() - cpu0, "started": started, "ended": time.monotonic()}


def _cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def main(argv: list[str] | None = None) -> int:
    """The command line: run the load, print the totals as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m bench.installload", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--package", required=True)
    p.add_argument("--blobs", required=True, help="JSON file: [[sha256, size], ...]")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--installs", type=int, default=1, help="installs per client, one after the other")
    p.add_argument("--connections", type=int, default=4, help="connections per install")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one install may take")
    a = p.parse_args(argv)
    with open(a.blobs) as f:
        blobs = [(str(d), int(s)) for d, s in json.load(f)]
    print(json.dumps(asyncio.run(run(a.url, a.package, blobs, a.clients, a.installs, a.connections, a.timeout))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
