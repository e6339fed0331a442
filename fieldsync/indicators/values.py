"""Reading indicator values for people: per grantee or region, period, option, with targets."""
from dataclasses import dataclass

from sqlalchemy import select

from .. import problems
from ..extensions import db
from ..models import Grantee, IndicatorValue, Region, Target
from .contributions import periods_of

PERIOD_FORMATS = ("YYYY", "YYYYQn", "YYYYMM")


@dataclass
class Cell:
    indicator: str
    org_unit: str
    period: str
    coc: str
    value: float
    target: float | None = None

    @property
    def percent_achieved(self) -> float | None:
        if not self.target:
            return None
        return round(100.0 * self.value / self.target, 1)


def check_period(period: str) -> str:
    if period == "" or (period.isdigit() and len(period) in (4, 6)) or (
            len(period) == 6 and period[:4].isdigit() and period[4] == "Q" and period[5] in "1234"):
        if len(period) == 6 and period[4] != "Q" and not 1 <= int(period[4:]) <= 12:
            raise problems.unexpected_value(field="period", value=period, reason="no such month")
        return period
    raise problems.unexpected_value(field="period", value=period,
                                    reason="use a DHIS2 period: 2004, 2004Q3 or 200407")


def _value(indicator_family: str, total: float, weight: float) -> float:
    return total / weight if indicator_family == "mean" and weight else total


def read(project_id: int, families: dict[str, str], indicators: list[str], org_units: list[str],
         periods: list[str], scope: str, allowed_grantee: int | None, with_targets: bool) -> list[Cell]:
    grantees = {g.code: g for g in db.session.scalars(select(Grantee).where(Grantee.project_id == project_id))}
    regions = {r.code for r in db.session.scalars(select(Region))}
    units: dict[str, list[int]] = {}
    if allowed_grantee is not None:
        # Scope first: to grantee staff another grantee's code is answered as a code that does
        # not exist, so the answer tells nothing about which codes do.
        own = next((code for code, g in grantees.items() if g.id == allowed_grantee), None)
        if own is None:
            raise problems.not_found()  # not a grantee of this project
        for unit in org_units:
            if unit in regions:
                raise problems.forbidden()  # regions are the programme's public reference data
            if unit != own:
                raise problems.unexpected_value(field="orgUnit", value=unit, reason="not a grantee or region code")
        units = {own: [allowed_grantee]}
    else:
        for unit in org_units or sorted(grantees):
            if unit in grantees:
                units[unit] = [grantees[unit].id]
            elif unit in regions:
                units[unit] = [g.id for g in grantees.values() if g.region_code == unit]
            else:
                raise problems.unexpected_value(field="orgUnit", value=unit, reason="not a grantee or region code")
    wanted = indicators or sorted(families)
    for indicator in wanted:
        if indicator not in families:
            raise problems.unexpected_value(field="dataElement", value=indicator, reason="no such indicator")
    periods = [check_period(p) for p in (periods or [""])]
    ids = sorted({i for members in units.values() for i in members})
    rows = db.session.scalars(select(IndicatorValue).where(
        IndicatorValue.indicator.in_(wanted), IndicatorValue.grantee_id.in_(ids),
        IndicatorValue.scope == scope, IndicatorValue.period.in_(periods))).all() if ids else []
    sums: dict[tuple, list[float]] = {}
    by_grantee = {}
    for row in rows:
        by_grantee.setdefault(row.grantee_id, []).append(row)
    for unit, members in units.items():
        for grantee_id in members:
            for row in by_grantee.get(grantee_id, []):
                cell = sums.setdefault((row.indicator, unit, row.period, row.coc), [0.0, 0.0])
                cell[0] += row.total
                cell[1] += row.weight
    targets = _targets(units, wanted, periods) if with_targets else {}
    cells = [Cell(indicator, unit, period, coc, _value(families[indicator], total, weight),
                  targets.get((indicator, unit, period)) if coc == "total" else None)
             for (indicator, unit, period, coc), (total, weight) in sums.items()]
    # A target with no value yet still shows (0 achieved).
    for (indicator, unit, period), target in targets.items():
        if (indicator, unit, period, "total") not in sums:
            cells.append(Cell(indicator, unit, period, "total", 0.0, target))
    return sorted(cells, key=lambda c: (c.indicator, c.org_unit, c.period, c.coc != "total", c.coc))


def _targets(units, indicators, periods) -> dict[tuple, float]:
    ids = {i for members in units.values() for i in members}
    rows = db.session.scalars(select(Target).where(Target.indicator.in_(indicators), Target.grantee_id.in_(ids),
                                                   Target.period.in_(periods))).all()
    out: dict[tuple, float] = {}
    for unit, members in units.items():
        for row in rows:
            if row.grantee_id in members:
                key = (row.indicator, unit, row.period)
                out[key] = out.get(key, 0.0) + row.value
    return out


def format_value(value: float) -> str:
    return str(int(round(value))) if abs(value - round(value)) < 1e-9 else f"{value:.2f}"


__all__ = ["Cell", "read", "format_value", "check_period", "periods_of", "PERIOD_FORMATS"]
