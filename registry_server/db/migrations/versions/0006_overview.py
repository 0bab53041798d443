"""What the registry reads of every graph at publish: `versions.overview_json`.

- `versions.overview_json` (nullable): each graph of each variant's operator counts and
  largest initializers (nnpm/format/overview.py), read by the validation worker at publish,
  with or without measuring; the model card's Graph overview shows it. NULL for pipelines
  (no graph of their own) and for versions published before this revision.

Skipped when the column is there already (a database made by `Base.metadata.create_all`
of these models and adopted at 0001).

Revision ID: 0006
Revises: 0005
Create Date: 2027-02-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add versions.overview_json."""
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("versions")}
    if "overview_json" not in present:
        with op.batch_alter_table("versions") as batch:
            batch.add_column(sa.Column("overview_json", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("overview_json")
