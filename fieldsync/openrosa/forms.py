"""formList, form XML, manifest and media files for devices."""
import hashlib
from urllib.parse import quote

from flask import Response, current_app, request

from .. import problems, storage
from ..auth import can, grantee_scope, require
from ..formats import openrosa as openrosa_xml
from ..httpkit import content_disposition, current_actor, openrosa_endpoint, public_base_url
from ..models import Form
from ..records.media import GENERATED
from ..xlsform import queries
from . import XML, actor_for_project, route

LISTED_STATES = ("open",)  # "closing" and "closed" forms are no longer offered to devices


def _base_path() -> str:
    """The request path without its last segment: `/v1/key/T/projects/1` for `/…/formList`.

    A token given as `?st=` is moved into the path, as Central does, so the URLs handed to a
    device keep working without the query string."""
    path = request.path.rsplit("/", 1)[0]
    token = request.args.get("st")
    if token and not path.startswith("/v1/key/"):
        path = f"/v1/key/{quote(token, safe='')}" + path[len("/v1"):]
    return public_base_url() + path


def _readable_form(project_id: int, xml_form_id: str) -> Form:
    actor = actor_for_project(project_id)
    form = queries.form_by_xml_id(project_id, xml_form_id)
    if form is None or form.current_version is None:
        raise problems.not_found()
    require(actor, "form.read", project_id=project_id)
    # Devices may fetch open and closing forms only; closed ones are for staff.
    if form.state == "closed" and actor.kind == "app_user":
        raise problems.forbidden()
    return form


def _file_response(data: bytes, md5: str, content_type: str, filename: str | None = None) -> Response:
    response = current_app.response_class(data, content_type=content_type)
    response.set_etag(md5)
    if filename is not None:
        response.headers["Content-Disposition"] = content_disposition(filename, inline=False)
    return response.make_conditional(request)


@route("/projects/<int:project_id>/formList", methods=["GET"])
@openrosa_endpoint
def form_list(project_id: int, token: str | None = None):
    actor = actor_for_project(project_id)
    entries = []
    if can(actor, "form.list", project_id=project_id):
        only = request.args.get("formID")
        for form in queries.published_forms(project_id, states=LISTED_STATES):
            if only is not None and form.xml_form_id != only:
                continue
            version = form.current_version
            form_url = f"{_base_path()}/forms/{quote(form.xml_form_id, safe='')}"
            entries.append(openrosa_xml.FormListEntry(
                form_id=form.xml_form_id, name=version.title, version=version.version,
                md5=version.md5, download_url=f"{form_url}.xml",
                manifest_url=f"{form_url}/manifest" if version.media else None))
    return Response(openrosa_xml.form_list(entries), content_type=XML)


@route("/projects/<int:project_id>/forms/<xml_form_id>.xml", methods=["GET"])
def form_xml(project_id: int, xml_form_id: str, token: str | None = None):
    version = _readable_form(project_id, xml_form_id).current_version
    return _file_response(version.xml, version.md5, XML)


@route("/projects/<int:project_id>/forms/<xml_form_id>/versions/<version>.xml", methods=["GET"])
def form_version_xml(project_id: int, xml_form_id: str, version: str, token: str | None = None):
    found = queries.version_of(_readable_form(project_id, xml_form_id), version)
    if found is None:
        raise problems.not_found()
    return _file_response(found.xml, found.md5, XML)


def _media_content(project_id: int, media) -> tuple[bytes, str, str] | None:
    """(bytes, md5, content type) of a media slot: uploaded, generated for this actor, or None."""
    if media.blob is not None:
        return storage.read_bytes(media.blob), media.blob.md5, media.blob.content_type
    generate = GENERATED.get(media.name)
    if generate is None:
        return None
    data = generate(project_id, grantee_scope(current_actor()))
    return data, hashlib.md5(data).hexdigest(), "text/csv; charset=utf-8"


@route("/projects/<int:project_id>/forms/<xml_form_id>/manifest", methods=["GET"])
@openrosa_endpoint
def manifest(project_id: int, xml_form_id: str, token: str | None = None):
    version = _readable_form(project_id, xml_form_id).current_version
    base = f"{_base_path()}/attachments"
    files = []
    for media in version.media:
        if media.blob is not None:
            md5 = media.blob.md5
        elif media.name in GENERATED:
            md5 = _media_content(project_id, media)[1]
        else:
            continue  # no content yet: Collect rejects a mediaFile without a hash
        files.append(openrosa_xml.ManifestFile(filename=media.name, md5=md5,
                                               download_url=f"{base}/{quote(media.name, safe='')}"))
    return Response(openrosa_xml.manifest(files), content_type=XML)


@route("/projects/<int:project_id>/forms/<xml_form_id>/attachments/<name>", methods=["GET"])
def media_file(project_id: int, xml_form_id: str, name: str, token: str | None = None):
    version = _readable_form(project_id, xml_form_id).current_version
    media = queries.media_of(version, name)
    content = _media_content(project_id, media) if media is not None else None
    if content is None:
        raise problems.not_found()
    data, md5, content_type = content
    return _file_response(data, md5, content_type, filename=media.name)
