"""Tensor-addressed weights: every large initializer in a file of its own, named by its content digest.

`nnpm pack` (and publish and install of a folder) rewrites each graph so that every
initializer over THRESHOLD bytes lives in `weights/sha256-<hex>` beside the graph file
(offset 0, the whole file), and every tensor that was external already moves to such a
file too: the author's data file does not travel. Small tensors stay in the graph. The
same bytes get the same name in any version of any package, so publish uploads and
install fetches only the tensors the other side lacks, and the store keeps each once.

External data is streamed through a fixed buffer, so a 2.5 GB model splits in flat memory.
The source graph's external locations are checked by `onnxinfo.check_external` first: a
split never reads outside the package.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnpm.errors import IntegrityError, ModelError
from nnpm.format.fields import DIGEST_FILE_RE
from nnpm.format.onnxinfo import check_external, subgraphs, tensors
from nnpm.fsutil import atomic_write
from nnpm.hashing import CHUNK, file_digest

THRESHOLD = 64 * 1024          # bytes: a tensor above this is a file of its own
WEIGHTS_DIR = "weights"        # beside the graph file


@dataclass
class SplitGraph:
    """One graph written in the split layout: the graph file and its weight files (rel -> (path, sha256, size))."""

    rel: str
    path: Path
    weights: dict[str, tuple[Path, str, int]] = field(default_factory=dict)
    digest: str = ""              # of the graph file written, and its size
    size: int = 0


def split_graph(root: Path, rel: str, out: Path, *, threshold: int = THRESHOLD, allow_hardlinks: bool = False,
                model: Any = None) -> SplitGraph:
    """Write `rel` of package folder `root` to `out/rel` in the split layout.

    `model` is the graph as already read (external data not loaded); it is rewritten in place."""
    import onnx

    if model is None:
        model = onnx.load(str(root / rel), load_external_data=False)
    model_dir = posixpath.dirname(rel)
    result = SplitGraph(rel, out / rel)
    placer = _Placer(out, model_dir, result)
    for tensor in tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _move_external(tensor, root, model_dir, placer, threshold, allow_hardlinks)
    for tensor in _initializers(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL and _as_raw(tensor) > threshold:
            placer.place_bytes(tensor, tensor.raw_data)
    data = model.SerializeToString(deterministic=True)
    result.path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(result.path, data)
    result.digest, result.size = hashlib.sha256(data).hexdigest(), len(data)
    return result


def _initializers(graph: Any) -> Iterator[Any]:
    """The initializers of a graph and of its subgraphs (If, Loop, Scan bodies)."""
    for sub in subgraphs(graph):
        yield from sub.initializer


def _as_raw(tensor: Any) -> int:
    """The tensor's data as `raw_data` (moved there from a typed field when large); its size in bytes."""
    from onnx import TensorProto, numpy_helper

    if tensor.HasField("raw_data") or tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        return len(tensor.raw_data)
    from nnpm.format.onnxinfo import nbytes

    if (nbytes(tensor) or 0) <= THRESHOLD:   # small: it stays in the graph as it is
        return 0
    try:
        raw = numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data
    except (ValueError, TypeError, KeyError):       # a type numpy cannot hold: leave it as it is
        return 0
    for name in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        tensor.ClearField(name)
    tensor.raw_data = raw
    return len(raw)


def _move_external(tensor: Any, root: Path, model_dir: str, placer: "_Placer", threshold: int,
                   allow_hardlinks: bool) -> None:
    """Copy an external tensor's bytes into its digest-named file (or into the graph, when small)."""
    source = root / check_external(tensor, root, model_dir, allow_hardlinks)
    entries = {e.key: e.value for e in tensor.external_data}
    _check_digest_name(source, entries.get("location", ""))
    offset = int(entries.get("offset", 0))
    length = int(entries["length"]) if "length" in entries else source.stat().st_size - offset
    if length <= threshold:
        with open(source, "rb") as f:
            f.seek(offset)
            raw = f.read(length)
        _internal(tensor, raw)
        return
    placer.place_range(tensor, source, offset, length)


def _check_digest_name(source: Path, location: str) -> None:
    """A source file named `sha256-<hex>` must hold exactly those bytes: a name is a claim, and it is checked."""
    found = DIGEST_FILE_RE.match(posixpath.basename(location))
    if found and file_digest(source)[0] != found.group(1):
        raise IntegrityError(f"{location!r} does not hold the bytes its name says (its sha256 differs)",
                             hint="re-export the model, or rename the file: a 'sha256-' name must be the file's digest")


def _internal(tensor: Any, raw: bytes) -> None:
    from onnx import TensorProto

    del tensor.external_data[:]
    tensor.data_location = TensorProto.DEFAULT
    tensor.raw_data = raw


class _Placer:
    """Writes weight files under `out/<graph dir>/weights/`, each once, and points tensors at them."""

    def __init__(self, out: Path, model_dir: str, result: SplitGraph) -> None:
        self.folder = out / model_dir / WEIGHTS_DIR if model_dir else out / WEIGHTS_DIR
        self.model_dir, self.result = model_dir, result

    def place_bytes(self, tensor: Any, raw: bytes) -> None:
        """A tensor held in the graph, moved out to its file."""
        digest = hashlib.sha256(raw).hexdigest()
        final = self._final(digest)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(final, raw)
        self._point(tensor, digest, len(raw), final)

    def place_range(self, tensor: Any, source: Path, offset: int, length: int) -> None:
        """Bytes [offset, offset+length) of an external data file, streamed to their file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".split-")
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                src.seek(offset)
                left = length
                while left:
                    chunk = src.read(min(CHUNK, left))
                    if not chunk:
                        raise ModelError(f"{source.name} ends before the {length} bytes tensor {tensor.name!r} reads")
                    h.update(chunk)
                    dst.write(chunk)
                    left -= len(chunk)
            final = self._final(h.hexdigest())
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._point(tensor, h.hexdigest(), length, final)

    def _final(self, digest: str) -> Path:
        return self.folder / f"sha256-{digest}"

    def _point(self, tensor: Any, digest: str, size: int, final: Path) -> None:
        from onnx import TensorProto

        location = f"{WEIGHTS_DIR}/sha256-{digest}"
        del tensor.external_data[:]
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("length", str(size))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        rel = f"{self.model_dir}/{location}" if self.model_dir else location
        self.result.weights[rel] = (final, digest, size)
