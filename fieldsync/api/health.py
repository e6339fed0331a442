"""`GET /healthz`: is the process up and can it reach its database?"""
from sqlalchemy import text

from ..extensions import db
from . import bp, schemas
from .openapi import documented


@bp.get("/healthz")
@documented("Is the server up, and its database reachable?", response=schemas.Health, errors=("503",))
def healthz():
    db.session.execute(text("SELECT 1"))
    return {"status": "ok", "database": db.engine.dialect.name}
