"""HEAD and POST `/submission`: how ODK Collect sends what it recorded.

HEAD answers 204 with the size budget (Collect splits bigger uploads into several POSTs, each
repeating the XML). POST takes the multipart body: `xml_submission_file` plus one part per
file, the part name being the file name the XML mentions. Success is 201 only once `ingest`
has committed everything; any other answer makes Collect keep the record and send it again.
"""
from flask import Response, current_app, request

from .. import problems
from ..formats import openrosa as openrosa_xml
from ..httpkit import openrosa_endpoint
from ..ingest import Upload, receive
from . import XML, actor_for_project, route

XML_PART = "xml_submission_file"
SUCCESS = "full submission upload was successful!"


def _user_agent() -> str | None:
    agent = request.headers.get("User-Agent")
    client = request.headers.get("ODK-Client")
    return f"{client} {agent}" if client and agent else (client or agent)


@route("/projects/<int:project_id>/submission", methods=["HEAD", "GET", "POST"])
@openrosa_endpoint
def submission(project_id: int, token: str | None = None):
    actor = actor_for_project(project_id)
    if request.method != "POST":
        return Response(status=204)
    max_bytes = current_app.config["FIELDSYNC"]["MAX_SUBMISSION_BYTES"]
    if (request.content_length or 0) > current_app.config["MAX_CONTENT_LENGTH"]:
        raise problems.too_large(limit=max_bytes)  # say so before looking at anything else
    if request.mimetype != "multipart/form-data":
        raise problems.missing_xml_part()
    try:
        parts = request.files
    except ValueError:
        raise problems.multipart_parse() from None
    xml_part = parts.get(XML_PART)
    if xml_part is None:
        raise problems.missing_xml_part()
    xml = xml_part.read(max_bytes + 1)
    files = {name: part for name, part in parts.items(multi=True) if name != XML_PART}
    upload = Upload(xml=xml, files=files, device_id=request.args.get("deviceID") or None,
                    user_agent=_user_agent())
    received = receive(project_id, actor, upload, max_bytes=max_bytes)
    current_app.logger.info("submission %s %s (%s)", received.outcome,
                            received.submission_def.instance_id, received.submission.form.xml_form_id)
    return Response(openrosa_xml.response(SUCCESS), status=201, content_type=XML)
