"""READMEs as HTML: rendered once, at publish, in a subprocess bounded in time and memory.

Markdown is CommonMark with tables and strikethrough, raw HTML off, unsafe links
(`javascript:`, `data:` other than images, ...) dropped by markdown-it's link validation.
Hostile Markdown can cost seconds of CPU, so it is never rendered on a page view: the
publish renders it once in

    python -P -m registry_server.services.readme --memory BYTES --cpu SECONDS  < README > HTML

and stores the HTML with the version. When that takes too long, fails or runs out of
memory, the README is stored as escaped plain text in a <pre> instead (`plain_html`),
which is also what a version published before rendering existed is shown as.
"""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

from nnpm.errors import NnpmError
from nnpm.format.limits import MIB
from nnpm.format.manifest import Manifest

RENDER_MEMORY = 512 * MIB  # address space of the rendering subprocess
_ROOT = Path(__file__).resolve().parent.parent.parent


def render_markdown(text: str) -> str:
    """CommonMark (+ tables, strikethrough) to HTML, with raw HTML disabled and unsafe links dropped. Unbounded."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    return md.render(text)


def plain_html(text: str) -> str:
    """The cheap, always-safe form: the text escaped, in a <pre>."""
    return '<pre class="readme-plain">' + html.escape(text.replace("\x00", "\ufffd")) + "</pre>\n"


def readme_text(manifest: Manifest, store, limit: int) -> str | None:
    """The README's first `limit` bytes as text (a note added when cut); None without one or when its blob is gone."""
    path = manifest.project.readme
    if not path:
        return None
    try:
        entry = manifest.file(path)
        raw = store.read(entry.sha256, limit)
    except (KeyError, OSError, NnpmError):  # a missing blob must not break the page or the publish
        return None
    text = raw.decode("utf-8", "replace")
    if entry.size > limit:
        text += f"\n\n*README truncated at {limit // 1024} KiB.*\n"
    return text


def max_html(text: str) -> int:
    """Characters of HTML a README may render to: markup grows a text, never by this much (a reference bomb does)."""
    return 8 * len(text) + 4096


def render_bounded(text: str, *, timeout: float, memory: int = RENDER_MEMORY) -> str:
    """`render_markdown(text)` in a subprocess; `plain_html(text)` when slower than `timeout`, too large or failed."""
    cmd = [sys.executable, "-P", "-m", "registry_server.services.readme", "--memory", str(memory),
           "--cpu", str(max(1, int(timeout) + 1)), "--max-output", str(max_html(text))]
    try:
        proc = subprocess.run(cmd, input=text.encode("utf-8", "replace"), capture_output=True, timeout=timeout,
                              cwd=_ROOT, env=_env())
    except (subprocess.TimeoutExpired, OSError):
        return plain_html(text)
    if proc.returncode != 0:
        return plain_html(text)
    return proc.stdout.decode("utf-8", "replace")


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry: limits first, then Markdown from stdin to HTML on stdout."""
    import argparse
    import resource

    parser = argparse.ArgumentParser(prog="python -m registry_server.services.readme")
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--cpu", type=int, required=True)
    parser.add_argument("--max-output", type=int, required=True)
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_AS, (args.memory, args.memory))
    resource.setrlimit(resource.RLIMIT_CPU, (args.cpu, args.cpu + 1))
    text = sys.stdin.buffer.read().decode("utf-8", "replace")
    out = render_markdown(text)
    if len(out) > args.max_output:
        return 3  # the caller shows the text instead
    sys.stdout.buffer.write(out.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
