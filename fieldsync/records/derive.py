"""From one submission's values to the records it stands for. Pure functions.

`derive(xml_form_id, values)` returns None for forms that yield no records, or a dict
`{"table": …, "fields": {…}, "participants": [...]}`. Values come from
`formats.submission.field_values`; here they are typed (integers, ISO dates) and checked,
and anything unreadable becomes None rather than an error: a record is never refused here.
"""
from datetime import date

from .names import normalise_name, normalise_village


def as_int(value, low=0, high=10_000_000) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


def as_date(value) -> date | None:
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except (TypeError, ValueError):
        return None


def person_key(name_key: str, birth_year: int | None, village_key: str) -> str:
    return f"{name_key}|{birth_year or ''}|{village_key}"


def _seminar(values: dict) -> dict:
    village_key = normalise_village(values.get("village"))
    participants = []
    for position, row in enumerate(values.get("participant") or []):
        name = (row.get("full_name") or "").strip()
        if not name:
            continue
        name_key = normalise_name(name)
        birth_year = as_int(row.get("birth_year"), 1900, 2100)
        participants.append({
            "position": position, "full_name": name[:255], "name_key": name_key[:255],
            "sex": row.get("sex"), "birth_year": birth_year, "category": row.get("category"),
            "person_key": person_key(name_key, birth_year, village_key)[:600]})
    return {"table": "events", "participants": participants, "fields": {
        "event_date": as_date(values.get("event_date")), "event_type": values.get("event_type"),
        "region": values.get("region"), "rayon": values.get("rayon"),
        "village": (values.get("village") or None), "village_key": village_key[:255],
        "topic": values.get("topic"), "language": values.get("language"),
        "headcount_female": as_int(values.get("headcount_female")) or 0,
        "headcount_male": as_int(values.get("headcount_male")) or 0,
        "materials_distributed": as_int(values.get("materials_distributed")) or 0}}


def _assessment(values: dict) -> dict:
    return {"table": "assessments", "fields": {
        "interview_date": as_date(values.get("interview_date")), "region": values.get("region"),
        "rayon": values.get("rayon"), "village": values.get("village"), "consent": values.get("consent"),
        "respondent_sex": values.get("respondent_sex"),
        "respondent_age": as_int(values.get("respondent_age"), 0, 130),
        "household_size": as_int(values.get("household_size"), 0, 100),
        "members_abroad": as_int(values.get("members_abroad"), 0, 100),
        "plans_to_migrate": values.get("plans_to_migrate"),
        "knows_trafficking_risks": values.get("knows_trafficking_risks"),
        "knows_hotline": values.get("knows_hotline"), "priority_needs": values.get("priority_needs")}}


def _interview(values: dict) -> dict:
    # Deliberately without story and respondent_name: personal data stays in the submission.
    return {"table": "interviews", "fields": {
        "interview_date": as_date(values.get("interview_date")), "region": values.get("region"),
        "consent": values.get("consent"), "beneficiary_type": values.get("beneficiary_type"),
        "services_received": values.get("services_received"),
        "satisfaction": as_int(values.get("satisfaction"), 1, 5),
        "knowledge_gained": as_int(values.get("knowledge_gained"), 1, 5),
        "would_recommend": values.get("would_recommend"),
        "found_legal_work": values.get("found_legal_work")}}


def _service(values: dict) -> dict:
    code = (values.get("client_code") or "").strip().upper()
    return {"table": "services", "fields": {
        "service_date": as_date(values.get("service_date")), "channel": values.get("channel"),
        "service_type": values.get("service_type"), "client_sex": values.get("client_sex"),
        "client_age_group": values.get("client_age_group"),
        "client_is_victim": values.get("client_is_victim"), "client_code": code[:64] or None}}


DERIVERS = {"seminar_attendance": _seminar, "needs_assessment": _assessment,
            "beneficiary_interview": _interview, "consultation_log": _service}
TABLE_OF = {"seminar_attendance": "events", "needs_assessment": "assessments",
            "beneficiary_interview": "interviews", "consultation_log": "services"}


def derive(xml_form_id: str, values: dict) -> dict | None:
    deriver = DERIVERS.get(xml_form_id)
    return deriver(values) if deriver else None
