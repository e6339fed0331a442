"""Submissions for web users and scripts, with ODK Central's REST shapes:
`/v1/projects/{pid}/forms/{xmlFormId}/submissions[/{instanceId}[.xml|/attachments|/comments|…]]`."""
import json

from flask import Response, current_app, request, stream_with_context

from .. import problems, review
from ..extensions import db
from ..auth import can
from ..httpkit import MAX_ID, bounded_int, content_disposition, current_actor
from ..ingest import Upload, receive
from ..models import Audit, Comment, Submission, SubmissionDef, iso
from ..review import reader
from . import bp, schemas
from .openapi import documented
from .sessions import json_body

BASE = "/v1/projects/<int:project_id>/forms/<xml_form_id>/submissions"


def _actor():
    actor = current_actor()
    if actor is None:
        raise problems.auth_failed()
    return actor


def _found(project_id, xml_form_id, instance_id, deleted_ok=False):
    actor = _actor()
    form = review.form_for(actor, project_id, xml_form_id)
    return actor, review.get_submission(actor, form, instance_id, deleted_ok=deleted_ok)


def version_json(submission_def: SubmissionDef, current: bool) -> dict:
    return {"instanceId": submission_def.instance_id, "instanceName": submission_def.instance_name,
            "submitterId": submission_def.app_user_id or submission_def.user_id,
            "deviceId": submission_def.device_id, "userAgent": submission_def.user_agent,
            "deprecatedId": submission_def.deprecated_id,
            "formVersion": submission_def.form_version.version,
            "createdAt": iso(submission_def.created_at), "current": current}


def submission_json(submission: Submission) -> dict:
    current = submission.current_def
    return {
        "instanceId": submission.instance_id,
        "submitterId": submission.app_user_id or submission.user_id,
        "deviceId": submission.device_id,
        "userAgent": submission.user_agent,
        # Central writes the initial state as null; FieldSync's name for it is "received".
        "reviewState": None if submission.review_state == "received" else submission.review_state,
        "grantee": submission.grantee.code if submission.grantee else None,
        "instanceIdAssigned": submission.instance_id_assigned,
        # FieldSync's own: why a submission is kept but counted for nobody until a coordinator
        # reviews it ("grantee", "edited_after_rejection"), or null.
        "hold": submission.hold,
        "createdAt": iso(submission.created_at),
        "updatedAt": iso(submission.updated_at),
        "deletedAt": iso(submission.deleted_at),
        "currentVersion": version_json(current, True) if current else None,
    }


@bp.get(BASE)
@documented("Every submission of a form, newest first (as Central: all of them, or a `limit`/`offset` page)", response=schemas.Submission, many=True, query={"limit": {"type": "integer", "minimum": 0}, "offset": {"type": "integer", "minimum": 0}, "after": {"type": "integer"}, "deleted": {"type": "string", "enum": ["true", "false"]}})
def list_submissions(project_id, xml_form_id):
    actor = _actor()
    form = review.form_for(actor, project_id, xml_form_id)
    limit, offset, after = bounded_int("limit", low=0), bounded_int("offset") or 0, bounded_int("after")
    query = reader.visible(actor, form, include_deleted=request.args.get("deleted") == "true")
    if after is not None:
        query = query.where(Submission.id < after)  # FieldSync's keyset paging, kept for old scripts
    if limit is not None or offset:
        page = reader.load(query.order_by(Submission.id.desc()), limit if limit is not None else MAX_ID, offset)
        return [submission_json(s) for s in page]

    def generate():  # every row, written as read: memory follows a batch, not the form
        yield "["
        first = True
        for page in reader.batches(query):
            for submission in page:
                yield ("" if first else ",") + json.dumps(submission_json(submission), ensure_ascii=False)
                first = False
            db.session.expunge_all()
        yield "]"
    return Response(stream_with_context(generate()), content_type="application/json")


@bp.post(BASE)
@documented("Create a submission from its XML (Central REST)", body=True, body_content="application/xml", response=schemas.Submission, errors=("400", "401", "403", "404", "409", "413"))
def create_submission(project_id, xml_form_id):
    """Central's REST submission: a raw XML body, answered 200 with the submission's JSON."""
    actor = _actor()
    if request.mimetype not in ("text/xml", "application/xml"):
        raise problems.bad_request(reason="send the submission XML as text/xml or application/xml")
    max_bytes = current_app.config["FIELDSYNC"]["MAX_SUBMISSION_BYTES"]
    upload = Upload(xml=request.get_data(cache=False), device_id=request.args.get("deviceID"),
                    user_agent=request.headers.get("User-Agent"))
    received = receive(project_id, actor, upload, max_bytes=max_bytes, expected_form_id=xml_form_id)
    if received.outcome == "resent":
        raise problems.already_exists(fields="instanceID", values=received.submission_def.instance_id)
    return submission_json(received.submission)


@bp.get(BASE + "/<instance_id>")
@documented("One submission", response=schemas.Submission)
def get_submission(project_id, xml_form_id, instance_id):
    _actor_, submission = _found(project_id, xml_form_id, instance_id)
    return submission_json(submission)


@bp.get(BASE + "/<instance_id>.xml")
def submission_xml(project_id, xml_form_id, instance_id):
    actor, submission = _found(project_id, xml_form_id, instance_id)
    return Response(review.read_xml(actor, submission), content_type="application/xml; charset=utf-8")


@bp.get(BASE + "/<instance_id>/versions")
@documented("The edit chain of a submission, newest first", response=schemas.Version, many=True)
def submission_versions(project_id, xml_form_id, instance_id):
    _actor_, submission = _found(project_id, xml_form_id, instance_id)
    return [version_json(d, d.id == submission.current_def_id) for d in reversed(submission.defs)]


@bp.get(BASE + "/<instance_id>/attachments")
@documented("Files a submission names, and whether each arrived", response=schemas.Attachment, many=True)
def submission_attachments(project_id, xml_form_id, instance_id):
    _actor_, submission = _found(project_id, xml_form_id, instance_id)
    return [{"name": a.name, "exists": a.blob_id is not None} for a in review.attachments(submission)]


@bp.get(BASE + "/<instance_id>/attachments/<name>")
def submission_attachment(project_id, xml_form_id, instance_id, name):
    actor, submission = _found(project_id, xml_form_id, instance_id)
    attachment, data = review.read_attachment(actor, submission, name)
    content_type = attachment.blob.content_type
    disposition = "inline" if content_type in ("image/jpeg", "image/png", "image/gif") else "attachment"
    response = Response(data, content_type=content_type)
    response.headers["Content-Disposition"] = content_disposition(attachment.name, inline=disposition == "inline")
    response.set_etag(attachment.blob.md5)
    return response.make_conditional(request)


@bp.patch(BASE + "/<instance_id>")
@documented("Set the review state", body=schemas.ReviewUpdate, response=schemas.Submission)
def update_submission(project_id, xml_form_id, instance_id):
    actor, submission = _found(project_id, xml_form_id, instance_id)
    body = json_body()
    state, grantee = body.get("reviewState"), body.get("grantee")
    if not isinstance(state, str) and not isinstance(grantee, str):
        raise problems.missing_parameter(field="reviewState")
    review.set_review_state(actor, submission, state if isinstance(state, str) else None,
                            notes=request.headers.get("X-Action-Notes"),
                            grantee_code=grantee if isinstance(grantee, str) else None)
    return submission_json(submission)


def comment_json(comment: Comment) -> dict:
    return {"id": comment.id, "body": comment.body, "actorId": comment.actor_user_id,
            "system": comment.system, "createdAt": iso(comment.created_at)}


@bp.get(BASE + "/<instance_id>/comments")
@documented("Comments on a submission", response=schemas.Comment, many=True)
def list_comments(project_id, xml_form_id, instance_id):
    _actor_, submission = _found(project_id, xml_form_id, instance_id)
    return [comment_json(c) for c in review.comments(submission)]


@bp.post(BASE + "/<instance_id>/comments")
@documented("Comment on a submission", body=schemas.CommentCreate, response=schemas.Comment)
def add_comment(project_id, xml_form_id, instance_id):
    actor, submission = _found(project_id, xml_form_id, instance_id)
    return comment_json(review.add_comment(actor, submission, json_body().get("body")))


@bp.delete(BASE + "/<instance_id>")
@documented("Delete a submission (it can be restored)", response=schemas.Success)
def delete_submission(project_id, xml_form_id, instance_id):
    actor, submission = _found(project_id, xml_form_id, instance_id)
    review.delete(actor, submission)
    return {"success": True}


@bp.post(BASE + "/<instance_id>/restore")
@documented("Restore a deleted submission", response=schemas.Success)
def restore_submission(project_id, xml_form_id, instance_id):
    actor, submission = _found(project_id, xml_form_id, instance_id, deleted_ok=True)
    review.restore(actor, submission)
    return {"success": True}


def audit_json(audit: Audit) -> dict:
    return {"action": audit.action, "actorId": audit.actor_user_id or audit.actor_app_user_id,
            "details": audit.details, "loggedAt": iso(audit.logged_at)}


@bp.get(BASE + "/<instance_id>/audits")
@documented("Who did, saw or exported what with this submission", response=schemas.AuditEntry, many=True)
def submission_audits(project_id, xml_form_id, instance_id):
    actor, submission = _found(project_id, xml_form_id, instance_id)
    if not can(actor, "audit.read"):
        raise problems.forbidden()
    return [audit_json(a) for a in review.audits(submission)]
