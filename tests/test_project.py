"""Projects: `nnpm add|remove|lock|sync|outdated`, the committed nnpm.lock, `.nnpm/`, and loading inside one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli import one_error_line, run_nnpm
from packages import write_package
from registry_proc import Registry, close_all, free_port, start_registry

from nnpm.author.publish import publish
from nnpm.client.api import RegistryClient

pytestmark = pytest.mark.registry_backends("sqlite-dir")

_BLOB_GET = re.compile(r'"GET /api/v1/blobs/sha256(?::|%3A)([0-9a-f]{64})')
PROJECT = '[project]\nname = "my-app"\n# the models we ship\n\n[dependencies]\n'


def _packages(root: Path) -> list[Path]:
    """alpha 1.0.0 and 1.1.0, beta 1.0.0 (depends on gamma), gamma 2.0.0, delta 1.0.0."""
    return [write_package(root / "alpha-1.0.0", "alpha", "1.0.0", (1.0, 2.0, 3.0)),
            write_package(root / "alpha-1.1.0", "alpha", "1.1.0", (1.0, 2.0, 4.0)),
            write_package(root / "beta-1.0.0", "beta", "1.0.0", (5.0, 6.0, 7.0), dependencies={"gamma": ">=2"}),
            write_package(root / "gamma-2.0.0", "gamma", "2.0.0", (8.0, 9.0, 1.0)),
            write_package(root / "delta-1.0.0", "delta", "1.0.0", (2.0, 2.0, 2.0))]


def _start(tmp_path_factory, started: list, backend) -> Registry:
    reg = start_registry(tmp_path_factory, started, backend=backend)
    token = reg.add_user("alice")
    folders = _packages(tmp_path_factory.mktemp("project-packages"))
    with RegistryClient(reg.url, token=token) as client:
        for folder in folders:
            publish(folder, client, progress=False)
    return reg


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory, registry_backend):
    """Two registries serving the same packages (the second a mirror: same manifests, same digests)."""
    started: list[Registry] = []
    try:
        yield _start(tmp_path_factory, started, registry_backend), _start(tmp_path_factory, started, registry_backend)
    finally:
        close_all(started)


@pytest.fixture
def reg(registries) -> Registry:
    return registries[0]


def new_project(folder: Path, deps: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nnpm.toml").write_text(PROJECT + deps, encoding="utf-8")
    return folder


def nnpm(home: Path, project: Path, *args: str, registry: str | None = None, check: bool = True,
         env: dict | None = None) -> subprocess.CompletedProcess:
    return run_nnpm(home, *args, registry=registry, cwd=project, check=check, env=env)


def blob_gets(reg: Registry) -> list[str]:
    return _BLOB_GET.findall(reg.log_path.read_text(errors="replace"))


def listed(home: Path, project: Path) -> dict[str, str]:
    data = json.loads(nnpm(home, project, "list", "--json").stdout)
    assert data["project"] == str(project)
    return {p["name"]: p["version"] for p in data["packages"]}


# -- add, remove, lock, sync, outdated -------------------------------------------------------------

def test_add_locks_syncs_and_keeps_the_files_comments(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app")
    out = nnpm(home, app, "add", "-q", "alpha==1.0.0", "beta", registry=reg.url).stdout
    assert "locked alpha 1.0.0" in out and "locked beta 1.0.0" in out and "locked gamma 2.0.0" in out
    text = (app / "nnpm.toml").read_text()
    assert "# the models we ship" in text                         # tomlkit kept the comment
    assert 'alpha = "==1.0.0"' in text and 'beta = ">=1.0.0"' in text   # a bare name is floored at what was locked
    assert "gamma" not in text                                    # a dependency's dependency is the lock's business
    assert listed(home, app) == {"alpha": "1.0.0", "beta": "1.0.0", "gamma": "2.0.0"}
    assert (app / ".nnpm" / ".gitignore").read_text().splitlines()[-1] == "*"
    lock = (app / "nnpm.lock").read_text()
    assert 'requirements = [\n    "alpha==1.0.0",\n    "beta>=1.0.0",\n]' in lock
    assert 'requires-nnpm = ">=0.2"' in lock and lock.count("[[package]]") == 3
    assert str(home) not in lock and str(app) not in lock         # nothing of this machine in a committed file


def test_remove_takes_the_package_and_its_lone_dependencies_out(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "*"\nbeta = "*"\n')
    nnpm(home, app, "sync", "-q", registry=reg.url)
    out = nnpm(home, app, "remove", "-q", "Beta", registry=reg.url).stdout
    assert "unlocked beta 1.0.0" in out and "unlocked gamma 2.0.0" in out and "removed gamma 2.0.0" in out
    assert "beta" not in (app / "nnpm.toml").read_text()
    assert listed(home, app) == {"alpha": "1.1.0"}
    assert sorted(p.name for p in (app / ".nnpm" / "pkgs").iterdir()) == ["alpha-1.1.0"]
    line = one_error_line(nnpm(home, app, "remove", "beta", registry=reg.url, check=False))
    assert "beta is not a dependency of project 'my-app'" in line


def test_lock_keeps_locked_versions_until_asked_to_upgrade(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "==1.0.0"\n')
    nnpm(home, app, "lock", registry=reg.url)
    toml = app / "nnpm.toml"
    toml.write_text(toml.read_text().replace('"==1.0.0"', '">=1"'))
    assert "locked" not in nnpm(home, app, "lock", registry=reg.url).stdout     # 1.0.0 still fits: it stays
    assert 'version = "1.0.0"' in (app / "nnpm.lock").read_text()
    assert "updated alpha 1.0.0 -> 1.1.0" in nnpm(home, app, "lock", "--upgrade-package", "alpha",
                                                  registry=reg.url).stdout
    assert not (app / ".nnpm").exists()                            # lock alone never touches the environment
    assert "nnpm.lock: no changes" in nnpm(home, app, "lock", "--upgrade", registry=reg.url).stdout


def test_outdated_names_what_the_lock_pins_and_how_to_move(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "<1.1"\ndelta = "*"\n')
    nnpm(home, app, "sync", "-q", registry=reg.url)
    data = json.loads(nnpm(home, app, "outdated", "--json", registry=reg.url).stdout)
    assert data["project"] and data["outdated"] == [{"name": "alpha", "installed": "1.0.0", "latest": "1.1.0",
                                                     "allowed": False}]
    assert "outside nnpm.toml's specifier" in nnpm(home, app, "outdated", registry=reg.url).stdout


def test_a_project_is_found_from_a_subfolder_and_named_by_option_or_variable(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'delta = "*"\n')
    deep = app / "src" / "deep"
    deep.mkdir(parents=True)
    assert "installed delta 1.0.0" in nnpm(home, deep, "sync", "-q", registry=reg.url).stdout
    assert (app / "nnpm.lock").is_file() and not (deep / "nnpm.lock").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "delta" in nnpm(home, elsewhere, "--project", str(app), "list").stdout
    assert "delta" in nnpm(home, elsewhere, "list", env={"NNPM_PROJECT": str(app)}).stdout
    assert "delta" not in nnpm(home, deep, "--no-project", "list").stdout   # the named default env is empty
    line = one_error_line(nnpm(home, elsewhere, "sync", check=False))
    assert "not in a project" in line


def test_pyproject_tool_nnpm_is_a_project(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", tmp_path / "pyapp"
    app.mkdir()
    (app / "pyproject.toml").write_text('[project]\nname = "py-app"\nversion = "0.1"\n\n'
                                        '[tool.ruff]\nline-length = 100\n')
    nnpm(home, app, "add", "-q", "delta", registry=reg.url)        # adds [tool.nnpm] to the existing file
    text = (app / "pyproject.toml").read_text()
    assert "[tool.ruff]" in text and '[tool.nnpm.dependencies]\ndelta = ">=1.0.0"' in text
    assert not (app / "nnpm.toml").exists()
    data = json.loads(nnpm(home, app, "list", "--json").stdout)
    assert data["env"] == "py-app" and [p["name"] for p in data["packages"]] == ["delta"]


def test_a_lock_diff_after_add_changes_only_the_added_packages_lines(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "==1.0.0"\ndelta = "*"\n')
    nnpm(home, app, "lock", registry=reg.url)
    before = (app / "nnpm.lock").read_text().splitlines()
    nnpm(home, app, "add", "-q", "beta>=1", registry=reg.url)
    after = (app / "nnpm.lock").read_text().splitlines()
    import difflib

    diff = [d for d in difflib.unified_diff(before, after, lineterm="", n=0) if d[:1] in "+-" and d[:3] not in ("+++", "---")]
    assert all(d.startswith("+") for d in diff), diff                # nothing removed or rewritten
    added = "\n".join(d[1:] for d in diff)
    assert '"beta>=1",' in added and 'name = "beta"' in added and 'name = "gamma"' in added
    assert "alpha" not in added and "delta" not in added


# -- sync: frozen, tampered, mirrors, warm store -----------------------------------------------------

def test_sync_frozen_refuses_a_stale_or_missing_lock_and_changes_nothing(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "*"\n')
    line = one_error_line(nnpm(home, app, "sync", "--frozen", registry=reg.url, check=False))
    assert "there is no nnpm.lock" in line and "nnpm lock" in line
    nnpm(home, app, "sync", "-q", registry=reg.url)
    lock = (app / "nnpm.lock").read_bytes()
    with (app / "nnpm.toml").open("a") as f:
        f.write('delta = "*"\n')
    line = one_error_line(nnpm(home, app, "sync", "--frozen", registry=reg.url, check=False))
    assert "nnpm.lock is out of date with nnpm.toml" in line
    assert (app / "nnpm.lock").read_bytes() == lock and listed(home, app) == {"alpha": "1.1.0"}
    assert "installed delta 1.0.0" in nnpm(home, app, "sync", "-q", registry=reg.url).stdout   # without: it locks


def test_sync_removes_what_the_lock_does_not_name(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "*"\ndelta = "*"\n')
    nnpm(home, app, "sync", "-q", registry=reg.url)
    locked = (app / "nnpm.lock").read_text()
    toml = (app / "nnpm.toml").read_text()
    nnpm(home, app, "remove", "-q", "delta", registry=reg.url)
    (app / "nnpm.lock").write_text(locked)                           # e.g. `git checkout nnpm.lock nnpm.toml`
    (app / "nnpm.toml").write_text(toml)
    nnpm(home, app, "sync", "--frozen", "-q", registry=reg.url)
    assert listed(home, app) == {"alpha": "1.1.0", "delta": "1.0.0"}
    (app / "nnpm.toml").write_text(PROJECT + 'alpha = "*"\n')
    (app / "nnpm.lock").write_text(locked.split('[[package]]\nname = "delta"')[0].rstrip() + "\n")
    (app / "nnpm.lock").write_text((app / "nnpm.lock").read_text().replace('    "delta",\n', ""))
    assert "removed delta 1.0.0" in nnpm(home, app, "sync", "--frozen", "-q", registry=reg.url).stdout
    assert listed(home, app) == {"alpha": "1.1.0"}


@pytest.mark.parametrize("what", ["file", "manifest"])
def test_a_lock_with_a_digest_changed_by_hand_is_refused_naming_the_package(reg, tmp_path: Path, what: str) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "==1.0.0"\ndelta = "*"\n')
    nnpm(home, app, "lock", registry=reg.url)
    text = (app / "nnpm.lock").read_text()
    key = 'sha256 = "' if what == "file" else 'manifest = "sha256:'
    start = text.index('name = "delta"')
    i = text.index(key, start) + len(key)
    (app / "nnpm.lock").write_text(text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1:])
    line = one_error_line(nnpm(home, app, "sync", "--frozen", registry=reg.url, check=False))
    assert "delta 1.0.0" in line and "restore nnpm.lock from version control" in line
    assert not (app / ".nnpm" / "pkgs").exists() or not any((app / ".nnpm" / "pkgs").iterdir())


def test_a_second_checkout_with_a_warm_store_syncs_offline_with_nothing_fetched(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "*"\nbeta = "*"\n')
    nnpm(home, app, "sync", "-q", registry=reg.url)
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("nnpm.toml", "nnpm.lock"):
        shutil.copy2(app / name, clone / name)
    gets = len(blob_gets(reg))
    closed = f"http://127.0.0.1:{free_port()}"                        # nothing listens: any request would fail
    out = nnpm(home, clone, "sync", "--frozen", "-q", registry=closed).stdout
    assert "0 blobs fetched (0 B)" in out and len(blob_gets(reg)) == gets
    files = sorted(p.relative_to(app / ".nnpm") for p in (app / ".nnpm" / "pkgs").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(clone / ".nnpm") for p in (clone / ".nnpm" / "pkgs").rglob("*") if p.is_file())
    for rel in files:
        assert (app / ".nnpm" / rel).read_bytes() == (clone / ".nnpm" / rel).read_bytes()
    assert (app / ".nnpm" / "nnpm.lock").read_bytes() == (clone / ".nnpm" / "nnpm.lock").read_bytes()


def test_a_fresh_machine_syncs_from_the_locks_registry_or_a_mirror(registries, tmp_path: Path) -> None:
    first, mirror = registries
    app = new_project(tmp_path / "app", 'alpha = "*"\nbeta = "*"\n')
    nnpm(tmp_path / "home", app, "lock", registry=first.url)
    lock = (app / "nnpm.lock").read_bytes()
    assert first.url.encode() in lock
    out = nnpm(tmp_path / "fresh", app, "sync", "--frozen", "-q").stdout    # no registry configured: the lock's
    assert "3 packages in .nnpm, 4 blobs fetched" in out   # the README is shared
    shutil.rmtree(app / ".nnpm")
    gets = len(blob_gets(mirror))
    nnpm(tmp_path / "fresh2", app, "sync", "--frozen", "-q", registry=mirror.url)
    assert len(blob_gets(mirror)) - gets == 4 and (app / "nnpm.lock").read_bytes() == lock


def test_sync_force_repairs_a_changed_file(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'delta = "*"\n')
    nnpm(home, app, "sync", "-q", registry=reg.url)
    model = app / ".nnpm" / "pkgs" / "delta-1.0.0" / "files" / "model.onnx"
    model.chmod(0o644)
    model.write_bytes(model.read_bytes()[:-4] + b"\0\0\0\0")
    verify = run_nnpm(home, "cache", "verify", cwd=tmp_path, check=False)
    assert verify.returncode == 1 and "nnpm sync --force" in verify.stdout + verify.stderr
    nnpm(home, app, "sync", "--force", "-q", registry=reg.url)
    assert "verified" in run_nnpm(home, "cache", "verify", cwd=tmp_path).stdout


def test_cache_clean_keeps_what_a_project_uses(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'delta = "*"\n')
    nnpm(home, app, "sync", "-q", registry=reg.url)
    run_nnpm(home, "cache", "clean", "--yes", cwd=tmp_path, check=False)
    clone = new_project(tmp_path / "clone", 'delta = "*"\n')
    shutil.copy2(app / "nnpm.lock", clone / "nnpm.lock")
    out = nnpm(home, clone, "sync", "--frozen", "-q", registry=f"http://127.0.0.1:{free_port()}").stdout
    assert "0 blobs fetched" in out


# -- the CLI's other commands inside a project, and bad input ---------------------------------------

def test_install_inside_a_project_syncs_alone_and_refuses_names(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'delta = "*"\n')
    assert "installed delta 1.0.0" in nnpm(home, app, "install", "-q", registry=reg.url).stdout
    line = one_error_line(nnpm(home, app, "install", "alpha", registry=reg.url, check=False))
    assert "project 'my-app'" in line and "nnpm add alpha" in line
    line = one_error_line(nnpm(home, app, "uninstall", "delta", check=False))
    assert "nnpm remove delta" in line
    assert "installed alpha" in nnpm(home, app, "install", "-q", "--env", "other", "alpha", registry=reg.url).stdout


@pytest.mark.parametrize("body, expected", [
    ('[project]\nname = "x"\n[dependencies]\nalpha = 3\n', "dependencies.alpha"),
    ('[project]\nname = "x"\n[dependencies]\nalpha = { version = "*", variant = "int8", prefer = "speed" }\n',
     "pins a variant and asks for a policy"),
    ('[project]\nname = "x"\nbogus = 1\n', "unknown key 'bogus'"),
    ('[project]\nname = "x"\n[package]\nname = "y"\n', "holds both [package] and [project]"),
    ('[project\n', "is not valid TOML"),
])
def test_a_bad_project_file_is_one_line(tmp_path: Path, body: str, expected: str) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "nnpm.toml").write_text(body)
    line = one_error_line(nnpm(tmp_path / "home", app, "sync", check=False))
    assert expected in line and "nnpm.toml" in line


def test_adding_what_does_not_exist_writes_nothing(reg, tmp_path: Path) -> None:
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'alpha = "*"\n')
    nnpm(home, app, "sync", "-q", registry=reg.url)
    before = {n: (app / n).read_bytes() for n in ("nnpm.toml", "nnpm.lock")}
    for spec in ("no-such-model", "alpha>=9"):
        one_error_line(nnpm(home, app, "add", spec, registry=reg.url, check=False))
        assert {n: (app / n).read_bytes() for n in before} == before
    assert listed(home, app) == {"alpha": "1.1.0"}


def test_a_lock_from_a_newer_nnpm_is_refused_with_what_to_do(tmp_path: Path) -> None:
    app = new_project(tmp_path / "app", 'alpha = "*"\n')
    (app / "nnpm.lock").write_text('version = 1\nrequires-nnpm = ">=99"\nrequirements = ["alpha"]\n')
    line = one_error_line(nnpm(tmp_path / "home", app, "sync", "--frozen", check=False))
    assert "needs nnpm >=99" in line and "upgrade nnpm" in line


def test_two_adds_at_once_both_land(reg, tmp_path: Path) -> None:
    from cli import nnpm_command

    home, app = tmp_path / "home", new_project(tmp_path / "app")
    procs = []
    for name in ("alpha", "delta"):
        argv, environ = nnpm_command(home, "add", "-q", name, registry=reg.url)
        procs.append(subprocess.Popen(argv, env=environ, cwd=app, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    text = (app / "nnpm.toml").read_text()
    assert "alpha = " in text and "delta = " in text
    assert listed(home, app) == {"alpha": "1.1.0", "delta": "1.0.0"}
    assert "0 blobs fetched" in nnpm(home, app, "sync", "--frozen", "-q", registry=reg.url).stdout


@pytest.mark.parametrize("linked", [".nnpm", ".nnpm/pkgs"])
def test_a_committed_link_in_place_of_the_environment_is_refused(reg, tmp_path: Path, linked: str) -> None:
    """A cloned repository is a stranger's: sync must not write into, or remove from, where a link points."""
    home, app = tmp_path / "home", new_project(tmp_path / "app", 'delta = "*"\n')
    victim = tmp_path / "victim"
    (victim / "pkgs" / "precious").mkdir(parents=True)
    (victim / "precious").mkdir()
    (app / linked).parent.mkdir(parents=True, exist_ok=True)
    (app / linked).symlink_to(victim if linked == ".nnpm" else victim / "pkgs")
    line = one_error_line(nnpm(home, app, "sync", registry=reg.url, check=False))
    assert "is a link or a file" in line
    assert (victim / "pkgs" / "precious").is_dir() and sorted(p.name for p in victim.iterdir()) == ["pkgs", "precious"]
