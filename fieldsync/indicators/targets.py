"""Targets per grantee × indicator × period, from a CSV or one at a time."""
import csv
import io

from sqlalchemy import select

from .. import problems
from ..audit import record
from ..extensions import db, write_transaction
from ..models import Grantee, Target, utcnow
from .values import check_period

COLUMNS = ("grantee", "indicator", "period", "value")


def set_target(project_id: int, grantee_code: str, indicator: str, period: str, value, known: set[str],
               actor=None) -> Target:
    grantee = db.session.scalar(select(Grantee).where(Grantee.project_id == project_id, Grantee.code == grantee_code))
    if grantee is None:
        raise problems.unexpected_value(field="grantee", value=grantee_code, reason="no grantee has this code")
    if indicator not in known:
        raise problems.unexpected_value(field="indicator", value=indicator, reason="no such indicator")
    period = check_period(period or "")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise problems.unexpected_value(field="value", value=value, reason="a target is a number") from None
    if number < 0:
        raise problems.unexpected_value(field="value", value=value, reason="a target cannot be negative")
    target = db.session.scalar(select(Target).where(Target.indicator == indicator, Target.grantee_id == grantee.id,
                                                    Target.period == period))
    if target is None:
        target = Target(indicator=indicator, grantee_id=grantee.id, period=period, value=number)
        db.session.add(target)
    else:
        target.value, target.updated_at = number, utcnow()
    db.session.flush()
    record("target.set", actor, subject=target,
           details={"grantee": grantee_code, "indicator": indicator, "period": period, "value": number})
    return target


def load_csv(project_id: int, text: str, known: set[str], actor=None) -> int:
    """Load targets from CSV (grantee,indicator,period,value); all rows or none."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or set(COLUMNS) - set(reader.fieldnames):
        raise problems.bad_request(reason=f"the targets CSV needs the columns {', '.join(COLUMNS)}")
    count = 0
    with write_transaction():
        for line, row in enumerate(reader, start=2):
            try:
                set_target(project_id, row["grantee"], row["indicator"], row["period"], row["value"], known, actor)
            except problems.Problem as problem:
                problem.message = f"line {line}: {problem.message}"
                raise
            count += 1
    return count


def list_targets(project_id: int, grantee_id: int | None = None) -> list[tuple[Target, str]]:
    query = select(Target, Grantee.code).join(Grantee, Grantee.id == Target.grantee_id).where(
        Grantee.project_id == project_id)
    if grantee_id is not None:
        query = query.where(Target.grantee_id == grantee_id)
    return list(db.session.execute(query.order_by(Grantee.code, Target.indicator, Target.period)).all())


TARGET_MAX = 1e12  # no programme counts past a trillion; beyond it is a typing slip


def check_value(value) -> float:
    """A target's value as a number, refused when it is not a finite, non-negative number
    below TARGET_MAX (so 'nan', 'inf' and 1e400 never reach the database)."""
    import math
    try:
        number = float(str(value).strip().replace(",", "."))
    except (TypeError, ValueError):
        raise problems.unexpected_value(field="value", value=value, reason="a target is a number") from None
    if math.isnan(number) or math.isinf(number) or number > TARGET_MAX:
        raise problems.unexpected_value(field="value", value=value, reason="a target is a number below 10^12")
    if number < 0:
        raise problems.unexpected_value(field="value", value=value, reason="a target cannot be negative")
    return number


def get_target(project_id: int, grantee_id: int, indicator: str, period: str) -> Target | None:
    return db.session.scalar(select(Target).join(Grantee, Grantee.id == Target.grantee_id).where(
        Grantee.project_id == project_id, Target.grantee_id == grantee_id, Target.indicator == indicator,
        Target.period == period))


def delete_target(project_id: int, grantee_code: str, indicator: str, period: str, actor=None) -> bool:
    """Remove one target (audited); False when there was none. Call inside a write transaction."""
    grantee = db.session.scalar(select(Grantee).where(Grantee.project_id == project_id, Grantee.code == grantee_code))
    if grantee is None:
        return False
    target = get_target(project_id, grantee.id, indicator, period or "")
    if target is None:
        return False
    record("target.delete", actor, subject=target,
           details={"grantee": grantee_code, "indicator": indicator, "period": target.period, "value": target.value})
    db.session.delete(target)
    db.session.flush()
    return True
