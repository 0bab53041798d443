"""Labels files: one class name per line, UTF-8, no control characters.

Parsed with this one function at pack, by the registry at publish, and at load, so a
label that could drive a terminal (an escape sequence) never reaches one.
"""

from __future__ import annotations

from nnpm.errors import ManifestError
from nnpm.format.fields import check_printable
from nnpm.format.limits import MAX_LABELS_BYTES


def parse_labels(data: bytes, *, path: str) -> list[str]:
    """The class names in a labels file, one per line; ManifestError naming the file and line otherwise."""
    if len(data) > MAX_LABELS_BYTES:
        raise ManifestError(f"is {len(data)} bytes; a labels file holds at most {MAX_LABELS_BYTES}", file=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"is not UTF-8 text (byte {exc.start})", file=path) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        check_printable(line.removesuffix("\r"), file=path, key=f"line {number}")
    return [line.removesuffix("\r") for line in lines]
