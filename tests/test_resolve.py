"""Tests for nnpm.install.resolve: data-driven cases from tests/data/resolver_cases.json plus properties."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from nnpm.errors import ResolutionError
from nnpm.format.packument import Packument, Release
from nnpm.install.resolve import Candidate, explain_order, resolve

DATA = json.loads((Path(__file__).parent / "data" / "resolver_cases.json").read_text())


def packuments(index: dict) -> dict[str, Packument]:
    """Turn the compact test index (name -> version -> {deps, yanked}) into registry packuments."""
    out = {}
    for name, versions in index.items():
        out[canonicalize_name(name)] = Packument.from_dict({"name": name, "versions": [
            {"version": v, "yanked": bool(info.get("yanked")), "yanked_reason": None,
             "manifest": {"name": name, "version": v, "dependencies": dict(info.get("deps", {}))}}
            for v, info in versions.items()]})
    return out


def release(name: str, version: str, deps: dict | None = None, yanked: bool = False) -> Release:
    """A release whose manifest holds only its dependencies (all the resolver reads)."""
    return Release(name, Version(version), {"dependencies": deps or {}}, yanked)


class Registry:
    """A fake get_packument that counts its calls."""

    def __init__(self, index: dict) -> None:
        self.packuments = packuments(index)
        self.calls: Counter[str] = Counter()

    def __call__(self, name: str) -> Packument | None:
        self.calls[name] += 1
        return self.packuments.get(name)


@pytest.mark.parametrize("case", DATA["cases"], ids=[c["id"] for c in DATA["cases"]])
def test_case(case: dict) -> None:
    registry = Registry(DATA["index"])
    if "expected" in case:
        result = resolve(case["requirements"], registry, pre=case.get("pre", False))
        assert {n: str(c.version) for n, c in result.items()} == case["expected"]
        assert all(isinstance(c, Candidate) and c.name == n for n, c in result.items())
    else:
        with pytest.raises(ResolutionError) as info:
            resolve(case["requirements"], registry, pre=case.get("pre", False))
        text = info.value.one_line()
        for needle in case["conflict"]:
            assert needle in text, f"{needle!r} not in {text!r}"
        assert all(isinstance(r, str) and (p is None or isinstance(p, str)) for r, p in info.value.causes)
    assert max(registry.calls.values(), default=0) <= 1
    assert all(name == canonicalize_name(name) for name in registry.calls)


def test_conflict_causes_are_requirement_and_parent() -> None:
    with pytest.raises(ResolutionError) as info:
        resolve(["resnet18<2", "imagenet-classifier"], Registry(DATA["index"]))
    assert sorted(info.value.causes, key=str) == sorted(
        [("resnet18<2", None), ("resnet18>=2,<3", "imagenet-classifier 1.0.0")], key=str)
    assert info.value.code == "resolution_impossible"


def test_cycle_causes_name_the_edges() -> None:
    with pytest.raises(ResolutionError) as info:
        resolve(["cyc-a"], Registry(DATA["index"]))
    assert info.value.causes == [("cyc-b>=1", "cyc-a 1.0.0"), ("cyc-a", "cyc-b 1.0.0")]


def test_packument_fetched_once_per_name() -> None:
    registry = Registry(DATA["index"])
    resolve(["app2", "app", "base", "detector", "legacy-head", "Legacy_Head"], registry)
    assert registry.calls and set(registry.calls.values()) == {1}
    registry = Registry(DATA["index"])
    with pytest.raises(ResolutionError):
        resolve(["nope", "nope>=1", "NOPE"], registry)
    assert registry.calls == {"nope": 1}


def test_requirement_objects_accepted() -> None:
    from packaging.requirements import Requirement
    result = resolve([Requirement("Resnet18<2")], Registry(DATA["index"]))
    assert str(result["resnet18"].version) == "1.1.0"


def test_candidate_equality_ignores_manifest() -> None:
    a = Candidate("x", Version("1.0"), release("x", "1.0", {"a": ""}))
    b = Candidate("x", Version("1.0.0"), release("x", "1.0.0", {"b": ""}, yanked=True))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1


def test_explain_order_puts_dependencies_first() -> None:
    result = resolve(["app"], Registry(DATA["index"]))
    order = explain_order(result)
    assert sorted(order) == sorted(result)
    assert order.index("base") < order.index("left") < order.index("app")
    assert order.index("right") < order.index("app")
    assert explain_order({}) == []


def test_explain_order_reports_cycle() -> None:
    a = Candidate("a", Version("1"), release("a", "1", {"b": ""}))
    b = Candidate("b", Version("2"), release("b", "2", {"A": ">=1"}))
    with pytest.raises(ResolutionError, match="dependency cycle: a 1 -> b 2 -> a 1"):
        explain_order({"a": a, "b": b})


def test_packument_odd_entries_are_skipped() -> None:
    packument = {"name": "odd", "versions": [
        {"version": "not a version", "manifest": {}}, {"manifest": {}},
        {"version": "1.0.0", "manifest": {"dependencies": None}}, {"version": "1.0", "manifest": {}}]}
    result = resolve(["odd"], lambda name: Packument.from_dict(packument) if name == "odd" else None)
    assert str(result["odd"].version) == "1.0.0"


def test_gives_up_after_max_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nnpm.install.resolve.MAX_ROUNDS", 2)
    with pytest.raises(ResolutionError, match="gave up resolving after 2 steps"):
        resolve(["app"], Registry(DATA["index"]))


def test_invalid_dependency_specifier_is_a_resolution_error() -> None:
    packument = {"name": "bad", "versions": [
        {"version": "1.0.0", "manifest": {"dependencies": {"x": ">>1"}}}]}
    with pytest.raises(ResolutionError, match="bad 1.0.0 has an invalid specifier"):
        resolve(["bad"], lambda name: Packument.from_dict(packument) if name == "bad" else None)


# --- property test: random small indexes -------------------------------------------------------

NAMES = ["a", "b", "c", "d"]
VERSIONS = ["0.9.0", "1.0.0", "1.1.0", "2.0.0", "2.1.0rc1", "3.0.0"]
SPECS = ["", ">=1", "<2", ">=1,<3", "==1.0.0", "==1.1.0", "==2.1.0rc1", "!=2.0.0", "~=1.0",
         ">=2.1.0rc1", "==2.*", ">3", "===3.0.0"]

# mostly plain "any version" and rarely yanked, so that many examples resolve; self and mutual
# dependencies may occur, and a cycle must come back as a ResolutionError
specs = st.one_of(st.just(""), st.just(">=0.9"), st.sampled_from(SPECS))
version_info = st.fixed_dictionaries({
    "yanked": st.integers(0, 3).map(lambda i: i == 0),
    "deps": st.dictionaries(st.sampled_from(NAMES), specs, max_size=2),
})
versions = st.dictionaries(st.sampled_from(VERSIONS), version_info, min_size=1, max_size=3)
indexes = st.fixed_dictionaries(  # "d" may be missing or empty: an unknown or unpublished package
    {"a": versions, "b": versions, "c": versions},
    optional={"d": st.dictionaries(st.sampled_from(VERSIONS), version_info, max_size=2)})
requirement_lists = st.lists(st.tuples(st.sampled_from("aabbccdz"), specs).map("".join), min_size=1, max_size=3)


def pins(spec: SpecifierSet, version) -> bool:
    return any(s.operator in ("==", "===") and not s.version.endswith(".*")
               and s.contains(version, prereleases=True) for s in spec)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=indexes, requirements=requirement_lists, pre=st.booleans())
def test_resolution_is_valid(index: dict, requirements: list[str], pre: bool) -> None:
    registry = Registry(index)
    try:
        result = resolve(requirements, registry, pre=pre)
    except ResolutionError as e:
        event("cycle" if "cycle" in str(e) else "no resolution")
        assert str(e)
        return
    finally:
        assert max(registry.calls.values(), default=0) <= 1
    event("resolved")
    # every requirement that holds on a name: the user's, then each chosen candidate's dependencies
    wants: list[tuple[str, SpecifierSet]] = []
    for raw in requirements:
        wants.append((raw[0], SpecifierSet(raw[1:])))
    for cand in result.values():
        for dep, spec in cand.release.manifest_data["dependencies"].items():
            wants.append((dep, SpecifierSet(spec)))
    for name, spec in wants:
        assert name in result, f"{name} missing from {result}"
        assert spec.contains(result[name].version, prereleases=True), (name, spec, result[name])
    reachable = {n for n, _ in wants}
    assert set(result) == reachable
    for name, cand in result.items():
        specs = [s for n, s in wants if n == name]
        if cand.yanked:
            assert any(pins(s, cand.version) for s in specs), f"yanked {cand} chosen without a pin"
        if cand.version.is_prerelease and not pre:
            assert any(s.prereleases for s in specs), f"prerelease {cand} chosen without asking"
    order = explain_order(result)
    for cand in result.values():
        for dep in cand.release.manifest_data["dependencies"]:
            assert order.index(dep) < order.index(cand.name)
