"""Headless Chromium for the page tests (a pytest plugin): Debian's /usr/bin/chromium, a fresh profile each time.

Skipped without Chromium, except under CI=true, where a missing one is a failure. The flags
keep it off the network (no component updates, sync or background requests).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-gpu"]


@pytest.fixture
def browser_context(tmp_path: Path):
    """A fresh headless Chromium profile (1280×900 pages; a test may resize its page)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing on CI; install the chromium package")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()
