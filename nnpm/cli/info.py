"""`nnpm info`: one package, installed or on the registry."""

from __future__ import annotations

import json

import typer

from nnpm.cli.common import ENV, REGISTRY


def info(
    spec: str = typer.Argument(..., help="NAME or NAME==VERSION"),
    env: str = ENV,
    registry: str = REGISTRY,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a package: manifest, signature, dependencies, files, params, where installed."""
    from nnpm.install.info import describe

    data = describe(spec, env=env, registry=registry)
    if as_json:
        print(json.dumps(data, indent=1))
        return
    from nnpm.cli.output import console, human_size, literal, summary
    from nnpm.format.manifest import Manifest, Signature

    manifest = Manifest.from_dict(data["manifest"])
    out = console()
    summary(manifest, Signature.from_dict(data["signature"]) if data.get("signature") else None)
    for f in manifest.files:
        out.print(f"  {f.path}  {human_size(f.size)}  sha256:{f.sha256[:16]}…")
    out.print(f"  installed: {data['installed_path'] or 'no'}"
              + (f" (variant {literal(data['installed_variant'])})" if data.get("installed_variant")
                 and len(data.get("variants") or []) > 1 else ""))
    if len(data.get("variants") or []) > 1 or data.get("measured"):
        from nnpm.cli.output import variants_table
        from nnpm.format.measured import machine_text

        out.print(variants_table(data["variants"]))
        machine = machine_text(data.get("measured"))
        out.print("  " + literal(f"measured by the registry on {machine}, one thread" if machine
                                 else "not measured by the registry"))
    if data.get("publisher") or data.get("signer"):
        out.print("  " + literal(f"published by {data.get('publisher') or 'unknown'}, "
                                 + (f"signed by {data['signer']}" if data.get("signer") else "unsigned")))
    if data.get("versions"):
        out.print("  versions: " + ", ".join(v + (" (yanked)" if y else "") for v, y in data["versions"]))
    if data.get("registry_unreachable"):
        out.print(literal(f"  registry: not reachable ({data['registry_unreachable']}); shown from the environment"))


def register(app: typer.Typer) -> None:
    """Add `nnpm info`."""
    app.command()(info)
