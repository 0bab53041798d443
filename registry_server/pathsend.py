"""File bodies sent by the kernel: ASGI's `http.response.pathsend` on uvicorn's h11 protocol, and the answer using it.

A blob streamed through Python costs a thread hop and two copies per chunk, and holds a
chunk per connection until the socket takes it: at 100 concurrent installs that was a
core and 700 MB. `http.response.pathsend` (an ASGI extension) names a file instead, and
the server sends it with sendfile(2): no bytes through Python, no buffers. uvicorn does not
offer the extension, so `offer()` adds it to each request cycle of registry_server's own
protocol (registry_server/connections.py), using h11's documented sendfile support: a
placeholder body whose `len()` is the file's size passes through h11's framing
(`send_with_data_passthrough`), and `loop.sendfile` writes the bytes.

`FileAnswer` is the response: the file via pathsend when the server offers it, else the
same bytes streamed (the in-process test client, other ASGI servers).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h11
from fastapi.responses import Response, StreamingResponse

EXTENSION = "http.response.pathsend"


class _Placeholder:
    """What h11 frames in place of the file: only its length."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def offer(cycle: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Advertise pathsend to a uvicorn h11 request cycle whose ASGI task has not started, and answer it."""
    cycle.scope.setdefault("extensions", {})[EXTENSION] = {}
    plain_send = cycle.send

    async def send(message: dict) -> None:
        if message["type"] != EXTENSION:
            await plain_send(message)
        elif not cycle.disconnected:
            await _send_path(cycle, loop, Path(message["path"]))

    cycle.send = send   # run_asgi looks `send` up when the task starts


async def _send_path(cycle: Any, loop: asyncio.AbstractEventLoop, path: Path) -> None:
    """The body of a started response: the file at `path`, whole, then the end of the message."""
    if not cycle.response_started or cycle.response_complete:
        raise RuntimeError(f"'{EXTENSION}' must follow 'http.response.start' and end the response")
    with open(path, "rb") as f:
        placeholder = _Placeholder(os.fstat(f.fileno()).st_size)
        try:
            for piece in cycle.conn.send_with_data_passthrough(h11.Data(data=placeholder)):
                if piece is placeholder:
                    if placeholder.size:
                        await loop.sendfile(cycle.transport, f, 0, placeholder.size)
                else:
                    cycle.transport.write(piece)
        except OSError:   # the client went away mid-body: nothing more can be said on this connection
            cycle.disconnected = True
            cycle.transport.close()
            return
    cycle.response_complete = True
    cycle.message_event.set()
    cycle.transport.write(cycle.conn.send(h11.EndOfMessage()))
    if cycle.conn.our_state is h11.MUST_CLOSE or not cycle.keep_alive:
        cycle.conn.send(h11.ConnectionClosed())
        cycle.transport.close()
    cycle.on_response()


class FileAnswer(Response):
    """A 200 whose body is a whole file of known size: sent with pathsend when offered, else streamed."""

    def __init__(self, path: Path, size: int, headers: dict[str, str],
                 chunks: Callable[[], Iterable[bytes]]) -> None:
        super().__init__(status_code=200, media_type="application/octet-stream",
                         headers={**headers, "Content-Length": str(size)})
        self.path, self.chunks = path, chunks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if EXTENSION in scope.get("extensions", {}) and scope.get("method") == "GET":
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await send({"type": EXTENSION, "path": str(self.path)})
            return
        streamed = StreamingResponse(self.chunks(), status_code=self.status_code, media_type=self.media_type)
        streamed.raw_headers = self.raw_headers
        await streamed(scope, receive, send)
