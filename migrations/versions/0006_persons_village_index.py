"""persons: index (village_key, birth_year) instead of (birth_year, village_key)

Person matching counts a village's persons by birth year before trusting the copy it keeps
between uploads; with the village first, that count (and the count of a whole village, when
a participant's birth year is unknown) reads one range of the index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:20:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index('ix_persons_village_year', ['village_key', 'birth_year'], unique=False)
        batch_op.drop_index('ix_persons_block')


def downgrade():
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index('ix_persons_block', ['birth_year', 'village_key'], unique=False)
        batch_op.drop_index('ix_persons_village_year')
