"""What the registry measures at publish: `versions.measured_json`.

- `versions.measured_json` (nullable): the self-test and every variant's drift, latency
  and peak memory, as the validation worker measured them at publish (docs/format.md,
  "Measured by the registry"). NULL for pipelines, for versions published before this
  revision and on registries that do not measure (`--no-measure`).

Skipped when the column is there already (a database made by `Base.metadata.create_all`
of these models and adopted at 0001).

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add versions.measured_json."""
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("versions")}
    if "measured_json" not in present:
        with op.batch_alter_table("versions") as batch:
            batch.add_column(sa.Column("measured_json", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("measured_json")
