"""The derive worker process: works through `pending_records` in small transactions, at a
lower OS priority than the serving processes, until told to stop.

Each round claims a few submissions (SQLite's write lock, PostgreSQL's SKIP LOCKED), rebuilds
their records and the indicator sources they touch, commits, and searches the look-alikes of the
persons their registers brought. With nothing queued it sleeps a moment and looks again: uploads
wait for nothing of this, so a backlog that grows during a burst is caught up after it.
"""
import logging
import os
import signal
import threading

from sqlalchemy.exc import OperationalError

from ..extensions import db
from .supervise import SUPERVISED

log = logging.getLogger(__name__)
BATCH = 5       # submissions per transaction: an upload waits at most one batch for SQLite's lock
ROUND = 50      # submissions per round, between which a stop request is heard
POLL = 0.2      # seconds between looks at an empty queue
NICE = 10       # added to the worker's OS priority: serving processes come first on the CPU


def run(app, stop: threading.Event | None = None, nice: int = NICE, poll: float = POLL) -> int:
    """Process the queue until `stop` is set (or SIGTERM/SIGINT arrive); returns how many
    submissions were processed."""
    from ..indicators import process_pending

    stop = stop or _stop_on_signals()
    if nice:
        try:
            os.nice(nice)
        except OSError:
            log.warning("could not lower the derive worker's priority")
    done = 0
    # Started by a server's supervisor: end with it, even when it was SIGKILLed and could not
    # say so (a worker of a dead server would otherwise go on beside the next one's).
    parent = os.getppid() if os.environ.get(SUPERVISED) else None
    log.info("derive worker %s started", os.getpid())
    while not stop.is_set() and (parent is None or os.getppid() == parent):
        try:
            with app.app_context():
                try:
                    step = process_pending(limit=ROUND, batch=BATCH)
                finally:
                    db.session.remove()
        except OperationalError:
            # The database went away (a restart, a killed backend): nothing is lost, the rows
            # are still queued. Wait a little and go on.
            log.exception("derive worker: database unavailable; retrying")
            step = 0
            stop.wait(1.0)
        except Exception:
            log.exception("derive worker: a round failed; its rows stay queued")
            step = 0
            stop.wait(1.0)
        done += step
        if step == 0:
            stop.wait(poll)
    log.info("derive worker %s stopped after %s submissions", os.getpid(), done)
    return done


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(_signum, _frame):
        stop.set()
    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
