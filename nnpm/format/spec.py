"""What a user names on the command line or in `nnpm.load`: a package requirement, or a local package.

    resnet18              the package (never a folder that happens to be called so)
    resnet18==1.0.0       an exact version          resnet18>=1,<2   any version in a range
    encoder-decoder:encoder  pkg:encoder>=1         one graph of a package of several
    ./my-model  /abs/dir  ~/pkg  ../x  .            a package folder (a path must look like one)
    dist/x-1.0.0.nnpm                               a .nnpm archive

As pip does, a string is a path only when it looks like one: it starts with `./`, `../`,
`/` or `~`, is `.` or `..`, holds a path separator, or ends in `.nnpm`. Requirement
features nnpm has no use for (extras, environment markers, `name @ URL`) are refused
rather than silently ignored. Install, load, info, run, yank/owner and the resolver all
parse with this module.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from nnpm.errors import ManifestError, SpecError
from nnpm.format.fields import canonical_name, parse_version

_EXAMPLES = "e.g. resnet18, 'resnet18>=1,<2', resnet18==1.0.0, ./folder or x-1.0.0.nnpm"
_MAX_SPEC = 1000


@dataclass(frozen=True)
class Spec:
    """A parsed spec: `name` + `specifier` for a package, or `path` for a folder or archive."""

    text: str
    name: str | None = None
    specifier: SpecifierSet = field(default_factory=SpecifierSet)
    specifier_text: str = ""         # the specifier as the user wrote it (">=1,<2", not "<2,>=1")
    path: Path | None = None
    graph: str | None = None         # `name:graph`: one graph of a package of several

    @property
    def is_path(self) -> bool:
        """True for a folder or .nnpm archive."""
        return self.path is not None

    @property
    def pinned(self) -> Version | None:
        """The version when the spec pins exactly one (`==1.0`, no wildcard), else None."""
        specs = list(self.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            try:
                return Version(specs[0].version)
            except ValueError:
                return None
        return None

    @property
    def requirement(self) -> str:
        """`name` + specifier as written (no graph): what the resolver shows people."""
        return f"{self.name}{self.specifier_text}"

    def allows(self, version: Version) -> bool:
        """Whether an installed or published version satisfies the specifier (pre-releases count)."""
        return self.specifier.contains(version, prereleases=True)

    def __str__(self) -> str:
        return self.text


def looks_like_path(text: str) -> bool:
    """Whether a string names a folder or archive rather than a package (a URL is neither)."""
    if "://" in text:
        return False
    return (text in (".", "..") or text.startswith(("./", "../", "/", "~", ".\\", "..\\"))
            or "/" in text or os.sep in text or text.endswith(".nnpm"))


def parse_spec(value: "str | os.PathLike[str]", *, paths: bool = True) -> Spec:
    """Parse a package spec; `paths=False` accepts requirements only."""
    if isinstance(value, os.PathLike):
        if not paths:
            raise SpecError(f"{os.fspath(value)!r} is a path; a package name is needed here")
        return Spec(text=os.fspath(value), path=Path(value).expanduser())
    if not isinstance(value, str):
        raise SpecError(f"a package spec is a string, not {type(value).__name__}", hint=_EXAMPLES)
    text = value.strip()
    if not text or len(text) > _MAX_SPEC:
        raise SpecError(f"{value[:100]!r} is not a package spec", hint=_EXAMPLES)
    if looks_like_path(text):
        if not paths:
            raise SpecError(f"{text!r} is a path; a package name is needed here",
                            hint="e.g. resnet18 or resnet18==1.0.0")
        return Spec(text=text, path=Path(text).expanduser())
    return _requirement(text)


_GRAPH_SUFFIX = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*):([^\s:=<>!~(),;@\[\]]+)(.*)\Z", re.S)


def _requirement(text: str) -> Spec:
    graph = None
    named = _GRAPH_SUFFIX.match(text)
    if named:
        from nnpm.format.variants import check_graph_name

        try:
            graph = check_graph_name(named.group(2), file=None, key="graph")
        except ManifestError as exc:
            raise SpecError(f"{text!r}: {exc.message}", hint="e.g. pkg:encoder") from None
        text = named.group(1) + named.group(3)
    spec = _plain_requirement(text)
    return replace(spec, graph=graph, text=f"{spec.name}:{graph}{spec.specifier_text}") if graph else spec


# A name with an optional specifier list and nothing else: parsed without packaging.requirements,
# whose import (markers, tags) costs 20 ms on every `nnpm.load("name")`.
_SIMPLE = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*((?:[<>=!~]=?|===)[^;@\[\]()]*)?\Z")


def _plain_requirement(text: str) -> Spec:
    simple = _SIMPLE.match(text)
    if simple:
        try:
            specifier = SpecifierSet(simple.group(2) or "")
        except InvalidSpecifier:
            pass   # packaging.requirements words the error
        else:
            return _spec(text, simple.group(1), specifier, simple.group(2) or "")
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(text)
    except InvalidRequirement:
        raise SpecError(f"{text!r} is not a package name, requirement, folder or .nnpm file",
                        hint=_EXAMPLES) from None
    if req.url:
        raise SpecError(f"{text!r}: direct references (NAME @ URL) are not supported",
                        hint="publish the package to a registry, or install the downloaded file by path")
    if req.extras:
        raise SpecError(f"{text!r}: extras ([{','.join(sorted(req.extras))}]) mean nothing to nnpm packages",
                        hint="drop the [...] part")
    if req.marker is not None:
        raise SpecError(f"{text!r}: environment markers (; ...) are not supported", hint="drop the ; part")
    return _spec(text, req.name, req.specifier, text[len(req.name):])


def _spec(text: str, raw_name: str, specifier: SpecifierSet, rest: str) -> Spec:
    """The Spec, its specifier shown as the user wrote it when that reads the same."""
    name = canonical_name(raw_name, file=None, key="requirement")
    written = re.sub(r"\s+", "", rest.strip()).strip("()")
    try:
        if SpecifierSet(written) != specifier:
            written = str(specifier)
    except InvalidSpecifier:
        written = str(specifier)
    return Spec(text=text, name=name, specifier=specifier, specifier_text=written)


def parse_pin(text: str) -> tuple[str, Version]:
    """`NAME==VERSION` exactly (for yank and the like): the canonical name and the version."""
    name, sep, version = str(text).partition("==")
    if not sep or not name.strip() or not version.strip():
        raise SpecError(f"{text!r} is not NAME==VERSION", hint="e.g. resnet18==1.0.0")
    return (canonical_name(name.strip(), file=None, key="name"),
            parse_version(version.strip(), file=None, key="version"))
