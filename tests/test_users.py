"""Web users, sessions, app users and their QR codes, and grantee scope."""
import base64
import json
import zlib

from fieldsync.formats.collect_settings import decode_payload

PASSWORD = {"FIELDSYNC_PASSWORD": "correct horse battery"}


def test_create_user_and_sign_in(client, cli):
    result = cli("users", "create", "Aida@Example.org", "--role", "coordinator", env=PASSWORD)
    assert result.exit_code == 0, result.output
    response = client.post("/v1/sessions", json={"email": "aida@example.org", "password": "correct horse battery"})
    assert response.status_code == 200
    body = response.get_json()
    assert len(body["token"]) == 64 and body["expiresAt"].endswith("Z")
    me = client.get("/v1/users/current", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.get_json()["email"] == "aida@example.org" and me.get_json()["role"] == "coordinator"


def test_password_is_hashed_with_argon2(app, cli):
    from sqlalchemy import select
    from fieldsync.extensions import db
    from fieldsync.models import WebUser

    cli("users", "create", "h@example.org", "--role", "viewer", env=PASSWORD)
    with app.app_context():
        user = db.session.scalar(select(WebUser).where(WebUser.email == "h@example.org"))
        assert user.password_hash.startswith("$argon2")
        assert "correct horse" not in user.password_hash


def test_wrong_password_unknown_email_and_bad_tokens_are_401(client, cli):
    cli("users", "create", "b@example.org", "--role", "viewer", env=PASSWORD)
    for body in ({"email": "b@example.org", "password": "wrong password!"},
                 {"email": "nobody@example.org", "password": "correct horse battery"}):
        response = client.post("/v1/sessions", json=body)
        assert response.status_code == 401 and response.get_json()["code"] == 401.2
    assert client.post("/v1/sessions", data="not json", content_type="application/json").status_code == 400
    assert client.post("/v1/sessions", json={"email": 3}).status_code == 400
    assert client.get("/v1/users/current").status_code == 401
    assert client.get("/v1/users/current", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/v1/users/current", headers={"Authorization": "Digest x"}).status_code == 401


def test_basic_auth_only_over_https(client, cli):
    cli("users", "create", "c@example.org", "--role", "viewer", env=PASSWORD)
    credentials = base64.b64encode(b"c@example.org:correct horse battery").decode()
    headers = {"Authorization": f"Basic {credentials}"}
    plain = client.get("/v1/users/current", headers=headers)
    assert plain.status_code == 401 and plain.get_json()["code"] == 401.3
    secure = client.get("/v1/users/current", headers=headers, base_url="https://localhost")
    assert secure.status_code == 200 and secure.get_json()["email"] == "c@example.org"


def test_user_creation_rules(cli):
    assert cli("users", "create", "g@example.org", "--role", "grantee_staff", env=PASSWORD).exit_code != 0
    bad = cli("users", "create", "g@example.org", "--role", "grantee_staff", "--grantee", "nope", env=PASSWORD)
    assert bad.exit_code != 0 and "no grantee has this code" in bad.output
    assert cli("users", "create", "g@example.org", "--role", "grantee_staff", "--grantee", "tomo",
               env=PASSWORD).exit_code == 0
    dup = cli("users", "create", "G@example.org", "--role", "viewer", env=PASSWORD)
    assert dup.exit_code != 0 and "409.3" in dup.output
    short = cli("users", "create", "s@example.org", "--role", "viewer", env={"FIELDSYNC_PASSWORD": "short"})
    assert short.exit_code != 0 and "10 characters" in short.output


def test_password_prompt_when_not_in_environment(cli):
    result = cli("users", "create", "p@example.org", "--role", "admin",
                 input="a long enough secret\na long enough secret\n")
    assert result.exit_code == 0, result.output


def test_grantee_staff_sees_only_their_grantee(client, make_user):
    staff = make_user("grantee_staff", grantee="tomo")
    grantees = client.get("/v1/projects/1/grantees", headers=staff).get_json()
    assert [g["code"] for g in grantees] == ["tomo"]
    everyone = client.get("/v1/projects/1/grantees", headers=make_user("coordinator")).get_json()
    assert len(everyone) == 18 and {"code": "tomo", "name": "Tomo", "region": "issyk_kul"}.items() <= \
        next(g for g in everyone if g["code"] == "tomo").items()
    assert client.get("/v1/projects/1/grantees").status_code == 401
    assert client.get("/v1/projects/9/grantees", headers=staff).status_code == 404


def test_app_user_create_prints_token_url_and_qr(cli, tmp_path):
    png = tmp_path / "qr.png"
    result = cli("app-users", "create", "Chinek tablet", "--grantee", "chinek", "--json", "--png", str(png))
    assert result.exit_code == 0, result.output
    config = json.loads(result.output.strip().splitlines()[-1])
    assert len(config["token"]) == 64
    assert config["serverUrl"].endswith(f"/v1/key/{config['token']}/projects/1")
    settings = json.loads(zlib.decompress(base64.b64decode(config["qr"])))
    assert settings == decode_payload(config["qr"])
    assert settings["general"]["server_url"] == config["serverUrl"]
    assert settings["admin"] == {} and settings["project"]["name"] == "PHT Kyrgyzstan"
    assert png.read_bytes().startswith(b"\x89PNG")
    human = cli("app-users", "create", "Evaluator phone", "--evaluator")
    assert "Server URL:" in human.output and "QR payload:" in human.output


def test_app_user_needs_exactly_one_of_grantee_or_evaluator(cli):
    assert cli("app-users", "create", "x").exit_code != 0
    assert cli("app-users", "create", "x", "--grantee", "tomo", "--evaluator").exit_code != 0
    assert cli("app-users", "create", "x", "--grantee", "nope").exit_code != 0
    assert cli("app-users", "create", "x", "--grantee", "tomo").exit_code == 0
    assert cli("app-users", "create", "x", "--grantee", "tomo").exit_code != 0  # names are unique
    listing = cli("app-users", "list")
    assert "x\ttomo\tactive" in listing.output
    assert cli("app-users", "revoke", "x").exit_code == 0
    assert "x\ttomo\trevoked" in cli("app-users", "list").output
    assert cli("app-users", "revoke", "nobody").exit_code != 0


def test_app_user_token_cannot_use_the_web_api(client, make_app_user):
    token = make_app_user()["token"]
    assert client.get("/v1/users/current", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_sessions_expire_are_renewed_in_use_and_can_be_ended(app, client, cli):
    from datetime import timedelta

    from sqlalchemy import select

    from fieldsync.extensions import db
    from fieldsync.models import Session, utcnow

    cli("users", "create", "s@example.org", "--role", "viewer", env=PASSWORD)
    token = client.post("/v1/sessions", json={"email": "s@example.org", "password": "correct horse battery"}).get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    with app.app_context():
        session = db.session.scalar(select(Session))
        session.expires_at = utcnow() + timedelta(hours=1)  # less than half of the 24 h left
        db.session.commit()
    assert client.get("/v1/users/current", headers=bearer).status_code == 200
    with app.app_context():
        renewed = db.session.scalar(select(Session)).expires_at
        assert renewed > utcnow() + timedelta(hours=23)
        db.session.scalar(select(Session)).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    assert client.get("/v1/users/current", headers=bearer).status_code == 401  # expired
    token = client.post("/v1/sessions", json={"email": "s@example.org", "password": "correct horse battery"}).get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.delete("/v1/sessions/current", headers=bearer).status_code == 200
    assert client.get("/v1/users/current", headers=bearer).status_code == 401


def test_grantee_staff_may_read_only_their_own_grantee_object(app):
    from fieldsync.auth import can
    from fieldsync.auth.policy import Actor
    from fieldsync.programme import grantees
    with app.app_context():
        by_code = {g.code: g for g in grantees(1)}
        staff = Actor(kind="user", id=1, role="grantee_staff", display_name="s", grantee_id=by_code["tomo"].id)
        coordinator = Actor(kind="user", id=2, role="coordinator", display_name="c")
        assert can(staff, "grantee.read", by_code["tomo"])
        assert not can(staff, "grantee.read", by_code["chinek"])
        assert can(coordinator, "grantee.read", by_code["chinek"])


def test_grantee_staff_may_not_read_a_thing_of_no_grantee(app):
    from types import SimpleNamespace
    from fieldsync.auth import can
    from fieldsync.auth.policy import Actor
    staff = Actor(kind="user", id=1, role="grantee_staff", display_name="s", grantee_id=7)
    coordinator = Actor(kind="user", id=2, role="coordinator", display_name="c")
    orphan = SimpleNamespace(grantee_id=None)  # e.g. a submission that named no grantee
    assert not can(staff, "submission.read", orphan)
    assert can(coordinator, "submission.read", orphan)
    assert can(staff, "submission.read", SimpleNamespace(grantee_id=7))
    assert can(staff, "form.read", SimpleNamespace(xml_form_id="seminar_attendance"))
