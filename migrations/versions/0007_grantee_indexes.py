"""records and indicator members: indexes by grantee

The full recompute works one group of grantees at a time, so that what it holds in memory
follows the largest grantee rather than the whole programme: it reads a grantee's
assessments, interviews and services in submission order, and its stored members.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:20:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

RECORD_TABLES = ('assessments', 'interviews', 'services')


def upgrade():
    for table in RECORD_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f'ix_{table}_grantee', ['grantee_id', 'submission_id'], unique=False)
    with op.batch_alter_table('indicator_members', schema=None) as batch_op:
        batch_op.create_index('ix_indicator_members_grantee', ['grantee_id'], unique=False)


def downgrade():
    with op.batch_alter_table('indicator_members', schema=None) as batch_op:
        batch_op.drop_index('ix_indicator_members_grantee')
    for table in reversed(RECORD_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_grantee')
