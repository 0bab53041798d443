"""Trust: publisher signatures, registered package keys, the signed index (TUF).

- `versions.publisher`: the user who published (NULL for versions before this revision);
- `versions.signer_keyid`, `versions.manifest_sig`: the publisher's Ed25519 signature of
  the canonical manifest bytes and the key that made it (NULL: unsigned);
- `package_keys`: the public keys a package's owners registered (removed ones kept);
- `tuf_metadata`, `tuf_targets`: the registry's TUF metadata and the packument bytes it signed.

Revision ID: 0005
Revises: 0004
Create Date: 2027-02-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VERSION_COLUMNS = (("publisher", sa.String(64)), ("signer_keyid", sa.String(80)), ("manifest_sig", sa.Text()))


def upgrade() -> None:
    """Add the columns and tables that are not there yet."""
    inspector = sa.inspect(op.get_bind())
    present = {c["name"] for c in inspector.get_columns("versions")}
    with op.batch_alter_table("versions") as batch:
        for name, kind in _VERSION_COLUMNS:
            if name not in present:
                batch.add_column(sa.Column(name, kind, nullable=True))
    tables = set(inspector.get_table_names())
    if "package_keys" not in tables:
        op.create_table(
            "package_keys",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("package_id", sa.Integer(), sa.ForeignKey("packages.id"), nullable=False, index=True),
            sa.Column("keyid", sa.String(80), nullable=False),
            sa.Column("public", sa.String(64), nullable=False),
            sa.Column("added_by", sa.String(64), nullable=True),
            sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
            sa.UniqueConstraint("package_id", "keyid", name="uq_package_key"))
    if "tuf_metadata" not in tables:
        op.create_table(
            "tuf_metadata",
            sa.Column("role", sa.String(64), primary_key=True),
            sa.Column("version", sa.Integer(), primary_key=True),
            sa.Column("body", sa.Text(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))
    if "tuf_targets" not in tables:
        op.create_table(
            "tuf_targets",
            sa.Column("sha256", sa.String(64), primary_key=True),
            sa.Column("path", sa.String(200), nullable=False, index=True),
            sa.Column("body", sa.Text(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))


def downgrade() -> None:
    """Drop them again."""
    for table in ("tuf_targets", "tuf_metadata", "package_keys"):
        op.drop_table(table)
    with op.batch_alter_table("versions") as batch:
        for name, _ in _VERSION_COLUMNS:
            batch.drop_column(name)
