"""Creating and finding web users, sessions and app users (their queries live here)."""
from datetime import timedelta

from sqlalchemy import delete, select

from .. import problems
from ..audit import record
from ..extensions import db, write_transaction
from ..models import ROLES, AppUser, Grantee, Session, WebUser, utcnow
from . import throttle, tokens
from .policy import Actor

APP_USER_NEVER_EXPIRES = "9999-12-31T23:59:59.000Z"


def _grantee(project_id: int, code: str | None) -> Grantee | None:
    if code is None:
        return None
    grantee = db.session.scalar(select(Grantee).where(Grantee.project_id == project_id,
                                                      Grantee.code == code))
    if grantee is None:
        raise problems.unexpected_value(field="grantee", value=code, reason="no grantee has this code")
    return grantee


def create_web_user(email: str, password: str, role: str, grantee_code: str | None = None,
                    display_name: str | None = None, project_id: int = 1, actor=None) -> WebUser:
    email = email.strip().lower()
    if role not in ROLES:
        raise problems.unexpected_value(field="role", value=role, reason=f"use one of {', '.join(ROLES)}")
    if role == "grantee_staff" and not grantee_code:
        raise problems.missing_parameter(field="grantee (a grantee_staff user belongs to one grantee)")
    if role != "grantee_staff" and grantee_code:
        raise problems.unexpected_value(field="grantee", value=grantee_code,
                                        reason="only grantee_staff users are bound to a grantee")
    if "@" not in email or len(email) > 320:
        raise problems.unexpected_value(field="email", value=email, reason="not an e-mail address")
    if len(password) < 10:
        raise problems.unexpected_value(field="password", value="(hidden)",
                                        reason="use at least 10 characters")
    with write_transaction():
        if db.session.scalar(select(WebUser).where(WebUser.email == email)):
            raise problems.already_exists(fields="email", values=email)
        grantee = _grantee(project_id, grantee_code)
        user = WebUser(email=email, display_name=display_name or email.split("@")[0],
                       password_hash=tokens.hash_password(password), role=role,
                       grantee_id=grantee.id if grantee else None)
        db.session.add(user)
        db.session.flush()
        record("user.create", actor, subject=user, details={"email": email, "role": role})
    return user


def actor_for_user(user: WebUser, session: Session | None = None) -> Actor:
    return Actor(kind="user", id=user.id, role=user.role, display_name=user.display_name,
                 grantee_id=user.grantee_id, session_id=session.id if session else None)


def actor_for_app_user(app_user: AppUser) -> Actor:
    # An evaluator's device may submit for any grantee; a trainer's only for its own.
    return Actor(kind="app_user", id=app_user.id, role="app_user",
                 display_name=app_user.display_name,
                 grantee_id=None if app_user.is_evaluator else app_user.grantee_id,
                 project_id=app_user.project_id)


def user_for_password(email: str, password: str, *, address: str) -> WebUser:
    """The web user with this e-mail and password, throttled per e-mail and address (see
    `throttle`). Every door a password comes through (sign-in form, POST /v1/sessions, HTTP
    Basic) comes here, so guesses at all of them count in one budget."""
    throttle.check(email, address)
    user = db.session.scalar(select(WebUser).where(WebUser.email == (email or "").strip().lower()))
    ok = tokens.check_password(user.password_hash if user else None, password or "")
    if not ok or user.disabled_at is not None:
        throttle.note(email, address, succeeded=False)
        raise problems.auth_failed()
    throttle.note(email, address, succeeded=True)
    return user


def start_session(email: str, password: str, ttl_hours: int, address: str = "-",
                  kind: str = "api") -> tuple[str, Session]:
    """Check the password (throttled per e-mail and address) and open a session of `kind`."""
    user = user_for_password(email, password, address=address)
    token = tokens.new_token()
    with write_transaction():
        now = utcnow()
        session = Session(token_hash=tokens.digest(token), user_id=user.id, created_at=now,
                          expires_at=now + timedelta(hours=ttl_hours), kind=kind)
        db.session.add(session)
        db.session.flush()
        record("user.session.create", actor_for_user(user, session), subject=user, details={"kind": kind})
    return token, session


def session_for_token(token: str, ttl_hours: int | None = None, kind: str = "api") -> Session | None:
    """The live session for a Bearer token. A session in use is renewed: once less than half
    its lifetime is left, it is extended to a full one (one write per half lifetime at most),
    so a script that keeps working keeps its token and an idle one expires."""
    session = db.session.scalar(select(Session).where(Session.token_hash == tokens.digest(token),
                                                      Session.kind == kind))
    now = utcnow()
    if session is None or session.expires_at <= now or session.user.disabled_at is not None:
        return None
    if ttl_hours and session.expires_at - now < timedelta(hours=ttl_hours) / 2:
        with write_transaction():
            session = db.session.get(Session, session.id)
            session.expires_at = now + timedelta(hours=ttl_hours)
    return session


def create_app_user(project_id: int, display_name: str, grantee_code: str | None,
                    evaluator: bool, actor=None) -> AppUser:
    display_name = (display_name or "").strip()
    if not display_name:
        raise problems.missing_parameter(field="name")
    if evaluator == bool(grantee_code):
        raise problems.bad_request(reason="an app user is either bound to one grantee or an evaluator")
    with write_transaction():
        if db.session.scalar(select(AppUser).where(AppUser.project_id == project_id,
                                                   AppUser.display_name == display_name)):
            raise problems.already_exists(fields="name", values=display_name)
        grantee = _grantee(project_id, grantee_code)
        app_user = AppUser(project_id=project_id, display_name=display_name, token=tokens.new_token(),
                           grantee_id=grantee.id if grantee else None, is_evaluator=evaluator)
        db.session.add(app_user)
        db.session.flush()
        record("field_key.create", actor, subject=app_user,
               details={"name": display_name, "grantee": grantee_code, "evaluator": evaluator})
    return app_user


def app_user_by_name(project_id: int, display_name: str) -> AppUser | None:
    return db.session.scalar(select(AppUser).where(AppUser.project_id == project_id,
                                                   AppUser.display_name == display_name))


def app_user_for_token(token: str) -> AppUser | None:
    return db.session.scalar(select(AppUser).where(AppUser.token == token))


def list_app_users(project_id: int) -> list[AppUser]:
    return list(db.session.scalars(select(AppUser).where(AppUser.project_id == project_id)
                                   .order_by(AppUser.display_name)))


def revoke_app_user(app_user: AppUser, actor=None) -> None:
    with write_transaction():
        if app_user.revoked_at is None:
            app_user.revoked_at = utcnow()
            record("field_key.revoke", actor, subject=app_user, details={"name": app_user.display_name})


def end_session(actor: Actor, token: str) -> None:
    """Sign out: `current` ends the caller's own session; a token ends that one (own, or any for admins)."""
    with write_transaction():
        if token == "current":
            session = db.session.get(Session, actor.session_id) if actor.session_id else None
        else:
            session = db.session.scalar(select(Session).where(Session.token_hash == tokens.digest(token)))
        if session is None or (session.user_id != actor.id and actor.role != "admin"):
            raise problems.not_found()
        db.session.delete(session)
        record("user.session.end", actor, subject=session.user)


def end_session_by_token(token: str) -> None:
    """Sign out of the web app: the cookie's session ends (nothing to do if it already has)."""
    with write_transaction():
        session = db.session.scalar(select(Session).where(Session.token_hash == tokens.digest(token)))
        if session is not None:
            record("user.session.end", actor_for_user(session.user, session), subject=session.user)
            db.session.delete(session)


def set_language(user_id: int, language: str) -> None:
    with write_transaction():
        db.session.get(WebUser, user_id).language = language


def has_admin() -> bool:
    return db.session.scalar(select(WebUser.id).where(WebUser.role == "admin",
                                                      WebUser.disabled_at.is_(None)).limit(1)) is not None


def list_web_users() -> list[WebUser]:
    return list(db.session.scalars(select(WebUser).order_by(WebUser.disabled_at.is_not(None), WebUser.email)))


def web_user(user_id: int) -> WebUser | None:
    return db.session.get(WebUser, user_id)


def set_disabled(user: WebUser, disabled: bool, actor=None) -> None:
    """Disable (or enable again) a web user; disabling ends every session they have at once."""
    if actor is not None and actor.kind == "user" and actor.id == user.id and disabled:
        raise problems.bad_request(reason="you cannot disable your own account")
    with write_transaction():
        user = db.session.get(WebUser, user.id)
        if disabled and user.disabled_at is None:
            user.disabled_at = utcnow()
            db.session.execute(delete(Session).where(Session.user_id == user.id))
            record("user.disable", actor, subject=user, details={"email": user.email})
        elif not disabled and user.disabled_at is not None:
            user.disabled_at = None
            record("user.enable", actor, subject=user, details={"email": user.email})
