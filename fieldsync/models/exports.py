"""Export jobs: a long export asked for in the web app, run in the background.

The row is the recorded event that starts the work (a worker thread picks it up at once, the
scheduled job picks up any that a stopped process left behind), and it carries the progress
the browser polls. The file it produces lives under the instance folder, never in the table.
"""
from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .base import UTCDateTime, utcnow

EXPORT_STATES = ("pending", "running", "done", "failed")


class ExportJob(db.Model):
    __tablename__ = "export_jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # e.g. submissions.zip, submissions.xlsx, indicators.csv
    params: Mapped[str] = mapped_column(Text, default="{}")  # JSON: form, personal, filters
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    done_rows: Mapped[int] = mapped_column(Integer, default=0)
    total_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)
    file_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    file_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    lease_until = mapped_column(UTCDateTime, nullable=True)  # a running job whose lease lapsed is retried
    created_at = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    started_at = mapped_column(UTCDateTime, nullable=True)
    finished_at = mapped_column(UTCDateTime, nullable=True)

    user = relationship("WebUser")
