"""The metadata database: SQLAlchemy 2 models, engine set-up and one session per request.

SQLite (a file under the data folder) by default; any SQLAlchemy URL, such as
PostgreSQL, with `--database-url`. No state lives in the process: several servers
may share one database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from packaging.utils import canonicalize_version
from sqlalchemy import (Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint,
                        create_engine, event)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker


def version_key(version: str) -> str:
    """The identity of a PEP 440 version: '1.0' and '1.0.0' are one version, so one key ('1')."""
    return canonicalize_version(version)


def utcnow() -> datetime:
    """Now, in UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class User(Base):
    """Someone who can publish."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Token(Base):
    """An API token, stored only as its sha256."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    user: Mapped[User] = relationship()


class Package(Base):
    """A package name (canonical, PEP 503)."""

    __tablename__ = "packages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Owner(Base):
    """A user allowed to publish, yank and add owners for a package."""

    __tablename__ = "owners"
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    user: Mapped[User] = relationship()


class Version(Base):
    """One published version: its canonical manifest bytes, never changed, only yanked."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("package_id", "version_key", name="uq_package_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"), nullable=False, index=True)
    version: Mapped[str] = mapped_column(String(100), nullable=False)   # normalised PEP 440, as published
    version_key: Mapped[str] = mapped_column(String(100), nullable=False)  # 1.0 and 1.0.0 share one key
    manifest_json: Mapped[str] = mapped_column(Text, nullable=False)    # Manifest.to_json()
    manifest_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")   # for search
    tags: Mapped[str] = mapped_column(Text, nullable=False, default="")          # "\n"-joined, for search
    yanked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    yanked_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    package: Mapped[Package] = relationship()


def make_engine(url: str) -> Engine:
    """An engine for `url`, with the tables created; SQLite gets WAL and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        Base.metadata.create_all(engine)
    except OperationalError:  # another process created the tables between check and create
        Base.metadata.create_all(engine)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One session, closed at the end (a FastAPI dependency body)."""
    with factory() as session:
        yield session


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def iso(value: datetime) -> str:
    """2026-11-23T01:00:00Z."""
    return as_utc(value).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
