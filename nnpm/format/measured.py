"""The registry's `measured` block read for people: one row per variant, with its cost and figures.

The registry stores what its worker measured beside each version (docs/format.md,
"Measured by the registry"); `nnpm info` and the model card both show it through
`variant_rows`, so "2.1× faster, 4.0× smaller" is computed in one place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnpm.format.manifest import Manifest


@dataclass(frozen=True)
class VariantRow:
    """One variant as people compare them."""

    variant: str
    precision: str | None
    bytes: int
    params: int
    macs: int | None
    providers: tuple[str, ...]
    rel_l2: float | None = None
    max_abs: float | None = None
    argmax_agreement: float | None = None
    latency_ms: float | None = None
    peak_memory: int | None = None
    skipped: str | None = None      # why the registry did not run it (a provider it lacks, no time left)
    error: str | None = None        # why it could not run there
    runs: int | None = None
    speedup: float | None = None      # reference latency / this latency
    shrink: float | None = None       # reference bytes / these bytes

    def to_dict(self) -> dict:
        """JSON form."""
        out = asdict(self)
        out["providers"] = list(self.providers)
        return out

    def comparison(self) -> str:
        """'2.1× faster, 4.0× smaller than reference' (empty for the reference or without figures)."""
        if self.variant == "reference":
            return ""
        parts = [_ratio(self.speedup, "faster", "slower"), _ratio(self.shrink, "smaller", "larger")]
        return ", ".join(p for p in parts if p) + " than reference" if any(parts) else ""


def _ratio(gain: float | None, more: str, less: str) -> str | None:
    """'2.1× faster' / '1.3× slower'; None when unknown or within 5% (noise, not a difference)."""
    if not gain or abs(gain - 1) < 0.05:
        return None
    return f"{gain:.1f}× {more}" if gain > 1 else f"{1 / gain:.1f}× {less}"


def _num(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _text(value: Any) -> str | None:
    return value[:300] if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def variant_rows(manifest: "Manifest", measured: dict | None) -> list[VariantRow]:
    """Every variant of a model package, reference first, with the registry's figures where it has them."""
    figures_of = (measured or {}).get("variants") if isinstance(measured, dict) else None
    figures_of = figures_of if isinstance(figures_of, dict) else {}
    rows = []
    for name in manifest.variant_names():
        entries = manifest.graphs.get(name, {}).values()
        macs = [e.macs for e in entries]
        precisions = {e.precision for e in entries}
        declared = manifest.project.variants.get(name)
        figures = figures_of.get(name) if isinstance(figures_of.get(name), dict) else {}
        drift = figures.get("drift") if isinstance(figures.get("drift"), dict) else {}
        rows.append(VariantRow(
            name, declared.precision if declared else (precisions.pop() if len(precisions) == 1 else "mixed"),
            sum(e.bytes for e in entries), sum(e.params for e in entries),
            None if None in macs or not macs else sum(macs), declared.providers if declared else (),
            _num(drift.get("rel_l2")), _num(drift.get("max_abs")), _num(drift.get("argmax_agreement")),
            _num(figures.get("latency_ms")), _int(figures.get("peak_memory")),
            _text(figures.get("skipped")), _text(figures.get("error")), _int(figures.get("runs"))))
    ref = rows[0] if rows else None
    return [_compared(row, ref) for row in rows]


def _compared(row: VariantRow, ref: VariantRow | None) -> VariantRow:
    from dataclasses import replace

    if ref is None or row is ref:
        return row
    speedup = ref.latency_ms / row.latency_ms if ref.latency_ms and row.latency_ms else None
    shrink = ref.bytes / row.bytes if ref.bytes and row.bytes else None
    return replace(row, speedup=speedup, shrink=shrink)


def machine_text(measured: dict | None) -> str:
    """'AMD EPYC 7B13, 2 cores, onnxruntime 1.20.1': where the registry measured ('' when unknown)."""
    machine = measured.get("machine") if isinstance(measured, dict) else None
    if not isinstance(machine, dict):
        return ""
    cores = machine.get("cores")
    parts = [_text(machine.get("cpu")), f"{cores} cores" if _int(cores) is not None else None,
             f"onnxruntime {machine['onnxruntime']}" if _text(machine.get("onnxruntime")) else None]
    return ", ".join(p for p in parts if p)
