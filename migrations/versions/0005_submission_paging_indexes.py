"""submissions table paging: (form, id), (form, grantee, id) and (form, review state, id) indexes

The web app's submissions table pages newest first by id within a form (keyset paging), often
within a grantee or a review state; these indexes let the database read one page from an index
instead of sorting every submission of the form.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:50:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index('ix_submissions_form_id_id', ['form_id', 'id'], unique=False)
        batch_op.create_index('ix_submissions_form_grantee_id', ['form_id', 'grantee_id', 'id'], unique=False)
        batch_op.create_index('ix_submissions_form_state_id', ['form_id', 'review_state', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index('ix_submissions_form_state_id')
        batch_op.drop_index('ix_submissions_form_grantee_id')
        batch_op.drop_index('ix_submissions_form_id_id')
