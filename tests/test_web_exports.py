"""Background exports from the web app: seminars sent from phones come out as Central's csv.zip
and as an XLSX with one sheet per repeat; personal data only when an allowed role asks; grantee
staff get only their grantee; nobody downloads another's job; a job whose process died resumes;
old files go after 24 hours."""
import csv
import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from fieldsync import exports
from fieldsync.extensions import db, write_transaction
from fieldsync.models import Audit, ExportJob, WebUser, utcnow

from collect import SEMINAR, instance_xml, post


@pytest.fixture
def seminars(client, make_app_user):
    """Three seminars from Chinek's phone, one from Tomo's, each with a register (repeat)."""
    chinek = make_app_user(name="chinek export phone", grantee="chinek")["token"]
    tomo = make_app_user(name="tomo export phone", grantee="tomo")["token"]
    form = client.get(f"/v1/key/{chinek}/projects/1/forms/seminar_attendance.xml").data
    sent = []
    for token, grantee, village, people in (
            (chinek, "chinek", "Kant", [("Bakyt Osmonov", "male"), ("Aizada Tokonova", "female")]),
            (chinek, "chinek", "Tokmok", [("Nurlan Tokonov", "male")]),
            (chinek, "chinek", "Kemin", [("Asel Sadykova", "female"), ("Kanat Bekov", "male"), ("Aigul Asanova", "female")]),
            (tomo, "tomo", "Talas", [("Elnura Jumabaeva", "female")])):
        values = {**SEMINAR, "grantee": grantee, "village": village,
                  "participant": [{"full_name": n, "sex": s, "birth_year": 2008, "category": "student"}
                                  for n, s in people]}
        xml = instance_xml(form, values)
        response = post(client, f"/v1/key/{token}/projects/1/submission", xml)
        assert response.status_code == 201, response.data
        sent.append((grantee, village, [n for n, _ in people]))
    return sent


def start(web, **fields):
    data = {"what": "submissions", "format": "zip", "form": "seminar_attendance", **fields}
    response = web.post("/exports", data=data)
    assert response.status_code == 302, response.data
    job_id = int(re.search(r"#job-(\d+)$", response.headers["Location"]).group(1))
    assert exports.wait(job_id, 60)
    status = web.get(f"/exports/{job_id}/status").get_json()
    assert status["status"] == "done", status
    return job_id, status


def download(web, job_id):
    response = web.get(f"/exports/{job_id}/download")
    assert response.status_code == 200, response.data
    return response


def tables(data: bytes) -> dict[str, list[dict]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: list(csv.DictReader(io.StringIO(archive.read(name).decode("utf-8"))))
                for name in archive.namelist() if name.endswith(".csv")}


def test_csv_zip_has_root_and_repeat_tables_without_personal_data(app, web_client, seminars):
    web = web_client("coordinator")
    job_id, status = start(web)
    assert status["percent"] == 100 and status["total"] == 4 and status["download"]
    response = download(web, job_id)
    assert response.headers["Content-Type"] == "application/zip"
    assert f"seminar_attendance-{job_id}.zip" in response.headers["Content-Disposition"]
    got = tables(response.data)
    assert set(got) == {"seminar_attendance.csv", "seminar_attendance-participant.csv"}
    root, register = got["seminar_attendance.csv"], got["seminar_attendance-participant.csv"]
    assert sorted(r["village"] for r in root) == ["Kant", "Kemin", "Talas", "Tokmok"]
    assert len(register) == 7 and {r["PARENT_KEY"] for r in register} == {r["KEY"] for r in root}
    assert "full_name" not in register[0] and "photo" not in root[0]
    assert {r["sex"] for r in register} == {"male", "female"}
    with app.app_context():
        audit = db.session.scalars(select(Audit).where(Audit.action == "form.submissions.export")).all()[-1]
        assert json.loads(audit.details_json)["personal"] is False
        assert json.loads(audit.details_json)["job"] == job_id


def test_personal_data_only_when_an_allowed_role_asks(app, web_client, seminars):
    web = web_client("coordinator")
    job_id, _ = start(web, personal="yes")
    register = tables(download(web, job_id).data)["seminar_attendance-participant.csv"]
    assert "Aigul Asanova" in {r["full_name"] for r in register}
    with app.app_context():
        audit = db.session.scalars(select(Audit).where(Audit.action == "form.submissions.export")).all()[-1]
        assert json.loads(audit.details_json)["personal"] is True
    staff = web_client("grantee_staff", "chinek")
    assert 'data-test="export-personal"' not in staff.get("/exports").data.decode()
    assert staff.post("/exports", data={"what": "submissions", "format": "zip", "form": "seminar_attendance",
                                        "personal": "yes"}).status_code == 403
    with app.app_context():
        personal_jobs = db.session.scalars(select(ExportJob).where(ExportJob.params.like('%"personal": true%'))).all()
        assert [j.id for j in personal_jobs] == [job_id]  # the refused one left no job


def test_xlsx_has_one_sheet_for_the_root_and_one_per_repeat(app, web_client, seminars):
    web = web_client("admin")
    job_id, _ = start(web, format="xlsx", grantee="chinek")
    response = download(web, job_id)
    book = load_workbook(io.BytesIO(response.data), read_only=True)
    assert book.sheetnames == ["seminar_attendance", "participant"]
    root = list(book["seminar_attendance"].iter_rows(values_only=True))
    register = list(book["participant"].iter_rows(values_only=True))
    header = root[0]
    assert header[0] == "SubmissionDate" and "KEY" in header
    assert sorted(r[header.index("village")] for r in root[1:]) == ["Kant", "Kemin", "Tokmok"]
    assert len(register) - 1 == 6 and "full_name" not in register[0]
    year = register[0].index("birth_year")
    assert all(r[year] == 2008 for r in register[1:])  # numbers stay numbers


def test_grantee_staff_export_only_their_grantee(app, web_client, seminars):
    staff = web_client("grantee_staff", "tomo")
    job_id, _ = start(staff)
    root = tables(download(staff, job_id).data)["seminar_attendance.csv"]
    assert [r["village"] for r in root] == ["Talas"]
    # Asking for another grantee is refused, not quietly widened.
    assert staff.post("/exports", data={"what": "submissions", "format": "zip", "form": "seminar_attendance",
                                        "grantee": "chinek"}).status_code == 403


def test_filters_by_review_state_and_dates(app, web_client, seminars):
    web = web_client("coordinator")
    job_id, status = start(web, review_state="approved")
    assert status["total"] == 0
    assert tables(download(web, job_id).data)["seminar_attendance.csv"] == []
    today = utcnow().date()
    _, status = start(web, since=(today - timedelta(days=1)).isoformat(), until=(today + timedelta(days=1)).isoformat())
    assert status["total"] == 4
    _, status = start(web, until="2001-01-01")
    assert status["total"] == 0
    for bad in ({"since": "2026-13-45"}, {"since": "2026-12-02", "until": "2026-12-01"}, {"form": "nope"},
                {"review_state": "lost"}, {"grantee": "atlantis"}):
        response = web.post("/exports", data={"what": "submissions", "format": "zip",
                                              "form": "seminar_attendance", **bad})
        assert response.status_code == 302 and "#job-" not in response.headers["Location"], bad
    assert web.post("/exports", data={"what": "submissions", "format": "pdf"}).status_code == 400


def test_indicator_tables(app, web_client, seminars):
    web = web_client("coordinator")
    response = web.post("/exports", data={"what": "indicators", "format": "csv", "period": "2026"})
    job_id = int(re.search(r"#job-(\d+)$", response.headers["Location"]).group(1))
    assert exports.wait(job_id)
    rows = list(csv.DictReader(io.StringIO(download(web, job_id).data.decode())))
    held = {(r["org_unit"], r["disaggregation"]): r["value"] for r in rows if r["indicator"] == "events_held"}
    assert held[("chinek", "total")] == "3" and held[("tomo", "total")] == "1"
    staff = web_client("grantee_staff", "tomo")
    response = staff.post("/exports", data={"what": "indicators", "format": "xlsx", "period": ""})
    job_id = int(re.search(r"#job-(\d+)$", response.headers["Location"]).group(1))
    assert exports.wait(job_id)
    book = load_workbook(io.BytesIO(download(staff, job_id).data), read_only=True)
    units = {r[2] for r in list(book.active.iter_rows(values_only=True))[1:]}
    assert units == {"tomo"}
    bad = web.post("/exports", data={"what": "indicators", "format": "csv", "period": "2026Q7"})
    assert "#job-" not in bad.headers["Location"]
    assert "Write the period as a year" in web.get("/exports").data.decode()


def test_nobody_downloads_another_users_job(app, web_client, seminars):
    owner = web_client("coordinator")
    job_id, _ = start(owner)
    for other in (web_client("coordinator"), web_client("grantee_staff", "chinek")):
        assert other.get(f"/exports/{job_id}/download").status_code == 404
        assert other.get(f"/exports/{job_id}/status").status_code == 404
        assert f'data-job="{job_id}"' not in other.get("/exports").data.decode()
    assert web_client("admin").get(f"/exports/{job_id}/download").status_code == 200
    with app.app_context():
        downloads = db.session.scalars(select(Audit).where(Audit.action == "export.download")).all()
        assert len(downloads) == 1 and json.loads(downloads[0].details_json)["job"] == job_id  # the admin's; refused ones none
    for role in ("viewer", "evaluator"):
        assert web_client(role).get(f"/exports/{job_id}/download").status_code == 403
    assert owner.get("/exports/99999999/download").status_code == 404
    assert owner.get("/exports/../../secret_key/download").status_code == 404


def _user_id(app, web):
    with app.app_context():
        return db.session.scalar(select(WebUser.id).where(WebUser.email == web.email))


def test_a_job_whose_process_died_is_resumed(app, web_client, seminars):
    web = web_client("coordinator")
    params = {"form": "seminar_attendance", "personal": False, "media": False, "grantee_id": None,
              "review_state": None, "since": None, "until": None}
    with app.app_context():
        with write_transaction():
            dead = ExportJob(project_id=1, user_id=_user_id(app, web), kind="submissions.zip",
                             params=json.dumps(params), status="running", done_rows=2, total_rows=4,
                             started_at=utcnow() - timedelta(minutes=5), lease_until=utcnow() - timedelta(minutes=4))
            alive = ExportJob(project_id=1, user_id=_user_id(app, web), kind="submissions.zip",
                              params=json.dumps(params), status="running", done_rows=1, total_rows=4,
                              started_at=utcnow(), lease_until=utcnow() + timedelta(minutes=1))
            db.session.add_all([dead, alive])
        dead_id, alive_id = dead.id, alive.id
        assert exports.claim(alive_id) is None  # another process holds it: not ours
    page = web.get("/exports").data.decode()  # opening the page picks the dead job up
    assert f'data-job="{dead_id}"' in page
    assert exports.wait(dead_id, 60)
    status = web.get(f"/exports/{dead_id}/status").get_json()
    assert status["status"] == "done" and status["done"] == 4
    assert len(tables(download(web, dead_id).data)["seminar_attendance.csv"]) == 4
    assert web.get(f"/exports/{alive_id}/status").get_json()["status"] == "running"


def test_files_older_than_a_day_are_removed_when_a_new_job_starts(app, web_client, seminars):
    web = web_client("coordinator")
    job_id, _ = start(web)
    with app.app_context():
        job = db.session.get(ExportJob, job_id)
        path = exports.file_of(job)
        with write_transaction():
            db.session.get(ExportJob, job_id).finished_at = utcnow() - timedelta(hours=25)
    assert path.exists()
    start(web)
    assert not path.exists()
    assert web.get(f"/exports/{job_id}/download").status_code == 404
    assert "Removed after 24 hours" in web.get("/exports").data.decode()


def test_media_come_with_the_zip_but_personal_photos_only_when_asked(app, client, web_client, make_app_user):
    token = make_app_user(name="chinek camera phone", grantee="chinek")["token"]
    form = client.get(f"/v1/key/{token}/projects/1/forms/seminar_attendance.xml").data
    xml = instance_xml(form, {**SEMINAR, "photo": "seminar.jpg"})
    photo = b"\xff\xd8\xff\xe0" + b"a seminar in Kant" * 50
    assert post(client, f"/v1/key/{token}/projects/1/submission", xml, files={"seminar.jpg": photo}).status_code == 201
    web = web_client("coordinator")
    job_id, _ = start(web, media="yes")
    with zipfile.ZipFile(io.BytesIO(download(web, job_id).data)) as archive:
        assert not any(name.startswith("media/") for name in archive.namelist())  # the photo is personal
    job_id, _ = start(web, media="yes", personal="yes")
    with zipfile.ZipFile(io.BytesIO(download(web, job_id).data)) as archive:
        assert archive.read("media/seminar.jpg") == photo
        root = list(csv.DictReader(io.StringIO(archive.read("seminar_attendance.csv").decode())))
        assert root[0]["photo"] == "seminar.jpg"


def test_a_worker_that_lost_its_lease_stops_and_a_scheduler_can_run_left_jobs(app, web_client, seminars):
    web = web_client("coordinator")
    params = {"form": "seminar_attendance", "personal": False, "media": False, "grantee_id": None,
              "review_state": None, "since": None, "until": None}
    with app.app_context():
        with write_transaction():
            job = ExportJob(project_id=1, user_id=_user_id(app, web), kind="submissions.xlsx",
                            params=json.dumps(params), status="pending", done_rows=0,
                            created_at=utcnow() - timedelta(minutes=2))
            db.session.add(job)
        job_id = job.id
        first = exports.claim(job_id)
        assert first is not None and exports.claim(job_id) is None
        with write_transaction():
            db.session.get(ExportJob, job_id).lease_until = utcnow() - timedelta(seconds=1)
        assert exports.claim(job_id) not in (None, first)  # taken over
        with pytest.raises(exports.Abandoned):
            exports._reporter(job_id, first)(1, 4, force=True)
        with write_transaction():
            db.session.get(ExportJob, job_id).lease_until = utcnow() - timedelta(seconds=1)
        # The served process's scheduler runs it under the job lock, as it does every 2 minutes.
        from fieldsync import jobs
        assert jobs.run_once(app, "exports.stale", jobs._exports_housekeeping)
        done = db.session.get(ExportJob, job_id)
        db.session.refresh(done)
        assert done.status == "done" and done.done_rows == 4 and exports.file_of(done).stat().st_size > 0
