"""The variant trade-off chart on a card: each variant a point, latency (or size) against drift, as layouts for SVG.

Two views of the same points, one per cost: the median latency the registry measured, and
the bytes of the variant's files; the x axis is the drift from the reference's outputs
(relative L2; the reference sits at 0, drawn as a diamond). Lower left is better on both.
A variant the registry did not run (a provider it lacks, an error) is left out of the
latency view and named in the description. No view with fewer than two points; no chart
without a measured drift. The template (templates/_chart.html) writes the SVGs and the
CSS-only switch between them; the figures themselves are the Variants table below it.
"""

from __future__ import annotations

from nnpm.format.manifest import Manifest
from nnpm.format.measured import VariantRow, machine_text, variant_rows
from registry_server.web.render import human_size
from registry_server.web.svg import Scale, label, number, text_width
from registry_server.web.variants import read_measured

WIDTH, HEIGHT = 360, 250
AXIS_TITLE, RIGHT, TOP, BOTTOM = 20, WIDTH - 16, 14, HEIGHT - 46   # the plot area (its left: after the ticks)
TICK, NAME = 10, 11                                            # font sizes
REFERENCE = "reference"


def _drift(row: VariantRow) -> float | None:
    return 0.0 if row.variant == REFERENCE else row.rel_l2


def _cost(row: VariantRow, key: str) -> float | None:
    if key == "latency":
        return row.latency_ms
    return float(row.bytes) if row.bytes else None


def _cost_text(value: float, key: str) -> str:
    return f"{number(round(value, 3))} ms" if key == "latency" else human_size(int(value))


def _place(points: list[dict]) -> None:
    """Put each point's name beside it, right of it unless that leaves the plot, nudged off names placed before."""
    placed: list[tuple[float, float, float]] = []     # (left, right, baseline) of names placed
    for p in sorted(points, key=lambda p: (p["cy"], p["cx"])):
        width = text_width(p["name"]["text"], NAME)
        right_side = p["cx"] + 9 + width <= WIDTH - 2
        left = p["cx"] + 9 if right_side else p["cx"] - 9 - width
        base = p["cy"] + 4
        for shift in (0, -13, 13, -26, 26, -39, 39):
            y = min(HEIGHT - 30, max(TOP + 9, p["cy"] + 4 + shift))
            if not any(a < left + width and left < b and abs(y - yy) < 12 for a, b, yy in placed):
                base = y
                break
        placed.append((left, left + width, base))
        p.update(lx=round(p["cx"] + 9 if right_side else p["cx"] - 9, 2), ly=round(base, 2),
                 anchor="start" if right_side else "end")


def _view(rows: list[VariantRow], key: str) -> dict | None:
    """One chart: `key` ("latency" or "size") against drift, or None with fewer than two points."""
    have = [(r, _drift(r), _cost(r, key)) for r in rows]
    have = [(r, d, c) for r, d, c in have if d is not None and c is not None]
    if len(have) < 2:
        return None
    ys = Scale.over([c for _, _, c in have], BOTTOM, TOP, 4)
    yticks = [{"at": ys(t), "text": number(t) if key == "latency" else human_size(int(t))} for t in ys.ticks()]
    left = round(AXIS_TITLE + max(text_width(t["text"], TICK) for t in yticks) + 8)   # room for the widest tick
    xs = Scale.over([d for _, d, _ in have], left, RIGHT, 4)
    points = [{"cx": xs(d), "cy": ys(c), "ref": r.variant == REFERENCE, "variant": r.variant,
               "name": label(r.variant, 110, NAME)} for r, d, c in have]
    _place(points)
    what = "Latency" if key == "latency" else "Size"
    plotted = {r.variant for r, _, _ in have}
    said = [f"{r.variant}: {what.lower()} {_cost_text(c, key)}, drift {number(d)}"
            + (" (the reference)" if r.variant == REFERENCE else "") for r, d, c in have]
    missing = [f"{r.variant} ({r.skipped or r.error or 'not measured'})" for r in rows if r.variant not in plotted]
    said += [m.replace(" (", ": not plotted (", 1) for m in missing]
    return {
        "key": key, "what": what, "width": WIDTH, "height": HEIGHT, "points": points,
        "plot": {"left": left, "right": RIGHT, "top": TOP, "bottom": BOTTOM}, "yticks": yticks,
        "xticks": [{"at": xs(t), "text": number(t)} for t in xs.ticks()],
        "xtitle": "Drift from the reference (relative L2)",
        "ytitle": "Latency, median (ms)" if key == "latency" else "Size of its files",
        "title": f"{what} against drift for each variant",
        "desc": "; ".join(said) + ". Lower left is better.", "missing": missing,
    }


def variant_chart(manifest: Manifest, measured_json: str | None) -> dict | None:
    """The card's trade-off chart for templates/_chart.html, or None (a pipeline, one variant, nothing measured)."""
    if manifest.project.pipeline is not None or len(manifest.variant_names()) < 2:
        return None
    measured = read_measured(measured_json)
    rows = variant_rows(manifest, measured)
    views = [v for v in (_view(rows, "latency"), _view(rows, "size")) if v is not None]
    if not views:
        return None
    return {"views": views, "machine": machine_text(measured) or None}
