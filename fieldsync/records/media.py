"""Form media generated from synced data, served to devices like any other form file.

`events.csv` lets an evaluator pick, in `beneficiary_interview`, the event a beneficiary
attended, from the seminars trainers have synced. A grantee-bound device gets only its
grantee's events. The bytes are a pure function of the records, so the manifest's md5 (and so
Collect's decision to download again) changes only when the list really changes.
"""
import csv
import io

from sqlalchemy import select

from ..extensions import db
from ..models import Event, Grantee

EVENT_TYPES = {"seminar": "Seminar", "training": "Training", "tot": "Training of trainers",
               "roundtable": "Round table", "public_hearing": "Public hearing", "public_meeting": "Public meeting",
               "campaign": "Campaign", "performance": "Performance"}
MAX_EVENTS = 5000  # a phone's select list has to stay usable


def events_csv(project_id: int, grantee_id: int | None) -> bytes:
    query = (select(Event, Grantee.code).join(Grantee, Grantee.id == Event.grantee_id)
             .where(Grantee.project_id == project_id, Event.counted.is_(True), Event.merged_into.is_(None))
             .order_by(Event.event_date.desc(), Event.instance_id).limit(MAX_EVENTS))
    if grantee_id is not None:
        query = query.where(Event.grantee_id == grantee_id)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "label", "grantee", "event_date", "village", "event_type"])
    for event, code in db.session.execute(query):
        day = event.event_date.isoformat() if event.event_date else ""
        kind = EVENT_TYPES.get(event.event_type, event.event_type or "")
        label = " · ".join(part for part in (day, kind, event.village or "") if part)
        writer.writerow([event.instance_id, label, code, day, event.village or "", event.event_type or ""])
    return out.getvalue().encode("utf-8")


GENERATED = {"events.csv": events_csv}
