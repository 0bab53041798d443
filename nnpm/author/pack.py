"""Package folder → validated manifest (+ `.nnpm` archive and manifest.json on disk)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.specifiers import SpecifierSet

from nnpm.errors import ManifestError, PackageSafetyError
from nnpm.format.limits import MAX_FILES, MAX_MANIFEST_BYTES
from nnpm.format.manifest import FileEntry, Manifest
from nnpm.format.project import Project, load_project
from nnpm.format.safety import check_file
from nnpm.fsutil import atomic_write
from nnpm.hashing import file_digest

if TYPE_CHECKING:
    from nnpm.install.env import Environment


@dataclass(frozen=True)
class Built:
    """A validated package: its manifest and where each listed file lives on disk."""

    manifest: Manifest
    paths: dict[str, Path]


def build(folder: Path, *, allow_hardlinks: bool = False) -> Built:
    """Validate a package folder and compute its manifest; writes nothing."""
    from nnpm.format import onnxinfo

    folder = Path(folder)
    project = load_project(folder)
    rels = project.declared_files()
    info = None
    if project.model:
        info = onnxinfo.read_model(folder, project.model.file, allow_hardlinks=allow_hardlinks)
        declared = set(rels) - {project.model.file}
        for rel in info.external_files:
            if rel in declared:   # the registry hands its validator only the graph and its data files
                raise PackageSafetyError(f"the graph keeps external data in {rel!r}, which the package declares as "
                                         "its README, a labels file or an included file",
                                         hint="save the weights to a data file of their own")
        rels += [r for r in info.external_files if r not in rels]
        names = {o.name for o in info.signature.outputs}
        for out in project.model.outputs:
            if out not in names:
                raise ManifestError(f"the graph has no output {out!r}", file=str(folder / "nnpm.toml"),
                                    key=f"model.outputs.{out}", hint="outputs are: " + ", ".join(sorted(names)))
    if len(rels) > MAX_FILES:
        raise PackageSafetyError(f"a package may hold at most {MAX_FILES} files")
    paths, entries = {}, []
    for rel in sorted(rels):
        path = check_file(folder, rel, allow_hardlinks=allow_hardlinks)
        digest, size = file_digest(path)
        paths[rel] = path
        entries.append(FileEntry(rel, size, digest))
    manifest = Manifest(project=project, files=tuple(entries))
    if info is not None:
        manifest = Manifest(project=project, files=tuple(entries), signature=info.signature,
                            opsets=info.opsets, ir_version=info.ir_version, params=info.params)
    _check_labels(project, paths)
    raw = manifest.to_json()
    if len(raw) > MAX_MANIFEST_BYTES:
        raise PackageSafetyError(f"the manifest would be {len(raw)} bytes, over the limit of {MAX_MANIFEST_BYTES}",
                                 hint="list fewer files (put many small files in one archive file)")
    # Parsed back as a registry parses it: whatever the registry would refuse, pack refuses first.
    Manifest.from_json(raw, file=str(folder / "nnpm.toml"))
    return Built(manifest, paths)


def _check_labels(project: Project, paths: dict[str, Path]) -> None:
    from nnpm.format.labels import parse_labels

    for info in (project.model.outputs.values() if project.model else ()):
        if info.labels:
            parse_labels(paths[info.labels].read_bytes(), path=info.labels)


def default_archive_name(manifest: Manifest) -> str:
    """name-version.nnpm, as pip names wheels."""
    return f"{manifest.name}-{manifest.version}.nnpm"


def pack(folder: Path, out: Path | None = None, *, check: Callable[[Built], None] | None = None) -> tuple[Built, Path, Path]:
    """Write NAME-VERSION.nnpm and NAME-VERSION.manifest.json (default in FOLDER/dist/).

    `check` runs on the validated package before anything is written.
    """
    from nnpm.format.archive import write_archive

    built = build(folder)
    if check is not None:
        check(built)
    archive = Path(out) if out else Path(folder) / "dist" / default_archive_name(built.manifest)
    if archive.suffix != ".nnpm":
        raise ManifestError(f"output {archive} must end in .nnpm", hint="e.g. -o resnet18-1.0.0.nnpm")
    archive.parent.mkdir(parents=True, exist_ok=True)
    # Named after the archive so several packs can share one output folder.
    manifest_path = archive.with_name(archive.name[: -len(".nnpm")] + ".manifest.json")
    write_archive(built.manifest, built.paths, archive)
    atomic_write(manifest_path, built.manifest.to_json())
    return built, archive, manifest_path


def check_installed_wiring(project: Project, env: "Environment | None" = None) -> bool:
    """Check a pipeline project against the steps installed in `env`; False when some are missing."""
    from nnpm.errors import NotInstalledError
    from nnpm.format.wiring import check_pipeline
    from nnpm.install.env import open_env

    env = env or open_env()

    def installed(step: str, spec: SpecifierSet) -> Manifest | None:
        try:
            pkg = env.get(step)
        except NotInstalledError:
            return None
        return pkg.manifest if spec.contains(pkg.version, prereleases=True) else None

    return check_pipeline(project, installed) is not None
