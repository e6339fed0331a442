"""Signing in and out, and choosing the interface language."""
from flask import current_app, g, redirect, render_template, request, url_for

from .. import problems
from ..auth import accounts
from . import bp, i18n, session


@bp.get("/login")
def signin():
    if g.actor is not None:
        return redirect(session.safe_next(request.args.get("next")))
    return render_template("web/signin.html", next=request.args.get("next", ""), error=None, email="")


@bp.post("/login")
def signin_submit():
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    target = request.form.get("next", "")
    try:
        token, _ = accounts.start_session(email, password, current_app.config["FIELDSYNC"]["SESSION_TTL_HOURS"],
                                          address=request.remote_addr or "-", kind="web")
    except problems.Problem as problem:
        if problem.status == 429:
            error, status = i18n.gettext("Too many failed attempts. Wait 15 minutes and try again."), 429
        else:
            error, status = i18n.gettext("Wrong e-mail or password."), 401
        return render_template("web/signin.html", next=target, error=error, email=email), status
    response = redirect(session.safe_next(target))
    session.set_session_cookie(response, token)
    return response


@bp.post("/logout")
def signout():
    token = request.cookies.get(session.SESSION_COOKIE)
    if token and g.actor is not None:
        accounts.end_session_by_token(token)
    response = redirect(url_for("web.signin"))
    session.clear_session_cookie(response)
    return response


@bp.post("/language")
def choose_language():
    chosen = request.form.get("language")
    if chosen not in i18n.LANGUAGES:
        raise problems.unexpected_value(field="language", value=chosen, reason=", ".join(i18n.LANGUAGES))
    if g.actor is not None:
        accounts.set_language(g.actor.id, chosen)
    response = redirect(session.safe_next(request.form.get("next")))
    response.set_cookie(i18n.LANGUAGE_COOKIE, chosen, max_age=365 * 86400, samesite="Lax",
                        secure=session.cookie_secure(), path="/")
    return response
