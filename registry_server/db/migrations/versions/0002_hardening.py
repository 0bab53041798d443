"""Hardening: READMEs rendered once, user names unique case-insensitively, blob records.

- `versions.readme_html` (nullable): the README as HTML, rendered once at publish. Rows
  published before this revision keep NULL and are shown as escaped plain text.
- `uq_users_name_lower`: a unique index on lower(name). A database that already holds two
  users whose names differ only in case is refused with a clear error naming them (an
  operator renames one, then starts the server again).
- `blobs`: who uploaded each blob and when it was last needed (quotas, garbage collection).

Each step is skipped when its column, index or table is there already (a database made by
`Base.metadata.create_all` of these models and adopted at 0001).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _refuse_case_duplicates() -> None:
    rows = op.get_bind().execute(sa.text(
        "SELECT lower(name) FROM users GROUP BY lower(name) HAVING count(*) > 1 ORDER BY lower(name)")).all()
    if rows:
        from nnpm.errors import ConfigError

        names = ", ".join(repr(r[0]) for r in rows[:10])
        raise ConfigError(f"the database has users whose names differ only in case ({names}); "
                          "user names are now unique case-insensitively",
                          hint="rename one of each pair (UPDATE users SET name = ... WHERE id = ...), then start again")


def upgrade() -> None:
    """Add versions.readme_html, the case-insensitive user name index and the blobs table."""
    inspector = sa.inspect(op.get_bind())
    if "readme_html" not in {c["name"] for c in inspector.get_columns("versions")}:
        with op.batch_alter_table("versions") as batch:
            batch.add_column(sa.Column("readme_html", sa.Text(), nullable=True))
    _refuse_case_duplicates()
    # IF NOT EXISTS: SQLite's reflection does not list expression indexes.
    op.create_index("uq_users_name_lower", "users", [sa.text("lower(name)")], unique=True, if_not_exists=True)
    if "blobs" not in inspector.get_table_names():
        op.create_table(
            "blobs",
            sa.Column("digest", sa.String(64), primary_key=True),
            sa.Column("size", sa.BigInteger(), nullable=False),
            sa.Column("uploader_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
            sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("collecting", sa.Boolean(), nullable=False),
        )
        op.create_index("ix_blobs_uploader_id", "blobs", ["uploader_id"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_blobs_uploader_id", table_name="blobs")
    op.drop_table("blobs")
    op.drop_index("uq_users_name_lower", table_name="users")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("readme_html")
