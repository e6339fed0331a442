"""The dashboard: indicators per grantee and region for a period, against targets (being built)."""
from flask import render_template

from . import bp, nav
from .session import page

nav(10, "Dashboard", "web.dashboard", "indicator.read")


@bp.get("/")
@page("project.read")
def dashboard():
    return render_template("web/dashboard/index.html")
