"""The duplicates queue through the Flask test client: open and decided candidates, merge and
"not a duplicate" moving the indicators at once, and grantee scope."""
import re

import pytest

from collect import SEMINAR, instance_xml, post

BASE = "/v1/projects/1"


@pytest.fixture
def phones(client, make_app_user):
    chinek = make_app_user(name="Чинек планшет", grantee="chinek")
    tomo = make_app_user(name="Томо планшет", grantee="tomo")
    form = client.get(f"/v1/key/{chinek['token']}/projects/1/forms/seminar_attendance.xml").data
    return {"chinek": chinek["token"], "tomo": tomo["token"], "form": form}


def settle(app):
    """Records and indicators catch up with what was sent (they may be built in the background)."""
    from fieldsync.indicators import process_pending
    with app.app_context():
        process_pending()


def seminar(phones, phone, client, **changes):
    xml = instance_xml(phones["form"], {**SEMINAR, **changes})
    assert post(client, f"/v1/key/{phones[phone]}/projects/1/submission", xml).status_code == 201
    settle(client.application)


def person(name, year=2008):
    return [{"full_name": name, "sex": "female", "birth_year": year, "category": "student"}]


def unique_participants(client, headers, org="chinek"):
    body = client.get(f"{BASE}/indicator-values?dataElement=unique_participants&orgUnit={org}",
                      headers=headers).get_json()
    return next((v["value"] for v in body["dataValues"] if v["period"] == "" and v["categoryOptionCombo"] == "total"
                 and v["orgUnit"] == org), "0")


def lookalikes(client, phones, phone="chinek", grantee="chinek", village="Kant"):
    seminar(phones, phone, client, grantee=grantee, village=village, participant=person("Айгуль Асанова"))
    seminar(phones, phone, client, grantee=grantee, village=village, event_date="2026-11-25", topic="employment",
            participant=person("Айгул Асанава"))


def candidate_ids(html, kind=None):
    return [int(i) for i, k in re.findall(r'data-candidate="(\d+)" data-kind="(\w+)"', html) if kind in (None, k)]


def test_merge_counts_the_person_once_at_once(client, phones, web_client, make_user):
    lookalikes(client, phones)
    api = make_user("coordinator")
    assert unique_participants(client, api) == "2"
    web = web_client("coordinator")
    html = web.get("/duplicates").data.decode()
    [pid] = candidate_ids(html, "person")
    card = html[html.index(f'data-candidate="{pid}"'):]
    card = card[:card.index("</article>")]
    assert "Айгуль Асанова" in card and "Айгул Асанава" in card and "2008" in card
    assert "alike" in card and 'data-test="merge"' in card
    response = web.post(f"/duplicates/{pid}", data={"decision": "merge"})
    assert response.status_code == 302
    html = web.get(response.headers["Location"]).data.decode()
    assert "flash-success" in html and "Merged" in html
    assert pid not in candidate_ids(html)
    assert unique_participants(client, api) == "1"
    decided = web.get("/duplicates?status=decided").data.decode()
    assert pid in candidate_ids(decided)
    card = decided[decided.index(f'data-candidate="{pid}"'):]
    assert 'data-test="decision">Merged' in card and 'data-test="merge"' not in card[:card.index("</article>")]
    # deciding again changes nothing and says so
    again = web.post(f"/duplicates/{pid}", data={"decision": "not_duplicate"})
    assert "already decided" in web.get(again.headers["Location"]).data.decode()
    assert unique_participants(client, api) == "1"


def test_not_a_duplicate_keeps_both(client, phones, web_client, make_user):
    lookalikes(client, phones)
    api = make_user("coordinator")
    web = web_client("coordinator", language="ru")
    [pid] = candidate_ids(web.get("/duplicates?kind=person").data.decode())
    response = web.post(f"/duplicates/{pid}", data={"decision": "not_duplicate"})
    html = web.get(response.headers["Location"]).data.decode()
    assert "flash-success" in html and pid not in candidate_ids(html)
    assert unique_participants(client, api) == "2"
    assert pid in candidate_ids(web.get("/duplicates?status=decided").data.decode())


def test_event_candidates_show_both_events(client, phones, web_client):
    # the same seminar from a second phone with a different register: a look-alike event
    seminar(phones, "chinek", client, village="Kant", headcount_female=12)
    seminar(phones, "chinek", client, village="Kant", headcount_female=40, topic="employment",
            participant=person("Жылдыз Токтогулова"))
    html = web_client("coordinator").get("/duplicates?kind=event").data.decode()
    assert candidate_ids(html, "event"), html
    for cid in candidate_ids(html, "event"):
        card = html[html.index(f'data-candidate="{cid}"'):]
        card = card[:card.index("</article>")]
        assert card.count('data-test="side"') == 2 and "Open the submission" in card


def test_grantee_staff_see_their_own_and_cannot_decide(client, phones, web_client):
    lookalikes(client, phones)
    lookalikes(client, phones, phone="tomo", grantee="tomo", village="Karakol")
    coordinator = web_client("coordinator")
    everything = candidate_ids(coordinator.get("/duplicates?kind=person").data.decode())
    assert len(everything) == 2
    staff = web_client("grantee_staff", grantee="chinek")
    html = staff.get("/duplicates").data.decode()
    mine = candidate_ids(html, "person")
    assert len(mine) == 1 and set(mine) < set(everything)
    assert "Асанова" not in html and 'data-test="merge"' not in html  # names are personal data
    assert "hidden: personal data" in html
    other = (set(everything) - set(mine)).pop()
    assert staff.post(f"/duplicates/{other}", data={"decision": "merge"}).status_code == 403
    assert staff.post(f"/duplicates/{mine[0]}", data={"decision": "merge"}).status_code == 403
    assert web_client("viewer").get("/duplicates").status_code == 403


def test_bad_requests_are_pages(client, phones, web_client):
    web = web_client("coordinator")
    assert web.get("/duplicates?status=whatever").status_code == 400
    assert web.get("/duplicates?kind=cats").status_code == 400
    assert web.post("/duplicates/999999", data={"decision": "merge"}).status_code == 404
    lookalikes(client, phones)
    [pid] = candidate_ids(web.get("/duplicates").data.decode(), "person")
    assert web.post(f"/duplicates/{pid}", data={"decision": "explode"}).status_code == 400
    assert web.get(f"/duplicates/{pid}").status_code == 405
    assert "Nothing to decide" not in web.get("/duplicates").data.decode()
