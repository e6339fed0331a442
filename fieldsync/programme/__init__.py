"""The programme itself: project 1, its regions, rayons and grantees, and first-time setup.

`setup` is idempotent: it brings the database to the shipped reference data and publishes
every workbook in `forms/`, and a second run changes nothing. Reference rows are upserted by
code, never deleted (submissions may point at them).
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from .. import problems, reference
from ..audit import record
from ..extensions import db, write_transaction
from ..models import Grantee, Project, Rayon, Region
from ..records.media import GENERATED
from ..xlsform import publish_path

PROJECT_ID = 1
_CODE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass
class SetupReport:
    changed: dict = field(default_factory=dict)
    forms: list = field(default_factory=list)  # (xml_form_id, version, status, warnings)


def _upsert(model, key: dict, values: dict) -> bool:
    row = db.session.get(model, tuple(key.values()) if len(key) > 1 else next(iter(key.values())))
    if row is None:
        db.session.add(model(**key, **values))
        return True
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def load_reference_data(project_name: str, rayons_csv: Path) -> dict:
    changed = {"project": 0, "regions": 0, "rayons": 0, "grantees": 0}
    with write_transaction():
        changed["project"] += _upsert(Project, {"id": PROJECT_ID}, {"name": project_name})
        db.session.flush()
        for row in reference.regions():
            changed["regions"] += _upsert(Region, {"code": row["code"]}, {
                "kind": row["kind"], "name_en": row["name_en"], "name_ru": row["name_ru"],
                "name_ky": row["name_ky"]})
        db.session.flush()
        for row in reference.read_csv(rayons_csv):
            changed["rayons"] += _upsert(Rayon, {"code": row["name"]}, {
                "region_code": row["region"], "kind": row["kind"], "name_en": row["label_en"],
                "name_ru": row["label_ru"], "name_ky": row["label_ky"]})
        existing = {g.code: g for g in db.session.scalars(
            select(Grantee).where(Grantee.project_id == PROJECT_ID))}
        for row in reference.grantees():
            grantee = existing.get(row["code"])
            if grantee is None:
                db.session.add(Grantee(project_id=PROJECT_ID, code=row["code"], name=row["name"],
                                       region_code=row["region"]))
                changed["grantees"] += 1
            elif (grantee.name, grantee.region_code) != (row["name"], row["region"]):
                grantee.name, grantee.region_code = row["name"], row["region"]
                changed["grantees"] += 1
    return changed


def setup(forms_path: Path, project_name: str, validate: bool | None = None) -> SetupReport:
    report = SetupReport()
    report.changed = load_reference_data(project_name, forms_path / "media" / "rayons.csv")
    for workbook in sorted(forms_path.glob("*.xlsx")):
        if workbook.name.startswith(("~$", ".")):
            continue  # Excel's lock files
        result = publish_path(PROJECT_ID, workbook, validate=validate, generated=frozenset(GENERATED))
        report.forms.append((result.form.xml_form_id, result.version.version, result.status,
                             result.warnings))
    return report


def grantees(project_id: int, only_id: int | None = None) -> list[Grantee]:
    query = select(Grantee).where(Grantee.project_id == project_id).order_by(Grantee.code)
    if only_id is not None:
        query = query.where(Grantee.id == only_id)
    return list(db.session.scalars(query))


def project(project_id: int) -> Project | None:
    return db.session.get(Project, project_id)


# Grantees for people: one by code, the regions to choose from, adding and editing (audited),
# and how busy each grantee is. Codes are permanent: submissions and indicators refer to them.
GRANTEE_CODE_MAX = 64
GRANTEE_NAME_MAX = 255


def grantee_by_code(project_id: int, code: str) -> Grantee | None:
    return db.session.scalar(select(Grantee).where(Grantee.project_id == project_id, Grantee.code == code))


def regions() -> list[Region]:
    return list(db.session.scalars(select(Region).order_by(Region.code)))


def _check_grantee(name, region_code) -> tuple[str, str]:
    name = (name or "").strip()
    if not name:
        raise problems.missing_parameter(field="name")
    if len(name) > GRANTEE_NAME_MAX:
        raise problems.unexpected_value(field="name", value=name[:40] + "…",
                                        reason=f"a name has at most {GRANTEE_NAME_MAX} characters")
    if not region_code or db.session.get(Region, region_code) is None:
        raise problems.unexpected_value(field="region", value=region_code, reason="not a region code")
    return name, region_code


def create_grantee(project_id: int, code: str, name: str, region_code: str, actor=None) -> Grantee:
    """A new grantee; its code is lowercase letters, digits and `_`, unique in the project.
    Call inside a write transaction."""
    code = (code or "").strip()
    if not code:
        raise problems.missing_parameter(field="code")
    if len(code) > GRANTEE_CODE_MAX or not _CODE.fullmatch(code):
        raise problems.unexpected_value(field="code", value=code,
                                        reason="a code is lowercase letters a-z, digits and _, starting with a letter")
    name, region_code = _check_grantee(name, region_code)
    if grantee_by_code(project_id, code) is not None:
        raise problems.already_exists(fields="code", values=code)
    grantee = Grantee(project_id=project_id, code=code, name=name, region_code=region_code)
    db.session.add(grantee)
    db.session.flush()
    record("grantee.create", actor, subject=grantee, details={"code": code, "name": name, "region": region_code})
    return grantee


def update_grantee(project_id: int, code: str, name: str, region_code: str, actor=None) -> Grantee:
    """Rename a grantee or move it to another region (the code stays). Call inside a write transaction."""
    grantee = grantee_by_code(project_id, code)
    if grantee is None:
        raise problems.not_found()
    name, region_code = _check_grantee(name, region_code)
    before = {"name": grantee.name, "region": grantee.region_code}
    grantee.name, grantee.region_code = name, region_code
    db.session.flush()
    record("grantee.update", actor, subject=grantee,
           details={"code": code, "before": before, "after": {"name": name, "region": region_code}})
    return grantee


@dataclass
class Activity:
    submissions: int = 0
    under_review: int = 0  # received or hasIssues, not deleted
    devices: int = 0  # app users not revoked


def activity(project_id: int, grantee_id: int | None = None) -> dict[int | None, Activity]:
    """{grantee id: Activity} for the project's grantees (or one); key None holds submissions
    that name no grantee. Three grouped counts, whatever the number of submissions."""
    from sqlalchemy import func

    from ..models import AppUser, Form, Submission

    out: dict[int | None, Activity] = {}
    live = (select(Submission.grantee_id, Submission.review_state, func.count())
            .join(Form, Form.id == Submission.form_id)
            .where(Form.project_id == project_id, Submission.deleted_at.is_(None))
            .group_by(Submission.grantee_id, Submission.review_state))
    devices = (select(AppUser.grantee_id, func.count())
               .where(AppUser.project_id == project_id, AppUser.revoked_at.is_(None), AppUser.grantee_id.is_not(None))
               .group_by(AppUser.grantee_id))
    if grantee_id is not None:
        live = live.where(Submission.grantee_id == grantee_id)
        devices = devices.where(AppUser.grantee_id == grantee_id)
    for gid, state, count in db.session.execute(live):
        row = out.setdefault(gid, Activity())
        row.submissions += count
        if state in UNDER_REVIEW:
            row.under_review += count
    for gid, count in db.session.execute(devices):
        out.setdefault(gid, Activity()).devices += count
    return out


UNDER_REVIEW = ("received", "hasIssues")
