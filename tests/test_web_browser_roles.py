"""Every role signs in in a real Chromium and walks every page its navigation offers: each one
renders in the app's layout, with no error page, no failed request and no script error."""
import pytest

pytestmark = pytest.mark.browser

ROLES = [("coordinator", None), ("grantee_staff", "chinek"), ("evaluator", None), ("viewer", None),
         ("admin", None)]


def test_each_role_walks_its_pages(browser_as, screenshot):
    seen = {}
    for role, grantee in ROLES:
        page = browser_as(role, grantee)
        problems = []
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on("console", lambda message: message.type == "error" and problems.append(message.text))
        page.on("response", lambda response: response.status >= 400 and problems.append(
            f"{response.status} {response.url}"))
        links = page.eval_on_selector_all(".mainnav a", "links => links.map(a => a.getAttribute('href'))")
        assert links, role
        for href in links:
            page.goto(href)
            assert page.locator(".topbar").count() == 1, (role, href)
            assert page.locator(".error-status").count() == 0, (role, href)
            assert page.locator("h1").count() >= 1, (role, href)
        assert not problems, (role, problems)
        seen[role] = set(links)
        if role == "admin":
            page.goto("/users")
            screenshot(page, "users")
            # The longest navigation (an admin's, in Russian) still fits a laptop screen.
            page.click("button[lang=ru]")
            last = page.locator(".mainnav a").last.bounding_box()
            nav = page.locator(".mainnav").bounding_box()
            assert page.locator(".mainnav a").last.inner_text() == "Пользователи"
            assert last["x"] + last["width"] <= nav["x"] + nav["width"] + 1 <= 1366
    # Least privilege shows in the navigation too.
    assert "/users" in seen["admin"] and "/users" not in seen["coordinator"]
    assert seen["viewer"] < seen["admin"]
    assert "/devices" not in seen["grantee_staff"]
