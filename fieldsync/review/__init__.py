"""Reviewing submissions: reading them within one's grantee scope, review states, comments,
soft delete and restore, and the audit trail of who saw or changed what.

Owns reads of submissions (every feed reads through `reader`, the one scoped reader) and every
change a reviewer makes. Uses models, auth,
audit, storage; never HTTP. New submissions arrive through `ingest`, never here.
"""
from sqlalchemy import select

from .. import problems, programme, records, storage
from ..audit import record
from ..auth import Actor, can, require
from ..extensions import db, write_transaction
from ..models import (REVIEW_STATES, Audit, Comment, Form, Submission, SubmissionAttachment,
                      SubmissionDef, utcnow)
from ..xlsform import queries as form_queries
from . import reader

def form_for(actor: Actor, project_id: int, xml_form_id: str) -> Form:
    require(actor, "submission.read", project_id=project_id)
    form = form_queries.form_by_xml_id(project_id, xml_form_id)
    if form is None:
        raise problems.not_found()
    return form


def get_submission(actor: Actor, form: Form, instance_id: str, deleted_ok: bool = False) -> Submission:
    # Out of scope answers exactly as unknown: an outsider learns nothing of another's ids.
    submission = reader.find(actor, form, instance_id, deleted_ok=deleted_ok)
    if submission is None:
        raise problems.not_found()
    return submission


def has_personal_data(submission_def: SubmissionDef) -> bool:
    return any(f.get("personal") for f in submission_def.form_version.schema["fields"])


def read_xml(actor: Actor, submission: Submission) -> bytes:
    """The exact XML received; personal data only for those allowed to see it, and audited."""
    current = submission.current_def
    if has_personal_data(current) and not can(actor, "personal.read", submission):
        raise problems.forbidden()
    with write_transaction():
        record("submission.read", actor, subject=submission,
               details={"instanceId": current.instance_id, "what": "xml"})
    return current.xml


def attachments(submission: Submission) -> list[SubmissionAttachment]:
    return list(submission.current_def.attachments)


def read_attachment(actor: Actor, submission: Submission, name: str) -> tuple[SubmissionAttachment, bytes]:
    attachment = next((a for a in submission.current_def.attachments if a.name == name), None)
    if attachment is None or attachment.blob is None:
        raise problems.not_found()
    if has_personal_data(submission.current_def) and not can(actor, "personal.read", submission):
        raise problems.forbidden()
    data = storage.read_bytes(attachment.blob)
    with write_transaction():
        record("submission.attachment.read", actor, subject=submission,
               details={"instanceId": submission.current_def.instance_id, "name": name})
    return attachment, data


def set_review_state(actor: Actor, submission: Submission, state: str | None, notes: str | None = None,
                     grantee_code: str | None = None) -> None:
    """A coordinator's decision: a review state, and optionally which grantee the submission
    counts for. Either clears a hold (the coordinator has looked at it)."""
    require(actor, "submission.update", submission)
    if state is not None and state not in REVIEW_STATES:
        raise problems.unexpected_value(field="reviewState", value=state,
                                        reason=f"use one of {', '.join(REVIEW_STATES)}")
    grantee = None
    if grantee_code is not None:
        grantee = programme.grantee_by_code(submission.form.project_id, grantee_code)
        if grantee is None or not can(actor, "submission.update", grantee):
            raise problems.unexpected_value(field="grantee", value=grantee_code, reason="no grantee has this code")
    with write_transaction():
        details = {"holdCleared": submission.hold} if submission.hold else {}
        if state is not None:
            submission.review_state = state
            details["reviewState"] = state
        if grantee is not None and grantee.id != submission.grantee_id:
            details["grantee"] = {"from": submission.grantee_id, "to": grantee.id}
            submission.grantee_id = grantee.id
        submission.hold = None
        submission.updated_at = utcnow()
        if notes:
            details["notes"] = notes
        record("submission.update", actor, subject=submission, details=details)
        records.queue(submission.id)
    records.announce(submission.id)


def add_comment(actor: Actor, submission: Submission, body: str) -> Comment:
    require(actor, "submission.read", submission)
    if not isinstance(body, str) or not body.strip():
        raise problems.missing_parameter(field="body")
    with write_transaction():
        comment = Comment(submission_id=submission.id, actor_user_id=actor.user_id, body=body.strip())
        db.session.add(comment)
        db.session.flush()
        record("submission.comment", actor, subject=submission,
               details={"commentId": comment.id})
    return comment


def comments(submission: Submission) -> list[Comment]:
    return list(db.session.scalars(select(Comment).where(Comment.submission_id == submission.id)
                                   .order_by(Comment.id)))


def delete(actor: Actor, submission: Submission) -> None:
    require(actor, "submission.delete", submission)
    with write_transaction():
        submission.deleted_at = utcnow()
        record("submission.delete", actor, subject=submission,
               details={"instanceId": submission.instance_id})
        records.queue(submission.id)
    records.announce(submission.id)


def restore(actor: Actor, submission: Submission) -> None:
    require(actor, "submission.delete", submission)
    if submission.deleted_at is None:
        raise problems.not_found()
    with write_transaction():
        submission.deleted_at = None
        record("submission.restore", actor, subject=submission,
               details={"instanceId": submission.instance_id})
        records.queue(submission.id)
    records.announce(submission.id)


def audits(submission: Submission) -> list[Audit]:
    return list(db.session.scalars(select(Audit).where(Audit.subject_kind == "submissions",
                                                       Audit.subject_id == submission.id)
                                   .order_by(Audit.id)))
