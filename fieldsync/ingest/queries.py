"""Every database read the ingest path makes."""
from sqlalchemy import select

from ..extensions import db
from ..models import Grantee, SubmissionDef


def def_by_instance_id(form_id: int, instance_id: str) -> SubmissionDef | None:
    return db.session.scalar(select(SubmissionDef).where(SubmissionDef.form_id == form_id,
                                                         SubmissionDef.instance_id == instance_id))


def grantee_by_code(project_id: int, code: str) -> Grantee | None:
    return db.session.scalar(select(Grantee).where(Grantee.project_id == project_id, Grantee.code == code))
