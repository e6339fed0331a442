"""The SQLite writer queue in `extensions.write_transaction`: writers on one database file take
turns through a per-process lock and an flock on `<database>.writelock`, so a writer waits in
line (woken when the holder commits) instead of polling in SQLite's busy handler. At the end,
the named turns of `extensions.exclusive_turn`, built the same way.

The cross-process tests make SQLite's busy timeout short (200 ms) in the waiting process and
hold the write lock much longer in another process: without the queue the waiter's BEGIN
IMMEDIATE fails with "database is locked" (shown by the control test with the queue off);
with it the waiter blocks in flock and proceeds as soon as the holder commits.
"""
import fcntl
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from conftest import ROOT, backend
from fieldsync import create_app, extensions
from fieldsync.extensions import db, sqlite_database_file, write_transaction

sqlite_only = pytest.mark.skipif(backend() != "sqlite", reason="the writer queue is SQLite's")

HOLDER = textwrap.dedent("""
    import sys
    from sqlalchemy import text
    from fieldsync import create_app
    from fieldsync.extensions import db, write_transaction
    app = create_app({"INSTANCE_PATH": sys.argv[1], "DATABASE_URL": sys.argv[2]})
    with app.app_context():
        with write_transaction() as session:
            session.execute(text("INSERT INTO queue_probe (who) VALUES ('holder')"))
            print("held", flush=True)  # SQLite's write lock and the queue are both ours now
            sys.stdin.readline()       # until the test says go
        print("released", flush=True)
        db.engine.dispose()
""")


def _probe_table(app):
    with app.app_context():
        with write_transaction() as session:
            session.execute(text("CREATE TABLE IF NOT EXISTS queue_probe (id INTEGER PRIMARY KEY, who TEXT)"))
        db.session.remove()


def _probe_rows(app) -> list[str]:
    with app.app_context():
        rows = [r[0] for r in db.session.execute(text("SELECT who FROM queue_probe ORDER BY id"))]
        db.session.remove()
        return rows


def _start_holder(folder, url) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), url], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = holder.stdout.readline().strip()
    assert line == "held", (line, holder.stderr.read() if holder.poll() is not None else "")
    return holder


def _lock_file(url: str) -> str:
    return sqlite_database_file(create_engine(url)) + ".writelock"


def _flock_is_free(path: str) -> bool:
    """Whether another open file description (as another process would) can take the flock now."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


@pytest.fixture
def short_busy_app(instance, monkeypatch):
    """An app whose SQLite connections give up after 200 ms in the busy handler."""
    monkeypatch.setattr(extensions, "SQLITE_BUSY_TIMEOUT_MS", 200)
    folder, url = instance
    application = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": url})
    _probe_table(application)
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def _write_in_thread(app, who: str):
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            with app.app_context():
                with write_transaction() as session:
                    outcome["seen_before_writing"] = [r[0] for r in session.execute(
                        text("SELECT who FROM queue_probe ORDER BY id"))]
                    session.execute(text("INSERT INTO queue_probe (who) VALUES (:who)"), {"who": who})
                db.session.remove()
        except Exception as error:  # reported to the test
            outcome["error"] = error
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@sqlite_only
def test_a_writer_waits_for_another_process_in_the_queue_then_proceeds(short_busy_app, instance):
    folder, url = instance
    holder = _start_holder(folder, url)
    try:
        thread, outcome = _write_in_thread(short_busy_app, "waiter")
        time.sleep(0.8)  # four times the waiter's busy timeout
        assert thread.is_alive() and not outcome, outcome  # still waiting its turn, not failed
        released_at = time.monotonic()
        holder.stdin.write("go\n")
        holder.stdin.flush()
        thread.join(15)
        assert not thread.is_alive()
        waited_after_release = time.monotonic() - released_at
    finally:
        holder.stdin.close()
        holder.wait(15)
    assert "error" not in outcome, outcome["error"]
    assert outcome["seconds"] >= 0.8
    assert waited_after_release < 5  # woken when the holder committed, not at some later poll
    assert outcome["seen_before_writing"] == ["holder"]  # its transaction began after the holder's commit
    assert _probe_rows(short_busy_app) == ["holder", "waiter"]
    assert _flock_is_free(_lock_file(url))


@sqlite_only
def test_without_the_queue_the_same_wait_fails_in_the_busy_handler(short_busy_app, instance, monkeypatch):
    """The control: the test above measures the queue, not a long busy timeout."""
    monkeypatch.setenv("FIELDSYNC_SQLITE_WRITE_QUEUE", "off")
    folder, url = instance
    holder = _start_holder(folder, url)
    try:
        thread, outcome = _write_in_thread(short_busy_app, "waiter")
        thread.join(10)
    finally:
        holder.stdin.write("go\n")
        holder.stdin.close()
        holder.wait(15)
    assert isinstance(outcome.get("error"), OperationalError) and "locked" in str(outcome["error"])
    assert _probe_rows(short_busy_app) == ["holder"]


@sqlite_only
def test_threads_of_one_process_take_turns(app):
    _probe_table(app)
    entered, leave = threading.Event(), threading.Event()

    def hold():
        with app.app_context():
            with write_transaction() as session:
                session.execute(text("INSERT INTO queue_probe (who) VALUES ('first')"))
                entered.set()
                leave.wait(15)
            db.session.remove()

    first = threading.Thread(target=hold, daemon=True)
    first.start()
    assert entered.wait(15)
    second, outcome = _write_in_thread(app, "second")
    time.sleep(0.3)
    assert second.is_alive() and not outcome  # queued behind the first thread (the RLock)
    leave.set()
    first.join(15)
    second.join(15)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["seen_before_writing"] == ["first"]
    assert _probe_rows(app) == ["first", "second"]


@sqlite_only
def test_an_exception_rolls_back_and_releases_the_queue(app, instance):
    _probe_table(app)
    lock_file = _lock_file(instance[1])
    with app.app_context():
        with pytest.raises(RuntimeError):
            with write_transaction() as session:
                session.execute(text("INSERT INTO queue_probe (who) VALUES ('lost')"))
                assert not _flock_is_free(lock_file)  # held inside
                raise RuntimeError("boom")
        assert _flock_is_free(lock_file)
        queue = extensions._writer_queue(db.engine)
        assert queue.depth == 0
        took = []
        other = threading.Thread(target=lambda: took.append(queue.lock.acquire(timeout=5) and queue.lock.release()))
        other.start()
        other.join(10)
        assert took == [None]  # another thread could take the process lock: it was released
        with write_transaction() as session:  # and the next writer goes ahead
            session.execute(text("INSERT INTO queue_probe (who) VALUES ('next')"))
        db.session.remove()
    assert _probe_rows(app) == ["next"]


@sqlite_only
def test_nested_write_transactions_do_not_deadlock(app, instance):
    _probe_table(app)
    lock_file = _lock_file(instance[1])
    done = []

    def nested():
        with app.app_context():
            with write_transaction() as outer:
                outer.execute(text("INSERT INTO queue_probe (who) VALUES ('outer')"))
                with write_transaction() as inner:
                    inner.execute(text("INSERT INTO queue_probe (who) VALUES ('inner')"))
                done.append(_flock_is_free(lock_file))  # still the outer's turn
                outer.execute(text("INSERT INTO queue_probe (who) VALUES ('outer again')"))
            done.append(_flock_is_free(lock_file))
            db.session.remove()

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "nested write_transaction deadlocked"
    assert done == [False, True]
    assert _probe_rows(app) == ["outer", "inner", "outer again"]


@sqlite_only
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_share_its_parents_turn(app, instance):
    """After fork the child reopens the lock file: it must not see the parent's flock as its own."""
    lock_file = _lock_file(instance[1])
    with app.app_context():
        with write_transaction() as session:
            session.execute(text("SELECT 1"))
            parent_queue = extensions._writer_queue(db.engine)
            assert parent_queue.fd is not None
            pid = os.fork()
            if pid == 0:  # the child: report through the exit code only
                code = 1
                try:
                    queue = extensions._writer_queue(db.engine)
                    if queue is not parent_queue and queue.fd is None and queue.depth == 0:
                        try:
                            fcntl.flock(queue._descriptor(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                            code = 2  # took the parent's lock: shared, wrong
                        except BlockingIOError:
                            code = 0
                finally:
                    os._exit(code)
            _pid, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert not _flock_is_free(lock_file)
        db.session.remove()


def test_no_queue_for_postgresql_or_memory(tmp_path):
    assert sqlite_database_file(create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/x")) is None
    assert sqlite_database_file(create_engine("sqlite://")) is None
    assert sqlite_database_file(create_engine("sqlite:///:memory:")) is None
    assert sqlite_database_file(create_engine("sqlite:///file:probe?mode=memory&uri=true", poolclass=NullPool)) is None
    assert sqlite_database_file(create_engine(f"sqlite:///{tmp_path / 'a.db'}")) == str(tmp_path / "a.db")
    assert sqlite_database_file(create_engine(f"sqlite:///file:{tmp_path / 'b.db'}?uri=true")) == str(tmp_path / "b.db")


def test_the_database_in_use_gets_the_queue_only_on_sqlite(app, instance):
    folder, url = instance
    with app.app_context():
        queue = extensions._writer_queue(db.engine)
        with write_transaction() as session:
            session.execute(text("SELECT 1"))
        db.session.remove()
    lock_files = list(folder.rglob("*.writelock"))
    if backend() == "postgresql":
        assert queue is None and lock_files == []
    else:
        assert queue is not None and [str(p) for p in lock_files] == [queue.path]


@sqlite_only
def test_the_queue_can_be_switched_off(app, monkeypatch):
    monkeypatch.setenv("FIELDSYNC_SQLITE_WRITE_QUEUE", "off")
    with app.app_context():
        assert extensions._writer_queue(db.engine) is None


def _sync_setting(session) -> str:
    if backend() == "sqlite":
        return {0: "off", 1: "normal", 2: "full", 3: "extra"}[session.execute(text("PRAGMA synchronous")).scalar()]
    return session.execute(text("SHOW synchronous_commit")).scalar()


def test_only_a_write_transaction_marked_not_durable_skips_the_disk_flush(app):
    """The derive worker's transactions (durable=False) commit without waiting for the disk;
    every other transaction, before and after one of them on the same connection, still does."""
    durable = "full" if backend() == "sqlite" else "on"
    with app.app_context():
        with write_transaction() as session:
            assert _sync_setting(session) == durable
        with write_transaction(durable=False) as session:
            assert _sync_setting(session) in ("normal", "off")
        with write_transaction() as session:
            assert _sync_setting(session) == durable
        assert _sync_setting(db.session) == durable  # a plain (read or ORM) transaction too
        db.session.remove()


# --- the named turns (exclusive_turn) ------------------------------------------------------

@sqlite_only
def test_a_named_turn_is_held_across_transactions_and_excludes_another_process(app):
    """`exclusive_turn("indicators")` holds a flock on `<database>.indicatorslock` for its whole
    block, however many transactions run inside, and releases it at the end."""
    with app.app_context():
        path = sqlite_database_file(db.engine) + ".indicatorslock"
        with extensions.exclusive_turn("indicators") as held:
            assert held is True
            for _ in range(2):
                with write_transaction() as session:
                    session.execute(text("SELECT 1"))
                assert not _flock_is_free(path)  # still ours between the transactions
            assert _flock_is_free(_lock_file(app.config["SQLALCHEMY_DATABASE_URI"]))  # not the writer queue
        assert _flock_is_free(path)
        db.session.remove()


def test_a_named_turn_is_never_taken_inside_a_write_transaction(app):
    """Taken inside a write transaction, a turn could wait for a holder that waits for the
    write lock: it is refused at once instead."""
    with app.app_context():
        with pytest.raises(RuntimeError, match="before write_transaction"):
            with write_transaction():
                with extensions.exclusive_turn("indicators"):
                    pass
        db.session.remove()


@pytest.mark.skipif(backend() != "postgresql", reason="PostgreSQL has no lock file")
def test_a_named_turn_on_postgresql_is_not_held(app):
    with app.app_context():
        with extensions.exclusive_turn("indicators") as held:
            assert held is False
