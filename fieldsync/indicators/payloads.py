"""What each indicator source contributes now, read from its records.

A *source* is a unit of records whose contributions are computed together: one grantee's
events of one day (events of a day can merge, so they are grouped together) or one
submission of another form. Its *payload* (see `contributions`) is what `engine` compares
with the one it last applied and `reconcile` sums. Reads the record tables (through
`records.store`); writes nothing.
"""
from ..extensions import db
from ..models import Assessment, Interview, Service
from ..records import store
from .contributions import RecordContributions, compact, contributions
from .definitions import Definitions

# Services first: most submissions are consultations, and a source's lookup stops at its table.
SUB_TABLES = (("service", Service, "service_date"), ("assessment", Assessment, "interview_date"),
              ("interview", Interview, "interview_date"))


def day_payload(defs: Definitions, grantee_id: int, day, grouped: dict) -> list[list]:
    """The contributions of one grantee's events of one day, grouped per scope by `store`."""
    payload = []
    for scope, groups in grouped.items():
        rows = {"event": [], "attendance": []}
        for group, attendance, members in groups:
            first = members[0]
            rows["event"].append({
                "date": day, "event_type": group.canonical.event_type, "topic": group.canonical.topic,
                "region": first.region, "rayon": first.rayon,
                # The same event seen from two devices: people present once, not twice.
                "headcount_female": max(m.headcount_female for m in members),
                "headcount_male": max(m.headcount_male for m in members),
                "materials_distributed": max(m.materials_distributed for m in members),
                "registered": len(attendance)})
            rows["attendance"].extend(
                {"date": day, "event_type": group.canonical.event_type, "sex": p.sex,
                 "category": p.category, "person": person}
                for person, p in sorted(attendance.items()))
        payload += contributions(defs, rows, grantee_id, scope)
    return compact(payload)


def record_parts(computer: RecordContributions, record, date_field: str):
    """(key, shared, own) of one assessment, interview or service record (a mapping), as
    `RecordContributions.of` gives them, or None for a record that counts nowhere."""
    if record["grantee_id"] is None or not record["counted"]:
        return None
    return computer.of({**record, "date": record[date_field]}, record["grantee_id"],
                       ("all", "approved") if record["approved"] else ("all",))


def record_payload(defs: Definitions, source: str, record, date_field: str) -> list[list]:
    """The contributions of one assessment, interview or service record (a mapping)."""
    parts = record_parts(RecordContributions(defs, source), record, date_field)
    return [] if parts is None else RecordContributions.merged(parts[1], parts[2])


def source_payload(key: str, defs: Definitions) -> list[list]:
    """What one source contributes now, read from its records. Entries are sorted (lists of
    str and numbers in fixed positions compare element by element), so equal payloads are
    equal lists."""
    parsed = store.parse_source(key)
    if parsed[0] == "ev":
        _, grantee_id, day = parsed
        if grantee_id is None:
            return []
        return day_payload(defs, grantee_id, day, store.bucket(grantee_id, day))
    submission_id = parsed[1]
    for source, model, date_field in SUB_TABLES:
        record = db.session.execute(store.record_of(model.__table__), {"submission_id": submission_id}).mappings().first()
        if record is not None:
            return record_payload(defs, source, record, date_field)  # a submission's records are in one table
    return []
