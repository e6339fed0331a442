"""The coordinator web app at `/`: pages for people, with cookie sessions and CSRF.

Owns HTML pages, the browser's session cookie, CSRF, the interface languages and the app's own
CSS and JavaScript. Like `api/` and `openrosa/` it is HTTP only: every page asks the domain
rooms (review, indicators, records, xlsform, auth, exports) and renders what they answer; it
never queries tables itself and never calls another HTTP room.

Each area of the app is a module here (`dashboard`, `submissions`, `duplicates`, `forms`,
`devices`, `grantees`, `exports`) with its templates under `templates/web/<area>/` and its
Russian texts in `translations/ru/<area>.po`.
"""
from dataclasses import dataclass

from flask import Blueprint, g, request

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/web")


@dataclass(frozen=True)
class NavItem:
    order: int
    label: str  # English source text; translated when rendered
    endpoint: str
    action: str


NAV: list[NavItem] = []


def nav(order: int, label: str, endpoint: str, action: str) -> None:
    """Put an area in the top navigation, shown to those whose role allows `action`."""
    NAV.append(NavItem(order, label, endpoint, action))
    NAV.sort(key=lambda item: item.order)


from . import session  # noqa: E402  (the blueprint must exist before the pages register)
from . import (assets, dashboard, devices, duplicates, exports, forms, grantees, signin,  # noqa: E402,F401
               submissions, users)


@bp.before_request
def _who_is_asking():
    session.load_actor()
    if request.method in session.UNSAFE_METHODS:
        session.check_csrf()


@bp.after_request
def _cookies(response):
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
                                "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return session.finish_response(response)


def init_app(app) -> None:
    from ..auth import can
    from . import errors, i18n
    i18n.init_app(app)
    app.register_blueprint(bp)
    app.jinja_env.globals.update(csrf_token=session.csrf_token, can=lambda action, thing=None: can(g.get("actor"), action, thing),
                                 nav_items=lambda: [i for i in NAV if can(g.get("actor"), i.action)])
    errors.init_app(app)
