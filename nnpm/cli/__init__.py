"""The `nnpm` command. Every NnpmError becomes one line and exit 1 here, and only here."""

from __future__ import annotations

import sys

import typer

from nnpm.cli import state

app = typer.Typer(
    name="nnpm",
    help="A package manager and registry for neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and more detail.")) -> None:
    state.verbose = verbose


def _register() -> None:
    # Command modules import only typer at module level; heavy work is inside the commands.
    from nnpm.cli import cache, compose, env, install, package, publish, registry, run

    for module in (package, publish, install, env, cache, run, compose, registry):
        module.register(app)


_register()


def main() -> None:
    """Console entry point."""
    from nnpm.errors import NnpmError

    try:
        app()
    except NnpmError as exc:
        if state.verbose:
            import traceback

            traceback.print_exc()
        print(f"error: {exc.one_line()}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
