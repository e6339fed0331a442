"""Least privilege in the web app, checked over every page there is: a grantee_staff user of
one grantee reaches nothing of another grantee's by any URL, whatever ids or filters they try.

The test does not list the pages by hand: it walks the app's URL map, so a page added later is
checked too. Each URL parameter is filled with the other grantee's things (its code, its
submissions' instance ids, its devices' and targets' ids, and plain numbers)."""
import re

from collect import SEMINAR, instance_id_of, instance_xml, post

MARKERS = ("Tomo", "Жаныл Тологонова", "Karakol tablet")


def _send(client, token, values):
    form = client.get(f"/v1/key/{token}/projects/1/forms/seminar_attendance.xml").data
    xml = instance_xml(form, values)
    assert post(client, f"/v1/key/{token}/projects/1/submission", xml).status_code == 201
    return instance_id_of(xml)


def _fill(rule, values: dict) -> list[str]:
    urls = [rule.rule]
    for name in rule.arguments:
        urls = [url.replace(f"<{converter}{name}>", str(value)) for url in urls
                for converter in ("", "int:", "path:", "string:") if f"<{converter}{name}>" in url
                for value in values.get(name, values["*"])]
    return [url for url in urls if "<" not in url]


def test_grantee_staff_reach_nothing_of_another_grantee(app, client, make_app_user, web_client):
    chinek = make_app_user(name="Chinek tablet", grantee="chinek")["token"]
    tomo = make_app_user(name="Karakol tablet", grantee="tomo")["token"]
    _send(client, chinek, SEMINAR)
    tomo_id = _send(client, tomo, {**SEMINAR, "grantee": "tomo", "region": "issyk_kul", "rayon": "ak_suu",
                                   "village": "Karakol",
                                   "participant": [{"full_name": "Жаныл Тологонова", "sex": "female",
                                                    "birth_year": 2007, "category": "student"}]})
    staff = web_client("grantee_staff", grantee="chinek")
    coordinator = web_client("coordinator")
    numbers = list(range(1, 8)) + [2**31 - 1]
    values = {"*": numbers, "code": ["tomo"], "grantee": ["tomo"], "xml_form_id": ["seminar_attendance"],
              "instance_id": [tomo_id], "name": ["x.jpg"], "filename": ["app.css"]}
    queries = ["", "?grantee=tomo", "?orgUnit=tomo", "?org_unit=tomo", "?region=issyk_kul",
               "?form=seminar_attendance&grantee=tomo"]
    checked, control = 0, set()
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("web.") or "GET" not in rule.methods or rule.endpoint == "web.static":
            continue
        for url in _fill(rule, values):
            for query in queries:
                # The control: the same URL shows a coordinator the other grantee's things, so
                # the markers are ones a leak would really show.
                seen = coordinator.get(url + query)
                if seen.status_code == 200:
                    control |= {m for m in MARKERS + (tomo_id,) if m in seen.get_data(as_text=True)}
                response = staff.get(url + query)
                checked += 1
                assert response.status_code < 500, (url + query, response.status_code)
                if response.status_code != 200:
                    continue
                body = response.get_data(as_text=True)
                leaked = [m for m in MARKERS + (tomo_id,) if m in body]
                assert not leaked, f"{url}{query} shows {leaked}"
    assert checked > 50
    assert control == set(MARKERS + (tomo_id,)), control
    # And the same person can still see their own grantee's things.
    assert "Chinek" in staff.get("/").get_data(as_text=True)
