"""The submissions pages: a form's submissions as a filtered table, one submission in detail
(answers with their labels, files, edit history, review and comments), and its files."""
import re
from datetime import date

from flask import Response, flash, g, redirect, render_template, request, url_for

from .. import problems, programme, review
from ..auth import can, grantee_scope
from ..httpkit import content_disposition
from ..models import REVIEW_STATES
from ..models.submissions import HOLD_GRANTEE
from ..review import browse
from ..xlsform import queries as form_queries
from . import bp, i18n, nav
from .i18n import N_, gettext
from .session import page

nav(20, "Submissions", "web.submissions", "submission.read")

PROJECT_ID = programme.PROJECT_ID
DECISIONS = {"approved": N_("Approved"), "hasIssues": N_("Has issues"), "rejected": N_("Rejected")}
FILTER_NAMES = ("form", "grantee", "region", "from", "to", "reviewState", "submitter", "q")
MAX_ID = 2**63 - 1
NOTE_MAX, COMMENT_MAX, SEARCH_MAX = 2000, 10_000, 200


class BadFilter(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name, self.message = name, message


def _grantees():
    return programme.grantees(PROJECT_ID, only_id=grantee_scope(g.actor))


def _regions(grantees):
    found = {}
    for grantee in grantees:
        if grantee.region is not None:
            found[grantee.region.code] = grantee.region
    return sorted(found.values(), key=lambda r: region_name(r))


def region_name(region) -> str:
    return region.name_ru if i18n.language() == "ru" else region.name_en


def _date(name: str):
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else _bad_date(name)
    except ValueError:
        return _bad_date(name)


def _bad_date(name):
    raise BadFilter(name, gettext("Dates are written like 2026-11-30."))


def _id(name: str):
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > MAX_ID:
        raise BadFilter(name, gettext("This is not a page of this table."))
    return int(text)


def _filters(grantees, submitters):
    """The table's filters from the query string; anything not one of the choices offered is a
    BadFilter (a grantee outside one's scope included)."""
    args = request.args
    grantee_ids = None
    code = args.get("grantee", "").strip()
    if code:
        chosen = next((x for x in grantees if x.code == code), None)
        if chosen is None:
            raise BadFilter("grantee", gettext("There is no such grantee to choose."))
        grantee_ids = (chosen.id,)
    region = args.get("region", "").strip()
    if region:
        in_region = tuple(x.id for x in grantees if x.region_code == region)
        if not in_region:
            raise BadFilter("region", gettext("There is no such region to choose."))
        grantee_ids = in_region if grantee_ids is None else tuple(set(grantee_ids) & set(in_region))
    state = args.get("reviewState", "").strip()
    if state and state not in REVIEW_STATES:
        raise BadFilter("reviewState", gettext("There is no such review state."))
    date_from, date_to = _date("from"), _date("to")
    if date_from and date_to and date_from > date_to:
        raise BadFilter("to", gettext("The end date is before the start date."))
    submitter = args.get("submitter", "").strip()
    app_user_id = user_id = None
    if submitter:
        if submitter not in {key for key, _name in submitters}:
            raise BadFilter("submitter", gettext("There is no such submitter to choose."))
        kind, _sep, number = submitter.partition(":")
        app_user_id, user_id = (int(number), None) if kind == "app" else (None, int(number))
    search = args.get("q", "").strip()
    if len(search) > SEARCH_MAX:
        raise BadFilter("q", gettext("The search text is too long."))
    return browse.Filters(grantee_ids=grantee_ids, review_state=state or None, date_from=date_from,
                          date_to=date_to, app_user_id=app_user_id, user_id=user_id, search=search or None)


def _bad_filter_page(error: BadFilter, form=None):
    labels = {"form": gettext("Form"), "grantee": gettext("Grantee"), "region": gettext("Region"),
              "from": gettext("From"), "to": gettext("To"), "reviewState": gettext("Review state"),
              "submitter": gettext("Submitter"), "q": gettext("Search"), "after": gettext("Page"),
              "before": gettext("Page")}
    body = render_template("web/submissions/bad_filter.html", label=labels.get(error.name, error.name),
                           value=request.args.get(error.name, ""), message=error.message,
                           clear_url=url_for("web.submissions", form=form.xml_form_id) if form else
                           url_for("web.submissions"))
    return Response(body, status=400, content_type="text/html; charset=utf-8")


def _url(form, **changes):
    """This table's URL (for `form`) with some query parameters changed (None removes one)."""
    params = {k: v for k, v in request.args.items() if k in FILTER_NAMES and v}
    params.update(form=form.xml_form_id, **changes)
    return url_for("web.submissions", **{k: v for k, v in params.items() if v not in (None, "")})


@bp.get("/submissions")
@page("submission.read")
def submissions():
    forms = form_queries.published_forms(PROJECT_ID)
    if not forms:
        return render_template("web/submissions/index.html", forms=[], form=None)
    wanted = request.args.get("form", "").strip()
    if wanted:
        form = next((f for f in forms if f.xml_form_id == wanted), None)
        if form is None:
            return _bad_filter_page(BadFilter("form", gettext("There is no such form.")))
    else:
        having = browse.forms_with_submissions(g.actor, forms)
        form = next((f for f in forms if f.id in having), forms[0])
    grantees = _grantees()
    submitters = browse.submitter_choices(g.actor, PROJECT_ID)
    try:
        filters = _filters(grantees, submitters)
        after, before = _id("after"), _id("before")
    except BadFilter as error:
        return _bad_filter_page(error, form)
    zone = i18n.timezone()
    result = browse.page_of(g.actor, form, filters, zone, after=after, before=before)
    total, more = browse.count(g.actor, form, filters, zone)
    filtered = any(request.args.get(k) for k in FILTER_NAMES if k != "form")
    return render_template(
        "web/submissions/index.html", forms=forms, form=form, page=result, total=total, more=more,
        filtered=filtered, grantees=grantees, regions=_regions(grantees), submitters=submitters,
        states=REVIEW_STATES, args=request.args, region_name=region_name,
        newer_url=_url(form, after=None, before=result.newer) if result.newer else None,
        older_url=_url(form, before=None, after=result.older) if result.older else None,
        first_url=_url(form, before=None, after=None),
        form_url=lambda f: url_for("web.submissions", form=f.xml_form_id), form_title=browse.form_title,
        clear_url=url_for("web.submissions", form=form.xml_form_id))


def _found(xml_form_id: str, instance_id: str):
    form = review.form_for(g.actor, PROJECT_ID, xml_form_id)
    return form, review.get_submission(g.actor, form, instance_id)  # out of scope: 404, as unknown


@bp.get("/submissions/<xml_form_id>/<instance_id>")
@page("submission.read")
def submission(xml_form_id, instance_id):
    form, found = _found(xml_form_id, instance_id)
    personal_ok = can(g.actor, "personal.read", found)
    current = found.current_def
    versions = browse.history(found)
    latest = versions[-1]
    extras = browse.form_extras(current.form_version)
    language = i18n.language()
    answers = browse.questions(latest["schema"], latest["values"], language, extras, personal_ok)
    files = review.attachments(found)
    personal_files = review.has_personal_data(current) and not personal_ok
    comments = review.comments(found)
    reviews = browse.review_history(found)
    audits = review.audits(found) if can(g.actor, "audit.read") else []
    names = browse.user_names([c.actor_user_id for c in comments] + [a.actor_user_id for a in reviews + audits])
    app_names = browse.app_user_names({a.actor_app_user_id for a in audits if a.actor_app_user_id})
    browse.record_read(g.actor, found)
    return render_template(
        "web/submissions/detail.html", form=form, title=browse.form_title(form, language), submission=found, current=current, answers=answers,
        files=files, personal_files=personal_files, is_image=browse.is_image, versions=versions,
        changes_shown=lambda change: _change_row(change, latest["schema"], extras, language, personal_ok),
        comments=comments, reviews=reviews, audits=audits, names=names, app_names=app_names,
        decisions=DECISIONS, submitter=browse.submitter_names([found]).get(found.id),
        grantees=_grantees() if found.hold == HOLD_GRANTEE and can(g.actor, "submission.update", found) else [],
        back_url=request.args.get("back") if (request.args.get("back") or "").startswith("/submissions?") else
        url_for("web.submissions", form=form.xml_form_id),
        audit_label=_audit_label, file_url=lambda name: url_for("web.submission_file", xml_form_id=form.xml_form_id,
                                                                  instance_id=found.instance_id, name=name))


def _change_row(change: dict, schema: dict, extras, language: str, personal_ok: bool) -> dict:
    f = change["field"] or {"name": change["path"], "path": change["path"], "type": "string"}
    hidden = change["personal"] and not personal_ok
    keys = browse.language_key(schema.get("languages") or [], language)
    name = browse.label(f.get("label"), keys, f.get("name") or change["path"])
    if change["position"]:
        repeat = f.get("repeat") or change["path"].rsplit("/", 1)[0]
        repeat_name = browse.label(extras.repeat_labels.get(repeat), keys, repeat)
        name = f"{repeat_name} {change['position']} · {name}"
    return {"label": name, "hidden": hidden,
            "old": None if hidden else browse.show_value(f, change["old"], extras.choices, keys),
            "new": None if hidden else browse.show_value(f, change["new"], extras.choices, keys)}


AUDIT_LABELS = {
    "submission.create": N_("Received"), "submission.read": N_("Opened"), "submission.update": N_("Review state set"),
    "submission.comment": N_("Commented"), "submission.attachment.read": N_("Opened a file"),
    "submission.update.version": N_("Edited (a new version)"), "submission.attachment.update": N_("Sent a file"),
    "submission.delete": N_("Deleted"), "submission.restore": N_("Restored"), "submission.export": N_("Exported"),
}


def _audit_label(action: str) -> str:
    text = AUDIT_LABELS.get(action)
    return gettext(text) if text else action


@bp.get("/submissions/<xml_form_id>/<instance_id>/files/<name>")
@page("submission.read")
def submission_file(xml_form_id, instance_id, name):
    _form, found = _found(xml_form_id, instance_id)
    attachment, data = review.read_attachment(g.actor, found, name)
    content_type = attachment.blob.content_type or "application/octet-stream"
    inline = content_type in browse.IMAGE_TYPES
    response = Response(data, content_type=content_type)
    response.headers["Content-Disposition"] = content_disposition(attachment.name, inline)
    response.headers["Cache-Control"] = "private, max-age=300"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _detail_url(form, found, anchor=None):
    return url_for("web.submission", xml_form_id=form.xml_form_id, instance_id=found.instance_id,
                   _anchor=anchor)


@bp.post("/submissions/<xml_form_id>/<instance_id>/review")
@page("submission.update")
def submission_review(xml_form_id, instance_id):
    form, found = _found(xml_form_id, instance_id)
    state = request.form.get("reviewState", "")
    if state not in DECISIONS:
        raise problems.unexpected_value(field="reviewState", value=state, reason="approved, hasIssues or rejected")
    note = (request.form.get("note") or "").strip()
    if len(note) > NOTE_MAX:
        flash(gettext("The note is too long (at most %(n)s characters).", n=NOTE_MAX), "error")
        return redirect(_detail_url(form, found, "review"))
    review.set_review_state(g.actor, found, state, notes=note or None,
                            grantee_code=request.form.get("grantee") or None)
    flash(gettext("Review state set to “%(state)s”.", state=gettext(DECISIONS[state])), "success")
    return redirect(_detail_url(form, found, "review"))


@bp.post("/submissions/<xml_form_id>/<instance_id>/comments")
@page("submission.read")
def submission_comment(xml_form_id, instance_id):
    form, found = _found(xml_form_id, instance_id)
    body = (request.form.get("body") or "").strip()
    if not body:
        flash(gettext("Write something before adding a comment."), "error")
    elif len(body) > COMMENT_MAX:
        flash(gettext("The comment is too long (at most %(n)s characters).", n=COMMENT_MAX), "error")
    else:
        review.add_comment(g.actor, found, body)
        flash(gettext("Comment added."), "success")
    return redirect(_detail_url(form, found, "comments"))
