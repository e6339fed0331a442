"""Who may act: web users with their sessions, and app users (device credentials)."""
from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import UTCDateTime, utcnow

ROLES = ("admin", "coordinator", "grantee_staff", "evaluator", "viewer")


class WebUser(db.Model):
    __tablename__ = "web_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    grantee_id: Mapped[int | None] = mapped_column(ForeignKey("grantees.id"), nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    disabled_at = mapped_column(UTCDateTime, nullable=True)

    grantee = relationship("Grantee")


class Session(db.Model):
    """A session of a web user; only the SHA-256 of the token is kept.

    `kind` says how the token travels: `api` (a Bearer header, for scripts and pyODK) or `web`
    (an HttpOnly cookie of the browser app, which is also bound to a CSRF token). A token of one
    kind is never accepted as the other, so a stolen cookie cannot drive the API without CSRF."""
    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8), default="api", server_default="api")
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    expires_at = mapped_column(UTCDateTime, nullable=False)

    user = relationship(WebUser)


class AppUser(db.Model):
    """A device credential. The token sits in the device's server URL, as in ODK Central.

    It is kept in clear (like Central) because the QR code that configures a phone must be
    shown again later; revoking is the remedy for a lost phone.
    """
    __tablename__ = "app_users"
    __table_args__ = (UniqueConstraint("project_id", "display_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    display_name: Mapped[str] = mapped_column(String(255))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    grantee_id: Mapped[int | None] = mapped_column(ForeignKey("grantees.id"), nullable=True)
    is_evaluator: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    revoked_at = mapped_column(UTCDateTime, nullable=True)
    last_seen_at = mapped_column(UTCDateTime, nullable=True)

    grantee = relationship("Grantee")


class LoginAttempt(db.Model):
    """One sign-in attempt, kept for a while to slow down password guessing (see auth.throttle)."""
    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_email_at", "email", "at"),
                      Index("ix_login_attempts_address_at", "address", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    address: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
    at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
