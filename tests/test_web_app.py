"""The web app's frame: signing in and out, sessions, CSRF, throttling, languages, error pages."""
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir

from web_fixtures import PASSWORD, WebClient, create_user, csrf_of

WEB = Path(__file__).resolve().parent.parent / "fieldsync" / "web"


def sign_in(client, email, password=PASSWORD, next_=""):
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password, "next": next_,
                                       "csrf_token": csrf_of(page.data)})


def test_pages_need_a_sign_in_and_come_back_after_it(app, client):
    response = client.get("/?period=2025")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/?period%3D2025"
    email = create_user(app, "coordinator")
    response = sign_in(client, email, next_="/?period=2025")
    assert response.status_code == 302 and response.headers["Location"] == "/?period=2025"
    cookie = client.get_cookie("fieldsync_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    home = client.get("/")
    assert home.status_code == 200 and email.split("@")[0].encode() in home.data


def test_wrong_password_and_unknown_user_read_the_same(app, client):
    email = create_user(app, "viewer")
    wrong = sign_in(client, email, "not the password")
    unknown = sign_in(client, "nobody@example.org", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert b"Wrong e-mail or password." in wrong.data and b"Wrong e-mail or password." in unknown.data
    assert client.get_cookie("fieldsync_session") is None


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_sign_in_never_redirects_off_site(app, client, target):
    email = create_user(app, "viewer")
    response = sign_in(client, email, next_=target)
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_every_post_needs_the_csrf_token(app, client):
    email = create_user(app, "admin")
    # Sign-in itself: without the pre-session token nobody is signed in.
    response = client.post("/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 403 and b"expired" in response.data
    assert client.get_cookie("fieldsync_session") is None
    web = WebClient(client, email)
    for token in ("", "0" * 64, csrf_of(app.test_client().get("/login").data)):
        response = client.post("/logout", data={"csrf_token": token})
        assert response.status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    assert web.post("/logout").status_code == 302
    assert client.get("/").status_code == 302


def test_signing_out_ends_the_session_on_the_server(app, client):
    email = create_user(app, "coordinator")
    web = WebClient(client, email)
    stolen = client.get_cookie("fieldsync_session").value
    web.post("/logout")
    other = app.test_client()
    other.set_cookie("fieldsync_session", stolen)
    assert other.get("/").status_code == 302


def test_cookie_and_bearer_sessions_are_not_interchangeable(app, client):
    email = create_user(app, "coordinator")
    WebClient(client, email)
    cookie = client.get_cookie("fieldsync_session").value
    assert app.test_client().get("/v1/users/current",
                                 headers={"Authorization": f"Bearer {cookie}"}).status_code == 401
    token = client.post("/v1/sessions", json={"email": email, "password": PASSWORD}).get_json()["token"]
    other = app.test_client()
    other.set_cookie("fieldsync_session", token)
    assert other.get("/").status_code == 302


def test_sign_in_is_throttled_per_email_even_with_the_right_password(app, client):
    email = create_user(app, "coordinator")
    for _ in range(5):
        assert sign_in(client, email, "guess guess guess").status_code == 401
    blocked = sign_in(client, email)
    assert blocked.status_code == 429 and b"Wait 15 minutes" in blocked.data
    # The API door counts the same attempts.
    api = client.post("/v1/sessions", json={"email": email, "password": PASSWORD})
    assert api.status_code == 429 and api.get_json()["code"] == 429.1
    # Another account is not locked out by it.
    assert sign_in(client, create_user(app, "viewer")).status_code == 302


def test_language_is_kept_per_user(app, client):
    email = create_user(app, "coordinator")
    web = WebClient(client, email)
    assert b"Sign out" in client.get("/").data
    response = web.post("/language", data={"language": "ru", "next": "/"})
    assert response.status_code == 302
    assert "Выйти".encode() in client.get("/").data
    # A new browser of the same person opens in Russian too: it is on the account.
    other = app.test_client()
    WebClient(other, email)
    page = other.get("/").data.decode()
    assert 'lang="ru"' in page and "Выйти" in page
    assert web.post("/language", data={"language": "xx"}).status_code == 400


def test_sign_in_page_follows_the_browser_language(client):
    page = client.get("/login", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}).data.decode()
    assert "Вход в FieldSync" in page
    assert "Sign in to FieldSync" in client.get("/login", headers={"Accept-Language": "de"}).data.decode()


def test_problems_are_pages_without_tracebacks(app, client):
    web = WebClient(client, create_user(app, "viewer"))
    missing = web.get("/no/such/page", headers={"Accept": "text/html"})
    assert missing.status_code == 404 and b"<html" in missing.data and b"Traceback" not in missing.data
    # APIs keep answering JSON for the same kind of problem.
    assert client.get("/v1/no/such", headers={"Accept": "text/html"}).get_json()["code"] == 404.1


def test_pages_send_protective_headers(app, client):
    response = client.get("/login")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def _messages():
    keywords = dict(DEFAULT_KEYWORDS, N_=None, nav=(2,))
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")]
    for filename, lineno, message, comments, context in extract_from_dir(
            str(WEB), method_map=method_map, keywords=keywords):
        yield filename, lineno, message[0] if isinstance(message, tuple) else message


def test_every_text_of_the_web_app_has_a_russian_translation(app):
    from fieldsync.web.i18n import load_catalogues
    russian = load_catalogues()["ru"]
    found = list(_messages())
    assert len(found) > 30
    missing = sorted({f"{name}:{line}: {text}" for name, line, text in found if text not in russian})
    assert not missing, "no Russian for:\n" + "\n".join(missing)


def test_russian_plurals_follow_russian_rules(app):
    from flask import g
    from fieldsync.web import i18n
    with app.test_request_context("/"):
        app.extensions["fieldsync.catalogues"]["ru"]["%(num)d submission"] = (
            "%(num)d отправка", "%(num)d отправки", "%(num)d отправок")
        g.language = "ru"
        said = [i18n.ngettext("%(num)d submission", "%(num)d submissions", n) for n in (1, 3, 5, 21, 11)]
        assert said == ["1 отправка", "3 отправки", "5 отправок", "21 отправка", "11 отправок"]


def test_an_unexpected_error_is_a_plain_page_and_logged(app, client, caplog):
    def broken():
        raise RuntimeError("secret detail of the bug")
    app.add_url_rule("/broken-page", "broken_page", broken)
    response = client.get("/broken-page", headers={"Accept": "text/html"})
    body = response.get_data(as_text=True)
    assert response.status_code == 500 and "<html" in body
    assert "secret detail" not in body and "Traceback" not in body and "Something went wrong" in body
    assert "secret detail of the bug" in caplog.text  # the traceback is in the log, for us
