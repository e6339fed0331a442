"""After the 201: under gunicorn, records and indicators are rebuilt by the derive worker, a
process of its own that the master keeps alive at a lower OS priority; the serving processes
do none of it. The queue is the database, so a killed worker loses nothing."""
import os
import signal
import threading
import time
from pathlib import Path

import requests
from sqlalchemy import func, select

from collect import OPENROSA, SEMINAR, instance_xml
from fieldsync import pipeline
from fieldsync.extensions import db
from fieldsync.models import Event, PendingRecord


def _describe(server) -> list:
    """The master's children and their command lines, for a failure's message."""
    out = []
    supervisor = server.supervisor_pid()
    for pid in server.children() + (server.children_of(supervisor) if supervisor else []):
        try:
            out.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes()))
        except OSError:
            out.append((pid, None))
    return out


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _counts(app):
    with app.app_context():
        pending = db.session.scalar(select(func.count()).select_from(PendingRecord))
        events = db.session.scalar(select(func.count()).select_from(Event))
        db.session.remove()
    return pending, events


def _wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _send(server, token, form_xml, village):
    xml = instance_xml(form_xml, {**SEMINAR, "village": village})
    response = requests.post(f"{server.url}/v1/key/{token}/projects/1/submission", headers=OPENROSA, timeout=30,
                             files={"xml_submission_file": ("instance.xml", xml, "text/xml")})
    assert response.status_code == 201, response.text


def test_under_gunicorn_a_derive_process_rebuilds_and_is_kept_alive(app, live_server, make_app_user):
    token = make_app_user(name="pipeline phone", grantee="chinek")["token"]
    server = live_server(workers=1)
    assert _wait(lambda: server.derive_pid() is not None), "the master starts a derive worker"
    derive = server.derive_pid()
    serving = server.serving_pids()
    # Lowered as it starts (after its imports): the serving processes come first on the CPU.
    assert serving and _wait(lambda: all(_nice(derive) >= _nice(pid) + 10 for pid in serving), timeout=20)
    form_xml = requests.get(f"{server.url}/v1/key/{token}/projects/1/forms/seminar_attendance.xml", timeout=10).content

    _send(server, token, form_xml, "Kant")
    # Nothing is processed in this test process: the derive worker does it.
    assert _wait(lambda: _counts(app) == (0, 1)), _counts(app)

    # Killed, it is started again, and what was queued meanwhile is done by the next one.
    os.kill(derive, signal.SIGKILL)
    _send(server, token, form_xml, "Tokmok")
    assert _wait(lambda: server.derive_pid() not in (None, derive), timeout=60), (
        _describe(server), (server.folder / f"server-{server.port}.log").read_text()[-3000:])
    assert _wait(lambda: _counts(app) == (0, 2)), _counts(app)


def test_the_serving_processes_leave_the_queue_to_the_derive_worker(app, live_server, make_app_user):
    """With the derive worker stopped (as if it were slow), uploads still answer 201 and their
    rows wait in the queue: no serving process picks them up."""
    token = make_app_user(name="pipeline phone 2", grantee="chinek")["token"]
    server = live_server(workers=1)
    assert _wait(lambda: server.derive_pid() is not None)
    derive = server.derive_pid()
    os.kill(derive, signal.SIGSTOP)
    try:
        form_xml = requests.get(f"{server.url}/v1/key/{token}/projects/1/forms/seminar_attendance.xml",
                                timeout=10).content
        for village in ("Kant", "Kemin", "Tokmok"):
            _send(server, token, form_xml, village)
        time.sleep(2)
        assert _counts(app) == (3, 0)
    finally:
        os.kill(derive, signal.SIGCONT)
    assert _wait(lambda: _counts(app) == (0, 3)), _counts(app)


def test_a_killed_master_takes_the_supervisor_and_the_worker_with_it(app, live_server):
    """SIGKILL of the master alone (no process group): what it started does not live on beside
    the next server."""
    server = live_server(workers=1)
    assert _wait(lambda: server.derive_pid() is not None)
    supervisor, derive = server.supervisor_pid(), server.derive_pid()
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()

    def gone(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True
    assert _wait(lambda: gone(supervisor) and gone(derive), timeout=30)


def test_run_works_through_the_queue_until_stopped(app, client, make_app_user):
    """`pipeline.run` in this process (as `flask worker` runs it): the queue is emptied, then it
    waits for more, and stops when asked."""
    app.config["FIELDSYNC"]["DERIVE"] = "process"  # uploads only queue, as under gunicorn
    token = make_app_user(name="pipeline phone 3", grantee="chinek")["token"]
    form_xml = client.get(f"/v1/key/{token}/projects/1/forms/seminar_attendance.xml").data
    for village in ("Kant", "Kemin"):
        xml = instance_xml(form_xml, {**SEMINAR, "village": village})
        assert client.post(f"/v1/key/{token}/projects/1/submission", headers=OPENROSA,
                           data={"xml_submission_file": (__import__("io").BytesIO(xml), "i.xml", "text/xml")},
                           content_type="multipart/form-data").status_code == 201
    assert _counts(app) == (2, 0)
    stop = threading.Event()
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("done", pipeline.run(app, stop, nice=0, poll=0.05)))
    runner.start()
    try:
        assert _wait(lambda: _counts(app) == (0, 2), timeout=20)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive() and result["done"] == 2
