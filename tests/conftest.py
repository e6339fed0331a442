"""Test fixtures: a real database (SQLite, or PostgreSQL when FIELDSYNC_TEST_DATABASE_URL
names a server), migrated by Alembic and set up once per run, then copied for every test.

- SQLite: the set-up instance folder (database and blobs) is copied per test.
- PostgreSQL: the set-up database is a template; each test gets `CREATE DATABASE … TEMPLATE`.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from fieldsync import create_app
from fieldsync.extensions import db

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("FIELDSYNC_TEST_DATABASE_URL")  # e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres
RUN_ID = uuid.uuid4().hex[:8]


def backend() -> str:
    return "postgresql" if PG_URL else "sqlite"


def _pg_admin():
    url = make_url(PG_URL)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                           password=url.password, dbname=url.database or "postgres", autocommit=True)


def _pg_database_url(name: str) -> str:
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _pg_drop(name: str) -> None:
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_setup(instance: Path, database_url: str) -> None:
    app = create_app({"INSTANCE_PATH": instance, "DATABASE_URL": database_url})
    runner = app.test_cli_runner()
    result = runner.invoke(args=["setup", "--no-validate"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    """An instance folder (and, on PostgreSQL, a template database) after `setup`."""
    instance = tmp_path_factory.mktemp("template-instance")
    if PG_URL:
        name = f"fs_template_{RUN_ID}"
        _pg_drop(name)
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        _run_setup(instance, _pg_database_url(name))
        yield instance, name
        _pg_drop(name)
    else:
        _run_setup(instance, f"sqlite:///{instance / 'fieldsync.db'}")
        yield instance, None


@pytest.fixture
def instance(template, tmp_path):
    """A fresh, set-up instance for one test: (instance folder, database URL)."""
    source, template_db = template
    folder = tmp_path / "instance"
    shutil.copytree(source, folder)
    if template_db:
        name = f"fs_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        yield folder, _pg_database_url(name)
        _pg_drop(name)
    else:
        yield folder, f"sqlite:///{folder / 'fieldsync.db'}"


@pytest.fixture
def empty_instance(tmp_path):
    """An instance folder and an empty database (nothing migrated)."""
    folder = tmp_path / "empty-instance"
    folder.mkdir()
    if PG_URL:
        name = f"fs_empty_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        yield folder, _pg_database_url(name)
        _pg_drop(name)
    else:
        yield folder, f"sqlite:///{folder / 'fieldsync.db'}"


@pytest.fixture
def app(instance):
    folder, database_url = instance
    application = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": database_url})
    application.config["TESTING"] = True
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args, env=None, input=None):
        return runner.invoke(args=list(args), env=env, input=input, catch_exceptions=False)
    return invoke


@pytest.fixture
def make_app_user(app):
    """Create an app user through the CLI, as an admin would; returns its JSON config."""
    import json

    runner = app.test_cli_runner()

    def make(name=None, grantee="chinek", evaluator=False):
        args = ["app-users", "create", name or f"device-{uuid.uuid4().hex[:6]}", "--json"]
        args += ["--evaluator"] if evaluator else ["--grantee", grantee]
        result = runner.invoke(args=args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output.strip().splitlines()[-1])
    return make


@pytest.fixture
def make_user(app):
    """Create a web user and return a Bearer header for it."""
    runner = app.test_cli_runner()
    client = app.test_client()

    def make(role="coordinator", grantee=None, email=None, password="correct horse battery"):
        email = email or f"{role}-{uuid.uuid4().hex[:6]}@example.org"
        args = ["users", "create", email, "--role", role] + (["--grantee", grantee] if grantee else [])
        result = runner.invoke(args=args, env={"FIELDSYNC_PASSWORD": password}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        response = client.post("/v1/sessions", json={"email": email, "password": password})
        assert response.status_code == 200, response.get_json()
        return {"Authorization": f"Bearer {response.get_json()['token']}"}
    return make


OPENROSA = {"X-OpenRosa-Version": "1.0"}
pytest_plugins = ["web_fixtures"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """FieldSync running in its own process, reached over real HTTP on 127.0.0.1."""

    def __init__(self, folder: Path, database_url: str, workers: int = 1):
        self.folder, self.database_url, self.workers = folder, database_url, workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(FIELDSYNC_INSTANCE_PATH=str(self.folder), FIELDSYNC_DATABASE_URL=self.database_url,
                   FIELDSYNC_BASE_URL=self.url, PYTHONUNBUFFERED="1")
        return env

    def start(self):
        log = open(self.folder / f"server-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"),
             "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers), "app:app"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.folder / f'server-{self.port}.log').read_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    @staticmethod
    def children_of(pid: int) -> list[int]:
        """A process's children, from every thread of it (Linux lists a child under the thread
        that forked it)."""
        found = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                found += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return sorted(found)

    def children(self) -> list[int]:
        return self.children_of(self.process.pid)

    @staticmethod
    def _command(pid: int) -> list[bytes]:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return []

    def supervisor_pid(self) -> int | None:
        """The process that keeps the derive worker alive (a child of the master)."""
        return next((pid for pid in self.children()
                     if b"fieldsync.pipeline.supervise" in self._command(pid)), None)

    def serving_pids(self) -> list[int]:
        """gunicorn's serving workers, not the derive worker's supervisor."""
        supervisor = self.supervisor_pid()
        return [pid for pid in self.children() if pid != supervisor]

    def derive_pid(self) -> int | None:
        supervisor = self.supervisor_pid()
        if supervisor is None:
            return None
        return next((pid for pid in self.children_of(supervisor) if b"worker" in self._command(pid)), None)

    def kill(self):
        """SIGKILL the master and every worker at once: no graceful shutdown, as in a power cut."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def live_server(instance):
    folder, database_url = instance
    servers = []

    def start(workers=1):
        server = LiveServer(folder, database_url, workers).start()
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop()
