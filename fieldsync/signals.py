"""Signals between rooms, so that a room can react to another's change without importing it.

`submissions_changed` is sent after a transaction that queued submissions for their records
to be rebuilt has committed; the indicators room listens and processes the queue.

`receiving()` marks an upload being stored in this process, and `wait_quiet()` lets
background work (the indicator worker) give way to uploads: a device waits for its 201, a
rebuild can wait a moment.
"""
import contextlib
import threading
import time

from blinker import Namespace

_signals = Namespace()
submissions_changed = _signals.signal("submissions-changed")

_uploads = 0
_quiet = threading.Condition()


@contextlib.contextmanager
def receiving():
    global _uploads
    with _quiet:
        _uploads += 1
    try:
        yield
    finally:
        with _quiet:
            _uploads -= 1
            if not _uploads:
                _quiet.notify_all()


def wait_quiet(at_most: float) -> bool:
    """Wait until no upload is being stored in this process, for at most `at_most` seconds;
    True if it is quiet."""
    deadline = time.monotonic() + at_most
    with _quiet:
        while _uploads:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _quiet.wait(left)
    return True
