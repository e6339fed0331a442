"""The grantees pages: the list, adding and editing a grantee, and each grantee's targets.

Grantee_staff see only their own grantee: another grantee's pages answer 404, as if it did
not exist. Validation is the domain's (`programme.create_grantee`, `indicators.targets`); this
module only puts its answers in plain words, next to the field they are about.
"""
import math

from flask import flash, g, redirect, render_template, request, url_for

from .. import problems, programme
from ..auth import can, grantee_scope
from ..extensions import write_transaction
from ..indicators import definitions
from ..indicators import targets as target_store
from ..indicators.values import format_value, read
from . import bp, nav
from .dashboard import display, indicator_label, percent_text, period_label, plausible_year, region_label
from .i18n import gettext
from .session import page

nav(70, "Grantees", "web.grantees", "grantee.read")

PROJECT_ID = programme.PROJECT_ID


def _grantee_or_404(code: str):
    grantee = programme.grantee_by_code(PROJECT_ID, code)
    # A Grantee has no grantee_id for `can` to compare, so the scope is checked on its id.
    scope = grantee_scope(g.actor)
    if grantee is None or not can(g.actor, "grantee.read") or (scope is not None and grantee.id != scope):
        raise problems.not_found()
    return grantee


def _region_choices():
    return sorted(((r.code, region_label(r)) for r in programme.regions()), key=lambda pair: pair[1])


@bp.get("/grantees")
@page("grantee.read")
def grantees():
    scope = grantee_scope(g.actor)
    regions = {r.code: r for r in programme.regions()}
    activity = programme.activity(PROJECT_ID, scope)
    rows = [{"grantee": x, "region": region_label(regions[x.region_code]) if x.region_code in regions else x.region_code,
             "activity": activity.get(x.id, programme.Activity())}
            for x in sorted(programme.grantees(PROJECT_ID, only_id=scope), key=lambda x: x.name.casefold())]
    return render_template("web/grantees/index.html", rows=rows)


# --- adding and editing a grantee -------------------------------------------------------------

def _grantee_errors(problem: problems.Problem, code: str) -> dict:
    field = problem.details.get("field") or ("code" if problem.code == problems.already_exists.code else "")
    if problem.code == problems.already_exists.code:
        return {"code": gettext("There is already a grantee with the code “%(code)s”.", code=code)}
    if field == "code":
        if problem.code == problems.missing_parameter.code:
            return {"code": gettext("Enter a code.")}
        return {"code": gettext("A code is lowercase letters a–z, digits and _, starting with a letter "
                                "(for example new_ngo), at most 64 characters.")}
    if field == "name":
        if problem.code == problems.missing_parameter.code:
            return {"name": gettext("Enter the grantee's name.")}
        return {"name": gettext("The name is too long: at most 255 characters.")}
    if field == "region":
        return {"region": gettext("Choose a region from the list.")}
    raise problem


@bp.route("/grantees/new", methods=["GET", "POST"])
@page("grantee.manage")
def grantee_new():
    values, errors = {"code": "", "name": "", "region": ""}, {}
    if request.method == "POST":
        values = {k: request.form.get(k, "").strip() for k in values}
        try:
            with write_transaction():
                grantee = programme.create_grantee(PROJECT_ID, values["code"], values["name"], values["region"], g.actor)
                name = grantee.name
        except problems.Problem as problem:
            errors = _grantee_errors(problem, values["code"][:64])
        else:
            flash(gettext("Grantee %(name)s added.", name=name), "success")
            return redirect(url_for("web.grantees"))
    return render_template("web/grantees/form.html", grantee=None, values=values, errors=errors,
                           regions=_region_choices()), 400 if errors else 200


@bp.route("/grantees/<code>/edit", methods=["GET", "POST"])
@page("grantee.manage")
def grantee_edit(code):
    grantee = _grantee_or_404(code)
    values, errors = {"code": grantee.code, "name": grantee.name, "region": grantee.region_code}, {}
    if request.method == "POST":
        values.update(name=request.form.get("name", "").strip(), region=request.form.get("region", "").strip())
        try:
            with write_transaction():
                programme.update_grantee(PROJECT_ID, code, values["name"], values["region"], g.actor)
        except problems.Problem as problem:
            errors = _grantee_errors(problem, code)
        else:
            flash(gettext("Grantee %(name)s saved.", name=values["name"]), "success")
            return redirect(url_for("web.grantees"))
    return render_template("web/grantees/form.html", grantee=grantee, values=values, errors=errors,
                           regions=_region_choices()), 400 if errors else 200


# --- targets --------------------------------------------------------------------------------

def _target_rows(grantee, defs) -> list[dict]:
    stored = [t for t, _code in target_store.list_targets(PROJECT_ID, grantee.id)]
    known = [t for t in stored if t.indicator in defs]
    cells = {}
    if known:
        families = {i: d.family for i, d in defs.items()}
        found = read(PROJECT_ID, families, sorted({t.indicator for t in known}), [grantee.code],
                     sorted({t.period for t in known}), "all", grantee_scope(g.actor), with_targets=False)
        for cell in found:
            cells[(cell.indicator, cell.period, cell.coc)] = cell.value
    order = list(defs)
    rows = []
    for target in sorted(stored, key=lambda t: (order.index(t.indicator) if t.indicator in order else 999,
                                                t.period == "", t.period)):
        definition = defs.get(target.indicator)
        family = definition.family if definition else "additive"
        if definition is None:
            actual = None
        elif any(term.total for term in definition.terms):
            actual = cells.get((target.indicator, target.period, "total"), 0.0)
        else:
            actual = sum(v for (i, p, coc), v in cells.items() if i == target.indicator and p == target.period)
        finite = target.value is not None and math.isfinite(target.value)
        achieved = round(100.0 * actual / target.value, 1) if actual is not None and target.value and finite else None
        rows.append({"target": target, "indicator": indicator_label(definition) if definition else target.indicator,
                     "period": period_label(target.period), "value_text": display(target.value, family),
                     "value_raw": format_value(target.value),
                     "actual_text": display(actual, family) if actual is not None else "—",
                     "percent": achieved, "percent_text": percent_text(achieved) or "—",
                     "bar": min(achieved, 100.0) if achieved is not None else 0})
    return rows


def _target_errors(problem: problems.Problem, values: dict) -> dict:
    field = problem.details.get("field")
    if field == "indicator":
        return {"indicator": gettext("Choose an indicator from the list.")}
    if field == "period":
        return {"period": gettext("“%(period)s” is not a period. Use a year (2025), a quarter (2025Q3) or a month "
                                  "(202507), or leave it empty for all time.", period=values["period"][:20])}
    if field == "value":
        reason = problem.details.get("reason", "")
        if "negative" in reason:
            return {"value": gettext("A target cannot be negative.")}
        if "below" in reason:
            return {"value": gettext("That number is too large for a target.")}
        return {"value": gettext("A target is a number, such as 120 or 4.5.")}
    raise problem


def _render_targets(grantee, values=None, errors=None, status=200):
    defs = definitions().indicators
    editing = bool(values and values.get("editing"))
    return render_template("web/grantees/targets.html", grantee=grantee, rows=_target_rows(grantee, defs),
                           indicators=[(i, indicator_label(d)) for i, d in defs.items()],
                           values=values or {"indicator": "", "period": "", "value": ""}, errors=errors or {},
                           editing=editing, can_manage=can(g.actor, "target.manage", grantee)), status


@bp.get("/grantees/<code>/targets")
@page("grantee.read")
def grantee_targets(code):
    grantee = _grantee_or_404(code)
    values = None
    indicator, period = request.args.get("indicator"), request.args.get("period")
    if indicator is not None and can(g.actor, "target.manage", grantee):
        existing = target_store.get_target(PROJECT_ID, grantee.id, indicator, period or "")
        values = {"indicator": indicator, "period": period or "", "editing": existing is not None,
                  "value": format_value(existing.value) if existing else ""}
    return _render_targets(grantee, values)


@bp.post("/grantees/<code>/targets")
@page("target.manage")
def grantee_target_save(code):
    grantee = _grantee_or_404(code)
    values = {k: request.form.get(k, "").strip() for k in ("indicator", "period", "value")}
    values["editing"] = request.form.get("editing") == "1"
    if not values["value"]:
        return _render_targets(grantee, values, {"value": gettext("Enter the target value.")}, 400)
    if len(values["period"]) > 6 or not plausible_year(values["period"]):
        return _render_targets(grantee, values, _target_errors(problems.unexpected_value(
            field="period", value=values["period"][:20], reason="no such year"), values), 400)
    try:
        with write_transaction():
            number = target_store.check_value(values["value"])
            target_store.set_target(PROJECT_ID, grantee.code, values["indicator"], values["period"], number,
                                    set(definitions().indicators), g.actor)
    except problems.Problem as problem:
        return _render_targets(grantee, values, _target_errors(problem, values), 400)
    defs = definitions().indicators
    flash(gettext("Target saved: %(indicator)s, %(period)s.", indicator=indicator_label(defs[values["indicator"]]),
                  period=period_label(values["period"])), "success")
    return redirect(url_for("web.grantee_targets", code=grantee.code))


@bp.post("/grantees/<code>/targets/delete")
@page("target.manage")
def grantee_target_delete(code):
    grantee = _grantee_or_404(code)
    indicator, period = request.form.get("indicator", ""), request.form.get("period", "")
    with write_transaction():
        removed = target_store.delete_target(PROJECT_ID, grantee.code, indicator, period, g.actor)
    if not removed:
        raise problems.not_found()
    flash(gettext("Target removed."), "success")
    return redirect(url_for("web.grantee_targets", code=grantee.code))
