"""Signals between rooms, so that a room can react to another's change without importing it.

`submissions_changed` is sent after a transaction that queued submissions for their records
to be rebuilt has committed; the indicators room listens and processes the queue.
"""
from blinker import Namespace

_signals = Namespace()
submissions_changed = _signals.signal("submissions-changed")
