"""The OpenRosa door: what ODK Collect talks to.

HTTP only: form list, form XML, manifest, media downloads (and submissions, in
`submissions.py`), with ODK Central's URL shapes. Every route exists twice: under
`/v1/key/{token}/…` for app users (the token in the device's server URL) and under `/v1/…`
for web users and scripts with a Bearer session. Parses the request, asks `auth` and the
domain rooms, renders with `formats.openrosa`. Never touches the database directly.
"""
from flask import Blueprint

from .. import problems
from ..httpkit import current_actor
from ..programme import project as find_project

bp = Blueprint("openrosa", __name__)
XML = "text/xml; charset=utf-8"

PREFIXES = ("/v1/key/<token>", "/v1")


def route(rule: str, **options):
    """Register a view under both prefixes."""
    def decorator(view):
        for prefix in PREFIXES:
            bp.add_url_rule(prefix + rule, view_func=view,
                            endpoint=f"{view.__name__}{'_key' if 'key' in prefix else ''}", **options)
        return view
    return decorator


def actor_for_project(project_id: int):
    """The authenticated actor, for a project that exists (401, 403 or 404 otherwise)."""
    actor = current_actor()
    if actor is None:
        raise problems.auth_failed()
    if find_project(project_id) is None:
        raise problems.not_found()
    return actor


from . import forms, submissions  # noqa: E402,F401  (registers the routes)
