"""Reviewing in a real browser (headless Chromium against gunicorn): a coordinator filters the
submissions table, opens a seminar with its photo, approves it with a note and comments; then
merges a look-alike person in the duplicates queue and sees the dashboard's figure change."""
import io
import re

import pytest
from PIL import Image, ImageDraw

from collect import SEMINAR, instance_xml, post

pytestmark = pytest.mark.browser

PEOPLE = [("Бакыт Осмонов", "male", 2008), ("Айзада Токонова", "female", 2009),
          ("Нурлан Жумабеков", "male", 2007), ("Гүлзат Мамытова", "female", 2008)]


def event_photo() -> bytes:
    """A small, plausible photo: a room with a screen and a row of people."""
    image = Image.new("RGB", (640, 420), (226, 219, 205))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 300, 640, 420), fill=(150, 118, 92))
    draw.rectangle((170, 40, 470, 210), fill=(245, 247, 250), outline=(60, 60, 60), width=4)
    draw.rectangle((195, 70, 445, 95), fill=(31, 95, 139))
    for i in range(5):
        draw.rectangle((195, 110 + i * 18, 300 + (i * 37) % 140, 120 + i * 18), fill=(120, 130, 140))
    for i, colour in enumerate([(180, 40, 40), (40, 110, 60), (200, 150, 30), (60, 80, 160), (120, 60, 120), (30, 130, 140)]):
        x = 40 + i * 100
        draw.ellipse((x + 15, 250, x + 55, 290), fill=(205, 160, 120))
        draw.rounded_rectangle((x, 288, x + 70, 380), radius=18, fill=colour)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


@pytest.fixture
def programme_data(app, client, make_app_user):
    """Seminars, consultations and interviews from several grantees' phones, as in the field."""
    phones = {code: make_app_user(name=name, grantee=code)["token"] for code, name in (
        ("chinek", "Чинек — планшет Айгүл"), ("tomo", "Томо — телефон Эрмека"),
        ("cssc_jalalabad", "ЦПГО Жалал-Абад — планшет 2"), ("kelechek_dooru", "Келечек Доору — планшет 1"))}
    forms = {f: client.get(f"/v1/key/{phones['chinek']}/projects/1/forms/{f}.xml").data
             for f in ("seminar_attendance", "consultation_log", "beneficiary_interview")}
    sent = {}

    def send(phone, form, values, files=None, key=None, deprecated_id=None):
        xml = instance_xml(forms[form], values, deprecated_id=deprecated_id)
        response = post(client, f"/v1/key/{phones[phone]}/projects/1/submission", xml, files)
        assert response.status_code == 201, response.data
        if key:
            sent[key] = re.search(rb"<instanceID>([^<]+)</instanceID>", xml).group(1).decode()

    def seminar(grantee, region, rayon, village, day, people, **more):
        name = f"{grantee} seminar {day} {village}"
        return {**SEMINAR, "grantee": grantee, "region": region, "rayon": rayon, "village": village,
                "event_date": day, "meta": {"instanceName": name}, "register_participants": "yes",
                "participant": [{"full_name": n, "sex": s, "birth_year": y, "category": "student"}
                                for n, s, y in people], **more}
    send("tomo", "seminar_attendance", seminar("tomo", "issyk_kul", "karakol_city", "Каракол", "2026-11-12",
                                                PEOPLE[:2], trainer_name="Эрмек Усенов", headcount_female=14))
    send("cssc_jalalabad", "seminar_attendance", seminar("cssc_jalalabad", "jalal_abad", "suzak", "Сузак",
                                                          "2026-11-14", PEOPLE[2:], trainer_name="Жылдыз Абдыкадырова",
                                                          event_type="training", topic="labor_migration"))
    send("kelechek_dooru", "consultation_log", {
        "grantee": "kelechek_dooru", "service_date": "2026-11-15", "channel": "hotline", "service_type": "legal",
        "client_sex": "female", "client_age_group": "18_35", "client_is_victim": "yes", "client_code": "KD-0141"})
    send("chinek", "seminar_attendance", seminar(
        "chinek", "chuy", "issyk_ata", "Кант", "2026-11-20", PEOPLE, trainer_name="Айгүл Асанова",
        headcount_female=9, headcount_male=6, materials_distributed=40, photo="seminar-kant.jpg"),
        files={"seminar-kant.jpg": event_photo()}, key="kant")
    # the trainer corrects the headcount and the leaflets the next day: an edit of the same seminar
    send("chinek", "seminar_attendance", seminar(
        "chinek", "chuy", "issyk_ata", "Кант", "2026-11-20", PEOPLE, trainer_name="Айгүл Асанова",
        headcount_female=11, headcount_male=6, materials_distributed=45, photo="seminar-kant.jpg"),
        files={"seminar-kant.jpg": event_photo()}, key="kant-edit", deprecated_id=sent["kant"])
    send("chinek", "seminar_attendance", seminar("chinek", "chuy", "issyk_ata", "Ивановка", "2026-11-24",
                                                  [("Эльмира Садыкова", "female", 2009)], topic="bride_kidnapping"))
    send("chinek", "beneficiary_interview", {
        "grantee": "chinek", "region": "chuy", "village": "Кант", "interview_date": "2026-11-26", "consent": "yes",
        "beneficiary_type": "victim", "satisfaction": 5, "knowledge_gained": 4, "would_recommend": "yes",
        "found_legal_work": "yes", "respondent_name": "Гүлнара Бекова",
        "meta": {"instanceName": "chinek interview 2026-11-26 Кант"}})
    settle(app)
    return {"phones": phones, "forms": forms, "sent": sent, "send": send, "seminar": seminar}


def settle(app):
    """Let records and indicators catch up with what was sent (they may be built in the background)."""
    try:
        from fieldsync.indicators import process_pending
    except ImportError:
        return
    with app.app_context():
        process_pending()


def test_a_coordinator_reviews_a_submission(browser_as, programme_data, screenshot):
    page = browser_as("coordinator")
    page.click("nav.mainnav >> text=Submissions")
    page.wait_for_selector("[data-test=submissions-table]")
    page.click("[data-test=form-tabs] a[href*=seminar_attendance]")
    assert page.locator("[data-test=submissions-table] tbody tr").count() == 4
    page.select_option("select[name=grantee]", "chinek")
    page.click("[data-test=apply-filters]")
    page.wait_for_url(re.compile(r"grantee=chinek"))
    rows = page.locator("[data-test=submissions-table] tbody tr")
    assert rows.count() == 2
    assert "Чинек — планшет Айгүл" in rows.first.inner_text()
    page.fill("input[name=q]", "Кант")
    page.click("[data-test=apply-filters]")
    page.wait_for_url(re.compile(r"q="))
    assert rows.count() == 1
    page.click("[data-test=filters] >> text=Clear")
    page.wait_for_url(lambda url: "grantee=" not in url)
    page.select_option("select[name=region]", "chuy")
    page.click("[data-test=apply-filters]")
    page.wait_for_url(re.compile(r"region=chuy"))
    assert rows.count() == 2
    screenshot(page, "submissions")

    page.click("text=chinek seminar 2026-11-20 Кант")
    page.wait_for_selector("[data-test=answers]")
    answers = page.locator("[data-test=answers]").inner_text()
    assert "Type of event" in answers and "Seminar" in answers and "Risks of human trafficking" in answers
    assert "Айзада Токонова" in answers and "School student" in answers
    assert "11" in answers and "45" in answers  # the current version's answers
    diff = page.locator("[data-test=diff]").inner_text()
    assert "Information materials handed out" in diff and "40" in diff and "45" in diff
    assert page.locator("[data-test=diff] .diff-del", has_text="9").count() == 1
    page.wait_for_function("() => { const i = document.querySelector('img[data-test=thumbnail]');"
                           " return i && i.complete; }")
    assert page.evaluate("document.querySelector('img[data-test=thumbnail]').naturalWidth") == 640

    page.fill("[data-test=review] textarea[name=note]", "Список участников сверен с журналом")
    page.click("[data-test=approve]")
    page.wait_for_selector(".flash-success")
    assert "Approved" in page.locator(".flash-success").inner_text()
    assert "Список участников сверен с журналом" in page.locator("[data-test=review]").inner_text()
    page.fill("[data-test=comments] textarea[name=body]", "Фото хорошее, спасибо! Добавьте дату на плакате.")
    page.click("[data-test=add-comment]")
    page.wait_for_selector(".flash-success >> text=Comment added")
    assert "Фото хорошее" in page.locator("[data-test=comments]").inner_text()
    assert "Commented" in page.locator("[data-test=audits]").inner_text()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "submission-detail")
    # the table says so too
    page.goto("/submissions?form=seminar_attendance&reviewState=approved")
    assert page.locator("[data-test=submissions-table] tbody tr").count() == 1


def dashboard_figure(page, api_headers, grantee="chinek"):
    """unique_participants for a grantee as the dashboard shows it for all time, and as the API
    reads it."""
    page.goto("/?period=all")
    cell = page.locator(f"[data-indicator=unique_participants][data-org-unit={grantee}]")
    shown = None
    if cell.count():
        shown = cell.first.get_attribute("data-value") or cell.first.inner_text().strip()
    body = page.request.get(f"/v1/projects/1/indicator-values?dataElement=unique_participants&orgUnit={grantee}",
                            headers=api_headers).json()
    api = next((v["value"] for v in body.get("dataValues", []) if v["categoryOptionCombo"] == "total"
                and v["period"] == "" and v["orgUnit"] == grantee), "0")
    return shown, api


def test_a_coordinator_merges_a_person_and_the_dashboard_follows(app, browser_as, programme_data, screenshot,
                                                                 make_user):
    api_headers = make_user("coordinator")
    send, seminar = programme_data["send"], programme_data["seminar"]
    # the same girl, spelt differently on a later seminar: a look-alike person
    send("chinek", "seminar_attendance", seminar("chinek", "chuy", "issyk_ata", "Кант", "2026-11-27",
                                                  [("Айзада Токонаева", "female", 2009)], topic="gender_violence"))
    # more for the queue: a look-alike seminar and a look-alike person at Tomo
    send("tomo", "seminar_attendance", seminar("tomo", "issyk_kul", "karakol_city", "Каракол", "2026-11-12",
                                                [("Эрмек Сыдыков", "male", 2006)], trainer_name="Эрмек Усенов",
                                                headcount_female=30, topic="employment"))
    send("tomo", "seminar_attendance", seminar("tomo", "issyk_kul", "karakol_city", "Каракол", "2026-11-18",
                                                [("Айзада Токонава", "female", 2009)], topic="victim_support"))
    settle(app)
    page = browser_as("coordinator")
    shown, api = dashboard_figure(page, api_headers)
    assert shown is not None and shown == api, (shown, api)
    before = int(float(shown))

    page.click("nav.mainnav >> text=Duplicates")
    card = page.locator("[data-test=candidate][data-kind=person]", has_text="Айзада Токонаева")
    card.wait_for()
    assert "Айзада Токонова" in card.inner_text()
    screenshot(page, "duplicates")
    page.once("dialog", lambda dialog: dialog.accept())
    card.locator("[data-test=merge]").click()
    page.wait_for_selector(".flash-success")
    assert page.locator("[data-test=candidate]", has_text="Айзада Токонаева").count() == 0
    page.click("[data-test=tab-decided]")
    assert "Merged" in page.locator("[data-test=candidate]", has_text="Айзада Токонаева").inner_text()

    shown, api = dashboard_figure(page, api_headers)
    assert int(float(api)) == before - 1
    assert int(float(shown)) == before - 1, (shown, api)
