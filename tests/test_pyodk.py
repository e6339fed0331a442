"""The real pyODK (from PyPI) against a live FieldSync, exactly as a Central user's script runs."""
import uuid

import pytest
import requests

from collect import OPENROSA, SEMINAR, instance_xml

pytestmark = pytest.mark.slow
pyodk = pytest.importorskip("pyodk")
from pyodk.client import Client  # noqa: E402


@pytest.fixture
def server(live_server, make_user, make_app_user, tmp_path):
    make_user("coordinator", email="script@example.org", password="correct horse battery")
    device = make_app_user(name="chinek phone", grantee="chinek")
    live = live_server()
    config = tmp_path / "pyodk_config.toml"
    config.write_text(f'[central]\nbase_url = "{live.url}"\nusername = "script@example.org"\n'
                      f'password = "correct horse battery"\ndefault_project_id = 1\n')
    client = Client(config_path=str(config), cache_path=str(tmp_path / "cache.toml"))
    return live, device, client


def send(live, token, xml):
    response = requests.post(f"{live.url}/v1/key/{token}/projects/1/submission", headers=OPENROSA,
                             files={"xml_submission_file": ("i.xml", xml, "text/xml")})
    assert response.status_code == 201


def test_projects_forms_and_xml(server):
    live, _device, client = server
    projects = client.projects.list()
    assert [(p.id, p.name) for p in projects] == [(1, "PHT Kyrgyzstan")]
    forms = {f.xmlFormId: f for f in client.forms.list()}
    assert set(forms) == {"seminar_attendance", "needs_assessment", "beneficiary_interview", "consultation_log"}
    form = client.forms.get("seminar_attendance")
    assert form.state == "open" and form.version
    xml = client.forms.get_xml("seminar_attendance")
    assert 'id="seminar_attendance"' in xml


def test_submissions_list_get_create_edit_review_comment(server):
    live, device, client = server
    form_xml = requests.get(f"{live.url}/v1/key/{device['token']}/projects/1/forms/seminar_attendance.xml").content
    phone_xml = instance_xml(form_xml, SEMINAR)
    send(live, device["token"], phone_xml)
    listed = client.submissions.list(form_id="seminar_attendance")
    assert len(listed) == 1
    one = client.submissions.get(form_id="seminar_attendance", instance_id=listed[0].instanceId)
    assert one.instanceId == listed[0].instanceId and one.deviceId is None or one.deviceId == one.deviceId
    created_id = f"uuid:{uuid.uuid4()}"
    created = client.submissions.create(xml=instance_xml(form_xml, {**SEMINAR, "village": "Naryn"},
                                                         instance_id=created_id).decode(),
                                        form_id="seminar_attendance")
    assert created.instanceId == created_id
    new_id = f"uuid:{uuid.uuid4()}"
    edited_xml = instance_xml(form_xml, {**SEMINAR, "village": "Naryn-2"}, instance_id=new_id,
                              deprecated_id=created_id).decode()
    client.submissions.edit(instance_id=created_id, xml=edited_xml, form_id="seminar_attendance",
                            comment="village corrected")
    after = client.submissions.get(form_id="seminar_attendance", instance_id=created_id)
    assert after.reviewState == "edited"
    client.submissions.review(instance_id=created_id, review_state="approved", form_id="seminar_attendance",
                              comment="checked with the trainer")
    assert client.submissions.get(form_id="seminar_attendance", instance_id=created_id).reviewState == "approved"
    client.submissions.add_comment(instance_id=created_id, comment="third", form_id="seminar_attendance")
    comments = client.submissions.list_comments(form_id="seminar_attendance", instance_id=created_id)
    assert [c.body for c in comments] == ["village corrected", "checked with the trainer", "third"]
    table = client.submissions.get_table(form_id="seminar_attendance", count=True)
    assert table["@odata.count"] == 2
    rows = {r["__id"]: r for r in table["value"]}
    assert rows[created_id]["village"] == "Naryn-2"
    assert rows[created_id]["__system"]["reviewState"] == "approved"
    repeats = client.submissions.get_table(form_id="seminar_attendance", table_name="Submissions.participant")
    assert len(repeats["value"]) == 4 and all("full_name" not in r for r in repeats["value"])  # personal data left out


def test_errors_come_back_as_central_problems(server):
    _live, _device, client = server
    from pyodk.errors import PyODKError
    with pytest.raises(PyODKError) as caught:
        client.submissions.get(form_id="seminar_attendance", instance_id="uuid:nope")
    assert caught.value.is_central_error(404.1)
