"""Flask extension objects, created unbound and wired in `create_app` with `init_app`.

Also the SQLite connection settings: every SQLite connection gets WAL, foreign keys, a busy
timeout and full fsync, because a submission acknowledged with 201 must survive a power cut.
"""
import contextlib
import contextvars
import fcntl
import functools
import itertools
import logging
import os
import threading

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate(render_as_batch=True, compare_type=True)

SQLITE_BUSY_TIMEOUT_MS = 15_000


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def engine_options(database_url: str) -> dict:
    if database_url.startswith("sqlite"):
        # The driver is put in autocommit mode so that SQLAlchemy's own BEGIN (below) is what
        # starts each transaction; that lets writers say BEGIN IMMEDIATE.
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "isolation_level": None}}
    return {"pool_pre_ping": True}


_immediate = contextvars.ContextVar("fieldsync_sqlite_immediate", default=False)
_durable = contextvars.ContextVar("fieldsync_durable_commit", default=True)
log = logging.getLogger(__name__)


@contextlib.contextmanager
def write_transaction(durable: bool = True):
    """Run a block as one transaction that holds SQLite's write lock from its first statement.

    A deferred SQLite transaction that reads and then writes fails at once with "database is
    locked" when another writer got in between; one that starts with BEGIN IMMEDIATE waits its
    turn instead. On SQLite the turn is taken in the writer queue below (a lock file shared by
    every process on the database) before BEGIN, so writers wait in line rather than in
    SQLite's busy handler. On PostgreSQL this is a plain transaction.

    `durable=False` is for work that can be lost and redone: its commit does not wait for the
    disk (SQLite `synchronous=NORMAL` under WAL, PostgreSQL `synchronous_commit off`). A power
    cut may then undo the last such commits but never corrupts the database, and any later
    durable commit (an upload's) flushes them too, since the log is written in order. The
    derive worker uses it: its work queue row is deleted in the same transaction, so a lost
    commit brings the row back and the work is simply done again.
    """
    session = db.session
    session.commit()  # end whatever read transaction the request had open
    queue = _writer_queue(db.engine)
    with queue.turn() if queue is not None else contextlib.nullcontext():
        token, durable_token = _immediate.set(True), _durable.set(durable)
        try:
            if not durable and db.engine.dialect.name == "postgresql":
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            _immediate.reset(token)
            _durable.reset(durable_token)


# --- the SQLite writer queue ---------------------------------------------------------------
#
# SQLite has one write lock per database. A connection that does not get it at once waits in
# its busy handler (PRAGMA busy_timeout), which sleeps and retries with growing sleeps (1, 2,
# 5, 10, … up to 100 ms a try) and is not first come, first served: when the holder commits,
# whichever waiter happens to wake next wins, and an unlucky writer can lose many rounds in a
# row. Under 32 concurrent uploads that made p99 tens of times the median. So every
# write_transaction on a database file first takes its turn here: a per-process RLock
# (gunicorn's threads share one file description, and flock does not exclude them from each
# other), then an exclusive flock on `<database file>.writelock`, shared by every FieldSync
# process on that file (gunicorn workers, their derive threads and jobs, the CLI). A waiter blocks in the kernel and is woken when the holder
# unlocks: no polling, no sleep after the lock is free. The lock is released after the commit
# or the rollback, so BEGIN IMMEDIATE normally finds SQLite's lock free.
#
# The busy timeout stays the real guard: writers that do not come through here (migrations,
# backup restore, another program, a deferred transaction that writes) still take SQLite's
# lock, and a queued writer then waits for them in the busy handler as before. The queue
# only orders the writers that use it; it is never needed for correctness. It is not used on
# PostgreSQL (row locks, no single write lock) nor for an in-memory SQLite database (no file,
# and one connection). If the lock file cannot be opened (read-only folder, other owner) the
# queue is skipped with a warning and the busy timeout alone applies. Setting
# FIELDSYNC_SQLITE_WRITE_QUEUE=off does the same (to measure the difference).


class _WriterQueue:
    """The writer queue of one SQLite database file in this process (or, with another
    `suffix`, one of the named turns of `exclusive_turn`)."""

    def __init__(self, database_path: str, suffix: str = ".writelock"):
        self.database_path = database_path
        self.path = database_path + suffix
        self.lock = threading.RLock()
        self.depth = 0  # nested turns of the thread holding `lock`
        self.fd: int | None = None
        self.unusable = False

    def _descriptor(self) -> int | None:
        if self.fd is None and not self.unusable:
            try:
                mode = os.stat(self.database_path).st_mode & 0o666
            except OSError:
                mode = 0o644
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
            except OSError as error:
                self.unusable = True
                log.warning("SQLite writer queue off for %s (%s); relying on the busy timeout", self.path, error)
        return self.fd

    @contextlib.contextmanager
    def turn(self):
        with self.lock:
            # Only the outermost turn of a thread takes the flock: a nested write_transaction
            # (same thread, RLock re-entered) must not wait for itself.
            if self.depth == 0:
                fd = self._descriptor()
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks in the kernel until it is our turn
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
                if self.depth == 0 and self.fd is not None:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)


_queues: dict[str, _WriterQueue] = {}
_queues_pid = os.getpid()
_queues_guard = threading.Lock()


def _forget_queues_after_fork() -> None:
    # A forked child shares its parent's open file descriptions, so an inherited flock would
    # be the parent's lock, not a second one; and a lock object held by a thread that did not
    # survive the fork would never be released. Start the child with fresh queues.
    global _queues, _queues_pid, _queues_guard
    inherited = _queues
    _queues, _queues_pid, _queues_guard = {}, os.getpid(), threading.Lock()
    for queue in inherited.values():
        if queue.fd is not None:
            with contextlib.suppress(OSError):
                os.close(queue.fd)  # the parent's lock (if it holds one) stays with the parent


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_queues_after_fork)


def sqlite_database_file(engine) -> str | None:
    """The absolute path of an engine's SQLite database file; None for PostgreSQL or memory."""
    if engine.dialect.name != "sqlite":
        return None
    url = engine.url
    name = url.database or ""
    if name.startswith("file:"):  # a URI filename (sqlite:///file:...?uri=true)
        name = name[5:].split("?", 1)[0]
    if not name or name == ":memory:" or url.query.get("mode") == "memory" or "mode=memory" in (url.database or ""):
        return None
    return os.path.abspath(name)


def _writer_queue(engine) -> _WriterQueue | None:
    if os.environ.get("FIELDSYNC_SQLITE_WRITE_QUEUE", "on").lower() in ("off", "0", "no", "false"):
        return None
    return _file_queue(engine, ".writelock")


def _file_queue(engine, suffix: str) -> _WriterQueue | None:
    path = sqlite_database_file(engine)
    if path is None:
        return None
    if _queues_pid != os.getpid():  # forked without register_at_fork (or by a raw os.fork path)
        _forget_queues_after_fork()
    queue = _queues.get(path + suffix)
    if queue is None:
        with _queues_guard:
            queue = _queues.setdefault(path + suffix, _WriterQueue(path, suffix))
    return queue


@contextlib.contextmanager
def exclusive_turn(name: str):
    """Exclude every other thread and FieldSync process on this SQLite database that asks for
    the same `name`, for the whole block (which may span several transactions): a per-process
    RLock and a flock on `<database file>.<name>lock`, as the writer queue takes them.

    Yields True when the turn is held; False on PostgreSQL, for an in-memory database or when
    the lock file cannot be opened, and the caller must then rely on its transaction's own
    locks. Unlike the writer queue this is for correctness, so it is never switched off.
    Always taken before `write_transaction`, never inside one: a writer waiting for a turn
    while it holds SQLite's write lock could wait for a holder that waits for that lock.
    """
    if _immediate.get():
        raise RuntimeError(f"the {name!r} turn is taken before write_transaction, not inside one")
    queue = _file_queue(db.engine, f".{name}lock")
    if queue is None or queue._descriptor() is None:
        yield False
        return
    with queue.turn():
        yield True


def dialect_name() -> str:
    """The session's database dialect ("sqlite" or "postgresql"): the key of statements built
    once per dialect."""
    return db.session.get_bind().dialect.name


def dialect_insert(table, dialect: str | None = None):
    """INSERT for this database's dialect (or `dialect`), so that ON CONFLICT clauses can be added."""
    return (postgresql_insert if (dialect or dialect_name()) == "postgresql" else sqlite_insert)(table)


def insert_ignoring(table, key: tuple[str, ...], returning: tuple[str, ...] = ()):
    """INSERT … ON CONFLICT (`key`) DO NOTHING, RETURNING the `returning` columns if any, for
    this session's database: the insert-or-ignore of rows that two transactions may add at
    once. Built once per table, key and dialect; the rows go in as parameters."""
    return _insert_ignoring(table, tuple(key), tuple(returning), dialect_name())


@functools.cache
def _insert_ignoring(table, key: tuple[str, ...], returning: tuple[str, ...], dialect: str):
    statement = dialect_insert(table, dialect).on_conflict_do_nothing(index_elements=list(key))
    return statement.returning(*(table.c[name] for name in returning)) if returning else statement


def install_sqlite_begin(engine):
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # Each transaction says how its commit syncs (see write_transaction's `durable`); the
        # connection keeps the setting, so the pragma is only sent when it changes.
        synchronous = "FULL" if _durable.get() else "NORMAL"
        info = conn.connection.info
        if info.get("synchronous", "FULL") != synchronous:
            conn.exec_driver_sql(f"PRAGMA synchronous={synchronous}")
            info["synchronous"] = synchronous
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _immediate.get() else "BEGIN")


def _driver_statement(statement, dialect) -> tuple[str, object]:
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if compiled.positional:
        params = tuple(params[name] for name in compiled.positiontup)
    return str(compiled), params


def chunks(items, size=400):
    """`items` a slice at a time: for IN lists and executemany batches that must stay bounded
    (SQLite's limit on bound parameters, statement size)."""
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def plain_rows(statement) -> list[tuple]:
    """Every row of a Core SELECT as plain tuples, straight from the DBAPI cursor of the
    session's connection (in its transaction). For the full recompute's large reads, where
    building SQLAlchemy's rows cost more than the query; no result processing is done, so only
    for columns the driver already returns as Python wants them (integers, text), not dates
    or booleans on SQLite. Reads everything at once: for bounded batches."""
    connection = db.session.connection()
    sql, params = _driver_statement(statement, connection.dialect)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


_stream_names = itertools.count()


def plain_stream(statement, size: int = 10_000):
    """`plain_rows`, but yielded as the cursor reads them, `size` at a time (a server-side
    cursor on PostgreSQL): for reading a whole table without holding it."""
    connection = db.session.connection()
    sql, params = _driver_statement(statement, connection.dialect)
    driver = connection.connection.dbapi_connection
    if connection.dialect.name == "postgresql":
        cursor = driver.cursor(name=f"fieldsync_stream_{next(_stream_names)}")
    else:
        cursor = driver.cursor()
    try:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(size):
            yield from rows
    finally:
        cursor.close()
