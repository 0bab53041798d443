"""A pipeline's fused graph: built from its installed steps, cached per environment, weights left in place.

Steps with external data (torch's exporter, anything over 2 GB) are fused without loading
their weights: each external location is checked the way nnpm checks it at pack (a plain
relative path inside the package, the byte range inside a listed file, which `verify()`
has hashed), and renamed to `<step>/<location>`. The cached graph lives in its own folder
beside hard links to the steps' verified files:

    ENV/cache/fused/<name>-<version>-<key>/
        model.onnx                 the fused graph
        <step>/<location>          links to each step's external-data files

onnxruntime reads the data through the links; nothing is copied or loaded into memory to
fuse. The key covers nnpm's and onnx's versions, every manifest involved and the inode of
every linked file, so a changed or re-installed step means a new graph. Small external
tensors inside subgraphs are read into the graph (the checker would otherwise look for
their files relative to the working directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from nnpm.errors import ModelError, NnpmError
from nnpm.format.project import step_graph
from nnpm.runtime.compose import fuse
from nnpm.runtime.steps import installed_steps, wiring_of

if TYPE_CHECKING:
    import onnx

    from nnpm.install.env import Environment, InstalledPackage

GRAPH_NAME = "model.onnx"
DataFiles = dict[str, Path]   # location in the fused graph -> verified file it reads


def _load_step(pkg: "InstalledPackage", prefix: str, graph: str | None = None) -> tuple["onnx.ModelProto", DataFiles]:
    """One model step's graph (of its installed variant), its external data checked and relocated under `prefix`."""
    import onnx

    rel = pkg.manifest.graph(pkg.variant, graph).file
    try:
        model = onnx.load(str(pkg.path / rel), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{pkg.name} {pkg.version}: {rel} is not readable ({type(exc).__name__})") from None
    return model, _relocate(model, pkg, rel, prefix)


def _relocate(model: "onnx.ModelProto", pkg: "InstalledPackage", rel: str, prefix: str) -> DataFiles:
    from onnx import TensorProto

    from nnpm.format.onnxinfo import check_external, tensors

    listed = {f.path for f in pkg.files}
    model_dir = os.path.dirname(rel)

    def source_of(tensor) -> str:
        source = check_external(tensor, pkg.path, model_dir, allow_hardlinks=True)
        if source not in listed:
            raise ModelError(f"{pkg.name} {pkg.version}: tensor {tensor.name!r} reads {source!r}, "
                             "which is not in the package's manifest")
        return source

    data: DataFiles = {}
    for tensor in model.graph.initializer:      # top-level weights stay in their files
        if tensor.data_location == TensorProto.EXTERNAL:
            location = prefix + source_of(tensor)
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
            data[location] = pkg.path / location[len(prefix):]
    for tensor in tensors(model):               # the rest (subgraphs, attributes) is read in
        if tensor.data_location == TensorProto.EXTERNAL and _location(tensor) not in data:
            _inline(tensor, pkg.path / source_of(tensor))
    return data


def _location(tensor: "onnx.TensorProto") -> str | None:
    return next((e.value for e in tensor.external_data if e.key == "location"), None)


def _inline(tensor: "onnx.TensorProto", source: Path) -> None:
    from onnx import TensorProto

    info = {e.key: e.value for e in tensor.external_data}
    with open(source, "rb") as f:
        f.seek(int(info.get("offset", 0)))
        raw = f.read(int(info["length"])) if "length" in info else f.read()
    del tensor.external_data[:]
    tensor.data_location = TensorProto.DEFAULT
    tensor.raw_data = raw


def fused_graph(pkg: "InstalledPackage", env: "Environment", prefix: str = "") -> tuple["onnx.ModelProto", DataFiles]:
    """One ModelProto for a pipeline (nested pipelines fused recursively) and the data files it reads."""
    wiring, _ = wiring_of(pkg, env)
    models, data = {}, {}
    for step, sub in installed_steps(pkg, env, verify=True).items():
        if sub.manifest.project.model:
            models[step], found = _load_step(sub, f"{prefix}{step}/", step_graph(step))
        else:
            models[step], found = fused_graph(sub, env, f"{prefix}{step}/")
        data.update(found)
    return fuse(models, wiring, name=pkg.name), data


def _cache_key(pkg: "InstalledPackage", env: "Environment") -> str:
    import onnx

    from nnpm._version import __version__

    # A new nnpm or onnx may fuse differently; a re-installed step has new inodes.
    parts = [__version__, onnx.__version__, pkg.manifest.to_json().decode()]
    for step, p in sorted(installed_steps(pkg, env, verify=False).items()):
        if p.manifest.project.pipeline:
            parts.append(_cache_key(p, env))
        else:
            parts.append(p.manifest.to_json().decode())
            parts += [os.stat(p.path / f.path).st_ino for f in p.files]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def fused_path(pkg: "InstalledPackage", env: "Environment") -> Path:
    """The cached fused graph of a pipeline, built on first use."""
    folder = env.cache_dir() / "fused" / f"{pkg.name}-{pkg.version}-{_cache_key(pkg, env)[:16]}"
    if (folder / GRAPH_NAME).exists():
        _verify_steps(pkg, env)  # a tampered step must not hide behind a cached graph
        return folder / GRAPH_NAME
    proto, data = fused_graph(pkg, env)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    write_model(proto, data, tmp / GRAPH_NAME, link=True)
    try:
        os.replace(tmp, folder)
    except OSError:   # another process built it meanwhile
        from nnpm.fsutil import remove_tree

        remove_tree(tmp)
    return folder / GRAPH_NAME


def write_model(proto: "onnx.ModelProto", data: DataFiles, path: Path, *, link: bool, data_dir: str = "") -> None:
    """Write a fused graph and its data files beside it: hard links into the cache, copies for the user.

    `data_dir` puts the data files in a folder of that name beside `path` (and says so in the graph).
    """
    import onnx

    from nnpm.fsutil import atomic_path

    if data_dir:
        data = _move_locations(proto, data, data_dir.rstrip("/") + "/")
    path.parent.mkdir(parents=True, exist_ok=True)
    for location, source in data.items():
        target = path.parent / location
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            if not link:
                raise OSError("a copy was asked for")
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    try:
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp))
    except ValueError as exc:  # protobuf refuses a message of 2 GiB or more
        raise NnpmError(f"the fused graph is too large to save as one file ({exc})",
                        hint="keep the steps' weights as external data") from None


def _move_locations(proto: "onnx.ModelProto", data: DataFiles, prefix: str) -> DataFiles:
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value in data:
                entry.value = prefix + entry.value
    return {prefix + location: source for location, source in data.items()}


def _verify_steps(pkg: "InstalledPackage", env: "Environment") -> None:
    """Verify every step's files, and the steps of steps that are pipelines themselves."""
    for step in installed_steps(pkg, env, verify=True).values():
        if step.manifest.project.pipeline:
            _verify_steps(step, env)
