"""Records, record-level dedup and indicator values, through the real app: submissions go in
over OpenRosa as a phone sends them, values come out of the DHIS2-shaped API."""
import pytest
from sqlalchemy import select

from fieldsync.extensions import db
from fieldsync.models import DuplicateCandidate, Event, ReconcileRun

from collect import SEMINAR, instance_id_of, instance_xml, post
from conftest import backend

BASE = "/v1/projects/1"


@pytest.fixture
def phones(client, make_app_user):
    chinek = make_app_user(name="chinek 1", grantee="chinek")
    second = make_app_user(name="chinek 2", grantee="chinek")
    tomo = make_app_user(name="tomo 1", grantee="tomo")
    forms = {f: client.get(f"/v1/key/{chinek['token']}/projects/1/forms/{f}.xml").data
             for f in ("seminar_attendance", "consultation_log", "needs_assessment", "beneficiary_interview")}
    return {"chinek": chinek["token"], "chinek2": second["token"], "tomo": tomo["token"], "forms": forms}


@pytest.fixture
def coordinator(make_user):
    return make_user("coordinator")


def send(client, phones, phone, form, values, **kw):
    xml = instance_xml(phones["forms"][form], values, **kw)
    response = post(client, f"/v1/key/{phones[phone]}/projects/1/submission", xml)
    assert response.status_code == 201, response.data
    return xml


def seminar(**changes):
    return {**SEMINAR, **changes}


def people(*names, year=2008):
    return [{"full_name": n, "sex": "female" if n.split()[0].endswith(("a", "l")) else "male",
             "birth_year": year, "category": "student"} for n in names]


def consultation(code="AIAS1998", day="2026-10-02"):
    return {"grantee": "chinek", "service_date": day, "channel": "hotline", "service_type": "legal",
            "client_sex": "female", "client_age_group": "18_35", "client_is_victim": "yes", "client_code": code}


def values(client, headers, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    body = client.get(f"{BASE}/indicator-values?{query}", headers=headers).get_json()
    return {(v["dataElement"], v["orgUnit"], v["period"], v["categoryOptionCombo"]): v["value"]
            for v in body["dataValues"]}


def value(client, headers, indicator, org="chinek", coc="total", period=""):
    got = values(client, headers, dataElement=indicator, orgUnit=org, period=period)
    return got.get((indicator, org, period, coc), "0")


def test_a_seminar_counts_at_once(client, phones, coordinator):
    send(client, phones, "chinek", "seminar_attendance",
         seminar(headcount_female=10, headcount_male=5, materials_distributed=40))
    assert value(client, coordinator, "events_held") == "1"
    assert value(client, coordinator, "events_held", coc="seminar") == "1"
    assert value(client, coordinator, "participants_reached") == "17"  # 2 registered + 15 present
    assert value(client, coordinator, "participants_reached", coc="female") == "11"
    assert value(client, coordinator, "materials_distributed") == "40"
    assert value(client, coordinator, "unique_participants") == "2"
    # DHIS2 periods: the seminar of 2026-11-20 is in 2026, 2026Q4 and 202611, not 202610.
    for period in ("2026", "2026Q4", "202611"):
        assert value(client, coordinator, "events_held", period=period) == "1"
    assert value(client, coordinator, "events_held", period="202610") == "0"
    # Regions are the sum of their grantees.
    assert value(client, coordinator, "events_held", org="chuy") == "1"
    assert value(client, coordinator, "events_held", org="issyk_kul") == "0"


def test_same_seminar_from_two_phones_is_one_event_with_a_trace(app, client, phones, coordinator):
    register = people("Aigul Asanova", "Bakyt Osmonov", "Asel Sadykova", "Nurlan Tokonov")
    send(client, phones, "chinek", "seminar_attendance", seminar(participant=register))
    # The co-trainer's phone: same seminar, register typed in another order and spelling.
    other = people("Асанова Айгүл", "OSMONOV Bakyt", "Sadykova Asel", "Kanat Bekov")
    send(client, phones, "chinek2", "seminar_attendance", seminar(participant=other))
    assert value(client, coordinator, "events_held") == "1"
    assert value(client, coordinator, "participants_reached") == "5"  # the union of both registers
    with app.app_context():
        merged = db.session.scalar(select(Event).where(Event.merged_into.is_not(None)))
        assert "3 of the smaller register's 4 participants are the same persons" in merged.merge_reason


@pytest.mark.parametrize("change", [
    {"village": "Tokmok"}, {"topic": "employment"}, {"event_type": "training"}, {"event_date": "2026-11-21"},
])
def test_different_events_are_not_merged(client, phones, coordinator, change):
    send(client, phones, "chinek", "seminar_attendance", seminar())
    send(client, phones, "chinek2", "seminar_attendance", seminar(**change))
    assert value(client, coordinator, "events_held") == "2"


def test_registers_overlapping_less_than_half_are_two_events_and_a_candidate(app, client, phones, coordinator):
    send(client, phones, "chinek", "seminar_attendance", seminar(participant=people("A One", "B Two", "C Three", "D Four")))
    send(client, phones, "chinek2", "seminar_attendance", seminar(participant=people("A One", "E Five", "F Six", "G Seven")))
    assert value(client, coordinator, "events_held") == "2"
    candidates = client.get(f"{BASE}/duplicates", headers=coordinator).get_json()
    events = [c for c in candidates if c["kind"] == "event"]
    assert len(events) == 1 and "1 participant(s) in common" in events[0]["reason"]


def test_headcount_only_events_merge_only_with_equal_totals(client, phones, coordinator):
    play = seminar(event_type="performance", participant=[], register_participants="no",
                   headcount_female=220, headcount_male=180)
    send(client, phones, "chinek", "seminar_attendance", play)
    send(client, phones, "chinek2", "seminar_attendance", play)
    assert value(client, coordinator, "events_held") == "1"
    assert value(client, coordinator, "participants_reached") == "400"
    send(client, phones, "chinek", "seminar_attendance", {**play, "headcount_male": 181})
    assert value(client, coordinator, "events_held") == "2"


def test_coordinator_merges_a_candidate_and_the_decision_sticks(app, client, phones, coordinator, cli):
    send(client, phones, "chinek", "seminar_attendance", seminar(participant=people("A One", "B Two", "C Three", "D Four")))
    send(client, phones, "chinek2", "seminar_attendance", seminar(participant=people("A One", "E Five", "F Six", "G Seven")))
    candidate = next(c for c in client.get(f"{BASE}/duplicates", headers=coordinator).get_json() if c["kind"] == "event")
    response = client.post(f"{BASE}/duplicates/{candidate['id']}", json={"decision": "merge"}, headers=coordinator)
    assert response.status_code == 200 and response.get_json()["status"] == "merged"
    assert value(client, coordinator, "events_held") == "1"
    assert value(client, coordinator, "participants_reached") == "7"
    result = cli("indicators", "recompute", "--rebuild-records")
    assert "drift from the incremental values: 0" in result.output
    assert value(client, coordinator, "events_held") == "1"  # still merged after a full rebuild
    assert client.get(f"{BASE}/duplicates", headers=coordinator).get_json() == []
    # The same decision again is harmless; reversing it is refused, and nothing moves.
    again = client.post(f"{BASE}/duplicates/{candidate['id']}", json={"decision": "merge"}, headers=coordinator)
    assert again.status_code == 200 and again.get_json()["status"] == "merged"
    other = client.post(f"{BASE}/duplicates/{candidate['id']}", json={"decision": "not_duplicate"}, headers=coordinator)
    assert other.status_code == 409 and other.get_json()["code"] == 409.102
    assert value(client, coordinator, "events_held") == "1"


def test_not_a_duplicate_overrides_the_automatic_rule(app, client, phones, coordinator, cli):
    play = seminar(event_type="performance", participant=[], register_participants="no",
                   headcount_female=10, headcount_male=10)
    first = send(client, phones, "chinek", "seminar_attendance", play)
    second = send(client, phones, "chinek2", "seminar_attendance", play)
    assert value(client, coordinator, "events_held") == "1"
    # Two plays that morning, really: the coordinator says so through a decision on the pair.
    with app.app_context():
        a, b = sorted([instance_id_of(first), instance_id_of(second)])
        db.session.add(DuplicateCandidate(kind="event", key_a=a, key_b=b, grantee_id=None, score=100,
                                          reason="auto-merged", status="open"))
        db.session.commit()
        candidate_id = db.session.scalar(select(DuplicateCandidate.id).where(DuplicateCandidate.key_a == a))
    response = client.post(f"{BASE}/duplicates/{candidate_id}", json={"decision": "not_duplicate"}, headers=coordinator)
    assert response.status_code == 200
    assert value(client, coordinator, "events_held") == "2"
    cli("indicators", "recompute", "--rebuild-records")
    assert value(client, coordinator, "events_held") == "2"


def test_the_same_person_in_two_seminars_is_one_unique_participant(client, phones, coordinator):
    send(client, phones, "chinek", "seminar_attendance", seminar(participant=people("Aigul Asanova", "Bakyt Osmonov")))
    send(client, phones, "chinek", "seminar_attendance", seminar(
        event_date="2026-11-25", topic="employment", participant=people("АСАНОВА Айгүл", "Bakyt Osmonov")))
    assert value(client, coordinator, "participants_reached") == "4"
    assert value(client, coordinator, "unique_participants") == "2"
    # Another birth year is another person; another village too.
    send(client, phones, "chinek", "seminar_attendance", seminar(
        event_date="2026-11-26", participant=people("Aigul Asanova", year=2009)))
    send(client, phones, "chinek", "seminar_attendance", seminar(
        event_date="2026-11-27", village="Tokmok", participant=people("Aigul Asanova")))
    assert value(client, coordinator, "unique_participants") == "4"


def test_fuzzy_names_become_person_candidates_and_a_merge_counts_once(client, phones, coordinator, cli):
    send(client, phones, "chinek", "seminar_attendance", seminar(participant=people("Aigul Asanova")))
    send(client, phones, "chinek", "seminar_attendance", seminar(
        event_date="2026-11-25", topic="employment", participant=people("Aigyl Asanova")))
    assert value(client, coordinator, "unique_participants") == "2"
    person = next(c for c in client.get(f"{BASE}/duplicates", headers=coordinator).get_json() if c["kind"] == "person")
    assert {person["a"]["name"], person["b"]["name"]} == {"Aigul Asanova", "Aigyl Asanova"}
    client.post(f"{BASE}/duplicates/{person['id']}", json={"decision": "merge"}, headers=coordinator)
    assert value(client, coordinator, "unique_participants") == "1"
    # The full recompute reads the merged person's canonical key its own way (not joined).
    assert "drift from the incremental values: 0" in cli("indicators", "recompute").output
    assert value(client, coordinator, "unique_participants") == "1"


def test_rejecting_deleting_and_editing_move_the_values(client, phones, coordinator):
    xml = send(client, phones, "chinek", "seminar_attendance", seminar(headcount_male=8))
    iid = instance_id_of(xml)
    url = f"{BASE}/forms/seminar_attendance/submissions/{iid}"
    assert value(client, coordinator, "participants_reached") == "10"
    client.patch(url, json={"reviewState": "rejected"}, headers=coordinator)
    assert value(client, coordinator, "events_held") == "0"
    client.patch(url, json={"reviewState": "approved"}, headers=coordinator)
    assert value(client, coordinator, "events_held") == "1"
    assert values(client, coordinator, dataElement="events_held", orgUnit="chinek", approvedOnly="true")[
        ("events_held", "chinek", "", "total")] == "1"
    edited = instance_xml(phones["forms"]["seminar_attendance"], seminar(headcount_male=20), deprecated_id=iid)
    assert post(client, f"/v1/key/{phones['chinek']}/projects/1/submission", edited).status_code == 201
    assert value(client, coordinator, "participants_reached") == "22"
    client.delete(url, headers=coordinator)
    assert value(client, coordinator, "participants_reached") == "0"
    client.post(url + "/restore", headers=coordinator)
    assert value(client, coordinator, "participants_reached") == "22"


def test_approved_only_counts_only_approved(client, phones, coordinator):
    send(client, phones, "chinek", "seminar_attendance", seminar())
    assert value(client, coordinator, "events_held") == "1"
    assert values(client, coordinator, dataElement="events_held", orgUnit="chinek", approvedOnly="true") == {}


def test_consultations_victims_assessments_interviews(client, phones, coordinator, make_app_user):
    def consult(code, victim, channel="hotline", service_type="legal", day="2026-10-02"):
        send(client, phones, "chinek", "consultation_log", {
            "grantee": "chinek", "service_date": day, "channel": channel, "service_type": service_type,
            "client_sex": "female", "client_age_group": "18_35", "client_is_victim": victim, "client_code": code})
    consult("AIAS1998", "yes")
    consult("aias1998", "yes", channel="in_person", service_type="psychological", day="2026-11-03")
    consult("BEKA2001", "no", channel="in_person")
    assert value(client, coordinator, "consultations_provided") == "3"
    assert value(client, coordinator, "consultations_provided", coc="hotline") == "1"
    assert value(client, coordinator, "services_provided", coc="legal") == "2"
    assert value(client, coordinator, "victims_assisted") == "1"  # one client, two visits
    assert value(client, coordinator, "victims_assisted", period="202610") == "1"
    assert value(client, coordinator, "victims_assisted", period="202611") == "1"
    assert value(client, coordinator, "victims_assisted", period="2026Q4") == "1"
    assert values(client, coordinator, dataElement="services_provided", orgUnit="chinek").get(
        ("services_provided", "chinek", "", "total")) is None  # services_provided has no total
    send(client, phones, "chinek", "needs_assessment", {
        "grantee": "chinek", "region": "chuy", "village": "Kant", "interview_date": "2026-10-10", "consent": "yes",
        "respondent_sex": "female", "respondent_age": 40, "household_size": 5, "members_abroad": 1})
    send(client, phones, "chinek", "needs_assessment", {
        "grantee": "chinek", "region": "chuy", "village": "Kant", "interview_date": "2026-10-10", "consent": "no"})
    assert value(client, coordinator, "needs_assessments") == "1"
    evaluator = make_app_user(name="evaluator", evaluator=True)
    for satisfaction in (4, 5):
        xml = instance_xml(phones["forms"]["beneficiary_interview"], {
            "grantee": "tomo", "region": "issyk_kul", "village": "Karakol", "interview_date": "2026-10-20",
            "consent": "yes", "beneficiary_type": "victim", "satisfaction": satisfaction, "knowledge_gained": 4})
        assert post(client, f"/v1/key/{evaluator['token']}/projects/1/submission", xml).status_code == 201
    assert value(client, coordinator, "interviews_conducted", org="tomo") == "2"
    assert value(client, coordinator, "satisfaction_mean", org="tomo") == "4.50"


def test_grantee_staff_see_only_their_indicators(client, phones, make_user):
    send(client, phones, "chinek", "seminar_attendance", seminar())
    send(client, phones, "tomo", "seminar_attendance", seminar(grantee="tomo", region="issyk_kul"))
    staff = make_user("grantee_staff", grantee="tomo")
    got = values(client, staff, dataElement="events_held")
    assert set(k[1] for k in got) == {"tomo"}
    # Another grantee's code is, to grantee staff, a code that does not exist.
    theirs = client.get(f"{BASE}/indicator-values?orgUnit=chinek", headers=staff).get_json()
    nobodys = client.get(f"{BASE}/indicator-values?orgUnit=nosuch", headers=staff).get_json()
    assert theirs["code"] == nobodys["code"] == 400.8
    assert theirs["message"].replace("chinek", "X") == nobodys["message"].replace("nosuch", "X")
    assert client.get(f"{BASE}/indicator-values?orgUnit=chuy", headers=staff).status_code == 403
    assert client.get(f"{BASE}/duplicates", headers=staff).status_code == 403


def test_targets_from_csv_and_api_with_percent_achieved(client, phones, coordinator, cli, tmp_path):
    send(client, phones, "chinek", "seminar_attendance", seminar())
    targets = tmp_path / "targets.csv"
    targets.write_text("grantee,indicator,period,value\nchinek,events_held,,4\nchinek,events_held,2026,2\n")
    assert cli("targets", "load", str(targets)).exit_code == 0
    body = client.get(f"{BASE}/indicator-values?dataElement=events_held&orgUnit=chinek&targets=true",
                      headers=coordinator).get_json()["dataValues"]
    total = next(v for v in body if v["categoryOptionCombo"] == "total")
    assert total["target"] == "4" and total["percentAchieved"] == 25.0
    response = client.put(f"{BASE}/targets", json={"grantee": "chinek", "indicator": "events_held",
                                                   "period": "2026", "value": 1}, headers=coordinator)
    assert response.status_code == 200
    yearly = client.get(f"{BASE}/indicator-values?dataElement=events_held&orgUnit=chinek&period=2026&targets=true",
                        headers=coordinator).get_json()["dataValues"]
    assert next(v for v in yearly if v["categoryOptionCombo"] == "total")["percentAchieved"] == 100.0
    bad = tmp_path / "bad.csv"
    bad.write_text("grantee,indicator,period,value\nchinek,events_held,,3\nnope,events_held,,1\n")
    result = cli("targets", "load", str(bad))
    assert result.exit_code != 0 and "line 3" in result.output
    assert client.get(f"{BASE}/targets", headers=coordinator).get_json()[0]["value"] == 4  # all or nothing
    assert client.put(f"{BASE}/targets", json={"grantee": "chinek", "indicator": "nope", "value": 1},
                      headers=coordinator).status_code == 400


def test_csv_and_xlsx_exports_of_the_same_table(client, phones, coordinator):
    send(client, phones, "chinek", "seminar_attendance", seminar())
    csv_body = client.get(f"{BASE}/indicator-values.csv?dataElement=events_held", headers=coordinator)
    assert csv_body.status_code == 200 and csv_body.headers["Content-Type"].startswith("text/csv")
    lines = csv_body.data.decode().splitlines()
    assert lines[0].startswith("dataElement,period,orgUnit,categoryOptionCombo,value")
    assert "events_held,,chinek,total,1,," in lines
    xlsx = client.get(f"{BASE}/indicator-values.xlsx?dataElement=events_held", headers=coordinator)
    from io import BytesIO
    from openpyxl import load_workbook
    sheet = load_workbook(BytesIO(xlsx.data)).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert ["events_held", None, "chinek", "total", "1", None, None] in rows


def test_bad_queries_are_400(client, coordinator):
    assert client.get(f"{BASE}/indicator-values?period=2004Q5", headers=coordinator).status_code == 400
    assert client.get(f"{BASE}/indicator-values?period=200413", headers=coordinator).status_code == 400
    assert client.get(f"{BASE}/indicator-values?dataElement=nope", headers=coordinator).status_code == 400
    assert client.get(f"{BASE}/indicator-values?orgUnit=nowhere", headers=coordinator).status_code == 400
    assert client.get(f"{BASE}/indicator-values").status_code == 401


def test_recompute_reports_zero_drift_and_is_recorded(app, client, phones, cli):
    send(client, phones, "chinek", "seminar_attendance", seminar())
    result = cli("indicators", "recompute")
    assert result.exit_code == 0 and "drift from the incremental values: 0 cell(s)" in result.output
    with app.app_context():
        run = db.session.scalar(select(ReconcileRun))
        assert run.drift == 0 and run.cells > 0 and run.finished_at is not None


def test_events_csv_is_generated_per_grantee_and_hash_follows_content(client, phones, make_app_user):
    from lxml import etree
    send(client, phones, "chinek", "seminar_attendance", seminar())
    send(client, phones, "tomo", "seminar_attendance", seminar(grantee="tomo", region="issyk_kul", village="Karakol"))
    ns = "{http://openrosa.org/xforms/xformsManifest}"

    def fetch(token):
        manifest = client.get(f"/v1/key/{token}/projects/1/forms/beneficiary_interview/manifest",
                              headers={"X-OpenRosa-Version": "1.0"})
        files = {m.findtext(f"{ns}filename"): m for m in etree.fromstring(manifest.data).iter(f"{ns}mediaFile")}
        if "events.csv" not in files:
            return None, None
        data = client.get(f"/v1/key/{token}/projects/1/forms/beneficiary_interview/attachments/events.csv").data
        return files["events.csv"].findtext(f"{ns}hash"), data

    import hashlib
    hash_chinek, data = fetch(phones["chinek"])
    if hash_chinek is None:
        pytest.skip("this beneficiary_interview version has no events.csv question")
    assert hash_chinek == "md5:" + hashlib.md5(data).hexdigest()
    assert b"Kant" in data and b"Karakol" not in data  # a trainer's phone sees its own grantee's events
    evaluator = make_app_user(name="evaluator", evaluator=True)
    _, everything = fetch(evaluator["token"])
    assert b"Kant" in everything and b"Karakol" in everything
    assert fetch(phones["chinek"])[0] == hash_chinek  # nothing changed, same hash
    send(client, phones, "chinek", "seminar_attendance", seminar(event_date="2026-11-28", village="Ivanovka"))
    assert fetch(phones["chinek"])[0] != hash_chinek


def test_with_the_background_worker_an_upload_answers_before_the_rebuild_and_drain_catches_up(
        app, client, phones, coordinator):
    """As under gunicorn: the 201 waits for the durable store only; the record rebuild and the
    indicator update happen in this process's worker thread, and `indicators.drain` waits
    for them (what a test or script calls before reading indicators)."""
    from fieldsync import indicators
    from fieldsync.indicators import worker
    from fieldsync.models import PendingRecord

    started = worker.start(app)
    try:
        for day in ("2026-11-20", "2026-11-21", "2026-11-22"):
            send(client, phones, "chinek", "seminar_attendance", seminar(event_date=day))
        indicators.drain(app)
        assert value(client, coordinator, "events_held") == "3"
        assert value(client, coordinator, "unique_participants") == "2"
        with app.app_context():
            assert db.session.scalars(select(PendingRecord)).all() == []
            assert indicators.recompute("test").drift == 0
    finally:
        app.extensions.pop(worker.EXTENSION, None)
    assert started.thread.is_alive()  # a daemon: it ends with the process


def test_what_a_killed_worker_left_queued_is_caught_up_when_a_worker_starts(app, client, phones, coordinator):
    """A SIGKILL after the 201 and before the rebuild leaves the submission in
    `pending_records`, committed with it; the next worker's start drains that backlog."""
    from fieldsync import indicators
    from fieldsync.indicators import worker
    from fieldsync.models import PendingRecord

    class Dead:  # a worker that accepts work and never does it, as one killed at once would
        def submit(self, ids):
            pass

        def wait_idle(self, timeout=0):
            return True
    app.extensions[worker.EXTENSION] = Dead()
    send(client, phones, "chinek", "seminar_attendance", seminar())
    send(client, phones, "chinek", "consultation_log", {"grantee": "chinek", "service_date": "2026-11-02",
                                                         "channel": "hotline", "service_type": "legal",
                                                         "client_sex": "female", "client_age_group": "18_35",
                                                         "client_is_victim": "yes", "client_code": "C-1"})
    with app.app_context():
        assert len(db.session.scalars(select(PendingRecord)).all()) == 2
    assert value(client, coordinator, "events_held") == "0"
    app.extensions.pop(worker.EXTENSION)
    fresh = worker.start(app)
    try:
        assert fresh.wait_idle(30)
        assert value(client, coordinator, "events_held") == "1"
        assert value(client, coordinator, "victims_assisted") == "1"
        with app.app_context():
            assert db.session.scalars(select(PendingRecord)).all() == []
            assert indicators.recompute("test").drift == 0
    finally:
        app.extensions.pop(worker.EXTENSION, None)


def test_the_full_recompute_groups_every_day_as_the_incremental_path_does(app, client, phones, coordinator):
    """`store.EveryDay` (one pass over all days, for the recompute) and `store.bucket` (one
    day, for an incremental update) must see the same groups, registers and candidates, and a
    recompute must leave the merge trace and the candidates exactly as the updates left them."""
    from fieldsync.indicators import recompute
    from fieldsync.records import store
    four = people("A One", "B Two", "C Three", "D Four")
    send(client, phones, "chinek", "seminar_attendance", seminar(participant=four))
    send(client, phones, "chinek2", "seminar_attendance", seminar(participant=four[:3]))  # merged: same event
    send(client, phones, "chinek2", "seminar_attendance",  # a candidate: one person in common
         seminar(participant=people("A One", "E Five", "F Six", "G Seven")))
    send(client, phones, "chinek", "seminar_attendance", seminar(event_date="2026-03-02", participant=four))
    send(client, phones, "tomo", "seminar_attendance", seminar(grantee="tomo", participant=people("H Eight")))

    def snapshot():
        trace = sorted(db.session.execute(select(Event.instance_id, Event.merged_into, Event.merge_reason)).all())
        candidates = sorted(db.session.execute(select(
            DuplicateCandidate.kind, DuplicateCandidate.key_a, DuplicateCandidate.key_b,
            DuplicateCandidate.status, DuplicateCandidate.score)).all())
        return trace, candidates

    def shape(grouped):
        return {scope: sorted((group.canonical.instance_id, sorted(m.instance_id for m in members), sorted(attendance))
                              for group, attendance, members in groups) for scope, groups in grouped.items()}

    with app.app_context():
        before = snapshot()
        assert any(merged for _i, merged, _r in before[0]) and any(k == "event" for k, *_ in before[1])
        grantees = sorted(set(db.session.scalars(select(Event.grantee_id))))
        together = {(g, d): shape(grouped) for g, d, grouped in store.EveryDay().of(grantees)}
        one_by_one = {(g, d): shape(store.bucket(g, d)) for g, d in together}
        assert len(together) == 3 and together == one_by_one
        db.session.rollback()
        assert recompute("test").drift == 0
        assert snapshot() == before
        db.session.remove()


@pytest.mark.parametrize("kept, helper", [(50_000, None), (0, None), (50_000, "works"), (50_000, "fails")],
                         ids=["from-snapshot", "too-much-to-keep", "shared-with-a-helper", "helper-fails"])
def test_recompute_mends_what_was_tampered_with_and_then_writes_nothing(app, client, phones, coordinator,
                                                                        monkeypatch, caplog, kept, helper):
    """The recompute writes only the sources, cells and members that differ from what it
    computes: whatever was changed, removed or added by hand is put right (and the changed
    cells are the reported drift), and a second recompute has nothing to write. With no room
    to keep differences (kept=0) a reconcile from a snapshot starts again under the write
    lock and mends the same. Shared with a helper process (each grantee a group of its own),
    it finds and mends the same; if the helper fails, this process does its share."""
    import logging
    import sys

    from sqlalchemy import delete, event, insert, update

    from fieldsync.indicators import recompute, reconcile
    from fieldsync.models import IndicatorMember, IndicatorSource, IndicatorValue
    monkeypatch.setattr(reconcile, "MEND_IN_MEMORY", kept)
    if helper:
        monkeypatch.setattr(reconcile, "GROUP_RECORDS", 1)
        monkeypatch.setattr(reconcile, "PARALLEL_RECORDS", 0)
        monkeypatch.setitem(app.config["FIELDSYNC"], "RECOMPUTE_PROCESSES", 2)
        if helper == "fails":  # a helper process that dies before it answers
            monkeypatch.setattr(reconcile, "_helper_command", lambda: [sys.executable, "-c", "raise SystemExit(3)"])
        caplog.set_level(logging.INFO, logger="fieldsync.indicators.reconcile")
    send(client, phones, "chinek", "seminar_attendance", seminar(participant=people("Aigul Asanova", "Bakyt Osmonov")))
    send(client, phones, "chinek", "seminar_attendance", seminar(event_date="2026-11-25", participant=people("Aigul Asanova")))
    send(client, phones, "chinek", "consultation_log", consultation())
    if helper:  # a second grantee, so that there are two groups to share
        send(client, phones, "tomo", "seminar_attendance", seminar(grantee="tomo", participant=people("Nurlan Tokonov")))
        send(client, phones, "tomo", "consultation_log", {**consultation(), "grantee": "tomo"})
    values_, members, sources = IndicatorValue.__table__, IndicatorMember.__table__, IndicatorSource.__table__

    def tables():
        db.session.commit()  # a fresh read: the tampering below comes from another connection
        c = values_.c
        return (sorted(db.session.execute(select(c.indicator, c.grantee_id, c.scope, c.period, c.coc, c.total, c.weight))),
                sorted(db.session.execute(select(*[members.c[n] for n in (
                    "indicator", "grantee_id", "scope", "coc", "member", "months")]))),
                sorted(db.session.execute(select(sources.c.key, sources.c.payload))),
                sorted(db.session.execute(select(Event.instance_id, Event.merged_into, Event.merge_reason))))

    with app.app_context():
        before = tables()
        cells, member_rows, source_rows, trace = before
        assert len(cells) > 3 and len(member_rows) > 2 and len(source_rows) == (5 if helper else 3)
        grantees = sorted({cell[1] for cell in cells})
        assert len(grantees) == (2 if helper else 1)
        with db.engine.begin() as conn:
            for grantee in grantees:  # (each in a group of its own when shared with a helper)
                first, second = [cell for cell in cells if cell[1] == grantee][:2]
                mine = [row for row in member_rows if row[1] == grantee]
                conn.execute(update(values_).where(values_.c.indicator == first[0], values_.c.period == first[3],
                                                   values_.c.coc == first[4], values_.c.scope == first[2],
                                                   values_.c.grantee_id == grantee).values(total=first[5] + 5))
                conn.execute(delete(values_).where(values_.c.indicator == second[0], values_.c.period == second[3],
                                                   values_.c.coc == second[4], values_.c.scope == second[2],
                                                   values_.c.grantee_id == grantee))
                conn.execute(insert(values_).values(indicator="events_held", grantee_id=grantee, scope="all",
                                                    period="1999", coc="total", total=7, weight=0))
                conn.execute(update(members).where(members.c.member == mine[0][4], members.c.grantee_id == grantee)
                             .values(months='{"1999-01": 3}'))
                conn.execute(delete(members).where(members.c.member == mine[1][4], members.c.grantee_id == grantee))
                conn.execute(insert(members).values(indicator="unique_participants", grantee_id=grantee, scope="all",
                                                    coc="total", member="nobody|1990|kant", months='{"1999-01": 1}'))
            conn.execute(update(sources).where(sources.c.key == source_rows[0][0]).values(payload="[]"))
            conn.execute(delete(sources).where(sources.c.key == source_rows[1][0]))
            conn.execute(update(sources).where(sources.c.key == source_rows[-1][0]).values(payload="[]"))
            conn.execute(insert(sources).values(key="sub:999999", payload='[["s"]]'))
            conn.execute(update(Event.__table__).values(merged_into=trace[1][0], merge_reason="tampered"))  # every event
        assert tables() != before
        tries = []
        monkeypatch.setattr(reconcile, "_reconcile", lambda defs, limit, real=reconcile._reconcile: (
            tries.append(limit), real(defs, limit))[1])
        run = recompute("test")
        assert run.drift == 3 * len(grantees), run.details  # the changed, the removed and the added cell
        if backend() == "sqlite":  # from a snapshot first; again under the lock when it is too much
            assert tries == ([kept] if kept else [kept, None])
        assert tables() == before
        if helper:
            assert "2 groups of grantees, 1 of them in 1 helper process(es)" in caplog.text
            assert ("a reconcile helper failed" in caplog.text) == (helper == "fails")

        writes = []

        def listen(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE") and any(
                    name in statement for name in ("indicator_values", "indicator_members", "indicator_sources")):
                writes.append(statement)
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            assert recompute("test").drift == 0
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
        assert writes == []
        assert tables() == before


def _during_the_reconcile(monkeypatch, action):
    """Run `action` once, while the recompute is computing (after its first record source)."""
    from fieldsync.indicators import reconcile
    real = reconcile._submission_parts

    def payloads(defs, *args):
        for i, item in enumerate(real(defs, *args)):
            if i == 0:
                action()
            yield item
    monkeypatch.setattr(reconcile, "_submission_parts", payloads)


@pytest.mark.skipif(backend() != "sqlite", reason="PostgreSQL never held a single write lock")
def test_uploads_are_not_held_up_by_a_reconcile_on_sqlite(app, client, phones, monkeypatch):
    """The reconcile reads its snapshot without SQLite's write lock: another connection can
    take the lock and commit while it computes (before, it waited the whole run)."""
    import sqlite3

    from fieldsync.indicators import recompute
    send(client, phones, "chinek", "seminar_attendance", seminar())
    send(client, phones, "chinek", "consultation_log", consultation())
    committed = []

    def write_from_elsewhere():
        other = sqlite3.connect(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"), timeout=0.5,
                                isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" after 0.5 s if the lock is held
            other.execute("UPDATE reconcile_runs SET trigger = trigger")
            other.execute("COMMIT")
            committed.append(True)
        finally:
            other.close()
    _during_the_reconcile(monkeypatch, write_from_elsewhere)
    with app.app_context():
        assert recompute("test").drift == 0
    assert committed == [True]


def test_an_update_waits_for_the_reconcile_and_lands_after_it(app, client, phones, coordinator, monkeypatch):
    """An incremental update queued while a reconcile computes waits for it (the indicators
    turn on SQLite, the lock on indicator_sources on PostgreSQL) and is applied after it, so
    the reconcile's writes never undo it."""
    import threading

    from fieldsync import records
    from fieldsync.extensions import write_transaction
    from fieldsync.indicators import process_pending, recompute
    from fieldsync.models import Service, Submission
    send(client, phones, "chinek", "seminar_attendance", seminar())
    send(client, phones, "chinek", "consultation_log", consultation())
    assert value(client, coordinator, "consultations_provided") == "1"
    with app.app_context():
        with write_transaction():  # rejected and queued, as a review does, but not yet processed
            submission = db.session.get(Submission, db.session.scalar(select(Service.submission_id)))
            submission.review_state = "rejected"
            records.queue(submission.id)
    done, worker = [], []

    def update():
        with app.app_context():
            done.append(process_pending())

    def start_the_update():
        worker.append(threading.Thread(target=update))
        worker[0].start()
        worker[0].join(1.0)
        assert worker[0].is_alive() and done == []  # it waits for the reconcile
    _during_the_reconcile(monkeypatch, start_the_update)
    with app.app_context():
        assert recompute("test").drift == 0  # computed before the rejection was processed
    worker[0].join(30)
    assert done == [1]
    assert value(client, coordinator, "consultations_provided") == "0"
    monkeypatch.undo()
    with app.app_context():
        assert recompute("test").drift == 0


def test_memo_keys_of_two_record_kinds_never_meet():
    """The recompute adds each memoised set of count entries once per key, times its records:
    an assessment and an interview whose fields take the same values must not share a key."""
    from datetime import date

    from fieldsync.indicators.contributions import RecordContributions
    from fieldsync.indicators.definitions import parse
    defs = parse({"needs_assessments": {"name": {"en": "A"}, "terms": [
                      {"source": "assessment", "kind": "count", "where": {"consent": "yes"}}]},
                  "interviews_conducted": {"name": {"en": "I"}, "terms": [
                      {"source": "interview", "kind": "count", "where": {"consent": "yes"}}]}})
    row = {"consent": "yes", "date": date(2026, 11, 5)}
    assessment = RecordContributions(defs, "assessment", 10).of(row, 1, ("all",))
    interview = RecordContributions(defs, "interview", 10).of(row, 1, ("all",))
    assert assessment[0] is not None and interview[0] is not None
    assert assessment[0] != interview[0]
    assert assessment[1] != interview[1]  # different indicators behind them
