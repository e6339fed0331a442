"""OData v4: service document, $metadata read by a real OData client library, paging that
returns every row exactly once, $filter, $select, $count, $expand, and the refusals."""
import hashlib
import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from fieldsync.extensions import db
from fieldsync.models import Form, Submission, SubmissionDef, utcnow

from collect import SEMINAR, instance_id_of, instance_xml, post

SVC = "/v1/projects/1/forms/seminar_attendance.svc"


@pytest.fixture
def sent(client, make_app_user):
    phone = make_app_user(name="phone", grantee="chinek")
    form_xml = client.get(f"/v1/key/{phone['token']}/projects/1/forms/seminar_attendance.xml").data
    ids = []
    for village in ("Kant", "Tokmok", "Ivanovka"):
        xml = instance_xml(form_xml, {**SEMINAR, "village": village, "location": "42.87 74.59 800 5"})
        assert post(client, f"/v1/key/{phone['token']}/projects/1/submission", xml).status_code == 201
        ids.append(instance_id_of(xml))
    return ids


def test_service_document(client, make_user, sent):
    response = client.get(SVC, headers=make_user("coordinator"))
    assert response.status_code == 200 and response.headers["OData-Version"] == "4.0"
    body = response.get_json()
    assert body["@odata.context"].endswith(f"{SVC}/$metadata")
    assert [v["name"] for v in body["value"]] == ["Submissions", "Submissions.participant"]


@pytest.mark.slow
def test_metadata_and_rows_are_read_by_a_real_odata_client(live_server, make_user, sent):
    """python-odata (an OData v4 client) reflects the entity types from $metadata over HTTP and
    queries the entity set with them."""
    import requests
    from odata import ODataService

    headers = make_user("coordinator")
    server = live_server()
    session = requests.Session()
    session.headers.update(headers)
    service = ODataService(f"{server.url}{SVC}/", reflect_entities=True, session=session, quiet_progress=True)
    assert {"Submissions", "Submissions.participant"} <= set(service.entities)
    Submissions = service.entities["Submissions"]
    columns = {name for name in dir(Submissions) if not name.startswith("_")}
    assert {"village", "event_date", "headcount_female"} <= columns
    assert "full_name" not in dir(service.entities["Submissions.participant"])
    rows = service.query(Submissions).limit(2).all()
    assert len(rows) == 2 and {r.village for r in rows} <= {"Kant", "Tokmok", "Ivanovka"}


def test_rows_in_central_shape(client, make_user, sent):
    body = client.get(SVC + "/Submissions", headers=make_user("coordinator")).get_json()
    rows = body["value"]
    assert [r["__id"] for r in rows] == list(reversed(sent))  # newest first
    row = rows[0]
    assert row["village"] == "Ivanovka" and row["headcount_female"] == 0 and row["event_date"] == "2026-11-20"
    assert row["location"] == {"type": "Point", "coordinates": [74.59, 42.87, 800.0], "properties": {"accuracy": 5.0}}
    assert row["participant@odata.navigationLink"] == f"Submissions('{row['__id']}')/participant"
    assert row["__system"]["reviewState"] is None and row["__system"]["edits"] == 0
    assert row["__system"]["submitterName"] == "phone" and row["__system"]["grantee"] == "chinek"
    assert "participant" not in row
    wkt = client.get(SVC + "/Submissions?$wkt=true&$top=1", headers=make_user("coordinator")).get_json()
    assert wkt["value"][0]["location"] == "POINT (74.59 42.87 800.0)"


def test_personal_data_only_on_request_and_for_roles_that_may(client, make_user, sent):
    coordinator = make_user("coordinator")
    expanded = client.get(SVC + "/Submissions?$expand=*", headers=coordinator).get_json()["value"][0]
    assert expanded["participant"] and "full_name" not in expanded["participant"][0]
    with_names = client.get(SVC + "/Submissions?$expand=*&personal=true", headers=coordinator).get_json()
    assert with_names["value"][0]["participant"][0]["full_name"] == "Bakyt Osmonov"
    staff = make_user("grantee_staff", grantee="chinek")
    assert client.get(SVC + "/Submissions?personal=true", headers=staff).status_code == 403
    assert len(client.get(SVC + "/Submissions", headers=staff).get_json()["value"]) == 3
    other = make_user("grantee_staff", grantee="tomo")
    assert client.get(SVC + "/Submissions", headers=other).get_json()["value"] == []


def test_top_skiptoken_count_select_filter(client, make_user, sent):
    coordinator = make_user("coordinator")
    first = client.get(SVC + "/Submissions?$top=2&$count=True&$select=__id,village", headers=coordinator).get_json()
    assert first["@odata.count"] == 3 and len(first["value"]) == 2
    assert set(first["value"][0]) == {"__id", "village"}
    next_link = first["@odata.nextLink"]
    assert "%24skiptoken=01" in next_link or "$skiptoken=01" in next_link
    second = client.get(next_link.replace("http://localhost", ""), headers=coordinator).get_json()
    assert [r["__id"] for r in first["value"] + second["value"]] == list(reversed(sent))
    assert "@odata.nextLink" not in second
    since = (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = client.get(SVC + f"/Submissions?$filter=__system/submissionDate gt {since}", headers=coordinator)
    assert len(recent.get_json()["value"]) == 3
    one = client.get(SVC + f"/Submissions?$filter=__id eq '{sent[0]}'", headers=coordinator).get_json()
    assert [r["__id"] for r in one["value"]] == [sent[0]]
    none = client.get(SVC + "/Submissions?$filter=__system/reviewState eq 'approved'", headers=coordinator)
    assert none.get_json()["value"] == []
    received = client.get(SVC + "/Submissions?$filter=__system/reviewState eq null and year(__system/submissionDate) ge 2020",
                          headers=coordinator)
    assert len(received.get_json()["value"]) == 3
    repeat = client.get(SVC + "/Submissions.participant?$top=4", headers=coordinator).get_json()
    assert len(repeat["value"]) == 4 and repeat["value"][0]["__Submissions-id"] in sent
    assert "@odata.nextLink" in repeat


@pytest.mark.parametrize("query, status", [
    ("$apply=groupby", 501), ("$filter=village eq 'Kant'", 501), ("$select=__id&$expand=*", 501),
    ("$top=x", 400), ("$skiptoken=bogus", 400), ("$orderby=__id&$skiptoken=01e30=", 501),
])
def test_refusals(client, make_user, sent, query, status):
    response = client.get(SVC + "/Submissions?" + query, headers=make_user("coordinator"))
    assert response.status_code == status
    assert "code" in response.get_json()


def test_unknown_table_and_form(client, make_user, sent):
    coordinator = make_user("coordinator")
    assert client.get(SVC + "/Nope", headers=coordinator).status_code == 404
    assert client.get("/v1/projects/1/forms/nope.svc", headers=coordinator).status_code == 404
    assert client.get(SVC).status_code == 401


@pytest.mark.slow
def test_paging_through_ten_thousand_returns_each_exactly_once(app, client, make_user, live_server, tmp_path):
    """Rows written straight into the tables (this is about paging, not ingest)."""
    with app.app_context():
        form = db.session.scalar(select(Form).where(Form.xml_form_id == "consultation_log"))
        version = form.current_version
        template = instance_xml(version.xml, {"grantee": "chinek", "service_date": "2026-10-01", "channel": "hotline"},
                                instance_id="uuid:TEMPLATE")
        now = utcnow()
        for batch in range(10):
            rows = []
            for i in range(1000):
                iid = f"uuid:{uuid.uuid4()}"
                xml = template.replace(b"uuid:TEMPLATE", iid.encode())
                rows.append((iid, xml))
            submissions = [Submission(form_id=form.id, instance_id=iid, review_state="received", created_at=now)
                           for iid, _ in rows]
            db.session.add_all(submissions)
            db.session.flush()
            defs = [SubmissionDef(submission_id=s.id, form_id=form.id, form_version_id=version.id, instance_id=iid,
                                  xml=xml, xml_sha256=hashlib.sha256(xml).hexdigest(), created_at=now)
                    for s, (iid, xml) in zip(submissions, rows)]
            db.session.add_all(defs)
            db.session.flush()
            for s, d in zip(submissions, defs):
                s.current_def_id = d.id
            db.session.commit()
    coordinator = make_user("coordinator")
    url, seen, pages = "/v1/projects/1/forms/consultation_log.svc/Submissions?$top=1000&$select=__id", [], 0
    while url:
        body = client.get(url, headers=coordinator).get_json()
        seen += [r["__id"] for r in body["value"]]
        url = body.get("@odata.nextLink", "").replace("http://localhost", "") or None
        pages += 1
    assert len(seen) == 10_000 and len(set(seen)) == 10_000 and pages == 10
    streamed = client.get("/v1/projects/1/forms/consultation_log.svc/Submissions?$select=__id", headers=coordinator)
    ids = [r["__id"] for r in json.loads(streamed.data)["value"]]
    assert sorted(ids) == sorted(seen)

    # And as a pyODK script pages it, over real HTTP: get_table with $top and $skip.
    from pyodk.client import Client

    make_user("coordinator", email="pager@example.org", password="correct horse battery")
    server = live_server()
    config = tmp_path / "pyodk.toml"
    config.write_text(f'[central]\nbase_url = "{server.url}"\nusername = "pager@example.org"\n'
                      'password = "correct horse battery"\ndefault_project_id = 1\n')
    pyodk_client = Client(config_path=str(config), cache_path=str(tmp_path / "cache.toml"))
    paged = []
    for page in range(10):
        table = pyodk_client.submissions.get_table(form_id="consultation_log", skip=page * 1000, top=1000,
                                                   count=True, select="__id")
        assert table["@odata.count"] == 10_000
        paged += [r["__id"] for r in table["value"]]
    assert len(paged) == 10_000 and set(paged) == set(seen)


def test_submissions_csv_zip_like_central(client, make_user, sent):
    import csv
    import io
    import zipfile

    coordinator = make_user("coordinator")
    response = client.get("/v1/projects/1/forms/seminar_attendance/submissions.csv.zip", headers=coordinator)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/zip"
    assert 'filename=seminar_attendance.zip' in response.headers["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert set(archive.namelist()) == {"seminar_attendance.csv", "seminar_attendance-participant.csv"}
    root = list(csv.DictReader(io.StringIO(archive.read("seminar_attendance.csv").decode())))
    assert [r["KEY"] for r in root] == list(reversed(sent))
    assert root[0]["village"] == "Ivanovka" and root[0]["location-Latitude"] == "42.87"
    assert root[0]["location-Accuracy"] == "5" and root[0]["meta-instanceID"] == root[0]["KEY"]
    header = archive.read("seminar_attendance.csv").decode().splitlines()[0].split(",")
    assert header[0] == "SubmissionDate" and header[-10:] == ["KEY", "SubmitterID", "SubmitterName",
                                                                "AttachmentsPresent", "AttachmentsExpected", "Status",
                                                                "ReviewState", "DeviceID", "Edits", "FormVersion"]
    participants = list(csv.DictReader(io.StringIO(archive.read("seminar_attendance-participant.csv").decode())))
    assert len(participants) == 6 and participants[0]["PARENT_KEY"] in sent
    assert "full_name" not in participants[0]  # personal data stays out unless asked for
    named = zipfile.ZipFile(io.BytesIO(client.get(
        "/v1/projects/1/forms/seminar_attendance/submissions.csv.zip?personal=true", headers=coordinator).data))
    assert "full_name" in named.read("seminar_attendance-participant.csv").decode().splitlines()[0]
    flat = client.get("/v1/projects/1/forms/seminar_attendance/submissions.csv", headers=coordinator)
    assert flat.status_code == 200 and flat.data.decode().count("\n") == 4
