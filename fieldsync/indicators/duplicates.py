"""A coordinator's decision on a duplicate candidate, applied to records and indicators at once."""
from sqlalchemy import and_, or_, select

from .. import problems
from ..auth import can, grantee_scope
from ..audit import record
from ..extensions import db
from ..models import DuplicateCandidate, Event, Participant, Person
from ..records import store
from .engine import indicator_transaction, refresh_sources

DECISIONS = {"merge": "merged", "not_duplicate": "not_duplicate"}


def candidates(status: str | None = "open", scope: int | None = None) -> list[DuplicateCandidate]:
    """The candidates (of a status, or all) an actor of this grantee scope may see (`in_scope`)."""
    query = select(DuplicateCandidate).order_by(DuplicateCandidate.score.desc(), DuplicateCandidate.id)
    if status:
        query = query.where(DuplicateCandidate.status == status)
    return list(db.session.scalars(in_scope(query, scope)))


def find(candidate_id: int, scope: int | None = None) -> DuplicateCandidate | None:
    """One candidate, or None when there is none of that id or it is out of scope (alike, so a
    grantee cannot tell another grantee's candidate from a missing one)."""
    return db.session.scalars(in_scope(select(DuplicateCandidate).where(DuplicateCandidate.id == candidate_id),
                                       scope)).first()


def in_scope(query, scope: int | None):
    """The scope rule for candidates, the one place it is decided: with no scope (coordinators,
    admins), every candidate; for a grantee's scope, only those whose every record is that
    grantee's. A candidate's `grantee_id` is only the grantee whose upload found it (a person
    pair is made across grantees when they share a village), so each side is checked against
    the records behind it: an event's own grantee; for a person, the grantees of every event
    whose register has it (the first registration and every one since). Read at each
    request, so a submission moved to another grantee moves its candidates with it. A side
    with no record left (its submission deleted) is nobody's: left to coordinators, as is any
    pair spanning grantees (deciding it changes the other grantee's figures)."""
    if scope is None:
        return query
    c = DuplicateCandidate
    theirs, others = Event.grantee_id == scope, Event.grantee_id.is_distinct_from(scope)

    def event(key):
        # events.instance_id has no index: the two lists are read once a query (uncorrelated),
        # not once a candidate.
        return and_(key.in_(select(Event.instance_id).where(theirs)),
                    key.not_in(select(Event.instance_id).where(others)))

    def attended(key, which):
        # Correlated, each through the participants' person_key index.
        return select(Event.id).join(Participant, Participant.event_id == Event.id).where(
            Participant.person_key == key, which).exists()

    def person(key):
        return and_(attended(key, theirs), ~attended(key, others))
    return query.where(c.grantee_id == scope, or_(
        and_(c.kind == "event", event(c.key_a), event(c.key_b)),
        and_(c.kind == "person", person(c.key_a), person(c.key_b))))


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
    if actor is not None and not can(actor, "duplicate.resolve"):
        raise problems.forbidden()
    with indicator_transaction():
        candidate = find(candidate_id, grantee_scope(actor) if actor is not None else None)
        if candidate is None:
            raise problems.not_found()  # none of that id, or out of the actor's scope: alike
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
