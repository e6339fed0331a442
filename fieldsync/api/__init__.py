"""The REST door for web users and scripts: Central-shaped JSON under `/v1`.

HTTP only: parse the request, check the actor with `auth`, call the domain rooms, render JSON.
"""
from flask import Blueprint

bp = Blueprint("api", __name__)

from . import central, exports, health, indicators, odata, openapi, programme, sessions, submissions  # noqa: E402,F401  (registers the routes)
