"""Backup and restore: a snapshot taken while a live server takes uploads restores byte for byte
into a fresh instance; the refusals (existing PATH, non-empty target, damaged snapshot); an older
snapshot is migrated to the current schema."""
import hashlib
import json
import os
import threading
import time
import uuid

import pytest
import requests
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from fieldsync import create_app, storage
from fieldsync.extensions import db
from fieldsync.models import Submission

from collect import OPENROSA, SEMINAR, instance_id_of, instance_xml
from conftest import PG_URL, ROOT, RUN_ID, LiveServer, _pg_admin, _pg_database_url, _pg_drop

HEAD = ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def send(base_url, token, xml, files):
    parts = {"xml_submission_file": ("instance.xml", xml, "text/xml")}
    for name, content in files.items():
        parts[name] = (name, content, "image/jpeg")
    return requests.post(f"{base_url}/v1/key/{token}/projects/1/submission",
                         files=parts, headers=OPENROSA, timeout=30)


@pytest.fixture
def fresh_instance(tmp_path):
    """Make fresh instances (folder, database URL), as conftest's `empty_instance` does."""
    made = []

    def make():
        folder = tmp_path / f"fresh-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        if not PG_URL:
            return folder, f"sqlite:///{folder / 'fieldsync.db'}"
        name = f"fs_fresh_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return folder, _pg_database_url(name)
    yield make
    for name in made:
        _pg_drop(name)


@pytest.fixture
def open_app():
    """An app on another instance, and a CLI runner for it (tracebacks fail the test)."""
    apps = []

    def make(folder, database_url):
        application = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": database_url})
        apps.append(application)
        runner = application.test_cli_runner()

        def invoke(*args):
            return runner.invoke(args=[str(a) for a in args], catch_exceptions=False)
        return application, invoke
    yield make
    for application in apps:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


def contents(application) -> dict:
    """instance id -> (current XML bytes, {attachment name: file bytes or None})."""
    with application.app_context():
        found = {}
        for submission in db.session.scalars(select(Submission)):
            current = submission.current_def
            files = {a.name: storage.path_of(a.blob.sha256).read_bytes() if a.blob else None
                     for a in current.attachments}
            found[submission.instance_id] = (current.xml, files)
        db.session.remove()
        return found


def table_names(application) -> list:
    with application.app_context():
        names = inspect(db.engine).get_table_names()
        db.engine.dispose()
        return names


def blob_files(folder) -> list:
    root = folder / "blobs"
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "tmp"]


@pytest.mark.slow
def test_backup_during_uploads_restores_byte_identical(app, cli, live_server, make_app_user,
                                                       empty_instance, open_app, tmp_path):
    token = make_app_user(name="live phone", grantee="chinek")["token"]
    server = live_server(workers=2)
    form_xml = requests.get(f"{server.url}/v1/key/{token}/projects/1/forms/seminar_attendance.xml").content
    acknowledged, failures, lock, stop = {}, [], threading.Lock(), threading.Event()

    def keep_sending(worker):
        number = 0
        while not stop.is_set():
            number += 1
            photo = b"\xff\xd8\xff" + os.urandom(30_000)
            xml = instance_xml(form_xml, {**SEMINAR, "village": f"Village {worker}-{number}", "photo": "p.jpg"})
            response = send(server.url, token, xml, {"p.jpg": photo})
            with lock:
                if response.status_code == 201:
                    acknowledged[instance_id_of(xml)] = (xml, photo)
                else:
                    failures.append(response.status_code)

    def wait_for(count, seconds=15):
        deadline = time.monotonic() + seconds
        while len(acknowledged) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(acknowledged) >= count, f"only {len(acknowledged)} uploads acknowledged"

    senders = [threading.Thread(target=keep_sending, args=(n,), daemon=True) for n in range(3)]
    for thread in senders:
        thread.start()
    try:
        wait_for(15)
        with lock:
            before = set(acknowledged)
        snapshot = tmp_path / "usb" / "fieldsync-snapshot"
        result = cli("backup", str(snapshot))
        assert result.exit_code == 0, result.output
        with lock:
            after = len(acknowledged)
        wait_for(after + 10)  # uploads kept landing after the snapshot
    finally:
        stop.set()
        for thread in senders:
            thread.join(30)
    server.stop()
    assert failures == []

    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["fieldsync_revision"] == HEAD
    assert manifest["database"]["kind"] == ("postgresql" if PG_URL else "sqlite")
    source = contents(app)
    assert set(source) >= set(acknowledged)
    in_snapshot = manifest["counts"]["submissions"]
    assert len(before) <= in_snapshot < len(source), "the backup must land mid-stream"

    target_folder, target_url = empty_instance
    target_app, target_cli = open_app(target_folder, target_url)
    result = target_cli("restore", snapshot)
    assert result.exit_code == 0, result.output

    restored = contents(target_app)
    assert len(restored) == in_snapshot
    assert before <= set(restored), "everything acknowledged before the backup is in it"
    for instance_id, (xml, files) in restored.items():
        assert (xml, files) == source[instance_id], instance_id
        if instance_id in acknowledged:
            sent_xml, photo = acknowledged[instance_id]
            assert xml == sent_xml and files == {"p.jpg": photo}
    with target_app.app_context():
        for (sha,) in db.session.execute(text("SELECT sha256 FROM blobs")):
            assert hashlib.sha256(storage.path_of(sha).read_bytes()).hexdigest() == sha
        db.session.remove()
        db.engine.dispose()

    restarted = LiveServer(target_folder, target_url).start()
    try:
        health = requests.get(f"{restarted.url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        form_list = requests.get(f"{restarted.url}/v1/key/{token}/projects/1/formList",
                                 headers=OPENROSA, timeout=5)
        assert form_list.status_code == 200 and b"seminar_attendance" in form_list.content
    finally:
        restarted.stop()


def every_row(application) -> dict:
    with application.app_context():
        tables = sorted(t for t in inspect(db.engine).get_table_names())
        rows = {t: sorted(map(tuple, db.session.execute(text(f'SELECT * FROM "{t}"')).all()), key=repr)
                for t in tables}
        db.session.remove()
        return rows


def test_round_trip_keeps_every_row_and_the_restored_instance_takes_writes(
        app, cli, make_app_user, fresh_instance, open_app, tmp_path):
    make_app_user(name="Chinek tablet 1", grantee="chinek")
    make_app_user(name="Evaluator phone", evaluator=True)
    snapshot = tmp_path / "snapshot"
    assert cli("backup", str(snapshot)).exit_code == 0
    database_lines = [line for line in (snapshot / "SHA256SUMS").read_text().splitlines()
                      if not line.split()[1].startswith("blobs/")]
    assert len(database_lines) == 1
    assert database_lines[0].endswith("  fieldsync.dump" if PG_URL else "  fieldsync.db")

    folder, url = fresh_instance()
    target_app, target_cli = open_app(folder, url)
    result = target_cli("restore", snapshot)
    assert result.exit_code == 0, result.output
    assert every_row(target_app) == every_row(app)
    assert sorted(p.relative_to(folder) for p in blob_files(folder)) == sorted(
        p.relative_to(snapshot) for p in (snapshot / "blobs").rglob("*") if p.is_file())
    # Sequences came along: new rows do not collide with restored ones.
    result = target_cli("app-users", "create", "Tomo tablet 1", "--grantee", "tomo")
    assert result.exit_code == 0, result.output


def test_backup_refuses_an_existing_non_empty_path(cli, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "thesis.docx").write_bytes(b"keep me")
    result = cli("backup", str(occupied))
    assert result.exit_code == 1
    assert "not empty" in result.output and "Traceback" not in result.output
    assert [p.name for p in occupied.iterdir()] == ["thesis.docx"]
    assert (occupied / "thesis.docx").read_bytes() == b"keep me"

    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"x")
    result = cli("backup", str(a_file))
    assert result.exit_code == 1 and "is a file" in result.output

    empty = tmp_path / "mounted-stick"  # an empty folder (a mount point) is fine
    empty.mkdir()
    result = cli("backup", str(empty))
    assert result.exit_code == 0, result.output
    assert (empty / "manifest.json").is_file()


def test_restore_refuses_a_target_with_data_unless_forced(app, cli, instance, tmp_path):
    snapshot = tmp_path / "snapshot"
    assert cli("backup", str(snapshot)).exit_code == 0
    # The instance itself is set up (forms, reference data): not a fresh target.
    result = cli("restore", str(snapshot))
    assert result.exit_code == 1
    assert "not empty" in result.output and "--force" in result.output

    result = cli("restore", str(snapshot), "--force")
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert db.session.execute(text("SELECT count(*) FROM forms")).scalar() == 4
        db.session.remove()


def test_restore_refuses_files_already_in_the_target(cli, fresh_instance, open_app, tmp_path):
    snapshot = tmp_path / "snapshot"
    assert cli("backup", str(snapshot)).exit_code == 0
    folder, url = fresh_instance()
    stray = folder / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left over")
    _, target_cli = open_app(folder, url)
    result = target_cli("restore", snapshot)
    assert result.exit_code == 1 and "not empty" in result.output


def test_restore_refuses_a_damaged_snapshot_and_leaves_the_target_untouched(
        cli, fresh_instance, open_app, tmp_path):
    snapshot = tmp_path / "snapshot"
    assert cli("backup", str(snapshot)).exit_code == 0
    victim = sorted((snapshot / "blobs").rglob("*"))[-1]
    assert victim.is_file()
    damaged = bytearray(victim.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # one flipped bit, as a failing USB stick does
    victim.write_bytes(bytes(damaged))

    folder, url = fresh_instance()
    target_app, target_cli = open_app(folder, url)
    result = target_cli("restore", snapshot)
    assert result.exit_code == 1
    assert "damaged" in result.output and victim.name in result.output
    assert "Traceback" not in result.output
    assert table_names(target_app) == []
    assert blob_files(folder) == []

    # A snapshot whose backup never finished has no manifest.
    (snapshot / "manifest.json").unlink()
    result = target_cli("restore", snapshot)
    assert result.exit_code == 1 and "did not finish" in result.output


def test_restore_brings_an_older_snapshot_to_the_current_schema(fresh_instance, open_app, tmp_path):
    old_app, old_cli = open_app(*fresh_instance())
    result = old_cli("db", "upgrade", "0002")
    assert result.exit_code == 0, result.output
    snapshot = tmp_path / "old-snapshot"
    result = old_cli("backup", snapshot)
    assert result.exit_code == 0, result.output
    assert json.loads((snapshot / "manifest.json").read_text())["fieldsync_revision"] == "0002"

    new_app, new_cli = open_app(*fresh_instance())
    result = new_cli("restore", snapshot)
    assert result.exit_code == 0, result.output
    assert f"upgraded to {HEAD}" in result.output
    with new_app.app_context():
        assert db.session.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert "indicator_values" in inspect(db.engine).get_table_names()
        db.session.remove()
