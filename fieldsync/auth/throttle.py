"""Slowing down password guessing: sign-in attempts are counted per e-mail and per address.

Kept in the database (not in a process's memory), so every gunicorn worker and every machine
serving the programme sees the same count. After too many failures in the window, further
attempts are refused before the password is even checked, with the time to wait; a success
does not erase earlier failures for that address (a guesser who knows one password must not
reset the count for the others).
"""
from datetime import timedelta

from sqlalchemy import delete, func, select

from .. import problems
from ..extensions import db, write_transaction
from ..models import LoginAttempt, utcnow

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_ADDRESS = 20
KEEP = timedelta(days=1)


def _failures(column, value, since) -> int:
    return db.session.scalar(select(func.count()).select_from(LoginAttempt).where(
        column == value, LoginAttempt.at >= since, LoginAttempt.succeeded.is_(False))) or 0


def check(email: str, address: str) -> None:
    """Refuse (429.1) when this e-mail or this address failed too often lately."""
    since = utcnow() - WINDOW
    email = (email or "").strip().lower()[:320]
    if (_failures(LoginAttempt.email, email, since) >= MAX_FAILURES_PER_EMAIL
            or _failures(LoginAttempt.address, address[:64], since) >= MAX_FAILURES_PER_ADDRESS):
        raise problems.too_many_attempts(minutes=int(WINDOW.total_seconds() // 60))


def note(email: str, address: str, succeeded: bool) -> None:
    now = utcnow()
    with write_transaction():
        db.session.add(LoginAttempt(email=(email or "").strip().lower()[:320], address=address[:64],
                                    succeeded=succeeded, at=now))
        # Old attempts say nothing any more; keep the table small as we go.
        db.session.execute(delete(LoginAttempt).where(LoginAttempt.at < now - KEEP))
