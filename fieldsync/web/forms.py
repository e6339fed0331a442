"""Forms: the published forms with their state and submissions; publishing a new XLSForm or a new
version in the browser, with pyxform's and ODK Validate's errors in plain words; uploading the
media files a form expects; opening and closing a form (admins)."""
import json
import re

from flask import flash, g, redirect, render_template, request, url_for

from .. import problems
from ..programme import PROJECT_ID
from ..records.media import GENERATED
from ..review import reader
from ..xlsform import publish_workbook, queries, set_state
from ..xlsform.media import MAX_MEDIA_BYTES, attach_media, carry_over_media, current_media_for
from ..xlsform.publish import safe_media_name
from . import bp, i18n, nav
from .i18n import N_
from .session import page

nav(40, "Forms", "web.forms", "form.list")

MAX_WORKBOOK_BYTES = 5 * 1024 * 1024
WORKBOOK_TYPES = (".xlsx", ".xls")
STATES = {"open": N_("Open for submissions"), "closing": N_("Closing"), "closed": N_("Closed")}
STATE_DONE = {"open": N_("%(title)s is open: devices list it and it takes submissions."),
              "closing": N_("%(title)s is closing: devices no longer list it, but it still takes submissions."),
              "closed": N_("%(title)s is closed: it takes no more submissions.")}


def _form_or_404(xml_form_id: str):
    form = queries.form_by_xml_id(PROJECT_ID, xml_form_id)
    if form is None or form.current_version is None:
        raise problems.not_found()
    return form


def _rows():
    forms = queries.published_forms(PROJECT_ID)
    counts = reader.form_counts(g.actor, forms)
    rows = []
    for form in forms:
        media = form.current_version.media
        missing = [m.name for m in media if m.blob_id is None and m.name not in GENERATED]
        n, last = counts.get(form.id, (0, None))
        rows.append({"form": form, "version": form.current_version, "submissions": n, "last": last,
                     "media": len(media), "missing": missing})
    return rows


@bp.get("/forms")
@page("form.list")
def forms(error=None, status=200):
    return render_template("web/forms/index.html", rows=_rows(), states=STATES, error=error,
                           max_mb=MAX_WORKBOOK_BYTES // (1024 * 1024)), status


# --- publishing -------------------------------------------------------------------------------

ROW = re.compile(r"^\[row\s*:\s*(\d+)\]\s*")
SHEET = re.compile(r"^On the '([^']+)' sheet,?\s*", re.IGNORECASE)
TEMP_NAMES = re.compile(r"\$\{tmp[^}]*\}")


def _sentence(text: str) -> str:
    text = TEMP_NAMES.sub("", text).strip(" :.")
    return (text[:1].upper() + text[1:] + ".") if text else ""


def plain_publish_error(problem: problems.Problem) -> dict:
    """{"headline": …, "where": … or None, "what": … or None} for a publishing problem."""
    reason = str(problem.details.get("reason") or "")
    if problem.code == problems.version_conflict.code:
        return {"headline": i18n.gettext(
            "Version %(version)s of the form %(form)s is already published with different content. "
            "Give the changed form a new version in its settings sheet (the version column) and upload it again.",
            version=problem.details.get("version"), form=problem.details.get("form_id")), "where": None, "what": None}
    if problem.code == problems.invalid_xform.code:
        what = reason
        for noise in ("ODK Validate Errors:", ">> XForm is invalid.", "The following files failed validation:",
                      "Result: Invalid"):
            what = what.replace(noise, " ")
        what = re.sub(r"\s+", " ", what).strip(" :")
        return {"headline": i18n.gettext("The form did not pass ODK Validate, the check ODK Collect makes before it "
                                         "opens a form. Fix the workbook and upload it again."),
                "where": None, "what": _sentence(what)}
    if problem.code == problems.invalid_xlsform.code:
        if reason.startswith("not a readable") or "not recognized as a supported type" in reason:
            return {"headline": i18n.gettext("This file could not be opened as an Excel workbook. Save it as .xlsx "
                                             "and upload it again."), "where": None, "what": None}
        where, what = None, reason
        row = ROW.match(what)
        if row:
            what = what[row.end():]
        sheet = SHEET.match(what)
        if sheet:
            what = what[sheet.end():]
        if row and sheet:
            where = i18n.gettext("Sheet “%(sheet)s”, row %(row)s", sheet=sheet.group(1), row=row.group(1))
        elif row:
            where = i18n.gettext("Row %(row)s", row=row.group(1))
        elif sheet:
            where = i18n.gettext("Sheet “%(sheet)s”", sheet=sheet.group(1))
        return {"headline": i18n.gettext("The XLSForm has a mistake. Fix it in the workbook and upload it again."),
                "where": where, "what": _sentence(what)}
    if problem.code == problems.unsafe_file_name.code:
        return {"headline": i18n.gettext("The file name “%(name)s” is not allowed: use a plain file name without "
                                         "folders.", name=problem.details.get("name")), "where": None, "what": None}
    return {"headline": i18n.gettext("The form could not be published. Check the workbook and try again."),
            "where": None, "what": None}


def _message(text: str) -> dict:
    return {"headline": text, "where": None, "what": None}


def _read_upload(field: str, limit: int):
    upload = request.files.get(field)
    if upload is None or not upload.filename:
        return None, None
    data = upload.stream.read(limit + 1)
    return upload.filename, data


@bp.post("/forms")
@page("form.manage")
def forms_upload():
    name, data = _read_upload("workbook", MAX_WORKBOOK_BYTES)
    if name is None:
        return forms(error=_message(i18n.gettext("Choose an XLSForm workbook (.xlsx) to upload.")), status=400)
    if not name.lower().endswith(WORKBOOK_TYPES):
        return forms(error=_message(i18n.gettext("Only Excel workbooks can be published (.xlsx or .xls); “%(name)s” "
                                                 "is not one.", name=name)), status=400)
    if len(data) > MAX_WORKBOOK_BYTES:
        return forms(error=_message(i18n.gettext("The workbook is larger than %(mb)s MB. An XLSForm is usually much "
                                                 "smaller: remove pictures or extra sheets and try again.",
                                                 mb=MAX_WORKBOOK_BYTES // (1024 * 1024))), status=413)
    if not data:
        return forms(error=_message(i18n.gettext("The file is empty.")), status=400)
    try:
        result = publish_workbook(PROJECT_ID, data, name, media=current_media_for(PROJECT_ID, data, name),
                                  actor=g.actor, generated=frozenset(GENERATED))
    except problems.Problem as problem:
        return forms(error=plain_publish_error(problem), status=problem.status)
    form = result.form
    if result.status == "unchanged":
        flash(i18n.gettext("%(title)s version %(version)s is already published exactly like this; nothing changed.",
                           title=result.version.title, version=result.version.version), "info")
        return redirect(url_for("web.form_detail", xml_form_id=form.xml_form_id))
    earlier = [v for v in form.versions if v.id != result.version.id]
    carry_over_media(form, earlier[-1] if earlier else None, actor=g.actor)
    flash(i18n.gettext("Published %(title)s version %(version)s.", title=result.version.title,
                       version=result.version.version), "success")
    return redirect(url_for("web.form_detail", xml_form_id=form.xml_form_id))


# --- one form ---------------------------------------------------------------------------------

@bp.get("/forms/<xml_form_id>")
@page("form.read")
def form_detail(xml_form_id, error=None, status=200):
    form = _form_or_404(xml_form_id)
    counts = reader.form_counts(g.actor, [form]).get(form.id, (0, None))
    version = form.current_version
    warnings = [w for w in json.loads(version.warnings_json or "[]") if not w.startswith("No file ")]
    return render_template("web/forms/detail.html", form=form, version=version, states=STATES,
                           submissions=counts[0], last=counts[1], generated=GENERATED,
                           versions=list(reversed(form.versions)), warnings=warnings, error=error,
                           max_media_mb=MAX_MEDIA_BYTES // (1024 * 1024)), status


@bp.post("/forms/<xml_form_id>/state")
@page("form.manage")
def form_state(xml_form_id):
    form = _form_or_404(xml_form_id)
    state = request.form.get("state", "")
    if state not in STATES:
        raise problems.unexpected_value(field="state", value=state, reason="use open, closing or closed")
    set_state(form, state, actor=g.actor)
    flash(i18n.gettext(STATE_DONE[state], title=form.title), "success")
    return redirect(request.form.get("back") == "list" and url_for("web.forms")
                    or url_for("web.form_detail", xml_form_id=xml_form_id))


@bp.post("/forms/<xml_form_id>/media")
@page("form.manage")
def form_media(xml_form_id):
    form = _form_or_404(xml_form_id)
    filename, data = _read_upload("file", MAX_MEDIA_BYTES)
    name = request.form.get("name") or filename
    if filename is None:
        return form_detail(xml_form_id, error=_message(i18n.gettext("Choose a file to upload.")), status=400)
    try:
        safe_media_name(name)
    except problems.Problem as problem:
        return form_detail(xml_form_id, error=plain_publish_error(problem), status=400)
    expected = {m.name for m in form.current_version.media}
    if name not in expected:
        return form_detail(xml_form_id, error=_message(i18n.gettext(
            "This form does not use a file named “%(name)s”. Upload one of the files listed below, with exactly "
            "that name.", name=name)), status=400)
    if len(data) > MAX_MEDIA_BYTES:
        return form_detail(xml_form_id, error=_message(i18n.gettext(
            "The file is larger than %(mb)s MB.", mb=MAX_MEDIA_BYTES // (1024 * 1024))), status=413)
    attach_media(form, name, data, actor=g.actor)
    flash(i18n.gettext("Uploaded %(name)s. Devices get it with their next form update.", name=name), "success")
    return redirect(url_for("web.form_detail", xml_form_id=xml_form_id))
