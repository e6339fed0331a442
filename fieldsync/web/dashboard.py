"""The dashboard: the programme's indicators per grantee and region for a period, against
targets, with a trend over the year's months and the disaggregations the engine produces.

Every figure comes from `indicators.values.read`, the same call the DHIS2-shaped API makes, so
the page and `/v1/projects/1/indicator-values` always agree. A grantee_staff user's reads are
confined to their own grantee by `read` itself (allowed_grantee), and the page shows no region
totals to them (a region total would include other grantees).
"""
import math
from datetime import date, datetime

from babel import dates as babel_dates
from flask import g, render_template, request

from .. import problems, programme
from ..auth import can, grantee_scope
from ..indicators import definitions
from ..indicators import duplicates as dedup
from ..indicators.values import check_period, format_value, read
from . import bp, nav
from .i18n import N_, format_number, format_percent, gettext, language, timezone
from .session import page

nav(10, "Dashboard", "web.dashboard", "indicator.read")

PROJECT_ID = programme.PROJECT_ID
# The indicators shown, in this order (any others in forms/indicators.yaml follow).
MAIN = ["events_held", "participants_reached", "unique_participants", "trainers_prepared",
        "materials_distributed", "needs_assessments", "interviews_conducted", "satisfaction_mean",
        "consultations_provided", "victims_assisted", "services_provided"]
CHART_DEFAULT = "participants_reached"
# A mean over several org units is weighted by the count of what was averaged.
MEAN_WEIGHT = {"satisfaction_mean": "interviews_conducted"}
DISAGGREGATIONS = [
    ("participants_reached", N_("Participants reached by sex")),
    ("events_held", N_("Events held by type")),
    ("consultations_provided", N_("Consultations by channel")),
    ("services_provided", N_("Services provided by type")),
]
OPTION_LABELS = {
    "female": N_("Female"), "male": N_("Male"),
    "seminar": N_("Seminar"), "training": N_("Training"), "tot": N_("Training of trainers"),
    "roundtable": N_("Round table"), "public_hearing": N_("Public hearing"), "public_meeting": N_("Public meeting"),
    "campaign": N_("Campaign"), "performance": N_("Performance"),
    "hotline": N_("Hotline"), "in_person": N_("In person"), "outreach": N_("Outreach"),
    "information": N_("Information"), "legal": N_("Legal aid"), "psychological": N_("Psychological support"),
    "medical": N_("Medical aid"), "shelter": N_("Shelter"), "vocational_training": N_("Vocational training"),
    "employment": N_("Employment"), "referral": N_("Referral"),
}
SCOPES = {"all": N_("All non-rejected submissions"), "approved": N_("Approved submissions only")}
YEARS_BACK = 4


class BadFilter(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- labels ---------------------------------------------------------------------------------

def indicator_label(indicator) -> str:
    """An indicator's name in the page's language (from forms/indicators.yaml), else English."""
    names = indicator.name or {}
    return names.get(language()) or names.get("en") or indicator.id


def option_label(option: str) -> str:
    return gettext(OPTION_LABELS[option]) if option in OPTION_LABELS else option.replace("_", " ")


def region_label(region) -> str:
    return region.name_ru if language() == "ru" else region.name_en


def period_label(period: str) -> str:
    """'All time', '2026', 'Q3 2026', 'July 2026' in the page's language."""
    if not period:
        return gettext("All time")
    if len(period) == 4:
        return period
    if period[4] == "Q":
        return gettext("Q%(quarter)s %(year)s", quarter=period[5], year=period[:4])
    try:
        month = date(int(period[:4]), int(period[4:]), 1)
    except ValueError:  # a stored period no calendar has (year 0000)
        return period
    return babel_dates.format_date(month, "LLLL y", locale=language()).capitalize()


def month_short(period: str) -> str:
    return babel_dates.format_date(date(int(period[:4]), int(period[4:]), 1), "LLL", locale=language()).capitalize()


def display(value, family: str) -> str:
    """A figure as people read it: grouped digits, two decimals for means and fractions."""
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) >= 1e15:  # beyond what decimal formatting holds (a target of 1e300 from the API)
        return f"{value:.3g}"
    if family == "mean" or abs(value - round(value)) > 1e-9:
        return format_number(value, 2)
    return format_number(round(value), 0)


# --- filters --------------------------------------------------------------------------------

def today() -> date:
    return datetime.now(timezone()).date()


def chosen_period() -> str:
    """`period` (a DHIS2 id, or `all`/empty for all time) wins; else the picker's `year` and
    `part` (`year`, `Q1`…`Q4`, `01`…`12`); else the current year."""
    args = request.args
    if "period" in args:
        raw = args.get("period", "").strip()
        period = "" if raw in ("", "all") else raw
    elif "year" in args:
        year, part = args.get("year", "").strip(), args.get("part", "year").strip()
        if year in ("", "all"):
            period = ""
        elif part in ("", "year"):
            period = year
        elif part.startswith("Q"):
            period = year + part
        else:
            period = year + part
    else:
        period = str(today().year)
    if len(period) > 6 or not plausible_year(period):
        raise BadFilter(gettext("“%(period)s” is not a period. Use a year (2025), a quarter (2025Q3) or a month (202507).",
                                period=period[:20]))
    try:
        return check_period(period)
    except problems.Problem:
        raise BadFilter(gettext("“%(period)s” is not a period. Use a year (2025), a quarter (2025Q3) or a month (202507).",
                                period=period)) from None


YEAR_RANGE = (1990, 2100)  # a programme's years; 0000 or 9999 is a typing slip


def plausible_year(period: str) -> bool:
    """An empty period (all time), or one whose year is within YEAR_RANGE (not 0000, which no
    calendar can show)."""
    if not period:
        return True
    return period[:4].isdigit() and YEAR_RANGE[0] <= int(period[:4]) <= YEAR_RANGE[1]


def period_choices(period: str) -> dict:
    """What the period picker offers: years (with all time) and the parts of a year."""
    this_year = today().year
    years = [str(y) for y in range(this_year, this_year - YEARS_BACK, -1)]
    if period and period[:4] not in years:
        years.append(period[:4])
        years.sort(reverse=True)
    parts = [("year", gettext("Whole year"))]
    parts += [(f"Q{q}", gettext("Quarter %(quarter)s", quarter=q)) for q in range(1, 5)]
    parts += [(f"{m:02d}", babel_dates.format_date(date(2000, m, 1), "LLLL", locale=language()).capitalize())
              for m in range(1, 13)]
    if not period:
        year, part = "all", "year"
    elif len(period) == 4:
        year, part = period, "year"
    else:
        year, part = period[:4], period[4:]
    return {"years": years, "parts": parts, "year": year, "part": part}


# --- figures --------------------------------------------------------------------------------

class Figures:
    """Indicator cells from one read, looked up by indicator and org unit."""

    def __init__(self, defs: dict, cells):
        self.defs = defs
        self.cells = {(c.indicator, c.org_unit, c.coc): c for c in cells}

    def has_total(self, indicator: str) -> bool:
        return any(t.total for t in self.defs[indicator].terms)

    def options(self, indicator: str) -> list[str]:
        found: list[str] = []
        for term in self.defs[indicator].terms:
            for option in list(term.options or ()) + ([term.fixed] if term.fixed else []):
                if option not in found:
                    found.append(option)
        return found

    def value(self, indicator: str, unit: str, coc: str = "total") -> float:
        if coc == "total" and not self.has_total(indicator):
            return sum(c.value for (i, u, o), c in self.cells.items() if i == indicator and u == unit and o != "total")
        cell = self.cells.get((indicator, unit, coc))
        return cell.value if cell else 0.0

    def measured(self, indicator: str, units: list[str]) -> bool:
        """Whether anything was measured: a mean of nothing is no figure, not 0."""
        return any(i == indicator and u in units for (i, u, _o) in self.cells)

    def target(self, indicator: str, unit: str) -> float | None:
        cell = self.cells.get((indicator, unit, "total"))
        return cell.target if cell else None

    def combined(self, indicator: str, units: list[str], coc: str = "total") -> float:
        """Several org units together: a sum, or for a mean the mean weighted by its count."""
        if len(units) == 1:
            return self.value(indicator, units[0], coc)
        if self.defs[indicator].family != "mean":
            return sum(self.value(indicator, u, coc) for u in units)
        weight_of = MEAN_WEIGHT.get(indicator)
        pairs = [(self.value(indicator, u, coc), self.value(weight_of, u) if weight_of in self.defs else 1.0)
                 for u in units]
        pairs = [(v, w) for v, w in pairs if w and (v or weight_of)]
        total_weight = sum(w for _v, w in pairs)
        return sum(v * w for v, w in pairs) / total_weight if total_weight else 0.0

    def combined_target(self, indicator: str, units: list[str]) -> float | None:
        targets = [t for t in (self.target(indicator, u) for u in units) if t is not None]
        if not targets:
            return None
        if self.defs[indicator].family == "mean":
            return sum(targets) / len(targets)
        return sum(targets)


def percent_text(achieved: float | None) -> str | None:
    if achieved is None:
        return None
    return format_percent(achieved / 100) if abs(achieved) < 1e12 else f"{achieved:.3g}%"


def finite(value):
    """None for what JSON cannot carry (an infinite target stored through the API)."""
    return value if value is not None and math.isfinite(value) else None


def percent(value: float, target: float | None) -> float | None:
    if not target or not math.isfinite(target):
        return None
    return round(100.0 * value / target, 1)


def figure(figures: Figures, indicator: str, units: list[str], org_unit: str,
           target_units: list[str] | None = None) -> dict:
    """One figure of the page. Percent achieved compares like with like: when only some of the
    grantees in `target_units` have a target, it is their actual against their targets, and
    `partial` says how many have one."""
    family = figures.defs[indicator].family
    value = figures.combined(indicator, units)
    target_units = target_units or units
    with_target = [u for u in target_units if figures.target(indicator, u) is not None]
    target = figures.combined_target(indicator, with_target) if with_target else None
    covered = value if len(with_target) == len(target_units) else figures.combined(indicator, with_target)
    achieved = percent(covered, target)
    return {"indicator": indicator, "org_unit": org_unit, "value": value, "raw": format_value(value),
            "text": display(value, family) if family != "mean" or figures.measured(indicator, units) else "—",
            "target": target,
            "target_text": display(target, family) if target is not None else None,
            "percent": achieved, "percent_text": percent_text(achieved),
            "bar": min(achieved, 100.0) if achieved is not None else 0,
            "partial": (len(with_target), len(target_units)) if with_target and len(with_target) < len(target_units) else None}


@bp.get("/")
@page("indicator.read")
def dashboard():
    defs = definitions().indicators
    families = {i: d.family for i, d in defs.items()}
    order = [i for i in MAIN if i in defs] + [i for i in defs if i not in MAIN]
    scope_grantee = grantee_scope(g.actor)
    grantees = programme.grantees(PROJECT_ID, only_id=scope_grantee)
    regions = {r.code: r for r in programme.regions()}
    try:
        period = chosen_period()
        scope = request.args.get("scope", "all")
        if scope not in SCOPES:
            raise BadFilter(gettext("Show either all non-rejected submissions or approved ones only."))
        chart_indicator = request.args.get("indicator") or CHART_DEFAULT
        if chart_indicator not in defs:
            raise BadFilter(gettext("There is no indicator “%(indicator)s”.", indicator=chart_indicator[:60]))
        org = "" if scope_grantee is not None else request.args.get("org", "").strip()
        if scope_grantee is not None and request.args.get("org") and request.args["org"] not in {x.code for x in grantees}:
            raise problems.forbidden()
        codes = {x.code for x in grantees}
        if org and org not in codes and org not in regions:
            raise BadFilter(gettext("There is no grantee or region “%(code)s”.", code=org[:60]))
    except BadFilter as bad:
        return render_template("web/dashboard/bad_filter.html", message=bad.message), 400

    # Which org units the page shows: grantee rows, grouped under region rows.
    if scope_grantee is not None or org in codes:
        shown = [x for x in grantees if scope_grantee is not None or x.code == org]
        groups = [(None, shown)]
        top = [x.code for x in shown]
    else:
        shown = [x for x in grantees if not org or x.region_code == org]
        by_region: dict[str, list] = {}
        for grantee in shown:
            by_region.setdefault(grantee.region_code, []).append(grantee)
        groups = sorted(((regions[code], members) for code, members in by_region.items()),
                        key=lambda pair: region_label(pair[0]))
        top = [region.code for region, _members in groups]
    # Two grantees may share a name (Ayalzat in Osh and in Talas): their region tells them apart.
    names = {}
    for x in grantees:
        names.setdefault(x.name, []).append(x)
    label_of = {x.code: (f"{x.name} ({region_label(regions[x.region_code])})"
                         if len(names[x.name]) > 1 and x.region_code in regions else x.name) for x in grantees}
    units = [x.code for x in shown] + ([] if scope_grantee is not None or org in codes else top)
    cells = read(PROJECT_ID, families, order, units, [period], scope, scope_grantee, with_targets=True) if shown else []
    figures = Figures(defs, cells)

    shown_codes = [x.code for x in shown]
    kpis = [dict(figure(figures, i, top, "all", shown_codes), label=indicator_label(defs[i])) for i in order] if top else []
    rows = []
    for region, members in groups:
        if region is not None:
            rows.append({"kind": "region", "code": region.code, "name": region_label(region),
                         "cells": [figure(figures, i, [region.code], region.code, [m.code for m in members])
                                   for i in order]})
        for grantee in members:
            rows.append({"kind": "grantee", "code": grantee.code, "name": label_of[grantee.code],
                         "region": region_label(regions[grantee.region_code]) if grantee.region_code in regions else "",
                         "cells": [figure(figures, i, [grantee.code], grantee.code) for i in order]})
    if len(top) > 1:
        rows.append({"kind": "all", "code": "all", "name": gettext("All grantees shown"),
                     "cells": [figure(figures, i, top, "all", shown_codes) for i in order]})

    # Disaggregations of the whole view.
    disaggregations = []
    for indicator, title in DISAGGREGATIONS:
        if indicator not in defs or not top:
            continue
        family = defs[indicator].family
        options = [(o, figures.combined(indicator, top, o)) for o in figures.options(indicator)]
        total = figures.combined(indicator, top)
        disaggregations.append({
            "indicator": indicator, "title": gettext(title), "total_text": display(total, family),
            "rows": [{"option": o, "label": option_label(o), "value": v, "text": display(v, family),
                      "share": (v / total * 100) if total else 0} for o, v in options]})

    # The trend: the chosen indicator per month of the period's year.
    year = int(period[:4]) if period else today().year
    months = [f"{year}{m:02d}" for m in range(1, 13)]
    trend_indicators = [chart_indicator] + ([MEAN_WEIGHT[chart_indicator]] if chart_indicator in MEAN_WEIGHT else [])
    trend_cells = read(PROJECT_ID, families, trend_indicators, top if scope_grantee is None else [], months,
                       scope, scope_grantee, with_targets=False) if top else []
    trend = []
    for month in months:
        month_figures = Figures(defs, [c for c in trend_cells if c.period == month])
        value = month_figures.combined(chart_indicator, top) if top else 0.0
        trend.append({"period": month, "label": month_short(month), "value": value,
                      "text": display(value, defs[chart_indicator].family)})

    chart_index = order.index(chart_indicator)
    grantee_rows = [r for r in rows if r["kind"] == "grantee"]
    # One grantee: a bar per grantee says little; its progress against each target says more.
    progress = [k for k in kpis if k["percent"] is not None] if len(grantee_rows) == 1 else []
    charts = {
        "indicator": indicator_label(defs[chart_indicator]),
        "labels": {"actual": gettext("Actual"), "target": gettext("Target")},
        "grantees": {"labels": [r["name"] for r in grantee_rows],
                     "actual": [r["cells"][chart_index]["value"] for r in grantee_rows],
                     "target": [finite(r["cells"][chart_index]["target"]) for r in grantee_rows]},
        "trend": {"labels": [m["label"] for m in trend], "values": [m["value"] for m in trend],
                  "year": year},
        "progress": {"labels": [k["label"] for k in progress], "values": [k["percent"] for k in progress],
                     "label": gettext("Share of the target achieved, %")},
        "disaggregations": [{"id": d["indicator"], "labels": [r["label"] for r in d["rows"]],
                             "values": [r["value"] for r in d["rows"]]} for d in disaggregations],
    }

    # What still waits for a person, among the grantees shown (with no filter, also what names no grantee).
    shown_ids = {x.id for x in shown} | ({None} if scope_grantee is None and not org else set())
    activity = programme.activity(PROJECT_ID, scope_grantee)
    under_review = sum(a.under_review for gid, a in activity.items() if gid in shown_ids)
    open_duplicates = (sum(1 for c in dedup.candidates("open", scope_grantee) if c.grantee_id in shown_ids)
                       if can(g.actor, "duplicate.resolve") else None)
    review_link = "/submissions?reviewState=received" + (
        f"&grantee={org}" if org in codes else f"&region={org}" if org else "")

    org_choices = {"regions": sorted(((r.code, region_label(r)) for r in regions.values()
                                      if any(x.region_code == r.code for x in grantees)), key=lambda p: p[1]),
                   "grantees": sorted(((x.code, label_of[x.code]) for x in grantees), key=lambda p: p[1].casefold())}
    if org in codes:
        org_name = label_of[org]
    elif org:
        org_name = region_label(regions[org])
    elif scope_grantee is not None:
        org_name = grantees[0].name if grantees else ""
    else:
        org_name = gettext("All grantees")
    return render_template(
        "web/dashboard/index.html", period=period, period_text=period_label(period), choices=period_choices(period),
        scope=scope, scopes=[(k, gettext(v)) for k, v in SCOPES.items()], org=org, org_name=org_name,
        org_choices=org_choices, own_only=scope_grantee is not None,
        indicators=[(i, indicator_label(defs[i])) for i in order], chart_indicator=chart_indicator,
        chart_label=indicator_label(defs[chart_indicator]), kpis=kpis, rows=rows, disaggregations=disaggregations,
        trend=trend, year=year, charts=charts, progress=progress, under_review=under_review, open_duplicates=open_duplicates, review_link=review_link,
        can_review=can(g.actor, "submission.read"), has_targets=any(k["target"] is not None for k in kpis))
