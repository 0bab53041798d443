"""`nnpm owner add|remove|list`: who may publish and yank a package; `nnpm owner key add|list|remove`: the
publisher keys its signed versions must be signed with (docs/trust.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from nnpm.cli.common import REGISTRY, TOKEN, registry_client
from nnpm.cli.output import say

owner_app = typer.Typer(help="See and change the owners of a package.", no_args_is_help=True)
key_app = typer.Typer(help="See and change the publisher keys of a package.", no_args_is_help=True)
owner_app.add_typer(key_app, name="key")


def _name(text: str) -> str:
    from nnpm.format.spec import parse_spec

    spec = parse_spec(text, paths=False)
    if spec.specifier:
        from nnpm.errors import SpecError

        raise SpecError(f"{text!r}: owners belong to a package, not a version", hint=f"use {spec.name}")
    return spec.name


@owner_app.command("add")
def owner_add(
    name: str = typer.Argument(..., help="Package name."),
    user: str = typer.Argument(..., help="User to add as an owner."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Let another user publish and yank a package you own."""
    with registry_client(registry, token) as client:
        owners = client.add_owner(_name(name), user)
    say(f"owners of {_name(name)}: {', '.join(owners)}")


@owner_app.command("remove")
def owner_remove(
    name: str = typer.Argument(..., help="Package name."),
    user: str = typer.Argument(..., help="Owner to remove."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Take another owner's rights to a package away (a package keeps at least one owner)."""
    with registry_client(registry, token) as client:
        owners = client.remove_owner(_name(name), user)
    say(f"owners of {_name(name)}: {', '.join(owners)}")


@owner_app.command("list")
def owner_list(
    name: str = typer.Argument(..., help="Package name."),
    registry: str = REGISTRY,
) -> None:
    """Show who owns a package."""
    with registry_client(registry, None, need_token=False) as client:
        owners = client.owners(_name(name))
    say(f"owners of {_name(name)}: {', '.join(owners)}")


def _show_keys(name: str, keys: list[dict]) -> None:
    if not keys:
        say(f"{name} has no publisher keys: it takes unsigned publishes")
    for k in keys:
        state = f"removed {k.get('removed_at')}" if k.get("removed_at") else "active"
        say(f"{k.get('keyid')}  {state}  added {k.get('added_at')} by {k.get('added_by') or '?'}")


@key_app.command("add")
def key_add(
    name: str = typer.Argument(..., help="Package name."),
    keyfile: str = typer.Argument(..., help="The public key: a .pub file, or the NAME of a key "
                                  "'nnpm keys generate' made here."),
    key_opt: str = typer.Option(None, "--key", help="Approve with this registered key (NAME or PATH); default: "
                                "one of the package's keys found here. Not needed for a package's first key."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Register a publisher key: signed versions of the package must be signed by a registered key."""
    from nnpm.format.signing import PublicKey

    path = Path(keyfile).expanduser()
    if not path.is_file() and "/" not in keyfile:   # a local key's name: its .pub beside the private key
        from nnpm.author.keys import key_path
        from nnpm.config import home_dir

        path = key_path(home_dir(), keyfile).with_suffix(".pub")
    key = PublicKey.from_pem(path.read_bytes(), source=str(path))
    from nnpm.cli.keys import key_change_approval

    with registry_client(registry, token) as client:
        approval = key_change_approval(client, _name(name), "add", key.keyid, key_opt)
        _, keys = client.add_package_key(_name(name), key, approval)
    say(f"registered {key.keyid} for {_name(name)}")
    _show_keys(_name(name), keys)


@key_app.command("list")
def key_list(name: str = typer.Argument(..., help="Package name."), registry: str = REGISTRY) -> None:
    """Show a package's publisher keys, removed ones too."""
    with registry_client(registry, None, need_token=False) as client:
        keys = client.package_keys(_name(name))
    _show_keys(_name(name), keys)


@key_app.command("remove")
def key_remove(
    name: str = typer.Argument(..., help="Package name."),
    keyid: str = typer.Argument(..., help="The key id ('sha256:…') 'nnpm owner key list' shows."),
    key_opt: str = typer.Option(None, "--key", help="Approve with this registered key (NAME or PATH); default: "
                                "one of the package's keys found here."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Stop a key signing new versions (what it signed still verifies); with no key left, unsigned publishes
    are taken again."""
    from nnpm.cli.keys import key_change_approval

    with registry_client(registry, token) as client:
        approval = key_change_approval(client, _name(name), "remove", keyid, key_opt)
        _, keys = client.remove_package_key(_name(name), keyid, approval)
    say(f"removed {keyid} from {_name(name)}")
    _show_keys(_name(name), keys)


def register(app: typer.Typer) -> None:
    """Add `nnpm owner ...`."""
    app.add_typer(owner_app, name="owner")
