"""What the registry measures at publish, inside the validation worker, after its checks (docs/format.md,
"Measured by the registry").

`measure_package(root, manifest, budget=...)` runs the reference on the package's test
inputs (its self-test: a failure is a ModelError, so the publish is refused 422) or on
seeded inputs when it has no `[tests]`, then every variant on the same inputs: drift from
the reference's outputs, median latency, peak memory (nnpm/format/selftest.py does the
running and judging, as `nnpm test` does). The whole measuring phase keeps within
`budget` seconds: a variant that no time is left for, or whose execution providers this
machine lacks, is recorded as skipped. The answer is JSON-safe (no NaN or infinity).

`bounded(value)` is the server's side: the worker's answer checked for shape and size
before it is stored with the version (`versions.measured_json`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from nnpm.errors import InputError, ManifestError, ModelError
from nnpm.format.limits import KIB
from nnpm.format.manifest import Manifest
from nnpm.format.variants import REFERENCE

PER_VARIANT_S = 2.0          # timed runs of one variant stop after this (and at least MIN_RUNS)
MIN_RUNS, MAX_RUNS = 5, 50
MAX_MEASURED_BYTES = 256 * KIB


def machine() -> dict:
    """The CPU model, the cores this process may use and the onnxruntime version."""
    import onnxruntime

    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                    cpu = value.strip()[:200]
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return {"cpu": cpu or platform.processor() or platform.machine() or None, "cores": cores,
            "onnxruntime": onnxruntime.__version__}


def warm_runtime() -> None:
    """Create and run one tiny session, so that onnxruntime's one-time set-up is not counted against the
    first variant measured (its latency and peak memory)."""
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warm", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.ones((1, 4), np.float32)})


def _test_arrays(root: Path, manifest: Manifest) -> tuple[dict, dict]:
    """The package's test inputs and expected outputs, checked against its signatures (422 when they do not fit)."""
    from nnpm.format.selftest import check_test_arrays, load_arrays

    tests = manifest.project.tests
    assert tests is not None
    try:
        inputs = load_arrays(root / tests.inputs, what="the test inputs")
        outputs = load_arrays(root / tests.outputs, what="the test outputs")
        check_test_arrays(manifest, inputs, outputs)
    except ManifestError as exc:
        exc.status = 422
        raise
    return inputs, outputs


def _self_test(manifest: Manifest, got: dict, expected: dict) -> dict:
    """The reference's outputs judged against the expected ones; ModelError naming the worst failing output."""
    from nnpm.format.selftest import compare

    tests = manifest.project.tests
    assert tests is not None
    checks = compare(got, expected, tests.rtol, tests.atol, manifest=manifest)
    failed = [c for c in checks if not c.passed]
    if failed:
        worst = max(failed, key=lambda c: -1.0 if c.max_abs is None else c.max_abs)
        what = worst.reason or (f"differs from {tests.outputs} by up to {worst.max_abs:.6g} "
                                f"(allowed: {tests.atol:g} + {tests.rtol:g} × |expected|)")
        raise ModelError(f"the self-test fails: graph {worst.graph!r}, output {worst.output!r} {what}"
                         + (f" ({len(failed)} outputs fail)" if len(failed) > 1 else ""),
                         hint="run 'nnpm test' on the package; write the expected outputs again if the graph changed")
    return {"passed": True, "outputs": [c.to_dict() for c in checks]}


def _missing_providers(manifest: Manifest, variant: str) -> list[str]:
    import onnxruntime

    section = manifest.project.variants.get(variant)
    have = set(onnxruntime.get_available_providers())
    return [p for p in (section.providers if section else ()) if p not in have]


def _measure_variant(root: Path, manifest: Manifest, variant: str, inputs: dict, ref: dict | None,
                     until: float, per_variant: float = PER_VARIANT_S) -> tuple[dict, dict]:
    """One variant's latency, runs, peak memory and drift from `ref` (None for the reference); and its outputs."""
    from nnpm.format.selftest import drift, measure

    outputs: dict = {}
    left = max(0.0, until - time.monotonic())
    result = measure(root, manifest, variant, inputs, budget_s=min(per_variant, left / 2), min_runs=MIN_RUNS,
                     max_runs=MAX_RUNS, deadline=until, outputs=outputs)
    result["drift"] = drift(outputs, ref, manifest) if ref is not None and variant != REFERENCE else None
    return result, outputs


def measure_package(root: Path, manifest: Manifest, *, budget: float, per_variant: float = PER_VARIANT_S) -> dict:
    """The `measured` block of one version (see the module docstring); ModelError when the self-test fails."""
    from nnpm.format.selftest import seeded_inputs

    deadline = time.monotonic() + budget * 0.9
    tests = manifest.project.tests
    measured: dict[str, Any] = {"machine": machine(), "inputs": "tests" if tests else "seeded", "self_test": None,
                                "variants": {}}
    variants = manifest.variant_names()
    warm_runtime()
    try:
        inputs, expected = _test_arrays(root, manifest) if tests else (seeded_inputs(manifest), None)
    except InputError as exc:
        measured["variants"] = {v: {"skipped": exc.message} for v in variants}
        return json_safe(measured)
    ref = None
    for i, variant in enumerate(variants):
        missing = _missing_providers(manifest, variant)
        now = time.monotonic()
        if missing:
            measured["variants"][variant] = {"skipped": "needs " + ", ".join(missing)}
        elif now >= deadline and variant != REFERENCE:
            measured["variants"][variant] = {"skipped": "the registry's time for measuring ran out"}
        else:
            until = now + max(0.0, deadline - now) / (len(variants) - i)
            try:
                measured["variants"][variant], outputs = _measure_variant(root, manifest, variant, inputs, ref, until,
                                                                          per_variant)
            except ModelError as exc:
                if variant == REFERENCE and tests:
                    raise
                measured["variants"][variant] = {"error": exc.message}
                continue
            if variant == REFERENCE:
                ref = outputs
                if expected is not None:
                    measured["self_test"] = _self_test(manifest, outputs, expected)
    return json_safe(measured)


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def bounded(value: Any) -> dict | None:
    """A worker's `measured` answer as it may be stored: a dict of JSON within MAX_MEASURED_BYTES, else trimmed or None.

    Past the limit the per-output lists go (the summaries stay); a value that is not a
    dict with a `variants` dict is dropped."""
    if not isinstance(value, dict) or not isinstance(value.get("variants"), dict):
        return None
    value = json_safe(value)
    if len(json.dumps(value)) > MAX_MEASURED_BYTES:
        if isinstance(value.get("self_test"), dict):
            value["self_test"].pop("outputs", None)
        for entry in value["variants"].values():
            if isinstance(entry, dict) and isinstance(entry.get("drift"), dict):
                entry["drift"].pop("outputs", None)
    return value if len(json.dumps(value)) <= MAX_MEASURED_BYTES else None
