"""Users and API tokens: tokens are random, shown once, and stored only as their sha256.

User names are ASCII and unique case-insensitively ('Alice' and 'alice' are one name;
the database holds a unique index on lower(name) too), so no look-alike of a user can be
created and `nnpm owner add PKG ALICE` finds 'alice'."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from nnpm.errors import ConfigError
from registry_server.db.tables import Token, User

TOKEN_PREFIX = "nnpm_"
_USER_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?", re.ASCII)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_user_name(name: str) -> str:
    """A user name: 1-64 letters, digits, '.', '_' or '-', starting and ending alphanumeric."""
    if not isinstance(name, str) or not _USER_RE.fullmatch(name):
        raise ConfigError(f"invalid user name {name!r}",
                          hint="use 1-64 letters, digits, '.', '_' or '-', starting and ending with a letter or digit")
    return name


def find_user(session: Session, name: str) -> User | None:
    """The user whose name equals `name` ignoring case, or None."""
    return session.scalar(select(User).where(func.lower(User.name) == name.lower()))


def get_or_create_user(session: Session, name: str) -> User:
    """The user called `name`, created when missing (commits).

    ConfigError when a user whose name differs only in case exists: that is another
    person's name, and handing out a token for it would hand out their identity."""
    check_user_name(name)
    user = find_user(session, name)
    if user is None:
        session.add(User(name=name))
        try:
            session.commit()
        except DbIntegrityError:  # created concurrently (in any case)
            session.rollback()
        user = find_user(session, name)
        assert user is not None
    if user.name != name:
        raise ConfigError(f"there is already a user called {user.name!r}; user names are unique ignoring case",
                          hint=f"to issue another token for that user, run: nnpm registry user add {user.name}")
    return user


def issue_token(session: Session, user: User) -> str:
    """A new API token for `user`; only its hash is stored (commits)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(Token(user_id=user.id, token_sha256=hash_token(token)))
    session.commit()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The user a bearer token belongs to, or None."""
    if not token or len(token) > 512:
        return None
    row = session.scalar(select(Token).where(Token.token_sha256 == hash_token(token)))
    user = row.user if row is not None else None
    session.commit()  # end the read: no transaction (nor pooled connection) is held while a body streams in
    return user


def add_user(database_url: str, name: str) -> str:
    """Create `name` if needed in the database at `database_url` and return a new token for it."""
    from registry_server.db.engine import make_engine, session_factory

    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return issue_token(session, get_or_create_user(session, name))
    finally:
        engine.dispose()
