"""`python -m registry_server.users` / `nnpm registry user list`: every user, their tokens and packages.

It takes the server's database options (`--data`, `--database-url`, and their
`NNPM_REGISTRY_*` variables), like `nnpm registry user add`, and prints one line per
user: the name, how many tokens they hold, when one was last used (to the minute, or
"never"), how many packages they own and when they were created. It shows no token.
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = ("user", "tokens", "last used", "packages", "created")


def main(argv: list[str] | None = None, prog: str = "python -m registry_server.users") -> int:
    """Parse the options, print the users; 2 on a configuration error."""
    from nnpm.errors import NnpmError
    from registry_server.options import build_parser, require_server_extra, settings_from

    parser = build_parser("user", prog)
    parser.description = "List the registry's users. " + (parser.description or "")
    args = parser.parse_args(argv)
    try:
        require_server_extra()
        rows = users(settings_from(args, "user").database_url)
    except NnpmError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    table = [HEADER, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if not rows:
        print("no users yet: add one with 'nnpm registry user add NAME'", file=sys.stderr)
    return 0


def users(database_url: str) -> list[tuple[str, ...]]:
    """(name, tokens, last used, packages owned, created) of every user, by name ignoring case."""
    from sqlalchemy import func, select

    from nnpm.errors import ConfigError
    from registry_server.db.engine import make_engine, session_factory
    from registry_server.db.tables import Owner, Token, User, iso

    sqlite_file = database_url.removeprefix("sqlite:///")
    if database_url.startswith("sqlite:///") and not Path(sqlite_file).is_file():
        raise ConfigError(f"there is no registry database at {sqlite_file}",
                          hint="pass the registry's --data folder, or its --database-url")
    tokens = (select(Token.user_id, func.count().label("n"), func.max(Token.last_used_at).label("used"))
              .group_by(Token.user_id).subquery())
    owned = select(Owner.user_id, func.count().label("n")).group_by(Owner.user_id).subquery()
    query = (select(User.name, User.created_at, tokens.c.n, tokens.c.used, owned.c.n)
             .outerjoin(tokens, tokens.c.user_id == User.id).outerjoin(owned, owned.c.user_id == User.id)
             .order_by(func.lower(User.name)))
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            found = session.execute(query).all()
    finally:
        engine.dispose()
    return [(name, str(n_tokens or 0), iso(used)[:16] + "Z" if used else "never", str(n_owned or 0),
             iso(created)[:10]) for name, created, n_tokens, used, n_owned in found]


if __name__ == "__main__":
    sys.exit(main())
