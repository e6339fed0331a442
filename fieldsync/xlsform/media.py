"""Uploading the files a published form version expects (`jr://file/…`), after publishing.

A form can be published before its media are at hand (devices then get it without them); an
administrator uploads each expected file later, by its exact name. Only names the version
expects are accepted, each checked by `safe_media_name`; the manifest's hash changes with the
file, so Collect fetches it on its next update.
"""
from .. import problems, storage
from ..audit import record
from ..extensions import db, write_transaction
from ..models import Form, FormMedia, FormVersion, utcnow
from . import queries
from .publish import content_type_for, safe_media_name

MAX_MEDIA_BYTES = 20 * 1024 * 1024


def attach_media(form: Form, name: str, data: bytes, actor=None) -> FormMedia:
    """Store `data` as the file `name` of the form's current version."""
    safe_media_name(name)
    version = form.current_version
    slot = queries.media_of(version, name) if version is not None else None
    if slot is None:
        raise problems.unexpected_value(field="name", value=name, reason="this form does not expect a file of that name")
    if len(data) > MAX_MEDIA_BYTES:
        raise problems.too_large(limit=MAX_MEDIA_BYTES)
    with write_transaction():
        blob = storage.put(data, content_type_for(name))
        slot = db.session.get(FormMedia, slot.id)
        replaced = slot.blob_id is not None
        slot.blob_id = blob.id
        owner = db.session.get(Form, form.id)
        owner.updated_at = utcnow()
        record("form.attachment.update", actor, subject=owner,
               details={"name": name, "sha256": blob.sha256, "version": version.version, "replaced": replaced})
    return slot


def carry_over_media(form: Form, previous: FormVersion | None, actor=None) -> list[str]:
    """Give the form's new current version the files of `previous` it expects under the same
    names and has not got yet (a new version of a form keeps its lists); the names carried."""
    version = form.current_version
    if previous is None or version is None or previous.id == version.id:
        return []
    old = {m.name: m.blob_id for m in previous.media if m.blob_id is not None}
    carried = []
    with write_transaction():
        for slot in db.session.query(FormMedia).filter(FormMedia.form_version_id == version.id):
            if slot.blob_id is None and slot.name in old:
                slot.blob_id = old[slot.name]
                carried.append(slot.name)
        if carried:
            record("form.attachment.update", actor, subject=db.session.get(Form, form.id),
                   details={"carried": carried, "from": previous.version, "version": version.version})
    return carried


def _settings_form_id(workbook: bytes, source_name: str) -> str | None:
    """The form_id a workbook's settings sheet names (pyxform falls back to the file name)."""
    from pathlib import Path
    if source_name.lower().endswith(".xlsx"):
        import io

        from openpyxl import load_workbook
        try:
            book = load_workbook(io.BytesIO(workbook), read_only=True, data_only=True)
        except Exception:  # not a workbook: publishing will say so in its own words
            return None
        try:
            sheet = next((book[n] for n in book.sheetnames if n.strip().lower() == "settings"), None)
            if sheet is not None:
                rows = list(sheet.iter_rows(min_row=1, max_row=2, values_only=True))
                if len(rows) == 2:
                    header = [str(c).strip().lower() if c is not None else "" for c in rows[0]]
                    if "form_id" in header and rows[1][header.index("form_id")]:
                        return str(rows[1][header.index("form_id")]).strip()
        finally:
            book.close()
    return Path(source_name).stem


def current_media_for(project_id: int, workbook: bytes, source_name: str) -> dict[str, bytes]:
    """The files the published form this workbook updates already has, so that publishing it
    again (or a new version of it) keeps them instead of leaving them missing."""
    form_id = _settings_form_id(workbook, source_name)
    form = queries.form_by_xml_id(project_id, form_id) if form_id else None
    if form is None or form.current_version is None:
        return {}
    return {m.name: storage.read_bytes(m.blob) for m in form.current_version.media if m.blob is not None}
