"""Packuments cached on disk with their ETag, so a repeat resolve revalidates with one 304.

    CACHE_DIR/packuments/v1/<host>-<hash of registry URL>/<canonical name>.json
                                   {"etag": "...", "packument": {...}}

A cache that cannot be read or written only makes things slower, never wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from nnpm.format.fields import canonical_name
from nnpm.fsutil import atomic_write


class PackumentCache:
    """The packuments of one registry."""

    def __init__(self, cache_dir: Path, registry_url: str) -> None:
        host = re.sub(r"[^A-Za-z0-9.-]", "_", urlsplit(registry_url).netloc.rsplit("@", 1)[-1])
        key = f"{host}-{hashlib.sha256(registry_url.encode()).hexdigest()[:12]}"
        self.root = Path(cache_dir) / "packuments" / "v1" / key

    def _file(self, name: str) -> Path:
        return self.root / f"{canonical_name(name, key='name')}.json"

    def read(self, name: str) -> tuple[str, dict] | None:
        """(etag, packument) when cached and readable."""
        try:
            data = json.loads(self._file(name).read_bytes())
        except (OSError, ValueError, RecursionError):
            return None
        if isinstance(data, dict) and isinstance(data.get("etag"), str) and isinstance(data.get("packument"), dict):
            return data["etag"], data["packument"]
        return None

    def write(self, name: str, etag: str, packument: dict) -> None:
        """Store a packument with its ETag (atomically; failures are ignored)."""
        path = self._file(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({"etag": etag, "packument": packument}).encode())
        except OSError:
            pass

    def drop(self, name: str) -> None:
        """Forget a package (the registry no longer has it)."""
        self._file(name).unlink(missing_ok=True)
