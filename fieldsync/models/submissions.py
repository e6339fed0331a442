"""Submissions: one logical record per instanceID per form, with its versions (edits) and files.

`Submission` is the logical record, named by its first instanceID (as in ODK Central);
`SubmissionDef` is one version of it, with the XML bytes exactly as received. An edit
(`meta/deprecatedID`) adds a def and makes it current. InstanceIDs are unique per form across
every def, which is what makes a resend recognisable.
"""
from sqlalchemy import Boolean, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import UTCDateTime, utcnow

REVIEW_STATES = ("received", "hasIssues", "edited", "approved", "rejected")
# Why a submission is kept but counted for nobody until a coordinator reviews it.
HOLD_GRANTEE = "grantee"                      # a device's submission names another grantee
HOLD_EDITED_AFTER_REJECTION = "edited_after_rejection"
HOLDS = (HOLD_GRANTEE, HOLD_EDITED_AFTER_REJECTION)


class Submission(db.Model):
    __tablename__ = "submissions"
    # The web app's table pages by id within a form, often within a grantee or a review state:
    # with the last three the database walks one index backwards and stops after a page
    # instead of sorting every submission of the form (migration 0005).
    __table_args__ = (UniqueConstraint("form_id", "instance_id"),
                      Index("ix_submissions_form_created", "form_id", "created_at", "id"),
                      Index("ix_submissions_form_id_id", "form_id", "id"),
                      Index("ix_submissions_form_grantee_id", "form_id", "grantee_id", "id"),
                      Index("ix_submissions_form_state_id", "form_id", "review_state", "id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("forms.id"))
    instance_id: Mapped[str] = mapped_column(String(255))
    current_def_id: Mapped[int | None] = mapped_column(
        ForeignKey("submission_defs.id", use_alter=True, name="fk_submissions_current_def"), nullable=True)
    grantee_id: Mapped[int | None] = mapped_column(ForeignKey("grantees.id"), nullable=True, index=True)
    app_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_users.id"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("web_users.id"), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    review_state: Mapped[str] = mapped_column(String(16), default="received")
    instance_id_assigned: Mapped[bool] = mapped_column(Boolean, default=False)
    hold: Mapped[str | None] = mapped_column(String(32), nullable=True)  # one of HOLDS, or None
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at = mapped_column(UTCDateTime, nullable=True)
    deleted_at = mapped_column(UTCDateTime, nullable=True)

    current_def = relationship("SubmissionDef", foreign_keys=[current_def_id], post_update=True)
    defs = relationship("SubmissionDef", foreign_keys="SubmissionDef.submission_id",
                        back_populates="submission", order_by="SubmissionDef.id")
    form = relationship("Form")
    grantee = relationship("Grantee")


class SubmissionDef(db.Model):
    __tablename__ = "submission_defs"
    __table_args__ = (UniqueConstraint("form_id", "instance_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("forms.id"))
    form_version_id: Mapped[int] = mapped_column(ForeignKey("form_versions.id"), index=True)
    instance_id: Mapped[str] = mapped_column(String(255))
    deprecated_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    instance_name: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    xml: Mapped[bytes] = mapped_column(LargeBinary)
    xml_sha256: Mapped[str] = mapped_column(String(64))
    app_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_users.id"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("web_users.id"), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    submission = relationship(Submission, foreign_keys=[submission_id], back_populates="defs")
    form_version = relationship("FormVersion")
    attachments = relationship("SubmissionAttachment", back_populates="submission_def",
                               order_by="SubmissionAttachment.name")


class SubmissionAttachment(db.Model):
    """A file a submission version names (a photo, the audit log); `blob_id` once it arrived."""
    __tablename__ = "submission_attachments"
    __table_args__ = (UniqueConstraint("submission_def_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_def_id: Mapped[int] = mapped_column(ForeignKey("submission_defs.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id"), nullable=True)
    is_client_audit: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at = mapped_column(UTCDateTime, nullable=True)

    submission_def = relationship(SubmissionDef, back_populates="attachments")
    blob = relationship("Blob")


class Comment(db.Model):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("web_users.id"), nullable=True)
    system: Mapped[bool] = mapped_column(Boolean, default=False)  # written by FieldSync itself
    body: Mapped[str] = mapped_column(Text)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
