"""Web users, app users (device tokens), sessions, roles and grantee scope.

Owns the `web_users`, `sessions` and `app_users` tables and the one policy function
`can(actor, action, thing)`. May use models, problems and the audit log; never HTTP.
"""
from .policy import Actor, can, grantee_scope, is_reviewer, require

__all__ = ["Actor", "can", "grantee_scope", "is_reviewer", "require"]
