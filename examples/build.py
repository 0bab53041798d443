"""Build the example packages: ``python -m examples.build OUTDIR [--only NAME ...]``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from examples import digits, digits_preprocess, imagenet, pipelines, resnet18
from examples.common import Package, write_package

# Folder name -> factory; order is build order and output order.
BUILDERS: dict[str, Callable[[], Package]] = {
    "resnet18": resnet18.package,
    "digits": digits.package,
    "digits-preprocess": digits_preprocess.package,
    "imagenet-preprocess": imagenet.preprocess_package,
    "topk": imagenet.topk_package,
    "digits-classifier": pipelines.digits_classifier,
    "imagenet-classifier": pipelines.imagenet_classifier,
}


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def build(outdir: Path, only: list[str] | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Build the chosen examples (all by default) into outdir/<name> and return their folders."""
    names = list(BUILDERS) if not only else list(dict.fromkeys(only))
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown example(s) {', '.join(unknown)}; choose from {', '.join(BUILDERS)}")
    folders = []
    for name in names:
        start = time.perf_counter()
        pkg = BUILDERS[name]()
        if pkg.name != name:
            raise AssertionError(f"builder {name!r} produced package {pkg.name!r}")
        folder = write_package(pkg, outdir)
        log(f"{name} {pkg.version} -> {folder} ({_size(folder) / 1e6:.1f} MB, "
            f"{time.perf_counter() - start:.1f} s)")
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m examples.build", description=__doc__)
    parser.add_argument("outdir", type=Path, help="folder to create the package folders in")
    parser.add_argument("--only", nargs="+", action="extend", metavar="NAME", choices=list(BUILDERS),
                        help="build only these examples")
    args = parser.parse_args(argv)
    build(args.outdir, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
