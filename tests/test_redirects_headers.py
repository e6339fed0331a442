"""Over real HTTP (gunicorn): `next=` only ever leads to a path on this server, whatever is
sent (never a 500); and a file with a non-ASCII name comes with a Content-Disposition that carries
the exact name (RFC 6266/5987) and cannot add a header parameter or a header."""
import re
from urllib.parse import quote, urlsplit

import pytest
import requests
from werkzeug.http import parse_options_header

from fieldsync.httpkit import content_disposition

from collect import OPENROSA, SEMINAR, instance_id_of, instance_xml
from web_fixtures import PASSWORD, create_user, csrf_of
from xlsforms import workbook

HOME = "/"
LOCAL = None  # any path on this server
# (next= as it goes on the wire, percent-encoded; where the browser must be sent)
CASES = [
    ("%2Fsubmissions%3Fform%3Dx%23top", "/submissions?form=x#top"),
    ("/exports", "/exports"),
    ("%20%2Fexports%09", "/exports"),
    ("/%D1%84%D0%BE%D1%82%D0%BE", "/%D1%84%D0%BE%D1%82%D0%BE"),  # a non-ASCII path, as a URI
    ("/%25ff", "/%ff"),
    ("/%ff", LOCAL),  # not UTF-8: Werkzeug reads it as U+FFFD or a surrogate; a path here either way
    ("%00", HOME), ("%ff", HOME), ("", HOME),
    ("%0D%0ALocation:x", HOME),
    ("/%0D%0ASet-Cookie:%20evil=1", "/Set-Cookie:%20evil=1"),  # no header split: one path
    ("//evil.example", HOME), ("%2F%2Fevil.example", HOME), ("///evil.example", HOME),
    ("/%5Cevil.example", HOME), ("%5C%5Cevil.example", HOME), ("/ok%5C..%5C", HOME),
    ("/%09/evil.example", HOME), ("/%0A/evil.example", HOME), ("%20//evil.example", HOME),
    ("%C2%85//evil.example", HOME),  # a C1 control (NEL), then //
    ("https://evil.example", HOME), ("https:evil.example", HOME), ("javascript:alert(1)", HOME),
    ("%252F%252Fevil.example", HOME), ("evil.example", HOME),
    ("/" + "a" * 3000, HOME),
]


def sign_in(base: str, email: str, next_raw: str | None = None) -> tuple[requests.Session, requests.Response]:
    session = requests.Session()
    csrf = csrf_of(session.get(base + "/login").text)
    body = f"email={quote(email)}&password={quote(PASSWORD)}&csrf_token={quote(csrf)}"
    if next_raw is not None:
        body += "&next=" + next_raw
    response = session.post(base + "/login", data=body, allow_redirects=False,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    return session, response


def only_location(response) -> str:
    assert response.status_code == 302, (response.status_code, response.text[:300])
    assert len(response.raw.headers.getlist("Location")) == 1
    assert "evil" not in response.headers.get("Set-Cookie", "")
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")) and not urlsplit(location).netloc
    return location


def misled(where: str, raw: str, expected, response) -> list:
    """[] when the answer sends the browser where `expected` says, else what went wrong."""
    try:
        location = only_location(response)
    except AssertionError as error:
        return [(where, raw, response.status_code, response.headers.get("Location"), str(error)[:200])]
    return [] if expected is LOCAL or location == expected else [(where, raw, location)]


def test_next_leads_only_to_a_path_here(app, live_server):
    server = live_server()
    email = create_user(app, "coordinator")
    wrong = []
    for raw, expected in CASES:
        wrong += misled("POST /login", raw, expected, sign_in(server.url, email, raw)[1])
        page = requests.get(server.url + "/login?next=" + raw)  # signed out: the form, carrying it
        if page.status_code != 200 or 'name="next"' not in page.text:
            wrong.append(("GET /login signed out", raw, page.status_code))
    session, _ = sign_in(server.url, email)
    for raw, expected in CASES:
        wrong += misled("GET /login", raw, expected,
                        session.get(server.url + "/login?next=" + raw, allow_redirects=False))
        body = f"language=ru&csrf_token={quote(csrf_of(session.get(server.url + '/').text))}&next={raw}"
        wrong += misled("POST /language", raw, expected, session.post(
            server.url + "/language", data=body, allow_redirects=False,
            headers={"Content-Type": "application/x-www-form-urlencoded"}))
    # Very long, where only a request body can carry it.
    try:
        wrong += misled("POST /login", "/aaa…", HOME, sign_in(server.url, email, "/" + "a" * 100_000)[1])
    except requests.ConnectionError as error:  # a Location header too long to read
        wrong.append(("POST /login", "/aaa…", str(error)[:200]))
    assert not wrong, "\n".join(map(repr, wrong))


def test_a_page_asked_for_before_signing_in_is_where_sign_in_leads(app, live_server):
    server = live_server()
    email = create_user(app, "coordinator")
    response = requests.get(server.url + "/exports?x=1", allow_redirects=False)
    assert response.status_code == 302
    target = re.search(r"next=([^&]+)", response.headers["Location"]).group(1)
    _session, response = sign_in(server.url, email, target)
    assert only_location(response) == "/exports?x=1"


NAMES = ['фото ы;x="y".jpg', 'a"; filename="evil.exe', "back\\slash.jpg", "line\r\nSet-Cookie: x=1.jpg",
         "tab\tnul\x00del\x7f.jpg", "100%.csv", "emoji 📷.png", "plain.csv", "", "'quoted'.txt",
         "\u202egpj.exe", "a" * 300 + ".jpg", "x\ud800.jpg"]


@pytest.mark.parametrize("inline", [False, True])
def test_the_helper_gives_the_exact_name_and_nothing_more(inline):
    for name in NAMES:
        value = content_disposition(name, inline)
        assert value.isascii() and value.isprintable(), name
        disposition, _, rest = value.partition("; ")
        assert disposition == ("inline" if inline else "attachment")
        match = re.fullmatch(r'filename="([^"\\%]*)"; filename\*=UTF-8\'\'([A-Za-z0-9!#$&+\-.^_`|~%]+)', rest)
        assert match, (name, value)
        assert match.group(1).isprintable() and match.group(1).isascii()
        # What a client reads: the name, less control characters (an unpaired surrogate: "?").
        wanted = re.sub(r"[\x00-\x1f\x7f-\x9f]", "", name).replace("\ud800", "?") or "download"
        kind, options = parse_options_header(value)
        assert kind == disposition and options == {"filename": wanted}, name


def test_the_fallback_keeps_what_ascii_it_can():
    assert content_disposition('фото ы;x="y".jpg', inline=False) == (
        "attachment; filename=\"____ _;x=_y_.jpg\"; "
        "filename*=UTF-8''%D1%84%D0%BE%D1%82%D0%BE%20%D1%8B%3Bx%3D%22y%22.jpg")
    assert content_disposition("report.csv", inline=True) == "inline; filename=\"report.csv\"; filename*=UTF-8''report.csv"


PHOTO_NAME = 'фото ы;x="y".jpg'
PHOTO = b"\xff\xd8\xff\xe0" + b"a seminar in Kant" * 20


@pytest.fixture
def photo_sent(app, client, make_app_user):
    """A seminar whose photo is called PHOTO_NAME. The multipart body is written by hand: the test
    client would put the name's quotes in the part header unescaped, so the part could not be
    matched to the name in the XML; here they are backslash-escaped, as in a quoted-string."""
    token = make_app_user(name="chinek camera", grantee="chinek")["token"]
    form = client.get(f"/v1/key/{token}/projects/1/forms/seminar_attendance.xml").data
    xml = instance_xml(form, {**SEMINAR, "photo": PHOTO_NAME})
    quoted = PHOTO_NAME.replace("\\", "\\\\").replace('"', '\\"').encode()
    boundary = b"fieldsync-test-boundary"
    body = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="xml_submission_file"; '
            b'filename="instance.xml"\r\nContent-Type: text/xml\r\n\r\n' + xml + b"\r\n--" + boundary
            + b'\r\nContent-Disposition: form-data; name="' + quoted + b'"; filename="' + quoted
            + b'"\r\nContent-Type: image/jpeg\r\n\r\n' + PHOTO + b"\r\n--" + boundary + b"--\r\n")
    response = client.post(f"/v1/key/{token}/projects/1/submission", data=body, headers=OPENROSA,
                           content_type="multipart/form-data; boundary=" + boundary.decode())
    assert response.status_code == 201, response.data
    return instance_id_of(xml)


def check_download(response, name: str, inline: bool, data: bytes):
    assert response.status_code == 200, response.text[:300]
    assert response.content == data
    assert len(response.raw.headers.getlist("Content-Disposition")) == 1
    assert response.headers["Content-Disposition"] == content_disposition(name, inline)
    assert parse_options_header(response.headers["Content-Disposition"])[1] == {"filename": name}


def test_web_submission_file_download_has_the_exact_name(app, live_server, photo_sent):
    server = live_server()
    session, response = sign_in(server.url, create_user(app, "coordinator"))
    assert response.status_code == 302
    url = f"{server.url}/submissions/seminar_attendance/{quote(photo_sent, safe='')}/files/{quote(PHOTO_NAME, safe='')}"
    check_download(session.get(url), PHOTO_NAME, inline=True, data=PHOTO)


def test_api_submission_attachment_download_has_the_exact_name(app, live_server, photo_sent, make_user):
    """Fails until fieldsync/api/submissions.py's submission_attachment uses
    httpkit.content_disposition (the lead wires that endpoint)."""
    server = live_server()
    headers = make_user("coordinator")
    url = (f"{server.url}/v1/projects/1/forms/seminar_attendance/submissions/{quote(photo_sent, safe='')}"
           f"/attachments/{quote(PHOTO_NAME, safe='')}")
    check_download(requests.get(url, headers=headers), PHOTO_NAME, inline=True, data=PHOTO)


def test_form_media_download_has_the_exact_name(app, cli, live_server, make_app_user, tmp_path):
    (tmp_path / "media_form-media").mkdir()
    (tmp_path / "media_form-media" / PHOTO_NAME).write_bytes(PHOTO)
    (tmp_path / "media_form.xlsx").write_bytes(workbook("media_form", survey=[
        {"type": "note", "name": "look", "label": "Look", "image": PHOTO_NAME},
        {"type": "text", "name": "remark", "label": "Remark"}], choices=[]))
    assert cli("forms", "publish", str(tmp_path / "media_form.xlsx"), "--no-validate").exit_code == 0
    token = make_app_user(grantee="chinek")["token"]
    server = live_server()
    url = f"{server.url}/v1/key/{token}/projects/1/forms/media_form/attachments/{quote(PHOTO_NAME, safe='')}"
    check_download(requests.get(url), PHOTO_NAME, inline=False, data=PHOTO)


def test_api_csv_download_header(client, make_user):
    response = client.get("/v1/projects/1/forms/seminar_attendance/submissions.csv", headers=make_user("coordinator"))
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == content_disposition("seminar_attendance.csv", inline=False)
