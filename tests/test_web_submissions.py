"""The submissions pages through the Flask test client: filters, keyset paging, search, bad
parameters, grantee scope, personal data, audits, review state, comments and the edit diff."""
import io
import re

import pytest
from PIL import Image
from sqlalchemy import select

from fieldsync.extensions import db
from fieldsync.models import Audit, Submission

from collect import SEMINAR, instance_id_of, instance_xml, post

FORMS = ("seminar_attendance", "beneficiary_interview", "consultation_log")


def jpeg(colour=(31, 95, 139)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def phones(client, make_app_user):
    made = {"chinek": make_app_user(name="Чинек планшет 1", grantee="chinek"),
            "tomo": make_app_user(name="Томо планшет 1", grantee="tomo"),
            "evaluator": make_app_user(name="Evaluator phone", evaluator=True)}
    token = made["chinek"]["token"]
    forms = {f: client.get(f"/v1/key/{token}/projects/1/forms/{f}.xml").data for f in FORMS}
    return {"tokens": {k: v["token"] for k, v in made.items()}, "forms": forms}


def send(client, phones, phone, form, values, files=None, **kw):
    xml = instance_xml(phones["forms"][form], values, **kw)
    response = post(client, f"/v1/key/{phones['tokens'][phone]}/projects/1/submission", xml, files)
    assert response.status_code == 201, response.data
    return instance_id_of(xml)


def seminar(**changes):
    return {**SEMINAR, **changes}


def interview(**changes):
    return {"grantee": "chinek", "region": "chuy", "village": "Kant", "interview_date": "2026-11-21",
            "consent": "yes", "beneficiary_type": "victim", "satisfaction": 5, "knowledge_gained": 4,
            "would_recommend": "yes", "found_legal_work": "yes",
            "story": "Мне помогли вернуться домой", "respondent_name": "Гүлнара Бекова", **changes}


def ids_on(html: str) -> list[str]:
    return re.findall(r'<tr data-instance-id="([^"]+)"', html)


def test_the_table_lists_newest_first_with_the_columns(client, phones, web_client):
    first = send(client, phones, "chinek", "seminar_attendance", seminar(village="Kant"))
    second = send(client, phones, "tomo", "seminar_attendance", seminar(grantee="tomo", photo="photo.jpg"),
                  files={"photo.jpg": jpeg()})
    web = web_client("coordinator")
    page = web.get("/submissions?form=seminar_attendance")
    assert page.status_code == 200
    html = page.data.decode()
    assert ids_on(html) == [second, first]
    assert "Томо планшет 1" in html and "Чинек планшет 1" in html
    assert "badge-received" in html and 'data-test="count"' in html
    row = html[html.index(f'data-instance-id="{second}"'):]
    row = row[:row.index("</tr>")]
    assert '<td class="num">1' in row  # one photo


def test_the_default_form_is_the_first_with_submissions(client, phones, web_client):
    iid = send(client, phones, "chinek", "beneficiary_interview", interview())
    html = web_client("coordinator").get("/submissions").data.decode()
    assert ids_on(html) == [iid]
    assert 'class="active" aria-current="page">Beneficiary' in html or "beneficiary" in html.lower()


def test_each_filter_narrows(app, client, phones, web_client):
    a = send(client, phones, "chinek", "seminar_attendance", seminar(meta={"instanceName": "chinek seminar 2026-11-20 Кант"}))
    b = send(client, phones, "tomo", "seminar_attendance", seminar(grantee="tomo"))
    c = send(client, phones, "evaluator", "seminar_attendance", seminar(grantee="tomo"))
    coordinator = web_client("coordinator")
    with app.app_context():
        tomo_region = db.session.execute(db.text("select region_code from grantees where code='tomo'")).scalar()
        chinek_region = db.session.execute(db.text("select region_code from grantees where code='chinek'")).scalar()
        evaluator_id = db.session.execute(db.text("select id from app_users where is_evaluator")).scalar()
        sub = db.session.scalar(select(Submission).where(Submission.instance_id == a))
        sub.review_state = "approved"
        db.session.commit()
    base = "/submissions?form=seminar_attendance"

    def listed(query):
        response = coordinator.get(base + query)
        assert response.status_code == 200, response.data[:500]
        return set(ids_on(response.data.decode()))
    assert listed("") == {a, b, c}
    assert listed("&grantee=tomo") == {b, c}
    assert listed("&grantee=chinek") == {a}
    if tomo_region != chinek_region:
        assert listed(f"&region={chinek_region}") == {a}
        assert listed(f"&region={tomo_region}") == {b, c}
    assert listed("&reviewState=approved") == {a}
    assert listed("&reviewState=received") == {b, c}
    assert listed("&reviewState=hasIssues") == set()
    assert listed(f"&submitter=app:{evaluator_id}") == {c}
    assert listed("&from=2020-01-01&to=2099-12-31") == {a, b, c}
    assert listed("&to=2020-01-01") == set()
    assert listed("&from=2099-01-01") == set()
    # search by instance id, with or without the uuid: prefix, and by instance name
    assert listed(f"&q={b}") == {b}
    assert listed(f"&q={b.removeprefix('uuid:')}") == {b}
    assert listed("&q=Кант") == {a}
    assert listed("&q=кант") == {a}  # any case, Cyrillic too
    assert listed("&q=2026-11-20 К") == {a}
    assert listed("&q=100%") == set()
    assert listed("&q=nothing-like-this") == set()
    # the dashboard's links, with or without a form (then the first form that has submissions)
    assert listed("&reviewState=received&grantee=tomo") == {b, c}
    for query, expected in (("reviewState=received", {b, c}), ("reviewState=hasIssues", set())):
        response = coordinator.get("/submissions?" + query)
        assert response.status_code == 200 and set(ids_on(response.data.decode())) == expected
    assert "No submission matches these filters" in coordinator.get(base + "&q=zzz").data.decode()


@pytest.mark.parametrize("query", [
    "reviewState=bogus", "from=yesterday", "to=2026-13-45", "from=2026-12-01&to=2026-11-01",
    "after=abc", "before=-1", "after=99999999999999999999999", "grantee=nosuch", "region=atlantis",
    "submitter=app:999999", "submitter=root", "form=nosuch", "q=" + "x" * 300])
def test_bad_filters_are_a_clear_400_page(client, phones, web_client, query):
    send(client, phones, "chinek", "seminar_attendance", seminar())
    url = "/submissions?" + query if query.startswith("form=") else "/submissions?form=seminar_attendance&" + query
    response = web_client("coordinator").get(url)
    assert response.status_code == 400
    html = response.data.decode()
    assert 'data-test="bad-filter"' in html and "Traceback" not in html


def test_paging_forwards_and_backwards_visits_each_once(app, client, phones, web_client, monkeypatch):
    from fieldsync.review import browse
    monkeypatch.setattr(browse, "PAGE_SIZE", 4)
    sent = [send(client, phones, "chinek", "consultation_log", {
        "grantee": "chinek", "service_date": "2026-11-02", "channel": "hotline", "service_type": "legal",
        "client_sex": "female", "client_age_group": "18_35", "client_is_victim": "no",
        "client_code": f"CODE{i:02d}"}) for i in range(11)]
    web = web_client("coordinator")
    url = "/submissions?form=consultation_log"
    pages, seen = [], []
    while url:
        html = web.get(url).data.decode()
        ids = ids_on(html)
        assert 0 < len(ids) <= 4
        pages.append(ids)
        seen += ids
        older = re.search(r'href="([^"]+)" rel="next"', html)
        url = older.group(1).replace("&amp;", "&") if older else None
    assert seen == list(reversed(sent))  # newest first, each exactly once
    assert [len(p) for p in pages] == [4, 4, 3]
    assert "after=" in url if url else True
    # and back from the last page by the newer links
    back = []
    html = web.get(f"/submissions?form=consultation_log&after={_id_of(app, pages[-2][-1])}").data.decode()
    assert ids_on(html) == pages[-1]
    while True:
        newer = re.search(r'href="([^"]+)" rel="prev"', html)
        if not newer:
            break
        assert "before=" in newer.group(1)
        html = web.get(newer.group(1).replace("&amp;", "&")).data.decode()
        back.insert(0, ids_on(html))
    assert back == pages[:-1]


def _id_of(app, instance_id):
    with app.app_context():
        return db.session.scalar(select(Submission.id).where(Submission.instance_id == instance_id))


def test_grantee_staff_see_only_their_grantee(client, phones, web_client):
    mine = send(client, phones, "chinek", "seminar_attendance", seminar(photo="p.jpg"), files={"p.jpg": jpeg()})
    theirs = send(client, phones, "tomo", "seminar_attendance", seminar(grantee="tomo", photo="t.jpg"),
                  files={"t.jpg": jpeg((200, 10, 10))})
    staff = web_client("grantee_staff", grantee="chinek")
    html = staff.get("/submissions?form=seminar_attendance").data.decode()
    assert ids_on(html) == [mine]
    assert 'value="tomo"' not in html and "Томо планшет" not in html  # not even in the filters
    assert staff.get("/submissions?form=seminar_attendance&grantee=tomo").status_code == 400
    assert staff.get(f"/submissions/seminar_attendance/{theirs}").status_code in (403, 404)
    assert staff.get(f"/submissions/seminar_attendance/{theirs}/files/t.jpg").status_code in (403, 404)
    assert staff.post(f"/submissions/seminar_attendance/{theirs}/comments", data={"body": "x"}).status_code in (403, 404)
    assert staff.get(f"/submissions/seminar_attendance/{mine}").status_code == 200
    assert staff.post(f"/submissions/seminar_attendance/{mine}/review",
                      data={"reviewState": "approved"}).status_code == 403
    # unknown things are 404 pages, not errors
    assert staff.get("/submissions/seminar_attendance/uuid:nope").status_code == 404
    assert staff.get("/submissions/no_such_form/uuid:nope").status_code == 404


def test_viewers_cannot_open_submissions(client, phones, web_client):
    iid = send(client, phones, "chinek", "beneficiary_interview", interview())
    viewer = web_client("viewer")
    assert viewer.get("/submissions").status_code == 403
    assert viewer.get(f"/submissions/beneficiary_interview/{iid}").status_code == 403
    assert "Submissions" not in viewer.get("/").data.decode().split("</nav>")[0]


def test_personal_fields_hidden_without_the_right_and_reads_audited(app, client, phones, web_client):
    iid = send(client, phones, "chinek", "beneficiary_interview", interview())
    url = f"/submissions/beneficiary_interview/{iid}"
    staff = web_client("grantee_staff", grantee="chinek")
    html = staff.get(url).data.decode()
    assert "Гүлнара Бекова" not in html and "Мне помогли" not in html
    assert html.count('data-test="hidden-personal"') >= 2
    assert "Overall, how satisfied" in html  # other answers are shown, with their labels
    coordinator = web_client("coordinator", language="ru")
    html = coordinator.get(url).data.decode()
    assert "Гүлнара Бекова" in html and "Мне помогли вернуться домой" in html
    assert 'data-test="hidden-personal"' not in html
    assert "Да" in html  # the choice label of "yes" in Russian
    with app.app_context():
        reads = db.session.scalars(select(Audit).where(Audit.action == "submission.read")).all()
        assert [(a.details["what"], a.details["personal"]) for a in reads] == [("page", False), ("page", True)]


def test_labels_choices_repeats_and_a_thumbnail(client, phones, web_client):
    iid = send(client, phones, "chinek", "seminar_attendance", seminar(photo="event.jpg"),
               files={"event.jpg": jpeg()})
    web = web_client("coordinator")
    html = web.get(f"/submissions/seminar_attendance/{iid}").data.decode()
    assert "Type of event" in html and "Seminar" in html  # label and choice label
    assert "Risks of human trafficking" in html
    assert "Issyk-Ata" in html  # from the form's rayons.csv
    assert "Bakyt Osmonov" in html and "School student" in html  # the repeat as a table
    thumb = re.search(r'<img class="thumb" src="([^"]+)"', html).group(1)
    image = web.get(thumb)
    assert image.status_code == 200 and image.content_type == "image/jpeg"
    assert image.data[:3] == b"\xff\xd8\xff"
    russian = web_client("coordinator", language="ru").get(f"/submissions/seminar_attendance/{iid}").data.decode()
    assert "Тип мероприятия" in russian or "Семинар" in russian
    # a grantee_staff member of the same grantee sees the photo is there but not the photo
    staff = web_client("grantee_staff", grantee="chinek")
    html = staff.get(f"/submissions/seminar_attendance/{iid}").data.decode()
    assert "<img" not in html and "Bakyt Osmonov" not in html
    assert staff.get(thumb).status_code == 403


def test_review_state_and_comment(app, client, phones, web_client):
    iid = send(client, phones, "chinek", "seminar_attendance", seminar())
    url = f"/submissions/seminar_attendance/{iid}"
    web = web_client("coordinator")
    response = web.post(url + "/review", data={"reviewState": "approved", "note": "Сверено со списком"})
    assert response.status_code == 302
    html = web.get(response.headers["Location"]).data.decode()
    assert "flash-success" in html and "Approved" in html and "Сверено со списком" in html
    response = web.post(url + "/comments", data={"body": "Фото не видно, пришлите заново"})
    html = web.get(response.headers["Location"]).data.decode()
    assert "Comment added" in html and "Фото не видно, пришлите заново" in html
    assert web.post(url + "/comments", data={"body": "   "}).status_code == 302
    assert web.post(url + "/review", data={"reviewState": "edited"}).status_code == 400
    assert web.client.post(url + "/review", data={"reviewState": "approved"}).status_code == 403  # no CSRF
    with app.app_context():
        assert db.session.scalar(select(Submission.review_state).where(Submission.instance_id == iid)) == "approved"
    listed = web.get("/submissions?form=seminar_attendance&reviewState=approved").data.decode()
    assert ids_on(listed) == [iid]
    # the audit trail shows who saw and changed it
    html = web.get(url).data.decode()
    assert 'data-test="audits"' in html and "Review state set" in html and "Commented" in html


def test_the_edit_history_shows_what_changed(client, phones, web_client):
    first = send(client, phones, "chinek", "seminar_attendance", seminar(village="Kant", headcount_male=3))
    edited = send(client, phones, "chinek", "seminar_attendance",
                  seminar(village="Kant-2", headcount_male=8, topic="employment",
                          participant=[{**SEMINAR["participant"][0], "full_name": "Бакыт Осмонов"},
                                       SEMINAR["participant"][1]]),
                  deprecated_id=first)
    assert edited != first
    web = web_client("coordinator")
    # the edit's own instance id finds the submission (named by its first instance id)
    assert ids_on(web.get(f"/submissions?form=seminar_attendance&q={edited}").data.decode()) == [first]
    html = web.get(f"/submissions/seminar_attendance/{first}").data.decode()
    assert html.count('data-test="version"') == 2
    diff = html[html.index('data-test="diff"'):]
    diff = diff[:diff.index("</table>")]
    assert '<span class="diff-del">Kant</span>' in diff and '<span class="diff-add">Kant-2</span>' in diff
    assert '<span class="diff-del">3</span>' in diff and '<span class="diff-add">8</span>' in diff
    assert "Safe employment" in diff or "mployment" in diff
    assert "Бакыт Осмонов" in diff and "Trainer" not in diff  # unchanged answers are not listed
    staff_html = web_client("grantee_staff", grantee="chinek").get(
        f"/submissions/seminar_attendance/{first}").data.decode()
    staff_diff = staff_html[staff_html.index('data-test="diff"'):]
    assert "Бакыт Осмонов" not in staff_html and "changed; hidden: personal data" in staff_diff


def test_the_table_reads_a_page_from_an_index_not_a_sort(app):
    """At 1M rows a page must not sort the whole form: the plan walks an index in id order."""
    from zoneinfo import ZoneInfo
    from fieldsync.auth import Actor
    from fieldsync.models import Form
    from fieldsync.review import browse
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
        form = db.session.scalar(select(Form).where(Form.xml_form_id == "seminar_attendance"))
        coordinator, staff = Actor("user", 1, "coordinator", "c"), Actor("user", 2, "grantee_staff", "s", grantee_id=2)
        for actor, filters in ((coordinator, browse.Filters()), (staff, browse.Filters()),
                               (coordinator, browse.Filters(grantee_ids=(3,))),
                               (coordinator, browse.Filters(review_state="hasIssues"))):
            query = browse._filtered(actor, form, filters, ZoneInfo("Asia/Bishkek")).where(
                Submission.id < 1000).order_by(Submission.id.desc()).limit(51)
            sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
            plan = " ".join(row[-1] for row in db.session.execute(db.text("EXPLAIN QUERY PLAN " + sql)))
            assert "USING INDEX ix_submissions_form_" in plan and "TEMP B-TREE" not in plan, plan
