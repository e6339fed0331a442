"""Building small XLSForm workbooks in tests (openpyxl), so publishing can be tested on forms
made for the purpose as well as on the programme's own."""
import io

from openpyxl import Workbook

SIMPLE_SURVEY = [
    {"type": "text", "name": "village", "label": "Village"},
    {"type": "integer", "name": "age", "label": "Age", "constraint": ". >= 0 and . < 130"},
    {"type": "select_one yn", "name": "consent", "label": "Consent"},
]
YES_NO = [{"list_name": "yn", "name": "yes", "label": "Yes"}, {"list_name": "yn", "name": "no", "label": "No"}]


def workbook(form_id="simple", version="1", survey=None, choices=None, title=None, settings=None) -> bytes:
    book = Workbook()
    sheets = {"survey": survey if survey is not None else SIMPLE_SURVEY,
              "choices": choices if choices is not None else YES_NO,
              "settings": [{"form_id": form_id, "version": version, "form_title": title or form_id,
                            **(settings or {})}]}
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        columns = list(dict.fromkeys(key for row in rows for key in row))
        sheet.append(columns)
        for row in rows:
            sheet.append([row.get(column) for column in columns])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
