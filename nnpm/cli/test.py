"""`nnpm test DIR|NAME`: run a package's self-test and say, output by output, how far it is from the expected."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from nnpm.cli.common import ENV

if TYPE_CHECKING:
    from nnpm.format.manifest import Manifest


def self_test(
    target: str = typer.Argument(..., metavar="DIR|NAME",
                                 help="A package folder (./my-model), or the name of an installed package."),
    variant: Optional[str] = typer.Option(None, "--variant",
                                          help="The variant to run (default: the reference of a folder, "
                                               "the installed variant of a name)."),
    max_drift: float = typer.Option(0.01, "--max-drift", min=0.0,
                                    help="For a variant: the largest relative L2 distance from the expected "
                                         "outputs that passes (its tolerance is the reference's only)."),
    env: Optional[str] = ENV,
) -> None:
    """Run the self-test: the graphs on the test inputs, compared with the expected outputs."""
    from nnpm.format.selftest import check_test_arrays, load_arrays, run_variant

    folder, manifest, variant = _target(target, variant, env)
    tests = manifest.project.tests
    inputs = load_arrays(folder / tests.inputs, what="the test inputs")
    expected = load_arrays(folder / tests.outputs, what="the test outputs")
    check_test_arrays(manifest, inputs, expected)
    got = run_variant(folder, manifest, variant, inputs)
    if variant == "reference":
        rows = _judged(manifest, got, expected)
        judge = f"within the tolerance (atol {tests.atol:g}, rtol {tests.rtol:g})"
    else:
        rows = _drifted(manifest, got, expected, max_drift)
        judge = f"within the drift a variant may have (relative L2 <= {max_drift:g}; --max-drift)"
    _report(manifest, variant, rows, judge)


def _judged(manifest: Manifest, got: dict, expected: dict) -> list[tuple[bool, str, str]]:
    """(passed, output, detail) per output: the reference against the expected, under [tests]' tolerance."""
    from nnpm.format.selftest import compare, port_key

    tests = manifest.project.tests
    tolerance = f"(atol {tests.atol:g}, rtol {tests.rtol:g})"
    return [(c.passed, port_key(manifest, c.graph, c.output),
             c.reason or f"max |diff| {c.max_abs:.1e}  {tolerance}")
            for c in compare(got, expected, tests.rtol, tests.atol, manifest=manifest)]


def _drifted(manifest: Manifest, got: dict, expected: dict, max_drift: float) -> list[tuple[bool, str, str]]:
    """(passed, output, detail) per output: a variant's drift from the expected, passing up to `max_drift`."""
    from nnpm.format.selftest import drift, port_key

    rows = []
    for out in drift(got, expected, manifest)["outputs"]:
        rel, label = out.get("rel_l2"), port_key(manifest, out["graph"], out["output"])
        if rel is None:
            rows.append((False, label, out.get("reason") or "not comparable with the expected output"))
            continue
        detail = f"rel L2 {rel:.1e}  max |diff| {out['max_abs']:.1e}"
        if out.get("argmax_agreement") is not None:
            detail += f"  arg-max agrees {out['argmax_agreement']:.0%}"
        rows.append((rel <= max_drift, label, detail + f"  (max drift {max_drift:g})"))
    return rows


def _report(manifest: Manifest, variant: str, rows: list[tuple[bool, str, str]], judge: str) -> None:
    """One line per output, then the verdict; exit 1 when any output fails."""
    from nnpm.cli.output import say

    for passed, label, detail in rows:
        say(f"{'PASS' if passed else 'FAIL'}  {label}  {detail}")
    failed = sum(not passed for passed, _, _ in rows)
    what = f"{manifest.name} {manifest.version} ({variant})"
    if failed:
        count = "the output is not" if len(rows) == 1 else f"{failed} of {len(rows)} outputs are not"
        say(f"{what}: FAILED, {count} {judge}")
        raise typer.Exit(1)
    say(f"{what}: passed, " + ("the output is" if len(rows) == 1 else f"all {len(rows)} outputs are") + f" {judge}")


def _target(target: str, variant: str | None, env: str | None) -> "tuple[Path, Manifest, str]":
    """The folder whose files to run, its manifest and the variant: a package folder, or an installed package."""
    from nnpm.errors import ManifestError, NotInstalledError, SpecError
    from nnpm.format.spec import parse_spec

    spec = parse_spec(target)
    if spec.graph:
        raise SpecError(f"{target!r}: the self-test covers every graph of a package", hint=f"run 'nnpm test {spec.name}'")
    if spec.is_path:
        if spec.path.suffix == ".nnpm" and not spec.path.is_dir():
            raise SpecError(f"{target!r} is an archive; nnpm test runs a package folder or an installed package",
                            hint=f"install it ('nnpm install {target}'), then run 'nnpm test NAME'")
        from nnpm.author.pack import build

        folder, manifest = spec.path, build(spec.path).manifest
        variant = variant or "reference"
        if variant not in manifest.variant_names():
            raise ManifestError(f"{manifest.name} has no variant {variant!r}",
                                hint="its variants are: " + ", ".join(manifest.variant_names()))
    else:
        from nnpm.install.env import open_env

        try:
            pkg = open_env(env).get(spec.name)
        except NotInstalledError as exc:
            if Path(target).is_dir():   # a name is never a folder (as in pip), but say how to mean the folder
                exc.hint = f"to test the folder, run 'nnpm test {folder_arg(Path(target))}'"
            raise
        if not spec.allows(pkg.version):
            raise NotInstalledError(f"{spec.requirement} is not installed ({pkg.version} is)",
                                    hint=f"run 'nnpm install {spec.requirement}'")
        if variant is not None and variant != pkg.variant:
            raise NotInstalledError(f"{pkg.name} {pkg.version} is installed as variant {pkg.variant!r}, "
                                    f"not {variant!r}", hint=f"run 'nnpm install {pkg.name} --variant {variant}'")
        pkg.verify()
        folder, manifest, variant = pkg.path, pkg.manifest, pkg.variant
    if manifest.project.tests is None:
        raise ManifestError(f"{manifest.name} {manifest.version} has no self-test ([tests] in nnpm.toml)",
                            hint="'nnpm init --from MODEL' writes one; or add [tests] with inputs and outputs "
                                 ".npz files to nnpm.toml")
    return Path(folder), manifest, variant


def folder_arg(folder: Path) -> str:
    """A folder as `nnpm test` reads it: `my-model` is a package name, `./my-model` the folder."""
    from nnpm.format.spec import looks_like_path

    text = str(folder)
    return text if looks_like_path(text) else f"./{text}"


def register(app: typer.Typer) -> None:
    """Add `nnpm test`."""
    app.command("test")(self_test)
