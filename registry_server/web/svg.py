"""What the model card's inline SVG pictures share: text cut to fit a width, and a linear scale with ticks.

The pictures (web/diagram.py, web/chart.py) are layouts of numbers and plain strings; their
templates write the SVG, and Jinja's autoescape (markupsafe) escapes every string there. SVG
text does not wrap or clip, so `label` cuts a text to a width with an ellipsis (the full
text goes in a <title>), measuring with a monospace advance: 0.6 em a glyph, 1 em for wide
East Asian ones, none for combining marks. Control and format characters (bidi overrides,
NUL) are dropped from both forms: XML cannot hold most of them and they only scramble a line.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

ADVANCE = 0.6  # a monospace glyph's advance, in ems


def clean(text: str) -> str:
    """`text` without control or format characters (newlines and tabs become spaces)."""
    text = text.replace("\n", " ").replace("\t", " ").replace("\r", " ")
    return "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))


def _advance(ch: str) -> float:
    if unicodedata.combining(ch):
        return 0.0
    return 1.0 if unicodedata.east_asian_width(ch) in ("W", "F") else ADVANCE


def text_width(text: str, size: float) -> float:
    """How wide `text` is at font size `size`, in the same units, with monospace advances."""
    return sum(_advance(ch) for ch in text) * size


def fit(text: str, width: float, size: float) -> str:
    """`text` (cleaned) cut with an ellipsis so that it is at most `width` wide at font size `size`."""
    text = clean(text)
    if text_width(text, size) <= width:
        return text
    room, used, out = width - ADVANCE * size, 0.0, []
    for ch in text:
        used += _advance(ch) * size
        if used > room:
            break
        out.append(ch)
    return "".join(out).rstrip() + "…"


def label(text: str, width: float, size: float) -> dict:
    """A label for a template: the `text` shown (cut to `width`), the `full` text for its <title>, and `cut`."""
    shown, full = fit(text, width, size), clean(text)
    return {"text": shown, "full": full, "cut": shown != full}


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about `count` intervals over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * 0.999)


@dataclass(frozen=True)
class Scale:
    """A linear map from data values [0, top] to picture coordinates [start, end], with round ticks."""

    top: float
    start: float
    end: float
    step: float

    @classmethod
    def over(cls, values: list[float], start: float, end: float, count: int = 4) -> "Scale":
        """A scale from 0 to a round value at or above every one of `values` (at least one step)."""
        high = max([v for v in values if math.isfinite(v)] + [0.0])
        step = nice_step(high, count) if high > 0 else 1.0
        return cls(max(step, math.ceil(high / step - 1e-9) * step), start, end, step)

    def __call__(self, value: float) -> float:
        """The coordinate of `value`, clamped to the scale's ends."""
        share = min(1.0, max(0.0, value / self.top)) if self.top else 0.0
        return round(self.start + (self.end - self.start) * share, 2)

    def ticks(self) -> list[float]:
        """0, step, 2·step, ... up to the top."""
        count = int(round(self.top / self.step))
        return [round(i * self.step, 12) for i in range(count + 1)]


def number(value: float) -> str:
    """A tick value for people: 0, 0.005, 2.5, 40, 1.2e-05."""
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-4:
        return f"{value:.2g}"
    return f"{value:.6g}"
