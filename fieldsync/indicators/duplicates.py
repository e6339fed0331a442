"""A coordinator's decision on a duplicate candidate, applied to records and indicators at once."""
from sqlalchemy import select

from .. import problems
from ..auth import can
from ..audit import record
from ..extensions import db
from ..models import DuplicateCandidate, Event, Participant, Person
from ..records import store
from .engine import indicator_transaction, refresh_sources

DECISIONS = {"merge": "merged", "not_duplicate": "not_duplicate"}


def candidates(status: str | None = "open", grantee_id: int | None = None) -> list[DuplicateCandidate]:
    query = select(DuplicateCandidate).order_by(DuplicateCandidate.score.desc(), DuplicateCandidate.id)
    if status:
        query = query.where(DuplicateCandidate.status == status)
    if grantee_id is not None:
        query = query.where(DuplicateCandidate.grantee_id == grantee_id)
    return list(db.session.scalars(query))


def sides(candidate: DuplicateCandidate) -> tuple[dict, dict]:
    """What a coordinator compares: the two events or the two persons."""
    if candidate.kind == "event":
        found = {e.instance_id: e for e in db.session.scalars(
            select(Event).where(Event.instance_id.in_([candidate.key_a, candidate.key_b])))}
        return tuple(_event_side(found.get(k), k) for k in (candidate.key_a, candidate.key_b))
    found = {p.key: p for p in db.session.scalars(
        select(Person).where(Person.key.in_([candidate.key_a, candidate.key_b])))}
    return tuple(_person_side(found.get(k), k) for k in (candidate.key_a, candidate.key_b))


def _event_side(event, key) -> dict:
    if event is None:
        return {"instanceId": key, "missing": True}
    return {"instanceId": key, "eventDate": event.event_date.isoformat() if event.event_date else None,
            "eventType": event.event_type, "village": event.village, "topic": event.topic,
            "registered": len(event_participants(event.id)),
            "headcount": event.headcount_female + event.headcount_male}


def event_participants(event_id: int):
    return db.session.scalars(select(Participant.id).where(Participant.event_id == event_id)).all()


def _person_side(person, key) -> dict:
    if person is None:
        return {"key": key, "missing": True}
    return {"key": key, "name": person.display_name, "birthYear": person.birth_year,
            "village": person.village_key}


def decide(candidate_id: int, decision: str, actor) -> DuplicateCandidate:
    if decision not in DECISIONS:
        raise problems.unexpected_value(field="decision", value=decision, reason="use merge or not_duplicate")
    with indicator_transaction():
        candidate = db.session.get(DuplicateCandidate, candidate_id)
        if candidate is None:
            raise problems.not_found()
        if actor is not None and not can(actor, "duplicate.resolve", candidate):
            raise problems.forbidden()  # another grantee's candidate
        status = DECISIONS[decision]
        if candidate.status == status:
            return candidate  # the same decision again (a double click, a retried request)
        if candidate.status != "open":
            raise problems.already_decided(status=candidate.status)
        store.mark_decided(candidate, status, actor.user_id if actor else None)
        db.session.flush()
        if candidate.kind == "event":
            keys = store.sources_of_events([candidate.key_a, candidate.key_b])
        elif status == "merged":
            keys = store.merge_persons(candidate.key_a, candidate.key_b)
        else:
            keys = set()
        refresh_sources(keys)
        record("duplicate.decide", actor, subject=candidate,
               details={"kind": candidate.kind, "decision": status, "a": candidate.key_a, "b": candidate.key_b})
    return candidate
