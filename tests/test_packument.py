"""nnpm.format.packument: built once by the server, parsed once by the client, the same bytes both ways."""

from __future__ import annotations

import json

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from nnpm.errors import ManifestError
from nnpm.format.packument import Packument, Release, latest_version


def _release(version: str, yanked: bool = False, deps: dict | None = None) -> Release:
    return Release("demo", Version(version), {"dependencies": deps or {}}, yanked)


def test_round_trip_is_byte_stable() -> None:
    packument = Packument.of("demo", [_release("2.0.0"), _release("1.0.0", yanked=True), _release("1.5rc1")])
    body = packument.to_json()
    again = Packument.from_json(body)
    assert again == packument and again.to_json() == body
    data = json.loads(body)
    assert [v["version"] for v in data["versions"]] == ["1.0.0", "1.5rc1", "2.0.0"]
    assert data["latest"] == "2.0.0" and set(data) == {"name", "latest", "versions"}


@pytest.mark.parametrize("versions,expected", [
    ([("1.0", False), ("2.0", False)], "2.0"),
    ([("1.0", False), ("2.0", True)], "1.0"),
    ([("1.0", False), ("2.0rc1", False)], "1.0"),
    ([("1.0", True), ("2.0rc1", False)], "2.0rc1"),
    ([], None),
])
def test_latest_is_newest_good_release_else_newest(versions, expected) -> None:
    got = latest_version((Version(v), y) for v, y in versions)
    assert got == (Version(expected) if expected else None)


def test_entries_without_a_pep440_version_are_skipped() -> None:
    packument = Packument.from_dict({"name": "odd", "versions": [
        {"version": "not a version"}, {"manifest": {}}, "a string", {"version": "1.0", "manifest": "x"}]})
    assert [str(r.version) for r in packument.releases] == ["1.0"] and packument.releases[0].manifest_data == {}


@pytest.mark.parametrize("data", [[], {"versions": "x"}, {"name": "a b", "versions": []}, {"versions": []}])
def test_what_is_not_a_packument_is_refused(data) -> None:
    with pytest.raises(ManifestError):
        Packument.from_dict(data)


def test_dependencies_are_parsed_once_and_lazily() -> None:
    release = _release("1.0", deps={"Other_Pkg": ">=1,<2"})
    assert release.dependencies == {"other-pkg": SpecifierSet(">=1,<2")}
    assert release.dependencies is release.dependencies
    bad = _release("1.0", deps={"x": ">>1"})
    with pytest.raises(ManifestError, match="invalid version specifier"):
        bad.dependencies


def test_a_local_manifest_becomes_a_release_without_reparsing(small_package) -> None:
    from nnpm.author.pack import build

    manifest = build(small_package("tiny", "1.2.0")).manifest
    release = Release.from_manifest(manifest)
    assert release.manifest is manifest and release.version == Version("1.2.0")
    assert Packument.of("tiny", [release]).latest is release
