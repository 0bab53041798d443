"""`nnpm keys generate|list`: publisher signing keys on this machine (docs/trust.md)."""

from __future__ import annotations

from typing import Any

import typer

from nnpm.cli.output import say

keys_app = typer.Typer(help="Make and list the keys 'nnpm publish --sign' signs with.", no_args_is_help=True)


def ask_passphrase(*, confirm: bool, what: str) -> str:
    """NNPM_KEY_PASSPHRASE, else asked on the terminal (hidden); ConfigError off a terminal."""
    import os
    import sys

    from nnpm.author.keys import PASSPHRASE_ENV
    from nnpm.errors import ConfigError

    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise ConfigError(f"{what} needs a passphrase and there is no terminal to ask on",
                          hint=f"set {PASSPHRASE_ENV}")
    return typer.prompt(f"passphrase for {what}", hide_input=True, confirmation_prompt=confirm)


def signing_key(key: str | None) -> Any:
    """The private key `--key NAME|PATH` names (the default key without one), its passphrase asked when needed."""
    from nnpm.author.keys import is_encrypted, key_path, load_private_key
    from nnpm.config import home_dir

    path = key_path(home_dir(), key)
    passphrase = ask_passphrase(confirm=False, what=str(path)) if is_encrypted(path) else None
    return load_private_key(path, passphrase)


def key_change_approval(client: Any, package: str, action: str, keyid: str, key: str | None) -> tuple | None:
    """(signature, time) approving a change of `package`'s keys, signed by one of its active keys found here
    (or `--key`); None when the package has no active key (its first key needs none)."""
    from datetime import datetime, timezone

    from nnpm.author.keys import list_keys
    from nnpm.config import home_dir
    from nnpm.errors import ConfigError
    from nnpm.format.signing import sign_key_change

    active = {k.get("keyid") for k in client.package_keys(package) if not k.get("removed_at")}
    if not active:
        return None
    if key is None:
        mine = [k.name for k in list_keys(home_dir()) if k.public is not None and k.public.keyid in active]
        if not mine:
            raise ConfigError(f"{package} has publisher keys and none of them is on this machine; changing them "
                              "takes one of them", hint="pass --key NAME|PATH of a key registered for it")
        key = mine[0]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return sign_key_change(signing_key(key), action, package, keyid, when), when


@keys_app.command("generate")
def generate(
    name: str = typer.Argument("default", help="The key's name: NNPM_HOME/keys/NAME.key and NAME.pub."),
    passphrase: bool = typer.Option(False, "--passphrase", help="Encrypt the private key with a passphrase "
                                    "(asked for, or NNPM_KEY_PASSPHRASE)."),
    force: bool = typer.Option(False, "--force", help="Replace a key of that name."),
) -> None:
    """Make an Ed25519 key pair for signing what you publish."""
    from nnpm.author.keys import generate as make
    from nnpm.config import home_dir

    secret = ask_passphrase(confirm=True, what=f"key {name!r}") if passphrase else None
    made = make(home_dir(), name, passphrase=secret, force=force)
    say(f"key {made.name}: {made.public.keyid}")
    say(f"  private: {made.private_path}{' (encrypted)' if made.encrypted else ''}")
    say(f"  public:  {made.public_path}")
    say(f"register it for a package you own: nnpm owner key add PACKAGE {made.public_path}")


@keys_app.command("list")
def list_() -> None:
    """Show the keys in NNPM_HOME/keys: name, key id, whether encrypted."""
    from nnpm.author.keys import list_keys
    from nnpm.config import home_dir

    found = list_keys(home_dir())
    if not found:
        say("no keys (make one with 'nnpm keys generate')")
    for k in found:
        keyid = k.public.keyid if k.public else f"? ({k.public_path.name} missing or unreadable)"
        say(f"{k.name}  {keyid}{'  encrypted' if k.encrypted else ''}")


def register(app: typer.Typer) -> None:
    """Add `nnpm keys ...`."""
    app.add_typer(keys_app, name="keys")
