"""Web users page: only admins manage who signs in; disabling signs a person out at once."""
from web_fixtures import PASSWORD, WebClient, create_user


def test_only_admins_see_the_users_page(web_client):
    for role in ("coordinator", "grantee_staff", "evaluator", "viewer"):
        web = web_client(role, grantee="tomo" if role == "grantee_staff" else None)
        assert web.get("/users").status_code == 403
        assert b'href="/users"' not in web.get("/").data
        assert web.post("/users", data={"email": "x@example.org", "role": "admin",
                                        "password": PASSWORD}).status_code == 403
    admin = web_client("admin")
    assert admin.get("/users").status_code == 200 and b'href="/users"' in admin.get("/").data


def test_admin_adds_a_grantee_staff_user_who_can_sign_in(app, web_client):
    admin = web_client("admin")
    response = admin.post("/users", data={"email": "Staff@Tomo.kg", "display_name": "Gulnara",
                                          "role": "grantee_staff", "grantee": "tomo", "password": PASSWORD})
    assert response.status_code == 302
    page = admin.get("/users").data.decode()
    assert "staff@tomo.kg" in page and "Gulnara" in page
    staff = WebClient(app.test_client(), "staff@tomo.kg")
    assert "Tomo" in staff.get("/").data.decode()


def test_bad_user_details_are_explained_and_nothing_is_created(web_client):
    admin = web_client("admin")
    cases = [({"email": "a@example.org", "role": "viewer", "password": "short"}, "at least 10 characters"),
             ({"email": "not-an-address", "role": "viewer", "password": PASSWORD}, "not an e-mail address"),
             ({"email": "b@example.org", "role": "grantee_staff", "password": PASSWORD}, "exactly one grantee"),
             ({"email": "c@example.org", "role": "wizard", "password": PASSWORD}, "Choose a role"),
             ({"email": admin.email, "role": "viewer", "password": PASSWORD}, "already exists")]
    for data, message in cases:
        response = admin.post("/users", data=data)
        assert response.status_code in (400, 409), data
        assert message in response.data.decode(), data
    page = admin.get("/users").data.decode()
    assert not any(f'data-email="{e}"' in page for e in ("a@example.org", "b@example.org", "c@example.org"))
    assert f'data-email="{admin.email}"' in page


def test_disabling_a_user_ends_their_session_at_once(app, web_client):
    admin = web_client("admin")
    email = create_user(app, "coordinator")
    coordinator = WebClient(app.test_client(), email)
    assert coordinator.get("/").status_code == 200
    from fieldsync.auth import accounts
    with app.app_context():
        user_id = next(u.id for u in accounts.list_web_users() if u.email == email)
    assert admin.post(f"/users/{user_id}/disabled", data={"disabled": "1"}).status_code == 302
    assert coordinator.get("/").status_code == 302  # signed out
    assert app.test_client().post("/v1/sessions", json={"email": email, "password": PASSWORD}).status_code == 401
    admin.post(f"/users/{user_id}/disabled", data={"disabled": "0"})
    assert WebClient(app.test_client(), email).get("/").status_code == 200
    assert admin.post("/users/999999/disabled", data={"disabled": "1"}).status_code == 404


def test_an_admin_cannot_lock_themselves_out(app, web_client):
    admin = web_client("admin")
    from fieldsync.auth import accounts
    with app.app_context():
        own_id = next(u.id for u in accounts.list_web_users() if u.email == admin.email)
    assert admin.post(f"/users/{own_id}/disabled", data={"disabled": "1"}).status_code == 400
    assert admin.get("/users").status_code == 200
