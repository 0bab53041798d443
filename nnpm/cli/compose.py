"""`nnpm compose NAME -o fused.onnx`: write a pipeline's fused graph."""

from __future__ import annotations

from pathlib import Path

import typer

from nnpm.cli.common import ENV


def compose(
    name: str = typer.Argument(..., help="An installed pipeline package."),
    out: Path = typer.Option(..., "-o", "--output", help="Where to write the fused ONNX file."),
    env: str = ENV,
) -> None:
    """Fuse an installed pipeline's steps into one ONNX graph and write it (external data beside it)."""
    from nnpm.cli.output import console, literal, signature_table
    from nnpm.errors import PipelineError
    from nnpm.format.wiring import signature
    from nnpm.install.env import open_env
    from nnpm.runtime.fusion import fused_graph, write_model
    from nnpm.runtime.steps import wiring_of

    e = open_env(env)
    pkg = e.get(name)
    if pkg.manifest.project.pipeline is None:
        raise PipelineError(f"{pkg.name} is a model, not a pipeline",
                            hint="its graph is " + str(pkg.path / pkg.manifest.project.model.file))
    proto, data = fused_graph(pkg, e)
    write_model(proto, data, out, link=False, data_dir=f"{out.stem}.data")
    wiring, sigs = wiring_of(pkg, e)
    c = console()
    extra = f", weights in {out.stem}.data/" if data else ""
    c.print(literal(f"wrote {out} ({' -> '.join(wiring.order)}, {len(proto.graph.node)} nodes{extra})"))
    c.print(signature_table(signature(wiring, sigs)))


def register(app: typer.Typer) -> None:
    """Add the compose command."""
    app.command()(compose)
