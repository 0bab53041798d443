"""New-user items: a pipeline's signature stored with its version; tokens people can tell apart.

- `versions.signature_json` (nullable): a pipeline's inputs and outputs, computed at publish
  from the wiring of the newest published steps matching its ranges. NULL for models (their
  signature is in the manifest) and for pipelines published before this revision.
- `tokens.prefix` (nullable): the token's first characters ("nnpm_" and four more), so a
  person can tell their tokens apart; NULL for tokens issued before this revision.
- `tokens.last_used_at` (nullable): when the token last authenticated a request (to the minute).

Each column is skipped when it is there already (a database made by
`Base.metadata.create_all` of these models and adopted at 0001).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns() -> dict[str, list[sa.Column]]:
    return {
        "versions": [sa.Column("signature_json", sa.Text(), nullable=True)],
        "tokens": [sa.Column("prefix", sa.String(16), nullable=True),
                   sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True)],
    }


def upgrade() -> None:
    """Add versions.signature_json, tokens.prefix and tokens.last_used_at."""
    inspector = sa.inspect(op.get_bind())
    for table, columns in _columns().items():
        present = {c["name"] for c in inspector.get_columns(table)}
        missing = [c for c in columns if c.name not in present]
        if missing:
            with op.batch_alter_table(table) as batch:
                for column in missing:
                    batch.add_column(column)


def downgrade() -> None:
    """Drop them again."""
    for table, columns in _columns().items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(column.name)
