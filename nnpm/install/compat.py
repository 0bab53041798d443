"""Does this machine's onnxruntime meet a package's `[requires]` and opsets?

Checked at install, so a package that cannot run here is refused with the versions named.
onnxruntime is not imported: its version comes from the installed distribution's metadata.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.version import InvalidVersion, Version

from nnpm.errors import RequirementError
from nnpm.format.manifest import Manifest

# Highest opset each onnxruntime release runs, from onnxruntime's compatibility table;
# a release newer than the table is assumed to run at least the last row.
_ORT_OPSETS = [  # (onnxruntime version, ai.onnx, ai.onnx.ml)
    ("1.14", 18, 3), ("1.15", 19, 3), ("1.17", 20, 4), ("1.18", 21, 4),
    ("1.21", 22, 5), ("1.23", 23, 5), ("1.24", 24, 5),
]


_DISTS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")
_DIST_INFO = re.compile(r"^(onnxruntime(?:[-_](?:gpu|directml|openvino))?)-([^-]+)\.dist-info\Z", re.I)


def onnxruntime_version() -> Version | None:
    """The installed onnxruntime version (any of its distributions), or None.

    Read from the `NAME-VERSION.dist-info` folder name on sys.path, which is where
    importlib.metadata looks too; importing that costs 17 ms on every install, so it is
    only the fallback (egg-info and other layouts)."""
    for entry in sys.path:
        try:
            names = [p.name for p in Path(entry or ".").glob("onnxruntime*.dist-info")]
        except OSError:
            continue
        for name in sorted(names):
            found = _DIST_INFO.match(name)
            if found:
                try:
                    return Version(found.group(2))
                except InvalidVersion:
                    pass
    from importlib import metadata

    for dist in _DISTS:
        try:
            return Version(metadata.version(dist))
        except metadata.PackageNotFoundError:
            continue
    return None


def max_opsets(ort: Version) -> dict[str, int]:
    """Highest opset per domain that this onnxruntime version runs."""
    best = {"": 17, "ai.onnx": 17, "ai.onnx.ml": 3}
    for release, onnx_opset, ml in _ORT_OPSETS:
        if ort >= Version(release):
            best = {"": onnx_opset, "ai.onnx": onnx_opset, "ai.onnx.ml": ml}
    return best


def check_runtime(manifest: Manifest, ort: Version | None = None) -> None:
    """Raise RequirementError when the installed onnxruntime cannot run this package."""
    ort = ort or onnxruntime_version()
    who = f"{manifest.name} {manifest.version}"
    if ort is None:
        raise RequirementError(f"{who} needs onnxruntime, which is not installed", hint="pip install onnxruntime")
    spec = manifest.project.requires.get("onnxruntime")
    if spec is not None and not spec.contains(ort, prereleases=True):
        raise RequirementError(f"{who} requires onnxruntime{spec}, but onnxruntime {ort} is installed",
                               hint=f"upgrade onnxruntime (pip install 'onnxruntime{spec}') or pick another version of {manifest.name}")
    limits = max_opsets(ort)
    for domain, version in manifest.opsets.items():
        limit = limits.get(domain)
        if limit is not None and version > limit:
            label = domain or "ai.onnx"
            raise RequirementError(f"{who} uses opset {label} {version}, but onnxruntime {ort} runs up to {limit}",
                                   hint="upgrade onnxruntime, or install an older version of the package")
