"""Strict parsing at the edge: names, versions, specifiers, paths and typed table fields.

Every failure is a ManifestError naming the file, the key and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from nnpm.errors import ManifestError

# PEP 508 project names; the length cap keeps URLs and paths sane.
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE)
_MAX_NAME = 100
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}\Z")


def canonical_name(name: str, *, file: str | None = None, key: str = "package.name") -> str:
    """Validate a package name (PEP 508) and return its PEP 503 normal form."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > _MAX_NAME:
        raise ManifestError(
            f"invalid package name {name!r}",
            file=file, key=key,
            hint=f"use up to {_MAX_NAME} letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        )
    return canonicalize_name(name)


def parse_version(value: Any, *, file: str | None = None, key: str = "package.version") -> Version:
    """Parse a PEP 440 version or raise ManifestError naming where it came from."""
    if not isinstance(value, str):
        raise ManifestError(f"version must be a string, got {type(value).__name__}", file=file, key=key)
    try:
        return Version(value)
    except (InvalidVersion, ValueError):  # ValueError: a number past Python's int-parsing limit
        raise ManifestError(f"invalid version {value!r}", file=file, key=key,
                            hint="use a PEP 440 version such as 1.0.0 or 2.1rc1") from None


def parse_specifier(value: Any, *, file: str | None = None, key: str) -> SpecifierSet:
    """Parse a PEP 440 specifier set such as '>=1,<2' ('' or '*' means any version)."""
    if not isinstance(value, str):
        raise ManifestError(f"specifier must be a string, got {type(value).__name__}", file=file, key=key)
    text = "" if value.strip() == "*" else value
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise ManifestError(f"invalid version specifier {value!r}", file=file, key=key,
                            hint="use PEP 440 specifiers such as '>=1.0,<2'") from None


def check_relpath(value: Any, *, file: str | None = None, key: str) -> str:
    """A path inside the package: relative, POSIX, no '..', no empty or odd parts."""
    if not isinstance(value, str) or not value:
        raise ManifestError("path must be a non-empty string", file=file, key=key)
    bad = (
        value.startswith("/") or "\\" in value or "\x00" in value or re.match(r"^[A-Za-z]:", value)
    )
    parts = value.split("/")
    if bad or any(p in ("", ".", "..") for p in parts) or len(value) > 255:
        raise ManifestError(f"path {value!r} leaves the package folder or is not a plain relative path",
                            file=file, key=key, hint="use a relative path inside the package, like 'labels.txt'")
    return str(PurePosixPath(value))


def _table(data: Any, key: str, file: str | None, allowed: set[str] | None = None) -> dict:
    if not isinstance(data, dict):
        raise ManifestError(f"must be a table, got {type(data).__name__}", file=file, key=key)
    if allowed is not None:
        for k in data:
            if k not in allowed:
                raise ManifestError(f"unknown key {k!r}", file=file, key=f"{key}.{k}" if key else k,
                                    hint="allowed: " + ", ".join(sorted(allowed)))
    return data


def _str(data: dict, key: str, file: str | None, prefix: str, *, required: bool = False,
         default: str | None = None) -> str | None:
    if key not in data:
        if required:
            raise ManifestError("is required", file=file, key=f"{prefix}.{key}")
        return default
    value = data[key]
    if not isinstance(value, str):
        raise ManifestError(f"must be a string, got {type(value).__name__}", file=file, key=f"{prefix}.{key}")
    if len(value) > 10_000:
        raise ManifestError("is longer than 10000 characters", file=file, key=f"{prefix}.{key}")
    return value


def _str_list(data: dict, key: str, file: str | None, prefix: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or len(value) > 100:
        raise ManifestError("must be a list of up to 100 non-empty strings", file=file, key=f"{prefix}.{key}")
    return tuple(value)


def is_digest(text: str) -> bool:
    """True for 64 lowercase hex digits."""
    return bool(_DIGEST_RE.match(text))
