"""Password guessing is throttled on every door (sign-in form, POST /v1/sessions, HTTP Basic),
per account and per address, without one address's spray locking its other users out; and the
address and scheme come from X-Forwarded-* only behind a configured proxy (see auth.throttle)."""
import base64
import uuid

import pytest
import requests
from sqlalchemy import func, select

from fieldsync import create_app
from fieldsync.extensions import db
from fieldsync.models import LoginAttempt

from web_fixtures import PASSWORD, create_user, csrf_of

NAT = "203.0.113.7"  # a field office: every laptop there reaches us from this one address
ELSEWHERE = "198.51.100.200"


def basic(email, password=PASSWORD):
    return {"Authorization": "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()}


def by_basic(client, email, password=PASSWORD, address=NAT):
    """An OData client (Excel, Power BI) reading with Basic over HTTPS, as it does on every request."""
    return client.get("/v1/users/current", headers=basic(email, password), base_url="https://localhost",
                      environ_base={"REMOTE_ADDR": address})


def by_api(client, email, password=PASSWORD, address=NAT):
    return client.post("/v1/sessions", json={"email": email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def by_form(client, email, password=PASSWORD, address=NAT):
    client = client.application.test_client()  # a browser of its own, not yet signed in
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    return client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.data)},
                       environ_base={"REMOTE_ADDR": address})


def made_up():
    return f"nobody-{uuid.uuid4().hex[:8]}@example.org"


def failed_from(app, email):
    """The addresses the throttle counted failures against `email` from."""
    with app.app_context():
        return list(db.session.scalars(select(LoginAttempt.address).where(
            LoginAttempt.email == email, LoginAttempt.succeeded.is_(False))))


def test_basic_failures_count_with_sign_in_and_a_locked_account_refuses_basic_too(app, client):
    email = create_user(app, "coordinator")
    # Five wrong passwords through three doors, each from another address.
    assert by_basic(client, email, "guess one", address="198.51.100.1").get_json()["code"] == 401.2
    assert by_basic(client, email, "guess two", address="198.51.100.2").status_code == 401
    assert by_form(client, email, "guess three", address="198.51.100.3").status_code == 401
    assert by_api(client, email, "guess four", address="198.51.100.4").status_code == 401
    assert by_basic(client, email).status_code == 200  # four failures: not locked yet
    assert by_basic(client, email, "guess five", address="198.51.100.5").status_code == 401
    # Locked: the right password is refused at every door, from any address.
    for response in (by_basic(client, email), by_basic(client, email, address=ELSEWHERE),
                     by_api(client, email)):
        assert response.status_code == 429 and response.get_json()["code"] == 429.1
    assert by_form(client, email).status_code == 429
    # Another account of the same office is not locked by it.
    assert by_basic(client, create_user(app, "viewer")).status_code == 200


def test_a_made_up_account_locks_exactly_like_a_real_one(app, client):
    real, unknown = create_user(app, "viewer"), made_up()
    for email in (real, unknown):
        for _ in range(5):
            assert by_api(client, email, "wrong password").status_code == 401
    # The same answer for both: the lock never tells which accounts exist.
    assert by_api(client, real).get_json() == by_api(client, unknown).get_json()
    assert by_api(client, unknown).get_json()["code"] == 429.1


def test_a_spray_of_made_up_accounts_from_a_shared_address_does_not_lock_its_users_out(app, client):
    regular, excel = create_user(app, "coordinator"), create_user(app, "viewer")
    newcomer, visitor = create_user(app, "grantee_staff", grantee="tomo"), create_user(app, "viewer")
    # Two of the office's users have worked from it before: one in the browser, one with Basic.
    assert by_form(client, regular).status_code == 302
    assert by_basic(client, excel).status_code == 200
    for _ in range(50):
        assert by_api(client, made_up(), "Summer2025!").status_code == 401
    # Fifty made-up e-mails leave the address's budget open even for a first sign-in from it.
    assert by_api(client, newcomer).status_code == 200
    for _ in range(50):
        assert by_api(client, made_up(), "Summer2025!").status_code == 401
    # A hundred: the sprayer is stopped, at every door, whatever e-mail it tries next ...
    assert by_api(client, made_up(), "Summer2025!").get_json()["code"] == 429.1
    assert by_basic(client, made_up(), "Summer2025!").get_json()["code"] == 429.1
    # ... and so is a first sign-in from that address until the window has passed (elsewhere it works).
    assert by_api(client, visitor).get_json()["code"] == 429.1
    assert by_api(client, visitor, address=ELSEWHERE).status_code == 200
    # The office's own users, who have signed in from it before, are not locked out.
    assert by_form(client, regular).status_code == 302
    assert by_basic(client, excel).status_code == 200
    assert by_api(client, newcomer).status_code == 200
    # They still have their own budget: guessing at one of them locks that account.
    for _ in range(5):
        assert by_basic(client, excel, "wrong password").status_code == 401
    assert by_basic(client, excel).get_json()["code"] == 429.1
    assert by_form(client, regular).status_code == 302


def test_basic_in_use_records_its_success_once_a_day_not_on_every_request(app, client):
    email = create_user(app, "viewer")
    for _ in range(3):
        assert by_basic(client, email).status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LoginAttempt).where(
            LoginAttempt.email == email, LoginAttempt.succeeded.is_(True))) == 1


def test_forwarded_headers_from_a_client_are_ignored_by_default(app, client):
    email = create_user(app, "viewer")
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.50"}
    plain = client.get("/v1/users/current", headers={**basic(email), **headers})
    assert plain.status_code == 401 and plain.get_json()["code"] == 401.3
    response = client.post("/v1/sessions", json={"email": email, "password": "wrong password"}, headers=headers,
                           environ_base={"REMOTE_ADDR": NAT})
    assert response.status_code == 401
    wrong = client.get("/v1/users/current", headers={**basic(email, "wrong password"), **headers},
                       base_url="https://localhost", environ_base={"REMOTE_ADDR": NAT})
    assert wrong.status_code == 401
    assert failed_from(app, email) == [NAT, NAT]  # the socket's peer, not the claimed client


@pytest.fixture
def proxied_app(instance, monkeypatch):
    """FieldSync behind one reverse proxy, configured as an operator would (the environment)."""
    monkeypatch.setenv("FIELDSYNC_TRUSTED_PROXIES", "1")
    folder, database_url = instance
    application = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": database_url})
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_behind_a_trusted_proxy_its_headers_name_the_client_and_the_scheme(proxied_app):
    app, client = proxied_app, proxied_app.test_client()
    assert app.config["FIELDSYNC"]["TRUSTED_PROXIES"] == 1
    email = create_user(app, "viewer")
    proxy = {"REMOTE_ADDR": "10.0.0.2"}  # the proxy itself, on the server's network
    over_https = client.get("/v1/users/current", environ_base=proxy,
                            headers={**basic(email), "X-Forwarded-Proto": "https", "X-Forwarded-For": NAT})
    assert over_https.status_code == 200
    plain = client.get("/v1/users/current", environ_base=proxy,
                       headers={**basic(email), "X-Forwarded-Proto": "http", "X-Forwarded-For": NAT})
    assert plain.get_json()["code"] == 401.3
    # The proxy appends the address it saw; what the client wrote in front of it counts for nothing.
    client.post("/v1/sessions", json={"email": email, "password": "wrong password"}, environ_base=proxy,
                headers={"X-Forwarded-For": f"192.0.2.50, {NAT}"})
    assert failed_from(app, email) == [NAT]


def test_served_by_gunicorn_behind_a_trusted_proxy_the_throttle_counts_the_client(app, live_server, monkeypatch):
    """Over real HTTP, in gunicorn's workers: the client the proxy names is the address counted."""
    monkeypatch.setenv("FIELDSYNC_TRUSTED_PROXIES", "1")
    server = live_server()
    email = create_user(app, "coordinator")

    def sign_in(password, client_address):
        return requests.post(f"{server.url}/v1/sessions", json={"email": email, "password": password},
                             headers={"X-Forwarded-For": client_address}, timeout=30)
    for i in range(5):
        assert sign_in("wrong password", f"192.0.2.{i}").status_code == 401
    locked = sign_in(PASSWORD, "192.0.2.99")
    assert locked.status_code == 429 and locked.json()["code"] == 429.1
    assert sorted(set(failed_from(app, email))) == [f"192.0.2.{i}" for i in range(5)]


def test_served_by_gunicorn_a_clients_forwarded_proto_does_not_make_plain_http_secure(app, live_server):
    """gunicorn itself believes X-Forwarded-Proto from 127.0.0.1 unless told not to
    (gunicorn.conf.py): over real HTTP, Basic with the header but no proxy configured is refused."""
    server = live_server()
    email = create_user(app, "coordinator")
    response = requests.get(f"{server.url}/v1/users/current", timeout=30,
                            headers={**basic(email), "X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"})
    assert response.status_code == 401 and response.json()["code"] == 401.3
    signed = requests.post(f"{server.url}/login", timeout=30, allow_redirects=False,
                           headers={"X-Forwarded-Proto": "https"}, data={"email": email, "password": PASSWORD})
    assert "secure" not in signed.headers.get("Set-Cookie", "").lower().split("; ")
