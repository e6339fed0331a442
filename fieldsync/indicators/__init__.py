"""Grantee indicators: declarative definitions, values per grantee × period × disaggregation,
incremental updates, the reconcile job, targets.

Owns `indicator_*`, `targets` and `reconcile_runs`. May use models and records; never HTTP.
Listens for `signals.submissions_changed` and processes the record queue then, so values move
as soon as a submission lands; the reconcile job catches anything a failure left behind.
"""
import logging

from ..signals import submissions_changed
from .engine import definitions, process_pending, recompute, refresh_sources

log = logging.getLogger(__name__)

__all__ = ["definitions", "init_app", "process_pending", "recompute", "refresh_sources"]


def _on_submissions_changed(app, submission_ids=(), **_):
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
