"""Form serving to ODK Collect: formList, form XML, manifest, media, auth and headers.

Responses are parsed namespace-aware, as Collect's kxml2 parser does, and every hash is checked
against the md5 of the bytes actually downloaded.
"""
import hashlib
from urllib.parse import urlsplit

import pytest
from lxml import etree

from conftest import OPENROSA

NS_LIST = "http://openrosa.org/xforms/xformsList"
NS_MANIFEST = "http://openrosa.org/xforms/xformsManifest"
PROGRAMME_FORMS = {"seminar_attendance", "needs_assessment", "beneficiary_interview", "consultation_log"}


def path_of(url):
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def parse_form_list(body: bytes) -> list[dict]:
    root = etree.fromstring(body)
    assert root.tag == f"{{{NS_LIST}}}xforms"
    return [{etree.QName(c).localname: (c.text or "").strip() for c in xform}
            for xform in root.findall(f"{{{NS_LIST}}}xform")]


def parse_manifest(body: bytes) -> list[dict]:
    root = etree.fromstring(body)
    assert root.tag == f"{{{NS_MANIFEST}}}manifest"
    return [{etree.QName(c).localname: (c.text or "").strip() for c in media}
            for media in root.findall(f"{{{NS_MANIFEST}}}mediaFile")]


@pytest.fixture
def device(make_app_user):
    return make_app_user(name="trainer phone 1", grantee="chinek")


def base(device):
    return f"/v1/key/{device['token']}/projects/1"


def test_form_list_lists_the_four_forms_with_true_hashes(client, device):
    response = client.get(base(device) + "/formList?deviceID=collect%3Aabc", headers=OPENROSA)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    assert int(response.headers["X-OpenRosa-Accept-Content-Length"]) > 1_000_000
    assert "Date" in response.headers
    entries = parse_form_list(response.data)
    assert {e["formID"] for e in entries} == PROGRAMME_FORMS
    for entry in entries:
        assert entry["name"] and entry["version"]
        assert entry["hash"].startswith("md5:") and entry["hash"] == entry["hash"].lower()
        assert entry["downloadUrl"].startswith("http://localhost" + base(device) + "/forms/")
        download = client.get(path_of(entry["downloadUrl"]) + "&deviceID=collect%3Aabc"
                              if "?" in entry["downloadUrl"] else path_of(entry["downloadUrl"]))
        assert download.status_code == 200
        assert "md5:" + hashlib.md5(download.data).hexdigest() == entry["hash"]
        root = etree.fromstring(download.data)
        instance_root = root.find(".//{http://www.w3.org/2002/xforms}instance")[0]
        assert instance_root.get("id") == entry["formID"]
        assert instance_root.get("version") == entry["version"]


def test_manifest_only_for_forms_with_media_and_hashes_match_downloads(client, device):
    entries = {e["formID"]: e for e in parse_form_list(client.get(base(device) + "/formList", headers=OPENROSA).data)}
    # seminar_attendance and needs_assessment pick the rayon from rayons.csv; the others have no media.
    assert "manifestUrl" in entries["seminar_attendance"]
    assert "manifestUrl" not in entries["consultation_log"]
    response = client.get(path_of(entries["seminar_attendance"]["manifestUrl"]), headers=OPENROSA)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert response.headers["X-OpenRosa-Version"] == "1.0"
    files = parse_manifest(response.data)
    assert [f["filename"] for f in files] == ["rayons.csv"]
    media = client.get(path_of(files[0]["downloadUrl"]))
    assert media.status_code == 200
    assert files[0]["hash"] == "md5:" + hashlib.md5(media.data).hexdigest()
    assert media.data.startswith(b"name,label,region")
    assert "attachment; filename=\"rayons.csv\"" in media.headers["Content-Disposition"]
    # Collect stores the manifest's md5: it must not change between two fetches.
    assert client.get(path_of(entries["seminar_attendance"]["manifestUrl"]), headers=OPENROSA).data == response.data


def test_form_xml_and_media_answer_304_to_a_matching_etag(client, device):
    entries = {e["formID"]: e for e in parse_form_list(client.get(base(device) + "/formList", headers=OPENROSA).data)}
    url = path_of(entries["consultation_log"]["downloadUrl"])
    first = client.get(url)
    assert first.headers["ETag"] == '"%s"' % entries["consultation_log"]["hash"][4:]
    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    media_url = base(device) + "/forms/seminar_attendance/attachments/rayons.csv"
    etag = client.get(media_url).headers["ETag"]
    assert client.get(media_url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(media_url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_openrosa_header_is_required_before_anything_else(client, device):
    response = client.get(base(device) + "/formList")
    assert response.status_code == 400
    assert b"X-OpenRosa-Version" in response.data and b'nature="error"' in response.data
    # Checked before authentication, as Central does: no header and a bad token is still 400.
    assert client.get("/v1/key/" + "x" * 64 + "/projects/1/formList").status_code == 400
    wrong = client.get(base(device) + "/formList", headers={"X-OpenRosa-Version": "2.0"})
    assert wrong.status_code == 400 and b"(got: 2.0)" in wrong.data
    assert client.get(base(device) + "/forms/seminar_attendance/manifest").status_code == 400


def test_token_errors(client, device, cli):
    unknown = "A" * 64
    assert client.get(f"/v1/key/{unknown}/projects/1/formList", headers=OPENROSA).status_code == 403
    assert client.get("/v1/key/short/projects/1/formList", headers=OPENROSA).status_code == 401
    assert client.get(f"/v1/key/{unknown}/projects/1/forms/consultation_log.xml").status_code == 403
    assert client.get("/v1/projects/1/formList", headers=OPENROSA).status_code == 401
    assert client.get(base(device) + "/formList", headers=OPENROSA).status_code == 200
    result = cli("app-users", "revoke", "trainer phone 1")
    assert result.exit_code == 0
    revoked = client.get(base(device) + "/formList", headers=OPENROSA)
    assert revoked.status_code == 403 and b"<OpenRosaResponse" in revoked.data
    assert client.get(base(device) + "/forms/consultation_log.xml").status_code == 403
    assert client.get(base(device) + "/forms/seminar_attendance/attachments/rayons.csv").status_code == 403


def test_unknown_project_form_and_file_are_404(client, device):
    assert client.get(f"/v1/key/{device['token']}/projects/99/formList", headers=OPENROSA).status_code == 404
    assert client.get(base(device) + "/forms/nope.xml").status_code == 404
    assert client.get(base(device) + "/forms/seminar_attendance/attachments/nope.csv").status_code == 404
    assert client.get(base(device) + "/forms/seminar_attendance/attachments/..%2F..%2Fsecret_key").status_code == 404


def test_closed_and_closing_forms_are_not_listed(client, device, cli):
    assert cli("forms", "state", "consultation_log", "closed").exit_code == 0
    assert cli("forms", "state", "needs_assessment", "closing").exit_code == 0
    ids = {e["formID"] for e in parse_form_list(client.get(base(device) + "/formList", headers=OPENROSA).data)}
    assert ids == {"seminar_attendance", "beneficiary_interview"}
    assert client.get(base(device) + "/forms/consultation_log.xml").status_code == 403
    assert client.get(base(device) + "/forms/needs_assessment.xml").status_code == 200


def test_form_id_filter(client, device):
    only = parse_form_list(client.get(base(device) + "/formList?formID=consultation_log", headers=OPENROSA).data)
    assert [e["formID"] for e in only] == ["consultation_log"]
    assert parse_form_list(client.get(base(device) + "/formList?formID=nope", headers=OPENROSA).data) == []


def test_web_user_with_bearer_gets_the_list_without_the_key_prefix(client, make_user):
    headers = {**make_user("coordinator"), **OPENROSA}
    entries = parse_form_list(client.get("/v1/projects/1/formList", headers=headers).data)
    assert {e["formID"] for e in entries} == PROGRAMME_FORMS
    assert all("/v1/projects/1/forms/" in e["downloadUrl"] and "/key/" not in e["downloadUrl"] for e in entries)


def test_base_url_setting_is_used_for_device_urls(instance, make_app_user):
    from fieldsync import create_app

    folder, url = instance
    app = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": url, "BASE_URL": "https://fs.example.org/"})
    token = app.test_cli_runner().invoke(args=["app-users", "create", "x", "--evaluator", "--json"]).output
    import json
    config = json.loads(token.strip().splitlines()[-1])
    assert config["serverUrl"] == f"https://fs.example.org/v1/key/{config['token']}/projects/1"
    entries = parse_form_list(app.test_client().get(
        f"/v1/key/{config['token']}/projects/1/formList", headers=OPENROSA).data)
    assert all(e["downloadUrl"].startswith("https://fs.example.org/v1/key/") for e in entries)


def test_token_as_query_parameter_gives_key_urls(client, device):
    entries = parse_form_list(client.get(f"/v1/projects/1/formList?st={device['token']}", headers=OPENROSA).data)
    assert entries and all(f"/v1/key/{device['token']}/projects/1/forms/" in e["downloadUrl"].replace("%24", "$").replace("%21", "!")
                           for e in entries)
    download = client.get(path_of(entries[0]["downloadUrl"]))
    assert download.status_code == 200
