"""What every HTTP room shares: who is asking, how problems are rendered, common headers.

Problems raised anywhere below a request become one answer: an OpenRosa XML envelope on
device endpoints (Collect shows its message to the trainer), JSON `{code, message}` elsewhere.
A 500 is always a bug; it is logged with its traceback and answered without one.
"""
import base64
import binascii
import functools

from flask import current_app, g, request
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter
from werkzeug.http import http_date

from . import problems
from .auth import Actor
from .auth import accounts, tokens
from .extensions import db
from .formats import openrosa as openrosa_xml
from .models import utcnow

OPENROSA_VERSION = "1.0"
MAX_ID = 2**31 - 1


class IdConverter(IntegerConverter):
    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def bounded_int(name: str, default: int | None = None, low: int = 0, high: int = MAX_ID) -> int | None:
    """An integer query parameter, refused with 400 when it is not one or out of range."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise problems.unexpected_value(field=name, value=raw, reason="a whole number") from None
    if not low <= value <= high:
        raise problems.unexpected_value(field=name, value=raw, reason=f"between {low} and {high}")
    return value


def current_actor() -> Actor | None:
    """The authenticated actor of this request, or None; raises 401/403 for bad credentials."""
    if "actor" not in g:
        g.actor = _authenticate()
    return g.actor


def _authenticate() -> Actor | None:
    token = (request.view_args or {}).get("token") or request.args.get("st")
    if token is not None:
        if not tokens.is_well_formed(token):
            raise problems.auth_failed()
        app_user = accounts.app_user_for_token(token)
        if app_user is None or app_user.revoked_at is not None:
            # 403, not 401: a 401 would make Collect prompt the trainer for a password.
            raise problems.forbidden()
        return accounts.actor_for_app_user(app_user)
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if not header:
        return None
    if scheme.lower() == "bearer":
        session = accounts.session_for_token(credentials.strip(),
                                             current_app.config["FIELDSYNC"]["SESSION_TTL_HOURS"])
        if session is None:
            raise problems.auth_failed()
        return accounts.actor_for_user(session.user, session)
    if scheme.lower() == "basic":
        # Only the connection, or a trusted proxy through ProxyFix (FIELDSYNC_TRUSTED_PROXIES),
        # says HTTPS: an X-Forwarded-Proto the client sends itself proves nothing.
        if not request.is_secure:
            raise problems.https_only()
        try:
            email, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise problems.auth_failed() from None
        user = accounts.user_for_password(email, password, address=request.remote_addr or "-")
        return accounts.actor_for_user(user)
    raise problems.auth_failed()


def openrosa_endpoint(view):
    """Mark a view as an OpenRosa endpoint: header required (checked before auth), OpenRosa
    headers and XML error envelopes on the way out."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.openrosa = True
        sent = request.headers.get("X-OpenRosa-Version")
        if sent != OPENROSA_VERSION:
            problem = problems.invalid_openrosa_header()
            if sent is not None:
                problem.message += f" (got: {sent})"
            raise problem
        return view(*args, **kwargs)
    return wrapper


def device_route(request_path: str) -> bool:
    # Only the URL's prefix says "a device": a form may well be called "key".
    return request_path.startswith("/v1/key/") or getattr(g, "openrosa", False)


def render_problem(problem: problems.Problem):
    page = current_app.extensions.get("fieldsync.problem_page")
    if page is not None and not device_route(request.path) and page[0]():
        return page[1](problem)  # a person in a browser: a page in their language
    if device_route(request.path):
        body = openrosa_xml.response(problem.message, error=True)
        response = current_app.response_class(body, status=problem.status,
                                              content_type="text/xml; charset=utf-8")
        g.openrosa = True
    else:
        response = current_app.json.response(problem.to_json())
        response.status_code = problem.status
    return response


HTTP_PROBLEMS = {400: lambda e: problems.bad_request(reason=e.description or "malformed request"),
                 404: lambda e: problems.not_found(), 405: lambda e: problems.method_not_allowed(),
                 413: lambda e: problems.too_large(limit=current_app.config["FIELDSYNC"]["MAX_SUBMISSION_BYTES"])}


def register(app):
    @app.errorhandler(problems.Problem)
    def _problem(problem):
        return render_problem(problem)

    @app.errorhandler(HTTPException)
    def _http(exc):
        make = HTTP_PROBLEMS.get(exc.code)
        if make is None:
            return exc
        return render_problem(make(exc))

    # A lost or refused connection (including one found dead at commit) and an exhausted pool
    # are the database being unavailable or busy: 503, which Collect retries, never a 500.
    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)
    def _database(exc):
        app.logger.warning("database unavailable: %s", exc)
        _rollback()
        return render_problem(problems.unavailable())

    @app.errorhandler(Exception)
    def _unexpected(exc):
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        _rollback()
        return render_problem(problems.internal())

    # Registered after Flask-SQLAlchemy's own teardown, so it runs first (Flask runs them in
    # reverse): by then the answer is made, and a connection that died since (a restarted or
    # failed-over database) makes the session's closing ROLLBACK raise, which would escape the
    # app and reach the device as a bare 500, even for a submission already committed.
    app.teardown_appcontext(_close_session)

    @app.after_request
    def _headers(response):
        response.headers.setdefault("Date", http_date(utcnow()))
        if request.method in ("GET", "HEAD"):
            response.headers.setdefault("Cache-Control", "private, no-cache")
            response.headers.setdefault("Vary", "Accept-Encoding, Origin")
        else:
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("Vary", "*")
        response.headers["X-Content-Type-Options"] = "nosniff"
        if getattr(g, "openrosa", False):
            response.headers["X-OpenRosa-Version"] = OPENROSA_VERSION
            response.headers["X-OpenRosa-Accept-Content-Length"] = str(
                current_app.config["FIELDSYNC"]["MAX_SUBMISSION_BYTES"])
            response.headers["Content-Language"] = "en"
        return response


def _rollback():
    try:
        db.session.rollback()
    except Exception:  # the connection itself may be gone; the pool will replace it
        pass


def _close_session(exc=None):
    try:
        db.session.remove()
    except Exception as error:
        current_app.logger.warning("database connection lost before the session closed: %s", error)
        try:
            db.session.invalidate()  # discard the connection without talking to it again
        except Exception:
            pass
        db.session.registry.clear()


def public_base_url() -> str:
    """Where devices reach us: FIELDSYNC_BASE_URL, else this request's own scheme and host."""
    configured = current_app.config["FIELDSYNC"]["BASE_URL"]
    return configured or request.host_url.rstrip("/")


def content_disposition(filename: str, inline: bool) -> str:
    """A Content-Disposition value (RFC 6266) for a file called `filename`: `filename="…"`, an
    ASCII stand-in for old clients, then `filename*=UTF-8''…` (RFC 5987) with the exact name.
    No name can end the quoted string, add a parameter or break the header: control characters
    go, the stand-in keeps printable ASCII but `"`, `\\` and `%` (non-ASCII becomes `_`; `;` is
    harmless inside the quotes), and the encoded name keeps only RFC 5987's attr-chars."""
    from urllib.parse import quote  # here, so this helper stays one self-contained block

    name = "".join(c for c in filename if c >= " " and not "\x7f" <= c <= "\x9f") or "download"
    fallback = "".join(c if c <= "~" and c not in '"\\%' else "_" for c in name)
    encoded = quote(name, safe="!#$&+^`|", errors="replace")  # "-._~" and alphanumerics are always safe
    return f"{'inline' if inline else 'attachment'}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
