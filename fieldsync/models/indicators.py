"""Indicator values, kept up to date incrementally, and what each source last contributed.

`IndicatorSource.payload` is the JSON list of contributions a source (a grantee's events of
one day, or one submission) last applied; a change applies the difference between the new
list and this one, so the cost of an update depends on the size of the source, never on how
much data exists.
"""
from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow


class IndicatorSource(db.Model):
    __tablename__ = "indicator_sources"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    payload: Mapped[str] = mapped_column(Text, default="[]")


class IndicatorValue(db.Model):
    """One cell: indicator × grantee × scope (all non-rejected / approved only) × period × option."""
    __tablename__ = "indicator_values"
    __table_args__ = (UniqueConstraint("indicator", "grantee_id", "scope", "period", "coc"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    indicator: Mapped[str] = mapped_column(String(64))
    grantee_id: Mapped[int] = mapped_column(ForeignKey("grantees.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(8))  # '' all time, 2004, 2004Q3, 200407
    coc: Mapped[str] = mapped_column(String(64))
    total: Mapped[float] = mapped_column(Float, default=0.0)
    weight: Mapped[float] = mapped_column(Float, default=0.0)  # the count behind a mean


class IndicatorMember(db.Model):
    """For distinct counts: in which months a member (a person, a client code) appears, with
    reference counts, so adding and removing sources keeps each period's count exact."""
    __tablename__ = "indicator_members"
    __table_args__ = (UniqueConstraint("indicator", "grantee_id", "scope", "coc", "member"),
                      Index("ix_indicator_members_grantee", "grantee_id"))  # the recompute reads a grantee's
    id: Mapped[int] = mapped_column(primary_key=True)
    indicator: Mapped[str] = mapped_column(String(64))
    grantee_id: Mapped[int] = mapped_column(ForeignKey("grantees.id"))
    scope: Mapped[str] = mapped_column(String(16))
    coc: Mapped[str] = mapped_column(String(64))
    member: Mapped[str] = mapped_column(String(600))
    months: Mapped[str] = mapped_column(Text, default="{}")


class Target(db.Model):
    __tablename__ = "targets"
    __table_args__ = (UniqueConstraint("indicator", "grantee_id", "period"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    indicator: Mapped[str] = mapped_column(String(64))
    grantee_id: Mapped[int] = mapped_column(ForeignKey("grantees.id"))
    period: Mapped[str] = mapped_column(String(8))
    value: Mapped[float] = mapped_column(Float)
    updated_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class ReconcileRun(db.Model):
    __tablename__ = "reconcile_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    started_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    finished_at = mapped_column(UTCDateTime, nullable=True)
    trigger: Mapped[str] = mapped_column(String(32))
    cells: Mapped[int] = mapped_column(Integer, default=0)
    drift: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[str] = mapped_column(Text, default="[]")


class JobLock(db.Model):
    """A lease that lets exactly one process run a scheduled job, on any database."""
    __tablename__ = "job_locks"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at = mapped_column(UTCDateTime, nullable=False)
