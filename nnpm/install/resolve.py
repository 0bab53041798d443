"""Pick one version per package so every requirement holds: a resolvelib provider over packuments.

The registry is handed in as `get_packument(name) -> Packument | None`, so tests give a dict
of packuments and property-test the resolver without a server. Candidates hold the
`Release` they stand for; its dependencies are parsed once, by `nnpm.format`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from packaging.specifiers import SpecifierSet
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, ResolutionImpossible, ResolutionTooDeep
from resolvelib.resolvers import Resolution

from nnpm.errors import ManifestError, ResolutionError, SpecError
from nnpm.format.fields import normal_name
from nnpm.format.packument import Packument, Release
from nnpm.format.spec import Spec, parse_spec

MAX_ROUNDS = 5000  # resolvelib pins/backtracks before giving up; bounds every resolve


@dataclass(frozen=True)
class Candidate:
    """One published version of a package; equal and hashed by name and version only."""

    name: str
    version: Version
    release: Release = field(compare=False, repr=False)

    @property
    def yanked(self) -> bool:
        """Whether the registry yanked this version (PEP 592)."""
        return self.release.yanked


@dataclass(frozen=True, eq=False)
class _Req:
    """A requirement on one package: canonical name, specifier, and the text shown to people."""

    name: str
    specifier: SpecifierSet
    text: str

    @cached_property
    def exact(self) -> bool:
        """Whether it names versions with == or === (resolved first: asked for on every round)."""
        return any(s.operator in ("==", "===") for s in self.specifier)


def _pins(req: _Req, version: Version) -> bool:
    """Whether the requirement pins exactly this version with == or === (what unlocks a yanked one)."""
    return any(s.operator in ("==", "===") and not s.version.endswith(".*")
               and s.contains(version, prereleases=True) for s in req.specifier)


def _user_req(raw: object) -> _Req:
    """One requirement the user gave (text, a Spec or a packaging Requirement), its specifier as written."""
    if isinstance(raw, Spec):
        spec = raw
    else:
        try:
            spec = parse_spec(str(raw), paths=False)
        except SpecError as exc:
            raise ResolutionError(f"invalid requirement {str(raw)!r}: {exc.message}", hint=exc.hint) from None
    return _Req(spec.name, spec.specifier, spec.requirement)


def _dependencies(c: Candidate) -> list[_Req]:
    """The candidate's dependencies as requirements (sorted by name)."""
    try:
        deps = c.release.dependencies
    except ManifestError as exc:
        raise ResolutionError(f"{c.name} {c.version} has an invalid specifier or dependency table ({exc.message})",
                              hint="ask its maintainers to publish a fixed version") from None
    written = {normal_name(k): v for k, v in (c.release.manifest_data.get("dependencies") or {}).items()}
    return [_Req(name, spec, name + _as_written(written.get(name), spec)) for name, spec in sorted(deps.items())]


def _as_written(text: object, spec: SpecifierSet) -> str:
    """A dependency's specifier as its author wrote it (">=1,<2", not "<2,>=1"), when that is what it means."""
    return _written(text, str(spec)) if isinstance(text, str) else str(spec)


@lru_cache(maxsize=4096)
def _written(text: str, normal: str) -> str:
    # Thousands of dependencies share a few specifiers; comparing SpecifierSets costs microseconds each.
    compact = re.sub(r"\s+", "", text)
    if compact not in ("", "*") and SpecifierSet(compact) == SpecifierSet(normal):
        return compact
    return normal


class _Provider(AbstractProvider):
    """resolvelib provider: packages are canonical names, candidates come from packuments."""

    def __init__(self, get_packument: Callable[[str], Packument | None], pre: bool,
                 prefer: dict[str, Version] | None = None) -> None:
        self._get, self.pre, self.prefer = get_packument, pre, prefer or {}
        self._packuments: dict[str, Packument | None] = {}
        self._candidates: dict[str, list[Candidate]] = {}
        self._satisfied: dict[tuple[_Req, Version], bool] = {}
        self.excluded: set[Candidate] = set()  # pins a previous run kept without a requirement allowing them

    def packument(self, name: str) -> Packument | None:
        """The registry's packument for a name, fetched at most once."""
        if name not in self._packuments:
            self._packuments[name] = self._get(name)
        return self._packuments[name]

    def all_candidates(self, name: str) -> list[Candidate]:
        """Every published version of a package, newest first (yanked included)."""
        if name not in self._candidates:
            packument = self.packument(name)
            releases = packument.releases if packument is not None else ()
            found = [Candidate(name, r.version, r) for r in reversed(releases)]
            # A version a lock already holds is tried first: re-locking moves nothing it need not.
            found.sort(key=lambda c: c.version != self.prefer.get(name))
            self._candidates[name] = found
        return self._candidates[name]

    def identify(self, requirement_or_candidate):
        return requirement_or_candidate.name

    def get_preference(self, identifier, resolutions, candidates, information, backtrack_causes):
        infos = list(information[identifier])
        pinned = any(i.requirement.exact for i in infos)
        in_conflict = any(identifier in (c.requirement.name, getattr(c.parent, "name", None))
                          for c in backtrack_causes)
        return (not pinned, not in_conflict, sum(1 for _ in candidates[identifier]), identifier)

    def find_matches(self, identifier, requirements, incompatibilities):
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        allow_pre = self.pre or any(r.specifier.prereleases for r in reqs)
        return [c for c in self.all_candidates(identifier)
                if c.version not in bad and c not in self.excluded
                and all(r.specifier.contains(c.version, prereleases=allow_pre) for r in reqs)
                and (not c.yanked or any(_pins(r, c.version) for r in reqs))]

    def is_satisfied_by(self, requirement, candidate):
        # resolvelib asks this for every requirement of every pin on every round (n² calls for n
        # packages), and SpecifierSet.contains costs microseconds: remember each answer.
        key = (requirement, candidate.version)
        try:
            return self._satisfied[key]
        except KeyError:
            ok = self._satisfied[key] = requirement.specifier.contains(candidate.version, prereleases=True)
            return ok

    def get_dependencies(self, candidate):
        return _dependencies(candidate)


def _join(names: list[str]) -> str:
    return "".join(names) if len(names) < 2 else ", ".join(names[:-1]) + " and " + names[-1]


def _explain(causes: list, provider: _Provider) -> ResolutionError:
    """Turn resolvelib's conflict causes into one readable paragraph."""
    groups: dict[str, list] = {}
    for info in sorted(causes, key=lambda i: i.parent is None):
        groups.setdefault(info.requirement.name, []).append(info)
    names = list(groups) + [i.parent.name for i in causes if i.parent is not None]
    sentences, notes, unknown = [], [], []
    for name, infos in groups.items():
        wants = ", ".join(dict.fromkeys(
            f"{i.parent.name} {i.parent.version} needs {i.requirement.text}" if i.parent
            else f"you asked for {i.requirement.text}" for i in infos))
        cands = provider.all_candidates(name)
        if provider.packument(name) is None:
            unknown.append(name)
            sentences.append(f"{wants}, but {name} is not on the registry")
            continue
        if not cands:
            sentences.append(f"{wants}, but {name} has no published versions")
            continue
        shown = ", ".join(f"{c.version}{' (yanked)' if c.yanked else ''}" for c in reversed(cands))
        sentences.append(f"{wants}; available versions of {name}: {shown}")
        fits = [c for c in reversed(cands)
                if all(i.requirement.specifier.contains(c.version, prereleases=True) for i in infos)]
        if fits and all(c.yanked or (c.version.is_prerelease and not provider.pre) for c in fits):
            if yanked := [str(c.version) for c in fits if c.yanked]:
                notes.append(f"{name} {_join(yanked)} would fit but {'is' if len(yanked) == 1 else 'are'} "
                             f"yanked; pin it exactly (e.g. {name}=={yanked[-1]}) to use it anyway.")
            if pres := [str(c.version) for c in fits if not c.yanked]:
                what = "is a prerelease" if len(pres) == 1 else "are prereleases"
                notes.append(f"{name} {_join(pres)} would fit but {what}; pass --pre or ask for it "
                             f"(e.g. {name}=={pres[-1]}) to allow it.")
    message = f"Cannot install {_join(list(dict.fromkeys(names)))}: " + ". Also, ".join(sentences) + "."
    hint = (f"check the name, or look for it with `nnpm search {unknown[0]}`" if unknown
            else "loosen or drop one of these requirements, or ask a maintainer to widen a range")
    return ResolutionError(" ".join([message, *notes]), hint=hint, causes=[
        (i.requirement.text, f"{i.parent.name} {i.parent.version}" if i.parent else None) for i in causes])


class _Resolution(Resolution):
    """resolvelib's Resolution, remembering which (criterion, pin) pairs are satisfied.

    Every round resolvelib re-checks every criterion against its current pin, so n packages
    cost n² checks. Criteria are immutable (resolvelib replaces them whenever requirements are
    added or removed), so one (criterion, pin) pair always gets the same answer.
    """

    def __init__(self, provider, reporter) -> None:
        super().__init__(provider, reporter)
        self._pin_checks: dict[object, tuple[Candidate, bool]] = {}   # criterion -> (pin, answer)

    def _is_current_pin_satisfying(self, name, criterion) -> bool:
        pin = self.state.mapping.get(name)
        if pin is None:
            return False
        seen = self._pin_checks.get(criterion)   # criteria hash by identity: cheap
        if seen is not None and seen[0] is pin:
            return seen[1]
        ok = super()._is_current_pin_satisfying(name, criterion)
        self._pin_checks[criterion] = (pin, ok)
        return ok


def _resolve_once(reqs: list[_Req], provider: _Provider) -> dict[str, Candidate]:
    """One resolvelib run, keeping only the pins the requirements reach."""
    try:
        state = _Resolution(provider, BaseReporter()).resolve(reqs, max_rounds=MAX_ROUNDS)
    except ResolutionImpossible as e:
        raise _explain(list(e.causes), provider) from None
    except ResolutionTooDeep as e:
        raise ResolutionError(f"gave up resolving after {e.round_count} steps: the requirements are "
                              "too tangled to untie",
                              hint="pin some versions with == to narrow the search") from None
    resolved: dict[str, Candidate] = {}  # walk from the requirements: backtracking can leave dead pins
    todo = [r.name for r in reqs]
    while todo:
        name = todo.pop()
        if name not in resolved:
            resolved[name] = state.mapping[name]
            todo.extend(d.name for d in _dependencies(resolved[name]))
    return resolved


def resolve(requirements: Iterable[object], get_packument: Callable[[str], Packument | None], *,
            pre: bool = False, prefer: dict[str, Version] | None = None) -> dict[str, Candidate]:
    """Pick one version per package so every requirement holds; raises ResolutionError.

    `prefer` names a version per package to try before the newest (what a lock holds)."""
    reqs = [_user_req(r) for r in requirements]
    provider = _Provider(get_packument, pre, prefer)
    while True:  # ends: each pass excludes at least one more candidate
        resolved = _resolve_once(reqs, provider)
        # resolvelib can keep a pin that only a since-dropped requirement allowed (a yanked version
        # or a prerelease, PEP 592/440): forbid such pins outright and resolve again.
        wants = {name: [r for r in reqs if r.name == name] for name in resolved}
        for dep in (d for c in resolved.values() for d in _dependencies(c)):
            wants[dep.name].append(dep)
        stale = {c for c in resolved.values()
                 if (c.yanked and not any(_pins(r, c.version) for r in wants[c.name]))
                 or (c.version.is_prerelease and not pre
                     and not any(r.specifier.prereleases for r in wants[c.name]))}
        if not stale:
            break
        provider.excluded |= stale
    explain_order(resolved)  # raises on a dependency cycle
    return {name: resolved[name] for name in sorted(resolved)}


def explain_order(resolved: dict[str, Candidate]) -> list[str]:
    """Names in dependency order (dependencies before dependents); raises ResolutionError on a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name):], name]
            cands = [resolved[n] for n in cycle]
            edges = [(next(d.text for d in _dependencies(a) if d.name == b.name), f"{a.name} {a.version}")
                     for a, b in zip(cands, cands[1:])]
            raise ResolutionError("dependency cycle: " + " -> ".join(f"{c.name} {c.version}" for c in cands),
                                  causes=edges, hint="a package must not depend on itself, even indirectly")
        state[name] = 1
        path.append(name)
        for dep in _dependencies(resolved[name]):
            if dep.name in resolved:
                visit(dep.name)
        path.pop()
        state[name] = 2
        order.append(name)

    for name in sorted(resolved):
        visit(name)
    return order
