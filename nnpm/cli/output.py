"""How the CLI shows things: literal text, signature tables and one-paragraph summaries.

Text from a package or a registry (descriptions, tags, names, labels, errors) is printed
literally: rich markup is off (`[/]` or `[link=...]` in a description is just text) and
control characters are shown escaped (`\x1b`), never sent to the terminal.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from nnpm.format.manifest import Manifest, Signature


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def literal(text: object) -> str:
    """Text made safe for a terminal: control and bidi-override characters escaped (newlines and tabs kept)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", str(text))


def console():
    """A rich console on stdout (plain when not a terminal) that never reads markup in what it prints."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, markup=False, emoji=False)


def say(text: str) -> None:
    """Print one line literally: through rich on a terminal, plain otherwise (rich costs ~20 ms to import)."""
    if sys.stdout.isatty():
        console().print(literal(text))
    else:
        print(literal(text), flush=True)


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
            table.add_row(side, literal(t.name), literal(t.dtype), literal(t.shape_text()))
    return table


def summary(m: "Manifest", signature: "Signature | None" = None) -> None:
    """Print name, version, description, signature, params and size of a manifest.

    `signature` is a pipeline's (its steps' exposed ports), which its manifest does not hold."""
    from rich.text import Text

    out = console()
    out.print(Text.assemble((m.name, "bold"), f" {m.version}  {literal(m.project.description)}"))
    if m.project.pipeline:
        out.print("  pipeline: " + " -> ".join(m.project.pipeline.steps))
    if m.signature or signature:
        out.print(signature_table(m.signature or signature))
    elif len(m.project.models) > 1:
        for graph in m.graph_names():
            out.print(f"  graph {graph} ({m.project.models[graph].file}):")
            out.print(signature_table(m.graph("reference", graph).signature))
    order = list(m.project.pipeline.steps) if m.project.pipeline else []   # a pipeline's in step order
    names = order + [n for n in m.project.dependencies if n not in order]
    deps = ", ".join(f"{n}{m.project.dependencies[n]}" for n in names)
    out.print(f"  params: {m.params:,}   {plural(len(m.files), 'file')}   size: {human_size(m.total_size)}"
              + (f"   deps: {deps}" if deps else ""))


def _count(n: int | None) -> str:
    """1814073344 → '1.81 G'."""
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return str(n)


def variants_table(rows: list[dict]) -> str:
    """Variants side by side, in plain columns (no wrapping): precision, size, MACs, drift, latency, memory, gain."""
    head = ("variant", "precision", "size", "MACs", "drift (rel L2)", "latency", "memory", "")
    lines = [head]
    for r in rows:
        drift = "0" if r["variant"] == "reference" else ("-" if r.get("rel_l2") is None else f"{r['rel_l2']:.2g}")
        note = (f"not measured: {r['skipped']}" if r.get("skipped") else f"could not run: {r['error']}"
                if r.get("error") else r.get("comparison") or "")
        lines.append((literal(r["variant"]), literal(r.get("precision") or "?"), human_size(r["bytes"]),
                      _count(r.get("macs")), drift,
                      "-" if r.get("latency_ms") is None else f"{r['latency_ms']:.2f} ms",
                      human_size(r["peak_memory"]) if r.get("peak_memory") is not None else "-", literal(note)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def plural(count: int, noun: str) -> str:
    """'1 file', '2 files'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
