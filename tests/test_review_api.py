"""Reviewing submissions over the REST API: Central's shapes, grantee scope, personal data, audit."""
import pytest

from collect import SEMINAR, instance_id_of, instance_xml, post


@pytest.fixture
def sent(client, make_app_user):
    """One seminar from a Chinek device (with a photo) and one from a Tomo device."""
    chinek = make_app_user(name="chinek phone", grantee="chinek")
    tomo = make_app_user(name="tomo phone", grantee="tomo")
    form_xml = client.get(f"/v1/key/{chinek['token']}/projects/1/forms/seminar_attendance.xml").data
    first = instance_xml(form_xml, {**SEMINAR, "photo": "group.jpg"})
    second = instance_xml(form_xml, {**SEMINAR, "grantee": "tomo", "region": "issyk_kul"})
    assert post(client, f"/v1/key/{chinek['token']}/projects/1/submission?deviceID=collect%3Aa",
                first, files={"group.jpg": b"\xff\xd8\xffJPEG"}).status_code == 201
    assert post(client, f"/v1/key/{tomo['token']}/projects/1/submission", second).status_code == 201
    return {"chinek": instance_id_of(first), "tomo": instance_id_of(second), "form_xml": form_xml,
            "chinek_token": chinek["token"], "first_xml": first}


BASE = "/v1/projects/1/forms/seminar_attendance/submissions"


def test_list_and_get_in_central_shape(client, make_user, sent):
    coordinator = make_user("coordinator")
    rows = client.get(BASE, headers=coordinator).get_json()
    assert [r["instanceId"] for r in rows] == [sent["tomo"], sent["chinek"]]  # newest first
    one = client.get(f"{BASE}/{sent['chinek']}", headers=coordinator).get_json()
    assert one["instanceId"] == sent["chinek"] and one["deviceId"] == "collect:a"
    assert one["reviewState"] is None and one["grantee"] == "chinek"
    assert one["submitterId"] and one["createdAt"].endswith("Z")
    assert one["currentVersion"]["instanceId"] == sent["chinek"]


def test_xml_is_returned_byte_for_byte_and_the_read_is_audited(client, make_user, sent):
    admin = make_user("admin")
    response = client.get(f"{BASE}/{sent['chinek']}.xml", headers=admin)
    assert response.status_code == 200 and response.data == sent["first_xml"]
    audits = client.get(f"{BASE}/{sent['chinek']}/audits", headers=admin).get_json()
    assert [a["action"] for a in audits] == ["submission.create", "submission.read"]


def test_attachments_list_and_download(client, make_user, sent):
    coordinator = make_user("coordinator")
    assert client.get(f"{BASE}/{sent['chinek']}/attachments", headers=coordinator).get_json() == [
        {"name": "group.jpg", "exists": True}]
    photo = client.get(f"{BASE}/{sent['chinek']}/attachments/group.jpg", headers=coordinator)
    assert photo.status_code == 200 and photo.data == b"\xff\xd8\xffJPEG"
    assert photo.headers["Content-Type"] == "image/jpeg"
    assert client.get(f"{BASE}/{sent['chinek']}/attachments/nope.jpg", headers=coordinator).status_code == 404


def test_grantee_staff_see_only_their_own(client, make_user, sent):
    staff = make_user("grantee_staff", grantee="tomo")
    rows = client.get(BASE, headers=staff).get_json()
    assert [r["instanceId"] for r in rows] == [sent["tomo"]]
    assert client.get(f"{BASE}/{sent['tomo']}", headers=staff).status_code == 200
    unknown = "uuid:00000000-0000-4000-8000-000000000000"
    for suffix in ("", ".xml", "/attachments", "/attachments/group.jpg", "/comments", "/versions"):
        # Out of scope answers exactly as an unknown id does: nothing tells the id exists.
        theirs = client.get(f"{BASE}/{sent['chinek']}{suffix}", headers=staff)
        nobodys = client.get(f"{BASE}/{unknown}{suffix}", headers=staff)
        assert (theirs.status_code, theirs.get_json()) == (404, nobodys.get_json()), suffix
    assert client.patch(f"{BASE}/{sent['tomo']}", json={"reviewState": "approved"}, headers=staff).status_code == 403


def test_photo_is_personal_data_for_grantee_staff(client, make_user, sent):
    staff = make_user("grantee_staff", grantee="chinek")
    # The seminar form tags participant names and the photo as personal data.
    assert client.get(f"{BASE}/{sent['chinek']}.xml", headers=staff).status_code == 403
    assert client.get(f"{BASE}/{sent['chinek']}/attachments/group.jpg", headers=staff).status_code == 403
    assert client.get(f"{BASE}/{sent['chinek']}/attachments", headers=staff).status_code == 200


def test_review_state_comment_delete_restore_each_audited(client, make_user, sent):
    coordinator = make_user("coordinator")
    url = f"{BASE}/{sent['chinek']}"
    response = client.patch(url, json={"reviewState": "approved"}, headers={**coordinator, "X-Action-Notes": "checked"})
    assert response.status_code == 200 and response.get_json()["reviewState"] == "approved"
    assert client.patch(url, json={"reviewState": "bogus"}, headers=coordinator).status_code == 400
    comment = client.post(f"{url}/comments", json={"body": "Names checked with the school."}, headers=coordinator)
    assert comment.status_code == 200
    assert [c["body"] for c in client.get(f"{url}/comments", headers=coordinator).get_json()] == [
        "Names checked with the school."]
    assert client.post(f"{url}/comments", json={"body": "  "}, headers=coordinator).status_code == 400
    assert client.delete(url, headers=coordinator).status_code == 200
    assert client.get(url, headers=coordinator).status_code == 404
    assert [r["instanceId"] for r in client.get(BASE, headers=coordinator).get_json()] == [sent["tomo"]]
    assert client.post(f"{url}/restore", headers=coordinator).status_code == 200
    assert client.get(url, headers=coordinator).status_code == 200
    actions = [a["action"] for a in client.get(f"{url}/audits", headers=coordinator).get_json()]
    assert actions == ["submission.create", "submission.update", "submission.comment",
                       "submission.delete", "submission.restore"]
    notes = next(a for a in client.get(f"{url}/audits", headers=coordinator).get_json()
                 if a["action"] == "submission.update")
    assert notes["details"] == {"reviewState": "approved", "notes": "checked"}


def test_deleted_submission_cannot_be_resent(client, make_user, sent):
    coordinator = make_user("coordinator")
    assert client.delete(f"{BASE}/{sent['chinek']}", headers=coordinator).status_code == 200
    response = post(client, f"/v1/key/{sent['chinek_token']}/projects/1/submission", sent["first_xml"])
    assert response.status_code == 409


def test_edit_chain_is_visible(client, make_user, sent):
    edited = instance_xml(sent["form_xml"], {**SEMINAR, "village": "Kant-2"}, deprecated_id=sent["chinek"])
    assert post(client, f"/v1/key/{sent['chinek_token']}/projects/1/submission", edited).status_code == 201
    coordinator = make_user("coordinator")
    versions = client.get(f"{BASE}/{sent['chinek']}/versions", headers=coordinator).get_json()
    assert [v["instanceId"] for v in versions] == [instance_id_of(edited), sent["chinek"]]
    assert [v["current"] for v in versions] == [True, False]
    assert client.get(f"{BASE}/{sent['chinek']}", headers=coordinator).get_json()["reviewState"] == "edited"
    assert client.get(f"{BASE}/{sent['chinek']}.xml", headers=coordinator).data == edited


def test_rest_submission_create_uses_the_same_ingest(client, make_user, sent):
    evaluator = make_user("evaluator")
    xml = instance_xml(sent["form_xml"], {**SEMINAR, "village": "Naryn"})
    response = client.post(BASE, data=xml, content_type="text/xml", headers=evaluator)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["instanceId"] == instance_id_of(xml)
    again = client.post(BASE, data=xml, content_type="text/xml", headers=evaluator)
    assert again.status_code == 409 and again.get_json()["code"] == 409.3
    wrong_form = client.post("/v1/projects/1/forms/consultation_log/submissions", data=xml,
                             content_type="text/xml", headers=evaluator)
    assert wrong_form.status_code == 400
    assert client.post(BASE, data=xml, content_type="text/xml", headers=make_user("viewer")).status_code == 403


def test_unauthenticated_and_unknown(client, make_user, sent):
    assert client.get(BASE).status_code == 401
    coordinator = make_user("coordinator")
    assert client.get("/v1/projects/1/forms/nope/submissions", headers=coordinator).status_code == 404
    assert client.get(f"{BASE}/uuid:nope", headers=coordinator).status_code == 404
    assert client.get(BASE, headers=make_user("viewer")).status_code == 403
