"""The model card's Variants table: one row per variant from the manifest's `graphs` and the stored measurement.

Each row: variant, precision, size, MACs, drift from the reference (rel L2, max abs,
arg-max agreement), latency, peak memory and the comparison with the reference ("2.1×
faster, 4.0× smaller"); under it, the machine it was measured on. The measurement is
the registry's own (`versions.measured_json`), read defensively all the same: a value
of the wrong type shows as a dash. Templates escape every string.
"""

from __future__ import annotations

import json

from nnpm.format.manifest import Manifest
from nnpm.format.measured import VariantRow, machine_text, variant_rows
from registry_server.web.render import human_count, human_size


def _short(value: float | None, unit: str = "") -> str | None:
    return None if value is None else f"{value:.3g}{unit}"


def _row(row: VariantRow) -> dict:
    """One row as the template shows it (numbers from nnpm.format.measured, formatted here)."""
    return {
        "name": row.variant, "precision": row.precision, "size": human_size(row.bytes) if row.bytes else None,
        "bytes": row.bytes, "macs": human_count(row.macs) if row.macs is not None else None, "macs_exact": row.macs,
        "rel_l2": _short(row.rel_l2), "max_abs": _short(row.max_abs),
        "argmax": f"{row.argmax_agreement * 100:.1f}%" if row.argmax_agreement is not None else None,
        "latency": _short(row.latency_ms, " ms"),
        "peak": human_size(row.peak_memory) if row.peak_memory is not None else None,
        "runs": row.runs, "note": row.skipped or row.error, "comparison": row.comparison() or None,
    }


def read_measured(measured_json: str | None) -> dict:
    """The stored measurement as a dict ({} when absent or not a JSON object)."""
    try:
        measured = json.loads(measured_json) if measured_json else {}
    except ValueError:
        measured = {}
    return measured if isinstance(measured, dict) else {}


def variant_table(manifest: Manifest, measured_json: str | None) -> dict | None:
    """What the card's Variants section shows, or None (a pipeline, or one variant never measured)."""
    if manifest.project.pipeline is not None or not manifest.graphs:
        return None
    measured = read_measured(measured_json)
    per_variant = measured.get("variants") if isinstance(measured.get("variants"), dict) else {}
    if len(manifest.variant_names()) < 2 and not per_variant:
        return None
    self_test = measured.get("self_test")
    return {
        "rows": [_row(row) for row in variant_rows(manifest, measured)],
        "measured": bool(per_variant), "machine": machine_text(measured) or None,
        "inputs": "the package's self-test inputs" if measured.get("inputs") == "tests" else "seeded random inputs",
        "self_test": isinstance(self_test, dict) and self_test.get("passed") is True,
        "error": str(measured["error"])[:300] if isinstance(measured.get("error"), str) else None,
    }
