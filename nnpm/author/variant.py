"""`nnpm variant add`: another precision of every graph of a package, written beside the reference and declared.

Each graph of the reference (`[model]` or `[models.NAME]`) goes through one onnxruntime tool:
dynamic quantisation, static QDQ quantisation over calibration arrays, or float16 conversion
with the I/O types kept. The new graphs (and their external data, when the reference keeps
its weights outside the graph) are written into a staging folder inside the package, loaded
once by onnxruntime, then renamed into place; only then is a `[variants.NAME]` table
appended to nnpm.toml, whose other bytes stay as the author wrote them.

Calibration arrays (`--calibrate FILE.npz`) are keyed like the self-test's: the input name
for a one-graph package, `GRAPH/INPUT` for several. An array of the input's rank is one
batch; an array of one rank more is a stack of samples along its first axis, fed one by
one. So `--calibrate tests/inputs.npz` works, and so does a stack of real inputs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnpm.errors import InputError, ManifestError, ModelError
from nnpm.format.limits import MAX_PROTO_SIZE
from nnpm.format.project import TOML_NAME, Project, load_project, project_from_dict
from nnpm.format.variants import REFERENCE
from nnpm.fsutil import atomic_write, remove_tree

if TYPE_CHECKING:
    import numpy as np

    from nnpm.format.onnxinfo import ModelInfo

QUANTIZE = ("int8", "uint8")
_QUANT_TYPE = {"int8": "QInt8", "uint8": "QUInt8"}
_DYNAMIC = "onnxruntime.quantization.quantize_dynamic"
_STATIC = "onnxruntime.quantization.quantize_static"
_FLOAT16 = "onnxruntime.transformers.float16.convert_float_to_float16"
_FILE_SUFFIX = {"float16": "fp16"}   # model_fp16.onnx, as people name them
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+\Z", re.ASCII)


@dataclass(frozen=True)
class Recipe:
    """What `variant add` makes: the variant's name and precision, the tool and its parameters."""

    name: str
    precision: str
    tool: str
    parameters: dict = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        """What the variant's graph files are named after: model_int8.onnx, encoder_fp16.onnx."""
        return _FILE_SUFFIX.get(self.name, self.name)


@dataclass(frozen=True)
class AddedVariant:
    """A variant written: its recipe, graph → file, and the external-data files written with them."""

    recipe: Recipe
    files: dict[str, str]
    data: tuple[str, ...] = ()


def make_recipe(*, quantize: str | None = None, float16: bool = False, calibrated: bool = False,
                name: str | None = None) -> Recipe:
    """The recipe the options ask for; InputError when they ask for none, two, or calibration without quantisation."""
    if (quantize is None) == (not float16):
        raise InputError("say what the variant is: --quantize int8, --quantize uint8 or --float16 (one of them)")
    if quantize is not None and quantize not in QUANTIZE:
        raise InputError(f"--quantize {quantize!r}: nnpm quantises to int8 or uint8", hint="--quantize int8")
    if calibrated and quantize is None:
        raise InputError("--calibrate goes with --quantize (static quantisation); --float16 needs no calibration")
    if float16:
        return Recipe(name or "float16", "float16", _FLOAT16, {"keep_io_types": True})
    quant_type = _QUANT_TYPE[quantize]
    if calibrated:
        # Activations as uint8 and per-channel weights: onnxruntime's own advice for x86 CPUs (U8S8),
        # where int8 activations take slower kernels.
        return Recipe(name or quantize, quantize, _STATIC, {
            "quant_format": "QDQ", "weight_type": quant_type, "activation_type": "QUInt8",
            "calibrate_method": "MinMax", "per_channel": True})
    return Recipe(name or quantize, quantize, _DYNAMIC, {"weight_type": quant_type, "per_channel": False})


def variant_file(reference: str, suffix: str) -> str:
    """The variant's graph file beside the reference's: graphs/enc.onnx → graphs/enc_int8.onnx."""
    head, _, base = reference.rpartition("/")
    stem = base[: -len(".onnx")] if base.endswith(".onnx") else base
    return f"{head}/{stem}_{suffix}.onnx" if head else f"{stem}_{suffix}.onnx"


def add_variant(folder: Path, *, quantize: str | None = None, float16: bool = False,
                calibrate: Path | None = None, name: str | None = None) -> AddedVariant:
    """Write a variant of every graph of the package in `folder` and declare it; nothing is left on failure."""
    from nnpm.format.onnxinfo import read_model

    folder = Path(folder)
    recipe = make_recipe(quantize=quantize, float16=float16, calibrated=calibrate is not None, name=name)
    project = load_project(folder)
    toml = folder / TOML_NAME
    if project.pipeline is not None:
        raise ManifestError("a pipeline has no graphs of its own to make a variant of", file=str(toml),
                            key="pipeline", hint="add the variant to the packages of its steps")
    if recipe.name in project.variants:
        raise ManifestError(f"variant {recipe.name!r} exists already", file=str(toml), key=f"variants.{recipe.name}",
                            hint="pass --name for another name, or delete its table and files first")
    files = {graph: variant_file(section.file, recipe.suffix) for graph, section in project.models.items()}
    _declared(toml, recipe, files)   # a bad name or clashing file is refused before any work
    infos = {graph: read_model(folder, section.file) for graph, section in project.models.items()}
    external = {graph for graph, info in infos.items() if info.external_files}
    for rel in (*files.values(), *(files[graph] + ".data" for graph in external)):
        if (folder / rel).exists():
            raise ManifestError(f"{folder / rel} exists already", hint="delete it, or pass --name for another name")
    if recipe.tool == _FLOAT16:
        _check_float16_fits(folder, project, infos)
    samples = _calibration(Path(calibrate), infos) if calibrate is not None else None
    if samples is not None:
        recipe = Recipe(recipe.name, recipe.precision, recipe.tool,
                        recipe.parameters | {"calibration_samples": max(len(s) for s in samples.values())})
    text = _declared(toml, recipe, files)
    data = _write_graphs(folder, project, recipe, files, external, samples)
    atomic_write(toml, text.encode("utf-8"))
    return AddedVariant(recipe, files, data)


def _declared(toml: Path, recipe: Recipe, files: dict[str, str]) -> str:
    """nnpm.toml with the variant's table appended, checked as pack will read it."""
    import tomllib

    text = appended_toml(toml.read_text(encoding="utf-8"), recipe, files, _tool_version())
    project_from_dict(tomllib.loads(text), file=str(toml))
    return text


def _check_float16_fits(folder: Path, project: Project, infos: dict[str, ModelInfo]) -> None:
    """The float16 converter holds a graph with its weights in one protobuf, which cannot pass 2 GB."""
    for graph, info in infos.items():
        rels = (project.models[graph].file, *info.external_files)
        if sum((folder / rel).stat().st_size for rel in rels) > MAX_PROTO_SIZE:
            raise ModelError(f"graph {graph!r} keeps over 2 GB of weights in external data, which the float16 "
                             "converter cannot keep: it holds the whole graph in one protobuf",
                             hint="convert it with a tool that streams external data, then declare the "
                                  "[variants.NAME] table by hand")


def _tool_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def toml_value(value: Any) -> str:
    """A TOML value on one line: strings, numbers, booleans, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)   # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k if _BARE_KEY.match(k) else json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def appended_toml(text: str, recipe: Recipe, files: dict[str, str], version: str) -> str:
    """The author's nnpm.toml, unchanged, with the `[variants.NAME]` table added at its end."""
    table = {"precision": recipe.precision, "derived-from": REFERENCE, "models": files,
             "transform": {"tool": recipe.tool, "version": version, "parameters": recipe.parameters}}
    lines = [f"[variants.{recipe.name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    head = text if not text or text.endswith("\n") else text + "\n"
    return head + ("\n" if head.strip() else "") + "\n".join(lines) + "\n"


def _calibration(path: Path, infos: dict[str, ModelInfo]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Graph → the feeds to calibrate it with, read from an .npz keyed like the self-test's inputs."""
    from nnpm.format.selftest import load_arrays

    arrays = load_arrays(path, what="the calibration data")
    used, out = set(), {}
    for graph, info in infos.items():
        per_input = {}
        for spec in info.signature.inputs:
            key = spec.name if len(infos) == 1 else f"{graph}/{spec.name}"
            if key not in arrays:
                raise InputError(f"the calibration data ({path.name}) has no array {key!r}",
                                 hint="it needs one array (or a stack of them) per graph input")
            used.add(key)
            per_input[spec.name] = _samples(arrays[key], spec, key, path.name)
        counts = sorted({len(v) for v in per_input.values()})
        if len(counts) > 1:
            raise InputError(f"the calibration data ({path.name}) stacks {counts[0]} samples for one input of "
                             f"graph {graph!r} and {counts[-1]} for another")
        out[graph] = [{k: v[i] for k, v in per_input.items()} for i in range(counts[0] if counts else 1)]
    extra = sorted(set(arrays) - used)
    if extra:
        raise InputError(f"the calibration data ({path.name}) holds {extra[0]!r}, which is no graph input",
                         hint="its keys are input names (GRAPH/INPUT for a package of several graphs)")
    return out


def _samples(array: np.ndarray, spec: Any, key: str, file: str) -> list[np.ndarray]:
    """One batch (the input's rank) or a stack of samples (one rank more), cast to the input's dtype."""
    import numpy as np

    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        dtype = array.dtype
    array = array.astype(dtype, copy=False) if array.dtype.kind in "fiub" and dtype.kind in "fiub" else array
    rank = len(spec.shape) if spec.shape is not None else array.ndim
    if array.ndim == rank:
        return [array]
    if array.ndim == rank + 1:
        return list(array)
    raise InputError(f"the calibration data ({file}): {key!r} has rank {array.ndim}; the input has rank {rank}",
                     hint=f"give one batch of rank {rank}, or a stack of them (rank {rank + 1})")


@contextlib.contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A scratch folder inside the package (same file system, so files rename into place); always removed."""
    path = Path(tempfile.mkdtemp(prefix=".nnpm-variant-", dir=folder))
    try:
        yield path
    finally:
        remove_tree(path)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's tools log advice (pre-processing, op coverage) to the root logger; the CLI prints its own."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _write_graphs(folder: Path, project: Project, recipe: Recipe, files: dict[str, str], external: set[str],
                  samples: dict[str, list] | None) -> tuple[str, ...]:
    """Transform every graph into the staging folder, check onnxruntime loads each, then rename all into place.

    Returns the external-data files written (a tool keeps small tensors inside the graph, so there may be none)."""
    moves, data = [], []
    with _staging(folder) as stage:
        for i, (graph, section) in enumerate(project.models.items()):
            out = stage / str(i) / files[graph].rpartition("/")[2]
            out.parent.mkdir()
            _transform(folder / section.file, out, recipe, graph in external, (samples or {}).get(graph))
            if not out.is_file():
                raise ModelError(f"{recipe.tool} wrote no graph for {graph!r}")
            _check_loads(out, graph, recipe.name)
            moves.append((out, folder / files[graph]))
            if out.with_name(out.name + ".data").is_file():
                moves.append((out.with_name(out.name + ".data"), folder / (files[graph] + ".data")))
                data.append(files[graph] + ".data")
        for src, dst in moves:
            os.replace(src, dst)
    return tuple(data)


def _transform(source: Path, out: Path, recipe: Recipe, external: bool, samples: list | None) -> None:
    """Run the recipe's tool on one reference graph; every failure leaves as one ModelError."""
    import onnx

    model = onnx.load(str(source))   # with its external data: the tools need the weights
    try:
        with _quiet():
            _run_tool(model, out, recipe, external, samples)
    except (ModelError, InputError):
        raise
    except Exception as exc:  # the tools raise anything from ValueError to onnxruntime's own errors
        text = str(exc).strip().splitlines()
        raise ModelError(f"{recipe.tool} failed on {source.name}: {(text[0] if text else type(exc).__name__)[:300]}",
                         hint="another of --quantize int8, --quantize uint8 or --float16 may suit this graph") from None


def _run_tool(model: Any, out: Path, recipe: Recipe, external: bool, samples: list | None) -> None:
    from onnxruntime.quantization import QuantType

    params = recipe.parameters
    if recipe.tool == _DYNAMIC:
        from onnxruntime.quantization import quantize_dynamic

        quantize_dynamic(model, out, weight_type=getattr(QuantType, params["weight_type"]),
                         use_external_data_format=external)
    elif recipe.tool == _STATIC:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        quantize_static(model, out, _reader(samples or []), quant_format=QuantFormat.QDQ,
                        activation_type=getattr(QuantType, params["activation_type"]),
                        weight_type=getattr(QuantType, params["weight_type"]),
                        calibrate_method=CalibrationMethod.MinMax, per_channel=params["per_channel"],
                        use_external_data_format=external)
    else:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
        from onnxruntime.transformers.onnx_model import OnnxModel

        half = OnnxModel(convert_float_to_float16(model, keep_io_types=True))
        half.topological_sort()   # the converter appends the Casts it adds for kept I/O types at the end
        onnx.save_model(half.model, str(out), save_as_external_data=external, all_tensors_to_one_file=True,
                        location=out.name + ".data", size_threshold=1024)


def _reader(samples: list[dict]) -> Any:
    """A CalibrationDataReader over prepared feeds."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(samples)

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

        def rewind(self) -> None:
            self.feeds = iter(samples)

    return Reader()


def _check_loads(path: Path, graph: str, variant: str) -> None:
    """A graph pack or onnxruntime would refuse is refused here, not at pack or install."""
    import onnxruntime as ort

    from nnpm.format.onnxinfo import read_model

    try:
        read_model(path.parent, path.name)
    except ModelError as exc:
        raise ModelError(f"the {variant} graph made from {graph!r} is not valid ONNX: {exc.message}",
                         hint="report this to the tool's authors; try another of --quantize or --float16") from None

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        text = str(exc).strip().splitlines()
        raise ModelError(f"onnxruntime {ort.__version__} cannot load the {variant} graph made from {graph!r}: "
                         f"{(text[0] if text else type(exc).__name__)[:300]}",
                         hint="try --quantize uint8 or --float16") from None
