"""The submission reads an export needs: a form's submissions within the actor's grantee scope,
filtered, in id batches, each with its `__system` block as ODK Central's CSV writes it.

This is a small twin of what `api/exports.py` builds from private OData helpers; the two should
be merged into one public reader (in `review`) once that work settles. `form_counts` (submissions
and the last one per form, for the forms page) belongs with them there too.
"""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import AppUser, Submission, SubmissionDef, WebUser, iso

BATCH = 500


@dataclass(frozen=True)
class SubmissionFilter:
    form_id: int
    grantee_id: int | None = None  # None: every grantee (already narrowed by scope if need be)
    review_state: str | None = None
    since: datetime | None = None  # submission date, UTC, inclusive
    until: datetime | None = None  # exclusive


def _query(spec: SubmissionFilter):
    query = select(Submission).where(Submission.form_id == spec.form_id, Submission.deleted_at.is_(None))
    if spec.grantee_id is not None:
        query = query.where(Submission.grantee_id == spec.grantee_id)
    if spec.review_state:
        query = query.where(Submission.review_state == spec.review_state)
    if spec.since is not None:
        query = query.where(Submission.created_at >= spec.since)
    if spec.until is not None:
        query = query.where(Submission.created_at < spec.until)
    return query


def count(spec: SubmissionFilter) -> int:
    return db.session.scalar(select(func.count()).select_from(_query(spec).subquery())) or 0


def _names(page) -> dict:
    app_ids = {s.app_user_id for s in page if s.app_user_id}
    user_ids = {s.user_id for s in page if s.user_id}
    names = {}
    if app_ids:
        names.update({("a", i): n for i, n in db.session.execute(
            select(AppUser.id, AppUser.display_name).where(AppUser.id.in_(app_ids)))})
    if user_ids:
        names.update({("u", i): n for i, n in db.session.execute(
            select(WebUser.id, WebUser.display_name).where(WebUser.id.in_(user_ids)))})
    return names


def _edits(page) -> dict[int, int]:
    rows = db.session.execute(select(SubmissionDef.submission_id, func.count()).where(
        SubmissionDef.submission_id.in_([s.id for s in page])).group_by(SubmissionDef.submission_id))
    return {sid: n - 1 for sid, n in rows}


def system_block(submission: Submission, names: dict, edits: int) -> dict:
    current = submission.current_def
    submitter = ("a", submission.app_user_id) if submission.app_user_id else ("u", submission.user_id)
    return {"submissionDate": iso(submission.created_at), "updatedAt": iso(submission.updated_at),
            "submitterId": str(submitter[1]), "submitterName": names.get(submitter),
            "attachmentsPresent": sum(1 for a in current.attachments if a.blob_id),
            "attachmentsExpected": len(current.attachments), "status": None,
            "reviewState": None if submission.review_state == "received" else submission.review_state,
            "deviceId": submission.device_id, "edits": edits, "formVersion": current.form_version.version,
            "key": submission.instance_id}


def batches(spec: SubmissionFilter, after_id: int | None = None, size: int = BATCH):
    """Lists of (submission, __system block), oldest first, `size` at a time; keyset on the id so
    a caller may commit between batches (and resume after the last id it wrote)."""
    while True:
        query = _query(spec).order_by(Submission.id).limit(size).options(
            selectinload(Submission.current_def).selectinload(SubmissionDef.attachments),
            selectinload(Submission.current_def).selectinload(SubmissionDef.form_version))
        if after_id is not None:
            query = query.where(Submission.id > after_id)
        page = list(db.session.scalars(query))
        if not page:
            return
        names, edits = _names(page), _edits(page)
        yield [(s, system_block(s, names, edits.get(s.id, 0))) for s in page]
        after_id = page[-1].id
        if len(page) < size:
            return


def form_counts(form_ids: list[int], grantee_id: int | None = None) -> dict[int, tuple[int, datetime | None]]:
    """{form id: (submissions not deleted, time of the newest)} within one grantee or all."""
    if not form_ids:
        return {}
    query = (select(Submission.form_id, func.count(), func.max(Submission.created_at))
             .where(Submission.form_id.in_(form_ids), Submission.deleted_at.is_(None))
             .group_by(Submission.form_id))
    if grantee_id is not None:
        query = query.where(Submission.grantee_id == grantee_id)
    out = {}
    for form_id, n, last in db.session.execute(query):
        out[form_id] = (n, last)
    return out
