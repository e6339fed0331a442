"""The duplicates queue: look-alike events and persons side by side; a coordinator merges them
or marks them not duplicates, and the indicators follow at once."""
from flask import flash, g, redirect, render_template, request, url_for

from .. import problems, programme
from ..auth import can, grantee_scope
from ..indicators import duplicates as dedup
from ..review import browse
from . import bp, nav
from .i18n import N_, gettext
from .session import page

nav(30, "Duplicates", "web.duplicates", "submission.read")

TABS = {"open": N_("Open"), "decided": N_("Decided")}
DECIDED = ("merged", "not_duplicate")
DECISIONS = {"merge": N_("Merged."), "not_duplicate": N_("Marked as not a duplicate.")}
SHOWN_MAX = 200


def _candidates(tab: str):
    scope = grantee_scope(g.actor)
    if tab == "open":
        return dedup.candidates("open", scope)
    found = [c for status in DECIDED for c in dedup.candidates(status, scope)]
    return sorted(found, key=lambda c: (c.decided_at is None, c.decided_at), reverse=True)


@bp.get("/duplicates")
@page("submission.read")
def duplicates():
    tab = request.args.get("status", "open")
    if tab not in TABS:
        raise problems.unexpected_value(field="status", value=tab, reason="open or decided")
    kind = request.args.get("kind", "")
    if kind not in ("", "event", "person"):
        raise problems.unexpected_value(field="kind", value=kind, reason="event or person")
    found = _candidates(tab)
    counts = {"open": len(found) if tab == "open" else len(_candidates("open"))}
    if kind:
        found = [c for c in found if c.kind == kind]
    shown = found[:SHOWN_MAX]
    grantees = {x.id: x for x in programme.grantees(programme.PROJECT_ID)}
    personal_ok = can(g.actor, "personal.read")
    rows = [{"candidate": c, "sides": dedup.sides(c)} for c in shown]
    deciders = browse.user_names({c.decided_by_user_id for c in shown})
    return render_template("web/duplicates/index.html", tab=tab, tabs=TABS, kind=kind, rows=rows,
                           total=len(found), counts=counts, grantees=grantees, personal_ok=personal_ok,
                           deciders=deciders, may_decide=can(g.actor, "duplicate.resolve"),
                           shown_max=SHOWN_MAX)


@bp.post("/duplicates/<int:candidate_id>")
@page("duplicate.resolve")
def duplicate_decide(candidate_id):
    decision = request.form.get("decision", "")
    if decision not in DECISIONS:
        raise problems.unexpected_value(field="decision", value=decision, reason="merge or not_duplicate")
    candidate = next((c for c in dedup.candidates(None, grantee_scope(g.actor)) if c.id == candidate_id), None)
    if candidate is None:
        raise problems.not_found()
    if candidate.status != "open":
        flash(gettext("This candidate was already decided."), "info")
    else:
        dedup.decide(candidate.id, decision, g.actor)
        flash(gettext(DECISIONS[decision]) + " " + gettext("The indicators are updated."), "success")
    return redirect(url_for("web.duplicates", status=request.args.get("status") or None))
