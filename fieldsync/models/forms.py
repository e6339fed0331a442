"""Forms, their published versions (exact XForm bytes) and the media files each version expects."""
import json

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import UTCDateTime, utcnow

FORM_STATES = ("open", "closing", "closed")


class Form(db.Model):
    __tablename__ = "forms"
    __table_args__ = (UniqueConstraint("project_id", "xml_form_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    xml_form_id: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="open")
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("form_versions.id", use_alter=True, name="fk_forms_current_version"), nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UTCDateTime, nullable=True)

    current_version = relationship("FormVersion", foreign_keys=[current_version_id], post_update=True)
    versions = relationship("FormVersion", foreign_keys="FormVersion.form_id", back_populates="form",
                            order_by="FormVersion.id")

    @property
    def title(self) -> str:
        return self.current_version.title if self.current_version else self.xml_form_id


class FormVersion(db.Model):
    __tablename__ = "form_versions"
    __table_args__ = (UniqueConstraint("form_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("forms.id"), index=True)
    version: Mapped[str] = mapped_column(String(255), default="")
    title: Mapped[str] = mapped_column(String(1024))
    xml: Mapped[bytes] = mapped_column(LargeBinary)
    md5: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    schema_json: Mapped[str] = mapped_column(Text)
    warnings_json: Mapped[str] = mapped_column(Text, default="[]")
    source_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source_blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id"), nullable=True)
    published_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    form = relationship(Form, foreign_keys=[form_id], back_populates="versions")
    media = relationship("FormMedia", back_populates="form_version", order_by="FormMedia.name")

    @property
    def schema(self) -> dict:
        return json.loads(self.schema_json)


class FormMedia(db.Model):
    """A file a form version expects (`jr://file/...`): its slot, and its content when uploaded."""
    __tablename__ = "form_media"
    __table_args__ = (UniqueConstraint("form_version_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    form_version_id: Mapped[int] = mapped_column(ForeignKey("form_versions.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # file | image | audio | video
    blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id"), nullable=True)

    form_version = relationship(FormVersion, back_populates="media")
    blob = relationship("Blob")
