"""Every database read of forms, versions and media, in one place."""
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Form, FormMedia, FormVersion


def form_by_xml_id(project_id: int, xml_form_id: str) -> Form | None:
    return db.session.scalar(select(Form).where(Form.project_id == project_id,
                                                Form.xml_form_id == xml_form_id))


def published_forms(project_id: int, states=("open", "closing", "closed")) -> list[Form]:
    forms = db.session.scalars(
        select(Form).where(Form.project_id == project_id, Form.current_version_id.is_not(None),
                           Form.state.in_(states))
        .options(selectinload(Form.current_version).selectinload(FormVersion.media))).all()
    return sorted(forms, key=lambda f: (f.title, f.xml_form_id))


def version_of(form: Form, version: str) -> FormVersion | None:
    return db.session.scalar(select(FormVersion).where(FormVersion.form_id == form.id,
                                                       FormVersion.version == version))


def media_of(form_version: FormVersion, name: str) -> FormMedia | None:
    return db.session.scalar(select(FormMedia).where(FormMedia.form_version_id == form_version.id,
                                                     FormMedia.name == name))
