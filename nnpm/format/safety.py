"""Package safety rules on disk: no path leaves the package root, no links, size caps.

Checked at pack, by the registry before it accepts a version, and before load.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nnpm.errors import PackageSafetyError
from nnpm.format.limits import MAX_FILE_SIZE


def check_location(location: str, *, what: str) -> None:
    """Refuse a relative location that is absolute, uses '..' or backslashes."""
    parts = location.replace("\\", "/").split("/")
    if (not location or location.startswith(("/", "\\")) or "\\" in location or "\x00" in location
            or (len(location) > 1 and location[1] == ":") or ".." in parts):
        raise PackageSafetyError(
            f"{what} {location!r} points outside the package folder",
            hint="external data and included files must be plain relative paths inside the package",
        )


def check_file(root: Path, rel: str, *, allow_hardlinks: bool = False, what: str = "file") -> Path:
    """Resolve `rel` under `root` and refuse links, non-regular files and escapes; return the path."""
    check_location(rel, what=what)
    root = Path(root)
    path = root / rel
    # Walk each component so a symlinked folder on the way is caught, not only the leaf.
    parts = Path(rel).parts
    if not parts:
        raise PackageSafetyError(f"{what} {rel!r} is not a file inside the package")
    current = root
    for part in parts:
        current = current / part
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            raise PackageSafetyError(f"{what} {rel!r} does not exist in {root}",
                                     hint="add the file or remove it from nnpm.toml") from None
        except OSError as exc:
            raise PackageSafetyError(f"{what} {rel!r} cannot be read: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise PackageSafetyError(f"{what} {rel!r} is a symbolic link",
                                     hint="replace the link with a real copy of the file")
    if not stat.S_ISREG(st.st_mode):
        raise PackageSafetyError(f"{what} {rel!r} is not a regular file")
    if st.st_nlink > 1 and not allow_hardlinks:
        raise PackageSafetyError(f"{what} {rel!r} is a hard link ({st.st_nlink} names)",
                                 hint="copy the file so it has a single name")
    if st.st_size > MAX_FILE_SIZE:
        raise PackageSafetyError(f"{what} {rel!r} is larger than {MAX_FILE_SIZE} bytes")
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        raise PackageSafetyError(f"{what} {rel!r} resolves outside the package folder") from None
    return path
