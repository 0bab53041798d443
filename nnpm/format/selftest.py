"""A package's self-test and measurement: test arrays read safely, graphs run, outputs judged.

Shared by the client's `nnpm test` and the registry's validation worker, so a package is
judged the same on either side (docs/format.md, "Several graphs, self-tests and precision
variants"). Test arrays are keyed by port name for a one-graph package and `GRAPH/PORT`
for several. numpy and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnpm.errors import InputError, ManifestError, ModelError

if TYPE_CHECKING:
    import numpy as np

    from nnpm.format.manifest import Manifest

_NUMPY_DTYPES = {"float64", "float32", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16",
                 "uint32", "uint64", "bool", "complex64", "complex128"}


@dataclass(frozen=True)
class OutputCheck:
    """One output of the self-test: its largest difference and whether it is within the tolerance."""

    graph: str
    output: str
    max_abs: float | None
    passed: bool
    reason: str | None = None

    def to_dict(self) -> dict:
        """The JSON form the registry stores (`tolerance_exceeded`, not `passed`)."""
        finite = self.max_abs is not None and math.isfinite(self.max_abs)
        out: dict[str, Any] = {"graph": self.graph, "output": self.output,
                               "max_abs": self.max_abs if finite else None, "tolerance_exceeded": not self.passed}
        if self.reason:
            out["reason"] = self.reason
        return out


def port_key(manifest: Manifest, graph: str, port: str) -> str:
    """The test-array key of one port: the port name for one graph, `GRAPH/PORT` for several."""
    return port if len(manifest.graph_names()) == 1 else f"{graph}/{port}"


def split_key(manifest: Manifest | None, key: str) -> tuple[str, str]:
    """A test-array key → (graph, port); a one-graph package's keys are its port names."""
    names = manifest.graph_names() if manifest is not None else []
    if len(names) == 1:
        return names[0], key
    graph, sep, port = key.partition("/")
    return (graph, port) if sep else ("model", key)


def load_arrays(path: Path | str, *, what: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (np.load, allow_pickle=False); ManifestError in one line for anything else."""
    import zipfile

    import numpy as np

    def refuse(why: str) -> ManifestError:
        return ManifestError(f"{what} {why}", file=str(path), hint="save the arrays with numpy.savez")

    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise refuse("is not an .npz file")
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ManifestError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError, MemoryError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickle" in text.lower():
            raise refuse("holds pickled or object arrays, which nnpm never loads") from None
        raise refuse(f"cannot be read as arrays: {text[:200]}") from None
    for key, array in arrays.items():
        if not isinstance(array, np.ndarray):
            raise refuse(f"holds {key!r}, which is not an array")
        if array.dtype.hasobject:
            raise refuse(f"holds {key!r}, an object array, which nnpm never loads")
    return arrays


def test_keys(manifest: Manifest) -> tuple[list[str], list[str]]:
    """The keys the test inputs and outputs must hold: every input and output of every reference graph."""
    inputs, outputs = [], []
    for graph in manifest.graph_names():
        sig = manifest.graph("reference", graph).signature
        inputs += [port_key(manifest, graph, t.name) for t in sig.inputs]
        outputs += [port_key(manifest, graph, t.name) for t in sig.outputs]
    return inputs, outputs


def _specs(manifest: Manifest, variant: str = "reference") -> dict[str, Any]:
    """Test-array key → TensorSpec, for every input and output of every graph of `variant`."""
    out = {}
    for graph in manifest.graph_names():
        sig = manifest.graph(variant, graph).signature
        out.update({port_key(manifest, graph, t.name): t for t in (*sig.inputs, *sig.outputs)})
    return out


def _dtype_fits(spec_dtype: str, array: np.ndarray) -> bool:
    if spec_dtype == "string":
        return array.dtype.kind in "US"
    if spec_dtype not in _NUMPY_DTYPES:
        return True   # bfloat16, float8, ...: numpy has no name for it; onnxruntime judges
    return array.dtype.name == spec_dtype


def check_test_arrays(manifest: Manifest, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """Every input and output key present, no other, each array's dtype and rank the signature's; else ManifestError."""
    tests = manifest.project.tests
    files = (tests.inputs, tests.outputs) if tests else ("the test inputs", "the test outputs")
    want_in, want_out = test_keys(manifest)
    specs = _specs(manifest)
    for arrays, want, file in ((inputs, want_in, files[0]), (outputs, want_out, files[1])):
        missing = [k for k in want if k not in arrays]
        if missing:
            raise ManifestError(f"has no array {missing[0]!r}", file=file,
                                hint="it needs one array for each of: " + ", ".join(want))
        extra = sorted(set(arrays) - set(want))
        if extra:
            raise ManifestError(f"holds {extra[0]!r}, which is not a port of the package", file=file,
                                hint="its keys are: " + ", ".join(want))
        for key in want:
            spec, array = specs[key], arrays[key]
            if not _dtype_fits(spec.dtype, array):
                raise ManifestError(f"{key!r} is {array.dtype.name}, the graph's is {spec.dtype}", file=file)
            if spec.shape is not None and len(spec.shape) != array.ndim:
                raise ManifestError(f"{key!r} has rank {array.ndim}, the graph's has rank {len(spec.shape)}",
                                    file=file)


def seeded_inputs(manifest: Manifest, overrides: dict[str, np.ndarray] | None = None,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for every reference graph: symbolic dims 1, floats N(0,1), ints 0-3, bools at random; `overrides` win."""
    import numpy as np

    rng = np.random.default_rng(seed)
    overrides = dict(overrides or {})
    want, _ = test_keys(manifest)
    unknown = sorted(set(overrides) - set(want))
    if unknown:
        raise InputError(f"the package has no input {unknown[0]!r}; its inputs are: {', '.join(want)}")
    specs, out = _specs(manifest), {}
    for key in want:
        spec = specs[key]
        if key in overrides:
            out[key] = np.asarray(overrides[key])
            continue
        if spec.shape is None:
            raise InputError(f"input {key!r} has no known rank, so no input can be made up for it",
                             hint="give it an array of your own")
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
        out[key] = _random(rng, spec.dtype, shape, key)
    return out


def _random(rng: Any, dtype: str, shape: tuple[int, ...], key: str) -> np.ndarray:
    if dtype in ("float16", "float32", "float64"):
        return rng.standard_normal(shape).astype(dtype)
    if dtype.startswith(("int", "uint")) and dtype in _NUMPY_DTYPES:
        return rng.integers(0, 4, size=shape).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in ("complex64", "complex128"):
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    raise InputError(f"input {key!r} is of type {dtype}; no input of that type can be made up",
                     hint="give it an array of your own")


def _sessions(folder: Path, manifest: Manifest, variant: str, threads: int) -> list[tuple[str, Any]]:
    """One CPU onnxruntime session per graph of `variant`, in graph order."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = max(1, threads)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    out = []
    for graph in manifest.graph_names():
        path = Path(folder) / manifest.graph(variant, graph).file
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types: Fail, InvalidGraph, NotImplemented, ...
            raise ModelError(f"onnxruntime {ort.__version__} cannot load graph {graph!r} of variant {variant!r}: "
                             f"{_first_line(exc)}") from None
        out.append((graph, session))
    return out


def _call(manifest: Manifest, variant: str, sessions: list[tuple[str, Any]],
          inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run every graph once on its inputs (cast to the variant's input dtypes); outputs keyed like the tests."""
    import numpy as np

    out = {}
    for graph, session in sessions:
        sig = manifest.graph(variant, graph).signature
        feeds = {}
        for spec in sig.inputs:
            array = inputs[port_key(manifest, graph, spec.name)]
            if spec.dtype in _NUMPY_DTYPES and array.dtype.name != spec.dtype:
                array = array.astype(spec.dtype)
            feeds[spec.name] = array
        try:
            results = session.run(None, feeds)
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"graph {graph!r} of variant {variant!r} failed to run: {_first_line(exc)}") from None
        for meta, value in zip(session.get_outputs(), results):
            out[port_key(manifest, graph, meta.name)] = np.asarray(value)
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def run_variant(folder: Path, manifest: Manifest, variant: str, inputs: dict[str, np.ndarray], *,
                threads: int = 1) -> dict[str, np.ndarray]:
    """Every graph of `variant` run once on CPU (one session each, `threads` threads); outputs keyed like the tests."""
    return _call(manifest, variant, _sessions(folder, manifest, variant, threads), inputs)


def _difference(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| element-wise in float64; 0 where both are equal (infinities) or both NaN, inf where one is NaN."""
    import numpy as np

    kind = np.complex128 if "c" in (got.dtype.kind, want.dtype.kind) else np.float64
    g, w = got.astype(kind), want.astype(kind)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(g - w)
    same = (g == w) | (np.isnan(g) & np.isnan(w))
    diff = np.where(same, 0.0, diff)
    return np.where(np.isnan(diff), np.inf, diff)


def _mismatch(got: Any, want: np.ndarray) -> str | None:
    import numpy as np

    if not isinstance(got, np.ndarray):
        return f"the output is a {type(got).__name__}, not an array"
    if got.shape != want.shape:
        return f"its shape is {list(got.shape)}, the expected {list(want.shape)}"
    if got.dtype != want.dtype and not (got.dtype.kind in "USO" and want.dtype.kind in "US"):
        return f"it is {got.dtype.name}, the expected {want.dtype.name}"
    return None


def compare(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float, atol: float, *,
            manifest: Manifest | None = None) -> list[OutputCheck]:
    """Each expected output judged: |got - want| <= atol + rtol * |want| element-wise (NaN matches NaN)."""
    import numpy as np

    checks = []
    for key, expected in want.items():
        graph, output = split_key(manifest, key)
        if key not in got:
            checks.append(OutputCheck(graph, output, None, False, "the graph gave no such output"))
            continue
        reason = _mismatch(got[key], expected)
        if reason:
            checks.append(OutputCheck(graph, output, None, False, reason))
        elif expected.dtype.kind in "USO":
            equal = bool(np.array_equal(got[key].astype(str), expected.astype(str)))
            checks.append(OutputCheck(graph, output, 0.0 if equal else math.inf, equal))
        else:
            diff = _difference(got[key], expected)
            bound = atol + rtol * np.abs(expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64))
            with np.errstate(invalid="ignore"):
                passed = bool(np.all((diff <= bound) | (diff == 0)))
            checks.append(OutputCheck(graph, output, float(diff.max()) if diff.size else 0.0, passed))
    return checks


def _is_class_scores(manifest: Manifest, graph: str, output: str, ref: np.ndarray) -> bool:
    """Rank 2 with more than one column, or an output with a labels file (arg-max over the last axis)."""
    section = manifest.project.models.get(graph)
    labels = section is not None and output in section.outputs and section.outputs[output].labels
    return ref.ndim >= 1 and ref.shape[-1] > 1 and (ref.ndim == 2 or bool(labels))


def _drift_one(manifest: Manifest, key: str, got: Any, ref: np.ndarray) -> dict:
    import numpy as np

    graph, output = split_key(manifest, key)
    entry: dict[str, Any] = {"graph": graph, "output": output, "max_abs": None, "rel_l2": None,
                             "argmax_agreement": None}
    if not isinstance(got, np.ndarray) or got.shape != ref.shape:
        return {**entry, "reason": "its shape differs from the reference's"}
    if ref.dtype.kind in "USO" or got.dtype.kind in "USO":
        equal = bool(np.array_equal(got.astype(str), ref.astype(str)))
        return {**entry, "max_abs": 0.0 if equal else math.inf, "rel_l2": 0.0 if equal else math.inf}
    diff = _difference(got, ref)
    norm_ref = float(np.linalg.norm(np.nan_to_num(ref.astype(np.float64 if ref.dtype.kind != "c" else np.complex128))))
    norm_diff = float(np.linalg.norm(diff))
    entry["max_abs"] = float(diff.max()) if diff.size else 0.0
    entry["rel_l2"] = 0.0 if norm_diff == 0 else (norm_diff / norm_ref if norm_ref > 0 else math.inf)
    if _is_class_scores(manifest, graph, output, ref) and ref.size and ref.dtype.kind in "fiub":
        agree = np.argmax(got.reshape(-1, ref.shape[-1]), axis=1) == np.argmax(ref.reshape(-1, ref.shape[-1]), axis=1)
        entry["argmax_agreement"] = float(agree.mean())
    return entry


def drift(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], manifest: Manifest) -> dict:
    """How far a variant's outputs are from the reference's: per output and the worst of each over all."""
    outputs = [_drift_one(manifest, key, got.get(key), value) for key, value in ref.items()]

    def worst(name: str, pick: Any) -> float | None:
        values = [o[name] for o in outputs if o.get(name) is not None]
        missing = any(o.get(name) is None for o in outputs) and name != "argmax_agreement"
        return math.inf if missing else (pick(values) if values else None)

    return {"max_abs": worst("max_abs", max), "rel_l2": worst("rel_l2", max),
            "argmax_agreement": worst("argmax_agreement", min), "outputs": outputs}


def _status_kib(field: str) -> int | None:
    """A `VmXXX:` line of /proc/self/status in bytes, or None where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset this process's peak resident set (VmHWM) to its current one; False where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _trim() -> None:
    """Give freed heap memory back to the system (glibc), so the next baseline is what is really in use."""
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc: the baseline may hold some freed memory
        pass


def _max_rss() -> int:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure(folder: Path, manifest: Manifest, variant: str, inputs: dict[str, np.ndarray], *,
            budget_s: float = 2.0, min_runs: int = 5, max_runs: int = 50, deadline: float | None = None,
            outputs: dict | None = None) -> dict:
    """Latency (median ms of one call over all graphs, after a warm-up, one thread), runs and peak memory.

    `deadline` (time.monotonic()) stops the runs early, after at least one; `outputs`, when
    given, receives the warm-up call's outputs (keyed like the tests)."""
    import gc

    gc.collect()
    _trim()
    before = _status_kib("VmRSS")
    exact = before is not None and _reset_peak()
    baseline = before if exact else _max_rss()
    sessions = _sessions(folder, manifest, variant, 1)
    first = _call(manifest, variant, sessions, inputs)
    if outputs is not None:
        outputs.update(first)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < budget_s):
        if times and deadline is not None and time.monotonic() >= deadline:
            break
        t0 = time.perf_counter()
        _call(manifest, variant, sessions, inputs)
        times.append(time.perf_counter() - t0)
    peak = _status_kib("VmHWM") if exact else _max_rss()
    del sessions
    return {"latency_ms": round(statistics.median(times) * 1000, 4), "runs": len(times),
            "peak_memory": max(0, (peak or 0) - (baseline or 0))}

