"""Submission sync against a real gunicorn server over real HTTP: concurrent duplicates, and
a SIGKILL in the middle of a burst of uploads."""
import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select, text

from fieldsync import storage
from fieldsync.extensions import db
from fieldsync.models import Blob, Submission, SubmissionAttachment, SubmissionDef

from collect import OPENROSA, SEMINAR, instance_id_of, instance_xml
from conftest import backend

pytestmark = pytest.mark.slow


def send(base_url, token, xml, files=None, timeout=30):
    parts = {"xml_submission_file": ("instance.xml", xml, "text/xml")}
    for name, content in (files or {}).items():
        parts[name] = (name, content, "image/jpeg")
    return requests.post(f"{base_url}/v1/key/{token}/projects/1/submission?deviceID=collect%3Alive",
                         files=parts, headers=OPENROSA, timeout=timeout)


@pytest.fixture
def device(make_app_user):
    return make_app_user(name="live phone", grantee="chinek")


def form_xml_from(server, token):
    return requests.get(f"{server.url}/v1/key/{token}/projects/1/forms/seminar_attendance.xml").content


def test_twenty_identical_sends_at_once_make_one_submission(app, live_server, device):
    server = live_server(workers=2)
    token = device["token"]
    xml = instance_xml(form_xml_from(server, token), {**SEMINAR, "photo": "p.jpg"})
    photo = b"\xff\xd8\xff" + b"p" * 100_000
    barrier = threading.Barrier(20)

    def one(_):
        barrier.wait()
        return send(server.url, token, xml, {"p.jpg": photo}).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(one, range(20)))
    assert statuses == [201] * 20
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == 1
        assert db.session.scalar(select(func.count()).select_from(SubmissionDef)) == 1
        attachment = db.session.scalar(select(SubmissionAttachment))
        assert attachment.blob.sha256 == hashlib.sha256(photo).hexdigest()


def test_sigkill_mid_burst_loses_nothing_acknowledged(app, live_server, device):
    server = live_server(workers=2)
    token = device["token"]
    form_xml = form_xml_from(server, token)
    uploads = []
    for i in range(300):
        xml = instance_xml(form_xml, {**SEMINAR, "village": f"Village {i}", "photo": f"p{i}.jpg"})
        uploads.append((xml, {f"p{i}.jpg": b"\xff\xd8\xff" + hashlib.sha256(str(i).encode()).digest() * 4000}))
    acknowledged, lock, killed = [], threading.Lock(), threading.Event()

    def one(upload):
        xml, files = upload
        try:
            response = send(server.url, token, xml, files, timeout=30)
        except requests.RequestException:
            return
        if response.status_code == 201:
            with lock:
                acknowledged.append(upload)
                if len(acknowledged) == 40:
                    killed.set()

    def killer():
        killed.wait(60)
        server.kill()

    threading.Thread(target=killer, daemon=True).start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, uploads))
    assert server.process.poll() is not None, "the server was not killed"
    assert 40 <= len(acknowledged) < len(uploads), "the kill must land mid-burst"

    restarted = live_server(workers=2)
    with app.app_context():
        for xml, files in acknowledged:
            iid = instance_id_of(xml)
            rows = db.session.scalars(select(Submission).where(Submission.instance_id == iid)).all()
            assert len(rows) == 1, iid
            (name, content), = files.items()
            attachment = rows[0].current_def.attachments[0]
            assert attachment.name == name and attachment.blob.sha256 == hashlib.sha256(content).hexdigest()
        # Nothing half-written: every blob row's file exists with exactly its content.
        for blob in db.session.scalars(select(Blob)):
            assert hashlib.sha256(storage.path_of(blob.sha256).read_bytes()).hexdigest() == blob.sha256
        if backend() == "sqlite":
            assert db.session.execute(text("PRAGMA integrity_check")).scalar() == "ok"

    # Collect resends whatever it did not get a 201 for (and some it did): all land exactly once.
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda u: send(restarted.url, token, *u).status_code, uploads))
    assert statuses == [201] * len(uploads)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == len(uploads)
        missing = db.session.scalar(select(func.count()).select_from(SubmissionAttachment)
                                    .where(SubmissionAttachment.blob_id.is_(None)))
        assert missing == 0


def test_access_log_never_contains_device_tokens(live_server, device):
    server = live_server()
    token = device["token"]
    assert requests.get(f"{server.url}/v1/key/{token}/projects/1/formList", headers=OPENROSA).status_code == 200
    assert requests.get(f"{server.url}/v1/projects/1/formList?st={token}", headers=OPENROSA).status_code == 200
    server.stop()
    log = next(server.folder.glob(f"server-{server.port}.log")).read_text()
    assert "/v1/key/***/projects/1/formList" in log and "st=***" in log
    assert token not in log
