"""The metadata tables (SQLAlchemy 2 models) and the column helpers they use.

Users hold hashed API tokens; a Package (canonical PEP 503 name) has Owners and
Releases; a Release keeps the canonical manifest bytes it was published with, never
changed, only yanked, its README as HTML, rendered once at publish, (pipelines) the
signature their wiring gave at publish, and (models) what the registry measured at
publish. A Token shows a short prefix of itself and when it was last used, never more.
A Blob row says who uploaded a stored blob (upload quotas) and when an upload or a publish last needed
it (garbage collection). User names are unique case-insensitively. The schema is
Alembic's (`registry_server/db/migrations/`); the engine and sessions are in
`registry_server.db.engine`.
"""

from __future__ import annotations

from datetime import datetime, timezone

from packaging.utils import canonicalize_version
from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


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


# 'Alice' and 'alice' are one user: a unique index on the lower-cased name (SQLite and PostgreSQL).
Index("uq_users_name_lower", func.lower(User.name), unique=True)


class Token(Base):
    """An API token, stored only as its sha256."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "nnpm_Xq3a": shown, not secret
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # to the minute
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


class Release(Base):
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
    readme_html: Mapped[str | None] = mapped_column(Text, nullable=True)  # rendered at publish; NULL: not rendered
    signature_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # a pipeline's, from its wiring at publish
    measured_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # self-test and variants, measured at publish
    publisher: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the user who published (NULL: before 0005)
    signer_keyid: Mapped[str | None] = mapped_column(String(80), nullable=True)  # "sha256:<hex>"; NULL: unsigned
    manifest_sig: Mapped[str | None] = mapped_column(Text, nullable=True)  # base64 Ed25519 signature of the manifest
    overview_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # op counts, largest initializers (0006)
    package: Mapped[Package] = relationship()


class PackageKey(Base):
    """A publisher key registered for a package: signed publishes must use one that is not removed.

    Removed keys stay (with `removed_at`) so the versions they signed still verify."""

    __tablename__ = "package_keys"
    __table_args__ = (UniqueConstraint("package_id", "keyid", name="uq_package_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("packages.id"), nullable=False, index=True)
    keyid: Mapped[str] = mapped_column(String(80), nullable=False)      # "sha256:<hex of the raw public key>"
    public: Mapped[str] = mapped_column(String(64), nullable=False)     # base64 of the 32 raw Ed25519 bytes
    added_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TufMetadata(Base):
    """One signed TUF metadata file: every root version is kept (clients walk the chain); other roles keep
    recent versions so a client mid-update still finds the ones its snapshot names."""

    __tablename__ = "tuf_metadata"
    role: Mapped[str] = mapped_column(String(64), primary_key=True)    # root, timestamp, snapshot, targets, bins-NN
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    body: Mapped[str] = mapped_column(Text, nullable=False)            # the signed JSON, as served
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class TufTarget(Base):
    """The exact bytes of a signed target (a packument as signed), served by hash."""

    __tablename__ = "tuf_targets"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(200), nullable=False, index=True)   # packuments/<name>.json
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Blob(Base):
    """A blob in the store: who uploaded it, and when an upload or a publish last needed it.

    `collecting` is set by garbage collection, atomically and only on a row nobody used
    within the grace period, before the blob is deleted; a publish never relies on a blob
    whose row is being collected (registry_server.services.blobs)."""

    __tablename__ = "blobs"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    uploader_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    collecting: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def iso(value: datetime) -> str:
    """2026-11-23T01:00:00Z."""
    return as_utc(value).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
