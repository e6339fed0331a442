"""The forms pages: publishing XLSForms in the browser (errors in plain words, nothing changed on
a mistake), version conflicts, media uploads with safe names, opening and closing a form."""
import html
import io

import pytest
from sqlalchemy import func, select

from fieldsync.extensions import db
from fieldsync.models import Form, FormVersion

from fieldsync.xlsform.convert import java_available

from xlsforms import workbook

BROKEN_RELEVANT = [{"type": "text", "name": "village", "label": "Village"},
                   {"type": "integer", "name": "age", "label": "Age", "relevant": "${vilage} != ''"}]
MEDIA_SURVEY = [{"type": "select_one_from_file villages.csv", "name": "village", "label": "Village"},
                {"type": "text", "name": "note", "label": "Note"}]


def upload(web, data, name="form.xlsx"):
    return web.post("/forms", data={"workbook": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def versions(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(FormVersion))


@pytest.fixture
def admin(web_client):
    return web_client("admin")


def test_the_list_shows_published_forms_with_state_and_counts(app, web_client):
    page = web_client("viewer").get("/forms")
    assert page.status_code == 200
    text = page.data.decode()
    for form_id in ("seminar_attendance", "consultation_log", "needs_assessment", "beneficiary_interview"):
        assert f'data-form="{form_id}"' in text
    assert "badge-open" in text and 'data-test="upload-form"' not in text  # viewers cannot publish


def test_a_broken_workbook_shows_plain_errors_and_changes_nothing(app, admin):
    before = versions(app)
    response = upload(admin, workbook("broken_one", survey=BROKEN_RELEVANT))
    assert response.status_code == 400
    text = response.data.decode()
    assert 'data-test="upload-error"' in text and "Traceback" not in text
    assert "Sheet “survey”, row 3" in text  # where
    assert "Could not find the name &#39;vilage&#39;" in text or "Could not find the name 'vilage'" in text
    unknown = upload(admin, workbook("broken_two", survey=[{"type": "frobnicate", "name": "x", "label": "X"}]))
    assert unknown.status_code == 400 and "Unknown question type &#39;frobnicate&#39;." in unknown.data.decode()
    not_a_workbook = upload(admin, b"name,label\nx,y\n", "form.xlsx")
    assert not_a_workbook.status_code == 400 and "could not be opened as an Excel workbook" in not_a_workbook.data.decode()
    assert versions(app) == before
    with app.app_context():
        assert db.session.scalar(select(Form).where(Form.xml_form_id.like("broken%"))) is None


@pytest.mark.skipif(not java_available(), reason="ODK Validate needs Java")
def test_odk_validate_errors_are_shown_without_its_noise(app, admin):
    before = versions(app)
    response = upload(admin, workbook("bad_brackets", survey=[
        {"type": "text", "name": "village", "label": "Village"},
        {"type": "integer", "name": "age", "label": "Age", "relevant": "(${village} = 'Kant'"}]))
    assert response.status_code == 400
    text = html.unescape(response.data.decode())
    assert "did not pass ODK Validate" in text and "mismatched brackets or parentheses" in text
    assert "${tmp" not in text and "Result: Invalid" not in text and "ODK Validate Errors" not in text
    assert versions(app) == before


def test_wrong_file_types_and_huge_files_are_refused(app, admin):
    assert "Only Excel workbooks" in upload(admin, b"x", "form.csv").data.decode()
    huge = upload(admin, b"0" * (5 * 1024 * 1024 + 1))
    assert huge.status_code == 413 and "larger than 5 MB" in huge.data.decode()
    nothing = admin.post("/forms", data={}, content_type="multipart/form-data")
    assert nothing.status_code == 400 and "Choose an XLSForm workbook" in nothing.data.decode()


def test_a_good_workbook_publishes_then_a_changed_one_with_the_same_version_conflicts(app, admin):
    response = upload(admin, workbook("village_visit", version="2026120101", title="Village visit"))
    assert response.status_code == 302 and response.headers["Location"] == "/forms/village_visit"
    detail = admin.get("/forms/village_visit").data.decode()
    assert "Published Village visit version 2026120101." in detail
    assert 'data-form="village_visit"' in admin.get("/forms").data.decode()
    again = upload(admin, workbook("village_visit", version="2026120101", title="Village visit"))
    assert "nothing changed" in admin.get(again.headers["Location"]).data.decode()
    changed = workbook("village_visit", version="2026120101", title="Village visit",
                       survey=[{"type": "text", "name": "village", "label": "Which village?"}])
    conflict = upload(admin, changed)
    assert conflict.status_code == 409
    assert "Give the changed form a new version in its settings sheet" in conflict.data.decode()
    newer = upload(admin, workbook("village_visit", version="2026120102", title="Village visit",
                                   survey=[{"type": "text", "name": "village", "label": "Which village?"}]))
    assert newer.status_code == 302
    page = admin.get("/forms/village_visit").data.decode()
    assert 'data-test="form-version">2026120102<' in page and "2026120101" in page


def test_media_uploads_take_only_expected_plain_names(app, admin, client, make_app_user):
    assert upload(admin, workbook("villages_form", survey=MEDIA_SURVEY, choices=[])).status_code == 302
    page = admin.get("/forms/villages_form").data.decode()
    assert "villages.csv" in page and "Missing" in page

    def send(name, data=b"name,label\nkant,Kant\n"):
        return admin.post("/forms/villages_form/media", data={"name": name, "file": (io.BytesIO(data), name)},
                          content_type="multipart/form-data")
    for bad in ("../x.csv", "..\\villages.csv", "/etc/passwd", ".hidden.csv"):
        refused = send(bad)
        assert refused.status_code == 400, bad
        assert "is not allowed: use a plain file name without folders" in refused.data.decode()
    other = send("other.csv")
    assert other.status_code == 400 and "does not use a file named" in other.data.decode()
    done = send("villages.csv")
    assert done.status_code == 302
    assert "Uploaded villages.csv." in admin.get("/forms/villages_form").data.decode()
    # A device now gets the file through the manifest.
    token = make_app_user(grantee="chinek")["token"]
    manifest = client.get(f"/v1/key/{token}/projects/1/forms/villages_form/manifest",
                          headers={"X-OpenRosa-Version": "1.0"})
    assert manifest.status_code == 200 and b"villages.csv" in manifest.data and b"downloadUrl" in manifest.data
    # A new version of the form keeps the file.
    upload(admin, workbook("villages_form", version="2", survey=MEDIA_SURVEY, choices=[]))
    assert "Missing" not in admin.get("/forms/villages_form").data.decode()


def test_the_published_workbook_uploaded_again_is_unchanged_and_keeps_its_media(app, admin):
    from pathlib import Path
    source = Path(__file__).resolve().parent.parent / "forms" / "seminar_attendance.xlsx"
    before = versions(app)
    response = upload(admin, source.read_bytes(), "seminar_attendance.xlsx")
    assert response.status_code == 302, response.data
    page = admin.get(response.headers["Location"]).data.decode()
    assert "nothing changed" in page and "Missing" not in page
    assert versions(app) == before


def test_open_and_close_a_form(app, admin, client, make_app_user):
    token = make_app_user(grantee="chinek")["token"]
    form_list = lambda: client.get(f"/v1/key/{token}/projects/1/formList", headers={"X-OpenRosa-Version": "1.0"}).data
    assert b"consultation_log" in form_list()
    closed = admin.post("/forms/consultation_log/state", data={"state": "closed"})
    assert closed.status_code == 302
    page = admin.get("/forms/consultation_log").data.decode()
    assert "is closed: it takes no more submissions." in page and 'data-test="form-state">Closed<' in page
    assert b"consultation_log" not in form_list()
    admin.post("/forms/consultation_log/state", data={"state": "open"})
    assert b"consultation_log" in form_list()
    assert admin.post("/forms/consultation_log/state", data={"state": "deleted"}).status_code == 400


@pytest.mark.parametrize("role,grantee", [("coordinator", None), ("grantee_staff", "chinek"), ("viewer", None),
                                          ("evaluator", None)])
def test_only_admins_publish_upload_media_or_change_state(app, web_client, role, grantee):
    web = web_client(role, grantee)
    assert upload(web, workbook("sneaky")).status_code == 403
    assert web.post("/forms/seminar_attendance/state", data={"state": "closed"}).status_code == 403
    assert web.post("/forms/seminar_attendance/media", data={"name": "rayons.csv", "file": (io.BytesIO(b"x"), "rayons.csv")},
                    content_type="multipart/form-data").status_code == 403
    with app.app_context():
        assert db.session.scalar(select(Form).where(Form.xml_form_id == "sneaky")) is None
        assert db.session.scalar(select(Form.state).where(Form.xml_form_id == "seminar_attendance")) == "open"


def test_unknown_forms_are_404_pages(app, admin):
    for url in ("/forms/no_such_form", "/forms/%2e%2e", "/forms/" + "x" * 2000):
        response = admin.get(url)
        assert response.status_code == 404 and b"<html" in response.data
    assert admin.post("/forms/no_such_form/state", data={"state": "open"}).status_code == 404
    assert admin.client.get("/forms/upload").status_code == 404
