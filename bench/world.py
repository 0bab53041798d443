"""The shared set-up, made on first use: example packages, a registry holding them, a user home.

Everything lives in one temp folder that `close()` removes, after stopping the server.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import cached_property
from pathlib import Path

from bench.common import PY, ROOT, Registry, child_env, log, nnpm_cmd, run

# The examples the figures need: resnet18, and the imagenet-classifier pipeline over it.
EXAMPLES = ["resnet18", "imagenet-preprocess", "topk", "imagenet-classifier"]


class World:
    """Lazily built shared state for the figure groups."""

    def __init__(self, quick: bool = False) -> None:
        self.quick = quick          # --quick: groups shorten their load windows and skip the largest sizes
        self.root = Path(tempfile.mkdtemp(prefix="nnpm-bench-"))
        self._servers: list[Registry] = []

    def tmp(self, name: str) -> Path:
        """A fresh folder under the bench's temp root."""
        return Path(tempfile.mkdtemp(prefix=name + "-", dir=self.root))

    def close(self) -> None:
        for server in self._servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def start_registry(self, name: str, flags: list[str] | None = None) -> Registry:
        """A new registry over a fresh data folder; stopped by close() at the latest."""
        base = self.tmp(name)
        reg = Registry(base / "data", base / "server.log", flags or [])
        self._servers.append(reg)
        return reg.start()

    @cached_property
    def examples(self) -> Path:
        """The example package folders (only those the figures use)."""
        out = self.root / "examples"
        log("building the example packages")
        run([PY, "-m", "examples.build", str(out), "--only", *EXAMPLES], cwd=ROOT, env=child_env())
        return out

    @cached_property
    def registry(self) -> Registry:
        """One registry with the examples published."""
        examples = self.examples
        reg = self.start_registry("registry")
        author = self.tmp("author-home")
        token = reg.add_user("bench", author)
        log(f"publishing {', '.join(EXAMPLES)} to {reg.url}")
        env = child_env(NNPM_HOME=str(author), NNPM_REGISTRY=reg.url, NNPM_TOKEN=token)
        for name in EXAMPLES:
            run([*nnpm_cmd(), "publish", "--no-progress", str(examples / name)], env=env)
        return reg

    @cached_property
    def model_files(self) -> list[tuple[str, int]]:
        """(sha256, size) of every file an install of resnet18's reference fetches: what the install
        figures are about (published tensor-addressed, so the graph and one file per large tensor)."""
        import httpx

        from nnpm.format.manifest import Manifest

        data = httpx.get(f"{self.registry.url}/api/v1/packages/resnet18/1.0.0", timeout=60).json()
        return [(f.sha256, f.size) for f in Manifest.from_dict(data["manifest"]).files_for("reference")]

    @cached_property
    def user_home(self) -> Path:
        """An NNPM_HOME with imagenet-classifier (and so resnet18) installed in env 'default'."""
        home = self.tmp("user-home")
        run([*nnpm_cmd(), "install", "-q", "imagenet-classifier", "--registry", self.registry.url],
            env=child_env(NNPM_HOME=str(home)))
        return home
