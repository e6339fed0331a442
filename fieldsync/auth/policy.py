"""Who may do what: roles, actions and grantee scope, decided in this one place.

`can(actor, action, thing)` answers for every door (devices, API, web). Grantee scope is least
privilege: a `grantee_staff` user or a grantee-bound app user acts only on its own grantee's
things; a thing "belongs" to a grantee through its `grantee_id`.

Verbs on submissions:
- `submission.create`: send a new one (for a grantee in scope: `can(actor, "submission.create", grantee)`).
- `submission.edit`: replace its current version (`meta/deprecatedID`). Within grantee scope; an
  actor who is neither a reviewer nor bound to a grantee (an evaluator, an evaluator's device)
  edits only what it sent itself.
- `submission.update`: review it (state, grantee). A reviewer's decision is not undone by an
  edit from someone who is not a reviewer (see `ingest`).
- `export`: bulk feeds (CSV, csv.zip, OData, background exports); `submission.read`: one by one
  and the lists.
"""
from dataclasses import dataclass

from .. import problems

ROLE_ACTIONS = {
    "admin": {"project.read", "form.list", "form.read", "form.manage", "submission.create",
              "submission.edit", "submission.read", "submission.update", "submission.delete", "personal.read",
              "grantee.read", "grantee.manage", "app_user.manage", "user.manage", "indicator.read",
              "export", "audit.read", "target.manage", "duplicate.resolve"},
    "coordinator": {"project.read", "form.list", "form.read", "submission.create", "submission.edit",
                    "submission.read",
                    "submission.update", "submission.delete", "personal.read", "grantee.read",
                    "indicator.read", "export", "audit.read", "target.manage", "duplicate.resolve"},
    "grantee_staff": {"project.read", "form.list", "form.read", "submission.create", "submission.edit",
                      "submission.read", "grantee.read", "indicator.read", "export"},
    "evaluator": {"project.read", "form.list", "form.read", "submission.create", "submission.edit",
                  "submission.read",
                  "personal.read", "grantee.read", "indicator.read"},
    "viewer": {"project.read", "form.list", "grantee.read", "indicator.read"},
    # Devices: list and download open forms, send submissions. Nothing else.
    "app_user": {"form.list", "form.read", "submission.create", "submission.edit"},
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
    if action == "submission.edit" and scope is None and not can(actor, "submission.update", thing):
        # Not bound to a grantee and not a reviewer: unbounded scope is for recording, not for
        # rewriting what others recorded.
        return thing is not None and _sent_by(actor, thing)
    return True


def is_reviewer(actor: Actor | None, submission) -> bool:
    """Whether this actor's word on a submission is a coordinator's: review states and holds."""
    return can(actor, "submission.update", submission)


def _sent_by(actor: Actor, submission) -> bool:
    if actor.kind == "app_user":
        return getattr(submission, "app_user_id", None) == actor.id
    return getattr(submission, "user_id", None) == actor.id and getattr(submission, "app_user_id", None) is None


def require(actor: Actor | None, action: str, thing=None, project_id: int | None = None) -> None:
    if actor is None:
        raise problems.auth_failed()
    if not can(actor, action, thing, project_id):
        raise problems.forbidden()
