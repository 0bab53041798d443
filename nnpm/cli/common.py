"""What several commands share: the --env/--registry/--token options, the registry client they make, and the
variant options install and add both take."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from nnpm.client.api import RegistryClient
    from nnpm.install.variants import Policy

ENV = typer.Option(None, "--env", "-e", help="Environment (default: NNPM_ENV or 'default').")
REGISTRY = typer.Option(None, "--registry", help="Registry URL (default: NNPM_REGISTRY or the one you logged in to).")
TOKEN = typer.Option(None, "--token", help="API token (default: NNPM_TOKEN or the one saved by 'nnpm login'); "
                     "visible to other users of this machine, so prefer NNPM_TOKEN.")
REQUIRE_SIGNATURES = typer.Option(False, "--require-signatures", help="Refuse packages without a verified publisher "
                                  "signature (default: the 'require-signatures' setting, NNPM_REQUIRE_SIGNATURES).")
TOKEN_WARNING = ("warning: a token on the command line can be read by other users of this machine (ps, shell "
                 "history); prefer NNPM_TOKEN, 'nnpm login' (which asks for it) or --token-stdin")


def warn_command_line_token(token: str | None) -> None:
    """Say once, on stderr when the command is done, that a token given as an argument is exposed."""
    from nnpm.cli import state

    if token and TOKEN_WARNING not in state.warnings:
        state.warnings.append(TOKEN_WARNING)


def registry_client(registry: str | None, token: str | None, *, need_token: bool = True,
                    token_value: str | None = None) -> "RegistryClient":
    """A RegistryClient from the resolved settings; ConfigError when registry or token is missing.

    `token` comes from a --token argument (warned about); `token_value` from a prompt or stdin."""
    from nnpm.client.api import RegistryClient
    from nnpm.config import load_settings
    from nnpm.errors import ConfigError

    warn_command_line_token(token)
    settings = load_settings(registry=registry, token=token or token_value)
    url = settings.require_registry()
    if need_token and not settings.token:
        raise ConfigError(f"no token for {url}",
                          hint=f"run 'nnpm login --registry {url}', set NNPM_TOKEN or pass --token")
    return RegistryClient(url, token=settings.token, cache_dir=settings.cache_dir)


def variant_policy(prefer: str, max_drift: float, variant: str | None) -> "Policy":
    """The variant policy the --prefer, --max-drift and --variant options ask for (install and add)."""
    from nnpm.errors import SpecError
    from nnpm.format.variants import PREFER
    from nnpm.install.variants import Policy

    if prefer not in PREFER:
        raise SpecError(f"--prefer {prefer!r} is not one of {', '.join(PREFER)}", hint="e.g. --prefer speed")
    if variant is not None and prefer != "reference":
        raise SpecError("--variant pins one variant; give it without --prefer")
    return Policy(prefer=prefer, max_drift=max_drift, pin=variant)
