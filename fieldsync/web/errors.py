"""Problems met by a person in the browser become a page in their language, never JSON or a
traceback; a page that needs a sign-in sends them to the sign-in form instead."""
from flask import current_app, g, redirect, render_template, request, url_for

from .. import problems
from . import i18n, session
from .i18n import N_

# Plain words for the problems people meet in pages (the catalogue's messages are for scripts).
PLAIN = {
    "400": N_("Something in the request was not right. Go back and check what you entered."),
    "401": N_("Please sign in again."),
    "403": N_("You do not have access to this page."),
    "404": N_("This page does not exist, or it has been removed."),
    "405": N_("This page cannot be used that way."),
    "409": N_("This conflicts with what is already there."),
    "413": N_("The file is too large."),
    "429": N_("Too many attempts. Wait a few minutes and try again."),
    "503": N_("The server is busy. Try again in a moment."),
    "507": N_("The server's storage is full. Tell your administrator."),
}
UNEXPECTED = N_("Something went wrong. It has been logged; try again.")


def is_page_request() -> bool:
    """Pages: the web blueprint, and any unknown address a browser asks for outside the APIs."""
    if request.blueprint == "web":
        return True
    path = request.path
    machine = path.startswith(("/v1/", "/healthz", "/openapi.json", "/static/"))
    return not machine and request.accept_mimetypes.accept_html


def render(problem: problems.Problem):
    if "language" not in g:
        try:
            session.load_actor()
        except Exception:  # the database may be the very problem; show the page in English
            g.actor, g.language = None, i18n.DEFAULT_LANGUAGE
    if problem.status == 401 and request.method == "GET":
        return redirect(url_for("web.signin", next=request.full_path.rstrip("?")))
    status = str(problem.status)
    if problem.code == problems.csrf_failed.code:
        message = i18n.gettext("This form has expired. Reload the page and try again.")
    else:
        message = i18n.gettext(PLAIN.get(status, UNEXPECTED))
    body = render_template("web/error.html", status=problem.status, message=message, code=problem.code)
    response = current_app.response_class(body, status=problem.status, content_type="text/html; charset=utf-8")
    return session.finish_response(response)


def init_app(app) -> None:
    app.extensions["fieldsync.problem_page"] = (is_page_request, render)
