"""Fault injection for crash tests: NNPM_TEST_CRASH_AT=<point> kills the process at that point.

A real SIGKILL, not an exception, so nothing gets a chance to clean up, exactly as with
`kill -9`. Outside tests the variable is unset and this costs one dict lookup.
"""

from __future__ import annotations

import os
import signal


def point(name: str) -> None:
    """Die here with SIGKILL when the test asked for it."""
    if os.environ.get("NNPM_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
