"""Every feed reads submissions through the one scoped reader (`review.reader`): for grantee
staff, the REST list, OData, CSV, csv.zip, the web table, the forms page's count and a
background export all give exactly the reader's rows; the permission for each verb is the same
in the API and the web; and the number of export jobs a user has at once is bounded."""
import csv
import io
import re
import zipfile

import pytest

from collect import SEMINAR, instance_id_of, instance_xml, post
from fieldsync import exports, problems
from fieldsync.auth import accounts
from fieldsync.extensions import db
from fieldsync.models import WebUser
from fieldsync.review import reader
from fieldsync.xlsform import queries as form_queries
from web_fixtures import PASSWORD, WebClient, create_user

BASE = "/v1/projects/1/forms/seminar_attendance"


@pytest.fixture
def sent(client, make_app_user):
    """Seminars from a Chinek device (one of them naming Tomo: held under Chinek), a Tomo device
    and an evaluator's device (for Chinek)."""
    chinek = make_app_user(name="Chinek tablet", grantee="chinek")["token"]
    tomo = make_app_user(name="Tomo tablet", grantee="tomo")["token"]
    evaluator = make_app_user(name="Evaluator phone", evaluator=True)["token"]
    form = client.get(f"/v1/key/{chinek}/projects/1/forms/seminar_attendance.xml").data
    ids = {}
    for label, token, values in (
            ("chinek", chinek, SEMINAR), ("chinek-2", chinek, {**SEMINAR, "village": "Tokmok"}),
            ("held", chinek, {**SEMINAR, "grantee": "tomo"}), ("tomo", tomo, {**SEMINAR, "grantee": "tomo"}),
            ("evaluator", evaluator, {**SEMINAR, "village": "Kemin"})):
        xml = instance_xml(form, values)
        assert post(client, f"/v1/key/{token}/projects/1/submission", xml).status_code == 201
        ids[label] = instance_id_of(xml)
    return ids


def signed_in(app, client, role, grantee=None):
    """The same user over the API (Bearer) and in the web app (session and CSRF)."""
    email = create_user(app, role, grantee)
    token = client.post("/v1/sessions", json={"email": email, "password": PASSWORD}).get_json()["token"]
    return email, {"Authorization": f"Bearer {token}"}, WebClient(app.test_client(), email)


def reader_ids(app, email) -> set[str]:
    with app.app_context():
        actor = accounts.actor_for_user(db.session.query(WebUser).filter_by(email=email).one())
        form = form_queries.form_by_xml_id(1, "seminar_attendance")
        return {s.instance_id for page in reader.batches(reader.visible(actor, form)) for s in page}


def feeds(app, client, bearer, web) -> dict[str, set[str]]:
    rest = {r["instanceId"] for r in client.get(f"{BASE}/submissions", headers=bearer).get_json()}
    odata = {r["__id"] for r in client.get(f"{BASE}.svc/Submissions", headers=bearer).get_json()["value"]}
    rows = csv.DictReader(io.StringIO(client.get(f"{BASE}/submissions.csv", headers=bearer).get_data(as_text=True)))
    as_csv = {r["KEY"] for r in rows}
    with zipfile.ZipFile(io.BytesIO(client.get(f"{BASE}/submissions.csv.zip", headers=bearer).data)) as archive:
        as_zip = {r["KEY"] for r in csv.DictReader(io.StringIO(archive.read("seminar_attendance.csv").decode()))}
    page = web.get("/submissions?form=seminar_attendance").get_data(as_text=True)
    as_web = set(re.findall(r"/submissions/seminar_attendance/(uuid:[0-9a-f-]+)", page))
    response = web.post("/exports", data={"what": "submissions", "format": "zip", "form": "seminar_attendance"})
    job_id = int(re.search(r"#job-(\d+)$", response.headers["Location"]).group(1))
    assert exports.wait(job_id, 60)
    with zipfile.ZipFile(io.BytesIO(web.get(f"/exports/{job_id}/download").data)) as archive:
        background = {r["KEY"] for r in csv.DictReader(io.StringIO(archive.read("seminar_attendance.csv").decode()))}
    forms_page = web.get("/forms/seminar_attendance").get_data(as_text=True)
    return {"rest": rest, "odata": odata, "csv": as_csv, "zip": as_zip, "web": as_web,
            "background": background, "count": len(rest), "forms_page": forms_page}


def test_every_feed_gives_grantee_staff_exactly_the_readers_rows(app, client, sent):
    email, bearer, web = signed_in(app, client, "grantee_staff", "chinek")
    expected = reader_ids(app, email)
    # What Chinek's staff may see: Chinek's own, the held one (under Chinek), the evaluator's for Chinek.
    assert expected == {sent["chinek"], sent["chinek-2"], sent["held"], sent["evaluator"]}
    seen = feeds(app, client, bearer, web)
    for name in ("rest", "odata", "csv", "zip", "web", "background"):
        assert seen[name] == expected, name
    # The control: a coordinator's feeds hold the Tomo seminar too, so the equality above could fail.
    c_email, c_bearer, c_web = signed_in(app, client, "coordinator")
    everything = feeds(app, client, c_bearer, c_web)
    assert reader_ids(app, c_email) == everything["rest"] == everything["odata"] == everything["background"]
    assert sent["tomo"] in everything["rest"] and sent["tomo"] not in seen["rest"]


@pytest.mark.parametrize("path", ["/submissions.csv", "/submissions.csv.zip", ".svc/Submissions"])
def test_an_evaluator_may_not_export_over_the_api_as_in_the_web(app, client, sent, path):
    _email, bearer, web = signed_in(app, client, "evaluator")
    assert web.get("/exports").status_code == 403
    response = client.get(BASE + path, headers=bearer)
    assert response.status_code == 403 and response.get_json()["code"] == 403.1
    # Reading one by one is what an evaluator may do.
    assert client.get(f"{BASE}/submissions/{sent['tomo']}", headers=bearer).status_code == 200


def test_a_job_reads_as_its_user_when_it_runs(app, client, sent):
    """A staff member moved to another grantee after asking exports what they may see now."""
    email, _bearer, web = signed_in(app, client, "grantee_staff", "chinek")
    with app.app_context():
        from fieldsync.models import Grantee
        user = db.session.query(WebUser).filter_by(email=email).one()
        form = form_queries.form_by_xml_id(1, "seminar_attendance")
        job = exports.ExportJob(project_id=1, user_id=user.id, kind="submissions.zip", status="pending",
                                params='{"form": "seminar_attendance", "personal": false, "media": false}')
        db.session.add(job)
        user.grantee_id = db.session.query(Grantee).filter_by(code="tomo").one().id
        db.session.commit()
        _form, query = exports._spec(job, {"form": "seminar_attendance"})
        assert {s.instance_id for page in reader.batches(query) for s in page} == {sent["tomo"]}
        assert form is not None


def test_export_jobs_per_user_are_bounded(app, client, sent, monkeypatch):
    # Jobs recorded but not yet run (as when the machine is busy): their threads do not start.
    monkeypatch.setattr(exports, "launch", lambda app, job_id: None)
    _email, _bearer, web = signed_in(app, client, "coordinator")
    for _ in range(exports.MAX_JOBS_PER_USER):
        response = web.post("/exports", data={"what": "indicators", "format": "csv", "period": "2026"})
        assert "#job-" in response.headers["Location"]
    response = web.post("/exports", data={"what": "indicators", "format": "csv", "period": "2026"})
    assert response.status_code == 302 and "#job-" not in response.headers["Location"]
    assert "exports being prepared" in web.get("/exports").get_data(as_text=True)
    with app.app_context():
        assert db.session.query(exports.ExportJob).count() == exports.MAX_JOBS_PER_USER
    # Another user is not held up by the first one's queue.
    _other, _b, other = signed_in(app, client, "coordinator")
    assert "#job-" in other.post("/exports", data={"what": "indicators", "format": "csv",
                                                   "period": "2026"}).headers["Location"]


def test_an_odata_skiptoken_naming_another_grantees_submission_answers_as_an_unknown_one(app, client, sent):
    from fieldsync.formats import odata

    _email, bearer, _web = signed_in(app, client, "grantee_staff", "chinek")
    theirs = client.get(f"{BASE}.svc/Submissions", headers=bearer,
                        query_string={"$top": "1", "$skiptoken": odata.skiptoken({"instanceId": sent["tomo"]})})
    unknown = client.get(f"{BASE}.svc/Submissions", headers=bearer, query_string={
        "$top": "1", "$skiptoken": odata.skiptoken({"instanceId": "uuid:00000000-0000-4000-8000-000000000000"})})
    assert theirs.status_code == unknown.status_code == 400
    assert theirs.get_json() == unknown.get_json()
