"""pending_person_matches: the look-alike search for new persons, queued

A new person's look-alikes are searched among every person of its village, so that search
grows with the village. It was part of the transaction that rebuilds a submission's records
and indicators; now that transaction queues the new persons here and the search runs after,
in transactions of its own, village by village.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 03:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('pending_person_matches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_key', sa.String(length=600), nullable=False),
    sa.Column('village_key', sa.String(length=255), nullable=False),
    sa.Column('grantee_id', sa.Integer(), nullable=True),
    sa.Column('submission_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['grantee_id'], ['grantees.id'], name=op.f('fk_pending_person_matches_grantee_id_grantees')),
    sa.ForeignKeyConstraint(['person_key'], ['persons.key'], name=op.f('fk_pending_person_matches_person_key_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_person_matches')),
    sa.UniqueConstraint('person_key', name=op.f('uq_pending_person_matches_person_key'))
    )
    with op.batch_alter_table('pending_person_matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_person_matches_submission_id'), ['submission_id'], unique=False)
        batch_op.create_index('ix_pending_person_matches_village', ['village_key', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('pending_person_matches', schema=None) as batch_op:
        batch_op.drop_index('ix_pending_person_matches_village')
        batch_op.drop_index(batch_op.f('ix_pending_person_matches_submission_id'))
    op.drop_table('pending_person_matches')
