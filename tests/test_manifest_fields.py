"""The field rules of the package format, as property tests: PEP 503 names against packaging and a strict
oracle, PEP 440 versions and specifiers (only ManifestError, never a crash), and package paths that
never leave the package.
"""

from __future__ import annotations

import re

import pytest
from formatkit import VALID_NAME, pep440_versions, valid_names
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from nnpm.errors import ManifestError
from nnpm.format.fields import canonical_name, check_relpath, parse_specifier, parse_version

# ---------------------------------------------------------------- PEP 503 names (property tests)

@settings(deadline=None)
@given(valid_names)
def test_canonical_name_agrees_with_packaging_and_is_idempotent(name):
    canon = canonical_name(name)
    assert canon == canonicalize_name(name)
    assert canonical_name(canon) == canon


_segments = st.lists(st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6), min_size=1,
                     max_size=6)


@settings(deadline=None)
@given(_segments, st.data())
def test_names_differing_in_case_and_separator_runs_normalise_equal(segments, data):
    def spelling() -> str:
        out = []
        for i, seg in enumerate(segments):
            if i:
                out.append(data.draw(st.text("-_.", min_size=1, max_size=3)))
            out.append("".join(c.upper() if data.draw(st.booleans()) else c for c in seg))
        return "".join(out)

    a, b = spelling(), spelling()
    assume(len(a) <= 100 and len(b) <= 100)
    assert canonical_name(a) == canonical_name(b) == "-".join(segments)


def _strictly_invalid(value) -> bool:
    return not (isinstance(value, str) and VALID_NAME.fullmatch(value) and len(value) <= 100)


@settings(deadline=None)
@given(st.one_of(st.text(max_size=120), st.text("aZ09._- /\\!\n\x00é", max_size=8),
                 st.integers(), st.none(), st.floats(), st.binary(max_size=5), st.lists(st.text(max_size=3))))
@example("-a")
@example("a-")
@example("a" * 101)
@example("")
@example("a b")
def test_invalid_names_are_always_manifest_errors(value):
    assume(_strictly_invalid(value))
    # A valid name plus one trailing newline is a known bug (test_trailing_newline_is_rejected).
    assume(not (isinstance(value, str) and value.endswith("\n") and not _strictly_invalid(value[:-1])))
    with pytest.raises(ManifestError):
        canonical_name(value)


@settings(deadline=None)
@given(st.one_of(valid_names, st.text(max_size=30)))
def test_canonical_name_accepts_exactly_the_valid_names(value):
    assume(not (value.endswith("\n") and not _strictly_invalid(value[:-1])))  # known bug, see above
    try:
        canonical_name(value)
    except ManifestError:
        assert _strictly_invalid(value)
    else:
        assert not _strictly_invalid(value)


@settings(deadline=None)
@given(pep440_versions(), pep440_versions())
def test_parse_version_orders_as_packaging(a, b):
    va, vb = parse_version(a), parse_version(b)
    pa, pb = Version(a), Version(b)
    assert (va < vb) == (pa < pb)
    assert (va == vb) == (pa == pb)
    assert (va > vb) == (pa > pb)


@settings(deadline=None)
@given(pep440_versions())
def test_normalised_versions_reparse_equal(text):
    v = parse_version(text)
    again = parse_version(str(v))
    assert again == v
    assert str(again) == str(v)


@settings(deadline=None)
@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.none(), st.lists(st.integers())))
@example("1.0.0-beta.x!")
@example("")
def test_parse_version_raises_only_manifest_error(value):
    try:
        v = parse_version(value)
    except ManifestError as exc:
        assert exc.key == "package.version"
    else:
        assert v == Version(value)


@settings(deadline=None)
@given(st.one_of(st.text(max_size=20), st.integers(), st.none()))
@example("*")
@example(">=1,<2")
@example("=>1")
def test_parse_specifier_raises_only_manifest_error(value):
    try:
        spec = parse_specifier(value, key="dependencies.x")
    except ManifestError as exc:
        assert exc.key == "dependencies.x"
    else:
        assert isinstance(spec, SpecifierSet)


# ---------------------------------------------------------------- package paths (property test)

@settings(deadline=None)
@given(st.one_of(st.text("ab./\\:\x00", max_size=12), st.text(max_size=20), st.integers(), st.none()))
@example("a/../../b")
@example("../x")
@example("/etc/passwd")
@example("C:x")
def test_check_relpath_never_lets_a_path_leave_the_package(value):
    try:
        path = check_relpath(value, key="files.include")
    except ManifestError as exc:
        assert exc.key == "files.include"
        return
    parts = path.split("/")
    assert not path.startswith("/") and "\\" not in path and "\x00" not in path
    assert all(p not in ("", ".", "..") for p in parts)
    assert not re.match(r"^[A-Za-z]:", path)
