"""Indicator values (DHIS2 dataValueSets JSON, CSV, XLSX), targets and duplicate candidates."""
import csv
import io

from flask import Response, request

from .. import problems, programme
from ..auth import grantee_scope, require
from ..extensions import write_transaction
from ..formats.cells import neutral
from ..httpkit import content_disposition, current_actor
from ..indicators import definitions
from ..indicators import duplicates as dedup
from ..indicators import targets as target_store
from ..indicators.values import format_value, read
from ..models import iso
from . import bp, schemas
from .openapi import documented
from .sessions import json_body

BASE = "/v1/projects/<int:project_id>"


def _project_exists(project_id: int) -> None:
    """An unknown project is a 404 for everyone (not an empty answer, not a 500)."""
    if programme.project(project_id) is None:
        raise problems.not_found()


def _list(name: str) -> list[str]:
    return [v for raw in request.args.getlist(name) for v in raw.split(",") if v]


def _cells(project_id: int):
    actor = current_actor()
    require(actor, "indicator.read", project_id=project_id)
    _project_exists(project_id)
    defs = definitions()
    families = {i: d.family for i, d in defs.indicators.items()}
    scope = "approved" if request.args.get("approvedOnly") in ("true", "1") else "all"
    periods = request.args.getlist("period")
    periods = [p for raw in periods for p in raw.split(",")] if periods else [""]
    return actor, read(project_id, families, _list("dataElement"), _list("orgUnit"), periods, scope,
                       grantee_scope(actor), with_targets=request.args.get("targets") in ("true", "1"))


def _value_json(cell, with_targets: bool) -> dict:
    out = {"dataElement": cell.indicator, "period": cell.period, "orgUnit": cell.org_unit,
           "categoryOptionCombo": cell.coc, "value": format_value(cell.value)}
    if with_targets and cell.coc == "total":
        out["target"] = format_value(cell.target) if cell.target is not None else None
        out["percentAchieved"] = cell.percent_achieved
    return out


@bp.get(BASE + "/indicator-values")
@documented("Indicator values as DHIS2 dataValueSets", response=schemas.DataValueSet, query={"dataElement": {"type": "string"}, "orgUnit": {"type": "string"}, "period": {"type": "string"}, "approvedOnly": {"type": "string", "enum": ["true", "false"]}, "targets": {"type": "string", "enum": ["true", "false"]}})
def indicator_values(project_id):
    _actor, cells = _cells(project_id)
    with_targets = request.args.get("targets") in ("true", "1")
    return {"dataValues": [_value_json(c, with_targets) for c in cells]}


TABLE_HEADER = ["dataElement", "period", "orgUnit", "categoryOptionCombo", "value", "target", "percentAchieved"]


def _rows(cells):
    for c in cells:
        # Names are typed by people (grantee codes by admins): text cells never open as formulas.
        yield [neutral(c.indicator), neutral(c.period), neutral(c.org_unit), neutral(c.coc), format_value(c.value),
               format_value(c.target) if c.target is not None else "", c.percent_achieved if c.percent_achieved is not None else ""]


@bp.get(BASE + "/indicator-values.csv")
def indicator_values_csv(project_id):
    _actor, cells = _cells(project_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(TABLE_HEADER)
    writer.writerows(_rows(cells))
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": content_disposition("indicator-values.csv", inline=False)})


@bp.get(BASE + "/indicator-values.xlsx")
def indicator_values_xlsx(project_id):
    from openpyxl import Workbook

    _actor, cells = _cells(project_id)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("indicator values")
    sheet.append(TABLE_HEADER)
    for row in _rows(cells):
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return Response(out.getvalue(), content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": content_disposition("indicator-values.xlsx", inline=False)})


@bp.get(BASE + "/indicators")
@documented("Indicator definitions", response=schemas.Indicator, many=True)
def list_indicators(project_id):
    require(current_actor(), "indicator.read", project_id=project_id)
    return [{"id": d.id, "name": d.name, "kind": d.family,
             "terms": [{"source": t.source, "kind": t.kind, "by": t.by} for t in d.terms]}
            for d in definitions().indicators.values()]


@bp.get(BASE + "/targets")
@documented("Targets per grantee, indicator and period", response=schemas.Target, many=True)
def get_targets(project_id):
    actor = current_actor()
    require(actor, "indicator.read", project_id=project_id)
    _project_exists(project_id)
    return [{"grantee": code, "indicator": t.indicator, "period": t.period, "value": t.value,
             "updatedAt": iso(t.updated_at)}
            for t, code in target_store.list_targets(project_id, grantee_scope(actor))]


@bp.put(BASE + "/targets")
@documented("Set one target", body=schemas.TargetPut, response=schemas.Target)
def put_target(project_id):
    actor = current_actor()
    require(actor, "target.manage", project_id=project_id)
    body = json_body()
    with write_transaction():
        target = target_store.set_target(project_id, body.get("grantee"), body.get("indicator"),
                                         body.get("period", ""), body.get("value"),
                                         set(definitions().indicators), actor)
        result = {"grantee": body.get("grantee"), "indicator": target.indicator, "period": target.period,
                  "value": target.value}
    return result


def _candidate_json(candidate) -> dict:
    a, b = dedup.sides(candidate)
    return {"id": candidate.id, "kind": candidate.kind, "score": candidate.score, "reason": candidate.reason,
            "status": candidate.status, "a": a, "b": b, "createdAt": iso(candidate.created_at),
            "decidedAt": iso(candidate.decided_at)}


@bp.get(BASE + "/duplicates")
@documented("Duplicate candidates", response=schemas.Candidate, many=True, query={"status": {"type": "string", "enum": ["open", "merged", "not_duplicate", "gone", "all"]}})
def list_duplicates(project_id):
    actor = current_actor()
    require(actor, "duplicate.resolve", project_id=project_id)
    status = request.args.get("status", "open")
    return [_candidate_json(c) for c in dedup.candidates(status if status != "all" else None, grantee_scope(actor))]


@bp.post(BASE + "/duplicates/<int:candidate_id>")
@documented("Merge, or mark not a duplicate", body=schemas.DuplicateDecision, response=schemas.Candidate, errors=("400", "401", "403", "404", "409"))
def decide_duplicate(project_id, candidate_id):
    actor = current_actor()
    require(actor, "duplicate.resolve", project_id=project_id)
    decision = json_body().get("decision")
    if not isinstance(decision, str):
        raise problems.missing_parameter(field="decision")
    candidate = dedup.decide(candidate_id, decision, actor)
    return _candidate_json(candidate)
