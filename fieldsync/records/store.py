"""Keeping the record tables in step with submissions, and the database side of matching.

`rebuild(submission)` replaces one submission's records and returns the indicator sources
they touch (before and after). `bucket` loads one grantee's events of one day, groups them
with the matching rules, writes the merge trace and the open candidates. All inside the
caller's write transaction.
"""
from datetime import date
from typing import NamedTuple

from sqlalchemy import delete, false, insert, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..formats.submission import field_values, parse_stored
from ..models import (Assessment, DuplicateCandidate, Event, Interview, Participant, Person, Service,
                      Submission, utcnow)
from .derive import TABLE_OF, derive
from .matching import MERGED, NOT_DUPLICATE, EventView, Group, group_events, likely_same_in, person_likeness

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


def _existing(submission_id: int, tables=None) -> list[tuple[str, object]]:
    found = []
    for table, model in TABLES.items():
        if tables is not None and table not in tables:
            continue
        row = db.session.scalar(select(model).where(model.submission_id == submission_id))
        if row is not None:
            found.append((table, row))
    return found


def dialect_insert(table):
    """INSERT for this database's dialect, so that ON CONFLICT clauses can be added."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table)


def rebuild(submission: Submission) -> set[str]:
    """Replace the records of one submission; return every indicator source affected."""
    touched = set()
    # A form's records live in one table; a submission of a form without records has none.
    for table, row in _existing(submission.id, {TABLE_OF.get(submission.form.xml_form_id)}):
        touched.add(_source_of(table, row))
        if table == "events":
            db.session.execute(delete(Participant).where(Participant.event_id == row.id))
        db.session.delete(row)
    db.session.flush()
    current = submission.current_def
    if submission.deleted_at is not None or current is None:
        return touched
    schema = current.form_version.schema
    derived = derive(submission.form.xml_form_id, field_values(parse_stored(current.xml), schema))
    if derived is None:
        return touched
    model = TABLES[derived["table"]]
    record = model(submission_id=submission.id, grantee_id=submission.grantee_id,
                   counted=submission.review_state != "rejected",
                   approved=submission.review_state == "approved", **derived["fields"])
    if derived["table"] == "events":
        record.instance_id = submission.instance_id
    db.session.add(record)
    db.session.flush()
    participants = derived.get("participants", [])
    if participants:
        db.session.execute(insert(Participant.__table__),
                           [{"event_id": record.id, **participant} for participant in participants])
        village_key = derived["fields"]["village_key"]
        village_block(village_key, {p["birth_year"] for p in participants})  # one load for the register
        new = [p for p in participants if _ensure_person(p, village_key, submission.grantee_id)]
        if new:
            db.session.execute(dialect_insert(Person.__table__).on_conflict_do_nothing(index_elements=["key"]), [
                {"key": p["person_key"], "name_key": p["name_key"], "display_name": p["full_name"],
                 "birth_year": p["birth_year"], "village_key": village_key, "canonical_key": p["person_key"]}
                for p in new])
    touched.add(_source_of(derived["table"], record))
    return touched


class PersonRow(NamedTuple):
    key: str
    name_key: str
    display_name: str
    birth_year: int | None
    canonical_key: str


class Block:
    """The persons of one village, grouped by birth year, with their names ready for
    rapidfuzz. Only the years asked for are loaded (a person of a known year is compared with
    that year and the unknown year only), each at most once per transaction, and persons
    added in the transaction join it at once."""

    def __init__(self, village_key: str):
        self.village_key = village_key
        self.keys: set[str] = set()
        self.by_year: dict[int | None, tuple[list, list, list]] = {}
        self.loaded: set[int | None] = set()
        self.everything = False

    def need(self, birth_years) -> "Block":
        """Make sure every person a participant of these birth years is compared with is here."""
        if self.everything:
            return self
        years = set(birth_years) | {None}
        query = select(Person.key, Person.name_key, Person.display_name, Person.birth_year,
                       Person.canonical_key).where(Person.village_key == self.village_key)
        known = [y for y in self.loaded if y is not None]
        if None in birth_years:  # an unknown year is compared with the whole village
            query = query.where(Person.birth_year.not_in(known) if known else true())
            if None in self.loaded:
                query = query.where(Person.birth_year.is_not(None))
            self.everything = True
        else:
            missing = years - self.loaded
            if not missing:
                return self
            wanted = [y for y in missing if y is not None]
            condition = Person.birth_year.in_(wanted) if wanted else false()
            if None in missing:
                condition = condition | Person.birth_year.is_(None)
            query = query.where(condition)
        self.loaded |= years
        for row in db.session.execute(query):
            self.add(PersonRow(*row))
        return self

    def add(self, person: PersonRow) -> None:
        self.keys.add(person.key)
        rows, names, squeezed = self.by_year.setdefault(person.birth_year, ([], [], []))
        rows.append(person)
        names.append(person.name_key)
        squeezed.append(person.name_key.replace(" ", ""))

    def groups(self, birth_year: int | None):
        """The (rows, names, names without spaces) a person of this birth year is compared
        with: the same year and the unknown year, or every year when the person's is unknown."""
        if birth_year is None:
            return list(self.by_year.values())
        return [self.by_year[y] for y in (birth_year, None) if y in self.by_year]


def _blocks() -> dict[str, Block]:
    """This transaction's village blocks (a new transaction starts with none: what another
    transaction committed since must be seen)."""
    session = db.session()
    transaction = session.get_transaction()
    cached = session.info.get("person_blocks")
    if cached is None or cached[0] is not transaction:
        cached = (transaction, {})
        session.info["person_blocks"] = cached
    return cached[1]


def village_block(village_key: str, birth_years) -> Block:
    blocks = _blocks()
    block = blocks.get(village_key)
    if block is None:
        block = blocks[village_key] = Block(village_key)
    return block.need(birth_years)


def _ensure_person(participant: dict, village_key: str, grantee_id: int | None) -> bool:
    """Match a participant's person against the village; True when the person is new (the
    caller inserts it). Fuzzy look-alikes in the same village (and birth year, when both are
    known) become candidates for a coordinator. A C-speed first pass over the block keeps
    this cheap in a village with thousands of names; the exact score confirms."""
    key = participant["person_key"]
    block = village_block(village_key, {participant["birth_year"]})
    if key in block.keys:
        return False
    person = PersonRow(key, participant["name_key"], participant["full_name"], participant["birth_year"], key)
    for other in likely_same_in(person, block.groups(person.birth_year)):
        score = person_likeness(person.name_key, other.name_key, person.birth_year, other.birth_year)
        if score is not None and other.canonical_key != key:
            a, b = sorted((key, other.key))
            _upsert_candidate("person", a, b, grantee_id, score,
                              f"Names {person.display_name!r} and {other.display_name!r} are alike "
                              f"({score:.0f}%) in the same village"
                              + ("" if person.birth_year and other.birth_year else "; a birth year is missing")
                              + ".")
    block.add(person)
    return True


def _upsert_candidate(kind, key_a, key_b, grantee_id, score, reason) -> None:
    existing = db.session.scalar(select(DuplicateCandidate).where(
        DuplicateCandidate.kind == kind, DuplicateCandidate.key_a == key_a, DuplicateCandidate.key_b == key_b))
    if existing is None:
        db.session.add(DuplicateCandidate(kind=kind, key_a=key_a, key_b=key_b, grantee_id=grantee_id,
                                          score=score, reason=reason))
    elif existing.status in ("open", "gone"):
        existing.status, existing.score, existing.reason = "open", score, reason


def canonical_persons(keys) -> dict[str, str]:
    keys = list(set(keys))
    if not keys:
        return {}
    rows = db.session.execute(select(Person.key, Person.canonical_key).where(Person.key.in_(keys))).all()
    found = dict(rows)
    return {k: found.get(k, k) for k in keys}


def event_decisions(instance_ids) -> dict[tuple[str, str], str]:
    ids = list(instance_ids)
    if len(ids) < 2:
        return {}
    rows = db.session.scalars(select(DuplicateCandidate).where(
        DuplicateCandidate.kind == "event", DuplicateCandidate.key_a.in_(ids),
        DuplicateCandidate.status.in_((MERGED, NOT_DUPLICATE)))).all()
    return {(r.key_a, r.key_b): r.status for r in rows}


def bucket(grantee_id: int | None, day: date | None) -> dict[str, list[tuple[Group, dict]]]:
    """One grantee's counted events of one day, grouped per scope.

    Returns, per scope, (group, attendance) pairs where attendance maps each distinct
    canonical person to their participant row. Writes the merge trace (scope "all") and the
    event candidates.
    """
    query = select(Event).where(Event.grantee_id.is_(None) if grantee_id is None else Event.grantee_id == grantee_id)
    query = query.where(Event.event_date.is_(None) if day is None else Event.event_date == day)
    events = db.session.scalars(query.order_by(Event.submission_id)).all()
    participants = db.session.scalars(select(Participant).where(
        Participant.event_id.in_([e.id for e in events]))).all() if events else []
    canonical = canonical_persons(p.person_key for p in participants)
    by_event: dict[int, list[Participant]] = {}
    for p in participants:
        by_event.setdefault(p.event_id, []).append(p)
    decisions = event_decisions(e.instance_id for e in events)
    result = {}
    for scope in SCOPES:
        chosen = [e for e in events if e.counted and (scope == "all" or e.approved)]
        views = {e.instance_id: EventView(
            instance_id=e.instance_id, order=e.submission_id, event_type=e.event_type,
            village_key=e.village_key, topic=e.topic,
            persons=frozenset(canonical[p.person_key] for p in by_event.get(e.id, [])),
            headcount=e.headcount_female + e.headcount_male) for e in chosen}
        groups, candidates = group_events(list(views.values()), decisions)
        rows = {e.instance_id: e for e in chosen}
        grouped = []
        for group in groups:
            attendance = {}
            for member in group.members:
                for p in by_event.get(rows[member.instance_id].id, []):
                    attendance.setdefault(canonical[p.person_key], p)
            grouped.append((group, attendance, [rows[m.instance_id] for m in group.members]))
        result[scope] = grouped
        if scope == "all":
            _write_trace(events, groups)
            _write_event_candidates(grantee_id, [e.instance_id for e in events], candidates)
    return result


def _write_trace(events, groups) -> None:
    joined = {}
    for group in groups:
        for instance_id, reason in group.reasons.items():
            joined[instance_id] = (group.canonical.instance_id, reason)
    for event in events:
        merged_into, reason = joined.get(event.instance_id, (None, None))
        if (event.merged_into, event.merge_reason) != (merged_into, reason):
            event.merged_into, event.merge_reason = merged_into, reason


def _write_event_candidates(grantee_id, instance_ids, candidates) -> None:
    current = {(c.key_a, c.key_b) for c in candidates}
    for candidate in candidates:
        _upsert_candidate("event", candidate.key_a, candidate.key_b, grantee_id, candidate.score, candidate.reason)
    if instance_ids:
        # Open candidates of this day that the rules no longer see (an event was deleted or
        # edited) are put aside; decided ones are kept forever.
        stale = db.session.scalars(select(DuplicateCandidate).where(
            DuplicateCandidate.kind == "event", DuplicateCandidate.status == "open",
            DuplicateCandidate.key_a.in_(instance_ids))).all()
        for row in stale:
            if (row.key_a, row.key_b) not in current:
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
