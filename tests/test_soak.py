"""A soak: a live gunicorn server (2 workers) taking new uploads, resends, CSV and OData exports,
indicator reads and full recomputes all at once for a while, as a busy day in the office
would. Nothing may fail, the database connections and the workers' memory must stay bounded,
and once the load stops the indicators must equal a recompute from scratch.

30 s by default (CI); FIELDSYNC_SOAK_SECONDS=300 for the few minutes to run by hand.
FIELDSYNC_SOAK_NEW_DATA=0 stops new submissions once the warm-up is over (the uploaders resend
what was sent, so every request still runs but the database stops growing): memory that
still grows then is not the data's.
"""
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, text

from fieldsync import indicators
from fieldsync.extensions import db
from fieldsync.models import PendingRecord, Submission

from collect import OPENROSA, SEMINAR, instance_xml
from conftest import backend

pytestmark = [pytest.mark.slow, pytest.mark.fault]

SECONDS = float(os.environ.get("FIELDSYNC_SOAK_SECONDS", "30"))
NEW_DATA = os.environ.get("FIELDSYNC_SOAK_NEW_DATA", "1") != "0"
RSS_GROWTH_LIMIT_MB = 60
CONNECTION_SLACK = 4


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _database_connections(app, pids) -> int:
    """Open connections of the server: PostgreSQL backends of this database (other than the
    test's own), or, on SQLite, file descriptors the workers hold on the database file."""
    if backend() == "postgresql":
        with app.app_context():
            count = db.session.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).scalar()
            db.session.remove()
        return count
    count = 0
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd).endswith("fieldsync.db"):
                        count += 1
                except OSError:
                    pass
        except OSError:
            pass
    return count


def test_soak_uploads_resends_exports_and_recomputes(app, live_server, make_app_user, make_user, instance):
    server = live_server(workers=2)
    token = make_app_user(name="soak phone", grantee="chinek")["token"]
    coordinator = make_user("coordinator")
    submit_url = f"{server.url}/v1/key/{token}/projects/1/submission"
    forms = {f: requests.get(f"{server.url}/v1/key/{token}/projects/1/forms/{f}.xml").content
             for f in ("seminar_attendance", "consultation_log")}
    statuses: Counter = Counter()
    unexpected: list[str] = []
    sent: list[bytes] = []
    lock = threading.Lock()
    stop, warmed = threading.Event(), threading.Event()
    recomputes = []

    def note(what, response, expected):
        with lock:
            statuses[(what, response.status_code)] += 1
            if response.status_code != expected:
                unexpected.append(f"{what}: {response.status_code} {response.text[:300]}")

    def post(session, xml):
        return session.post(submit_url, files={"xml_submission_file": ("instance.xml", xml, "text/xml")},
                            headers=OPENROSA, timeout=60)

    def uploader(seed):
        rng, session, n = random.Random(seed), requests.Session(), 0
        while not stop.is_set():
            n += 1
            if warmed.is_set() and not NEW_DATA and sent:
                with lock:
                    xml = rng.choice(sent)
                note("resend", post(session, xml), 201)
                continue
            if rng.random() < 0.3:
                people = [{"full_name": f"{rng.choice(['Aigul', 'Bakyt', 'Asel', 'Nurlan'])} "
                                        f"{rng.choice(['Asanova', 'Osmonov', 'Sadykova', 'Tokonov'])}",
                           "sex": rng.choice(["female", "male"]), "birth_year": rng.randint(2000, 2010),
                           "category": "student"} for _ in range(rng.randint(1, 30))]
                xml = instance_xml(forms["seminar_attendance"], {
                    **SEMINAR, "village": f"Aiyl {seed}-{n}", "participant": people,
                    "event_date": f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}"})
            else:
                xml = instance_xml(forms["consultation_log"], {
                    "grantee": "chinek", "service_date": f"2026-{rng.randint(1, 11):02d}-10",
                    "channel": rng.choice(["hotline", "in_person", "outreach"]), "service_type": "legal",
                    "client_sex": "female", "client_age_group": "18_35",
                    "client_is_victim": rng.choice(["yes", "no"]), "client_code": f"C-{rng.randint(1, 200)}"})
            note("upload", post(session, xml), 201)
            with lock:
                sent.append(xml)

    def resender():
        rng, session = random.Random(7), requests.Session()
        while not stop.is_set():
            with lock:
                xml = rng.choice(sent) if sent else None
            if xml is None:
                time.sleep(0.05)
                continue
            note("resend", post(session, xml), 201)

    def exporter():
        session = requests.Session()
        session.headers.update(coordinator)
        base = f"{server.url}/v1/projects/1"
        while not stop.is_set():
            with session.get(f"{base}/forms/seminar_attendance/submissions.csv", stream=True, timeout=120) as r:
                for _chunk in r.iter_content(65536):
                    pass
                note("csv", r, 200)
            note("odata", session.get(f"{base}/forms/consultation_log.svc/Submissions?$top=200", timeout=60), 200)
            note("indicators", session.get(f"{base}/indicator-values?orgUnit=chinek", timeout=60), 200)
            stop.wait(0.5)

    def recomputer():
        while not stop.wait(max(2.0, SECONDS / 8)):
            with app.app_context():
                try:
                    recomputes.append(indicators.recompute("soak").cells)
                except Exception as error:  # noqa: BLE001 - any failure is the finding
                    with lock:
                        unexpected.append(f"recompute: {error!r}")
                finally:
                    db.session.remove()

    threads = [threading.Thread(target=uploader, args=(s,)) for s in (1, 2)]
    threads += [threading.Thread(target=f) for f in (resender, exporter, recomputer)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(min(5.0, SECONDS / 4))  # warmed up: caches filled, pools opened
        warmed.set()
        pids = server.serving_pids()  # gunicorn's workers, not the derive worker's supervisor
        assert len(pids) == 2
        rss_start = {pid: _rss_mb(pid) for pid in pids}
        connections_start = _database_connections(app, pids)
        samples = []
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            time.sleep(1.0)
            samples.append((_database_connections(app, pids), {pid: _rss_mb(pid) for pid in pids}))
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)

    growth = {pid: max(rss[pid] for _c, rss in samples) - rss_start[pid] for pid in pids}
    print(f"\nsoak {SECONDS:.0f} s on {backend()}{'' if NEW_DATA else ', no new data after the warm-up'}: "
          f"{dict(statuses)}; {len(recomputes)} recomputes; "
          f"connections {connections_start} at start, at most {max(c for c, _r in samples)}; worker RSS "
          + ", ".join(f"{rss_start[p]:.0f} MB +{growth[p]:.1f}" for p in pids)
          + "; RSS by tenth of the run " + " | ".join(
              " ".join(f"{samples[min(len(samples) - 1, len(samples) * q // 10)][1][p]:.0f}" for q in range(1, 11))
              for p in pids))
    assert not unexpected, unexpected[:10]
    assert statuses[("upload", 201)] > (20 if NEW_DATA else 0) and statuses[("resend", 201)] > 10
    assert statuses[("csv", 200)] >= 2
    assert recomputes, "no recompute ran"
    assert server.serving_pids() == pids, "a worker died or was replaced"
    most_connections = max(count for count, _rss in samples)
    assert most_connections <= connections_start + CONNECTION_SLACK, (connections_start, samples)
    for pid in pids:
        peak = max(rss[pid] for _count, rss in samples)
        assert peak - rss_start[pid] < RSS_GROWTH_LIMIT_MB, (pid, rss_start[pid], peak)

    # The load is over: the server's derive workers empty the queue by themselves, and what the
    # incremental path left equals a recompute from scratch.
    def queue_empty():
        with app.app_context():
            left = db.session.scalar(select(func.count()).select_from(PendingRecord))
            db.session.remove()
        return left == 0
    deadline = time.monotonic() + 60
    while not queue_empty():
        assert time.monotonic() < deadline, "the derive queue was not drained"
        time.sleep(0.2)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == len(set(sent))
        assert indicators.recompute("soak-final").drift == 0
    log = "".join(p.read_text() for p in Path(instance[0]).glob("server-*.log"))
    assert "Traceback" not in log, log[-3000:]
