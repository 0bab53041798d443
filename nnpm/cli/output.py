"""How the CLI shows packages: signature tables and one-paragraph summaries."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from nnpm.format.manifest import Manifest, Signature


def console():
    """A rich console on stdout (plain when not a terminal)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


_MARKUP = re.compile(r"\[/?(bold|dim)\]")


def say(text: str) -> None:
    """Print one line: through rich on a terminal, plain otherwise (rich costs ~20 ms to import)."""
    if sys.stdout.isatty():
        console().print(text)
    else:
        print(_MARKUP.sub("", text), flush=True)


def human_size(n: int) -> str:
    """1234567 → '1.2 MB'."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def signature_table(sig: "Signature") -> "Table":
    """Inputs and outputs as a table: direction, name, dtype, shape."""
    from rich.table import Table

    table = Table(show_edge=False, box=None, pad_edge=False)
    for col in ("", "name", "dtype", "shape"):
        table.add_column(col)
    for side, specs in (("input", sig.inputs), ("output", sig.outputs)):
        for t in specs:
            table.add_row(side, t.name, t.dtype, t.shape_text())
    return table


def summary(m: "Manifest") -> None:
    """Print name, version, description, signature, params and size of a manifest."""
    out = console()
    out.print(f"[bold]{m.name}[/bold] {m.version}  {m.project.description}")
    if m.project.pipeline:
        out.print("  pipeline: " + " -> ".join(m.project.pipeline.steps))
    if m.signature:
        out.print(signature_table(m.signature))
    deps = ", ".join(f"{k}{v}" for k, v in m.project.dependencies.items())
    out.print(f"  params: {m.params:,}   files: {len(m.files)}   size: {human_size(m.total_size)}"
              + (f"   deps: {deps}" if deps else ""))
