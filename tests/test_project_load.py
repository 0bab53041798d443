"""`nnpm.load` and `from nnpm.models import x` inside and outside a project, and `install=True`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from registry_proc import Registry, close_all, start_registry

import nnpm
import nnpm.models
from examples import digits
from nnpm.author.publish import publish
from nnpm.client.api import RegistryClient
from nnpm.errors import NotInstalledError

pytestmark = pytest.mark.registry_backends("sqlite-dir")


@pytest.fixture(scope="module")
def reg(examples_dir: Path, tmp_path_factory: pytest.TempPathFactory, registry_backend) -> Registry:
    started: list[Registry] = []
    try:
        reg = start_registry(tmp_path_factory, started, backend=registry_backend)
        with RegistryClient(reg.url, token=reg.add_user("alice")) as client:
            for name in ("digits-preprocess", "digits"):
                publish(examples_dir / name, client, progress=False)
        yield reg
    finally:
        close_all(started)


@pytest.fixture
def world(reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NNPM_HOME and NNPM_REGISTRY set, no NNPM_ENV/NNPM_PROJECT, and a fresh import cache."""
    for var in ("NNPM_ENV", "NNPM_PROJECT", "NNPM_NO_PROJECT", "NNPM_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NNPM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NNPM_REGISTRY", reg.url)
    nnpm.models._clear_cache()
    yield tmp_path
    nnpm.models._clear_cache()


def project(folder: Path, deps: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "nnpm.toml").write_text(f'[project]\nname = "{folder.name}"\n\n[dependencies]\n{deps}')
    return folder


def sync(app: Path) -> None:
    from nnpm.config import load_settings
    from nnpm.format.application import read_application
    from nnpm.project.sync import sync as do_sync

    do_sync(read_application(app), load_settings(), progress=False)


def test_inside_a_project_load_and_import_use_its_environment(world: Path, examples_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    app = project(world / "app", 'digits = "==1.0.0"\n')
    sync(app)
    (app / "src").mkdir()
    monkeypatch.chdir(app / "src")
    model = nnpm.load("digits")
    assert model.path.is_relative_to(app / ".nnpm")
    pixels, _ = digits.held_out()
    features = nnpm.load(examples_dir / "digits-preprocess")(pixels)
    assert np.array_equal(model(features)["label"], nnpm.load(examples_dir / "digits")(features)["label"])
    from nnpm.models import digits as imported

    assert imported.path == model.path
    with pytest.raises(ImportError, match="not installed in project 'app'; run 'nnpm add digits-preprocess'"):
        from nnpm.models import digits_preprocess  # noqa: F401
    monkeypatch.chdir(world)                                   # outside: the named default environment
    with pytest.raises(NotInstalledError, match="not installed in environment 'default'"):
        nnpm.load("digits")
    monkeypatch.chdir(app)
    with pytest.raises(NotInstalledError, match="environment 'default'"):
        nnpm.load("digits", env="default")                     # a named environment wins over the project
    monkeypatch.setenv("NNPM_NO_PROJECT", "1")
    with pytest.raises(NotInstalledError, match="environment 'default'"):
        nnpm.load("digits")


def test_install_true_adds_to_the_project_or_installs_into_the_environment(world: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    app = project(world / "app", "")
    monkeypatch.chdir(app)
    model = nnpm.load("digits-preprocess", install=True)
    assert model.path.is_relative_to(app / ".nnpm")
    assert 'digits-preprocess = ">=1.0.0"' in (app / "nnpm.toml").read_text()
    assert 'name = "digits-preprocess"' in (app / "nnpm.lock").read_text()
    assert nnpm.load("digits-preprocess", install=True).path == model.path          # present: nothing to do
    monkeypatch.chdir(world)
    outside = nnpm.load("digits-preprocess>=1", install=True)
    assert outside.path.is_relative_to(world / "home" / "envs" / "default")
    with pytest.raises(Exception, match="no-such-model"):
        nnpm.load("no-such-model", install=True)


def test_a_dependency_can_pin_a_variant(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = project(world / "app", 'digits = { version = ">=1", variant = "float16" }\n')
    sync(app)
    lock = (app / "nnpm.lock").read_text()
    assert 'variant = "float16"' in lock and '"digits>=1; variant=float16"' in lock
    monkeypatch.chdir(app)
    model = nnpm.load("digits")
    assert model.variant == "float16" and model.path.parent.name == "digits-1.0.0@float16"
