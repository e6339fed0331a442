"""`submissions.csv.zip` and `submissions.csv`, as ODK Central serves them: the root table, one
CSV per repeat and (unless `attachments=false`) the media files, built in a temporary file so
memory stays flat however many submissions there are."""
import tempfile

from flask import Response, request, send_file, stream_with_context
from sqlalchemy import func, select

from ..audit import record
from ..extensions import db, write_transaction
from ..exports import writers
from ..formats import csv_export
from ..formats.odata import visible_fields
from ..formats.submission import field_values, parse_stored
from ..httpkit import content_disposition
from ..models import FormVersion, Submission, SubmissionAttachment, SubmissionDef, iso
from . import bp
from .odata import BATCH, _base_query, _edits, _form, _load, _names, _system

BASE = "/v1/projects/<int:project_id>/forms/<xml_form_id>/submissions"


def _batches(query):
    """(submission, its __system block) for every row of `query`, newest first, in batches."""
    query = query.order_by(Submission.id.desc())
    last_id = None
    while True:
        page = _load(query if last_id is None else query.where(Submission.id < last_id), BATCH)
        if not page:
            return
        names, edits = _names(page), _edits(page)
        for submission in page:
            system = _system(submission, names, edits.get(submission.id, 0))
            system["key"] = submission.instance_id
            yield submission, system
        last_id = page[-1].id
        if len(page) < BATCH:
            return


def _plain_batches(query):
    """(instance id, current XML, __system block) for every row of `query`, newest first, in
    batches of plain rows: one query for a batch's ids, one for their columns and XML, one for
    their attachment counts and one for their edit counts, and no ORM objects (building them
    took as long as reading the XML)."""
    ids_query = query.with_only_columns(Submission.id).order_by(Submission.id.desc())
    last_id = None
    while True:
        ids = list(db.session.scalars((ids_query if last_id is None else ids_query.where(
            Submission.id < last_id)).limit(BATCH)))
        if not ids:
            return
        rows = {row.id: row for row in db.session.execute(
            select(Submission.id, Submission.instance_id, Submission.created_at, Submission.updated_at,
                   Submission.deleted_at, Submission.app_user_id, Submission.user_id, Submission.review_state,
                   Submission.device_id, Submission.current_def_id, SubmissionDef.xml, FormVersion.version)
            .join(SubmissionDef, SubmissionDef.id == Submission.current_def_id)
            .join(FormVersion, FormVersion.id == SubmissionDef.form_version_id)
            .where(Submission.id.in_(ids)))}
        files = {def_id: (expected, present) for def_id, expected, present in db.session.execute(
            select(SubmissionAttachment.submission_def_id, func.count(), func.count(SubmissionAttachment.blob_id))
            .where(SubmissionAttachment.submission_def_id.in_([r.current_def_id for r in rows.values()]))
            .group_by(SubmissionAttachment.submission_def_id))}
        names, edits = _names(rows.values()), _edits(rows.values())
        for submission_id in ids:
            row = rows[submission_id]
            expected, present = files.get(row.current_def_id, (0, 0))
            submitter = ("a", row.app_user_id) if row.app_user_id else ("u", row.user_id)
            yield row.instance_id, row.xml, {
                "submissionDate": iso(row.created_at), "key": row.instance_id, "submitterId": str(submitter[1]),
                "submitterName": names.get(submitter), "attachmentsPresent": present,
                "attachmentsExpected": expected,
                "reviewState": None if row.review_state == "received" else row.review_state,
                "deviceId": row.device_id, "edits": edits.get(row.id, 0), "formVersion": row.version}
        last_id = ids[-1]
        if len(ids) < BATCH:
            return


def _audit(actor, form, what, personal):
    with write_transaction():
        record("form.submissions.export", actor, subject=form,
               details={"format": what, "personal": personal, "filter": request.args.get("$filter")})


@bp.get(BASE + ".csv.zip")
def submissions_zip(project_id, xml_form_id):
    actor, form, personal = _form(project_id, xml_form_id)
    schema = form.current_version.schema
    with_media = (request.args.get("attachments") or "true").lower() != "false"
    _audit(actor, form, "csv.zip", personal)
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    writers.write_csv_zip(out, xml_form_id, schema, _batches(_base_query(actor, form)), personal, with_media)
    out.seek(0)
    return send_file(out, mimetype="application/zip", as_attachment=True, download_name=f"{xml_form_id}.zip")


@bp.get(BASE + ".csv")
def submissions_csv(project_id, xml_form_id):
    actor, form, personal = _form(project_id, xml_form_id)
    schema = form.current_version.schema
    fields = visible_fields(schema, personal)
    _audit(actor, form, "csv", personal)
    query = _base_query(actor, form)  # built now: the form row is not needed while streaming

    def generate():
        yield csv_export.line(csv_export.root_header(fields))
        for _instance_id, xml, system in _plain_batches(query):
            yield csv_export.line(csv_export.root_row(
                fields, field_values(parse_stored(xml), schema, repeats=False), system))
    return Response(stream_with_context(generate()), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": content_disposition(f"{xml_form_id}.csv", inline=False)})
