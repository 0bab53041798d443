"""Check and convert model inputs against a signature before onnxruntime sees them.

Every refusal is an InputError that names the input and shows the expected and the given
dtype and shape, e.g. ``input 'pixels': expected int64 [N, 8, 8], got float32 [2, 64]``.

Rules:
- numpy arrays keep their dtype, or are cast when ``np.can_cast(given, expected, 'safe')``
  (int32 -> int64, float16 -> float32); any other cast is refused with a hint to cast;
- Python lists and scalars convert to the declared dtype, refused when that would change
  their values (1.5 or 300 into uint8);
- rank and fixed dimensions must match; a symbolic dimension ("N") binds to one size
  across every input that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nnpm.errors import InputError
from nnpm.format.manifest import Signature, TensorSpec

_STRING_KINDS = {"U", "S", "O"}


def numpy_dtype(name: str) -> np.dtype | None:
    """The numpy dtype for a signature dtype name ('float32', 'string', ...); None when numpy has none."""
    if name == "string":
        return np.dtype(object)
    if name in ("bfloat16",) or "(" in name:
        return None
    try:
        return np.dtype(name)
    except TypeError:
        return None


def shape_text(shape: tuple[int, ...]) -> str:
    """A concrete shape as people write it: [2, 64]."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _refuse(spec: TensorSpec, dtype: Any, shape: tuple[int, ...], why: str, hint: str | None = None) -> InputError:
    kind = np.dtype(dtype).kind
    given = "string" if kind in "US" else "object" if kind == "O" else str(dtype)
    err = InputError(f"input {spec.name!r}: expected {spec.dtype} {spec.shape_text()}, "
                     f"got {given} {shape_text(shape)} ({why})", hint=hint)
    err.input_name, err.expected, err.given = spec.name, spec, (given, shape)
    return err


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic))


def convert(spec: TensorSpec, value: Any) -> Any:
    """One input as the array onnxruntime will get, or InputError."""
    want = numpy_dtype(spec.dtype)
    if want is None:           # sequences, maps, bfloat16: pass through, onnxruntime judges
        return value
    if _is_array(value):
        arr = np.asarray(value)
        if want.kind == "O":
            if arr.dtype.kind not in _STRING_KINDS:
                raise _refuse(spec, arr.dtype, arr.shape, "not strings")
            return arr.astype(object) if arr.dtype.kind != "O" else arr
        if arr.dtype == want:
            return arr
        if np.can_cast(arr.dtype, want, "safe"):
            return arr.astype(want)
        raise _refuse(spec, arr.dtype, arr.shape, f"{arr.dtype} does not cast safely to {want}",
                      hint=f"cast it yourself, e.g. x.astype(np.{want.name}), if the loss is acceptable")
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise InputError(f"input {spec.name!r}: expected {spec.dtype} {spec.shape_text()}, "
                         f"got a {type(value).__name__} that is not a rectangular array ({exc})") from None
    if want.kind == "O":
        if raw.dtype.kind not in _STRING_KINDS:
            raise _refuse(spec, raw.dtype, raw.shape, "not strings")
        return raw.astype(object)
    if raw.dtype.kind in _STRING_KINDS or (raw.dtype.kind == "c" and want.kind != "c"):
        raise _refuse(spec, raw.dtype, raw.shape, f"Python values of type {raw.dtype} do not convert to {want}")
    with np.errstate(all="ignore"):
        arr = raw.astype(want)
    if want.kind in "iub" and raw.size and not np.array_equal(arr.astype(raw.dtype), raw):
        raise _refuse(spec, raw.dtype, raw.shape, f"the values do not all fit {want} exactly")
    return arr


def check_shape(spec: TensorSpec, arr: Any, bound: dict[str, tuple[int, str]]) -> None:
    """Rank, fixed dims and symbolic dims of one input; `bound` maps symbol -> (size, input name)."""
    if spec.shape is None or not hasattr(arr, "shape"):
        return
    shape = tuple(arr.shape)
    if len(shape) != len(spec.shape):
        raise _refuse(spec, arr.dtype, shape, f"rank {len(shape)}, expected rank {len(spec.shape)}")
    for axis, (want, got) in enumerate(zip(spec.shape, shape)):
        if isinstance(want, int) and want > 0 and want != got:   # 0 or -1 from older manifests: any size
            raise _refuse(spec, arr.dtype, shape, f"dimension {axis} is {got}, expected {want}")
        if isinstance(want, str):
            size, where = bound.setdefault(want, (got, spec.name))
            if size != got:
                other = "this input" if where == spec.name else f"input {where!r}"
                raise _refuse(spec, arr.dtype, shape,
                              f"dimension {axis} ({want}) is {got}, but {want} is {size} in {other}")


def check_inputs(signature: Signature, feeds: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and convert every input by name; returns the feed dict for onnxruntime."""
    specs = {s.name: s for s in signature.inputs}
    unknown = [name for name in feeds if name not in specs]
    if unknown:
        raise InputError(f"unknown input {unknown[0]!r}; the model takes " + _listing(signature),
                         hint="pass inputs by these names")
    missing = [s for s in signature.inputs if s.name not in feeds]
    if missing:
        s = missing[0]
        raise InputError(f"missing input {s.name!r} ({s.dtype} {s.shape_text()}); the model takes "
                         + _listing(signature))
    out, bound = {}, {}
    for spec in signature.inputs:
        arr = convert(spec, feeds[spec.name])
        check_shape(spec, arr, bound)
        out[spec.name] = arr
    return out


def _listing(signature: Signature) -> str:
    return ", ".join(f"{s.name!r} ({s.dtype} {s.shape_text()})" for s in signature.inputs) or "no inputs"


def check_step_inputs(exposed: Mapping[str, Any], step_signatures: Mapping[str, Signature],
                      feeds: Mapping[str, Any]) -> None:
    """Check pipeline inputs against the signature of the step each one feeds (`exposed`: name -> Port).

    Symbolic dimensions bind per step, as they would if the step ran on its own."""
    bound: dict[str, dict[str, tuple[int, str]]] = {}
    for name, port in exposed.items():
        if name not in feeds:
            continue
        spec = next((s for s in step_signatures[port.step].inputs if s.name == port.name), None)
        if spec is None:
            continue
        try:
            arr = convert(spec, feeds[name])
            check_shape(spec, arr, bound.setdefault(port.step, {}))
        except InputError as exc:
            raise InputError(f"step {port.step}: {exc.message}", hint=exc.hint) from None


def load_npy(path: Path, what: str) -> "np.ndarray":
    """One array from a .npy file, never unpickling; InputError naming `what` ("input 'x'") otherwise."""
    if not Path(path).is_file():
        raise InputError(f"{what}: no file {path}")
    try:
        value = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{what}: {path} is not a readable .npy file of numbers or strings ({exc})",
                         hint="save it with numpy.save; pickled objects are never loaded") from None
    if not isinstance(value, np.ndarray):
        value.close()
        raise InputError(f"{what}: {path} is an .npz archive, not one array", hint="save each array with numpy.save")
    return value
