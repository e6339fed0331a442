"""Publishing a workbook as a new form version, all or nothing.

A version string is a promise: once `seminar_attendance` version `2026120101` is published,
those exact bytes (and media) are what every device with that version holds, so publishing the
same version again is a no-op when identical and refused when different. A new version becomes
current; older versions stay, because submissions made with them keep arriving for weeks.
"""
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import problems, storage
from ..audit import record
from ..extensions import db, write_transaction
from ..models import Form, FormMedia, FormVersion, utcnow
from . import queries
from .convert import xlsform_to_xform
from .xform import read_xform

FORM_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,254}$")
MEDIA_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")
CONTENT_TYPES = {".csv": "text/csv; charset=utf-8", ".geojson": "application/geo+json",
                 ".xml": "text/xml; charset=utf-8", ".png": "image/png", ".jpg": "image/jpeg",
                 ".jpeg": "image/jpeg", ".mp3": "audio/mpeg", ".mp4": "video/mp4"}


@dataclass
class PublishResult:
    form: Form
    version: FormVersion
    status: str  # "published" | "unchanged"
    warnings: list[str] = field(default_factory=list)


def safe_media_name(name: str) -> str:
    """A media file name as the manifest will carry it: one path component, nothing hidden."""
    if not MEDIA_NAME.match(name) or name in (".", "..") or name.startswith("."):
        raise problems.unsafe_file_name(name=name, reason="use a plain file name without folders")
    return name


def content_type_for(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def find_media(names: list[str], media_dirs: list[Path]) -> dict[str, bytes]:
    found = {}
    for name in names:
        safe_media_name(name)
        for folder in media_dirs:
            candidate = folder / name
            if candidate.is_file():
                found[name] = candidate.read_bytes()
                break
    return found


def publish_workbook(project_id: int, workbook: bytes, source_name: str,
                     media: dict[str, bytes] | None = None, media_dirs: list[Path] = (),
                     validate: bool | None = None, actor=None,
                     generated: frozenset = frozenset()) -> PublishResult:
    """Publish a workbook. `generated` names media the server makes from data (no file)."""
    file_type = ".xls" if source_name.lower().endswith(".xls") else ".xlsx"
    converted = xlsform_to_xform(workbook, file_type=file_type, validate=validate)
    try:
        info = read_xform(converted.xml)
    except ValueError as exc:
        raise problems.invalid_xlsform(reason=str(exc)) from None
    if not FORM_ID.match(info.form_id):
        raise problems.invalid_xlsform(
            reason=f"form_id {info.form_id!r} must start with a letter and use only letters, "
                   "digits, '_', '-' and '.' (set form_id in the settings sheet)")
    expected = [name for name, _kind in info.media]
    files = dict(find_media(expected, list(media_dirs)))
    files.update({safe_media_name(n): b for n, b in (media or {}).items() if n in expected})
    warnings = list(converted.warnings)
    warnings += [f"No file {name!r} was found for this form: devices will get the form without it "
                 "until it is uploaded." for name in expected if name not in files and name not in generated]
    md5 = hashlib.md5(converted.xml).hexdigest()
    media_digest = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}

    with write_transaction():
        form = queries.form_by_xml_id(project_id, info.form_id)
        if form is not None:
            existing = queries.version_of(form, info.version)
            if existing is not None:
                same_media = {m.name: (m.blob.sha256 if m.blob else None) for m in existing.media} == \
                    {name: media_digest.get(name) for name in expected}
                if existing.md5 == md5 and same_media:
                    return PublishResult(form, existing, "unchanged", warnings)
                raise problems.version_conflict(form_id=info.form_id, version=info.version)
        else:
            form = Form(project_id=project_id, xml_form_id=info.form_id, state="open")
            db.session.add(form)
            db.session.flush()
        source_blob = storage.put(workbook, "application/vnd.openxmlformats-officedocument"
                                            ".spreadsheetml.sheet")
        version = FormVersion(form_id=form.id, version=info.version, title=info.title,
                              xml=converted.xml, md5=md5,
                              sha256=hashlib.sha256(converted.xml).hexdigest(),
                              schema_json=json.dumps(info.schema(), ensure_ascii=False),
                              warnings_json=json.dumps(warnings, ensure_ascii=False),
                              source_name=Path(source_name).name, source_blob_id=source_blob.id)
        db.session.add(version)
        db.session.flush()
        for name, kind in info.media:
            blob = storage.put(files[name], content_type_for(name)) if name in files else None
            db.session.add(FormMedia(form_version_id=version.id, name=name, kind=kind,
                                     blob_id=blob.id if blob else None))
        form.current_version_id = version.id
        form.updated_at = utcnow()
        record("form.version.publish", actor, subject=form,
               details={"xmlFormId": info.form_id, "version": info.version, "md5": md5,
                        "validated": converted.validated})
    db.session.refresh(form)
    return PublishResult(form, version, "published", warnings)


def publish_path(project_id: int, path: Path, validate: bool | None = None, actor=None,
                 generated: frozenset = frozenset()) -> PublishResult:
    """Publish a workbook file, taking its media from `<stem>-media/` or `media/` beside it."""
    return publish_workbook(project_id, path.read_bytes(), path.name,
                            media_dirs=[path.parent / f"{path.stem}-media", path.parent / "media"],
                            validate=validate, actor=actor, generated=generated)


def set_state(form: Form, state: str, actor=None) -> None:
    if state not in ("open", "closing", "closed"):
        raise problems.unexpected_value(field="state", value=state, reason="use open, closing or closed")
    with write_transaction():
        form.state = state
        form.updated_at = utcnow()
        record("form.update", actor, subject=form, details={"state": state})
