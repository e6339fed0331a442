"""The dashboard, grantees and targets pages, through the Flask test client: seminars and
consultations go in over OpenRosa as phones send them, figures come out of the page and are
compared with the DHIS2-shaped API for the same filters."""
import html
import re

import pytest

from collect import SEMINAR, instance_xml, post

BASE = "/v1/projects/1"
CELL = re.compile(r'data-indicator="([^"]+)" data-org-unit="([^"]+)" data-value="([^"]+)"')
KPI = re.compile(r'data-kpi="([^"]+)">\s*<span class="kpi-label">[^<]*</span>\s*<span class="kpi-value" data-value="([^"]+)"')


@pytest.fixture
def sent(app, client, make_app_user):
    """Seminars and consultations from chinek's and tomo's phones, in three months of 2026."""
    chinek = make_app_user(name="chinek phone", grantee="chinek")["token"]
    tomo = make_app_user(name="tomo phone", grantee="tomo")["token"]
    forms = {f: client.get(f"/v1/key/{chinek}/projects/1/forms/{f}.xml").data
             for f in ("seminar_attendance", "consultation_log")}

    def send(token, form, values):
        response = post(client, f"/v1/key/{token}/projects/1/submission", instance_xml(forms[form], values))
        assert response.status_code == 201, response.data

    send(chinek, "seminar_attendance", {**SEMINAR, "headcount_female": 10, "headcount_male": 5})
    send(chinek, "seminar_attendance", {**SEMINAR, "event_date": "2026-09-14", "village": "Tokmok", "event_type": "tot",
                                        "participant": [{"full_name": "Asel Sadykova", "sex": "female",
                                                         "birth_year": 1990, "category": "teacher"}]})
    send(tomo, "seminar_attendance", {**SEMINAR, "grantee": "tomo", "region": "issyk_kul", "rayon": "karakol",
                                      "village": "Karakol", "event_date": "2026-10-02", "materials_distributed": 12})
    send(tomo, "consultation_log", {"grantee": "tomo", "service_date": "2026-10-05", "channel": "hotline",
                                    "service_type": "legal", "client_sex": "female", "client_age_group": "18_35",
                                    "client_is_victim": "yes", "client_code": "TM-001"})
    from fieldsync.indicators import process_pending
    with app.app_context():
        process_pending()
    return {"chinek": chinek, "tomo": tomo}


def cells(page) -> dict:
    return {(i, o): v for i, o, v in CELL.findall(page.data.decode())}


def kpis(page) -> dict:
    return dict(KPI.findall(page.data.decode()))


def api_totals(client, headers, **params) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    body = client.get(f"{BASE}/indicator-values?{query}", headers=headers).get_json()
    out = {}
    for v in body["dataValues"]:
        if v["categoryOptionCombo"] == "total":
            out[(v["dataElement"], v["orgUnit"])] = v["value"]
        elif v["dataElement"] == "services_provided":  # no total option: the page shows their sum
            key = (v["dataElement"], v["orgUnit"])
            out[key] = str(int(float(out.get(key, "0")) + float(v["value"])))
    return out


def test_the_dashboard_shows_what_the_api_reads(client, sent, web_client, make_user):
    coordinator = web_client("coordinator")
    api = make_user("coordinator")
    for period, scope in (("2026", "all"), ("2026Q4", "all"), ("202609", "all"), ("", "all"), ("2026", "approved")):
        page = coordinator.get(f"/?period={period}&scope={scope}")
        assert page.status_code == 200
        shown = cells(page)
        units = "chinek,tomo,chuy,issyk_kul,bishkek"
        expected = api_totals(client, api, period=period, orgUnit=units,
                              approvedOnly="true" if scope == "approved" else "false")
        for (indicator, unit), value in expected.items():
            assert shown[(indicator, unit)] == value, (period, scope, indicator, unit)
        for (indicator, unit), value in shown.items():
            if unit in units.split(","):
                assert expected.get((indicator, unit), "0") == value, (period, scope, indicator, unit)
    # Q4 2026: chinek's November seminar and tomo's October one; September's training of trainers is not in it.
    q4 = cells(coordinator.get("/?period=2026Q4"))
    assert q4[("events_held", "chinek")] == "1" and q4[("events_held", "tomo")] == "1"
    assert q4[("trainers_prepared", "chinek")] == "0"
    assert cells(coordinator.get("/?period=202609"))[("trainers_prepared", "chinek")] == "1"
    # The KPI cards add up the grantees shown; a region filter shows that region only.
    assert kpis(coordinator.get("/?period=2026"))["events_held"] == "3"
    chuy = coordinator.get("/?period=2026&org=chuy")
    assert kpis(chuy)["events_held"] == "2" and ("events_held", "tomo") not in cells(chuy)
    assert kpis(coordinator.get("/?period=2026&scope=approved"))["events_held"] == "0"


def test_the_page_picks_periods_from_the_picker_and_counts_the_queue(sent, web_client):
    coordinator = web_client("coordinator")
    assert cells(coordinator.get("/?year=2026&part=Q3"))[("events_held", "chinek")] == "1"
    assert cells(coordinator.get("/?year=2026&part=11"))[("participants_reached", "chinek")] == "17"
    assert cells(coordinator.get("/?year=all"))[("events_held", "chinek")] == "2"
    page = coordinator.get("/").data.decode()  # the current year (2026) by default
    assert 'value="2026" selected' in page
    assert re.search(r'href="/submissions\?reviewState=received" data-test="under-review">\s*'
                     r'<span class="attention-count">4</span>', page)
    assert 'href="/duplicates"' in page
    chuy = coordinator.get("/?org=chuy").data.decode()  # the queue of the grantees shown
    assert re.search(r'href="/submissions\?reviewState=received&amp;region=chuy" data-test="under-review">\s*'
                     r'<span class="attention-count">2</span>', chuy)
    # The trend table carries the chosen indicator per month.
    trend = coordinator.get("/?period=2026&indicator=events_held").data.decode()
    assert re.search(r'data-period="202609">1<', trend) and re.search(r'data-period="202611">1<', trend)
    assert re.search(r'data-option="tot">1<', trend)  # events by type


def test_a_mean_over_grantees_is_weighted_by_what_was_averaged(app, client, make_app_user, web_client, make_user):
    evaluator = make_app_user(name="evaluator", evaluator=True)["token"]
    form = client.get(f"/v1/key/{evaluator}/projects/1/forms/beneficiary_interview.xml").data
    for grantee, region, satisfaction in (("tomo", "issyk_kul", 4), ("tomo", "issyk_kul", 5), ("chinek", "chuy", 3)):
        xml = instance_xml(form, {"grantee": grantee, "region": region, "village": "X", "interview_date": "2026-10-20",
                                  "consent": "yes", "beneficiary_type": "victim", "satisfaction": satisfaction,
                                  "knowledge_gained": 4})
        assert post(client, f"/v1/key/{evaluator}/projects/1/submission", xml).status_code == 201
    page = web_client("viewer").get("/?period=2026")
    shown = cells(page)
    assert shown[("satisfaction_mean", "tomo")] == "4.50" and shown[("satisfaction_mean", "chinek")] == "3"
    assert kpis(page)["satisfaction_mean"] == "4"  # (4 + 5 + 3) / 3, not the mean of 4.5 and 3
    assert "4.00" in re.search(r'data-kpi="satisfaction_mean">.*?</span>\s*<span class="kpi-value"[^>]*>([^<]+)<',
                               page.data.decode(), re.S).group(1)
    # A grantee with nothing to average shows no figure rather than a zero.
    assert re.search(r'data-indicator="satisfaction_mean" data-org-unit="sezim" data-value="0">—<', page.data.decode())
    assert "data-test=\"under-review\"" in page.data.decode() and 'href="/duplicates"' not in page.data.decode()


def test_grantee_staff_see_only_their_own_grantee(sent, web_client):
    staff = web_client("grantee_staff", grantee="chinek")
    page = staff.get("/?period=2026")
    assert page.status_code == 200
    shown = cells(page)
    assert {unit for _i, unit in shown} == {"chinek"}
    assert shown[("events_held", "chinek")] == "2"
    text = page.data.decode()
    assert "Tomo" not in text and "Issyk-Kul" not in text and 'name="org"' not in text
    assert kpis(page)["events_held"] == "2"
    assert re.search(r'data-test="under-review">\s*<span class="attention-count">2</span>', text)
    assert staff.get("/?org=tomo").status_code == 403
    assert staff.get("/?org=issyk_kul").status_code == 403
    # Their grantee list and targets: their own only; another grantee's pages do not exist for them.
    grantees = staff.get("/grantees").data.decode()
    assert 'data-grantee="chinek"' in grantees and 'data-grantee="tomo"' not in grantees
    assert staff.get("/grantees/chinek/targets").status_code == 200
    assert staff.get("/grantees/tomo/targets").status_code == 404
    assert staff.get("/grantees/tomo/edit").status_code == 403
    assert staff.post("/grantees/tomo/targets", data={"indicator": "events_held", "period": "2026",
                                                      "value": "5"}).status_code == 403


@pytest.mark.parametrize("role,manage_grantees,manage_targets", [
    ("admin", True, True), ("coordinator", False, True), ("evaluator", False, False), ("viewer", False, False)])
def test_who_sees_and_changes_what(app, web_client, role, manage_grantees, manage_targets):
    user = web_client(role)
    assert user.get("/").status_code == 200
    listing = user.get("/grantees")
    assert listing.status_code == 200 and listing.data.count(b"data-grantee=") == 18
    assert (b"Add a grantee" in listing.data) == manage_grantees
    assert user.get("/grantees/new").status_code == (200 if manage_grantees else 403)
    assert user.get("/grantees/tomo/edit").status_code == (200 if manage_grantees else 403)
    targets = user.get("/grantees/tomo/targets")
    assert targets.status_code == 200 and (b'data-test="target-form"' in targets.data) == manage_targets
    saved = user.post("/grantees/tomo/targets", data={"indicator": "events_held", "period": "2026", "value": "12"})
    assert saved.status_code == (302 if manage_targets else 403)
    assert user.get("/grantees/nowhere/targets").status_code == 404


def test_a_target_moves_percent_achieved_on_the_dashboard(client, sent, web_client, make_user):
    coordinator = web_client("coordinator")
    before = coordinator.get("/?period=2026").data.decode()
    assert 'data-org-unit="chinek" data-value="2">2</span>\n' in before.replace("            ", "")
    response = coordinator.post("/grantees/chinek/targets", data={"indicator": "events_held", "period": "2026",
                                                                  "value": "8"})
    assert response.status_code == 302
    followed = coordinator.get(response.headers["Location"]).data.decode()
    assert "Target saved: Events held, 2026." in followed
    assert re.search(r'data-field="target">8<.*?data-field="actual">2<.*?data-field="percent">25%<', followed, re.S)
    page = coordinator.get("/?period=2026").data.decode()
    cell = re.search(r'data-indicator="events_held" data-org-unit="chinek"[^>]*>2</span>\s*'
                     r'<span class="cell-target"[^>]*>/ 8 · <b[^>]*>25%</b>', page)
    assert cell, "the chinek cell shows its target and 25%"
    api = client.get(f"{BASE}/indicator-values?dataElement=events_held&orgUnit=chinek&period=2026&targets=true",
                     headers=make_user("coordinator")).get_json()["dataValues"]
    total = next(v for v in api if v["categoryOptionCombo"] == "total")
    assert total["target"] == "8" and total["percentAchieved"] == 25.0
    kpi = re.search(r'data-kpi="events_held">.*?data-kpi=', page, re.S).group(0)
    assert "25% of the target 8" in html.unescape(kpi)
    # Editing changes the value in place; removing takes it away.
    edit = coordinator.get("/grantees/chinek/targets?indicator=events_held&period=2026").data.decode()
    assert 'name="editing" value="1"' in edit and 'name="value" value="8"' in edit
    coordinator.post("/grantees/chinek/targets", data={"indicator": "events_held", "period": "2026", "value": "4",
                                                       "editing": "1"})
    assert "50% of the target 4" in html.unescape(coordinator.get("/?period=2026").data.decode())
    removed = coordinator.post("/grantees/chinek/targets/delete", data={"indicator": "events_held", "period": "2026"})
    assert removed.status_code == 302
    assert "No targets have been set" in coordinator.get("/grantees/chinek/targets").data.decode()
    assert coordinator.post("/grantees/chinek/targets/delete",
                            data={"indicator": "events_held", "period": "2026"}).status_code == 404


@pytest.mark.parametrize("query,words", [
    ("period=2025Q5", "“2025Q5” is not a period"), ("period=202513", "“202513” is not a period"),
    ("period=" + "9" * 500, "is not a period"), ("period=0000", "“0000” is not a period"),
    ("period=000001", "“000001” is not a period"), ("year=2025&part=Q7", "“2025Q7” is not a period"),
    ("indicator=nope", "There is no indicator “nope”"), ("org=atlantis", "There is no grantee or region “atlantis”"),
    ("scope=everything", "approved ones only")])
def test_bad_dashboard_filters_read_as_a_clear_400(web_client, query, words):
    page = web_client("coordinator").get("/?" + query)
    assert page.status_code == 400 and words in page.data.decode()
    assert "Back to the dashboard" in page.data.decode()


@pytest.mark.parametrize("form,field_words", [
    ({"indicator": "events_held", "period": "2025Q9", "value": "10"}, "“2025Q9” is not a period"),
    ({"indicator": "events_held", "period": "0000", "value": "10"}, "“0000” is not a period"),
    ({"indicator": "events_held", "period": "2026", "value": "-3"}, "A target cannot be negative."),
    ({"indicator": "events_held", "period": "2026", "value": "many"}, "A target is a number"),
    ({"indicator": "events_held", "period": "2026", "value": "1e400"}, "too large for a target"),
    ({"indicator": "events_held", "period": "2026", "value": "nan"}, "too large for a target"),
    ({"indicator": "events_held", "period": "2026", "value": ""}, "Enter the target value."),
    ({"indicator": "happiness", "period": "2026", "value": "3"}, "Choose an indicator from the list."),
])
def test_bad_targets_are_refused_in_plain_words(web_client, form, field_words):
    admin = web_client("admin")
    page = admin.post("/grantees/chinek/targets", data=form)
    assert page.status_code == 400
    text = html.unescape(page.data.decode())
    assert field_words in text and "The target was not saved." in text
    assert "No targets have been set" in text


def test_targets_in_russian(web_client):
    admin = web_client("admin", language="ru")
    admin.post("/grantees/chinek/targets", data={"indicator": "participants_reached", "period": "2026Q4", "value": "1500"})
    page = admin.get("/grantees/chinek/targets").data.decode()
    assert "Охвачено участников" in page and "4 кв. 2026" in page and "Целевые значения" in page
    assert "Показатели по грантополучателям" in admin.get("/?period=202611").data.decode()


def test_an_admin_adds_and_edits_a_grantee(app, web_client):
    admin = web_client("admin")
    added = admin.post("/grantees/new", data={"code": "umut", "name": "Umut Public Foundation", "region": "naryn"})
    assert added.status_code == 302
    listing = admin.get(added.headers["Location"]).data.decode()
    assert "Grantee Umut Public Foundation added." in listing and 'data-grantee="umut"' in listing
    for form, words in (({"code": "umut", "name": "Again", "region": "naryn"}, "There is already a grantee with the code “umut”."),
                        ({"code": "Umut NGO", "name": "X", "region": "naryn"}, "A code is lowercase letters"),
                        ({"code": "", "name": "X", "region": "naryn"}, "Enter a code."),
                        ({"code": "umut2", "name": "", "region": "naryn"}, "Enter the grantee's name."),
                        ({"code": "umut2", "name": "X" * 300, "region": "naryn"}, "The name is too long"),
                        ({"code": "umut2", "name": "X", "region": "mars"}, "Choose a region from the list.")):
        page = admin.post("/grantees/new", data=form)
        assert page.status_code == 400 and words in html.unescape(page.data.decode()), words
    edited = admin.post("/grantees/umut/edit", data={"name": "Umut PF", "region": "issyk_kul"})
    assert edited.status_code == 302
    listing = admin.get("/grantees").data.decode()
    row = re.search(r'data-grantee="umut">.*?</tr>', listing, re.S).group(0)
    assert "Umut PF" in row and "Issyk-Kul" in row
    assert admin.post("/grantees/umut/edit", data={"name": "", "region": "naryn"}).status_code == 400
    assert admin.get("/grantees/nobody/edit").status_code == 404
    # The new grantee is an org unit at once: the dashboard lists it, with zeros.
    assert cells(admin.get("/?org=umut"))[("events_held", "umut")] == "0"
    from fieldsync.extensions import db
    from fieldsync.models import Audit
    with app.app_context():
        actions = [a.action for a in db.session.query(Audit).filter(Audit.action.like("grantee.%"))]
    assert actions == ["grantee.create", "grantee.update"]


def test_the_grantee_list_counts_submissions_and_devices(sent, web_client):
    listing = web_client("coordinator").get("/grantees").data.decode()
    row = re.search(r'data-grantee="tomo">.*?</tr>', listing, re.S).group(0)
    figures = re.findall(r'<td class="num">(?:<span class="badge badge-received">)?(\d+)', row)
    assert figures == ["2", "2", "1"]  # submissions, waiting for review, devices


def test_odd_targets_stored_through_the_api_do_not_break_the_pages(client, web_client, make_user):
    coordinator = make_user("coordinator")
    for period, value in (("2026", 1e300), ("202611", 1e-300), ("0000", 5)):
        response = client.put(f"{BASE}/targets", headers=coordinator,
                              json={"grantee": "chinek", "indicator": "events_held", "period": period, "value": value})
        assert response.status_code in (200, 400)
    viewer = web_client("viewer")
    assert viewer.get("/?period=2026").status_code == 200
    assert viewer.get("/?period=202611").status_code == 200
    assert viewer.get("/grantees/chinek/targets").status_code == 200
    page = viewer.get("/?period=2026").data.decode()
    data = re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', page, re.S).group(1)
    import json
    json.loads(data, parse_constant=lambda name: pytest.fail(f"{name} in the charts' JSON"))
