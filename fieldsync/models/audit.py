"""The audit log: who did, saw or exported what, and when."""
import json

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow


class Audit(db.Model):
    __tablename__ = "audits"
    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("web_users.id"), nullable=True)
    actor_app_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_users.id"), nullable=True)
    subject_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    subject_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    details_json: Mapped[str] = mapped_column(Text, default="{}")
    logged_at = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)

    @property
    def details(self) -> dict:
        return json.loads(self.details_json)
