"""One server per test session, shared by every module that imports its fixture.

pytest makes a session fixture once per place it is defined; these fixtures are imported
into several modules (and conftest), so the server itself is reference-counted here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class SharedServer:
    """Starts its server on first use and stops it when the last user is done."""

    def __init__(self, start: Callable[[], Any]) -> None:
        self._start = start
        self._server: Any = None
        self._users = 0

    @contextmanager
    def use(self) -> Iterator[Any]:
        """The running server, for the length of one fixture."""
        if self._server is None:
            self._server = self._start()
        self._users += 1
        try:
            yield self._server
        finally:
            self._users -= 1
            if self._users == 0:
                server, self._server = self._server, None
                server.stop()
