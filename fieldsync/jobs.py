"""Scheduled background work, run by exactly one process however many are serving.

Every worker may start the scheduler; each run first takes a lease in the database
(`job_locks`), so on one laptop or on several machines sharing PostgreSQL a job runs once.
The lease expires by itself, so a killed holder never blocks the job for long.
"""
import logging
import os
import socket
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from .extensions import db, write_transaction
from .models import JobLock, utcnow

log = logging.getLogger(__name__)


def holder_id() -> str:
    """This process as a lease holder. Read at each call, not at import: a process forked after
    importing this module (gunicorn with preload, multiprocessing) must not share its parent's name."""
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire(name: str, ttl_seconds: float, holder: str | None = None) -> bool:
    """Take or renew the lease `name`; False when another live holder has it.

    The row is locked (PostgreSQL `FOR UPDATE`; SQLite's write lock) before it is judged, and
    two processes inserting the first lease at once end with one winner and one IntegrityError,
    which is rolled back and answered False.
    """
    holder = holder or holder_id()
    try:
        with write_transaction():
            lock = db.session.get(JobLock, name, with_for_update=True)
            # The clock is read once the row is ours: time spent waiting for another holder's
            # transaction must not be taken off the lease we write.
            now = utcnow()
            if lock is None:
                db.session.add(JobLock(name=name, holder=holder, expires_at=now + timedelta(seconds=ttl_seconds)))
                return True
            if lock.holder != holder and lock.expires_at > now:
                return False
            lock.holder, lock.expires_at = holder, now + timedelta(seconds=ttl_seconds)
            return True
    except IntegrityError:
        return False  # another process inserted the lease first


def release(name: str, holder: str | None = None) -> None:
    holder = holder or holder_id()
    with write_transaction():
        lock = db.session.get(JobLock, name, with_for_update=True)
        if lock is not None and lock.holder == holder:
            db.session.delete(lock)


def run_once(app, name: str, work, ttl_seconds: float = 600) -> bool:
    with app.app_context():
        if not acquire(name, ttl_seconds):
            return False
        try:
            work()
        except Exception:
            log.exception("job %s failed", name)
            db.session.rollback()
        finally:
            release(name)
            db.session.remove()
        return True


def start_scheduler(app):
    """Start the APScheduler jobs in this process (called when serving, not in tests or CLI),
    and, unless a derive worker process does it (`FIELDSYNC_DERIVE=process`), the thread that
    rebuilds records and indicators after each upload's response."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from . import indicators
    from .indicators import worker

    settings = app.config["FIELDSYNC"]
    scheduler = BackgroundScheduler(daemon=True, timezone="UTC")
    if settings["DERIVE"] != "process":
        # Derived work in this process: its thread after each upload, and a job for backlogs.
        # With the derive worker process (gunicorn's default) serving processes do neither.
        worker.start(app)
        scheduler.add_job(lambda: run_once(app, "indicators.pending", indicators.process_pending, 120),
                          "interval", seconds=30, id="indicators.pending", max_instances=1, coalesce=True)
    scheduler.add_job(lambda: run_once(app, "indicators.reconcile", lambda: indicators.recompute("schedule"), 3600),
                      "interval", minutes=settings["RECONCILE_MINUTES"], id="indicators.reconcile",
                      max_instances=1, coalesce=True)
    # Exports a stopped process left behind, and export files past their day.
    scheduler.add_job(lambda: run_once(app, "exports.stale", _exports_housekeeping, 3600),
                      "interval", minutes=2, id="exports.stale", max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler


def _exports_housekeeping() -> None:
    from . import exports
    exports.run_stale()
    exports.cleanup()
