"""Flask extension objects, created unbound and wired in `create_app` with `init_app`.

Also the SQLite connection settings: every SQLite connection gets WAL, foreign keys, a busy
timeout and full fsync, because a submission acknowledged with 201 must survive a power cut.
"""
import contextlib
import contextvars

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, event
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


@contextlib.contextmanager
def write_transaction():
    """Run a block as one transaction that holds SQLite's write lock from its first statement.

    A deferred SQLite transaction that reads and then writes fails at once with "database is
    locked" when another writer got in between; one that starts with BEGIN IMMEDIATE waits its
    turn instead (busy timeout). On PostgreSQL this is a plain transaction.
    """
    session = db.session
    session.commit()  # end whatever read transaction the request had open
    token = _immediate.set(True)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        _immediate.reset(token)


def install_sqlite_begin(engine):
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if _immediate.get() else "BEGIN")
