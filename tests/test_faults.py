"""Faults from outside the code: the database dropping connections, a full disk, and several
processes running the scheduler at once.

- PostgreSQL backends killed (`pg_terminate_backend`) under a live gunicorn server: a clean 503
  for the requests hit, recovery at once, nothing acknowledged with 201 lost.
- The attachment disk full (a real, tiny tmpfs under `blobs/`): a clean 507 for Collect,
  nothing half-stored, and the resend succeeds once space is freed.
- Two processes hammering one scheduled job on one database: runs never overlap.
"""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import requests
from lxml import etree
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url

from fieldsync import create_app, jobs, problems, storage
from fieldsync.extensions import db
from fieldsync.models import Blob, JobLock, Submission, SubmissionAttachment

from collect import OPENROSA, SEMINAR, instance_id_of, instance_xml, post
from conftest import ROOT, backend

pytestmark = [pytest.mark.slow, pytest.mark.fault]

NS_RESPONSE = "http://openrosa.org/http/response"
postgres_only = pytest.mark.skipif(backend() != "postgresql",
                                   reason="kills PostgreSQL server backends; SQLite has no connections to kill")
TERMINATE = ("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE datname = current_database() AND pid <> pg_backend_pid()")


# ---------------------------------------------------------------- helpers

def envelope_message(body: bytes) -> str:
    root = etree.fromstring(body)
    assert root.tag == f"{{{NS_RESPONSE}}}OpenRosaResponse"
    message = root.find(f"{{{NS_RESPONSE}}}message")
    assert message.get("nature") == "error"
    return message.text


def assert_problem_envelope(status, headers, body, problem):
    """A problem rendered for Collect: its status, OpenRosa headers, its message in the envelope."""
    expected = problem()
    assert status == expected.status, body
    assert headers["Content-Type"].startswith("text/xml")
    assert headers["X-OpenRosa-Version"] == "1.0"
    assert envelope_message(body) == expected.message


def send(base_url, token, xml, files=None, timeout=30):
    parts = {"xml_submission_file": ("instance.xml", xml, "text/xml")}
    for name, content in (files or {}).items():
        parts[name] = (name, content, "image/jpeg")
    return requests.post(f"{base_url}/v1/key/{token}/projects/1/submission?deviceID=collect%3Afault",
                         files=parts, headers=OPENROSA, timeout=timeout)


def pg_connect(database_url: str, autocommit=True) -> psycopg.Connection:
    """A connection of the test's own to the instance's database (not through the app)."""
    url = make_url(database_url)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                           password=url.password, dbname=url.database, autocommit=autocommit)


def terminate_others(conn) -> list[int]:
    """Kill every other backend on this database; returns the pids signalled."""
    return [pid for pid, ok in conn.execute(TERMINATE).fetchall() if ok]


def gone(conn, pids) -> bool:
    return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                        (list(pids),)).fetchone()[0] == 0


def wait_until(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def submissions_with(app, instance_id) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Submission)
                                 .where(Submission.instance_id == instance_id))


def assert_stored_once(app, uploads):
    """Every upload is exactly one submission whose attachment holds exactly the bytes sent."""
    with app.app_context():
        for xml, files in uploads:
            rows = db.session.scalars(select(Submission)
                                      .where(Submission.instance_id == instance_id_of(xml))).all()
            assert len(rows) == 1, instance_id_of(xml)
            (name, content), = files.items()
            attachment, = rows[0].current_def.attachments
            assert attachment.name == name
            assert attachment.blob.sha256 == hashlib.sha256(content).hexdigest()
            assert storage.read_bytes(attachment.blob) == content


@pytest.fixture
def device(make_app_user):
    return make_app_user(name="fault phone", grantee="chinek")


def served_form_xml(base_url, token) -> bytes:
    response = requests.get(f"{base_url}/v1/key/{token}/projects/1/forms/seminar_attendance.xml", timeout=10)
    assert response.status_code == 200
    return response.content


def seminar_uploads(form_xml, count, size=30_000, tag="v"):
    uploads = []
    for i in range(count):
        xml = instance_xml(form_xml, {**SEMINAR, "village": f"{tag} {i}", "photo": f"{tag}{i}.jpg"})
        photo = b"\xff\xd8\xff" + hashlib.sha256(f"{tag}{i}".encode()).digest() * (size // 32)
        uploads.append((xml, {f"{tag}{i}.jpg": photo}))
    return uploads


# ---------------------------------------- 1. PostgreSQL connections killed under a live server

@postgres_only
def test_killed_pooled_connections_are_replaced_before_the_next_request(app, instance, live_server, device):
    """Between requests: every pooled connection of both workers dies; the next requests never
    see it (pool_pre_ping replaces the dead connection at checkout)."""
    _, database_url = instance
    server = live_server(workers=2)
    token = device["token"]
    form_xml = served_form_xml(server.url, token)
    uploads = seminar_uploads(form_xml, 12, tag="idle")
    with pg_connect(database_url) as admin:
        for xml, files in uploads:
            # Warm both workers' pools, then kill everything they hold while they are idle.
            for _ in range(4):
                assert requests.get(f"{server.url}/v1/key/{token}/projects/1/formList",
                                    headers=OPENROSA, timeout=10).status_code == 200
            killed = terminate_others(admin)
            assert killed and wait_until(lambda: gone(admin, killed))
            response = send(server.url, token, xml, files)
            assert response.status_code == 201, response.text
    assert_stored_once(app, uploads)


@postgres_only
def test_connection_killed_inside_a_write_transaction_is_a_clean_503(app, instance, live_server, device):
    """Deterministically mid-request: the upload's write transaction is made to wait on a row
    lock the test holds, then its backend is killed. Collect gets 503.1, nothing is stored,
    and the resend is a normal 201."""
    _, database_url = instance
    server = live_server(workers=1)
    token = device["token"]
    upload = seminar_uploads(served_form_xml(server.url, token), 1, tag="locked")[0]
    with pg_connect(database_url, autocommit=False) as holder:
        # ingest touches the device's app_users row (last seen) inside its write transaction.
        holder.execute("SELECT id FROM app_users WHERE token = %s FOR UPDATE", (token,)).fetchone()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(send, server.url, token, *upload)
            assert wait_until(lambda: holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'").fetchone()[0] == 1), "the upload never waited on the lock"
            assert terminate_others(holder)
            holder.rollback()
            response = pending.result(timeout=30)
    assert_problem_envelope(response.status_code, response.headers, response.content, problems.unavailable)
    assert submissions_with(app, instance_id_of(upload[0])) == 0
    # The server is fine at once, and the resend lands.
    response = send(server.url, token, *upload)
    assert response.status_code == 201, response.text
    assert_stored_once(app, [upload])


@postgres_only
def test_connections_killed_during_a_burst_give_503s_never_500s(app, instance, live_server, device):
    """Backends killed every few milliseconds while eight uploads are always in flight: every
    answer is 201 or a clean 503.1, the server never falls over, and after the storm every
    upload (resent, as Collect does for anything without a 201) is stored exactly once."""
    _, database_url = instance
    server = live_server(workers=2)
    token = device["token"]
    uploads = seminar_uploads(served_form_xml(server.url, token), 120, tag="storm")
    answers, lock = [], threading.Lock()
    done, kills = threading.Event(), []

    def one(upload):
        response = send(server.url, token, *upload)  # a connection error would fail the test
        if response.status_code != 201:
            assert_problem_envelope(response.status_code, response.headers, response.content,
                                    problems.unavailable)
        with lock:
            answers.append((response.status_code, upload))

    def killer():
        with pg_connect(database_url) as admin:
            while not done.is_set():
                kills.extend(terminate_others(admin))
                time.sleep(0.25)  # often enough to hit most requests, seldom enough that some get through

    storm = threading.Thread(target=killer, daemon=True)
    storm.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, uploads))
    finally:
        done.set()
        storm.join(10)
    statuses = sorted({status for status, _ in answers})
    assert set(statuses) <= {201, 503}, statuses
    assert kills
    unavailable = sum(1 for status, _ in answers if status == 503)
    acknowledged = [upload for status, upload in answers if status == 201]
    assert unavailable > 0, "no request was hit: the fault was not exercised"
    assert acknowledged, "nothing got through the storm: nothing acknowledged to check"
    with app.app_context():
        for xml, _ in acknowledged:
            assert db.session.scalar(select(func.count()).select_from(Submission)
                                     .where(Submission.instance_id == instance_id_of(xml))) == 1
    assert_stored_once(app, acknowledged)

    # Recovery: the very next round of resends all succeeds, and each upload lands exactly once.
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda upload: send(server.url, token, *upload).status_code, uploads))
    assert statuses == [201] * len(uploads)
    assert_stored_once(app, uploads)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == len(uploads)
    log = (server.folder / f"server-{server.port}.log").read_text()
    assert "unhandled error" not in log
    assert "database unavailable" in log  # the 503s were the database handler's, logged as such


@postgres_only
def test_connection_lost_at_commit_is_503_and_nothing_is_stored(app, client, instance, device):
    """The upload's COMMIT itself fails: the backend is killed after every statement of the
    write transaction ran and just before COMMIT is sent. In-process, to aim at that moment."""
    _, database_url = instance
    token = device["token"]
    url = f"/v1/key/{token}/projects/1/submission"
    form_xml = client.get(f"/v1/key/{token}/projects/1/forms/seminar_attendance.xml").data
    xml, files = seminar_uploads(form_xml, 1, tag="commit")[0]
    armed, killed = {}, []

    with app.app_context():
        engine = db.engine

    def inserted(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO SUBMISSIONS "):
            armed[id(conn)] = conn.connection.dbapi_connection.info.backend_pid

    def before_commit(conn):
        pid = armed.pop(id(conn), None)
        if pid is None or killed:
            return
        with pg_connect(database_url) as admin:
            assert pid in terminate_others(admin)
            assert wait_until(lambda: gone(admin, [pid]))
        killed.append(pid)

    event.listen(engine, "after_cursor_execute", inserted)
    event.listen(engine, "commit", before_commit)
    try:
        response = post(client, url, xml, files)
    finally:
        event.remove(engine, "after_cursor_execute", inserted)
        event.remove(engine, "commit", before_commit)
    assert killed, "the commit was never reached"
    assert_problem_envelope(response.status_code, response.headers, response.data, problems.unavailable)
    assert submissions_with(app, instance_id_of(xml)) == 0
    response = post(client, url, xml, files)
    assert response.status_code == 201, response.data
    assert_stored_once(app, [(xml, files)])


@postgres_only
def test_connection_lost_after_the_answer_is_made_does_not_turn_a_201_into_a_500(app, client, instance, device):
    """The backend dies after the view answered but before the request's session is closed:
    closing then fails on ROLLBACK. The committed submission must still be answered 201 (and
    a 503 stay a 503), not a bare 500 from the server."""
    from flask import request

    _, database_url = instance
    token = device["token"]
    url = f"/v1/key/{token}/projects/1/submission"
    killed = []

    @app.after_request  # (registered before the app's first request, as Flask requires)
    def kill_the_connection(response):
        if request.method == "POST":
            # The session's connection, inside a transaction, as the view left it (or as it is
            # after a rollback): the backend is killed, then teardown has to close the session.
            pid = db.session.connection().connection.dbapi_connection.info.backend_pid
            with pg_connect(database_url) as admin:
                assert pid in terminate_others(admin)
                assert wait_until(lambda: gone(admin, [pid]))
            killed.append(pid)
        return response

    form_xml = client.get(f"/v1/key/{token}/projects/1/forms/seminar_attendance.xml").data
    (xml, files), (other_xml, other_files) = seminar_uploads(form_xml, 2, tag="teardown")
    response = post(client, url, xml, files)
    assert killed and response.status_code == 201, response.data
    assert_stored_once(app, [(xml, files)])
    # A problem answer, too, survives its connection dying before the session is closed.
    response = post(client, url, xml.replace(b"teardown 0", b"something else"), files)
    assert len(killed) == 2
    assert response.status_code == 409 and "different XML" in envelope_message(response.data)
    response = post(client, url, other_xml, other_files)
    assert len(killed) == 3 and response.status_code == 201
    assert_stored_once(app, [(xml, files), (other_xml, other_files)])


def test_an_exhausted_connection_pool_is_503_not_500(app, instance):
    """Every pooled connection busy past the pool's timeout: the server is busy, so 503.1
    (Collect retries), never a 500. A real QueuePool of one connection, in a view of the test's."""
    from sqlalchemy import create_engine

    _, database_url = instance
    tiny = create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.1)

    def starved():
        with tiny.connect():
            with tiny.connect():  # waits 0.1 s, then sqlalchemy.exc.TimeoutError
                return "unreachable"

    app.add_url_rule("/v1/fault-test/starved", view_func=starved)
    app.add_url_rule("/v1/key/<token>/fault-test/starved", view_func=lambda token: starved())
    try:
        client = app.test_client()
        response = client.get("/v1/fault-test/starved")
        assert response.status_code == 503
        assert response.get_json() == problems.unavailable().to_json()
        response = client.get("/v1/key/t/fault-test/starved")
        assert response.status_code == 503
        assert envelope_message(response.data) == problems.unavailable().message
    finally:
        tiny.dispose()


# ------------------------------------------------------------- 2. the attachment disk is full

class SmallDisk:
    """The instance's `blobs/` on a real tmpfs a few MiB big, with what setup put there copied in.

    `fill(leaving=n)` writes a filler file until about n bytes are free; `free()` deletes it.
    """
    SIZE = 2 * 1024 * 1024

    def __init__(self, blobs):
        self.blobs = blobs
        self.filler = blobs / "filler"

    def mount(self):
        saved = self.blobs.with_name("blobs-before-mount")
        self.blobs.rename(saved)
        self.blobs.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.SIZE},mode=0755",
                                 "tmpfs", str(self.blobs)], capture_output=True, text=True)
        if result.returncode != 0:
            self.blobs.rmdir()
            saved.rename(self.blobs)
            return result.stderr.strip() or f"mount exited {result.returncode}"
        try:
            subprocess.run(["cp", "-a", f"{saved}/.", str(self.blobs)], check=True)
        except BaseException:
            self.unmount()
            raise
        return None

    def unmount(self):
        subprocess.run(["umount", str(self.blobs)], check=True)

    def available(self) -> int:
        stat = os.statvfs(self.blobs)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leaving: int):
        with open(self.filler, "wb") as out:
            out.write(b"\0" * max(0, self.available() - leaving))
        assert self.available() <= leaving + 64 * 1024

    def free(self):
        self.filler.unlink()

    def files(self) -> set:
        return {p.relative_to(self.blobs).as_posix() for p in self.blobs.rglob("*")
                if p.is_file() and p != self.filler}


class SimulatedDisk:
    """Where mounting is not allowed (not root, no CAP_SYS_ADMIN): the blob store's files fail
    with ENOSPC past a byte budget, in-process. Same interface as `SmallDisk`."""

    def __init__(self, blobs, monkeypatch):
        self.blobs, self.budget = blobs, None
        real_fdopen = os.fdopen
        disk = self

        class Limited:
            def __init__(self, raw):
                self.raw = raw

            def write(self, data):
                if disk.budget is not None:
                    if len(data) > disk.budget:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    disk.budget -= len(data)
                return self.raw.write(data)

            def __getattr__(self, name):
                return getattr(self.raw, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.raw.close()

        monkeypatch.setattr(storage.os, "fdopen", lambda fd, *a, **k: Limited(real_fdopen(fd, *a, **k)))

    def fill(self, leaving: int):
        self.budget = leaving

    def free(self):
        self.budget = None

    def files(self) -> set:
        return {p.relative_to(self.blobs).as_posix() for p in self.blobs.rglob("*") if p.is_file()}


@pytest.fixture(params=["tmpfs", "simulated"])
def full_disk(request, app, monkeypatch):
    """A disk that can be filled: a real tmpfs (skipped, saying why, where mounting is not
    allowed) and, always, the in-process ENOSPC simulation that stands in for it there."""
    blobs = storage_root(app)
    if request.param == "simulated":
        yield SimulatedDisk(blobs, monkeypatch)
        return
    disk = SmallDisk(blobs)
    refused = disk.mount()
    if refused is not None:
        pytest.skip(f"cannot mount a tmpfs for blobs/ ({refused}); the 'simulated' variant covers ENOSPC in-process")
    yield disk
    disk.unmount()


def storage_root(app):
    with app.app_context():
        return storage.root()


def test_full_attachment_disk_is_507_stores_nothing_and_the_resend_lands(app, client, device, full_disk):
    token = device["token"]
    url = f"/v1/key/{token}/projects/1/submission?deviceID=collect%3Afull"
    form_xml = client.get(f"/v1/key/{token}/projects/1/forms/seminar_attendance.xml").data
    xml = instance_xml(form_xml, {**SEMINAR, "photo": "big.jpg"})
    photo = b"\xff\xd8\xff" + hashlib.sha256(b"big").digest() * (1024 * 1024 // 32)  # 1 MiB
    sha256 = hashlib.sha256(photo).hexdigest()
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(Submission))
        final = storage.path_of(sha256)
    files_before = full_disk.files()

    full_disk.fill(leaving=256 * 1024)
    response = post(client, url, xml, {"big.jpg": photo})
    assert_problem_envelope(response.status_code, response.headers, response.data, problems.storage_full)
    # Nothing half-stored: no submission, no blob row, no file under a final name, no temporary.
    assert submissions_with(app, instance_id_of(xml)) == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == before
        assert db.session.scalar(select(func.count()).select_from(Blob).where(Blob.sha256 == sha256)) == 0
    assert not final.exists()
    assert full_disk.files() == files_before

    # A second try while still full is refused the same way (no leftovers eat the space).
    response = post(client, url, xml, {"big.jpg": photo})
    assert response.status_code == 507
    assert full_disk.files() == files_before

    full_disk.free()
    response = post(client, url, xml, {"big.jpg": photo})
    assert response.status_code == 201, response.data
    assert final.read_bytes() == photo
    assert_stored_once(app, [(xml, {"big.jpg": photo})])
    with app.app_context():
        attachment = db.session.scalar(select(SubmissionAttachment).where(SubmissionAttachment.name == "big.jpg"))
        assert attachment.blob.size == len(photo)


def test_write_file_turns_quota_and_disk_full_into_storage_full_and_removes_its_temporary(app, monkeypatch):
    """Unit level, any filesystem: ENOSPC and EDQUOT raised by the write (and again by the close)."""
    with app.app_context():
        tmp_dir = storage.root() / "tmp"
        for code in (errno.ENOSPC, errno.EDQUOT):
            real_fdopen = os.fdopen

            class Failing:
                def __init__(self, raw):
                    self.raw = raw

                def write(self, data):
                    raise OSError(code, os.strerror(code))

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    self.raw.close()
                    raise OSError(code, os.strerror(code))  # as a buffered close would, again

            monkeypatch.setattr(storage.os, "fdopen", lambda fd, *a, **k: Failing(real_fdopen(fd, *a, **k)))
            with pytest.raises(problems.Problem) as raised:
                storage.write_file(b"x" * 1000)
            assert raised.value.code == problems.storage_full.code
            assert list(tmp_dir.iterdir()) == []
            assert not storage.path_of(hashlib.sha256(b"x" * 1000).hexdigest()).exists()
            monkeypatch.undo()
        # Any other OSError is not a full disk and is not disguised as one.
        def broken_fsync(fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        monkeypatch.setattr(storage.os, "fsync", broken_fsync)
        with pytest.raises(OSError) as raised:
            storage.write_file(b"y" * 1000)
        assert raised.value.errno == errno.EIO and not isinstance(raised.value, problems.Problem)
        assert list(tmp_dir.iterdir()) == []


# --------------------------------------------------- 3. one job, two processes, one database

class FakeClock:
    def __init__(self):
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


def test_a_live_lease_refuses_another_holder_until_it_expires_or_is_released(app, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(jobs, "utcnow", clock)
    with app.app_context():
        assert jobs.acquire("t.job", 60, holder="a")
        assert not jobs.acquire("t.job", 60, holder="b")
        clock.advance(59)
        assert not jobs.acquire("t.job", 60, holder="b")
        assert jobs.acquire("t.job", 60, holder="a")  # the holder renews: now until 09:01:59
        clock.advance(59)
        assert not jobs.acquire("t.job", 60, holder="b")
        clock.advance(2)  # expired, never released (a killed holder)
        assert jobs.acquire("t.job", 60, holder="b")
        assert not jobs.acquire("t.job", 60, holder="a")
        jobs.release("t.job", holder="a")  # not a's to release: no effect
        assert not jobs.acquire("t.job", 60, holder="a")
        jobs.release("t.job", holder="b")
        assert db.session.get(JobLock, "t.job") is None
        assert jobs.acquire("t.job", 60, holder="a")
        assert db.session.get(JobLock, "t.job").holder == "a"


def test_the_default_holder_is_the_calling_process_even_after_a_fork(app, instance):
    """gunicorn --preload (or any fork after import) must not give every worker one holder name,
    or they would all "renew" each other's lease and run the job side by side."""
    folder, database_url = instance
    assert jobs.holder_id().endswith(f":{os.getpid()}")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()  # nothing of ours for the child to inherit
    child = os.fork()
    if child == 0:  # a worker forked after fieldsync.jobs was imported
        code = 1
        try:
            forked = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": database_url})
            with forked.app_context():
                code = 0 if jobs.acquire("t.fork", 60) else 2
                db.engine.dispose()
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with app.app_context():
        assert db.session.get(JobLock, "t.fork").holder.endswith(f":{child}")
        assert not jobs.acquire("t.fork", 60), "the parent took over the forked child's live lease"
        jobs.release("t.fork")  # not ours: no effect
        assert db.session.get(JobLock, "t.fork").holder.endswith(f":{child}")
        assert jobs.acquire("t.mine", 60)
        assert db.session.get(JobLock, "t.mine").holder == jobs.holder_id()
        jobs.release("t.mine")
        assert db.session.get(JobLock, "t.mine") is None


@pytest.mark.skipif(backend() != "postgresql",
                    reason="PostgreSQL only: on SQLite the lease is judged under the database write lock, "
                           "so no other process can insert between the look and the insert")
def test_losing_the_race_for_the_first_lease_row_is_false_and_leaves_the_session_usable(app, instance):
    """Another process inserts the first lease row and commits between our look (no row) and
    our INSERT, the race two schedulers starting together run on PostgreSQL."""
    _, database_url = instance
    raced = []

    def rival_first(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO JOB_LOCKS") and not raced:
            with pg_connect(database_url) as rival:
                rival.execute("INSERT INTO job_locks (name, holder, expires_at) "
                              "VALUES ('t.race', 'rival', now() + interval '60 seconds')")
            raced.append(True)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", rival_first)
        try:
            assert jobs.acquire("t.race", 60, holder="us") is False
        finally:
            event.remove(db.engine, "before_cursor_execute", rival_first)
        assert raced, "our INSERT never ran: the race was not staged"
        # The session is not stuck in a failed transaction: it reads and writes on.
        assert db.session.get(JobLock, "t.race").holder == "rival"
        assert db.session.execute(text("SELECT 1")).scalar() == 1
        assert jobs.acquire("t.other", 60, holder="us") is True
        assert db.session.get(JobLock, "t.other").holder == "us"
        assert not jobs.acquire("t.race", 60, holder="us")


RUNNER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from sqlalchemy import text
    from fieldsync import create_app, jobs
    from fieldsync.extensions import db

    instance, database_url, name, log_path, go_path, seconds = sys.argv[1:7]
    app = create_app({"INSTANCE_PATH": instance, "DATABASE_URL": database_url})
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # connected before the start signal
    pid, log = os.getpid(), open(log_path, "a", buffering=1)
    Path(log_path + ".ready").touch()
    ABANDON_TTL = 0.3

    def work(kind, **extra):
        started = time.time()
        time.sleep(0.02)  # long enough that an overlap could not go unseen
        log.write(json.dumps({"pid": pid, "kind": kind, "start": started, "end": time.time(), **extra}) + "\\n")

    while not os.path.exists(go_path):  # both start hammering at the same moment
        time.sleep(0.001)
    stop, ran, abandon_next = time.time() + float(seconds), 0, False
    while time.time() < stop:
        if abandon_next:
            # Take the lease and "die" holding it: never released; stay away until it expired.
            called = time.time()
            with app.app_context():
                got = jobs.acquire(name, ABANDON_TTL)
                if got:
                    work("abandon", called=called, ttl=ABANDON_TTL)
            if got:
                abandon_next = False
                time.sleep(ABANDON_TTL + 0.2)
            continue
        if jobs.run_once(app, name, lambda: work("run"), ttl_seconds=30):
            ran += 1
            abandon_next = ran % 10 == 0
    with app.app_context():
        db.engine.dispose()
""")


def test_two_processes_hammering_one_job_never_run_it_at_once(instance, tmp_path):
    """Two app processes, one database (PostgreSQL, or one SQLite file), one job name, run as
    fast as they can for a few seconds. Runs never overlap; the job changes hands only after a
    release, or after the lease expired when its holder "died" holding it."""
    folder, database_url = instance
    name = f"fault.{uuid.uuid4().hex[:6]}"
    logs = [tmp_path / f"runner-{i}.jsonl" for i in range(2)]
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDSYNC_")}
    runners = [subprocess.Popen([sys.executable, "-c", RUNNER, str(folder), database_url, name, str(log),
                                 str(go), "5"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for log in logs]
    try:
        ready = wait_until(lambda: all(Path(f"{log}.ready").exists() for log in logs)
                           or any(r.poll() is not None for r in runners), timeout=60)
        assert ready and all(r.poll() is None for r in runners), "a runner did not start"
        go.touch()
        for runner in runners:
            output, _ = runner.communicate(timeout=60)
            assert runner.returncode == 0, output.decode()
    finally:
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
                runner.wait()

    runs = sorted((json.loads(line) for log in logs for line in log.read_text().splitlines()),
                  key=lambda run: run["start"])
    assert {run["pid"] for run in runs} == {r.pid for r in runners}, "both processes must have got turns"
    assert len(runs) >= 20
    handovers = expiries = 0
    for before, after in zip(runs, runs[1:]):
        assert after["start"] >= before["end"], f"overlapping runs: {before} and {after}"
        if after["pid"] != before["pid"]:
            handovers += 1
            if before["kind"] == "abandon":
                # Never released: the other process may only have it once the lease expired.
                assert after["start"] >= before["called"] + before["ttl"], (before, after)
                expiries += 1
    assert handovers >= 2, "the job never changed hands: the processes did not really compete"
    assert expiries >= 1, "no abandoned lease was taken over after expiry"


# ---------------------------------------------------------------- SIGKILL under load from another process

LOAD_CLIENT = textwrap.dedent('''
    """Send every instance in a folder to a FieldSync server, 8 at a time, as phones would; write
    one line per answer ("<status> <file name>") to a log, flushed at once, and go on through
    refused connections (the server may be down for a moment)."""
    import sys, threading
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    import requests

    url, folder, log_path = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    files = sorted(folder.glob("*.xml"))
    lock, log = threading.Lock(), open(log_path, "a", buffering=1)
    local = threading.local()

    def one(path):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        try:
            status = session.post(url, files={"xml_submission_file": ("instance.xml", path.read_bytes(), "text/xml")},
                                  headers={"X-OpenRosa-Version": "1.0"}, timeout=30).status_code
        except requests.RequestException as error:
            status = type(error).__name__
            local.session = None
        with lock:
            log.write(f"{status} {path.name}\\n")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, files))
''')


def _acknowledged(log_path: Path) -> list[str]:
    if not log_path.exists():
        return []
    return [line.split()[1] for line in log_path.read_text().splitlines()
            if line.startswith("201 ") and len(line.split()) == 2]


def test_sigkill_of_workers_and_master_under_load_from_another_process(app, live_server, device, tmp_path):
    """A load of distinct seminars from a separate client process (2,000 with
    FIELDSYNC_FAULT_LOAD=2000; 300 by default, for CI). A gunicorn worker is SIGKILLed a fifth
    of the way in (and the derive worker process), the master and all workers half way. After a restart every upload is sent
    again (Collect resends what it has no 201 for): each is then stored exactly once,
    SQLite's integrity check is ok, and once the restarted server has caught up its derive
    queue (nothing done in the test process) the indicators equal a recompute from scratch."""
    from fieldsync import indicators
    from fieldsync.models import Event, PendingRecord

    total = int(os.environ.get("FIELDSYNC_FAULT_LOAD", "300"))
    server = live_server(workers=2)
    token = device["token"]
    form_xml = requests.get(f"{server.url}/v1/key/{token}/projects/1/forms/seminar_attendance.xml").content
    folder = tmp_path / "load"
    folder.mkdir()
    ids = {}
    for i in range(total):
        xml = instance_xml(form_xml, {**SEMINAR, "village": f"Aiyl {i}", "event_date": f"2026-{1 + i % 12:02d}-15"})
        (folder / f"{i:05d}.xml").write_bytes(xml)
        ids[f"{i:05d}.xml"] = instance_id_of(xml)
    log_path = tmp_path / "answers.log"
    client = subprocess.Popen([sys.executable, "-c", LOAD_CLIENT, f"{server.url}/v1/key/{token}/projects/1/submission",
                               str(folder), str(log_path)])
    try:
        assert wait_until(lambda: len(_acknowledged(log_path)) >= total // 5, timeout=300)
        victim = server.serving_pids()[0]
        os.kill(victim, signal.SIGKILL)
        derive = server.derive_pid()
        assert derive is not None, "gunicorn's master keeps a derive worker process"
        os.kill(derive, signal.SIGKILL)  # its rounds' rows stay queued; the master starts another
        assert wait_until(lambda: server.derive_pid() not in (None, derive), timeout=60)
        assert wait_until(lambda: len(_acknowledged(log_path)) >= total // 2, timeout=300)
        server.kill()
        client.wait(timeout=600)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    acknowledged = _acknowledged(log_path)
    assert total // 2 <= len(acknowledged) < total, "the master's kill must land mid-load"

    restarted = live_server(workers=2)
    with app.app_context():
        for name in acknowledged:
            assert submissions_with(app, ids[name]) == 1, name
        if backend() == "sqlite":
            assert db.session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        db.session.remove()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda name: send(restarted.url, token, (folder / name).read_bytes()).status_code,
                                 sorted(ids)))
    assert statuses == [201] * total

    def caught_up():
        with app.app_context():
            left = db.session.scalar(select(func.count()).select_from(PendingRecord))
            db.session.remove()
            return left == 0
    assert wait_until(caught_up, timeout=120, interval=0.5), "the restarted server did not drain its queue"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == total
        assert db.session.scalar(select(func.count()).select_from(Event)) == total
        run = indicators.recompute("test")
        assert run.drift == 0, run.details
