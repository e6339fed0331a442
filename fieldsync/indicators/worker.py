"""Rebuilding records and indicators after the response, in a thread of each serving process.

A request that changes submissions commits them together with their `pending_records` rows,
then answers (201 for an upload): that commit is all a device waits for. The signal
`submissions_changed` then hands the submission ids to this process's `DeriveWorker`, which
processes them moments later in its own transaction (then the look-alike search for the
persons their registers brought, see `records.persons`). Nothing depends on the thread for
correctness: the queue is the `pending_records` table, so what a killed process (SIGKILL,
power cut) had not processed yet is still queued, and the scheduled `indicators.pending` job
(and every worker when it starts) catches it up. Processing a submission twice is harmless:
its pending row is claimed and deleted in the transaction that rebuilds it, and a rebuild
only applies the difference from what its sources last contributed.

Without a worker (the CLI, `demo load`, Flask's test client in the tests) the signal is
handled in the request itself, so indicators have moved by the time it returns.
"""
import logging
import os
import queue
import threading
import time

from .. import signals
from ..extensions import db

log = logging.getLogger(__name__)
EXTENSION = "fieldsync.derive_worker"
COALESCE = 25  # submissions taken from the in-memory queue at once
BATCH = 5      # submissions per transaction: SQLite's write lock is held for one batch only
GIVE_WAY = 0.5  # seconds a batch waits at most for this process's uploads to be stored first


class DeriveWorker:
    def __init__(self, app):
        self.app = app
        self.queue: queue.Queue = queue.Queue()
        self.unfinished = 0
        self.idle = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="fieldsync-derive", daemon=True)
        self.pid = os.getpid()

    def start(self, catch_up: bool = True) -> "DeriveWorker":
        if catch_up:
            self.submit(None)  # whatever a previous process left queued in the database
        self.thread.start()
        return self

    def submit(self, submission_ids) -> None:
        """Queue submission ids (None: the whole database queue) for processing."""
        with self.idle:
            self.unfinished += 1
        self.queue.put(None if submission_ids is None else tuple(submission_ids))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is processed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.idle:
            while self.unfinished:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.idle.wait(left)
        return True

    def _take(self) -> tuple[list, bool, int]:
        first = self.queue.get()
        items = [first]
        while len(items) < COALESCE:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                break
        everything = any(item is None for item in items)
        ids = sorted({i for item in items if item is not None for i in item})
        return ids, everything, len(items)

    def _run(self) -> None:
        from . import engine
        while True:
            ids, everything, taken = self._take()
            # Uploads first: a device waits for its 201, a rebuild can wait a moment. Bounded,
            # so that under a sustained load the rebuild still goes on.
            signals.wait_quiet(GIVE_WAY)
            try:
                with self.app.app_context():
                    try:
                        # The whole database queue (at start: a killed process's leftovers), or
                        # only the submissions named. Several processes may walk one backlog at
                        # once: each batch claims its rows (SQLite's write lock, PostgreSQL's
                        # SKIP LOCKED), so none is processed twice; no lease is taken, so a
                        # lease a killed holder left cannot hold the catch-up back.
                        if everything:
                            engine.process_pending(limit=10**9, batch=BATCH)
                        if ids:
                            engine.process_pending(only=ids, batch=BATCH)
                    except Exception:
                        log.exception("indicator update failed; the pending job will catch up")
                        db.session.rollback()
                    finally:
                        db.session.remove()
            except Exception:
                log.exception("derive worker step failed")
            finally:
                with self.idle:
                    self.unfinished -= taken
                    self.idle.notify_all()


def start(app) -> DeriveWorker:
    """Give this serving process its worker; from then on uploads answer before the rebuild."""
    worker = current(app)
    if worker is None:
        worker = app.extensions[EXTENSION] = DeriveWorker(app).start()
    return worker


def current(app) -> DeriveWorker | None:
    """This process's running worker, or None (then the caller rebuilds in-line). A worker
    inherited through a fork has no thread in the child, so it does not count."""
    worker = app.extensions.get(EXTENSION)
    if worker is None or getattr(worker, "pid", os.getpid()) != os.getpid():
        return None
    return worker
