"""Slowing down password guessing on every door a password comes through: the web sign-in
form, `POST /v1/sessions` and HTTP Basic (OData clients such as Excel and Power BI).

Attempts are rows of `login_attempts` in the database (not a process's memory), so every
gunicorn worker and every machine serving the programme sees the same count. Two budgets over
the last 15 minutes are checked before the password is, so a refused attempt costs no hash and
says nothing about the password; both refuse with 429.1:

- Per account: 5 failures against one e-mail, from any address, lock that e-mail, even for
  the right password, so no number of addresses lets a guesser brute-force one account.
  Made-up e-mails are counted and locked exactly like real ones: a lock never tells which
  accounts exist.
- Per address: 100 failures from one address, against any e-mails, stop password spraying (a
  few guesses at each of many accounts) from it. A field office's staff share one NAT address,
  though, and someone there trying made-up accounts must not lock them all out: this budget
  does not hold back an account that signed in from that very address in the last 30 days,
  which keeps only its own budget of 5. Anyone else (a first sign-in from that office during a
  spray) waits out the window, as the sprayer does. What a sprayer there can learn is which
  e-mails have signed in from that address before.

100 is far above what an office's staff mistype in 15 minutes, so 50 made-up e-mails from an
address still leave its budget open for everyone. A success does not erase earlier failures (a
guesser who knows one password must not reset the count for the others). Failures are kept a
day, successes 30 days, at most one a day per e-mail and address (Basic sends the password with
every request).

The address is `request.remote_addr`: the socket's peer, or the client that a trusted proxy
names when FIELDSYNC_TRUSTED_PROXIES is set (see `create_app`), never a header the client
could have written itself.
"""
from datetime import timedelta

from sqlalchemy import delete, func, or_, select

from .. import problems
from ..extensions import db, write_transaction
from ..models import LoginAttempt, utcnow

WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_ADDRESS = 100
FAMILIAR = timedelta(days=30)  # a success from an address this recent exempts from its budget
KEEP_FAILURES = timedelta(days=1)
SUCCESS_EVERY = timedelta(days=1)  # record a success again only after this long


def _key(email: str, address: str) -> tuple[str, str]:
    return (email or "").strip().lower()[:320], (address or "-")[:64]


def _failures(column, value, since) -> int:
    return db.session.scalar(select(func.count()).select_from(LoginAttempt).where(
        column == value, LoginAttempt.at >= since, LoginAttempt.succeeded.is_(False))) or 0


def _succeeded_here(email: str, address: str, since) -> bool:
    return db.session.scalar(select(LoginAttempt.id).where(
        LoginAttempt.email == email, LoginAttempt.address == address,
        LoginAttempt.succeeded.is_(True), LoginAttempt.at >= since).limit(1)) is not None


def check(email: str, address: str) -> None:
    """Refuse (429.1) when this e-mail, or this address for an e-mail new to it, failed too often lately."""
    email, address = _key(email, address)
    now = utcnow()
    if (_failures(LoginAttempt.email, email, now - WINDOW) >= MAX_FAILURES_PER_EMAIL
            or (_failures(LoginAttempt.address, address, now - WINDOW) >= MAX_FAILURES_PER_ADDRESS
                and not _succeeded_here(email, address, now - FAMILIAR))):
        raise problems.too_many_attempts(minutes=int(WINDOW.total_seconds() // 60))


def note(email: str, address: str, succeeded: bool) -> None:
    email, address = _key(email, address)
    now = utcnow()
    if succeeded and _succeeded_here(email, address, now - SUCCESS_EVERY):
        return  # already known at this address; no write for every Basic request
    # Not worth an fsync: a power cut that loses an attempt gives a guesser one try more.
    with write_transaction(durable=False):
        db.session.add(LoginAttempt(email=email, address=address, succeeded=succeeded, at=now))
        # Old attempts say nothing any more; keep the table small as we go.
        db.session.execute(delete(LoginAttempt).where(or_(
            LoginAttempt.at < now - FAMILIAR,
            LoginAttempt.succeeded.is_(False) & (LoginAttempt.at < now - KEEP_FAILURES))))
