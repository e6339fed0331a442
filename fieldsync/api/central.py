"""The rest of the ODK Central REST subset that pyODK and ruODK call: projects, forms,
submission edits over REST, attachment uploads, signing out."""
from flask import current_app, request

from .. import problems, programme, review
from ..auth import accounts, require
from ..httpkit import current_actor
from ..ingest import Upload, attach, receive
from ..models import iso
from ..xlsform import queries as form_queries
from . import bp, schemas
from .openapi import documented
from .submissions import BASE as SUBMISSIONS, submission_json


def project_json(project) -> dict:
    return {"id": project.id, "name": project.name, "description": None, "archived": False, "keyId": None,
            "createdAt": iso(project.created_at), "updatedAt": None, "deletedAt": None}


def form_json(form) -> dict:
    version = form.current_version
    return {"projectId": form.project_id, "xmlFormId": form.xml_form_id, "name": version.title if version else None,
            "version": version.version if version else "", "hash": version.md5 if version else None,
            "state": form.state, "enketoId": None, "keyId": None, "createdAt": iso(form.created_at),
            "updatedAt": iso(form.updated_at), "publishedAt": iso(version.published_at) if version else None}


def _actor():
    actor = current_actor()
    if actor is None or actor.kind != "user":
        raise problems.auth_failed()
    return actor


@bp.get("/v1/projects")
@documented("Projects (Central shape)", response=schemas.Project, many=True, errors=("401", "403"))
def list_projects():
    actor = _actor()
    project = programme.project(programme.PROJECT_ID)
    require(actor, "project.read")
    return [project_json(project)] if project else []


@bp.get("/v1/projects/<int:project_id>")
@documented("One project", response=schemas.Project)
def get_project(project_id):
    require(_actor(), "project.read", project_id=project_id)
    project = programme.project(project_id)
    if project is None:
        raise problems.not_found()
    return project_json(project)


@bp.get("/v1/projects/<int:project_id>/forms")
@documented("Published forms (Central shape)", response=schemas.Form, many=True)
def list_forms(project_id):
    require(_actor(), "form.list", project_id=project_id)
    if programme.project(project_id) is None:
        raise problems.not_found()
    return [form_json(f) for f in form_queries.published_forms(project_id)]


@bp.get("/v1/projects/<int:project_id>/forms/<xml_form_id>")
@documented("One form", response=schemas.Form)
def get_form(project_id, xml_form_id):
    require(_actor(), "form.read", project_id=project_id)
    form = form_queries.form_by_xml_id(project_id, xml_form_id)
    if form is None or form.current_version is None:
        raise problems.not_found()
    return form_json(form)


@bp.put(SUBMISSIONS + "/<instance_id>")
@documented("Edit a submission: new XML with meta/deprecatedID", body=True, body_content="application/xml", response=schemas.Submission, errors=("400", "401", "403", "404", "409", "413"))
def edit_submission(project_id, xml_form_id, instance_id):
    """Central's REST edit: the new XML, with meta/deprecatedID, replaces the current version."""
    actor = _actor()
    form = review.form_for(actor, project_id, xml_form_id)
    review.get_submission(actor, form, instance_id)  # unknown or out of scope: 404 before reading the body
    max_bytes = current_app.config["FIELDSYNC"]["MAX_SUBMISSION_BYTES"]
    upload = Upload(xml=request.get_data(cache=False), user_agent=request.headers.get("User-Agent"))
    # Which submission the edit replaces, and whether this actor may, is decided inside
    # `receive` before anything is stored.
    received = receive(project_id, actor, upload, max_bytes=max_bytes, expected_form_id=xml_form_id,
                       expected_submission=instance_id)
    return submission_json(received.submission)


@bp.post(SUBMISSIONS + "/<instance_id>/attachments/<name>")
@documented("Upload one attachment of a submission", body=True, body_content="application/octet-stream", response=schemas.Success, errors=("400", "401", "403", "404", "413"))
def upload_attachment(project_id, xml_form_id, instance_id, name):
    actor = _actor()
    form = review.form_for(actor, project_id, xml_form_id)
    submission = review.get_submission(actor, form, instance_id)
    require(actor, "submission.edit", submission, project_id=project_id)
    attach(actor, submission, name, request.stream, current_app.config["FIELDSYNC"]["MAX_SUBMISSION_BYTES"])
    return {"success": True}


@bp.delete("/v1/sessions/<session_token>")
@documented("Sign out (a token, or current)", response=schemas.Success, errors=("401", "404"))
def end_session(session_token):
    # Not named `token`: that path variable means a device token in `/v1/key/{token}` URLs.
    actor = _actor()
    accounts.end_session(actor, session_token)
    return {"success": True}
