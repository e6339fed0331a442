"""Sessions for web users and scripts (`POST /v1/sessions`), and who is asking."""
from flask import current_app, request

from .. import problems
from ..auth import accounts
from ..httpkit import current_actor
from ..models import WebUser, iso
from ..extensions import db
from . import bp, schemas
from .openapi import documented


def json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise problems.unparseable_json()
    return body


@bp.post("/v1/sessions")
@documented("Sign in: a Bearer session token (as ODK Central)", body=schemas.SessionCreate, response=schemas.SessionOut, errors=("400", "401", "429"))
def create_session():
    body = json_body()
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise problems.missing_parameter(field="email and password")
    token, session = accounts.start_session(
        email, password, current_app.config["FIELDSYNC"]["SESSION_TTL_HOURS"],
        address=request.remote_addr or "-")
    return {"token": token, "createdAt": iso(session.created_at), "expiresAt": iso(session.expires_at)}


def user_json(user: WebUser) -> dict:
    return {"id": user.id, "type": "user", "email": user.email, "displayName": user.display_name,
            "role": user.role, "grantee": user.grantee.code if user.grantee else None,
            "createdAt": iso(user.created_at), "updatedAt": None, "deletedAt": None}


@bp.get("/v1/users/current")
@documented("Who am I?", response=schemas.User, errors=("401",))
def current_user():
    actor = current_actor()
    if actor is None or actor.kind != "user":
        raise problems.auth_failed()
    return user_json(db.session.get(WebUser, actor.id))
