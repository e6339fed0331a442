"""The devices pages: app users per grantee, a QR code ODK Collect can scan (and whose token
works), revoking a phone, and the QR code kept to admins, uncached and audited."""
import html
import io
import re

import pytest
from PIL import Image
from sqlalchemy import select

from fieldsync.extensions import db
from fieldsync.formats.collect_settings import decode_payload, qr_png
from fieldsync.models import AppUser, Audit

OPENROSA = {"X-OpenRosa-Version": "1.0"}


@pytest.fixture
def admin(web_client):
    return web_client("admin")


def create(web, name, owner):
    response = web.post("/devices", data={"name": name, "owner": owner})
    assert response.status_code == 302, response.data
    return response.headers["Location"]


def test_create_a_device_scan_its_code_and_revoke_it(app, admin, client):
    location = create(admin, "Chinek tablet 7", "chinek")
    page = admin.get(location)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    text = page.data.decode()
    assert "Device “Chinek tablet 7” created." in text and 'data-test="device-qr"' in text
    payload = html.unescape(re.search(r'data-test="qr-payload">([^<]+)<', text).group(1))
    settings = decode_payload(payload)
    server_url = settings["general"]["server_url"]
    assert server_url in text and settings["admin"] == {} and settings["project"]["name"]
    token = re.search(r"/v1/key/([^/]+)/projects/1$", server_url).group(1)
    assert client.get(f"/v1/key/{token}/projects/1/formList", headers=OPENROSA).status_code == 200

    qr = admin.get(location + "/qr.png")
    assert qr.status_code == 200 and qr.headers["Content-Type"] == "image/png"
    assert qr.headers["Cache-Control"] == "no-store"
    image = Image.open(io.BytesIO(qr.data))
    image.verify()
    assert image.format == "PNG" and image.size[0] > 100
    assert qr.data == qr_png(payload)  # the image encodes exactly the settings shown beside it
    with app.app_context():
        device = db.session.scalar(select(AppUser).where(AppUser.display_name == "Chinek tablet 7"))
        assert device.grantee.code == "chinek" and not device.is_evaluator
        seen = db.session.scalars(select(Audit).where(Audit.action == "field_key.qr.read",
                                                      Audit.subject_id == device.id)).all()
        assert len(seen) == 1

    listing = admin.get("/devices").data.decode()
    assert 'data-device="Chinek tablet 7"' in listing and 'data-group="chinek"' in listing

    revoked = admin.post(location + "/revoke")
    assert revoked.status_code == 302
    after = admin.get(location).data.decode()
    assert "is revoked: its phone can no longer get forms or send submissions." in after
    assert token not in after and 'data-test="device-qr"' not in after
    assert client.get(f"/v1/key/{token}/projects/1/formList", headers=OPENROSA).status_code == 403
    assert admin.get(location + "/qr.png").status_code == 404
    assert "badge-revoked" in admin.get("/devices").data.decode()


def test_evaluator_devices_are_grouped_apart(app, admin):
    location = create(admin, "Evaluator phone A", "__evaluator__")
    assert "Evaluator device: records for any grantee" in admin.get(location).data.decode()
    listing = admin.get("/devices").data.decode()
    assert 'data-group="evaluators"' in listing
    with app.app_context():
        device = db.session.scalar(select(AppUser).where(AppUser.display_name == "Evaluator phone A"))
        assert device.is_evaluator and device.grantee_id is None


def test_bad_device_input_is_explained(app, admin):
    create(admin, "Tomo phone", "tomo")
    for data, words in (({"name": "Tomo phone", "owner": "tomo"}, "already exists"),
                        ({"name": "", "owner": "tomo"}, "Give the device a name"),
                        ({"name": "Phone X", "owner": ""}, "Choose the grantee"),
                        ({"name": "Phone X", "owner": "atlantis"}, "Choose the grantee"),
                        ({"name": "x" * 300, "owner": "tomo"}, "too long")):
        response = admin.post("/devices", data=data)
        assert 400 <= response.status_code < 500 and words in response.data.decode(), data
    assert admin.get("/devices/999999").status_code == 404
    assert admin.get("/devices/99999999999999/qr.png").status_code == 404
    assert admin.client.post("/devices/1/revoke").status_code == 403  # no CSRF token


@pytest.mark.parametrize("role,grantee", [("coordinator", None), ("grantee_staff", "chinek"), ("viewer", None),
                                          ("evaluator", None)])
def test_only_admins_manage_devices(app, web_client, make_app_user, role, grantee):
    device = make_app_user(name=f"phone-{role}", grantee="chinek")
    with app.app_context():
        app_user_id = db.session.scalar(select(AppUser.id).where(AppUser.token == device["token"]))
    web = web_client(role, grantee)
    assert web.get("/devices").status_code == 403
    qr = web.get(f"/devices/{app_user_id}/qr.png")
    assert qr.status_code == 403 and qr.headers["Content-Type"].startswith("text/html")
    assert web.get(f"/devices/{app_user_id}").status_code == 403
    assert web.post(f"/devices/{app_user_id}/revoke").status_code == 403
    assert web.post("/devices", data={"name": "mine", "owner": "chinek"}).status_code == 403
    with app.app_context():
        assert db.session.scalar(select(AppUser.revoked_at).where(AppUser.id == app_user_id)) is None
    anonymous = app.test_client().get(f"/devices/{app_user_id}/qr.png")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
