"""`nnpm publish`: upload a package's missing files to the registry, then publish its version."""

from __future__ import annotations

from pathlib import Path

import typer

from nnpm.cli.common import REGISTRY, TOKEN, registry_client
from nnpm.cli.output import say


def publish(
    target: Path = typer.Argument(Path("."), help="A package folder (with nnpm.toml) or a .nnpm archive."),
    registry: str = REGISTRY,
    token: str = TOKEN,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show upload progress on a terminal."),
    no_split: bool = typer.Option(False, "--no-split-tensors", help="Keep the author's weight files instead of "
                                  "one file per tensor over 64 KiB, named by its sha256."),
    sign: bool = typer.Option(None, "--sign/--no-sign", help="Sign the manifest with your key (default: the "
                              "'sign' setting, NNPM_SIGN)."),
    key: str = typer.Option(None, "--key", help="The key to sign with: a name in NNPM_HOME/keys or a path "
                            "(default: 'default'; implies --sign).", metavar="NAME|PATH"),
) -> None:
    """Upload a package's missing files to the registry, then publish its version."""
    from nnpm.author.publish import publish as do_publish
    from nnpm.cli.output import human_size, plural
    from nnpm.config import load_settings

    signer = None
    if sign if sign is not None else (key is not None or load_settings().sign):
        from nnpm.cli.keys import signing_key

        signer = signing_key(key)   # before anything is uploaded: a wrong passphrase fails first
    with registry_client(registry, token) as client:
        result = do_publish(target, client, progress=progress, split=not no_split, signer=signer)
    what = (f"{plural(len(result.uploaded), 'file')}, {human_size(result.bytes_sent)} uploaded, "
            f"{len(result.skipped)} skipped: {human_size(result.bytes_skipped)} the registry had")
    if signer is not None:
        from nnpm.author.keys import public_of

        what += f", signed by {public_of(signer).keyid}"
    if result.created:
        say(f"published {result.name} {result.version} to {client.url} ({what})")
    else:
        say(f"{result.name} {result.version} was already published to {client.url} "
                   f"with identical content ({what})")
    say(f"model card: {client.url}/packages/{result.name}")


def register(app: typer.Typer) -> None:
    """Add `nnpm publish`."""
    app.command()(publish)
