"""`nnpm compose NAME -o fused.onnx`: write a pipeline's fused graph."""

from __future__ import annotations

from pathlib import Path

import typer


def compose(
    name: str = typer.Argument(..., help="An installed pipeline package."),
    out: Path = typer.Option(..., "-o", "--output", help="Where to write the fused ONNX file."),
    env: str = typer.Option(None, "--env", "-e", help="Environment (default: NNPM_ENV or 'default')."),
) -> None:
    """Fuse an installed pipeline's steps into one ONNX graph and write it."""
    import onnx

    from nnpm.cli.output import console, signature_table
    from nnpm.errors import PipelineError
    from nnpm.format.wiring import signature
    from nnpm.fsutil import atomic_path
    from nnpm.install.env import open_env
    from nnpm.runtime.pipeline import fused_proto, wiring_of

    e = open_env(env)
    pkg = e.get(name)
    if pkg.manifest.project.pipeline is None:
        raise PipelineError(f"{pkg.name} is a model, not a pipeline", hint="its graph is " + str(pkg.path / pkg.manifest.project.model.file))
    proto = fused_proto(pkg, e)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    wiring, sigs = wiring_of(pkg, e)
    c = console()
    c.print(f"wrote {out} ({' -> '.join(wiring.order)}, {len(proto.graph.node)} nodes)")
    c.print(signature_table(signature(wiring, sigs)))


def register(app: typer.Typer) -> None:
    """Add the compose command."""
    app.command()(compose)
