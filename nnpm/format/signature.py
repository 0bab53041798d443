"""Signatures: the inputs and outputs of a graph (name, element type, shape), and their JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nnpm.errors import ManifestError
from nnpm.format.fields import check_printable, table
from nnpm.format.limits import MAX_SIGNATURE_PORTS

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, element type ('float32', 'int64', ...) and shape.

    Shape entries are ints for fixed dims, strings for symbolic dims, None for unknown;
    shape itself is None when the rank is unknown or the value is not a tensor.
    """

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None

    def shape_text(self) -> str:
        """Shape as people write it: [N, 3, 224, 224]."""
        if self.shape is None:
            return "?"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of a graph."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict:
        """JSON form."""
        return {side: [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape) if t.shape is not None else None}
                       for t in getattr(self, side)] for side in ("inputs", "outputs")}

    @classmethod
    def from_dict(cls, data: Any, *, file: str | None = MANIFEST_NAME) -> "Signature":
        """Parse the JSON form, strictly."""
        data = table(data, "signature", file, {"inputs", "outputs"})
        sides = {}
        for side in ("inputs", "outputs"):
            items = data.get(side)
            if not isinstance(items, list) or len(items) > MAX_SIGNATURE_PORTS:
                raise ManifestError(f"must be a list of up to {MAX_SIGNATURE_PORTS} entries", file=file, key=f"signature.{side}")
            specs = []
            for i, item in enumerate(items):
                key = f"signature.{side}[{i}]"
                item = table(item, key, file, {"name", "dtype", "shape"})
                name, dtype, shape = item.get("name"), item.get("dtype"), item.get("shape")
                if not isinstance(name, str) or not isinstance(dtype, str):
                    raise ManifestError("needs string name and dtype", file=file, key=key)
                check_printable(name, file=file, key=f"{key}.name")
                check_printable(dtype, file=file, key=f"{key}.dtype")
                if shape is not None and (not isinstance(shape, list) or not all(
                        d is None or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool))
                        for d in shape)):
                    raise ManifestError("shape must be a list of ints, strings or nulls", file=file, key=key)
                specs.append(TensorSpec(name, dtype, tuple(shape) if shape is not None else None))
            sides[side] = tuple(specs)
        return cls(**sides)


def interface_difference(ref: Signature, other: Signature, *, dtypes: bool = True) -> str | None:
    """How `other` differs from `ref` in port names, ranks (and dtypes), or None when it does not."""
    for side in ("inputs", "outputs"):
        want = {t.name: t for t in getattr(ref, side)}
        got = {t.name: t for t in getattr(other, side)}
        if set(want) != set(got):
            return f"its {side} are {sorted(got)}, the reference's {sorted(want)}"
        for name, spec in want.items():
            rank = lambda t: None if t.shape is None else len(t.shape)  # noqa: E731
            if rank(spec) != rank(got[name]):
                return f"{side[:-1]} {name!r} has rank {rank(got[name])}, the reference's {rank(spec)}"
            if dtypes and spec.dtype != got[name].dtype:
                return f"{side[:-1]} {name!r} is {got[name].dtype}, the reference's {spec.dtype}"
    return None
