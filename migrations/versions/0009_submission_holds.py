"""submissions.hold: a submission kept but counted for nobody until a coordinator decides

Two cases put a submission on hold: a grantee's device sent it naming another grantee
(`grantee`), or a grantee's device or staff edited it after a coordinator rejected it
(`edited_after_rejection`). A coordinator's review clears the hold.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('submissions') as batch_op:
        batch_op.add_column(sa.Column('hold', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('submissions') as batch_op:
        batch_op.drop_column('hold')
