"""A small HTTP/1.1 keep-alive load generator (asyncio, raw sockets), run as its own process.

    python -m bench.loadgen URL PATH --seconds 5 --connections 16 [--warmup 1]

Keeps CONNECTIONS requests in flight (one per connection, no pipelining) for SECONDS after a
warm-up, and prints one JSON line: {"requests", "seconds", "rps", "errors", "statuses"}.
Every response is read in full (Content-Length framing). Standard library only, so it runs
on a fresh machine; `wrk` would do the same job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from urllib.parse import urlsplit


async def _worker(host: str, port: int, request: bytes, stop_at: list[float], counting: list[bool],
                  stats: Counter, statuses: Counter) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at[0]:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, _, rest = head.partition(b"\r\n")
            status = int(status_line.split()[1])
            length = None
            for line in rest.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise RuntimeError("a response without Content-Length")
            if length:
                await reader.readexactly(length)
            if counting[0]:
                stats["requests"] += 1
                statuses[status] += 1
                if status >= 400:
                    stats["errors"] += 1
    finally:
        writer.close()


async def _main(url: str, path: str, seconds: float, connections: int, warmup: float) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: nnpm-bench\r\n"
               "Accept: application/json\r\n\r\n").encode()
    stats: Counter = Counter()
    statuses: Counter = Counter()
    counting = [False]
    start = time.perf_counter()
    stop_at = [start + warmup + seconds]
    tasks = [asyncio.create_task(_worker(host, port, request, stop_at, counting, stats, statuses))
             for _ in range(connections)]
    await asyncio.sleep(warmup)
    counting[0] = True
    measured_from = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measured_from
    return {"requests": stats["requests"], "seconds": elapsed, "rps": stats["requests"] / elapsed,
            "errors": stats["errors"], "statuses": {str(k): v for k, v in statuses.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("path")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--warmup", type=float, default=1.0)
    a = p.parse_args(argv)
    print(json.dumps(asyncio.run(_main(a.url, a.path, a.seconds, a.connections, a.warmup))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
