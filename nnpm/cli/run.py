"""`nnpm run NAME --input x=file.npy`: one inference from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    import numpy as np

    from nnpm.runtime.model import Model

_MAX_ROWS = 5
_MAX_VALUES = 20


def run(
    name: str = typer.Argument(..., help="Installed name (NAME or NAME==VER), folder or .nnpm file."),
    inputs: Optional[list[str]] = typer.Option(None, "--input", "-i", metavar="[NAME=]FILE.npy",
                                               help="An input as a .npy file; NAME= may be left out for a "
                                                    "one-input model. Repeat for several inputs."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Save each output as DIR/<name>.npy."),
    top: int = typer.Option(5, "--top", "-k", min=1, help="Classes to show for an output with labels."),
    env: Optional[str] = typer.Option(None, "--env", "-e", help="Environment (default: NNPM_ENV or 'default')."),
) -> None:
    """Run a model once on .npy inputs and show (or save) its outputs."""
    from nnpm.cli.output import console, literal
    from nnpm.runtime.load import load

    model = load(name, env=env)
    feeds = read_inputs(inputs or [], [s.name for s in model.signature.inputs])
    outputs = model.run(feeds)
    out = console()
    if output is not None:
        for path in save_outputs(outputs, output):
            out.print(f"wrote {path}", markup=False)
        return
    for name, value in outputs.items():
        for line in describe_output(model, name, value, top):
            out.print(literal(line))


def read_inputs(items: list[str], names: list[str]) -> "dict[str, np.ndarray]":
    """Map `NAME=FILE.npy` (or a bare FILE.npy for a one-input model) to arrays."""
    from nnpm.errors import InputError
    from nnpm.runtime.inputs import load_npy

    feeds = {}
    for item in items:
        key, sep, file = item.partition("=")
        if not sep or (key not in names and len(names) == 1 and Path(item).is_file()):
            if len(names) != 1:
                raise InputError(f"--input {item!r} has no input name, and the model takes {len(names)} inputs",
                                 hint="write --input NAME=FILE.npy with NAME one of: " + ", ".join(names))
            key, file = names[0], item
        if key not in names:
            raise InputError(f"--input {item!r}: the model has no input {key!r}", hint="inputs: " + ", ".join(names))
        if key in feeds:
            raise InputError(f"input {key!r} is given twice")
        feeds[key] = load_npy(Path(file), f"input {key!r}")
    return feeds


def save_outputs(outputs: "dict[str, Any]", folder: Path) -> list[Path]:
    """Write each output as folder/<name>.npy, or .json for sequences and maps; all or nothing.

    Numbers and strings become .npy (strings as unicode, readable without pickle); a
    sequence of maps (scikit-learn's ZipMap) or any other non-tensor becomes JSON. Every
    output is converted before anything is written, then the files appear by rename.
    """
    import re

    from nnpm.fsutil import atomic_write

    prepared = []
    for name, value in outputs.items():
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "output"
        prepared.append((stem, _encode(name, value)))
    stems = [stem for stem, _ in prepared]
    if len(set(stems)) != len(stems):
        from nnpm.errors import InputError

        raise InputError("two outputs would be saved under the same file name: " + ", ".join(outputs),
                         hint="print them instead of saving them with -o")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, (suffix, data) in prepared:
        path = folder / f"{stem}{suffix}"
        atomic_write(path, data)
        paths.append(path)
    return paths


def _encode(name: str, value: Any) -> tuple[str, bytes]:
    """(suffix, bytes) for one output: .npy for arrays of numbers or strings, .json for the rest."""
    import io
    import json

    import numpy as np

    from nnpm.errors import InputError

    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        try:
            value = value.astype(str)            # onnxruntime hands strings back as objects
        except (TypeError, ValueError):
            pass
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind != "O":
        buf = io.BytesIO()
        np.save(buf, np.asarray(value), allow_pickle=False)
        return ".npy", buf.getvalue()
    try:
        return ".json", (json.dumps(_jsonable(value), indent=1, allow_nan=True) + "\n").encode()
    except (TypeError, ValueError) as exc:
        raise InputError(f"output {name!r} ({type(value).__name__}) cannot be saved as .npy or JSON ({exc})",
                         hint="print it instead of saving it with -o") from None


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        return {str(_jsonable(k)): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe_output(model: "Model", name: str, value: "np.ndarray", top: int) -> list[str]:
    """Lines showing one output: name, shape, dtype, then top-k classes, label names or values."""
    import numpy as np

    value = np.asarray(value)
    lines = [f"{name}  shape {list(value.shape)}  {value.dtype}"]
    labels = model.labels(name) if model.has_labels(name) else None
    if labels and value.dtype.kind == "f" and value.ndim >= 1 and value.shape[-1] == len(labels):
        rows = value.reshape(-1, len(labels))
        for i, row in enumerate(rows[:_MAX_ROWS]):
            best = np.argsort(-row, kind="stable")[:top]
            lines.append(f"  [{i}] " + ", ".join(f"{labels[j]} {row[j]:.4f}" for j in best))
        lines += _more(len(rows))
    elif labels and value.dtype.kind in "iu":
        rows = value.reshape(-1, value.shape[-1]) if value.ndim >= 2 else value.reshape(1, -1)
        def label(v: int) -> str:
            return labels[v] if 0 <= v < len(labels) else f"?{v}"
        for i, row in enumerate(rows[:_MAX_ROWS]):
            shown = ", ".join(label(int(v)) for v in row[:_MAX_VALUES])
            lines.append(f"  [{i}] {shown}" + (" ..." if len(row) > _MAX_VALUES else ""))
        lines += _more(len(rows))
    else:
        text = np.array2string(value, threshold=_MAX_VALUES, edgeitems=3, precision=4)
        lines += ["  " + line for line in text.splitlines()]
    return lines


def _more(rows: int) -> list[str]:
    return [f"  ... {rows - _MAX_ROWS} more rows"] if rows > _MAX_ROWS else []


def register(app: typer.Typer) -> None:
    """Add `nnpm run` to the app."""
    app.command()(run)
