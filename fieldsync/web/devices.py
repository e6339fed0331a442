"""Devices: the app users (ODK Collect credentials) per grantee and for evaluators, their last
sync, making one, showing its QR code to scan, and revoking a lost phone (admins)."""
from flask import current_app, flash, g, redirect, render_template, request, url_for

from .. import problems
from ..audit import record
from ..auth import accounts
from ..extensions import write_transaction
from ..formats import collect_settings
from ..httpkit import public_base_url
from ..programme import PROJECT_ID, grantees
from . import bp, i18n, nav
from .session import page

nav(50, "Devices", "web.devices", "app_user.manage")

EVALUATOR = "__evaluator__"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _app_user_or_404(app_user_id: int):
    found = next((a for a in accounts.list_app_users(PROJECT_ID) if a.id == app_user_id), None)
    if found is None:
        raise problems.not_found()
    return found


def server_url(app_user) -> str:
    """The address a phone is set up with: the token in it is the device's credential."""
    return f"{public_base_url()}/v1/key/{app_user.token}/projects/{app_user.project_id}"


def qr_payload(app_user) -> str:
    return collect_settings.qr_payload(collect_settings.settings(
        server_url(app_user), current_app.config["FIELDSYNC"]["PROJECT_NAME"]))


def _groups(app_users, all_grantees):
    """[(heading, grantee or None, [app users])]: each grantee in code order, then evaluators."""
    by_grantee = {}
    for app_user in app_users:
        by_grantee.setdefault(app_user.grantee_id, []).append(app_user)
    groups = [(grantee.name, grantee, by_grantee[grantee.id]) for grantee in all_grantees if grantee.id in by_grantee]
    evaluators = [a for a in app_users if a.grantee_id is None]
    if evaluators:
        groups.append((i18n.gettext("Evaluators (any grantee)"), None, evaluators))
    return groups


@bp.get("/devices")
@page("app_user.manage")
def devices(values=None, error=None, status=200):
    app_users = accounts.list_app_users(PROJECT_ID)
    all_grantees = grantees(PROJECT_ID)
    active = sum(1 for a in app_users if a.revoked_at is None)
    return render_template("web/devices/index.html", groups=_groups(app_users, all_grantees), grantees=all_grantees,
                           total=len(app_users), active=active, values=values or {}, error=error,
                           evaluator=EVALUATOR), status


@bp.post("/devices")
@page("app_user.manage")
def devices_create():
    values = {"name": request.form.get("name", "").strip(), "owner": request.form.get("owner", "")}
    if not values["name"]:
        return devices(values, i18n.gettext("Give the device a name, such as “Chinek tablet 1”."), 400)
    if len(values["name"]) > 255:
        return devices(values, i18n.gettext("The name is too long (at most 255 characters)."), 400)
    if not values["owner"]:
        return devices(values, i18n.gettext("Choose the grantee this device records for, or evaluator."), 400)
    evaluator = values["owner"] == EVALUATOR
    try:
        app_user = accounts.create_app_user(PROJECT_ID, values["name"], None if evaluator else values["owner"],
                                            evaluator, actor=g.actor)
    except problems.Problem as problem:
        if problem.code == problems.already_exists.code:
            message = i18n.gettext("A device named “%(name)s” already exists. Choose another name.", name=values["name"])
        elif problem.status == 404 or problem.code == problems.unexpected_value.code:
            message = i18n.gettext("Choose the grantee this device records for, or evaluator.")
        else:
            message = i18n.gettext("The device could not be created. Check the name and the grantee.")
        return devices(values, message, problem.status if problem.status < 500 else 400)
    flash(i18n.gettext("Device “%(name)s” created. Scan its QR code with ODK Collect on the phone.",
                       name=app_user.display_name), "success")
    return redirect(url_for("web.device_detail", app_user_id=app_user.id))


@bp.get("/devices/<int:app_user_id>")
@page("app_user.manage")
def device_detail(app_user_id):
    app_user = _app_user_or_404(app_user_id)
    active = app_user.revoked_at is None
    body = render_template("web/devices/detail.html", device=app_user,
                           server_url=server_url(app_user) if active else None,
                           payload=qr_payload(app_user) if active else None)
    return body, 200, NO_STORE


@bp.get("/devices/<int:app_user_id>/qr.png")
@page("app_user.manage")
def device_qr(app_user_id):
    app_user = _app_user_or_404(app_user_id)
    if app_user.revoked_at is not None:
        raise problems.not_found()
    png = collect_settings.qr_png(qr_payload(app_user))
    with write_transaction():
        record("field_key.qr.read", g.actor, subject=app_user, details={"name": app_user.display_name})
    return png, 200, {"Content-Type": "image/png", **NO_STORE}


@bp.post("/devices/<int:app_user_id>/revoke")
@page("app_user.manage")
def device_revoke(app_user_id):
    app_user = _app_user_or_404(app_user_id)
    if app_user.revoked_at is not None:
        flash(i18n.gettext("“%(name)s” was already revoked.", name=app_user.display_name), "info")
    else:
        accounts.revoke_app_user(app_user, actor=g.actor)
        flash(i18n.gettext("“%(name)s” is revoked: its phone can no longer get forms or send submissions.",
                           name=app_user.display_name), "success")
    return redirect(url_for("web.device_detail", app_user_id=app_user_id))
