"""Keeping the record tables in step with submissions, and the database side of matching.

`rebuild(submission)` replaces one submission's records (the submission read with
`submissions_to_build`) and returns the indicator sources they touch (before and after).
`bucket` loads one grantee's events of one day, groups them with the matching rules
(`group_day`, pure), writes the merge trace and the open candidates; `EveryDay` does the same
for every day at once, for the full recompute. New persons are inserted and queued for the
look-alike search by `persons`. All inside the caller's write transaction. The statements run
for every upload are built once (as in `indicators.tables`).
"""
import functools
import itertools
import json
from datetime import date
from typing import NamedTuple

from sqlalchemy import bindparam, delete, func, insert, select, update

from ..extensions import chunks, db, plain_rows
from ..formats.submission import field_values, parse_stored
from ..models import (Assessment, DuplicateCandidate, Event, Form, FormVersion, Interview, Participant, Person,
                      Service, Submission, SubmissionDef, utcnow)
from . import persons
from .derive import TABLE_OF, derive
from .matching import MERGED, NOT_DUPLICATE, EventView, Group, group_events

TABLES = {"events": Event, "assessments": Assessment, "interviews": Interview, "services": Service}
SCOPES = ("all", "approved")


def event_source(grantee_id: int | None, day: date | None) -> str:
    return f"ev:{grantee_id}:{day.isoformat() if day else 'none'}"


def submission_source(submission_id: int) -> str:
    return f"sub:{submission_id}"


def parse_source(key: str) -> tuple:
    kind, *rest = key.split(":")
    if kind == "ev":
        grantee, day = rest
        return "ev", int(grantee) if grantee != "None" else None, None if day == "none" else date.fromisoformat(day)
    return "sub", int(rest[0])


def _source_of(table: str, record) -> str:
    return event_source(record.grantee_id, record.event_date) if table == "events" else submission_source(record.submission_id)


class Built(NamedTuple):
    """What `rebuild` reads of a submission: its row, its form's ID, its current version's XML
    and that version's schema (text). `xml` is None for a submission without a version."""
    id: int
    grantee_id: int | None
    review_state: str
    hold: str | None
    deleted_at: object
    instance_id: str
    xml_form_id: str
    xml: bytes | None
    schema_json: str | None


_S, _F, _D, _V = (m.__table__ for m in (Submission, Form, SubmissionDef, FormVersion))
_BUILT = select(_S.c.id, _S.c.grantee_id, _S.c.review_state, _S.c.hold, _S.c.deleted_at, _S.c.instance_id, _F.c.xml_form_id,
                _D.c.xml, _V.c.schema_json).select_from(
    _S.join(_F, _F.c.id == _S.c.form_id).outerjoin(_D, _D.c.id == _S.c.current_def_id)
    .outerjoin(_V, _V.c.id == _D.c.form_version_id)).where(_S.c.id.in_(bindparam("ids", expanding=True)))


def submissions_to_build(ids) -> dict[int, Built]:
    """The `Built` rows of the submissions `ids` (those that exist), by id: one Core query, no
    ORM objects, and not the form version's XML, which the records do not need."""
    found = {}
    for chunk in chunks(ids):
        found.update((row.id, Built(*row)) for row in db.session.execute(_BUILT, {"ids": chunk}))
    return found


@functools.lru_cache(maxsize=64)
def _schema(schema_json: str) -> dict:
    # By its text, not by version id: the text is the version's (written once, at publishing),
    # and an id may name another version in another database this process serves (tests).
    return json.loads(schema_json)


def rebuild(submission: Built) -> set[str]:
    """Replace the records of one submission; return every indicator source affected.

    Core statements on the record tables (no ORM unit of work): this runs for every upload."""
    touched = set()
    name = TABLE_OF.get(submission.xml_form_id)  # a form's records live in one table, or none
    if name is None:
        return touched
    table = TABLES[name].__table__
    old = db.session.execute(record_of(table), {"submission_id": submission.id}).first()
    if old is not None:
        touched.add(_source_of(name, old))
        if name == "events":
            db.session.execute(_DROP_PARTICIPANTS, {"event_id": old.id})
        db.session.execute(_drop_record(table), {"record_id": old.id})
    if submission.deleted_at is not None or submission.xml is None:
        return touched
    derived = derive(submission.xml_form_id, field_values(parse_stored(submission.xml), _schema(submission.schema_json)))
    if derived is None:
        return touched
    values = {"submission_id": submission.id, "grantee_id": submission.grantee_id,
              # Rejected, or on hold until a coordinator decides: kept, counted for nobody.
              "counted": submission.review_state != "rejected" and submission.hold is None,
              "approved": submission.review_state == "approved", **derived["fields"]}
    if derived["table"] == "events":
        values["instance_id"] = submission.instance_id
    table = TABLES[derived["table"]].__table__
    # The values as parameters, not `.values()`: the statement is then built once per set of
    # columns and found in the compiled cache, rather than made anew for every record.
    record_id = db.session.execute(_insert_record(table), values).scalar_one()
    touched.add(event_source(values["grantee_id"], values.get("event_date")) if derived["table"] == "events"
                else submission_source(submission.id))
    participants = derived.get("participants", [])
    if participants:
        db.session.execute(insert(Participant.__table__),
                           [{"event_id": record_id, **participant} for participant in participants])
        persons.enrol(participants, derived["fields"]["village_key"], submission.grantee_id, submission.id)
    return touched


# The statements `rebuild` runs for every upload, built once.
@functools.cache
def record_of(table):
    """The record of the submission `submission_id` in one of the record tables."""
    return select(table).where(table.c.submission_id == bindparam("submission_id"))


@functools.cache
def _drop_record(table):
    return delete(table).where(table.c.id == bindparam("record_id"))


@functools.cache
def _insert_record(table):
    return insert(table).returning(table.c.id)


_DROP_PARTICIPANTS = delete(Participant.__table__).where(Participant.__table__.c.event_id == bindparam("event_id"))


def canonical_persons(keys) -> dict[str, str]:
    keys = list(set(keys))
    if not keys:
        return {}
    rows = db.session.execute(select(Person.key, Person.canonical_key).where(Person.key.in_(keys))).all()
    found = dict(rows)
    return {k: found.get(k, k) for k in keys}


def event_decisions(instance_ids=None) -> dict[tuple[str, str], str]:
    """The coordinators' decisions on event pairs whose first event is one of `instance_ids`
    (every decision when None)."""
    if instance_ids is None:
        return {(a, b): status for a, b, status in db.session.execute(_DECISIONS)}
    ids = list(instance_ids)
    if len(ids) < 2:
        return {}
    return {(a, b): status for a, b, status in db.session.execute(_DECISIONS_ON, {"ids": ids})}


_DECISIONS = select(DuplicateCandidate.key_a, DuplicateCandidate.key_b, DuplicateCandidate.status).where(
    DuplicateCandidate.kind == "event", DuplicateCandidate.status.in_((MERGED, NOT_DUPLICATE)))
_DECISIONS_ON = _DECISIONS.where(DuplicateCandidate.key_a.in_(bindparam("ids", expanding=True)))


_PARTICIPANTS, _PERSONS = Participant.__table__, Person.__table__


def _participant_rows():
    """Participants with their canonical person (a row's own key when it has no person row),
    ordered by id within each event, so every reader picks the same row for a person."""
    return select(_PARTICIPANTS.c.event_id, _PARTICIPANTS.c.person_key, _PARTICIPANTS.c.sex,
                  _PARTICIPANTS.c.category,
                  func.coalesce(_PERSONS.c.canonical_key, _PARTICIPANTS.c.person_key).label("canonical")
                  ).outerjoin(_PERSONS, _PERSONS.c.key == _PARTICIPANTS.c.person_key)


class Attendee(NamedTuple):
    event_id: int
    person_key: str
    sex: str | None
    category: str | None
    canonical: str


def _registers(event_ids: list[int], merged: dict[str, str]) -> dict[int, list[Attendee]]:
    """The participants of these events by event, each event's in id order, with their
    canonical person (`merged` maps the persons merged into another). Plain rows: this reads
    every participant of the programme."""
    rows = plain_rows(select(
        _PARTICIPANTS.c.event_id, _PARTICIPANTS.c.person_key, _PARTICIPANTS.c.sex, _PARTICIPANTS.c.category
    ).where(_PARTICIPANTS.c.event_id.in_(event_ids)).order_by(_PARTICIPANTS.c.event_id, _PARTICIPANTS.c.id))
    registers: dict[int, list[Attendee]] = {}
    for event_id, person_key, sex, category in rows:
        registers.setdefault(event_id, []).append(
            Attendee(event_id, person_key, sex, category, merged.get(person_key, person_key)))
    return registers


def group_day(events, participants, decisions) -> tuple[dict, dict, list]:
    """Group one grantee's events of one day (rows of `events`, in submission order) with the
    matching rules; pure.

    Returns (per scope, (group, attendance, member rows) triples where attendance maps each
    distinct canonical person to their participant row; the merge trace of scope "all" as
    {event id: (merged into, reason)} for the events whose trace changes; the open event
    candidates of scope "all").
    """
    by_event: dict[int, list] = {}
    for p in participants:
        by_event.setdefault(p.event_id, []).append(p)
    result, trace, open_candidates = {}, {}, []
    for scope in SCOPES:
        chosen = [e for e in events if e.counted and (scope == "all" or e.approved)]
        views = [EventView(
            instance_id=e.instance_id, order=e.submission_id, event_type=e.event_type,
            village_key=e.village_key, topic=e.topic,
            persons=frozenset(p.canonical for p in by_event.get(e.id, ())),
            headcount=e.headcount_female + e.headcount_male) for e in chosen]
        groups, candidates = group_events(views, decisions)
        rows = {e.instance_id: e for e in chosen}
        grouped = []
        for group in groups:
            attendance = {}
            for member in group.members:
                for p in by_event.get(rows[member.instance_id].id, ()):
                    attendance.setdefault(p.canonical, p)
            grouped.append((group, attendance, [rows[m.instance_id] for m in group.members]))
        result[scope] = grouped
        if scope == "all":
            joined = {}
            for group in groups:
                for instance_id, reason in group.reasons.items():
                    joined[instance_id] = (group.canonical.instance_id, reason)
            for event in events:
                merged_into, reason = joined.get(event.instance_id, (None, None))
                if (event.merged_into, event.merge_reason) != (merged_into, reason):
                    trace[event.id] = (merged_into, reason)
            open_candidates = candidates
    return result, trace, open_candidates


@functools.cache
def _events_of_day(no_grantee: bool, no_day: bool):
    """One grantee's events of one day, in submission order (built once per shape: a record
    may lack either, and IS NULL is not `= NULL`)."""
    table = Event.__table__
    return select(table).where(
        table.c.grantee_id.is_(None) if no_grantee else table.c.grantee_id == bindparam("grantee_id"),
        table.c.event_date.is_(None) if no_day else table.c.event_date == bindparam("day"),
    ).order_by(table.c.submission_id)


_PARTICIPANTS_OF = _participant_rows().where(
    _PARTICIPANTS.c.event_id.in_(bindparam("events", expanding=True))).order_by(_PARTICIPANTS.c.id)
_EVENT_CANDIDATES = select(DuplicateCandidate).where(
    DuplicateCandidate.kind == "event", DuplicateCandidate.key_a.in_(bindparam("ids", expanding=True)))


def bucket(grantee_id: int | None, day: date | None) -> dict[str, list[tuple[Group, dict, list]]]:
    """One grantee's counted events of one day, grouped per scope (see `group_day`). Writes the
    merge trace (scope "all") and the event candidates."""
    events = db.session.execute(_events_of_day(grantee_id is None, day is None),
                                {"grantee_id": grantee_id, "day": day}).all()
    ids = [e.instance_id for e in events]
    participants = db.session.execute(_PARTICIPANTS_OF, {"events": [e.id for e in events]}).all() if events else []
    result, trace, candidates = group_day(events, participants, event_decisions(ids))
    _write_trace(trace)
    existing = {(c.key_a, c.key_b): c for c in db.session.scalars(_EVENT_CANDIDATES, {"ids": ids})} if ids else {}
    _sync_event_candidates([(grantee_id, c) for c in candidates], set(ids), existing)
    return result


class EveryDay:
    """`bucket` for every grantee's every day, for the full recompute: `of(grantees)` yields
    (grantee id, day, grouped) for those grantees' days in (grantee, day) order, from one read
    of their events and of the participants of a few hundred events at a time (instead of five
    queries a day); it only reads, so it can run in a read transaction. `write()` then stores
    the merge trace and the event candidates found (inside a write transaction)."""

    def __init__(self, chunk: int = 500):
        self.chunk = chunk  # events whose participants are read together
        self.trace: dict[int, tuple] = {}
        self.found: list = []
        self.ids: set[str] = set()
        self.decided: dict | None = None
        self.merged: dict[str, str] = {}

    def _load_decisions(self) -> None:
        self.decided = event_decisions()
        # The persons a coordinator merged into another (few); everyone else is their own
        # canonical person. Looked up once rather than joined to every participant row, which
        # cost more than the rest of the read.
        self.merged = dict(db.session.execute(select(_PERSONS.c.key, _PERSONS.c.canonical_key).where(
            _PERSONS.c.canonical_key != _PERSONS.c.key)).all())

    def of(self, grantees: list[int]):
        if self.decided is None:
            self._load_decisions()
        table = Event.__table__
        events = db.session.execute(select(table).where(table.c.grantee_id.in_(grantees)).order_by(
            table.c.grantee_id, table.c.event_date, table.c.submission_id)).all()
        days = [(key, list(rows)) for key, rows in itertools.groupby(events, key=lambda e: (e.grantee_id, e.event_date))]
        del events
        start = 0
        while start < len(days):
            end, size = start, 0
            while end < len(days) and (size == 0 or size + len(days[end][1]) <= self.chunk):
                size += len(days[end][1])
                end += 1
            registers = _registers([e.id for _key, rows in days[start:end] for e in rows], self.merged)
            for (grantee_id, day), rows in days[start:end]:
                result, day_trace, candidates = group_day(
                    rows, [p for e in rows for p in registers.get(e.id, ())], self.decided)
                self.trace.update(day_trace)
                self.found += [(grantee_id, c) for c in candidates]
                self.ids.update(e.instance_id for e in rows)
                yield grantee_id, day, result
            start = end

    def write(self) -> None:
        _write_trace(self.trace)
        existing = {(c.key_a, c.key_b): c for c in db.session.scalars(
            select(DuplicateCandidate).where(DuplicateCandidate.kind == "event"))}
        _sync_event_candidates(self.found, self.ids, existing)


def _write_trace(trace: dict[int, tuple]) -> None:
    if trace:
        db.session.execute(update(Event.__table__).where(Event.__table__.c.id == bindparam("event_id")).values(
            merged_into=bindparam("into"), merge_reason=bindparam("why")),
            [{"event_id": i, "into": into, "why": why} for i, (into, why) in sorted(trace.items())])


def _sync_event_candidates(found, instance_ids: set, existing: dict) -> None:
    """Make the stored event candidates of these events what the rules found: new ones added,
    open or put-aside ones refreshed, open ones the rules no longer see (an event was deleted
    or edited) put aside. Decided ones are kept forever. `existing` holds the stored
    candidates whose first event is among `instance_ids`."""
    current = set()
    for grantee_id, candidate in found:
        key = (candidate.key_a, candidate.key_b)
        current.add(key)
        row = existing.get(key)
        if row is None:
            existing[key] = DuplicateCandidate(kind="event", key_a=key[0], key_b=key[1], grantee_id=grantee_id,
                                               score=candidate.score, reason=candidate.reason)
            db.session.add(existing[key])
        elif row.status in ("open", "gone"):
            row.status, row.score, row.reason = "open", candidate.score, candidate.reason
    for key, row in existing.items():
        if row.status == "open" and key not in current and key[0] in instance_ids:
            row.status = "gone"


def merge_persons(key_a: str, key_b: str) -> set[str]:
    """Make two persons one (a coordinator's decision); return the event sources to recompute."""
    keys = canonical_persons([key_a, key_b])
    keep, drop = sorted((keys[key_a], keys[key_b]))
    if keep != drop:
        db.session.execute(update(Person).where(Person.canonical_key == drop).values(canonical_key=keep))
    return sources_of_persons([keep])


def sources_of_persons(canonical_keys) -> set[str]:
    keys = db.session.scalars(select(Person.key).where(Person.canonical_key.in_(list(canonical_keys)))).all()
    if not keys:
        return set()
    rows = db.session.execute(select(Event.grantee_id, Event.event_date).join(
        Participant, Participant.event_id == Event.id).where(Participant.person_key.in_(keys)).distinct()).all()
    return {event_source(g, d) for g, d in rows}


def sources_of_events(instance_ids) -> set[str]:
    rows = db.session.execute(select(Event.grantee_id, Event.event_date).where(
        Event.instance_id.in_(list(instance_ids)))).all()
    return {event_source(g, d) for g, d in rows}


def mark_decided(candidate: DuplicateCandidate, status: str, user_id: int | None) -> None:
    candidate.status = status
    candidate.decided_by_user_id = user_id
    candidate.decided_at = utcnow()
