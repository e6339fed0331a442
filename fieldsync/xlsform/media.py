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
