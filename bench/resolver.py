"""Resolver figure: a synthetic 1,000-package graph resolved from packuments held in a dict.

10 layers of 100 packages (`l{layer}-p{index}`), each with versions 1.0.0, 1.1.0, 1.2.0 and
2.0.0. In layers 0-8, 1.1.0 and 1.2.0 depend on three packages of the next layer
(index i, i+1, i+7 mod 100) with `>=1,<2` and `>=1.1,<2`, 2.0.0 on the same three with
`>=2`; 1.0.0 and the last layer have no dependencies. The requirements are every layer-0
package with `>=1,<2`, so all 1,000 packages resolve (to 1.2.0). `nnpm.install.resolve.resolve`
runs with `get_packument = packuments.get` (no network, no disk): the figure is the median
wall time of one full resolve, after a warm-up.
"""

from __future__ import annotations

import time

from bench.common import Row, log, median, repeat

LAYERS = 10
WIDTH = 100
VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "2.0.0")
FANOUT = (0, 1, 7)


def name(layer: int, i: int) -> str:
    return f"l{layer}-p{i}"


def graph() -> dict[str, dict]:
    """Packuments by canonical name."""
    out = {}
    for layer in range(LAYERS):
        for i in range(WIDTH):
            versions = []
            for v in VERSIONS:
                deps = {}
                if layer < LAYERS - 1 and v != "1.0.0":
                    spec = {"1.1.0": ">=1,<2", "1.2.0": ">=1.1,<2", "2.0.0": ">=2"}[v]
                    deps = {name(layer + 1, (i + k) % WIDTH): spec for k in FANOUT}
                manifest = {"package": {"name": name(layer, i), "version": v, "description": "synthetic"},
                            "dependencies": deps, "files": []}
                versions.append({"version": v, "yanked": False, "yanked_reason": None,
                                 "published_at": "2026-01-01T00:00:00Z", "manifest": manifest})
            out[name(layer, i)] = {"name": name(layer, i), "latest": VERSIONS[-1], "versions": versions}
    return out


def bench(world, runs: int) -> list[Row]:
    """The resolver group's row (needs no server)."""
    from nnpm.format.packument import Packument
    from nnpm.install.resolve import resolve

    log(f"resolver: {LAYERS * WIDTH} packages from cached packuments")
    packuments = graph()
    reqs = [f"{name(0, i)}>=1,<2" for i in range(WIDTH)]
    sizes = []

    def once(_i: int) -> float:
        start = time.perf_counter()
        # Parsed when the resolver asks, as the client parses a cached packument when it is needed.
        chosen = resolve(reqs, lambda n: Packument.from_dict(packuments[n]) if n in packuments else None)
        seconds = time.perf_counter() - start
        sizes.append(len(chosen))
        if len(chosen) != LAYERS * WIDTH or any(str(c.version) != "1.2.0" for c in chosen.values()):
            raise RuntimeError("the synthetic graph did not resolve to 1,000 packages at 1.2.0")
        return seconds

    start = time.perf_counter()
    once(-1)                                   # warm-up
    if time.perf_counter() - start > 2.0:      # slow resolver: fewer runs, to keep `make bench` short
        runs = min(runs, 3)
    times = repeat(once, runs, warmup=0)
    edges = (LAYERS - 1) * WIDTH * len(FANOUT)
    return [Row("resolve-1000", f"resolve {LAYERS * WIDTH:,} packages, cached metadata",
                median(times), "s", op="<=", limit=1.0, absolute=True, runs=times,
                notes=[f"{LAYERS} layers x {WIDTH} packages, {len(VERSIONS)} versions each, {len(FANOUT)} deps per "
                       f"version on the next layer ({edges:,} edges per version column); resolved {sizes[-1]} "
                       "packages, all at 1.2.0"])]
