"""`GET /v1/projects/{pid}/grantees` and the project itself."""
from .. import problems
from ..auth import grantee_scope, require
from ..httpkit import current_actor
from ..models import iso
from .. import programme
from . import bp, schemas
from .openapi import documented


@bp.get("/v1/projects/<int:project_id>/grantees")
@documented("The grantees this user may see", response=schemas.Grantee, many=True)
def list_grantees(project_id: int):
    actor = current_actor()
    require(actor, "grantee.read", project_id=project_id)
    if programme.project(project_id) is None:
        raise problems.not_found()
    return [{"code": g.code, "name": g.name, "region": g.region_code, "createdAt": iso(g.created_at)}
            for g in programme.grantees(project_id, only_id=grantee_scope(actor))]
