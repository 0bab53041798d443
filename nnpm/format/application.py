"""An application's project file: which packages it uses, found by walking up from a folder.

A project is a folder whose `nnpm.toml` holds a `[project]` table, or whose
`pyproject.toml` holds `[tool.nnpm]`; either way the same two tables:

    [project]
    name = "my-app"
    description = "optional"

    [dependencies]
    resnet18 = ">=1.0"
    digits = { version = "==1.0.0", variant = "float16" }
    imagenet-classifier = { version = "*", prefer = "speed", max-drift = 0.05 }

A package's own nnpm.toml (with `[package]`) is not a project; discovery walks past it.
Reading here is tomllib only: `nnpm.load` asks "am I in a project?" on every call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet

from nnpm.errors import ManifestError
from nnpm.format.fields import canonical_name, parse_specifier, table, text
from nnpm.format.project import TOML_NAME
from nnpm.format.variants import PREFER, VARIANT_NAME

PYPROJECT = "pyproject.toml"
PROJECT_LOCK = "nnpm.lock"        # beside the project file, committed
ENV_FOLDER = ".nnpm"              # the project's environment, git-ignored
_TOP = {"project", "dependencies"}
_DEP_KEYS = {"version", "variant", "prefer", "max-drift"}


@dataclass(frozen=True)
class Dependency:
    """One `[dependencies]` entry: a specifier and, optionally, a pinned variant or a policy."""

    name: str
    specifier: SpecifierSet
    variant: str | None = None
    prefer: str = "reference"
    max_drift: float | None = None

    @property
    def requirement(self) -> str:
        """`name` plus its specifier, as the resolver takes it."""
        return f"{self.name}{self.specifier}"

    def key(self) -> str:
        """The entry in one stable line, as the lock records what led to it."""
        out = self.requirement
        if self.variant:
            out += f"; variant={self.variant}"
        if self.prefer != "reference":
            out += f"; prefer={self.prefer}"
        if self.max_drift is not None:
            out += f"; max-drift={self.max_drift:g}"
        return out


@dataclass(frozen=True)
class Application:
    """A parsed project file: where it is, its name, and its dependencies by canonical name."""

    file: Path
    name: str
    description: str | None = None
    dependencies: dict[str, Dependency] = field(default_factory=dict)
    in_pyproject: bool = False

    @property
    def root(self) -> Path:
        """The project folder."""
        return self.file.parent

    @property
    def lock_path(self) -> Path:
        """The committed lock file."""
        return self.root / PROJECT_LOCK

    @property
    def env_dir(self) -> Path:
        """The project's environment folder."""
        return self.root / ENV_FOLDER

    @property
    def table_path(self) -> tuple[str, ...]:
        """Where `[dependencies]` sits in the file's TOML tree."""
        return ("tool", "nnpm", "dependencies") if self.in_pyproject else ("dependencies",)


def parse_dependency(raw_name: str, value: Any, *, file: str | None) -> Dependency:
    """One dependency entry: a specifier string, or a table with version and variant or policy."""
    key = f"dependencies.{raw_name}"
    name = canonical_name(raw_name, file=file, key=key)
    if isinstance(value, str):
        return Dependency(name, parse_specifier(value, file=file, key=key))
    data = table(value, key, file, _DEP_KEYS)
    spec = parse_specifier(data.get("version", "*"), file=file, key=f"{key}.version")
    variant = text(data, "variant", file, key)
    if variant is not None and variant != "reference" and not VARIANT_NAME.match(variant):
        raise ManifestError(f"{variant!r} is not a variant name", file=file, key=f"{key}.variant")
    prefer = text(data, "prefer", file, key, default="reference")
    if prefer not in PREFER:
        raise ManifestError(f"must be one of {', '.join(PREFER)}", file=file, key=f"{key}.prefer")
    drift = data.get("max-drift")
    if drift is not None and (isinstance(drift, bool) or not isinstance(drift, (int, float)) or not 0 <= drift < 1e6):
        raise ManifestError("must be a number of at least 0", file=file, key=f"{key}.max-drift")
    if variant is not None and (prefer != "reference" or drift is not None):
        raise ManifestError("pins a variant and asks for a policy; give one of them", file=file, key=key)
    return Dependency(name, spec, variant, prefer, None if drift is None else float(drift))


def application_from_dict(data: Any, path: Path, *, in_pyproject: bool = False, fallback_name: str = "") -> Application:
    """Validate the `[project]` and `[dependencies]` tables of a project file."""
    file = str(path)
    data = table(data, "tool.nnpm" if in_pyproject else "", file, _TOP)
    proj = table(data.get("project", {}), "project", file, {"name", "description"})
    raw_name = text(proj, "name", file, "project", required=not in_pyproject) or fallback_name or path.parent.name
    name = canonical_name(raw_name, file=file, key="project.name")
    deps: dict[str, Dependency] = {}
    for raw, value in table(data.get("dependencies", {}), "dependencies", file).items():
        dep = parse_dependency(raw, value, file=file)
        if dep.name in deps:
            raise ManifestError(f"{raw!r} is listed twice (names compare as PEP 503)", file=file,
                                key=f"dependencies.{raw}")
        deps[dep.name] = dep
    return Application(path, name, text(proj, "description", file, "project"), deps, in_pyproject)


def _read(path: Path) -> dict:
    import tomllib  # only once a project file is found: outside a project, `nnpm.load` never parses TOML

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"is not valid TOML: {exc}", file=str(path)) from None
    except OSError as exc:
        raise ManifestError(f"cannot be read: {exc.strerror}", file=str(path)) from None


def read_application(folder: Path) -> Application | None:
    """The project whose file is in `folder` (nnpm.toml first, then pyproject.toml), or None."""
    toml = folder / TOML_NAME
    if toml.is_file():
        data = _read(toml)
        if "project" in data:
            if "package" in data:
                raise ManifestError("holds both [package] and [project]; a folder is a package or an application",
                                    file=str(toml), hint="move the application's tables to the folder above")
            return application_from_dict(data, toml)
    pyproject = folder / PYPROJECT
    if pyproject.is_file():
        data = _read(pyproject)
        tool = data.get("tool", {}).get("nnpm") if isinstance(data.get("tool"), dict) else None
        if tool is not None:
            py_name = data.get("project", {}).get("name") if isinstance(data.get("project"), dict) else None
            return application_from_dict(tool, pyproject, in_pyproject=True,
                                         fallback_name=py_name if isinstance(py_name, str) else "")
    return None


def find_application(start: Path | None = None) -> Application | None:
    """The nearest project at or above `start` (default: the current folder), or None."""
    here = Path(start or os.getcwd()).absolute()
    for folder in (here, *here.parents):
        found = read_application(folder)
        if found is not None:
            return found
    return None


def project_from_environment(project: "str | os.PathLike[str] | None" = None, *,
                             no_project: bool = False) -> Application | None:
    """The project in use: `project` (--project), else NNPM_PROJECT, else found from the current folder.

    `no_project` (--no-project, or NNPM_NO_PROJECT=1) ignores any project."""
    if no_project or os.environ.get("NNPM_NO_PROJECT", "") not in ("", "0"):
        return None
    named = project or os.environ.get("NNPM_PROJECT")
    if not named:
        return find_application()
    folder = Path(named).expanduser()
    if folder.is_file():
        folder = folder.parent
    found = read_application(folder) if folder.is_dir() else None
    if found is None:
        raise ManifestError(f"{named} is not a project: no nnpm.toml with [project] and no pyproject.toml "
                            "with [tool.nnpm] there", hint="give the project folder, or run 'nnpm add NAME' there to start one")
    return found
