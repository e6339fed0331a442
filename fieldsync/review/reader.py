"""The one reader of submissions. Every feed reads through it: the REST list, OData, CSV and
csv.zip, the web app's table and pages, background exports, the forms page's counts.

`visible(actor, form, action)` is the only place where grantee scope becomes a WHERE clause:
`auth.policy` decides whether the actor may `action` at all and which grantee it is confined
to, and here that grantee narrows the query, before any filter a person or a script adds. A
submission out of scope is then simply not there: it answers as an unknown one would.

Also here, shared by the feeds: filters, keyset batches (by id, never OFFSET, so a millionth
row costs what the first does), the submitters' names, edit counts and the `__system` block as
ODK Central writes it. Uses models and auth; never HTTP.
"""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from ..auth import Actor, can, grantee_scope, require
from ..extensions import db
from ..models import AppUser, Form, FormVersion, Submission, SubmissionAttachment, SubmissionDef, WebUser, iso

BATCH = 500


@dataclass(frozen=True)
class Filters:
    """What a person or a script narrows the submissions to; every part optional."""
    grantee_ids: tuple[int, ...] | None = None  # a grantee, or the grantees of a region
    review_state: str | None = None
    since: datetime | None = None    # submitted at or after (UTC)
    until: datetime | None = None    # submitted before (UTC)
    app_user_id: int | None = None
    user_id: int | None = None
    instance_ids: tuple[str, ...] | None = None  # any version's instanceID
    name_patterns: tuple[str, ...] | None = None  # LIKE patterns on the current instance name


def visible(actor: Actor, form: Form, action: str = "submission.read", filters: Filters | None = None,
            include_deleted: bool = False, where=None):
    """select(Submission): the form's submissions this actor may `action`, narrowed by `filters`
    and by `where` (a feed's own expression, e.g. an OData $filter). Raises 403 when the actor
    may not `action` at all."""
    require(actor, action, project_id=form.project_id)
    query = _in_scope(select(Submission).where(Submission.form_id == form.id), actor)
    if not include_deleted:
        query = query.where(Submission.deleted_at.is_(None))
    if where is not None:
        query = query.where(where)
    return _narrowed(query, form, filters) if filters else query


def _in_scope(query, actor: Actor):
    """The grantee scope as a WHERE clause: the one place it is written."""
    scope = grantee_scope(actor)
    return query if scope is None else query.where(Submission.grantee_id == scope)


def _narrowed(query, form: Form, filters: Filters):
    if filters.grantee_ids is not None:
        query = query.where(Submission.grantee_id.in_(filters.grantee_ids or (-1,)))
    if filters.review_state:
        query = query.where(Submission.review_state == filters.review_state)
    if filters.since is not None:
        query = query.where(Submission.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(Submission.created_at < filters.until)
    if filters.app_user_id is not None:
        query = query.where(Submission.app_user_id == filters.app_user_id)
    if filters.user_id is not None:
        query = query.where(Submission.user_id == filters.user_id)
    if filters.instance_ids:
        # through the unique (form, instance id) index of the versions
        query = query.where(Submission.id.in_(select(SubmissionDef.submission_id).where(
            SubmissionDef.form_id == form.id, SubmissionDef.instance_id.in_(filters.instance_ids))))
    if filters.name_patterns:
        query = query.where(Submission.current_def_id.in_(select(SubmissionDef.id).where(
            SubmissionDef.form_id == form.id,
            or_(*[SubmissionDef.instance_name.ilike(p, escape="\\") for p in filters.name_patterns]))))
    return query


def find(actor: Actor, form: Form, instance_id: str, action: str = "submission.read",
         deleted_ok: bool = False) -> Submission | None:
    """One submission by its (first) instanceID, or None when it is unknown, deleted (unless
    `deleted_ok`) or out of the actor's scope: the three are not told apart."""
    return db.session.scalar(visible(actor, form, action, include_deleted=deleted_ok)
                             .where(Submission.instance_id == instance_id))


def count(query, cap: int | None = None) -> int:
    if cap is not None:
        query = query.limit(cap)
    return db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def load(query, limit: int, offset: int = 0) -> list[Submission]:
    """Submissions with what a feed writes of them loaded in a few queries, not one a row."""
    query = query.options(selectinload(Submission.current_def).selectinload(SubmissionDef.attachments),
                          selectinload(Submission.current_def).selectinload(SubmissionDef.form_version),
                          selectinload(Submission.grantee))
    return list(db.session.scalars(query.limit(limit).offset(offset)))


def batches(query, size: int = BATCH, after_id: int | None = None, oldest_first: bool = False):
    """Lists of submissions, `size` at a time, keyset on the id: newest first, or oldest first
    resuming after `after_id` (so a caller may commit between batches and pick up again)."""
    ordered = query.order_by(Submission.id.asc() if oldest_first else Submission.id.desc())
    last = after_id
    while True:
        step = ordered if last is None else ordered.where(
            Submission.id > last if oldest_first else Submission.id < last)
        page = load(step, size)
        if not page:
            return
        yield page
        last = page[-1].id
        if len(page) < size:
            return


def with_system(page: list[Submission], key: bool = False) -> list[tuple[Submission, dict]]:
    """(submission, its `__system` block) for a batch: two queries for the batch's names and
    edit counts. `key`: with the `key` Central's CSV writes (OData's block has none)."""
    names, edits = submitter_names(page), edit_counts(page)
    rows = [(s, system_block(s, names, edits.get(s.id, 0))) for s in page]
    if key:
        for submission, system in rows:
            system["key"] = submission.instance_id
    return rows


def submitter_names(rows) -> dict:
    """{("a", app user id) | ("u", web user id): display name} for rows with those two columns."""
    app_ids = {r.app_user_id for r in rows if r.app_user_id}
    user_ids = {r.user_id for r in rows if r.user_id}
    names = {}
    if app_ids:
        names.update({("a", i): n for i, n in db.session.execute(
            select(AppUser.id, AppUser.display_name).where(AppUser.id.in_(app_ids)))})
    if user_ids:
        names.update({("u", i): n for i, n in db.session.execute(
            select(WebUser.id, WebUser.display_name).where(WebUser.id.in_(user_ids)))})
    return names


def edit_counts(rows) -> dict[int, int]:
    """{submission id: number of edits} (versions after the first)."""
    ids = [r.id for r in rows]
    if not ids:
        return {}
    found = db.session.execute(select(SubmissionDef.submission_id, func.count()).where(
        SubmissionDef.submission_id.in_(ids)).group_by(SubmissionDef.submission_id))
    return {sid: n - 1 for sid, n in found}


def submitter_key(row) -> tuple[str, int | None]:
    """The key `submitter_names` gives a row's submitter under: its app user's, else its web user's."""
    return ("a", row.app_user_id) if row.app_user_id else ("u", row.user_id)


def _review_state(state: str) -> str | None:
    # Central writes the initial state as null; FieldSync's name for it is "received".
    return None if state == "received" else state


def system_block(submission: Submission, names: dict, edits: int) -> dict:
    """The `__system` block as Central's OData writes it (its CSV takes a subset, plus `key`)."""
    current = submission.current_def
    attachments = current.attachments
    submitter = submitter_key(submission)
    return {"submissionDate": iso(submission.created_at), "updatedAt": iso(submission.updated_at),
            "deletedAt": iso(submission.deleted_at), "submitterId": str(submitter[1]),
            "submitterName": names.get(submitter), "attachmentsPresent": sum(1 for a in attachments if a.blob_id),
            "attachmentsExpected": len(attachments), "status": None,
            "reviewState": _review_state(submission.review_state),
            "deviceId": submission.device_id, "edits": edits, "formVersion": current.form_version.version,
            "grantee": submission.grantee.code if submission.grantee else None}


def plain_batches(query, size: int = BATCH):
    """(instance id, current XML, CSV `__system` block) for every row of `query`, newest first,
    from plain rows: per batch one query for the ids, one for their columns and XML, one for
    their attachment counts and one for their edit counts, and no ORM objects (building them
    took as long as reading the XML). For the streamed CSV."""
    ids_query = query.with_only_columns(Submission.id).order_by(Submission.id.desc())
    last_id = None
    while True:
        ids = list(db.session.scalars((ids_query if last_id is None else ids_query.where(
            Submission.id < last_id)).limit(size)))
        if not ids:
            return
        rows = {row.id: row for row in db.session.execute(
            select(Submission.id, Submission.instance_id, Submission.created_at, Submission.updated_at,
                   Submission.deleted_at, Submission.app_user_id, Submission.user_id, Submission.review_state,
                   Submission.device_id, Submission.current_def_id, SubmissionDef.xml, FormVersion.version)
            .join(SubmissionDef, SubmissionDef.id == Submission.current_def_id)
            .join(FormVersion, FormVersion.id == SubmissionDef.form_version_id)
            .where(Submission.id.in_(ids)))}
        files = {def_id: (expected, present) for def_id, expected, present in db.session.execute(
            select(SubmissionAttachment.submission_def_id, func.count(), func.count(SubmissionAttachment.blob_id))
            .where(SubmissionAttachment.submission_def_id.in_([r.current_def_id for r in rows.values()]))
            .group_by(SubmissionAttachment.submission_def_id))}
        names, edits = submitter_names(rows.values()), edit_counts(rows.values())
        for submission_id in ids:
            row = rows[submission_id]
            expected, present = files.get(row.current_def_id, (0, 0))
            submitter = submitter_key(row)
            yield row.instance_id, row.xml, {
                "submissionDate": iso(row.created_at), "key": row.instance_id, "submitterId": str(submitter[1]),
                "submitterName": names.get(submitter), "attachmentsPresent": present,
                "attachmentsExpected": expected, "reviewState": _review_state(row.review_state),
                "deviceId": row.device_id, "edits": edits.get(row.id, 0), "formVersion": row.version}
        last_id = ids[-1]
        if len(ids) < size:
            return


def form_counts(actor: Actor, forms: list[Form]) -> dict[int, tuple[int, datetime | None]]:
    """{form id: (submissions the actor may read, not deleted; time of the newest)}."""
    if not forms or not can(actor, "submission.read"):
        return {}
    query = _in_scope(select(Submission.form_id, func.count(), func.max(Submission.created_at))
                      .where(Submission.form_id.in_([f.id for f in forms]), Submission.deleted_at.is_(None))
                      .group_by(Submission.form_id), actor)
    return {form_id: (n, last) for form_id, n, last in db.session.execute(query)}
