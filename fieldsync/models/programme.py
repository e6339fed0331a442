"""The programme's reference data: projects, regions, rayons and grantees."""
from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import UTCDateTime, utcnow


class Project(db.Model):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class Region(db.Model):
    __tablename__ = "regions"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # oblast | city
    name_en: Mapped[str] = mapped_column(String(128))
    name_ru: Mapped[str] = mapped_column(String(128))
    name_ky: Mapped[str] = mapped_column(String(128))


class Rayon(db.Model):
    __tablename__ = "rayons"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # rayon | city_district | city
    name_en: Mapped[str] = mapped_column(String(128))
    name_ru: Mapped[str] = mapped_column(String(128))
    name_ky: Mapped[str] = mapped_column(String(128))


class Grantee(db.Model):
    """An implementing organisation: the org unit indicators roll up to."""
    __tablename__ = "grantees"
    __table_args__ = (UniqueConstraint("project_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"))
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    region = relationship(Region)
