"""The OpenRosa door: what ODK Collect talks to.

HTTP only: form list, form XML, manifest, media downloads (and submissions, in
`submissions.py`), with ODK Central's URL shapes. Every route exists twice: under
`/v1/key/{token}/…` for app users (the token in the device's server URL) and under `/v1/…`
for web users and scripts with a Bearer session. Parses the request, asks `auth` and the
domain rooms, renders with `formats.openrosa`. Never touches the database directly.
"""
from flask import Blueprint

bp = Blueprint("openrosa", __name__)

PREFIXES = ("/v1/key/<token>", "/v1")


def route(rule: str, **options):
    """Register a view under both prefixes."""
    def decorator(view):
        for prefix in PREFIXES:
            bp.add_url_rule(prefix + rule, view_func=view,
                            endpoint=f"{view.__name__}{'_key' if 'key' in prefix else ''}", **options)
        return view
    return decorator


from . import forms  # noqa: E402,F401  (registers the routes)
