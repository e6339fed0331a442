"""Grantee indicators: declarative definitions, values per grantee × period × disaggregation,
incremental updates, the reconcile job, targets.

Owns `indicator_*`, `targets` and `reconcile_runs`. May use models and records; never HTTP.
Listens for `signals.submissions_changed`: under gunicorn the derive worker process
(`fieldsync.pipeline`) finds the queued submissions itself, so an upload's 201 waits only for the
durable store; with `FIELDSYNC_DERIVE=thread` a serving process hands them to its background
`worker` thread; anything else (CLI, tests with Flask's test client) processes them at once. The
reconcile job catches up anything a failure left behind.
"""
import logging

from ..signals import submissions_changed
from . import worker
from .engine import definitions, process_pending, refresh_sources
from .reconcile import recompute

log = logging.getLogger(__name__)

__all__ = ["definitions", "drain", "init_app", "process_pending", "recompute", "refresh_sources"]


def drain(app, timeout: float = 30.0) -> int:
    """Bring indicators up to date now: wait for this process's background worker (if it has
    one), then process whatever is still queued in the database. Returns how many submissions
    this call processed itself. For tests, scripts and the CLI; requests never wait for it."""
    running = worker.current(app)
    if running is not None and not running.wait_idle(timeout):
        raise TimeoutError("the indicator worker did not finish in time")
    with app.app_context():
        return process_pending(limit=10**9)


def _on_submissions_changed(app, submission_ids=(), **_):
    if app.config["FIELDSYNC"]["DERIVE"] == "process":
        return  # the derive worker process finds them in the queue (fieldsync.pipeline)
    running = worker.current(app)
    if running is not None:
        running.submit(submission_ids)
        return
    # The change itself is committed already; a failure here must never undo or hide it.
    try:
        # A request rebuilds only what it changed; a backlog (after a restart, a burst that
        # outran it) is the scheduled job's, so no upload waits behind another's work.
        process_pending(only=submission_ids)
    except Exception:
        log.exception("indicator update failed; the reconcile job will catch up")
        from ..extensions import db
        db.session.rollback()


def init_app(app) -> None:
    submissions_changed.connect(_on_submissions_changed, sender=app, weak=False)
