"""The `nnpm` command. Every NnpmError and OSError becomes one line and exit 1 here, and only here.

One module per command or command group; each imports only typer at module level and
does its work inside the command, so `nnpm --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys

# httpx loads its own command-line client (click, rich, pygments: 30-70 ms here) whenever click is
# installed, and typer needs click. nnpm's process never runs it: a stand-in module takes its place,
# with the one name httpx takes from it, so this holds whether or not httpx guards that import.
if "httpx" not in sys.modules and "httpx._main" not in sys.modules:
    import types

    _httpx_cli = types.ModuleType("httpx._main", "Not loaded in nnpm's process (nnpm/cli/__init__.py).")
    _httpx_cli.main = lambda *args, **kwargs: sys.exit("httpx's own CLI is not loaded inside nnpm; run `httpx`")
    sys.modules["httpx._main"] = _httpx_cli

import typer  # noqa: E402

from nnpm.cli import state  # noqa: E402

app = typer.Typer(
    name="nnpm",
    help="A package manager and registry for neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# In the order `nnpm --help` lists them: author, publish, consume, run, look after.
COMMAND_MODULES = ("init", "variant", "test", "pack", "publish", "push", "login", "yank", "owner", "keys", "project", "install", "list", "info",
                   "search", "outdated", "run", "view", "compose", "env", "cache", "bundle", "config", "token", "registry")


def _print_version(value: bool) -> None:
    if value:
        from nnpm._version import __version__

        print(f"nnpm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and more detail."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Show nnpm's version and exit."),
          project: str = typer.Option(None, "--project", help="The project folder (default: NNPM_PROJECT, else "
                                      "found from the current folder upwards)."),
          no_project: bool = typer.Option(False, "--no-project", help="Ignore any project: use named environments.")
          ) -> None:
    import os

    state.verbose = verbose
    # The environment is chosen deep in nnpm.install.env; these travel there as the variables they stand for.
    if project:
        os.environ["NNPM_PROJECT"] = project
    if no_project:
        os.environ["NNPM_NO_PROJECT"] = "1"


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"nnpm.cli.{name}").register(app)


_register()


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error: what failed, on which path, and what to check."""
    reason = exc.strerror or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    also = f" -> {exc.filename2}" if getattr(exc, "filename2", None) else ""
    return f"{reason}{where}{also} (check the path, that its folders exist and are folders, and your permissions)"


def main() -> None:
    """Console entry point."""
    from nnpm.errors import NnpmError

    try:
        app()
    except SystemExit as done:
        if done.code in (0, None):
            for warning in state.warnings:
                print(warning, file=sys.stderr)
        raise
    except NnpmError as exc:
        _fail(exc.one_line())
    except OSError as exc:
        _fail(os_error_line(exc))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


def _fail(line: str) -> None:
    from nnpm.cli.output import literal

    if state.verbose:
        import traceback

        traceback.print_exc()
    print(f"error: {literal(line)}", file=sys.stderr)
    sys.exit(1)
