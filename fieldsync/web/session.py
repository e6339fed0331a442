"""Who is using the browser app: the session cookie, CSRF tokens and page access.

A web session is a `sessions` row of kind `web` (see auth.accounts); the browser holds its
token in an HttpOnly, SameSite=Lax cookie and every state-changing request must also carry a
CSRF token derived from it (a hidden `csrf_token` field, or the `X-CSRF-Token` header for the
app's own fetch calls). Before sign-in, a random pre-session cookie plays the same part for the
sign-in form itself, so a third-party page cannot sign a browser into someone else's account.
"""
import functools
import hashlib
import hmac
import re
import secrets
from urllib.parse import urlsplit

from flask import current_app, g, redirect, request, url_for

from .. import problems
from ..auth import accounts, can, tokens
from ..extensions import db
from ..models import WebUser
from . import i18n

SESSION_COOKIE = "fieldsync_session"
PRESESSION_COOKIE = "fieldsync_presession"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
MAX_NEXT = 2048  # longer is no page of ours, and would only bloat the Location header


def _sign(value: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"csrf:" + value.encode(), hashlib.sha256).hexdigest()


def csrf_token() -> str:
    """The token this browser must send back with any form it posts."""
    if g.get("web_session_token"):
        return _sign(g.web_session_token)
    if not g.get("presession"):
        g.presession = request.cookies.get(PRESESSION_COOKIE) or secrets.token_urlsafe(24)
        g.set_presession_cookie = PRESESSION_COOKIE not in request.cookies
    return _sign("pre:" + g.presession)


def check_csrf() -> None:
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if g.get("web_session_token"):
        expected = _sign(g.web_session_token)
    else:
        presession = request.cookies.get(PRESESSION_COOKIE)
        expected = _sign("pre:" + presession) if presession else None
    if expected is None or not hmac.compare_digest(sent, expected):
        raise problems.csrf_failed()


def load_actor() -> None:
    """Set g.actor (or None) and g.language for this request, from the session cookie."""
    g.actor, g.web_user, g.web_session_token = None, None, None
    token = request.cookies.get(SESSION_COOKIE)
    if token and tokens.is_well_formed(token):
        session = accounts.session_for_token(token, current_app.config["FIELDSYNC"]["SESSION_TTL_HOURS"],
                                             kind="web")
        if session is not None:
            g.actor = accounts.actor_for_user(session.user, session)
            g.web_user = session.user
            g.web_session_token = token
    g.language = i18n.choose_language(g.web_user.language if g.web_user else None)


def cookie_secure() -> bool:
    # Behind a trusted proxy (FIELDSYNC_TRUSTED_PROXIES) ProxyFix has already set the scheme;
    # a client's own X-Forwarded-Proto is never believed here.
    return request.is_secure


def set_session_cookie(response, token: str) -> None:
    hours = current_app.config["FIELDSYNC"]["SESSION_TTL_HOURS"]
    response.set_cookie(SESSION_COOKIE, token, max_age=hours * 3600, httponly=True,
                        secure=cookie_secure(), samesite="Lax", path="/")
    response.delete_cookie(PRESESSION_COOKIE, path="/")


def clear_session_cookie(response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax")


def finish_response(response):
    if g.get("set_presession_cookie"):
        response.set_cookie(PRESESSION_COOKIE, g.presession, httponly=True, secure=cookie_secure(),
                            samesite="Lax", path="/")
    return response


def safe_next(target: str | None) -> str:
    """Only a path on this site (`/…`), else the home page: never `//evil.example`, `/\\evil`,
    `https://evil` or a header split. Controls and whitespace go first, because browsers drop tabs
    and newlines inside a URL (`/<tab>/evil` is `//evil` to them) and a newline would split the header."""
    target = CONTROLS.sub("", target or "").strip()
    if (len(target) <= MAX_NEXT and target.startswith("/") and not target.startswith(("//", "/\\"))
            and "\\" not in target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("web.dashboard")


def page(action: str | None = None):
    """A page for signed-in users; with `action`, only for those whose role allows it.

    Grantee scope is not decided here: each page asks the domain for things within
    `grantee_scope(g.actor)` and checks `can(actor, action, thing)` on single things."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            if g.get("actor") is None:
                return redirect(url_for("web.signin", next=request.full_path.rstrip("?")))
            if action is not None and not can(g.actor, action):
                raise problems.forbidden()
            return view(*args, **kwargs)
        return wrapper
    return decorate


def current_user() -> WebUser | None:
    return g.get("web_user")


def reload_user() -> WebUser | None:
    return db.session.get(WebUser, g.actor.id) if g.get("actor") else None
