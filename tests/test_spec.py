"""nnpm.format.spec: the one parser of what users name, and every command that uses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packaging.version import Version

from nnpm.errors import ResolutionError, SpecError
from nnpm.format.spec import looks_like_path, parse_pin, parse_spec


@pytest.mark.parametrize("text,name,spec,pinned", [
    ("resnet18", "resnet18", "", None),
    ("ResNet_18", "resnet-18", "", None),
    ("resnet18==1.0.0", "resnet18", "==1.0.0", "1.0.0"),
    ("resnet18 == 1.0", "resnet18", "==1.0", "1.0"),
    ("resnet18>=1,<2", "resnet18", ">=1,<2", None),
    ("resnet18==1.*", "resnet18", "==1.*", None),
    ("resnet18===1.0", "resnet18", "===1.0", "1.0"),
])
def test_requirements(text: str, name: str, spec: str, pinned: str | None) -> None:
    parsed = parse_spec(text)
    assert not parsed.is_path and parsed.name == name and parsed.specifier_text == spec
    assert parsed.pinned == (Version(pinned) if pinned else None)
    assert parsed.requirement == name + spec


@pytest.mark.parametrize("text", ["./digits", "../up", "/abs/x", "~/pkg", ".", "..", "dist/x-1.0.0.nnpm",
                                  "x-1.0.0.nnpm", "sub/folder"])
def test_paths_look_like_paths(text: str) -> None:
    parsed = parse_spec(text)
    assert parsed.is_path and parsed.name is None
    assert parsed.path == Path(text).expanduser()


def test_a_bare_name_is_a_package_even_when_a_folder_has_that_name(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "digits").mkdir()
    monkeypatch.chdir(tmp_path)
    parsed = parse_spec("digits")
    assert not parsed.is_path and parsed.name == "digits"
    assert parse_spec("./digits").is_path


def test_path_objects_are_paths(tmp_path: Path) -> None:
    assert parse_spec(tmp_path).path == tmp_path
    with pytest.raises(SpecError, match="a package name is needed"):
        parse_spec(tmp_path, paths=False)
    with pytest.raises(SpecError, match="a package name is needed"):
        parse_spec("./x", paths=False)


@pytest.mark.parametrize("text,why", [
    ("resnet18[gpu]", "extras"),
    ("resnet18; python_version>'3'", "markers"),
    ("resnet18 @ https://example.com/x.nnpm", "direct references"),
    ("resnet18>>2", "not a package name"),
    ("", "not a package spec"),
    ("x" * 2000, "not a package spec"),
    ("reſnet", "not a package name"),
])
def test_what_nnpm_does_not_understand_is_refused_not_ignored(text: str, why: str) -> None:
    with pytest.raises(SpecError, match=why):
        parse_spec(text)


def test_pin() -> None:
    assert parse_pin("ResNet18==1.0") == ("resnet18", Version("1.0"))
    for bad in ("resnet18", "resnet18==", "==1.0", "resnet18>=1"):
        with pytest.raises(SpecError):
            parse_pin(bad)


def test_looks_like_path_follows_pip() -> None:
    assert looks_like_path("./a") and looks_like_path("a" + os.sep + "b") and looks_like_path("a.nnpm")
    assert not looks_like_path("a") and not looks_like_path("a==1") and not looks_like_path("a>=1,<2")


def test_the_resolver_reports_a_bad_requirement_as_a_resolution_error() -> None:
    from nnpm.install.resolve import resolve

    with pytest.raises(ResolutionError, match="invalid requirement 'x\\[gpu\\]'.*extras"):
        resolve(["x[gpu]"], lambda name: None)


def test_load_of_a_bare_name_never_opens_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nnpm.load("digits")` looks in the environment, even with a ./digits folder in the working directory."""
    from nnpm.errors import NotInstalledError
    from nnpm.runtime.load import load

    (tmp_path / "digits").mkdir()
    (tmp_path / "digits" / "nnpm.toml").write_text("not even toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNPM_HOME", str(tmp_path / "home"))
    with pytest.raises(NotInstalledError, match="digits is not installed"):
        load("digits")
