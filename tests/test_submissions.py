"""Receiving submissions as ODK Collect sends them, through the real app over HTTP.

HEAD then POST, resends, split uploads, edits, every refusal, hostile input, attribution.
"""
import hashlib

import pytest
from lxml import etree
from sqlalchemy import func, select

from fieldsync.extensions import db
from fieldsync.models import Blob, Comment, Submission, SubmissionAttachment, SubmissionDef

from collect import OPENROSA, SEMINAR, instance_id_of, instance_xml, post

NS_RESPONSE = "http://openrosa.org/http/response"


@pytest.fixture
def device(make_app_user):
    return make_app_user(name="chinek phone", grantee="chinek")


@pytest.fixture
def url(device):
    return f"/v1/key/{device['token']}/projects/1/submission?deviceID=collect%3Aabc123"


@pytest.fixture
def form_xml(client, device):
    return client.get(f"/v1/key/{device['token']}/projects/1/forms/seminar_attendance.xml").data


def seminar(form_xml, **changes):
    values = {**SEMINAR, **changes}
    return instance_xml(form_xml, values)


def message(response) -> str:
    root = etree.fromstring(response.data)
    assert root.tag == f"{{{NS_RESPONSE}}}OpenRosaResponse"
    return root.find(f"{{{NS_RESPONSE}}}message").text


def count(app, model, *where):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_head_preflight_is_204_with_the_size_budget(client, url):
    response = client.head(url, headers=OPENROSA)
    assert response.status_code == 204
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    assert int(response.headers["X-OpenRosa-Accept-Content-Length"]) == 10_000_000
    assert response.data == b""
    assert client.head(url).status_code == 400
    assert client.head(url.replace("/key/", "/key/x"), headers=OPENROSA).status_code == 401


def test_post_creates_a_submission_and_stores_exact_bytes(app, client, url, form_xml):
    xml = seminar(form_xml)
    response = post(client, url, xml)
    assert response.status_code == 201, response.data
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert message(response) == "full submission upload was successful!"
    with app.app_context():
        submission = db.session.scalar(select(Submission))
        assert submission.instance_id == instance_id_of(xml)
        assert submission.current_def.xml == xml
        assert submission.device_id == "collect:abc123"
        assert submission.user_agent.startswith("org.odk.collect.android/")
        assert submission.grantee.code == "chinek"
        assert submission.review_state == "received"
        assert submission.app_user_id is not None


def test_identical_resend_is_201_and_not_a_second_record(app, client, url, form_xml):
    xml = seminar(form_xml)
    assert post(client, url, xml).status_code == 201
    # The response was lost on the way back; Collect sends the very same instance again.
    again = post(client, url, xml)
    assert again.status_code == 201
    assert count(app, Submission) == 1 and count(app, SubmissionDef) == 1


def test_same_instance_id_with_different_xml_is_409(app, client, url, form_xml):
    xml = seminar(form_xml)
    assert post(client, url, xml).status_code == 201
    changed = xml.replace(b"Kant", b"Tokmok")
    response = post(client, url, changed)
    assert response.status_code == 409
    assert "different XML" in message(response)
    with app.app_context():
        assert db.session.scalar(select(Submission)).current_def.xml == xml


def test_split_upload_merges_attachments_across_posts(app, client, url, form_xml):
    xml = seminar(form_xml, photo="group.jpg")
    first = post(client, url, xml, incomplete=True)
    assert first.status_code == 201
    with app.app_context():
        attachment = db.session.scalar(select(SubmissionAttachment))
        assert attachment.name == "group.jpg" and attachment.blob_id is None
    picture = b"\xff\xd8\xff" + b"x" * 5000
    second = post(client, url, xml, files={"group.jpg": picture})
    assert second.status_code == 201
    with app.app_context():
        attachment = db.session.scalar(select(SubmissionAttachment))
        assert attachment.blob.sha256 == hashlib.sha256(picture).hexdigest()
        assert count(app, Submission) == 1
    # Resending everything once more changes nothing.
    assert post(client, url, xml, files={"group.jpg": picture}).status_code == 201
    assert count(app, SubmissionAttachment) == 1 and count(app, Blob, Blob.sha256 == hashlib.sha256(picture).hexdigest()) == 1


def test_parts_not_named_in_the_xml_are_ignored(app, client, url, form_xml):
    xml = seminar(form_xml)
    assert post(client, url, xml, files={"../../secret_key": b"evil", "other.jpg": b"x"}).status_code == 201
    assert count(app, SubmissionAttachment) == 0
    assert count(app, Blob, Blob.size == 4) == 0


def test_attachment_names_with_path_tricks_are_refused(app, client, url, form_xml):
    xml = seminar(form_xml, photo="../../instance/secret_key")
    response = post(client, url, xml, files={"../../instance/secret_key": b"x"})
    assert response.status_code == 400 and "not allowed" in message(response)
    assert count(app, Submission) == 0


def test_edit_makes_a_new_current_version_and_carries_files_forward(app, client, url, form_xml):
    original = seminar(form_xml, photo="group.jpg")
    picture = b"\xff\xd8\xff picture"
    assert post(client, url, original, files={"group.jpg": picture}).status_code == 201
    first_id = instance_id_of(original)
    edited = instance_xml(form_xml, {**SEMINAR, "photo": "group.jpg", "village": "Kant-2"},
                          deprecated_id=first_id)
    response = post(client, url, edited)
    assert response.status_code == 201, response.data
    with app.app_context():
        submission = db.session.scalar(select(Submission))
        assert submission.instance_id == first_id  # the logical record keeps its first id
        assert submission.review_state == "edited"
        assert submission.current_def.instance_id == instance_id_of(edited)
        assert [d.instance_id for d in submission.defs] == [first_id, instance_id_of(edited)]
        carried = submission.current_def.attachments[0]
        assert carried.name == "group.jpg" and carried.blob.sha256 == hashlib.sha256(picture).hexdigest()
    # Editing the superseded version again is out of date; the old id resent is out of date too.
    stale = instance_xml(form_xml, {**SEMINAR, "village": "Other"}, deprecated_id=first_id)
    assert post(client, url, stale).status_code == 409
    assert post(client, url, original).status_code == 409
    # The edit itself resent (split upload of an edit): fine.
    assert post(client, url, edited).status_code == 201
    assert count(app, SubmissionDef) == 2


def test_edit_of_an_unknown_submission_is_404(client, url, form_xml):
    edited = instance_xml(form_xml, SEMINAR, deprecated_id="uuid:00000000-0000-4000-8000-000000000000")
    response = post(client, url, edited)
    assert response.status_code == 404 and "can't find that submission" in message(response)


def test_unknown_form_and_unknown_version_are_404(client, url, form_xml):
    xml = seminar(form_xml)
    root = etree.fromstring(xml)
    version = root.get("version")
    unknown_form = xml.replace(b'id="seminar_attendance"', b'id="no_such_form"')
    assert post(client, url, unknown_form).status_code == 404
    unknown_version = xml.replace(f'version="{version}"'.encode(), b'version="1999"')
    response = post(client, url, unknown_version)
    assert response.status_code == 404 and "'1999' does not exist" in message(response)


def test_older_published_version_is_still_accepted(app, client, url, form_xml, cli, tmp_path):
    """A phone that has not updated yet sends with the old version: it must not be lost."""
    from openpyxl import load_workbook

    source = tmp_path / "seminar_attendance.xlsx"
    book = load_workbook(app.config["FIELDSYNC"]["FORMS_PATH"] + "/seminar_attendance.xlsx")
    settings = book["settings"]
    header = [c.value for c in settings[1]]
    column = header.index("version") + 1
    settings.cell(row=2, column=column, value=str(settings.cell(row=2, column=column).value) + "9")
    book.save(source)
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "rayons.csv").write_bytes(
        open(app.config["FIELDSYNC"]["FORMS_PATH"] + "/media/rayons.csv", "rb").read())
    assert cli("forms", "publish", str(source), "--no-validate").exit_code == 0
    assert post(client, url, seminar(form_xml)).status_code == 201  # made with the old version
    with app.app_context():
        submission = db.session.scalar(select(Submission))
        assert submission.current_def.form_version.version != submission.form.current_version.version


def test_closed_form_is_409(client, url, form_xml, cli):
    assert cli("forms", "state", "seminar_attendance", "closed").exit_code == 0
    response = post(client, url, seminar(form_xml))
    assert response.status_code == 409 and "not currently accepting" in message(response)
    assert cli("forms", "state", "seminar_attendance", "closing").exit_code == 0
    assert post(client, url, seminar(form_xml)).status_code == 201  # closing still accepts


@pytest.mark.parametrize("body, content_type", [
    (b"<data id='x'/>", "text/xml"),
    (b"--nope\r\n\r\n", "multipart/form-data; boundary=nope"),
    (b"", "multipart/form-data"),
    (b'{"a": 1}', "application/json"),
])
def test_not_multipart_or_no_xml_part_is_400(app, client, url, body, content_type):
    response = client.post(url, data=body, content_type=content_type, headers=OPENROSA)
    assert response.status_code == 400
    assert b"<OpenRosaResponse" in response.data
    assert count(app, Submission) == 0


@pytest.mark.parametrize("xml, expected", [
    (b"<data", "could not be read"),
    (b"not xml at all", "could not be read"),
    (b"<data><meta><instanceID>uuid:1</instanceID></meta></data>", "form ID"),
])
def test_bad_xml_is_400_and_stores_nothing(app, client, url, xml, expected):
    response = post(client, url, xml)
    assert response.status_code == 400 and expected in message(response)
    assert count(app, Submission) == 0


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<seminar_attendance id="seminar_attendance"><village>&lol3;</village></seminar_attendance>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<seminar_attendance id="seminar_attendance"><village>&x;</village></seminar_attendance>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entity_tricks_are_refused(app, client, url, xml):
    response = post(client, url, xml)
    assert response.status_code == 400 and "refused for safety" in message(response)
    assert b"root:" not in response.data
    assert count(app, Submission) == 0


def test_deep_nesting_is_refused(app, client, url):
    xml = b'<d id="seminar_attendance">' + b"<a>" * 5000 + b"</a>" * 5000 + b"</d>"
    response = post(client, url, xml)
    assert response.status_code == 400
    assert count(app, Submission) == 0


def test_oversize_body_is_413_and_stores_nothing(app, client, url, form_xml):
    xml = seminar(form_xml, photo="big.jpg")
    big = b"x" * (50 * 1024 * 1024)
    response = post(client, url, xml, files={"big.jpg": big})
    assert response.status_code == 413
    assert b"<OpenRosaResponse" in response.data
    assert count(app, Submission) == 0


def test_no_permission_is_403(client, form_xml, make_user):
    headers = {**OPENROSA, **make_user("viewer")}
    response = post(client, "/v1/projects/1/submission", seminar(form_xml), headers=headers)
    assert response.status_code == 403


def test_revoked_device_is_refused(app, client, url, form_xml, cli):
    assert cli("app-users", "revoke", "chinek phone").exit_code == 0
    assert post(client, url, seminar(form_xml)).status_code == 403
    assert count(app, Submission) == 0


def test_missing_instance_id_is_assigned_and_flagged(app, client, url, form_xml):
    xml = instance_xml(form_xml, SEMINAR, drop_instance_id=True)
    assert post(client, url, xml).status_code == 201
    with app.app_context():
        submission = db.session.scalar(select(Submission))
        assert submission.instance_id.startswith("uuid:") and submission.instance_id_assigned
        assert submission.review_state == "hasIssues"
        assert "assigned" in db.session.scalar(select(Comment)).body


def test_other_grantee_from_a_bound_device_is_kept_and_flagged(app, client, url, form_xml):
    response = post(client, url, seminar(form_xml, grantee="tomo", region="issyk_kul"))
    assert response.status_code == 201
    with app.app_context():
        submission = db.session.scalar(select(Submission))
        # Kept under the device's own grantee, on hold: counted for nobody until a coordinator decides.
        assert submission.grantee.code == "chinek" and submission.hold == "grantee"
        assert submission.review_state == "hasIssues"
        comment = db.session.scalar(select(Comment))
        assert comment.system and "'chinek'" in comment.body and "'tomo'" in comment.body


def test_evaluator_device_may_submit_for_any_grantee(app, client, form_xml, make_app_user):
    evaluator = make_app_user(name="evaluator", evaluator=True)
    url = f"/v1/key/{evaluator['token']}/projects/1/submission"
    assert post(client, url, seminar(form_xml, grantee="tomo")).status_code == 201
    with app.app_context():
        submission = db.session.scalar(select(Submission))
        assert submission.review_state == "received" and submission.grantee.code == "tomo"


def test_same_instance_id_in_another_form_is_a_different_submission(app, client, url, device, form_xml):
    xml = seminar(form_xml)
    iid = instance_id_of(xml)
    consultation_form = client.get(f"/v1/key/{device['token']}/projects/1/forms/consultation_log.xml").data
    other = instance_xml(consultation_form, {"grantee": "chinek", "service_date": "2026-11-02",
                                             "channel": "hotline"}, instance_id=iid)
    assert post(client, url, xml).status_code == 201
    assert post(client, url, other).status_code == 201
    assert count(app, Submission) == 2


def test_deleted_submission_resent_is_409(app, client, url, form_xml):
    xml = seminar(form_xml)
    assert post(client, url, xml).status_code == 201
    from fieldsync.models import utcnow
    with app.app_context():
        db.session.scalar(select(Submission)).deleted_at = utcnow()
        db.session.commit()
    response = post(client, url, xml)
    assert response.status_code == 409 and "deleted" in message(response)


def test_oversize_body_of_any_content_type_is_413(app, client, url):
    response = client.post(url, data=b"x" * (11 * 1024 * 1024), content_type="application/octet-stream",
                           headers=OPENROSA)
    assert response.status_code == 413
    assert "10000000 bytes" in message(response)


def test_a_devices_last_sync_is_written_at_most_once_a_minute(app, client, url, form_xml):
    """Every upload of one credential writing its row made concurrent uploads queue on it."""
    from datetime import timedelta

    from fieldsync.models import AppUser

    def seen():
        with app.app_context():
            return db.session.scalar(select(AppUser.last_seen_at))
    assert post(client, url, seminar(form_xml)).status_code == 201
    first = seen()
    assert first is not None
    assert post(client, url, seminar(form_xml)).status_code == 201
    assert seen() == first  # within the minute: not written again
    with app.app_context():
        db.session.query(AppUser).update({AppUser.last_seen_at: first - timedelta(minutes=2)})
        db.session.commit()
    assert post(client, url, seminar(form_xml)).status_code == 201
    assert seen() > first
