"""Recording who did, saw or exported what. One call for every room: `record(action, actor, ...)`.

The row joins the caller's transaction, so an action and its audit entry commit together.
"""
import json

from .extensions import db
from .models import Audit


def record(action: str, actor=None, subject=None, details: dict | None = None) -> Audit:
    entry = Audit(action=action, details_json=json.dumps(details or {}, ensure_ascii=False, default=str))
    if actor is not None:
        entry.actor_user_id = getattr(actor, "user_id", None)
        entry.actor_app_user_id = getattr(actor, "app_user_id", None)
    if subject is not None:
        entry.subject_kind = type(subject).__tablename__
        entry.subject_id = subject.id
    db.session.add(entry)
    return entry
