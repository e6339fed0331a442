"""Signing in and out in a real Chromium, against gunicorn."""
import pytest

pytestmark = pytest.mark.browser


def test_sign_in_fails_then_succeeds_then_signs_out(chromium, web_server, app, screenshot):
    from web_fixtures import PASSWORD, create_user
    email = create_user(app, "coordinator")
    context = chromium.new_context(base_url=web_server.url, viewport={"width": 1366, "height": 860})
    page = context.new_page()
    page.goto("/")
    assert "/login" in page.url
    screenshot(page, "signin")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", "wrong wrong wrong")
    page.click("[data-test=signin-submit]")
    assert page.locator("[data-test=signin-error]").inner_text() == "Wrong e-mail or password."
    page.fill("input[name=password]", PASSWORD)
    page.click("[data-test=signin-submit]")
    page.wait_for_url(web_server.url + "/")
    assert page.locator(".whoami").inner_text().startswith(email.split("@")[0])
    page.click("button[lang=ru]")
    assert page.locator("[data-test=signout]").inner_text() == "Выйти"
    page.click("[data-test=signout]")
    page.wait_for_url("**/login")
    page.goto("/")
    assert "/login" in page.url
    context.close()
