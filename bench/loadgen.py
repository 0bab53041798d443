"""A small HTTP/1.1 keep-alive load generator (asyncio, raw sockets), run as its own process.

    python -m bench.loadgen URL PATH --seconds 5 --connections 16 [--warmup 1] [--latencies]

Keeps CONNECTIONS requests in flight (one per connection, no pipelining) for SECONDS after a
warm-up, and prints one JSON line: {"requests", "seconds", "rps", "errors", "statuses",
"started", "ended"} (the measured window in time.monotonic(), which on Linux is one clock for
every process). `--latencies` adds "p50", "p99" and "max" (seconds, nearest rank) over every
request sent in the window. Every response is read in full (Content-Length framing); the run
is cut off (an error) TIMEOUT seconds after the window should have ended. Standard library
only, so it runs on a fresh machine; `wrk` would do the same job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter
from urllib.parse import urlsplit


def parse_head(head: bytes) -> tuple[int, int]:
    """(status, Content-Length) of a response head; every response here must be Content-Length framed."""
    status_line, _, rest = head.partition(b"\r\n")
    status = int(status_line.split()[1])
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value)
    raise RuntimeError("a response without Content-Length")


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank: a value that was really observed."""
    ordered = sorted(xs)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def _worker(host: str, port: int, request: bytes, stop_at: list[float], counting: list[bool],
                  stats: Counter, statuses: Counter, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at[0]:
            sent = time.perf_counter()
            in_window = counting[0]
            writer.write(request)
            status, length = parse_head(await reader.readuntil(b"\r\n\r\n"))
            if length:
                await reader.readexactly(length)
            if in_window:
                latencies.append(time.perf_counter() - sent)
            if counting[0]:
                stats["requests"] += 1
                statuses[status] += 1
                if status >= 400:
                    stats["errors"] += 1
    finally:
        writer.close()


async def _main(url: str, path: str, seconds: float, connections: int, warmup: float,
                timeout: float = 30.0) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: nnpm-bench\r\n"
               "Accept: application/json\r\n\r\n").encode()
    stats: Counter = Counter()
    statuses: Counter = Counter()
    counting = [False]
    start = time.perf_counter()
    stop_at = [start + warmup + seconds]
    latencies: list[float] = []
    tasks = [asyncio.create_task(_worker(host, port, request, stop_at, counting, stats, statuses, latencies))
             for _ in range(connections)]
    await asyncio.sleep(warmup)
    counting[0] = True
    measured_from, started = time.perf_counter(), time.monotonic()
    async with asyncio.timeout(seconds + timeout):  # a server that stops answering must not hang the bench
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measured_from
    out = {"requests": stats["requests"], "seconds": elapsed, "rps": stats["requests"] / elapsed,
           "errors": stats["errors"], "statuses": {str(k): v for k, v in statuses.items()},
           "started": started, "ended": time.monotonic()}
    if latencies:
        out.update(p50=percentile(latencies, 50), p99=percentile(latencies, 99), max=max(latencies))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("path")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds past the window before giving up")
    p.add_argument("--latencies", action="store_true", help="also report p50/p99/max request latency")
    a = p.parse_args(argv)
    out = asyncio.run(_main(a.url, a.path, a.seconds, a.connections, a.warmup, a.timeout))
    if not a.latencies:
        for key in ("p50", "p99", "max"):
            out.pop(key, None)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
