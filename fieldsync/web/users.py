"""Web users: who may sign in, with which role and grantee (admins only)."""
from flask import flash, g, redirect, render_template, request, url_for

from .. import problems
from ..auth import accounts
from ..models import ROLES
from ..programme import PROJECT_ID, grantees
from . import bp, i18n, nav
from .session import page

nav(80, "Users", "web.users", "user.manage")


def _form_values() -> dict:
    return {key: request.form.get(key, "").strip() for key in ("email", "display_name", "role", "grantee")}


@bp.get("/users")
@page("user.manage")
def users(values=None, error=None, status=200):
    return render_template("web/users/index.html", users=accounts.list_web_users(), roles=ROLES,
                           grantees=grantees(PROJECT_ID), values=values or {}, error=error), status


@bp.post("/users")
@page("user.manage")
def create_user():
    values = _form_values()
    try:
        user = accounts.create_web_user(values["email"], request.form.get("password", ""), values["role"],
                                        values["grantee"] or None, values["display_name"] or None,
                                        project_id=PROJECT_ID, actor=g.actor)
    except problems.Problem as problem:
        return users(values=values, error=_plain(problem), status=problem.status)
    flash(i18n.gettext("%(email)s can now sign in.", email=user.email), "success")
    return redirect(url_for("web.users"))


def _plain(problem: problems.Problem) -> str:
    field = problem.details.get("field", "")
    if problem.code == problems.already_exists.code:
        return i18n.gettext("A user with this e-mail already exists.")
    if field == "password":
        return i18n.gettext("The password must have at least 10 characters.")
    if field == "email":
        return i18n.gettext("This is not an e-mail address.")
    if field == "role":
        return i18n.gettext("Choose a role.")
    if field.startswith("grantee"):
        return i18n.gettext("Grantee staff belong to exactly one grantee; other roles to none.")
    return i18n.gettext("The user could not be created.")


@bp.post("/users/<int:user_id>/disabled")
@page("user.manage")
def set_disabled(user_id):
    user = accounts.web_user(user_id)
    if user is None:
        raise problems.not_found()
    disabled = request.form.get("disabled") == "1"
    accounts.set_disabled(user, disabled, actor=g.actor)
    flash(i18n.gettext("%(email)s can no longer sign in.", email=user.email) if disabled
          else i18n.gettext("%(email)s can sign in again.", email=user.email), "success")
    return redirect(url_for("web.users"))
