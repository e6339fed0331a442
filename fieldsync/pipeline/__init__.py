"""What happens after the 201: the queue of submissions whose records and indicators are to be
rebuilt (`pending_records`), and who works through it.

An upload commits its submission together with its queue row and answers; it never waits for
derived work. Under gunicorn that work runs in a process of its own (`worker`: `flask --app app
worker`, started by gunicorn's master through a small supervisor process (`supervise`) that
keeps it alive, at a lower OS priority), so it never takes
the CPU or the GIL a serving process needs, and on SQLite it holds the write lock only for one
small batch at a time. The queue is the database: a killed worker loses nothing, and the next one
(or `drain`) picks up where it stopped.

How derived work runs (`FIELDSYNC_DERIVE`):
- `process`: by the worker process only (gunicorn's default, see gunicorn.conf.py);
- `thread`: by a thread of each serving process (`indicators.worker`, the earlier way);
- `inline`: in the request or command that queued it (the CLI, Flask's test client).

Uses indicators (the rebuild itself) and records; never HTTP.
"""
from .worker import run

__all__ = ["run"]
