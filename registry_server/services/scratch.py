"""The scratch folder a publish is checked and measured in: each distinct blob once, every other name a hard link.

A manifest may list one blob under many paths. `Scratch.add` links each path to the
stored blob when the store can (a folder store on the same file system: no bytes
copied at all), else materialises the blob once (a copy, or a download from S3) and
hard-links the other paths to that one copy. Every byte copied is counted against the
publish's budget (`--validate-scratch`): the copy that would pass it is refused (413)
before it is made.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nnpm.errors import TooLargeError
from nnpm.format.manifest import FileEntry, Manifest
from registry_server.storage.base import BlobStore


def worker_files(manifest: Manifest) -> list[FileEntry]:
    """What the worker needs: every graph file of every variant, the files that can be their external data,
    and the self-test's arrays.

    The other files the project declares (README, labels, `[files] include`) are not
    external data, so they stay out of the scratch folder."""
    tests = manifest.project.tests
    graphs = {entry.file for entries in manifest.graphs.values() for entry in entries.values()}
    others = set(manifest.project.declared_files()) - graphs - ({tests.inputs, tests.outputs} if tests else set())
    return [f for f in manifest.files if f.path not in others]


class Scratch:
    """Files materialised under `root` from `store`, copying at most `budget` bytes in all."""

    def __init__(self, root: Path, store: BlobStore, budget: int) -> None:
        self.root, self.store, self.budget = Path(root), store, budget
        self.copied = 0
        self._first: dict[str, Path] = {}  # digest → its one materialised file in this folder

    def add(self, entry: FileEntry) -> None:
        """Make `entry` appear at root/entry.path: a link to the store, to an earlier copy, or one counted copy."""
        dest = self.root / entry.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        first = self._first.get(entry.sha256)
        if first is not None:
            try:
                os.link(first, dest)
                return
            except OSError:  # e.g. the file system's limit of links per file: a new copy, counted
                self._charge(entry)
                shutil.copyfile(first, dest)
        elif not self.store.link(entry.sha256, dest):
            self._charge(entry)
            self.store.materialize(entry.sha256, dest, link=False)
        self._first[entry.sha256] = dest

    def _charge(self, entry: FileEntry) -> None:
        if self.copied + entry.size > self.budget:
            raise TooLargeError(f"checking this model needs more than the {self.budget} bytes of scratch space this "
                                f"registry allows per publish (at {entry.path!r})",
                                hint="ask the registry's operator to raise --validate-scratch")
        self.copied += entry.size
