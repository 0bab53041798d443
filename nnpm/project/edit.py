"""Changing a project file's `[dependencies]` with tomlkit, so its comments and layout stay as written."""

from __future__ import annotations

from pathlib import Path

from nnpm.errors import ManifestError
from nnpm.format.application import Application, Dependency, application_from_dict
from nnpm.format.project import TOML_NAME


def new_project_text(folder: Path) -> str:
    """The nnpm.toml `nnpm add` writes in a folder that is not a project yet."""
    from nnpm.format.fields import canonical_name

    try:
        name = canonical_name(folder.name)
    except ManifestError:
        name = "app"
    return (f'[project]\nname = "{name}"\n\n'
            "# The models this application uses: name = \"PEP 440 specifier\", or a table with\n"
            "# version and variant = \"int8\" (or prefer = \"speed\", max-drift = 0.05).\n[dependencies]\n")


def start_project(folder: Path) -> Path:
    """Make `folder` a project: `[tool.nnpm]` added to its pyproject.toml, else a fresh nnpm.toml."""
    from nnpm.format.application import PYPROJECT
    from nnpm.fsutil import atomic_write

    pyproject = folder / PYPROJECT
    if pyproject.is_file():   # a Python application: its models go beside its code's requirements
        text = pyproject.read_text(encoding="utf-8")
        atomic_write(pyproject, (text.rstrip("\n") + "\n\n[tool.nnpm.dependencies]\n").encode())
        return pyproject
    path = folder / TOML_NAME
    if path.exists():
        raise ManifestError(f"{path} exists and is a package's file, not a project's",
                            hint="run nnpm in the application's folder, or give --project DIR")
    atomic_write(path, new_project_text(folder.absolute()).encode())
    return path


def _entry(dep: Dependency):
    import tomlkit

    spec = str(dep.specifier) or "*"
    if not (dep.variant or dep.prefer != "reference" or dep.max_drift is not None):
        return spec
    table = tomlkit.inline_table()
    table["version"] = spec
    if dep.variant:
        table["variant"] = dep.variant
    if dep.prefer != "reference":
        table["prefer"] = dep.prefer
    if dep.max_drift is not None:
        table["max-drift"] = dep.max_drift
    return table


def edited_text(app: Application, add: list[Dependency] = (), remove: list[str] = ()) -> tuple[str, Application]:
    """The project file's new text with `add` set and `remove` taken out, and the project it now describes."""
    import tomlkit

    doc = tomlkit.parse(app.file.read_text(encoding="utf-8"))
    parent = doc
    for key in app.table_path[:-1]:
        if key not in parent:
            parent[key] = tomlkit.table(is_super_table=True)
        parent = parent[key]
    if app.table_path[-1] not in parent:
        parent[app.table_path[-1]] = tomlkit.table()
    deps = parent[app.table_path[-1]]
    written = {_canonical(k): k for k in deps}
    for name in remove:
        del deps[written[name]]
    for dep in add:
        deps[written.get(dep.name, dep.name)] = _entry(dep)
    text = tomlkit.dumps(doc)
    data = tomlkit.parse(text).unwrap()
    if app.in_pyproject:
        py_name = data.get("project", {}).get("name", "")
        return text, application_from_dict(data["tool"]["nnpm"], app.file, in_pyproject=True, fallback_name=py_name)
    return text, application_from_dict(data, app.file)


def _canonical(raw: str) -> str:
    from nnpm.format.fields import normal_name

    return normal_name(raw)
