"""Users and API tokens: tokens are random, shown once, and stored only as their sha256.

Beside the hash a token keeps its first characters (`prefix`, "nnpm_" and four more: too
few to guess the rest, enough to tell tokens apart) and when it last authenticated a
request (`last_used_at`, written at most once a minute per token). A user lists and
revokes their own tokens (`list_tokens`, `revoke_token`); nothing shows a token or its hash.

User names are ASCII and unique case-insensitively ('Alice' and 'alice' are one name;
the database holds a unique index on lower(name) too), so no look-alike of a user can be
created and `nnpm owner add PKG ALICE` finds 'alice'."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from nnpm.errors import ConfigError, NotFoundError
from registry_server.db.tables import Token, User, as_utc, iso, utcnow

TOKEN_PREFIX = "nnpm_"
SHOWN_CHARACTERS = len(TOKEN_PREFIX) + 4  # of a token, kept in clear to tell tokens apart
LAST_USED_EVERY = timedelta(minutes=1)   # last_used_at is written at most this often per token
log = logging.getLogger("registry_server")
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
    session.add(Token(user_id=user.id, token_sha256=hash_token(token), prefix=token[:SHOWN_CHARACTERS]))
    session.commit()
    return token


def token_for(session: Session, token: str) -> Token | None:
    """The stored token (its `user` loaded) a bearer token is, or None; notes that it was used (once a minute)."""
    if not token or len(token) > 512:
        return None
    row = session.scalar(select(Token).where(Token.token_sha256 == hash_token(token)))
    if row is not None:
        row.user  # noqa: B018 - load it now: the object outlives this transaction
        _note_use(session, row)
    session.commit()  # end the read: no transaction (nor pooled connection) is held while a body streams in
    return row


def _note_use(session: Session, row: Token) -> None:
    """Set `last_used_at` when it is unset or a minute old; a busy database skips it (it is only a hint)."""
    now = utcnow()
    stale = now - LAST_USED_EVERY
    if row.last_used_at is not None and as_utc(row.last_used_at) > stale:
        return
    try:
        session.execute(update(Token).where(Token.id == row.id, or_(Token.last_used_at.is_(None),
                                                                     Token.last_used_at <= stale))
                        .values(last_used_at=now)
                        # No in-Python re-evaluation of the WHERE on the loaded row: SQLite hands back
                        # naive datetimes, which do not compare with the aware `stale` (a 500 once a minute).
                        .execution_options(synchronize_session=False))
        session.commit()
        row.last_used_at = now
    except OperationalError:
        session.rollback()
        log.warning("could not record the use of token %d (the database is busy)", row.id)


def user_for_token(session: Session, token: str) -> User | None:
    """The user a bearer token belongs to, or None."""
    row = token_for(session, token)
    return row.user if row is not None else None


def list_tokens(session: Session, user: User, current: Token | None = None) -> list[dict]:
    """`user`'s tokens, oldest first: `{"id","created_at","last_used_at","prefix","current"}`, never a secret."""
    rows = session.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.id)).all()
    session.commit()
    return [{"id": t.id, "created_at": iso(t.created_at),
             "last_used_at": iso(t.last_used_at) if t.last_used_at else None, "prefix": t.prefix,
             "current": current is not None and t.id == current.id} for t in rows]


def revoke_token(session: Session, user: User, token_id: int) -> None:
    """Delete one of `user`'s tokens (commits); NotFoundError for an unknown id or someone else's token."""
    deleted = session.execute(delete(Token).where(Token.id == token_id, Token.user_id == user.id)).rowcount
    session.commit()
    if not deleted:
        raise NotFoundError(f"you have no token with id {token_id}", hint="list your tokens: GET /api/v1/tokens")


def add_user(database_url: str, name: str) -> str:
    """Create `name` if needed in the database at `database_url` and return a new token for it."""
    from registry_server.db.engine import make_engine, session_factory

    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return issue_token(session, get_or_create_user(session, name))
    finally:
        engine.dispose()
