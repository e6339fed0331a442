"""`submissions.csv.zip` and `submissions.csv`, as ODK Central serves them: the root table, one
CSV per repeat and (unless `attachments=false`) the media files, built in a temporary file so
memory stays flat however many submissions there are."""
import tempfile

from flask import Response, request, send_file, stream_with_context

from ..audit import record
from ..extensions import db, write_transaction
from ..exports import writers
from ..formats import csv_export
from ..formats.odata import visible_fields
from ..formats.submission import field_values, parse_stored
from ..httpkit import content_disposition
from ..review import reader
from . import bp
from .odata import _base_query, _form

BASE = "/v1/projects/<int:project_id>/forms/<xml_form_id>/submissions"


def _batches(query):
    """(submission, its CSV __system block) for every row of `query`, newest first, in batches."""
    for page in reader.batches(query):
        yield from reader.with_system(page, key=True)


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
        for _instance_id, xml, system in reader.plain_batches(query):
            yield csv_export.line(csv_export.root_row(
                fields, field_values(parse_stored(xml), schema, repeats=False), system))
    return Response(stream_with_context(generate()), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": content_disposition(f"{xml_form_id}.csv", inline=False)})
