"""The programme itself: project 1, its regions, rayons and grantees, and first-time setup.

`setup` is idempotent: it brings the database to the shipped reference data and publishes
every workbook in `forms/`, and a second run changes nothing. Reference rows are upserted by
code, never deleted (submissions may point at them).
"""
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from .. import reference
from ..extensions import db, write_transaction
from ..models import Grantee, Project, Rayon, Region
from ..records.media import GENERATED
from ..xlsform import publish_path

PROJECT_ID = 1


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
