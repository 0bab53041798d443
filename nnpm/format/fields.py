"""Field parsing for the package format: names, versions, specifiers, paths and typed table fields.

Every failure is a ManifestError naming the file, the key and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from nnpm.errors import ManifestError
from nnpm.format.limits import MAX_LIST_ITEMS, MAX_NAME_LENGTH, MAX_PATH_LENGTH, MAX_TEXT_LENGTH

# PEP 508 project names, ASCII only: under IGNORECASE without ASCII, [A-Z] also matches 'ſ' and 'ı'
# (they upper-case to S and I), which would let look-alikes of existing names in.
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
_SEPARATORS = re.compile(r"[-_.]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Names nnpm itself uses beside or inside a package folder (the archive's manifest, an author's
# nnpm.toml, a lock, install records, a project's .nnpm/ folder): no package file may take them.
RESERVED_PATHS = frozenset({"manifest.json", "nnpm.toml", "nnpm.lock", "stat.json", ".stat.json"})
RESERVED_FOLDERS = frozenset({".nnpm"})
_MAX_NAME = MAX_NAME_LENGTH
DIGEST_RE = re.compile(r"^[0-9a-f]{64}\Z")
DIGEST_FILE_RE = re.compile(r"^sha256-([0-9a-f]{64})\Z")   # a tensor's file, named by its bytes (author/split.py)


def normal_name(name: str) -> str:
    """PEP 503 normal form, as packaging.utils.canonicalize_name (whose import pulls packaging.tags: 14 ms)."""
    return _SEPARATORS.sub("-", name).lower()


def canonical_name(name: str, *, file: str | None = None, key: str = "package.name") -> str:
    """Validate a package name (PEP 508) and return its PEP 503 normal form."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > _MAX_NAME:
        raise ManifestError(
            f"invalid package name {name!r}",
            file=file, key=key,
            hint=f"use up to {_MAX_NAME} letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        )
    return normal_name(name)


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
    if bad or any(p in ("", ".", "..") for p in parts) or len(value) > MAX_PATH_LENGTH:
        raise ManifestError(f"path {value!r} leaves the package folder or is not a plain relative path",
                            file=file, key=key, hint="use a relative path inside the package, like 'labels.txt'")
    if _CONTROL_RE.search(value):
        raise ManifestError(f"path {value!r} contains control characters", file=file, key=key)
    if value in RESERVED_PATHS or parts[0] in RESERVED_FOLDERS:
        raise ManifestError(f"path {value!r} is a name nnpm keeps for itself", file=file, key=key,
                            hint="rename the file; reserved: " + ", ".join(sorted(RESERVED_PATHS | RESERVED_FOLDERS)))
    return str(PurePosixPath(value))


def check_printable(value: str, *, file: str | None = None, key: str) -> str:
    """Refuse text with control or bidirectional-override characters (they would reach people's terminals)."""
    match = _CONTROL_RE.search(value)
    if match:
        raise ManifestError(f"contains the control character U+{ord(match.group()):04X}", file=file, key=key,
                            hint="remove control characters (escape sequences, NUL, line breaks) from the text")
    return value


def table(data: Any, key: str, file: str | None, allowed: set[str] | None = None) -> dict:
    """`data` as a table (dict), refusing keys outside `allowed` when given."""
    if not isinstance(data, dict):
        raise ManifestError(f"must be a table, got {type(data).__name__}", file=file, key=key)
    if allowed is not None:
        for k in data:
            if k not in allowed:
                raise ManifestError(f"unknown key {k!r}", file=file, key=f"{key}.{k}" if key else k,
                                    hint="allowed: " + ", ".join(sorted(allowed)))
    return data


def text(data: dict, key: str, file: str | None, prefix: str, *, required: bool = False,
         default: str | None = None) -> str | None:
    """The string at `data[key]` (bounded in length), `default` when absent, ManifestError when required."""
    if key not in data:
        if required:
            raise ManifestError("is required", file=file, key=f"{prefix}.{key}")
        return default
    value = data[key]
    if not isinstance(value, str):
        raise ManifestError(f"must be a string, got {type(value).__name__}", file=file, key=f"{prefix}.{key}")
    if len(value) > MAX_TEXT_LENGTH:
        raise ManifestError(f"is longer than {MAX_TEXT_LENGTH} characters", file=file, key=f"{prefix}.{key}")
    return check_printable(value, file=file, key=f"{prefix}.{key}")


def text_list(data: dict, key: str, file: str | None, prefix: str, *, printable: bool = True) -> tuple[str, ...]:
    """A list of non-empty strings at `data[key]` (bounded in count), () when absent.

    `printable=False` leaves the characters to a stricter check by the caller (paths, names)."""
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or len(value) > MAX_LIST_ITEMS:
        raise ManifestError(f"must be a list of up to {MAX_LIST_ITEMS} non-empty strings", file=file, key=f"{prefix}.{key}")
    return tuple(check_printable(v, file=file, key=f"{prefix}.{key}") if printable else v for v in value)


def is_digest(value: str) -> bool:
    """True for 64 lowercase hex digits."""
    return bool(DIGEST_RE.match(value))
