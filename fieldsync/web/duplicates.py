"""The duplicates queue: look-alike events and persons side by side; a coordinator merges them
or marks them not duplicates, and the indicators follow at once."""
import re
from datetime import date

from flask import flash, g, redirect, render_template, request, url_for

from .. import problems, programme
from ..auth import can, grantee_scope
from ..indicators import duplicates as dedup
from ..review import browse
from ..xlsform import queries as form_queries
from . import bp, nav
from . import i18n
from .i18n import N_, gettext
from .session import page

nav(30, "Duplicates", "web.duplicates", "submission.read")

TABS = {"open": N_("Open"), "decided": N_("Decided")}
DECIDED = ("merged", "not_duplicate")
DECISIONS = {"merge": N_("Merged."), "not_duplicate": N_("Marked as not a duplicate.")}
SHOWN_MAX = 200


EVENT_FORM = "seminar_attendance"  # events are the records of this form (records.derive)
# The pieces of an event candidate's reason (records.matching), in plain words in each language.
REASON_PARTS = [
    (re.compile(r"^villages alike \((\d+)%\)$"), N_("the villages' names are alike (%(n)s%%)")),
    (re.compile(r"^different topics$"), N_("the topics differ")),
    (re.compile(r"^(\d+) participant\(s\) in common$"), N_("participants in common: %(n)s")),
    (re.compile(r"^headcounts (\d+) and (\d+)$"), N_("headcounts %(n)s and %(m)s")),
    (re.compile(r"^one has a register, the other only a headcount$"),
     N_("one has a register by name, the other only a headcount")),
]
EVENT_PREFIX = "Same grantee, date and event type; "


def event_reason(reason: str) -> list[str]:
    """An event candidate's reason as translated phrases (unknown pieces stay as written)."""
    text = (reason or "").strip().rstrip(".")
    if text.startswith(EVENT_PREFIX):
        text = text[len(EVENT_PREFIX):]
    out = []
    for part in filter(None, (p.strip() for p in text.split(", "))):
        for pattern, message in REASON_PARTS:
            match = pattern.match(part)
            if match:
                groups = match.groups()
                out.append(gettext(message, **dict(zip(("n", "m"), groups))) if groups else gettext(message))
                break
        else:
            out.append(part)
    return out


def _event_rows(side: dict, other: dict, extras, keys) -> list[tuple]:
    """(label, shown value, differs from the other side) for an event's side."""
    def choice(field, value):
        return browse.show_value({"path": field, "control": "select1"}, value, extras.choices, keys) if extras else value

    def day(value):
        try:
            return i18n.format_date(date.fromisoformat(value)) if value else None
        except ValueError:
            return value
    rows = [(N_("Date"), day(side.get("eventDate")), "eventDate"),
            (N_("Type"), choice("event_type", side.get("eventType")), "eventType"),
            (N_("Village"), side.get("village"), "village"),
            (N_("Topic"), choice("topic", side.get("topic")), "topic"),
            (N_("Registered by name"), side.get("registered"), "registered"),
            (N_("Headcount"), side.get("headcount"), "headcount")]
    return [(gettext(label), value, side.get(key) != other.get(key)) for label, value, key in rows]


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
    form = form_queries.form_by_xml_id(programme.PROJECT_ID, EVENT_FORM)
    extras = browse.form_extras(form.current_version) if form and form.current_version else None
    keys = browse.language_key(form.current_version.schema.get("languages") or [], i18n.language()) \
        if extras else []
    rows = []
    for c in shown:
        a, b = dedup.sides(c)
        row = {"candidate": c, "sides": (a, b)}
        if c.kind == "event":
            row["event_rows"] = (_event_rows(a, b, extras, keys), _event_rows(b, a, extras, keys))
            row["reasons"] = event_reason(c.reason)
        rows.append(row)
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
    candidate = dedup.find(candidate_id, grantee_scope(g.actor))
    if candidate is None:
        raise problems.not_found()  # also one out of scope: the same answer as an unknown id
    if candidate.status != "open":
        flash(gettext("This candidate was already decided."), "info")
    else:
        dedup.decide(candidate.id, decision, g.actor)
        flash(gettext(DECISIONS[decision]) + " " + gettext("The indicators are updated."), "success")
    return redirect(url_for("web.duplicates", status=request.args.get("status") or None))
