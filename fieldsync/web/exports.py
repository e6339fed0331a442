"""Exports: start a background export of a form's submissions (CSV zip or XLSX) or of indicator
tables, watch its progress, download it when done. The jobs themselves are `fieldsync.exports`."""
from flask import flash, g, jsonify, redirect, render_template, request, send_file, url_for

from .. import exports, problems
from ..auth import can, grantee_scope
from ..models import REVIEW_STATES
from ..programme import PROJECT_ID, grantees
from ..xlsform import queries as form_queries
from . import bp, i18n, nav
from .i18n import N_
from .session import page

nav(60, "Exports", "web.exports", "export")

STATUS = {"pending": N_("Waiting"), "running": N_("Running"), "done": N_("Ready"), "failed": N_("Failed")}
KIND = {"submissions.zip": N_("Submissions, CSV (zip)"), "submissions.xlsx": N_("Submissions, Excel"),
        "indicators.csv": N_("Indicators, CSV"), "indicators.xlsx": N_("Indicators, Excel")}
# The fixed messages a failed job carries (fieldsync.exports), so that they are translated here.
ERRORS = (N_("The export stopped because of an error on the server. Start it again; if it fails again, tell your "
             "administrator."),
          N_("The form of this export no longer exists."),
          N_("The server's storage is full, so the export could not be written. Tell your administrator."))


def _grantee_name(grantee_id, names):
    return names.get(grantee_id) if grantee_id else None


def job_view(job, names: dict | None = None) -> dict:
    """What the page and its polling show of a job (no internal ids or paths)."""
    params = exports.params_of(job)
    total = job.total_rows
    percent = 100 if job.status == "done" else (int(100 * job.done_rows / total) if total else 0)
    ready = job.status == "done" and bool(job.file_name)
    if job.kind.startswith("submissions."):
        what = params.get("form")
    else:
        what = params.get("period") or i18n.gettext("All time")
    return {"id": job.id, "status": job.status, "statusLabel": i18n.gettext(STATUS.get(job.status, job.status)),
            "kind": i18n.gettext(KIND.get(job.kind, job.kind)), "what": what,
            "grantee": _grantee_name(params.get("grantee_id"), names or {}), "personal": bool(params.get("personal")),
            "done": job.done_rows or 0, "total": total, "percent": max(0, min(100, percent)),
            "rows": i18n.format_number(job.done_rows or 0), "totalText": i18n.format_number(total) if total is not None else "",
            "size": job.file_size, "created": job.created_at, "finished": job.finished_at,
            "expired": job.status == "done" and not job.file_name,
            "download": url_for("web.export_download", job_id=job.id) if ready else None,
            "error": i18n.gettext(job.error) if job.error else None}


@bp.get("/exports", endpoint="exports")
@page("export")
def exports_page():
    exports.resume_stale()
    scope = grantee_scope(g.actor)
    all_grantees = grantees(PROJECT_ID, scope)
    names = {gr.id: gr.name for gr in all_grantees}
    forms = [f for f in form_queries.published_forms(PROJECT_ID)]
    jobs = [job_view(job, names) for job in exports.jobs_for(g.actor)]
    return render_template("web/exports/index.html", jobs=jobs, forms=forms, grantees=all_grantees,
                           scoped=scope is not None, review_states=REVIEW_STATES,
                           may_personal=can(g.actor, "personal.read"),
                           selected_form=request.args.get("form", ""))


def _plain(problem: problems.Problem) -> str:
    field = problem.details.get("field")
    if field in ("since", "until"):
        return i18n.gettext("Check the dates: the first must be on or before the last.")
    if field == "period":
        return i18n.gettext("Write the period as a year (2026), a quarter (2026Q4) or a month (202611), or leave it "
                            "empty for all time.")
    if field == "form":
        return i18n.gettext("Choose a published form.")
    if field == "grantee":
        return i18n.gettext("Choose a grantee from the list.")
    if field == "review_state":
        return i18n.gettext("Choose a review state from the list.")
    if problem.code == problems.too_many_exports.code:
        return i18n.gettext("You already have %(n)s exports being prepared. Wait for one to finish, then start "
                            "this one.", n=problem.details["limit"])
    return i18n.gettext("The export could not be started. Check the choices and try again.")


@bp.post("/exports")
@page("export")
def exports_start():
    what = request.form.get("what")
    fmt = request.form.get("format")
    kinds = {("submissions", "zip"): "submissions.zip", ("submissions", "xlsx"): "submissions.xlsx",
             ("indicators", "csv"): "indicators.csv", ("indicators", "xlsx"): "indicators.xlsx"}
    kind = kinds.get((what, fmt))
    if kind is None:
        raise problems.unexpected_value(field="format", value=f"{what}.{fmt}", reason=", ".join(exports.KINDS))
    personal = request.form.get("personal") == "yes"
    if personal and not can(g.actor, "personal.read"):
        raise problems.forbidden()
    asked = {"form": request.form.get("form", ""), "grantee": request.form.get("grantee") or None,
             "review_state": request.form.get("review_state") or None, "since": request.form.get("since") or None,
             "until": request.form.get("until") or None, "personal": personal,
             "media": request.form.get("media") == "yes", "period": request.form.get("period", "").strip(),
             "approved_only": request.form.get("approved_only") == "yes"}
    try:
        job = exports.start(g.actor, PROJECT_ID, kind, asked)
    except problems.Problem as problem:
        if problem.status in (401, 403):
            raise
        flash(_plain(problem), "error")
        return redirect(url_for("web.exports"))
    flash(i18n.gettext("Export started. It is prepared in the background: you can leave this page and come back."),
          "success")
    return redirect(url_for("web.exports", _anchor=f"job-{job.id}"))


@bp.get("/exports/<int:job_id>/status")
@page("export")
def export_status(job_id):
    job = exports.job_for(g.actor, job_id)
    view = job_view(job)
    view.pop("created"), view.pop("finished")
    response = jsonify(view)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/exports/<int:job_id>/download")
@page("export")
def export_download(job_id):
    job = exports.job_for(g.actor, job_id)
    path = exports.file_of(job)
    exports.record_download(g.actor, job)
    mimetype = {"zip": "application/zip", "csv": "text/csv",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}[job.kind.split(".", 1)[1]]
    response = send_file(path, mimetype=mimetype, as_attachment=True, download_name=exports.download_name(job),
                         max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
