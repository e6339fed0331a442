"""The one path into the database for submissions, whichever door they come through.

OpenRosa (Collect), the REST API and `demo load` all call `receive`. It parses the XML safely,
finds the form and version, checks the actor, stores attachment bytes durably, then in one
write transaction creates the submission, recognises a resend (same instanceID, same bytes:
success, files merged), refuses a conflicting one, or applies an edit (`meta/deprecatedID`).
The caller may acknowledge with 201 only after `receive` returns: by then every byte is
committed and fsynced.

Owns the `submissions`, `submission_defs` and `submission_attachments` tables for writing.
May use models, storage, problems, audit, xlsform queries and formats; never HTTP.
"""
import hashlib
import mimetypes
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import BinaryIO

from sqlalchemy.exc import IntegrityError

from .. import problems, records, signals, storage
from ..audit import record
from ..auth import Actor, can, grantee_scope, is_reviewer, require
from ..extensions import db, write_transaction
from ..formats.submission import attachment_names, field_text, read_envelope
from ..models import (AppUser, Comment, Grantee, Submission, SubmissionAttachment, SubmissionDef,
                      utcnow)
from ..models.submissions import HOLD_EDITED_AFTER_REJECTION, HOLD_GRANTEE
from ..xlsform import queries as form_queries
from ..xlsform.publish import safe_media_name
from . import queries

GRANTEE_FIELD = "grantee"


@dataclass
class Upload:
    """What one request carried: the XML bytes and any attachment parts, by part name."""
    xml: bytes
    files: dict[str, BinaryIO | bytes] = field(default_factory=dict)
    device_id: str | None = None
    user_agent: str | None = None


@dataclass
class Received:
    submission: Submission
    submission_def: SubmissionDef
    outcome: str  # "created" | "resent" | "edited"
    attachments_added: list[str]
    queued: bool = True  # its records are to be rebuilt (a resend only when its files reopened a review)


def receive(project_id: int, actor: Actor, upload: Upload, max_bytes: int,
            expected_form_id: str | None = None, announce: bool = True,
            expected_submission: str | None = None) -> Received:
    """Store one upload. `announce=False` leaves the record rebuild queued for the caller to
    process in bulk (the demo loader); devices always announce. `expected_submission`: the
    instanceID of the logical submission an edit must replace (REST PUT), checked before
    anything is stored."""
    with signals.receiving():  # background rebuilds give way while an upload is stored
        received = _receive(project_id, actor, upload, max_bytes, expected_form_id, expected_submission)
    if announce and received.queued:
        records.announce(received.submission.id)
    return received


@dataclass
class _Plan:
    """What an upload will do, decided from the rows it reads and the actor's scope alone."""
    outcome: str                      # "create" | "resend" | "edit"
    existing: SubmissionDef | None    # the version with this instanceID, if any
    replaced: SubmissionDef | None    # the version an edit replaces
    grantee: Grantee | None           # who a new submission (or an edit) counts for
    issues: list[str]
    hold: str | None                  # kept, but counted for nobody until a coordinator decides


def _receive(project_id: int, actor: Actor, upload: Upload, max_bytes: int,
             expected_form_id: str | None, expected_submission: str | None) -> Received:
    envelope = read_envelope(upload.xml, max_bytes=max_bytes)
    if expected_form_id is not None and envelope.form_id != expected_form_id:
        raise problems.unexpected_value(field="form ID", value=envelope.form_id,
                                        reason=f"this URL takes submissions to {expected_form_id}")
    form = form_queries.form_by_xml_id(project_id, envelope.form_id)
    if form is None or form.current_version is None:
        raise problems.not_found()
    form_version = form_queries.version_of(form, envelope.version)
    if form_version is None:
        raise problems.no_such_version(version=envelope.version)
    if form.state == "closed":
        raise problems.form_closed()
    require(actor, "submission.create", project_id=project_id)

    instance_id = envelope.instance_id
    assigned = instance_id is None
    if assigned:
        instance_id = f"uuid:{uuid.uuid4()}"
    grantee_code = field_text(envelope.root, GRANTEE_FIELD)
    xml_sha256 = hashlib.sha256(upload.xml).hexdigest()
    # With files, decided before a byte is stored, so that a refused upload leaves no file on
    # disk; in any case decided inside the write transaction, on rows that cannot change under it.
    if upload.files:
        _plan(form, actor, envelope, instance_id, xml_sha256, grantee_code, expected_submission, True)

    names = attachment_names(envelope.root, form_version.schema)
    for name, _audit in names:
        safe_media_name(name)
    # Bytes first, outside the database lock: fsynced files, then one short transaction.
    files = {}
    for name, _audit in names:
        part = upload.files.get(name)
        if part is not None:
            try:
                files[name] = (storage.write_file(part, max_bytes=max_bytes), _content_type(part, name))
            except OverflowError:
                raise problems.too_large(limit=max_bytes) from None

    for attempt in range(3):
        try:
            with write_transaction():
                plan = _plan(form, actor, envelope, instance_id, xml_sha256, grantee_code, expected_submission,
                             bool(files))
                blobs = {name: storage.register(stored, content_type).id
                         for name, (stored, content_type) in files.items()}
                _seen(actor)
                if plan.outcome == "create":
                    received = _create(form, form_version, actor, upload, envelope, instance_id, assigned,
                                       xml_sha256, names, blobs, plan)
                elif plan.outcome == "resend":
                    received = _resend(plan.existing, blobs, actor)
                else:
                    received = _edit(plan, form_version, actor, upload, envelope, instance_id,
                                     xml_sha256, names, blobs)
                if received.outcome != "resent":
                    records.queue(received.submission.id)  # (a resend's own, if any: files_changed)
            break
        except IntegrityError:
            # Another request stored the same instanceID between our read and our insert
            # (PostgreSQL; SQLite's write lock prevents it). Go round again: it is now a resend.
            if attempt == 2:
                raise
    return received


def _plan(form, actor: Actor, envelope, instance_id: str, xml_sha256: str, grantee_code: str | None,
          expected_submission: str | None, with_files: bool) -> _Plan:
    """Recognise what the upload is (new, resend, edit) and whether this actor may do it.
    Reads only; raises the problem that refuses it.

    A resend of the same bytes changes nothing and is answered as a success whoever sends it
    (Collect keeps a record it was refused and sends it for ever); one that brings files to
    merge into the submission needs the right to edit it."""
    existing = queries.def_by_instance_id(form.id, instance_id)
    if envelope.deprecated_id is None:
        if expected_submission is not None:
            raise problems.missing_deprecated_id()
        if existing is None:
            grantee, issues, hold = _attribute_grantee(form.project_id, actor, grantee_code)
            return _Plan("create", None, None, grantee, issues, hold)
        if with_files:
            _may_touch(actor, existing.submission, existing.instance_id)
        _check_resend(existing, xml_sha256, instance_id)
        return _Plan("resend", existing, None, None, [], None)
    replaced = queries.def_by_instance_id(form.id, envelope.deprecated_id)
    if replaced is None:
        raise problems.edit_target_missing(instance_id=envelope.deprecated_id)
    submission = replaced.submission
    # Scope first, so that nothing below tells an outsider anything about another's submission.
    _may_touch(actor, submission, envelope.deprecated_id)
    if expected_submission is not None and submission.instance_id != expected_submission:
        raise problems.unexpected_value(field="deprecatedID", value=envelope.deprecated_id,
                                        reason=f"it is not a version of {expected_submission}")
    if existing is not None:
        if existing.submission.current_def_id == existing.id and existing.deprecated_id == envelope.deprecated_id:
            _check_resend(existing, xml_sha256, instance_id)
            return _Plan("resend", existing, None, None, [], None)  # split upload of an edit
        raise problems.already_exists(fields="instanceID", values=instance_id)
    if submission.deleted_at is not None:
        raise problems.submission_deleted()
    if submission.current_def_id != replaced.id:
        raise problems.edit_out_of_date(instance_id=envelope.deprecated_id)
    grantee, issues, hold = _attribute_edit(form.project_id, actor, submission, grantee_code)
    return _Plan("edit", None, replaced, grantee, issues, hold)


def _check_resend(existing: SubmissionDef, xml_sha256: str, instance_id: str) -> None:
    """A resend is the same bytes of the current version of a submission that is not deleted."""
    submission = existing.submission
    if submission.deleted_at is not None:
        raise problems.submission_deleted()
    if submission.current_def_id != existing.id:
        raise problems.edit_out_of_date(instance_id=instance_id)
    if existing.xml_sha256 != xml_sha256:
        raise problems.different_xml()


def _may_touch(actor: Actor, submission: Submission, instance_id: str) -> None:
    """An edit, or a resend that may merge files into a submission, only within scope."""
    if not can(actor, "submission.edit", submission):
        raise problems.edit_out_of_scope(instance_id=instance_id)


def _new_def(submission, form, form_version, actor, upload, envelope, instance_id, xml_sha256):
    submission_def = SubmissionDef(
        submission_id=submission.id, form_id=form.id, form_version_id=form_version.id,
        instance_id=instance_id, deprecated_id=envelope.deprecated_id,
        instance_name=envelope.instance_name, xml=upload.xml, xml_sha256=xml_sha256,
        app_user_id=actor.app_user_id, user_id=actor.user_id,
        device_id=_cut(upload.device_id), user_agent=_cut(upload.user_agent))
    db.session.add(submission_def)
    db.session.flush()
    return submission_def


def _create(form, form_version, actor, upload, envelope, instance_id, assigned, xml_sha256,
            names, blobs, plan: _Plan) -> Received:
    issues = list(plan.issues)
    if assigned:
        issues.append("The device sent no meta/instanceID; FieldSync assigned "
                      f"{instance_id}. A resend of this record cannot be recognised.")
    submission = Submission(
        form_id=form.id, instance_id=instance_id, grantee_id=plan.grantee.id if plan.grantee else None,
        app_user_id=actor.app_user_id, user_id=actor.user_id, device_id=_cut(upload.device_id),
        user_agent=_cut(upload.user_agent), instance_id_assigned=assigned, hold=plan.hold,
        review_state="hasIssues" if issues else "received")
    db.session.add(submission)
    db.session.flush()
    submission_def = _new_def(submission, form, form_version, actor, upload, envelope,
                              instance_id, xml_sha256)
    submission.current_def_id = submission_def.id
    added = []
    for name, is_audit in names:
        blob_id = blobs.get(name)
        db.session.add(SubmissionAttachment(submission_def_id=submission_def.id, name=name,
                                            blob_id=blob_id, is_client_audit=is_audit,
                                            updated_at=utcnow() if blob_id else None))
        if blob_id:
            added.append(name)
    for issue in issues:
        db.session.add(Comment(submission_id=submission.id, system=True, body=issue))
    record("submission.create", actor, subject=submission,
           details={"instanceId": instance_id, "formVersion": form_version.version,
                    "attachments": added, "issues": issues, "hold": plan.hold})
    return Received(submission, submission_def, "created", added)


def _resend(existing: SubmissionDef, blobs: dict, actor) -> Received:
    """The same XML again (checked by `_plan`), perhaps with files that did not arrive before."""
    submission = existing.submission
    added = []
    for attachment in existing.attachments:
        blob_id = blobs.get(attachment.name)
        if blob_id is not None and attachment.blob_id != blob_id:
            attachment.blob_id = blob_id
            attachment.updated_at = utcnow()
            added.append(attachment.name)
    queued = False
    if added:
        submission.updated_at = utcnow()
        record("submission.attachment.update", actor, subject=submission,
               details={"instanceId": existing.instance_id, "attachments": added})
        queued = files_changed(submission, actor, added)
    return Received(submission, existing, "resent", added, queued)


def files_changed(submission: Submission, actor: Actor, names: list[str]) -> bool:
    """A file of a submission arrived or was replaced. After a coordinator's decision that is a
    change of the evidence it was decided on: from someone who is not a reviewer it sends an
    approved submission back for review ("edited"), and keeps a rejected one rejected, held
    until a coordinator looks again."""
    if is_reviewer(actor, submission) or submission.review_state not in ("approved", "rejected"):
        return False
    listed = ", ".join(names)
    if submission.review_state == "rejected":
        _hold_rejected(submission, f"Files changed after rejection by {actor.display_name} ({listed}).")
    else:
        submission.review_state = "edited"
        db.session.add(Comment(submission_id=submission.id, system=True, body=(
            f"Files changed after approval by {actor.display_name} ({listed}): to be reviewed again.")))
    records.queue(submission.id)  # "approved only" indicators no longer count it
    return True


def _hold_rejected(submission: Submission, what: str) -> None:
    """A rejected submission changed by someone who is not a reviewer: it stays rejected, held,
    and a system comment says so, until a coordinator reviews it."""
    submission.hold = HOLD_EDITED_AFTER_REJECTION
    db.session.add(Comment(submission_id=submission.id, system=True, body=(
        f"{what} It stays rejected and is not counted until a coordinator reviews it.")))


def _edit(plan: _Plan, form_version, actor, upload, envelope, instance_id, xml_sha256,
          names, blobs) -> Received:
    replaced = plan.replaced
    submission = replaced.submission
    submission_def = _new_def(submission, submission.form, form_version, actor, upload, envelope,
                              instance_id, xml_sha256)
    previous = {a.name: a.blob_id for a in replaced.attachments}
    added = []
    for name, is_audit in names:
        # Files not re-sent are carried forward by name from the version being replaced.
        blob_id = blobs.get(name) or previous.get(name)
        db.session.add(SubmissionAttachment(submission_def_id=submission_def.id, name=name,
                                            blob_id=blob_id, is_client_audit=is_audit,
                                            updated_at=utcnow() if blob_id else None))
        if name in blobs:
            added.append(name)
    submission.current_def_id = submission_def.id
    before = (submission.review_state, submission.hold)
    _review_after_edit(submission, actor, plan)
    submission.updated_at = utcnow()
    for issue in plan.issues:
        db.session.add(Comment(submission_id=submission.id, system=True, body=issue))
    record("submission.update.version", actor, subject=submission,
           details={"instanceId": instance_id, "deprecatedId": replaced.instance_id,
                    "formVersion": form_version.version, "attachments": added,
                    "reviewStateBefore": before[0], "reviewState": submission.review_state,
                    "hold": submission.hold})
    return Received(submission, submission_def, "edited", added)


def _review_after_edit(submission: Submission, actor: Actor, plan: _Plan) -> None:
    """An edit makes a submission "edited" (as Central), except that a grantee's device or staff
    cannot undo a coordinator's decision by editing: a rejected submission stays rejected (and
    uncounted) until a coordinator reviews the new version; a held one stays held."""
    if plan.grantee is not None:
        submission.grantee_id = plan.grantee.id
    if is_reviewer(actor, submission):
        submission.review_state, submission.hold = "edited", None
        return
    if submission.review_state == "rejected":
        _hold_rejected(submission, f"Edited after rejection by {actor.display_name}.")
        return
    if plan.hold is not None:
        submission.hold = plan.hold
    submission.review_state = "hasIssues" if submission.hold is not None else "edited"


def _attribute_grantee(project_id: int, actor: Actor, code: str | None,
                       named: Grantee | None = None) -> tuple[Grantee | None, list[str], str | None]:
    """Which grantee a new submission counts for, any issue a coordinator should see, and
    whether it waits for a coordinator (a hold).

    A device's record is never refused over a wrong choice in a list: a trainer's work is not
    lost. But a grantee's device cannot count for another grantee: such a record is kept under
    its own grantee, on hold, counted for nobody until a coordinator decides. Grantee staff,
    who type at a desk with an answer on the screen, are refused outright.
    """
    issues = []
    if named is None and code:
        named = queries.grantee_by_code(project_id, code)
    if code and named is None:
        issues.append(f"The form names grantee {code!r}, which is not a grantee of this project.")
    bound = grantee_scope(actor)
    if bound is None:
        return named, issues, None
    if named is not None and not can(actor, "submission.create", named):
        if actor.kind != "app_user":
            raise problems.other_grantee(code=named.code)
        own = db.session.get(Grantee, bound)
        issues.append(f"Sent from a device of grantee {own.code!r} but the form says grantee "
                      f"{named.code!r}. Counted for nobody until a coordinator decides which is right.")
        return own, issues, HOLD_GRANTEE
    return named or db.session.get(Grantee, bound), issues, None


def _attribute_edit(project_id: int, actor: Actor, submission: Submission,
                    code: str | None) -> tuple[Grantee | None, list[str], str | None]:
    """The grantee an edit's XML names, applied as for a new submission; None keeps the
    submission's own (an unknown or absent code never moves a submission)."""
    named = queries.grantee_by_code(project_id, code) if code else None
    if named is None or named.id == submission.grantee_id:
        return None, [], None
    grantee, issues, hold = _attribute_grantee(project_id, actor, code, named)
    if hold is not None:
        return None, issues, hold  # stays with its grantee, on hold
    return grantee, issues, None


SEEN_EVERY = timedelta(minutes=1)


def _seen(actor: Actor) -> None:
    """When a device last synced, to the minute. Written at most once a minute: every upload of
    one device credential writing the same row made concurrent uploads queue on its row lock
    (PostgreSQL), for a figure the Devices page shows as "3 minutes ago"."""
    if actor.kind == "app_user":
        app_user = db.session.get(AppUser, actor.id)
        now = utcnow()
        if app_user.last_seen_at is None or now - app_user.last_seen_at >= SEEN_EVERY:
            app_user.last_seen_at = now


def _content_type(part, name: str) -> str:
    sent = getattr(part, "mimetype", None)
    if sent and sent != "application/octet-stream":
        return sent
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _cut(value: str | None) -> str | None:
    return value[:255] if value else None


def attach(actor: Actor, submission: Submission, name: str, source, max_bytes: int) -> bool:
    """Fill one attachment slot of a submission's current version (REST upload); True if new."""
    slot = next((a for a in submission.current_def.attachments if a.name == name), None)
    if slot is None:
        raise problems.not_found()
    try:
        stored = storage.write_file(source, max_bytes=max_bytes)
    except OverflowError:
        raise problems.too_large(limit=max_bytes) from None
    requeued = False
    with write_transaction():
        blob = storage.register(stored, mimetypes.guess_type(name)[0] or "application/octet-stream")
        slot = db.session.get(SubmissionAttachment, slot.id)
        changed = slot.blob_id != blob.id
        if changed:
            slot.blob_id, slot.updated_at = blob.id, utcnow()
            record("submission.attachment.update", actor, subject=slot.submission_def.submission,
                   details={"instanceId": slot.submission_def.instance_id, "attachments": [name]})
            requeued = files_changed(slot.submission_def.submission, actor, [name])
    if requeued:
        records.announce(submission.id)
    return changed
