"""Who may do what: roles, actions and grantee scope, decided in this one place.

`can(actor, action, thing)` answers for every door (devices, API, web). Grantee scope is least
privilege: a `grantee_staff` user or a grantee-bound app user acts only on its own grantee's
things; a thing "belongs" to a grantee through its `grantee_id`.
"""
from dataclasses import dataclass

from .. import problems

ROLE_ACTIONS = {
    "admin": {"project.read", "form.list", "form.read", "form.manage", "submission.create",
              "submission.read", "submission.update", "submission.delete", "personal.read",
              "grantee.read", "grantee.manage", "app_user.manage", "user.manage", "indicator.read",
              "export", "audit.read", "target.manage", "duplicate.resolve"},
    "coordinator": {"project.read", "form.list", "form.read", "submission.create", "submission.read",
                    "submission.update", "submission.delete", "personal.read", "grantee.read",
                    "indicator.read", "export", "audit.read", "target.manage", "duplicate.resolve"},
    "grantee_staff": {"project.read", "form.list", "form.read", "submission.create",
                      "submission.read", "grantee.read", "indicator.read", "export"},
    "evaluator": {"project.read", "form.list", "form.read", "submission.create", "submission.read",
                  "personal.read", "grantee.read", "indicator.read"},
    "viewer": {"project.read", "form.list", "grantee.read", "indicator.read"},
    # Devices: list and download open forms, send submissions. Nothing else.
    "app_user": {"form.list", "form.read", "submission.create"},
}


@dataclass(frozen=True)
class Actor:
    kind: str  # "user" | "app_user"
    id: int
    role: str
    display_name: str
    grantee_id: int | None = None  # None: all grantees
    project_id: int | None = None  # app users belong to one project
    session_id: int | None = None

    @property
    def user_id(self):
        return self.id if self.kind == "user" else None

    @property
    def app_user_id(self):
        return self.id if self.kind == "app_user" else None


def _belongs_to_grantees(thing) -> bool:
    """Things that are some grantee's (submissions, devices, targets, grantees), as opposed to
    things of the whole programme (forms), which scope does not narrow."""
    return thing is not None and (hasattr(thing, "grantee_id") or getattr(thing, "__tablename__", None) == "grantees")


def _grantee_of(thing) -> int | None:
    """The grantee a thing belongs to: its `grantee_id`, or itself when it is a grantee."""
    if thing is None:
        return None
    if getattr(thing, "__tablename__", None) == "grantees":
        return thing.id
    return getattr(thing, "grantee_id", None)


def grantee_scope(actor: Actor) -> int | None:
    """The one grantee this actor is confined to, or None for all."""
    if actor.role in ("grantee_staff", "app_user"):
        return actor.grantee_id
    return None


def can(actor: Actor | None, action: str, thing=None, project_id: int | None = None) -> bool:
    if actor is None or action not in ROLE_ACTIONS.get(actor.role, ()):
        return False
    if actor.project_id is not None and project_id is not None and actor.project_id != project_id:
        return False
    if actor.role == "grantee_staff" and actor.grantee_id is None:
        return False  # misconfigured: a grantee_staff user with no grantee sees nothing
    scope = grantee_scope(actor)
    if scope is not None and _belongs_to_grantees(thing) and _grantee_of(thing) != scope:
        return False  # another grantee's thing, or one of no grantee at all: not theirs
    return True


def require(actor: Actor | None, action: str, thing=None, project_id: int | None = None) -> None:
    if actor is None:
        raise problems.auth_failed()
    if not can(actor, action, thing, project_id):
        raise problems.forbidden()
