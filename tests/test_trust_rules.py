"""The trust rules: no device, user or script changes what its grantee scope does not allow.

Every refused request is checked to have changed nothing: the submission rows (review state,
hold, grantee, current version), the versions, the stored files and the indicator values.
Through the real app: device key URLs (OpenRosa), Bearer tokens (REST), on SQLite and PostgreSQL.
"""
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collect import SEMINAR, instance_id_of, instance_xml, post
from fieldsync import indicators
from fieldsync.extensions import db
from fieldsync.models import Blob, Comment, IndicatorValue, Submission, SubmissionDef

BASE = "/v1/projects/1/forms/seminar_attendance/submissions"
TOMO = {**SEMINAR, "grantee": "tomo", "region": "issyk_kul", "rayon": "ak_suu", "village": "Karakol",
        "participant": [{"full_name": "Жаныл Тологонова", "sex": "female", "birth_year": 2007,
                         "category": "student"}]}


def snapshot(app):
    """Everything a refused request must leave as it was."""
    indicators.drain(app)
    with app.app_context():
        subs = sorted(tuple(r) for r in db.session.execute(select(
            Submission.id, Submission.grantee_id, Submission.review_state, Submission.hold,
            Submission.current_def_id, Submission.updated_at)))
        defs = sorted(tuple(r) for r in db.session.execute(select(SubmissionDef.id, SubmissionDef.xml_sha256)))
        blobs = db.session.scalar(select(func.count()).select_from(Blob))
        values = sorted(tuple(str(c) for c in r) for r in db.session.execute(select(IndicatorValue.__table__)))
        return {"submissions": subs, "defs": defs, "blobs": blobs, "values": values}


def counted_for(app, code: str) -> int:
    """How many seminars count for a grantee in the indicators (all time)."""
    indicators.drain(app)
    with app.app_context():
        from fieldsync.models import Event, Grantee
        return db.session.scalar(select(func.count()).select_from(Event).join(
            Grantee, Grantee.id == Event.grantee_id).where(Grantee.code == code, Event.counted.is_(True)))


@pytest.fixture
def world(client, make_app_user, make_user):
    """A seminar from a Chinek device, one from a Tomo device, and the people around them."""
    chinek = make_app_user(name="Chinek tablet", grantee="chinek")["token"]
    tomo = make_app_user(name="Tomo tablet", grantee="tomo")["token"]
    form_xml = client.get(f"/v1/key/{chinek}/projects/1/forms/seminar_attendance.xml").data
    chinek_xml = instance_xml(form_xml, SEMINAR)
    tomo_xml = instance_xml(form_xml, TOMO)
    assert post(client, f"/v1/key/{chinek}/projects/1/submission", chinek_xml).status_code == 201
    assert post(client, f"/v1/key/{tomo}/projects/1/submission", tomo_xml).status_code == 201
    return {"form_xml": form_xml, "chinek": chinek, "tomo": tomo,
            "chinek_id": instance_id_of(chinek_xml), "tomo_id": instance_id_of(tomo_xml),
            "coordinator": make_user("coordinator"),
            "chinek_staff": make_user("grantee_staff", grantee="chinek"),
            "tomo_staff": make_user("grantee_staff", grantee="tomo")}


def _edit_of(world, target_id, values=None, new_id=None):
    return instance_xml(world["form_xml"], values or {**SEMINAR, "topic": "safe_migration"},
                        instance_id=new_id, deprecated_id=target_id)


def _rest(client, headers, xml, method="post", url=BASE):
    return getattr(client, method)(url, data=xml, headers={**headers, "Content-Type": "application/xml"})


# --- 1. edits in scope only -------------------------------------------------------------------

def test_a_device_cannot_edit_another_grantees_submission(app, client, world):
    before = snapshot(app)
    xml = _edit_of(world, world["chinek_id"])
    response = post(client, f"/v1/key/{world['tomo']}/projects/1/submission", xml,
                    files={"group.jpg": b"\xff\xd8\xffJPEG-from-tomo"})
    assert response.status_code == 403 and b"You may not edit" in response.data
    assert snapshot(app) == before  # no version, no file, no state, no indicator moved


def test_a_device_edits_its_own_grantees_submission(app, client, world, make_app_user):
    second = make_app_user(name="Chinek tablet 2", grantee="chinek")["token"]
    response = post(client, f"/v1/key/{second}/projects/1/submission", _edit_of(world, world["chinek_id"]))
    assert response.status_code == 201
    row = client.get(f"{BASE}/{world['chinek_id']}", headers=world["coordinator"]).get_json()
    assert row["reviewState"] == "edited" and row["currentVersion"]["deprecatedId"] == world["chinek_id"]


@pytest.mark.parametrize("method", ["post", "put"])
def test_grantee_staff_cannot_edit_another_grantees_submission_over_rest(app, client, world, method):
    before = snapshot(app)
    xml = _edit_of(world, world["chinek_id"])
    url = BASE if method == "post" else f"{BASE}/{world['chinek_id']}"
    response = _rest(client, world["tomo_staff"], xml, method, url)
    # POST names the other's id inside the XML: refused as an edit out of scope. PUT names it in
    # the URL: an out-of-scope id answers as an unknown one.
    assert response.status_code == (403 if method == "post" else 404), response.get_json()
    assert response.get_json()["code"] == (403.102 if method == "post" else 404.1)
    assert snapshot(app) == before


def test_a_put_whose_xml_replaces_another_submission_is_refused_before_anything_is_stored(app, client, world):
    """PUT …/submissions/{own} with a deprecatedID of someone else's: before, the edit was saved
    and then the request refused."""
    own = instance_xml(world["form_xml"], {**TOMO, "village": "Ton"})
    assert _rest(client, world["tomo_staff"], own).status_code == 200
    before = snapshot(app)
    xml = _edit_of(world, world["chinek_id"])
    response = _rest(client, world["tomo_staff"], xml, "put", f"{BASE}/{instance_id_of(own)}")
    assert response.status_code == 403 and response.get_json()["code"] == 403.102
    assert snapshot(app) == before
    # A coordinator may edit both, but a PUT still edits only the submission its URL names.
    response = _rest(client, world["coordinator"], xml, "put", f"{BASE}/{instance_id_of(own)}")
    assert response.status_code == 400 and "deprecatedID" in response.get_json()["message"]
    assert snapshot(app) == before


def test_an_evaluators_device_edits_only_what_it_sent(app, client, world, make_app_user):
    evaluator = make_app_user(name="Evaluator phone", evaluator=True)["token"]
    before = snapshot(app)
    response = post(client, f"/v1/key/{evaluator}/projects/1/submission", _edit_of(world, world["chinek_id"]))
    assert response.status_code == 403 and b"You may not edit" in response.data
    assert snapshot(app) == before
    mine = instance_xml(world["form_xml"], {**SEMINAR, "village": "Ivanovka"})
    assert post(client, f"/v1/key/{evaluator}/projects/1/submission", mine).status_code == 201
    edit = _edit_of(world, instance_id_of(mine), {**SEMINAR, "village": "Ivanovka", "topic": "safe_migration"})
    assert post(client, f"/v1/key/{evaluator}/projects/1/submission", edit).status_code == 201


def test_a_resend_with_files_into_another_grantees_submission_is_refused(app, client, world, make_app_user):
    """The same bytes again are a harmless success (Collect would otherwise resend for ever),
    but files merged into another grantee's submission would be an edit."""
    chinek_xml = client.get(f"{BASE}/{world['chinek_id']}.xml", headers=world["coordinator"]).data
    before = snapshot(app)
    assert post(client, f"/v1/key/{world['tomo']}/projects/1/submission", chinek_xml).status_code == 201
    response = post(client, f"/v1/key/{world['tomo']}/projects/1/submission", chinek_xml,
                    files={"group.jpg": b"\xff\xd8\xffJPEG"})
    assert response.status_code == 403
    assert snapshot(app) == before


# --- 2. reviews stick -------------------------------------------------------------------------

def test_an_edit_after_rejection_stays_rejected_and_uncounted_until_a_coordinator_reviews(app, client, world):
    coordinator = world["coordinator"]
    counted = counted_for(app, "chinek")
    assert client.patch(f"{BASE}/{world['chinek_id']}", json={"reviewState": "rejected"},
                        headers=coordinator).status_code == 200
    assert counted_for(app, "chinek") == counted - 1
    response = post(client, f"/v1/key/{world['chinek']}/projects/1/submission", _edit_of(world, world["chinek_id"]))
    assert response.status_code == 201  # kept: the trainer's work is never lost
    row = client.get(f"{BASE}/{world['chinek_id']}", headers=coordinator).get_json()
    assert row["reviewState"] == "rejected" and row["hold"] == "edited_after_rejection"
    assert row["currentVersion"]["deprecatedId"] == world["chinek_id"]
    assert counted_for(app, "chinek") == counted - 1
    comments = client.get(f"{BASE}/{world['chinek_id']}/comments", headers=coordinator).get_json()
    assert any("Edited after rejection" in c["body"] for c in comments)
    # Grantee staff cannot lift it either: they may not review.
    assert client.patch(f"{BASE}/{world['chinek_id']}", json={"reviewState": "approved"},
                        headers=world["chinek_staff"]).status_code == 403
    assert counted_for(app, "chinek") == counted - 1
    # The coordinator's review decides, and clears the hold.
    assert client.patch(f"{BASE}/{world['chinek_id']}", json={"reviewState": "approved"},
                        headers=coordinator).status_code == 200
    row = client.get(f"{BASE}/{world['chinek_id']}", headers=coordinator).get_json()
    assert row["reviewState"] == "approved" and row["hold"] is None
    assert counted_for(app, "chinek") == counted


def test_the_web_page_shows_edited_after_rejection(app, client, world, web_client):
    client.patch(f"{BASE}/{world['chinek_id']}", json={"reviewState": "rejected"}, headers=world["coordinator"])
    post(client, f"/v1/key/{world['chinek']}/projects/1/submission", _edit_of(world, world["chinek_id"]))
    page = web_client("coordinator").get(f"/submissions/seminar_attendance/{world['chinek_id']}")
    assert page.status_code == 200 and "Edited after rejection" in page.get_data(as_text=True)


# --- 3. no counting for another grantee -------------------------------------------------------

def test_grantee_staff_cannot_create_a_submission_for_another_grantee(app, client, world):
    before = snapshot(app)
    xml = instance_xml(world["form_xml"], TOMO)
    response = _rest(client, world["chinek_staff"], xml)
    assert response.status_code == 403 and response.get_json()["code"] == 403.103
    assert snapshot(app) == before
    assert _rest(client, world["chinek_staff"], instance_xml(world["form_xml"], SEMINAR)).status_code == 200


def test_a_device_naming_another_grantee_is_kept_on_hold_and_counted_for_nobody(app, client, world):
    coordinator = world["coordinator"]
    chinek, tomo = counted_for(app, "chinek"), counted_for(app, "tomo")
    xml = instance_xml(world["form_xml"], {**TOMO, "village": "Jety-Oguz"})
    assert post(client, f"/v1/key/{world['chinek']}/projects/1/submission", xml).status_code == 201
    row = client.get(f"{BASE}/{instance_id_of(xml)}", headers=coordinator).get_json()
    assert row["reviewState"] == "hasIssues" and row["hold"] == "grantee" and row["grantee"] == "chinek"
    assert (counted_for(app, "chinek"), counted_for(app, "tomo")) == (chinek, tomo)
    # Tomo's staff never see what a Chinek device claimed for them.
    assert client.get(f"{BASE}/{instance_id_of(xml)}", headers=world["tomo_staff"]).status_code == 404
    # The device's own edit does not lift the hold.
    edit = instance_xml(world["form_xml"], {**TOMO, "village": "Jety-Oguz", "topic": "safe_migration"},
                        deprecated_id=instance_id_of(xml))
    assert post(client, f"/v1/key/{world['chinek']}/projects/1/submission", edit).status_code == 201
    assert client.get(f"{BASE}/{instance_id_of(xml)}", headers=coordinator).get_json()["hold"] == "grantee"
    assert (counted_for(app, "chinek"), counted_for(app, "tomo")) == (chinek, tomo)
    # A coordinator decides it is Tomo's.
    response = client.patch(f"{BASE}/{instance_id_of(xml)}", json={"reviewState": "approved", "grantee": "tomo"},
                            headers=coordinator)
    assert response.status_code == 200 and response.get_json()["grantee"] == "tomo"
    assert response.get_json()["hold"] is None
    assert (counted_for(app, "chinek"), counted_for(app, "tomo")) == (chinek, tomo + 1)


def test_a_device_edit_naming_another_grantee_puts_it_on_hold(app, client, world):
    chinek = counted_for(app, "chinek")
    edit = _edit_of(world, world["chinek_id"], {**SEMINAR, "grantee": "tomo"})
    assert post(client, f"/v1/key/{world['chinek']}/projects/1/submission", edit).status_code == 201
    row = client.get(f"{BASE}/{world['chinek_id']}", headers=world["coordinator"]).get_json()
    assert row["hold"] == "grantee" and row["grantee"] == "chinek" and row["reviewState"] == "hasIssues"
    assert counted_for(app, "chinek") == chinek - 1


def test_system_comments_say_why_a_submission_is_held(app, client, world):
    xml = instance_xml(world["form_xml"], TOMO)
    post(client, f"/v1/key/{world['chinek']}/projects/1/submission", xml)
    with app.app_context():
        bodies = list(db.session.scalars(select(Comment.body).join(Submission, Submission.id == Comment.submission_id)
                                         .where(Submission.instance_id == instance_id_of(xml))))
    assert any("Counted for nobody" in b for b in bodies)


def test_in_the_web_app_a_coordinator_decides_a_held_submission_and_staff_cannot(app, client, world, web_client):
    xml = instance_xml(world["form_xml"], {**TOMO, "village": "Barskoon"})
    post(client, f"/v1/key/{world['chinek']}/projects/1/submission", xml)
    url = f"/submissions/seminar_attendance/{instance_id_of(xml)}"
    tomo = counted_for(app, "tomo")
    staff = web_client("grantee_staff", grantee="chinek")
    before = snapshot(app)
    assert staff.post(url + "/review", data={"reviewState": "approved", "grantee": "chinek"}).status_code == 403
    assert snapshot(app) == before
    coordinator = web_client("coordinator")
    page = coordinator.get(url).get_data(as_text=True)
    assert "Names another grantee" in page and 'data-test="review-grantee"' in page
    assert coordinator.post(url + "/review", data={"reviewState": "approved", "grantee": "tomo"}).status_code == 302
    row = client.get(f"{BASE}/{instance_id_of(xml)}", headers=world["coordinator"]).get_json()
    assert (row["grantee"], row["hold"], row["reviewState"]) == ("tomo", None, "approved")
    assert counted_for(app, "tomo") == tomo + 1


# --- what the review was decided on stays decided on ------------------------------------------

def _photo_seminar(world, client):
    xml = instance_xml(world["form_xml"], {**SEMINAR, "village": "Kemin", "photo": "group.jpg"})
    assert post(client, f"/v1/key/{world['chinek']}/projects/1/submission", xml,
                files={"group.jpg": b"\xff\xd8\xffFIRST"}).status_code == 201
    return xml


def test_a_file_replaced_after_approval_sends_the_submission_back_for_review(app, client, world):
    xml = _photo_seminar(world, client)
    iid = instance_id_of(xml)
    client.patch(f"{BASE}/{iid}", json={"reviewState": "approved"}, headers=world["coordinator"])
    assert post(client, f"/v1/key/{world['chinek']}/projects/1/submission", xml,
                files={"group.jpg": b"\xff\xd8\xffSWAPPED"}).status_code == 201
    row = client.get(f"{BASE}/{iid}", headers=world["coordinator"]).get_json()
    assert row["reviewState"] == "edited"
    comments = client.get(f"{BASE}/{iid}/comments", headers=world["coordinator"]).get_json()
    assert any("Files changed after approval" in c["body"] for c in comments)


def test_a_file_uploaded_to_a_rejected_submission_keeps_it_rejected_and_held(app, client, world):
    xml = _photo_seminar(world, client)
    iid = instance_id_of(xml)
    client.patch(f"{BASE}/{iid}", json={"reviewState": "rejected"}, headers=world["coordinator"])
    response = client.post(f"{BASE}/{iid}/attachments/group.jpg", data=b"\xff\xd8\xffSWAPPED",
                           headers={**world["chinek_staff"], "Content-Type": "image/jpeg"})
    assert response.status_code == 200
    row = client.get(f"{BASE}/{iid}", headers=world["coordinator"]).get_json()
    assert (row["reviewState"], row["hold"]) == ("rejected", "edited_after_rejection")


def _blob_files(app) -> int:
    return sum(1 for p in (Path(app.instance_path) / "blobs").rglob("*") if p.is_file())


def test_refused_resends_leave_no_file_on_disk(app, client, world):
    xml = _photo_seminar(world, client)
    iid = instance_id_of(xml)
    files = _blob_files(app)
    url = f"/v1/key/{world['chinek']}/projects/1/submission"
    other = instance_xml(world["form_xml"], {**SEMINAR, "village": "Other", "photo": "group.jpg"}, instance_id=iid)
    assert post(client, url, other, files={"group.jpg": b"\xff\xd8\xffDIFFERENT-XML"}).status_code == 409
    edit = _edit_of(world, iid, {**SEMINAR, "village": "Kemin", "topic": "safe_migration"})
    assert post(client, url, edit).status_code == 201
    assert post(client, url, xml, files={"group.jpg": b"\xff\xd8\xffSUPERSEDED"}).status_code == 409
    client.delete(f"{BASE}/{iid}", headers=world["coordinator"])
    assert post(client, url, edit, files={"group.jpg": b"\xff\xd8\xffDELETED"}).status_code == 409
    assert _blob_files(app) == files


# --- other answers that must not tell another grantee's things apart --------------------------

def test_indicator_values_for_another_grantee_answer_as_for_an_unknown_code(app, client, world):
    staff = world["chinek_staff"]
    theirs = client.get("/v1/projects/1/indicator-values?orgUnit=tomo", headers=staff)
    nobodys = client.get("/v1/projects/1/indicator-values?orgUnit=zzz", headers=staff)
    assert theirs.status_code == nobodys.status_code == 400
    assert theirs.get_json()["code"] == nobodys.get_json()["code"] == 400.8
    assert client.get("/v1/projects/1/indicator-values?orgUnit=chinek", headers=staff).status_code == 200
    for headers in (staff, world["coordinator"]):
        for path in ("indicator-values", "indicator-values.csv", "targets"):
            assert client.get(f"/v1/projects/2/{path}", headers=headers).status_code == 404, path
