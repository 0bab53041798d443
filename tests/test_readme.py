"""The README's tour runs as written, in a fresh shell after the two set-up commands (issue 14, item 3).

Its ```sh blocks run in order, in one bash process with `set -euo pipefail`, in a scratch copy
of the repository's top level (links to .venv, examples/ and the Makefile), with a fresh
NNPM_HOME. The tour names port 8765; the test needs it free. `make` must see the .venv as
installed already (pyproject.toml is copied with an old date): reinstalling it from the
scratch copy would point its scripts at a folder that is about to be deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("## A short tour", "## Use models in your application", "## Trust: signed packages, a signed index, offline bundles")
LINKED = (".venv", "examples", "Makefile", "nnpm", "registry_server")


def sh_blocks(text: str, heading: str) -> list[str]:
    """The ```sh blocks of one README section, in order."""
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    section = text[start:end if end != -1 else None]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_the_tour_has_blocks() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert len(sh_blocks(text, heading)) >= 2, heading


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_every_command_of_the_tour_runs_verbatim(tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.fail("the tour starts from the .venv that 'make test' creates; run the suite with 'make test'")
    assert _port_free(8765), "the README's registry uses port 8765, which is taken on this machine"
    work = tmp_path / "repo"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    # A copy dated 1970: make sees .venv installed after it and never reinstalls the shared .venv from
    # this scratch folder (which would point its scripts and its editable install at a folder about to go).
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    os.utime(work / "pyproject.toml", (0, 0))
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for heading in SECTIONS for b in sh_blocks(text, heading)]
    script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + "\n".join(blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNPM_") and k != "VIRTUAL_ENV"}
    env["NNPM_HOME"] = str(tmp_path / "home")
    env["NNPM_REGISTRY_MEASURE_TIME"] = "0.1"   # as every test registry: a few timed runs per variant, not 2 s
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert str(work) not in (ROOT / ".venv" / "bin" / "nnpm").read_text(), "the tour reinstalled the shared .venv"
    out = proc.stdout
    assert "published my-model 0.1.0" in out and "published imagenet-classifier 1.0.0" in out
    assert "env other: 0 blobs fetched" in out           # the second environment downloads nothing
    assert re.search(r"label\s+shape \[3\]\s+int64", out), out   # digits-classifier ran on three digits
    assert "resnet18" in out and "digits-classifier" in out
    assert "locked digits-classifier 1.0.0" in out and "project my-app" in out   # the application's project
    synced = [line for line in out.splitlines() if line.startswith("project my-app:")]
    # the clone downloads nothing; nor does the air-gapped sync, from its imported bundle with no registry at all
    assert len(synced) == 5 and "0 blobs fetched" in synced[-2] and "0 blobs fetched" in synced[-1], synced
    assert "published my-model 0.2.0" in out and "installed my-model 0.2.0 (signed by sha256:" in out
    assert "published by alice, signed by sha256:" in out and "publisher signature" in out   # info; the import
    assert not (work / "tour" / "my-model" / "nnpm.toml").read_text().count('name = "model"')
