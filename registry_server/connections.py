"""uvicorn's HTTP/1.1 protocol, with a deadline for request headers and file bodies sent by the kernel.

uvicorn closes idle keep-alive connections, but a connection that sends half a request
line, or headers one byte a minute, is kept open for ever: enough of them exhaust the
server's sockets (slowloris). `protocol_class(seconds)` is uvicorn's h11 protocol with one
timer more: from the moment a connection opens, or a new request's first byte arrives, its
headers must be complete within `seconds`; otherwise the server answers 408 and closes.
Request bodies have their own deadline (`--body-timeout`, registry_server/routes/deps.py).
Every request cycle is also offered ASGI's pathsend extension (registry_server/pathsend.py).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from registry_server import pathsend

_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
              b"content-length: 33\r\nconnection: close\r\n\r\nrequest headers were not complete")


class HeaderTimeoutProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request headers take longer than `header_timeout` seconds."""

    header_timeout: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not None and self.cycle is not before:   # a new request: its ASGI task has not run yet
            pathsend.offer(self.cycle, self.loop)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_headers():
            self._arm()  # a request has begun (or the connection is new): its headers are on the clock
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE \
            and not self.transport.is_closing()

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self._waiting_for_headers():
            return
        if self.conn.trailing_data[0]:  # some of a request arrived: tell the client why it is cut off
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def protocol_class(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to hand uvicorn (`uvicorn.run(app, http=...)`) for a given header deadline."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": float(header_timeout)})
