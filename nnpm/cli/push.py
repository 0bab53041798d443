"""`nnpm push oci://HOST/REPO[:TAG] [DIR|NAME[==VER]]`: a package version into any OCI registry."""

from __future__ import annotations

import typer

from nnpm.cli.common import REGISTRY

INSECURE = typer.Option(False, "--insecure", help="Plain HTTP to a registry that is not on loopback.")


def push(
    target: str = typer.Argument(..., help="oci://HOST[:PORT]/REPO[:TAG]"),
    source: str = typer.Argument(".", help="A package folder, or NAME[==VERSION] on the nnpm registry."),
    registry: str = REGISTRY,
    insecure: bool = INSECURE,
    no_split: bool = typer.Option(False, "--no-split-tensors", help="Keep the author's weight files (a folder)."),
) -> None:
    """Push a package version as CNCF ModelPack artifacts (one per variant) to an OCI registry."""
    from nnpm.cli.output import say
    from nnpm.config import load_settings
    from nnpm.oci.push import push as do_push
    from nnpm.oci.reference import parse_ref

    ref = parse_ref(target, insecure=insecure)
    if ref.digest:
        from nnpm.errors import SpecError

        raise SpecError(f"{target}: a push names a tag, not a digest", hint="e.g. oci://HOST/REPO or oci://HOST/REPO:latest")
    pushed = do_push(ref, source, load_settings(registry=registry), split=not no_split)
    for tag, digest in pushed.tags:
        say(f"pushed {pushed.name} {pushed.version} to oci://{ref.host}/{ref.repository}:{tag} (sha256:{digest})")
    say(f"{pushed.uploaded} layers uploaded, {pushed.skipped} already there")


def register(app: typer.Typer) -> None:
    """Add `nnpm push`."""
    app.command()(push)
