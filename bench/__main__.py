"""`python -m bench [--only GROUP ...] [--quick] [--runs N] [--json PATH]`: run the benchmarks, print one table."""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from bench import (
    concurrency,
    finetune,
    install,
    oci,
    pipeline,
    projects,
    publish,
    registry,
    resolver,
    sizes,
    startup,
    trust,
    variants,
)
from bench.common import ROOT, Row, fmt, log, versions
from bench.world import World

GROUPS = {
    "install": install.bench,
    "startup": startup.bench,
    "pipeline": pipeline.bench,
    "registry": registry.bench,
    "resolver": resolver.bench,
    "publish": publish.bench,
    "variants": variants.bench,
    "projects": projects.bench,
    "finetune": finetune.bench,
    "oci": oci.bench,
    "trust": trust.bench,
    "sizes": lambda world, runs: sizes.bench(world, runs, quick=world.quick),
    "concurrency": lambda world, runs: concurrency.bench(world, runs, quick=world.quick),
}
RESULTS = Path(__file__).resolve().parent / "results.json"


def table(rows: list[Row]) -> str:
    """The plain-text table: figure | nnpm | peer | ratio | target | ok?"""
    head = ["figure", "nnpm", "peer", "ratio", "target", "ok?"]
    body = []
    for r in rows:
        peer = fmt(r.peer, r.unit) + (f" ({r.peer_label})" if r.peer_label else "") if r.peer is not None else "-"
        ok = {True: "yes", False: "NO", None: "-"}[r.ok]
        body.append([r.figure, "SKIPPED" if r.skipped else fmt(r.value, r.unit), peer, f"{r.ratio:.2f}x" if r.ratio is not None else "-",
                     r.target, ok])
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    def line(cells):
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(head), "-+-".join("-" * w for w in widths)]
    out += [line(cells) for cells in body]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", nargs="+", choices=list(GROUPS), help="run only these groups")
    p.add_argument("--quick", action="store_true",
                   help="a short run: 3 runs per median, shorter load windows, no 2.5 GB model")
    p.add_argument("--runs", type=int, default=None, help="timed runs per median, after one warm-up (default 5, "
                   "3 with --quick)")
    p.add_argument("--json", type=Path, default=RESULTS,
                   help=f"the history this run is appended to (default {RESULTS})")
    args = p.parse_args(argv)
    args.runs = args.runs or (3 if args.quick else 5)

    started = time.perf_counter()
    info = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(), "machine": platform.machine(),
            "system": platform.platform(), "versions": versions(), "runs": args.runs, "quick": args.quick,
            "groups": args.only or list(GROUPS)}
    info["loadavg_before"] = os.getloadavg()
    print(f"nnpm bench on {info['cores']} cores ({info['system']}), median of {args.runs} runs after a warm-up; "
          f"load average {info['loadavg_before'][0]:.2f} at the start")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    # pip byte-compiles what it installs; nnpm here is an editable checkout, and PYTHONDONTWRITEBYTECODE
    # (set on some machines) would make every timed process compile it again.
    compileall.compile_dir(str(ROOT / "nnpm"), quiet=1)
    world = World(quick=args.quick)
    rows: list[Row] = []
    failed: list[str] = []
    try:
        for name in args.only or list(GROUPS):
            try:
                rows += GROUPS[name](world, args.runs)
            except Exception:  # one broken group must not hide the others' figures
                failed.append(name)
                log(f"group {name} failed:\n{traceback.format_exc()}")
    finally:
        world.close()
    info["seconds"] = time.perf_counter() - started
    info["loadavg_after"] = os.getloadavg()
    print()
    print(table(rows))
    notes = [(r.key, n) for r in rows for n in r.notes]
    notes += [(r.key, "CHECK FAILED: " + r.check_failed) for r in rows if r.check_failed]
    if notes:
        print("\nnotes:")
        for figure, note in notes:
            print(f"  - {figure}: {note}")
    if failed:
        print(f"\nFAILED groups (see the log above): {', '.join(failed)}")
    print(f"\n{len(rows)} figures, {sum(r.ok is False for r in rows)} missed targets; "
          f"{info['seconds']:.0f} s in all")
    if info["loadavg_before"][0] > 0.5:
        print(f"warning: the load average was {info['loadavg_before'][0]:.2f} when the bench started: other work "
              "shared the cores, so timings are noisier and slower than on an idle machine")
    history = append_run(args.json, {**info, "failed": failed, "rows": [r.to_dict() for r in rows]})
    print(f"results: {args.json} (run {history} of the history)")
    return 1 if failed else 0


def append_run(path: Path, run: dict) -> int:
    """Add one run to the history file (a JSON object with a list of runs, oldest first); its count."""
    runs: list[dict] = []
    try:
        old = json.loads(path.read_text())
        runs = old["runs"] if isinstance(old, dict) and isinstance(old.get("runs"), list) else [old]
    except FileNotFoundError:
        pass
    except ValueError:
        # A damaged history is kept aside, not overwritten: it is the only record of earlier runs.
        path.replace(path.with_suffix(".damaged.json"))
        log(f"{path} was not JSON; kept as {path.with_suffix('.damaged.json').name}, a new history begins")
    runs.append(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    tmp.replace(path)
    return len(runs)


if __name__ == "__main__":
    sys.exit(main())
