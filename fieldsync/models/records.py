"""Records derived from submissions: events, participants, persons, assessments, interviews,
services, and the duplicate candidates a coordinator resolves.

Every row here can be rebuilt from the submissions; none is ever the only copy of anything.
Personal data (names) stays in submissions and `participants`; the other record tables keep
only what indicators need.
"""
from sqlalchemy import Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow


class _FromSubmission:
    """Columns every record taken from one submission carries."""
    id: Mapped[int] = mapped_column(primary_key=True)
    grantee_id: Mapped[int | None] = mapped_column(ForeignKey("grantees.id"), nullable=True)
    counted: Mapped[bool] = mapped_column(Boolean, default=True)   # not rejected
    approved: Mapped[bool] = mapped_column(Boolean, default=False)


class Event(_FromSubmission, db.Model):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_bucket", "grantee_id", "event_date"),)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), unique=True)
    instance_id: Mapped[str] = mapped_column(String(255))
    event_date = mapped_column(Date, nullable=True)
    event_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    region: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rayon: Mapped[str | None] = mapped_column(String(64), nullable=True)
    village: Mapped[str | None] = mapped_column(String(255), nullable=True)
    village_key: Mapped[str] = mapped_column(String(255), default="")
    topic: Mapped[str | None] = mapped_column(String(64), nullable=True)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    headcount_female: Mapped[int] = mapped_column(Integer, default=0)
    headcount_male: Mapped[int] = mapped_column(Integer, default=0)
    materials_distributed: Mapped[int] = mapped_column(Integer, default=0)
    # Set by event matching: the instanceID of the event this one is counted with, and why.
    merged_into: Mapped[str | None] = mapped_column(String(255), nullable=True)
    merge_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Participant(db.Model):
    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    full_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    name_key: Mapped[str] = mapped_column(String(255), default="")
    sex: Mapped[str | None] = mapped_column(String(8), nullable=True)
    birth_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    person_key: Mapped[str] = mapped_column(String(600), index=True)


class Person(db.Model):
    """A distinct person: exact matches share a key; a coordinator's merge points one key at another."""
    __tablename__ = "persons"
    __table_args__ = (Index("ix_persons_village_year", "village_key", "birth_year"),)
    key: Mapped[str] = mapped_column(String(600), primary_key=True)
    name_key: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255))
    birth_year: Mapped[int | None] = mapped_column(Integer, nullable=True)
    village_key: Mapped[str] = mapped_column(String(255), default="")
    canonical_key: Mapped[str] = mapped_column(String(600), index=True)


class Assessment(_FromSubmission, db.Model):
    __tablename__ = "assessments"
    # The full recompute reads one grantee's records at a time, in submission order.
    __table_args__ = (Index("ix_assessments_grantee", "grantee_id", "submission_id"),)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), unique=True)
    interview_date = mapped_column(Date, nullable=True)
    region: Mapped[str | None] = mapped_column(String(32), nullable=True)
    rayon: Mapped[str | None] = mapped_column(String(64), nullable=True)
    village: Mapped[str | None] = mapped_column(String(255), nullable=True)
    consent: Mapped[str | None] = mapped_column(String(8), nullable=True)
    respondent_sex: Mapped[str | None] = mapped_column(String(8), nullable=True)
    respondent_age: Mapped[int | None] = mapped_column(Integer, nullable=True)
    household_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    members_abroad: Mapped[int | None] = mapped_column(Integer, nullable=True)
    plans_to_migrate: Mapped[str | None] = mapped_column(String(8), nullable=True)
    knows_trafficking_risks: Mapped[str | None] = mapped_column(String(8), nullable=True)
    knows_hotline: Mapped[str | None] = mapped_column(String(8), nullable=True)
    priority_needs: Mapped[str | None] = mapped_column(String(255), nullable=True)


class Interview(_FromSubmission, db.Model):
    __tablename__ = "interviews"
    # The full recompute reads one grantee's records at a time, in submission order.
    __table_args__ = (Index("ix_interviews_grantee", "grantee_id", "submission_id"),)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), unique=True)
    interview_date = mapped_column(Date, nullable=True)
    region: Mapped[str | None] = mapped_column(String(32), nullable=True)
    consent: Mapped[str | None] = mapped_column(String(8), nullable=True)
    beneficiary_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    services_received: Mapped[str | None] = mapped_column(String(255), nullable=True)
    satisfaction: Mapped[int | None] = mapped_column(Integer, nullable=True)
    knowledge_gained: Mapped[int | None] = mapped_column(Integer, nullable=True)
    would_recommend: Mapped[str | None] = mapped_column(String(8), nullable=True)
    found_legal_work: Mapped[str | None] = mapped_column(String(8), nullable=True)


class Service(_FromSubmission, db.Model):
    __tablename__ = "services"
    # The full recompute reads one grantee's records at a time, in submission order.
    __table_args__ = (Index("ix_services_grantee", "grantee_id", "submission_id"),)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), unique=True)
    service_date = mapped_column(Date, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(16), nullable=True)
    service_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    client_sex: Mapped[str | None] = mapped_column(String(8), nullable=True)
    client_age_group: Mapped[str | None] = mapped_column(String(16), nullable=True)
    client_is_victim: Mapped[str | None] = mapped_column(String(8), nullable=True)
    client_code: Mapped[str | None] = mapped_column(String(64), nullable=True)


class DuplicateCandidate(db.Model):
    """Two events or two persons that may be the same; a coordinator decides.

    Keyed by stable identities (events: instanceIDs; persons: person keys), so a decision
    survives any number of recomputes.
    """
    __tablename__ = "duplicate_candidates"
    __table_args__ = (UniqueConstraint("kind", "key_a", "key_b"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # event | person
    key_a: Mapped[str] = mapped_column(String(600))
    key_b: Mapped[str] = mapped_column(String(600))
    # The grantee whose upload found it. A person pair can span grantees (persons are matched
    # by village), so who may see it is not this alone: see `indicators.duplicates.in_scope`.
    grantee_id: Mapped[int | None] = mapped_column(ForeignKey("grantees.id"), nullable=True, index=True)
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | merged | not_duplicate | gone
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("web_users.id"), nullable=True)
    decided_at = mapped_column(UTCDateTime, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class PendingRecord(db.Model):
    """A submission whose records (and so indicators) must be rebuilt: the work queue that
    ingest and review fill in the same transaction as their change."""
    __tablename__ = "pending_records"
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    queued_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class PendingPersonMatch(db.Model):
    """A person new to its village, still to be compared with the village's other persons for
    look-alike candidates: the queue `records.persons.enrol` fills in the derive transaction,
    so the look-alike search (which grows with the village) is not part of that transaction.
    The id is the order persons arrived in: each is compared with those before it. Worked
    through village by village (the index), so a backlog reads each village once."""
    __tablename__ = "pending_person_matches"
    __table_args__ = (Index("ix_pending_person_matches_village", "village_key", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_key: Mapped[str] = mapped_column(ForeignKey("persons.key"), unique=True)
    village_key: Mapped[str] = mapped_column(String(255))
    grantee_id: Mapped[int | None] = mapped_column(ForeignKey("grantees.id"), nullable=True)
    # The submission whose register brought the person (no foreign key: a purge may remove
    # it first), so the derive step can search for the persons of the submissions it built.
    submission_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
