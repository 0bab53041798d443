"""Project figure: `nnpm sync` of a 3-package project into a fresh checkout, against `uv sync`.

- nnpm: a project (`nnpm.toml`) naming resnet18, imagenet-preprocess and topk, locked once
  (`nnpm lock`) and synced once (`nnpm sync -q`) so the home's store holds every blob. Each
  run copies only `nnpm.toml` and `nnpm.lock` into a fresh folder, as a fresh clone of the
  application's repository would have them, and times `nnpm sync --frozen -q` there (the
  CLI process, cwd = the checkout): read the lock, create `.nnpm/`, link every file from
  the store. Checked: every run says it fetched 0 blobs, the server logs no blob GET, and
  after the first timed run `nnpm list --json` in the checkout shows the three packages
  and their files are hard links of the store.
- uv: three wheels holding the same files (the bytes nnpm's `.nnpm/` holds, one wheel per
  package, deflated as bdist_wheel writes them) on a PEP 503 folder index read through
  `file://` (each link with `#sha256=`, so uv.lock records hashes), and a Python project
  (`pyproject.toml`, `[tool.uv] package = false`, the index as its default) locked once
  (`uv lock --offline`) and synced once to warm the cache. Each run copies only
  `pyproject.toml` and `uv.lock` into a fresh folder and times `uv sync --frozen --offline -q`
  there: it creates `.venv` and links the wheels' files from its cache, as nnpm does from
  its store.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from bench.common import PY, Row, child_env, interleaved, log, median, nnpm_cmd, run, timed
from bench.uvpeer import uv_binary, uv_env, uv_version
from bench.wheels import write_wheel

PACKAGES = ["resnet18", "imagenet-preprocess", "topk"]   # published by bench.world; no runtime needed to sync
APP = "bench-app"
WHEEL_VERSION = "1.0.0"
_SYNCED = re.compile(r"(\d+) packages? in \.nnpm, (\d+) blobs? fetched \(([^)]*)\), (\d+) already in the store[^,]*, "
                     r"(\d+) files? linked")


def _rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)   # store blobs are read-only, their folders are not


def _checkout(world, name: str, source: Path, files: tuple[str, ...]) -> Path:
    """A fresh folder holding only `files` copied from `source`: what a fresh clone has."""
    folder = world.tmp(name)
    for f in files:
        shutil.copyfile(source / f, folder / f)
    return folder


# -- nnpm ----------------------------------------------------------------------------------------

def _linked_files(env_dir: Path) -> tuple[int, int, list[str]]:
    """(files, bytes, problems) of the packages' files in a project's .nnpm/: each must be a hard link."""
    count, size, problems = 0, 0, []
    for path in sorted((env_dir / "pkgs").glob("*/files/**/*")):
        if path.is_file():
            st = path.stat()
            count += 1
            size += st.st_size
            if st.st_nlink < 2:
                problems.append(f"{path.relative_to(env_dir)} is not a hard link of the store")
    return count, size, problems


def _check_nnpm_checkout(folder: Path, env: dict[str, str]) -> tuple[list[str], dict[str, int]]:
    """Problems with a synced checkout, and its packages' sizes from `nnpm list --json`."""
    problems = []
    listed = json.loads(run([*nnpm_cmd(), "list", "--json"], env=env, cwd=folder).stdout)
    sizes = {p["name"]: p["size"] for p in listed["packages"]}
    if sorted(sizes) != sorted(PACKAGES):
        problems.append(f"nnpm list shows {sorted(sizes)}, not {sorted(PACKAGES)}")
    if Path(listed.get("project") or "").resolve() != folder.resolve():
        problems.append(f"nnpm list reports project {listed.get('project')!r}, not the checkout")
    count, size, unlinked = _linked_files(folder / ".nnpm")
    problems += unlinked
    if size != sum(sizes.values()):
        problems.append(f".nnpm holds {size} bytes of package files; the lock says {sum(sizes.values())}")
    return problems, sizes


# -- uv and three wheels on a local PEP 503 index ------------------------------------------------------

def _wheel_name(package: str) -> str:
    return f"bench-{package}"


def build_wheel(package: str, files: Path, out: Path) -> Path:
    """A wheel holding a package's files under module bench_<name>/."""
    module = _wheel_name(package).replace("-", "_")
    content = {f"{module}/__init__.py": f'"""{package}\'s files as a Python package."""\n'.encode()}
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        content[f"{module}/{path.relative_to(files).as_posix()}"] = path.read_bytes()
    return write_wheel(out, _wheel_name(package), WHEEL_VERSION, f"{package} (nnpm bench)", content)


def make_index(simple: Path, wheels: list[Path]) -> None:
    """simple/<project>/index.html (PEP 503) linking each wheel beside it, with #sha256=."""
    names = []
    for wheel in wheels:
        project = wheel.name.split("-")[0].replace("_", "-")
        names.append(project)
        folder = simple / project
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, folder / wheel.name)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        (folder / "index.html").write_text(f'<!DOCTYPE html><html><body><a href="{wheel.name}#sha256={digest}">'
                                           f"{wheel.name}</a></body></html>\n")
    (simple / "index.html").write_text("<!DOCTYPE html><html><body>"
                                       + "".join(f'<a href="{n}/">{n}</a>' for n in names) + "</body></html>\n")


def _pyproject(index: Path) -> str:
    deps = ", ".join(f'"{_wheel_name(p)}"' for p in PACKAGES)
    return (f'[project]\nname = "{APP}"\nversion = "0.1.0"\n'
            f'requires-python = ">={sys.version_info.major}.{sys.version_info.minor}"\n'
            f"dependencies = [{deps}]\n\n"
            "[tool.uv]\npackage = false\n\n"
            f'[[tool.uv.index]]\nname = "local"\nurl = "{index.resolve().as_uri()}"\ndefault = true\n')


def _check_uv_checkout(folder: Path) -> tuple[list[str], int, int]:
    """Problems with a synced uv checkout, the bytes of the wheels' files in its site-packages,
    and how many of those files are hard links (of uv's cache)."""
    problems, size, linked = [], 0, 0
    sites = list((folder / ".venv").glob("lib/python*/site-packages"))
    if len(sites) != 1:
        return [f"uv made no single site-packages in .venv (found {sites})"], 0, 0
    for package in PACKAGES:
        module = sites[0] / _wheel_name(package).replace("-", "_")
        if not (module / "__init__.py").is_file():
            problems.append(f"uv did not install {module.name}")
            continue
        for path in module.rglob("*"):
            if path.is_file() and path.name != "__init__.py":
                st = path.stat()
                size += st.st_size
                linked += st.st_nlink > 1
    return problems, size, linked


# -- the row ------------------------------------------------------------------------------------

def nnpm_project(world) -> tuple[Path, dict[str, str], dict[str, int]]:
    """(folder, env, sizes): a locked project, synced once so the home's store holds every blob."""
    log("projects: nnpm lock + a first sync to fill the store")
    env = child_env(NNPM_HOME=str(world.tmp("projects-home")), NNPM_REGISTRY=world.registry.url)
    project = world.tmp("nnpm-project")
    (project / "nnpm.toml").write_text(f'[project]\nname = "{APP}"\n\n[dependencies]\n'
                                       + "".join(f'{p} = "*"\n' for p in PACKAGES))
    run([*nnpm_cmd(), "lock"], env=env, cwd=project)
    run([*nnpm_cmd(), "sync", "-q"], env=env, cwd=project)
    problems, sizes = _check_nnpm_checkout(project, env)
    if problems:
        raise RuntimeError("the warm-up sync did not give the project its packages: " + "; ".join(problems))
    return project, env, sizes


def uv_project(world, uv: Path, nnpm_project_dir: Path) -> tuple[Path, dict[str, str], list[Path], list[str]]:
    """(folder, env, wheels, problems): a uv project over wheels of the same files, locked, synced once."""
    log("projects: three wheels of the same files on a file:// /simple/ index, uv lock + a first uv sync")
    locked = tomllib.loads((nnpm_project_dir / "nnpm.lock").read_text())["package"]
    out = world.tmp("projects-wheels")
    wheels = [build_wheel(p["name"], nnpm_project_dir / ".nnpm" / "pkgs" / f"{p['name']}-{p['version']}" / "files",
                          out) for p in locked]
    simple = world.tmp("projects-index") / "simple"
    make_index(simple, wheels)
    env = uv_env(world.tmp("projects-uv-cache"))
    project = world.tmp("uv-project")
    (project / "pyproject.toml").write_text(_pyproject(simple))
    run([str(uv), "lock", "--offline", "-q", "--python", PY], env=env, cwd=project)
    run(_uv_sync(uv), env=env, cwd=project)
    packages = tomllib.loads((project / "uv.lock").read_text())["package"]
    unhashed = [p["name"] for p in packages if p["name"] != APP and not all(w.get("hash") for w in p.get("wheels", []))]
    return project, env, wheels, [f"uv.lock has no hash for {unhashed}"] if unhashed else []


def _uv_sync(uv: Path) -> list[str]:
    return [str(uv), "sync", "--frozen", "--offline", "-q", "--python", PY]


def nnpm_sync_run(world, project: Path, env: dict[str, str], problems: list[str], said: list[str],
                  gets: list[int]) -> Callable[[int], float]:
    """run(i) -> seconds of `nnpm sync --frozen -q` in a fresh checkout; checks go to problems."""
    def once(i: int) -> float:
        folder = _checkout(world, "nnpm-checkout", project, ("nnpm.toml", "nnpm.lock"))
        try:
            before = world.registry.blob_gets()
            seconds, proc = timed([*nnpm_cmd(), "sync", "--frozen", "-q"], env=env, cwd=folder)
            gets.append(world.registry.blob_gets() - before)
            out = proc.stdout + proc.stderr
            m = _SYNCED.search(out)
            said.append(f"{m.group(2)} blobs ({m.group(3)}), {m.group(5)} files linked" if m
                        else f"? ({out.strip()[-200:]})")
            if not m or m.group(1) != str(len(PACKAGES)) or m.group(2) != "0":
                problems.append(f"nnpm sync said: {out.strip()[-300:]}")
            if i == 0:
                problems.extend(_check_nnpm_checkout(folder, env)[0])
            return seconds
        finally:
            _rm(folder)
    return once


def uv_sync_run(world, uv: Path, project: Path, env: dict[str, str], problems: list[str],
                notes: list[str]) -> Callable[[int], float]:
    """run(i) -> seconds of `uv sync --frozen` in a fresh checkout; checks go to problems."""
    def once(i: int) -> float:
        folder = _checkout(world, "uv-checkout", project, ("pyproject.toml", "uv.lock"))
        try:
            seconds, _ = timed(_uv_sync(uv), env=env, cwd=folder)
            if i == 0:
                found, size, linked = _check_uv_checkout(folder)
                problems.extend(found)
                notes.append(f"uv installed {size / 1e6:.1f} MB of the wheels' files into .venv, "
                             f"{linked} of them hard links of its cache")
            return seconds
        finally:
            _rm(folder)
    return once


def bench(world, runs: int) -> list[Row]:
    """`nnpm sync --frozen` of a 3-package project into a fresh checkout vs `uv sync --frozen`, warm both."""
    uv = uv_binary()
    if uv is None:
        log("projects: SKIPPED, the peer is missing: no uv beside the interpreter or on PATH; "
            "'pip install uv' into the venv to measure this row")
        return []
    version = uv_version(uv)
    project, env, sizes = nnpm_project(world)
    uv_dir, uv_vars, wheels, problems = uv_project(world, uv, project)
    said: list[str] = []
    gets: list[int] = []
    uv_notes: list[str] = []
    log("projects: nnpm sync --frozen vs uv sync --frozen, fresh checkouts, alternating")
    nnpm_times, uv_times = interleaved([nnpm_sync_run(world, project, env, problems, said, gets),
                                        uv_sync_run(world, uv, uv_dir, uv_vars, problems, uv_notes)], runs)
    total = sum(sizes.values())
    wheel_bytes = sum(w.stat().st_size for w in wheels)
    notes = [f"nnpm: {len(PACKAGES)} packages ({', '.join(PACKAGES)}), {total / 1e6:.1f} MB of files "
             f"({total:,} bytes); said {sorted(set(said))}; blob GETs on the server per run (warm-up first): {gets}",
             f"uv: {len(wheels)} wheels of the same files, {wheel_bytes / 1e6:.1f} MB ({wheel_bytes:,} bytes, "
             f"deflated), file:// PEP 503 index, {version}", *uv_notes]
    row = Row("project-sync", f"nnpm sync of a {len(PACKAGES)}-package project, fresh checkout, warm store",
              median(nnpm_times), "s", peer=median(uv_times), peer_label="uv sync --frozen (3 wheels, warm cache)",
              op="<=", limit=6.0, runs=nnpm_times, peer_runs=uv_times, notes=notes)
    if problems or any(gets):
        row.check_failed = "; ".join(sorted(set(problems))) or "the sync fetched blobs from the registry"
    return [row]
