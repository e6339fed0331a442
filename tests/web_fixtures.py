"""Fixtures for the web app: signed-in test clients, and a real Chromium driven by Playwright
against FieldSync served by gunicorn.

The browser is Debian's `chromium` (`FIELDSYNC_CHROMIUM`, default /usr/bin/chromium). Without
it the browser tests are skipped, unless `FIELDSYNC_REQUIRE_BROWSER=1` (as in CI), where a
missing browser fails them. Screenshots go to `FIELDSYNC_SCREENSHOTS` when set (the docs are
refreshed with `FIELDSYNC_SCREENSHOTS=docs/screenshots`), else to the test's temporary folder.
"""
import os
import re
import uuid
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FIELDSYNC_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "correct horse battery"
# Without these, Chromium keeps calling home, and this machine's closed network refuses it.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def csrf_of(html: bytes | str) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    return re.search(r'name="csrf-token" content="([^"]+)"', text).group(1)


def create_user(app, role="coordinator", grantee=None, email=None, password=PASSWORD, language=None):
    """A web user made through the CLI, as an admin would; returns the e-mail."""
    email = email or f"{role}-{uuid.uuid4().hex[:6]}@example.org"
    args = ["users", "create", email, "--role", role] + (["--grantee", grantee] if grantee else [])
    result = app.test_cli_runner().invoke(args=args, env={"FIELDSYNC_PASSWORD": password},
                                          catch_exceptions=False)
    assert result.exit_code == 0, result.output
    if language:
        from fieldsync.auth import accounts
        from fieldsync.models import WebUser
        from fieldsync.extensions import db
        with app.app_context():
            accounts.set_language(db.session.query(WebUser).filter_by(email=email).one().id, language)
    return email


class WebClient:
    """A Flask test client signed in through the sign-in form, which sends the CSRF token."""

    def __init__(self, client, email):
        self.client, self.email = client, email
        page = client.get("/login")
        response = client.post("/login", data={"email": email, "password": PASSWORD,
                                               "csrf_token": csrf_of(page.data)})
        assert response.status_code == 302, response.data
        self.csrf = csrf_of(client.get("/").data)

    def get(self, *args, **kwargs):
        return self.client.get(*args, **kwargs)

    def post(self, url, data=None, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.csrf)
        return self.client.post(url, data=data, **kwargs)


@pytest.fixture
def web_client(app):
    """web_client(role, grantee=None) → a WebClient signed in as a new user of that role."""
    def make(role="coordinator", grantee=None, language=None):
        email = create_user(app, role, grantee, language=language)
        return WebClient(app.test_client(), email)
    return make


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        if os.environ.get("FIELDSYNC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no browser at {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def web_server(live_server):
    """FieldSync under gunicorn, with two workers as deployed."""
    return live_server(workers=2)


@pytest.fixture
def browser_as(chromium, web_server, app):
    """browser_as(role, grantee=None, language=None) → a Playwright page signed in through the form."""
    contexts = []

    def sign_in(role="coordinator", grantee=None, language=None):
        email = create_user(app, role, grantee, language=language)
        context = chromium.new_context(viewport={"width": 1366, "height": 860}, base_url=web_server.url,
                                       accept_downloads=True, locale="en-GB")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto("/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", PASSWORD)
        page.click("[data-test=signin-submit]")
        page.wait_for_url(lambda url: "/login" not in url)
        page.email = email
        return page
    yield sign_in
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot(tmp_path):
    """screenshot(page, name): a full-page PNG, for the docs when FIELDSYNC_SCREENSHOTS is set."""
    folder = Path(os.environ.get("FIELDSYNC_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name):
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return take
