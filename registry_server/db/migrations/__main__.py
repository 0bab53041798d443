"""`python -m registry_server.db.migrations --database-url URL COMMAND ...`: Alembic's own
commands (current, history, upgrade, revision --autogenerate, ...) on this folder, without
an alembic.ini. The server does not need this: it upgrades itself at start-up."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Split off --database-url, hand the rest to Alembic's command line."""
    from alembic.config import CommandLine

    from registry_server.db.engine import engine_url
    from registry_server.db.migrations import alembic_config

    args = list(sys.argv[1:] if argv is None else argv)
    url = None
    for i, arg in enumerate(args):
        if arg == "--database-url" and i + 1 < len(args):
            url = args[i + 1]
            del args[i:i + 2]
            break
        if arg.startswith("--database-url="):
            url = arg.split("=", 1)[1]
            del args[i]
            break
    cli = CommandLine(prog="python -m registry_server.db.migrations [--database-url URL]")
    options = cli.parser.parse_args(args)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cli.run_cmd(alembic_config(url=engine_url(url) if url else None), options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
