"""Grantee scope of the duplicates queue, through HTTP (the web app signed in, with CSRF; the
API with a Bearer token).

Persons are matched by village, whoever registered them, so a look-alike pair can span two
grantees; the candidate names only the grantee whose upload found it. Grantee staff see a
candidate only when every record behind both sides is their grantee's; a pair spanning
grantees is for coordinators and admins. Out of scope is answered as an unknown id is.
"""
import re
import uuid

import pytest

from collect import SEMINAR, instance_xml, post

BASE = "/v1/projects/1"
UNKNOWN = 999_999


@pytest.fixture
def phones(client, make_app_user):
    tokens = {code: make_app_user(name=f"{code} tablet", grantee=code)["token"] for code in ("chinek", "tomo")}
    return {**tokens, "form": client.get(f"/v1/key/{tokens['chinek']}/projects/1/forms/seminar_attendance.xml").data}


def seminar(client, phones, grantee, village, name, year=2008, date="2026-11-20"):
    """A seminar of `grantee` in `village` with one registered participant; records, indicators
    and the look-alike search caught up. Returns its instanceID."""
    from fieldsync.indicators import process_pending
    instance_id = f"uuid:{uuid.uuid4()}"
    xml = instance_xml(phones["form"], {**SEMINAR, "grantee": grantee, "village": village, "event_date": date,
                                        "participant": [{"full_name": name, "sex": "female", "birth_year": year,
                                                         "category": "student"}]}, instance_id=instance_id)
    assert post(client, f"/v1/key/{phones[grantee]}/projects/1/submission", xml).status_code == 201
    with client.application.app_context():
        process_pending()
    return instance_id


@pytest.fixture
def pairs(client, phones, make_user):
    """Two open person candidates, both found by Tomo's uploads: `spanning`, Chinek's
    beneficiary in Kant and Tomo's look-alike of her; `tomo`, two of Tomo's in Karakol."""
    seminar(client, phones, "chinek", "Kant", "Айгуль Асанова")
    seminar(client, phones, "tomo", "Kant", "Айгул Асанава", date="2026-11-21")
    first = seminar(client, phones, "tomo", "Karakol", "Нурлан Токтогулов", 2007)
    second = seminar(client, phones, "tomo", "Karakol", "Нурлан Токтогулав", 2007, date="2026-11-22")
    listed = client.get(f"{BASE}/duplicates", headers=make_user("coordinator")).get_json()
    by_village = {c["a"]["village"]: c["id"] for c in listed if c["kind"] == "person"}
    assert set(by_village) == {"kant", "karakol"}, listed  # coordinators see both
    return {"spanning": by_village["kant"], "tomo": by_village["karakol"], "tomo_submissions": (first, second)}


@pytest.fixture
def staff_may_resolve(monkeypatch):
    """Grantee staff given `duplicate.resolve`, as a programme letting grantees clear their own
    queue would: scope, not the missing role action, must then keep the rest from them."""
    from fieldsync.auth import policy
    monkeypatch.setitem(policy.ROLE_ACTIONS, "grantee_staff",
                        policy.ROLE_ACTIONS["grantee_staff"] | {"duplicate.resolve"})


def candidate_ids(html):
    return {int(i) for i in re.findall(r'data-candidate="(\d+)"', html)}


def open_badge(html):
    return int(re.search(r'data-test="tab-open">[^<]*<span class="badge">(\d+)</span>', html).group(1))


def open_ids(client, headers):
    return {c["id"] for c in client.get(f"{BASE}/duplicates", headers=headers).get_json()}


def test_staff_page_and_its_count_leave_out_a_pair_with_another_grantees_person(pairs, web_client):
    coordinator = web_client("coordinator")
    page = coordinator.get("/duplicates").data.decode()
    assert {pairs["spanning"], pairs["tomo"]} <= candidate_ids(page) and "Kant" in page

    staff = web_client("grantee_staff", grantee="tomo")
    html = staff.get("/duplicates").data.decode()
    assert candidate_ids(html) == {pairs["tomo"]}
    assert open_badge(html) == 1
    assert "Kant" not in html  # the village (and birth year) of Chinek's beneficiary
    # nor is it Chinek's: half of it is Tomo's
    chinek = web_client("grantee_staff", grantee="chinek").get("/duplicates").data.decode()
    assert candidate_ids(chinek) == set() and open_badge(chinek) == 0
    # decided, it stays out of the staff's Decided tab
    assert coordinator.post(f"/duplicates/{pairs['spanning']}", data={"decision": "not_duplicate"}).status_code == 302
    assert pairs["spanning"] in candidate_ids(coordinator.get("/duplicates?status=decided").data.decode())
    assert candidate_ids(staff.get("/duplicates?status=decided").data.decode()) == set()


def test_a_person_registered_since_by_another_grantee_takes_the_pair_out_of_scope(client, phones, pairs, web_client,
                                                                                 make_user):
    staff = web_client("grantee_staff", grantee="tomo")
    assert pairs["tomo"] in candidate_ids(staff.get("/duplicates").data.decode())
    # Chinek registers one of Tomo's two (the same name, year and village: the same person)
    seminar(client, phones, "chinek", "Karakol", "Нурлан Токтогулов", 2007, date="2026-11-23")
    html = staff.get("/duplicates").data.decode()
    assert candidate_ids(html) == set() and open_badge(html) == 0
    assert pairs["tomo"] in open_ids(client, make_user("coordinator"))


def test_a_submission_moved_to_another_grantee_takes_its_pairs_with_it(client, pairs, web_client, make_user):
    coordinator = make_user("coordinator")
    staff = web_client("grantee_staff", grantee="tomo")
    assert pairs["tomo"] in candidate_ids(staff.get("/duplicates").data.decode())
    first, _second = pairs["tomo_submissions"]
    response = client.patch(f"{BASE}/forms/seminar_attendance/submissions/{first}", json={"grantee": "chinek"},
                            headers=coordinator)
    assert response.status_code == 200, response.get_json()
    from fieldsync.indicators import process_pending
    with client.application.app_context():
        process_pending()
    assert candidate_ids(staff.get("/duplicates").data.decode()) == set()
    assert pairs["tomo"] in open_ids(client, coordinator)


def test_a_side_whose_registration_was_deleted_is_nobodys(client, phones, make_user, web_client):
    """Chinek's submission deleted: its person stays (persons are never deleted) with no record
    behind it, so no grantee can be shown to own it; the pair is left to coordinators."""
    coordinator = make_user("coordinator")
    chinek = seminar(client, phones, "chinek", "Kant", "Айгуль Асанова")
    seminar(client, phones, "tomo", "Kant", "Айгул Асанава", date="2026-11-21")
    [pair] = open_ids(client, coordinator)
    response = client.delete(f"{BASE}/forms/seminar_attendance/submissions/{chinek}", headers=coordinator)
    assert response.status_code == 200, response.get_json()
    from fieldsync.indicators import process_pending
    with client.application.app_context():
        process_pending()
    html = web_client("grantee_staff", grantee="tomo").get("/duplicates").data.decode()
    assert candidate_ids(html) == set() and "Kant" not in html
    assert pair in open_ids(client, coordinator)


def test_staff_cannot_use_the_api_queue(client, pairs, make_user):
    """As the roles stand, grantee staff do not resolve duplicates: refused alike for any id."""
    staff = make_user("grantee_staff", grantee="tomo")
    assert client.get(f"{BASE}/duplicates", headers=staff).status_code == 403
    answers = [client.post(f"{BASE}/duplicates/{cid}", json={"decision": "merge"}, headers=staff)
               for cid in (pairs["spanning"], UNKNOWN)]
    assert [r.status_code for r in answers] == [403, 403] and answers[0].get_json() == answers[1].get_json()


def test_api_list_and_decision_keep_to_scope(client, pairs, make_user, staff_may_resolve):
    coordinator = make_user("coordinator")
    staff = make_user("grantee_staff", grantee="tomo")
    listed = client.get(f"{BASE}/duplicates?status=all", headers=staff).get_json()
    assert [c["id"] for c in listed] == [pairs["tomo"]], listed
    assert "kant" not in str(listed)
    refused = client.post(f"{BASE}/duplicates/{pairs['spanning']}", json={"decision": "merge"}, headers=staff)
    unknown = client.post(f"{BASE}/duplicates/{UNKNOWN}", json={"decision": "merge"}, headers=staff)
    assert refused.status_code == unknown.status_code == 404
    assert refused.get_json() == unknown.get_json()
    assert pairs["spanning"] in open_ids(client, coordinator)  # not merged
    # their own pair they may decide
    own = client.post(f"{BASE}/duplicates/{pairs['tomo']}", json={"decision": "not_duplicate"}, headers=staff)
    assert own.status_code == 200 and own.get_json()["status"] == "not_duplicate"
    # coordinators decide the spanning one
    done = client.post(f"{BASE}/duplicates/{pairs['spanning']}", json={"decision": "not_duplicate"},
                       headers=coordinator)
    assert done.status_code == 200


def test_web_decision_keeps_to_scope(client, pairs, web_client, make_user, staff_may_resolve):
    staff = web_client("grantee_staff", grantee="tomo")
    refused = staff.post(f"/duplicates/{pairs['spanning']}", data={"decision": "merge"})
    unknown = staff.post(f"/duplicates/{UNKNOWN}", data={"decision": "merge"})
    assert refused.status_code == unknown.status_code == 404
    assert pairs["spanning"] in open_ids(client, make_user("coordinator"))  # not merged
    assert staff.post(f"/duplicates/{pairs['tomo']}", data={"decision": "not_duplicate"}).status_code == 302
    assert pairs["tomo"] not in open_ids(client, make_user("coordinator"))


def test_staff_see_their_own_event_candidates(client, phones, web_client):
    # the same seminar of Tomo's from a second phone with another register: a look-alike event
    seminar(client, phones, "tomo", "Karakol", "Жылдыз Токтогулова")
    seminar(client, phones, "tomo", "Karakol", "Бегимай Садыкова")
    coordinator = web_client("coordinator").get("/duplicates?kind=event").data.decode()
    events = candidate_ids(coordinator)
    assert events, coordinator
    html = web_client("grantee_staff", grantee="tomo").get("/duplicates?kind=event").data.decode()
    assert candidate_ids(html) == events
    assert candidate_ids(web_client("grantee_staff", grantee="chinek").get("/duplicates?kind=event")
                         .data.decode()) == set()
