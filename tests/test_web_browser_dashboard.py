"""The dashboard, grantees and targets in a real Chromium against gunicorn: a season of field
data from six grantees' phones, a coordinator reading it, an admin setting a target, and a
grantee's own staff seeing only their grantee."""
import random

import pytest

from collect import instance_xml, post

pytestmark = pytest.mark.browser

GRANTEES = {  # code: (region, rayon, villages)
    "chinek": ("chuy", "alamudun", ["Kant", "Tokmok", "Lebedinovka"]),
    "tomo": ("issyk_kul", "ak_suu", ["Karakol", "Teploklyuchenka"]),
    "sezim": ("bishkek", "bishkek_leninsky", ["Bishkek"]),
    "jiger": ("batken", "batken", ["Batken", "Kyzyl-Kiya"]),
    "lady_shirin": ("talas", "aitmatov", ["Talas", "Kyzyl-Adyr"]),
    "tendesh": ("naryn", "ak_talaa", ["Baetov", "Naryn"]),
}
FIRST = {"female": ["Aigul", "Asel", "Aizada", "Nurzat", "Gulnara", "Cholpon", "Aida", "Begimai", "Elnura", "Jyldyz"],
         "male": ["Bakyt", "Nurlan", "Azamat", "Ermek", "Talant", "Kanat", "Almaz", "Daniyar", "Bolot", "Ulan"]}
LAST = ["Asanov", "Osmonov", "Tokonov", "Sadykov", "Bekov", "Mamatov", "Jumabaev", "Sultanov", "Abdrakhmanov", "Kadyrov"]
TYPES = ["seminar", "seminar", "training", "tot", "roundtable", "campaign", "public_meeting"]
TOPICS = ["trafficking_risks", "labor_migration", "bride_kidnapping", "gender_violence", "employment"]


def person(rng, sex):
    last = rng.choice(LAST) + ("a" if sex == "female" else "")
    return {"full_name": f"{rng.choice(FIRST[sex])} {last}", "sex": sex, "birth_year": rng.randint(1975, 2009),
            "category": rng.choice(["student", "youth", "adult", "teacher", "labor_migrant"])}


def season(app, client, make_app_user, make_user) -> int:
    """About 40 submissions from six grantees, January to November 2026; targets for 2026."""
    rng = random.Random(2026)
    tokens = {code: make_app_user(name=f"{code} tablet", grantee=code)["token"] for code in GRANTEES}
    evaluator = make_app_user(name="evaluator phone", evaluator=True)["token"]
    first = tokens["chinek"]
    forms = {f: client.get(f"/v1/key/{first}/projects/1/forms/{f}.xml").data
             for f in ("seminar_attendance", "consultation_log", "beneficiary_interview", "needs_assessment")}
    sent = 0

    def send(token, form, values):
        nonlocal sent
        response = post(client, f"/v1/key/{token}/projects/1/submission", instance_xml(forms[form], values))
        assert response.status_code == 201, response.data
        sent += 1

    for n, (code, (region, rayon, villages)) in enumerate(GRANTEES.items()):
        for month in sorted(rng.sample(range(1, 12), 4 if n < 3 else 3)):
            kind = rng.choice(TYPES)
            register = [person(rng, rng.choice(["female", "female", "male"])) for _ in range(rng.randint(4, 9))]
            send(tokens[code], "seminar_attendance", {
                "grantee": code, "event_type": kind, "event_date": f"2026-{month:02d}-{rng.randint(3, 26):02d}",
                "region": region, "rayon": rayon, "village": rng.choice(villages), "topic": rng.choice(TOPICS),
                "language": "ky", "trainer_name": "Trainer", "participant": register,
                "headcount_female": rng.choice([0, 0, 12, 40]) if kind != "tot" else 0,
                "headcount_male": rng.choice([0, 0, 8, 30]) if kind != "tot" else 0,
                "materials_distributed": rng.randint(10, 80)})
        for i in range(rng.randint(1, 3)):
            send(tokens[code], "consultation_log", {
                "grantee": code, "service_date": f"2026-{rng.randint(2, 11):02d}-{rng.randint(1, 28):02d}",
                "channel": rng.choice(["hotline", "in_person", "outreach"]),
                "service_type": rng.choice(["information", "legal", "psychological", "shelter", "employment"]),
                "client_sex": rng.choice(["female", "male"]), "client_age_group": "18_35",
                "client_is_victim": rng.choice(["yes", "no"]), "client_code": f"{code[:2].upper()}-{i:03d}"})
        for _ in range(rng.randint(0, 2)):
            send(tokens[code], "needs_assessment", {
                "grantee": code, "region": region, "village": rng.choice(villages), "consent": "yes",
                "interview_date": f"2026-{rng.randint(1, 6):02d}-{rng.randint(1, 28):02d}",
                "respondent_sex": rng.choice(["female", "male"]), "respondent_age": rng.randint(18, 65),
                "household_size": rng.randint(2, 8), "members_abroad": rng.randint(0, 3)})
        send(evaluator, "beneficiary_interview", {
            "grantee": code, "region": region, "village": villages[0], "interview_date": f"2026-{rng.randint(5, 11):02d}-15",
            "consent": "yes", "beneficiary_type": "seminar_participant", "satisfaction": rng.randint(3, 5),
            "knowledge_gained": 4})
    from fieldsync.indicators import process_pending
    with app.app_context():
        process_pending()
    coordinator = make_user("coordinator")
    for code in GRANTEES:
        for indicator, value in (("events_held", 5), ("participants_reached", 120), ("unique_participants", 40),
                                 ("materials_distributed", 250), ("consultations_provided", 4)):
            response = client.put("/v1/projects/1/targets", headers=coordinator,
                                  json={"grantee": code, "indicator": indicator, "period": "2026", "value": value})
            assert response.status_code == 200, response.get_json()
    return sent


def test_coordinator_admin_and_grantee_staff_work_with_indicators(app, client, make_app_user, make_user,
                                                                   browser_as, screenshot):
    assert 30 <= season(app, client, make_app_user, make_user) <= 50

    # A coordinator opens the dashboard: this year by default, charts drawn by Chart.js.
    page = browser_as("coordinator")
    page.goto("/")
    assert page.evaluate("typeof window.Chart") == "function"
    page.wait_for_function("window.fieldsyncCharts === 2")
    assert page.locator("canvas#chart-grantees").is_visible() and page.locator("canvas#chart-trend").is_visible()
    assert page.locator("[data-test=period-year]").input_value() == "2026"
    assert page.locator("[data-kpi]").count() == 11
    events = page.locator("[data-indicator=events_held][data-org-unit=chinek]").inner_text()
    assert events == "4"
    assert page.locator("[data-indicator=events_held][data-org-unit=batken]").inner_text() == "3"
    assert "of the target 30" in page.locator("[data-kpi=events_held]").inner_text()
    screenshot(page, "dashboard")

    # A quarter, then another indicator in the charts: the page follows, the charts are redrawn.
    page.select_option("[data-test=period-part]", "Q3")
    page.wait_for_url("**part=Q3**")
    assert "Q3 2026" in page.locator(".page-header").inner_text()
    page.select_option("[data-test=chart-indicator]", "events_held")
    page.wait_for_url("**indicator=events_held**")
    page.wait_for_function("window.fieldsyncCharts === 2")
    assert "Events held by grantee" in page.locator("main").inner_text()
    page.select_option("[data-test=period-year]", "all")
    page.wait_for_url("**year=all**")
    assert page.locator("[data-test=period-part]").is_disabled()
    assert page.locator("[data-indicator=events_held][data-org-unit=chinek]").inner_text() == "4"

    # An admin looks at the grantees and sets a quarterly target for Chinek in the browser.
    admin = browser_as("admin")
    admin.goto("/grantees")
    assert admin.locator("[data-grantee]").count() == 18
    screenshot(admin, "grantees")
    admin.click("[data-grantee=chinek] a >> text=Targets")
    admin.wait_for_url("**/grantees/chinek/targets")
    admin.select_option("[data-test=target-form] select[name=indicator]", "trainers_prepared")
    admin.fill("[data-test=target-form] input[name=period]", "2026Q5")
    admin.fill("[data-test=target-form] input[name=value]", "10")
    admin.click("[data-test=target-save]")
    assert "is not a period" in admin.locator("#target-form").inner_text()
    admin.fill("[data-test=target-form] input[name=period]", "2026Q4")
    admin.click("[data-test=target-save]")
    admin.wait_for_url("**/grantees/chinek/targets")
    assert "Target saved: Trainers prepared, Q4 2026." in admin.locator(".flash-success").inner_text()
    row = admin.locator("[data-target='trainers_prepared:2026Q4']")
    assert row.locator("[data-field=target]").inner_text() == "10"
    screenshot(admin, "targets")

    # Chinek's own staff: their grantee only, no other grantee's name anywhere.
    staff = browser_as("grantee_staff", grantee="chinek")
    staff.goto("/?period=2026")
    staff.wait_for_function("window.fieldsyncCharts === 2")
    assert staff.locator("canvas#chart-progress").is_visible()
    units = set(staff.eval_on_selector_all("[data-org-unit]", "els => els.map(e => e.dataset.orgUnit)"))
    assert units == {"chinek"}
    text = staff.locator("main").inner_text()
    for other in ("Tomo", "Sezim", "Jiger", "Batken", "Naryn"):
        assert other not in text
    assert staff.locator("[data-test=org]").count() == 0
    screenshot(staff, "dashboard-grantee-staff")
    staff.goto("/grantees/tomo/targets")
    assert "This page does not exist" in staff.locator("main").inner_text()
