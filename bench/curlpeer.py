"""The physical-limit peer of a cold install: curl fetching the same blobs, then sha256sum of them.

Two small C programs, no resolution, no store, no fsync: the least any verified download can
cost. Without either program, a labelled Python stand-in (urllib + hashlib in a fresh
interpreter) does the same work. Used by the install and sizes groups.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench.common import PY, run


def peer_label() -> str:
    """What `fetch_and_hash` runs here: curl + sha256sum, or the labelled Python stand-in without them."""
    if shutil.which("curl") and shutil.which("sha256sum"):
        return "curl -o + sha256sum (4 at a time)"
    return "PYTHON STAND-IN (urllib + hashlib; curl/sha256sum not found)"


def fetch_and_hash(url: str, files: list[tuple[str, int]], folder: Path) -> tuple[float, float, str]:
    """The physical-limit peer of a cold install: (download seconds, hash seconds, label). The blobs
    are fetched 4 at a time into `folder` (as nnpm fetches), then hashed and their digests checked.
    The stand-in does both in one process, so its hash time is 0."""
    urls = [f"{url}/api/v1/blobs/sha256:{digest}" for digest, _ in files]
    targets = [str(folder / f"f{n}") for n in range(len(files))]
    curl, sha256sum = shutil.which("curl"), shutil.which("sha256sum")
    label = peer_label()
    start = time.perf_counter()
    if curl and sha256sum:
        # -s alone does not silence the meter of --parallel (curl 7.88); --no-progress-meter does.
        args = [a for target, u in zip(targets, urls, strict=True) for a in ("-o", target, u)]
        subprocess.run([curl, "-sS", "--no-progress-meter", "-f", "--parallel", "--parallel-max", "4", *args],
                       check=True)
        fetched = time.perf_counter()
        out = subprocess.run([sha256sum, *targets], check=True, capture_output=True, text=True).stdout
    else:   # the same work in a fresh interpreter, labelled
        code = ("import hashlib, shutil, sys, urllib.request\n"
                "for url, path in zip(sys.argv[1::2], sys.argv[2::2]):\n"
                "    with urllib.request.urlopen(url) as r, open(path, 'wb') as f:\n"
                "        shutil.copyfileobj(r, f, 1 << 20)\n"
                "    with open(path, 'rb') as f:\n"
                "        print(hashlib.file_digest(f, 'sha256').hexdigest())\n")
        out = run([PY, "-c", code, *[a for pair in zip(urls, targets) for a in pair]], timeout=1800).stdout
        fetched = time.perf_counter()
    end = time.perf_counter()
    if [line.split()[0] for line in out.splitlines()] != [digest for digest, _ in files]:
        raise RuntimeError(f"the peer fetched other bytes than {url}'s blobs")
    return fetched - start, end - fetched, label
