"""Many publishes at once against one registry, run as its own process.

    python -m bench.publishload URL --token-file FILE --scratch DIR FOLDER [FOLDER ...]

Packs every package folder first (nnpm.author.pack.staged: validate, hash, split; the
client-side work, kept out of the measured part), prints `ready` and waits for a line on
stdin. Then one thread per package calls nnpm.author.publish.upload with its own
nnpm.client.api.RegistryClient, all released at once by a barrier: what a publish sends to
the server (POST /blobs/missing, PUT of each blob, PUT of the manifest, retried as the
client retries). Prints one JSON line: per publish its start and end in time.monotonic()
(one clock for every process on Linux), whether it created the version, and any error.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from nnpm.author.pack import Built, staged
from nnpm.author.publish import upload
from nnpm.client.api import RegistryClient


def _publish(built: Built, url: str, token: str, barrier: threading.Barrier, out: dict) -> None:
    """One publish, after every thread reached the barrier; its times and outcome go into `out`."""
    with RegistryClient(url, token=token) as client:
        barrier.wait()
        out["start"] = time.monotonic()
        try:
            result = upload(built.manifest, built.paths, client, progress=False)
            out.update(created=result.created, uploaded=len(result.uploaded), bytes_sent=result.bytes_sent)
        except Exception as exc:  # reported, not raised: the other publishes carry on
            out["error"] = f"{type(exc).__name__}: {exc}"[:300]
        out["end"] = time.monotonic()


def run(url: str, token: str, folders: list[Path], scratch: Path, timeout: float) -> list[dict]:
    """Stage every folder, wait for the go line on stdin, publish them all at once; one dict per publish."""
    with ExitStack() as stack:
        built = [stack.enter_context(staged(folder, scratch=scratch)) for folder in folders]
        print("ready", flush=True)
        if not sys.stdin.readline():
            raise SystemExit("stdin closed before the go line")
        results: list[dict] = [{"name": b.manifest.name, "version": str(b.manifest.version)} for b in built]
        barrier = threading.Barrier(len(built))
        threads = [threading.Thread(target=_publish, args=(b, url, token, barrier, out), daemon=True)
                   for b, out in zip(built, results, strict=True)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for out in results:
            if "end" not in out:
                out["error"] = f"still running after {timeout:g} s"
        return results


def main(argv: list[str] | None = None) -> int:
    """The command line: stage, wait for go, publish, print the outcomes as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m bench.publishload", description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--token-file", type=Path, required=True, help="a file holding the API token")
    p.add_argument("--scratch", type=Path, required=True, help="where the packed packages are staged")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for all publishes")
    a = p.parse_args(argv)
    results = run(a.url, a.token_file.read_text().strip(), a.folders, a.scratch, a.timeout)
    print(json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
