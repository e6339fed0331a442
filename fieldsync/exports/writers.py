"""What an export job writes: submissions as Central's csv.zip or as an XLSX workbook (one sheet
for the root, one per repeat), and indicator tables as CSV or XLSX.

Each writer takes an open binary file and a `progress(done, total, force=False)` callback (which
renews the job's lease, at most twice a second unless forced, and raises `Abandoned` when another
process took the job over); it calls it often, even while copying media; it never holds
a whole export in memory: repeats are spooled to temporary files, XLSX is openpyxl write-only.
Every cell goes through `formats.cells`, so nothing opens as a formula (CSV injection).
"""
import csv
import io
import re
import tempfile
import zipfile

from .. import storage
from ..formats import cells, csv_export
from ..formats.odata import visible_fields
from ..formats.submission import field_values, parse_stored
from . import queries

NUMERIC = {"int", "decimal"}
SHEET_NAME = re.compile(r"[\[\]:*?/\\]")


def _fields(schema: dict, personal: bool) -> list[dict]:
    return visible_fields(schema, personal)


def _personal_files(schema: dict) -> set[str]:
    return {f["path"] for f in schema["fields"] if f.get("personal") and f["type"] == "binary"}


def submissions_zip(out, form_id: str, schema: dict, spec, personal: bool, with_media: bool, progress) -> int:
    total = queries.count(spec)
    progress(0, total, force=True)
    rows = (row for batch in queries.batches(spec) for row in batch)
    done = write_csv_zip(out, form_id, schema, rows, personal, with_media,
                         lambda done: progress(done, total))
    progress(done, total, force=True)
    return done


def write_csv_zip(out, form_id: str, schema: dict, rows, personal: bool, with_media: bool,
                  progress=lambda done: None) -> int:
    """Central's csv.zip into `out`: the root table, one CSV per repeat (spooled to temporary
    files, so memory stays flat) and the media files, from (submission, __system block) `rows`.
    The one writer behind both the API's `submissions.csv.zip` and the background export.
    `progress(rows written)` is called after every row and while media are copied."""
    fields = _fields(schema, personal)
    repeats = schema.get("repeats", [])
    hidden_files = _personal_files(schema) if not personal else set()
    done = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        root = archive.open(f"{form_id}.csv", "w", force_zip64=True)
        root.write(csv_export.line(csv_export.root_header(fields)).encode("utf-8"))
        spooled = {r: tempfile.TemporaryFile() for r in repeats}
        for repeat in repeats:
            spooled[repeat].write(csv_export.line(csv_export.repeat_header(fields, repeat)).encode("utf-8"))
        # Each distinct file once, in the order met; two different files of one name both stay.
        media: dict[tuple[str, str], None] = {}
        for submission, system in rows:
            values = field_values(parse_stored(submission.current_def.xml), schema)
            root.write(csv_export.line(csv_export.root_row(fields, values, system)).encode("utf-8"))
            for repeat in repeats:
                for row in csv_export.repeat_rows(fields, values, repeat, submission.instance_id):
                    spooled[repeat].write(csv_export.line(row).encode("utf-8"))
            if with_media:
                hidden = {values.get(p) for p in hidden_files}
                for attachment in submission.current_def.attachments:
                    if attachment.blob is not None and attachment.name not in hidden:
                        media[(attachment.name, attachment.blob.sha256)] = None
            done += 1
            progress(done)
        root.close()
        for repeat, handle in spooled.items():
            handle.seek(0)
            with archive.open(f"{form_id}-{repeat.replace('/', '-')}.csv", "w", force_zip64=True) as target:
                while chunk := handle.read(1024 * 1024):
                    target.write(chunk)
            handle.close()
        for name, sha256 in media:
            archive.write(storage.path_of(sha256), f"media/{name}")
            progress(done)  # photos take long to copy: a background job keeps its lease
    return done


def _types(fields: list[dict], repeat: str | None) -> list[str]:
    """The field type behind each column of a table, in csv_export's column order."""
    out = []
    for field in fields:
        if field["repeat"] != repeat:
            continue
        out += [field["type"]] * (4 if field["type"] == "geopoint" else 1)
    return out


def _typed(row: list, types: list[str], offset: int) -> list:
    """Numbers as numbers, so a spreadsheet can sum them; everything else as text, neutralised
    again here because openpyxl writes any string starting with "=" as a formula."""
    out = list(row)
    for index, value in enumerate(out):
        kind = types[index - offset] if 0 <= index - offset < len(types) else None  # None: a system column
        if kind in NUMERIC and cells.is_number(value):
            try:
                out[index] = int(value) if kind == "int" else float(value)
            except ValueError:  # "2.0" or "1e3" typed as an int
                out[index] = float(value)
        else:
            out[index] = cells.typed(value, kind)
    return out


def sheet_title(name: str, taken: set[str]) -> str:
    title = SHEET_NAME.sub("-", name)[:31] or "sheet"
    base, n = title, 2
    while title.lower() in taken:
        suffix = f" ({n})"
        title, n = base[:31 - len(suffix)] + suffix, n + 1
    taken.add(title.lower())
    return title


def submissions_xlsx(out, form_id: str, schema: dict, spec, personal: bool, progress) -> int:
    from openpyxl import Workbook

    fields = _fields(schema, personal)
    repeats = schema.get("repeats", [])
    total = queries.count(spec)
    progress(0, total, force=True)
    book = Workbook(write_only=True)
    taken: set[str] = set()
    root = book.create_sheet(sheet_title(form_id, taken))
    root.append(csv_export.root_header(fields))
    root_types = _types(fields, None)
    sheets, repeat_types = {}, {}
    for repeat in repeats:
        sheets[repeat] = book.create_sheet(sheet_title(repeat.replace("/", "-"), taken))
        sheets[repeat].append(csv_export.repeat_header(fields, repeat))
        repeat_types[repeat] = _types(fields, repeat)
    done = 0
    for batch in queries.batches(spec):
        for submission, system in batch:
            values = field_values(parse_stored(submission.current_def.xml), schema)
            root.append(_typed(csv_export.root_row(fields, values, system), root_types, 1))
            for repeat in repeats:
                for row in csv_export.repeat_rows(fields, values, repeat, submission.instance_id):
                    sheets[repeat].append(_typed(row, repeat_types[repeat], 0))
        done += len(batch)
        progress(done, total)
    book.save(out)
    progress(done, total, force=True)
    return done


INDICATOR_HEADER = ["indicator", "indicator_name", "org_unit", "period", "disaggregation", "value",
                    "target", "percent_achieved"]


def _number(value):
    if value is None:
        return None
    return int(round(value)) if abs(value - round(value)) < 1e-9 else round(value, 2)


def indicator_rows(cells, names: dict) -> list[list]:
    rows = []
    for c in cells:
        rows.append([c.indicator, names.get(c.indicator, c.indicator), c.org_unit, c.period, c.coc,
                     _number(c.value), _number(c.target), c.percent_achieved])
    return rows


def indicators_csv(out, rows: list[list], progress) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(INDICATOR_HEADER)
    for n, row in enumerate(rows, start=1):
        writer.writerow(["" if v is None else cells.neutral(v) for v in row])
        progress(n, len(rows))
    text.flush()
    text.detach()
    progress(len(rows), len(rows), force=True)
    return len(rows)


def indicators_xlsx(out, rows: list[list], progress) -> int:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("indicator values")
    sheet.append(INDICATOR_HEADER)
    for row in rows:
        sheet.append([cells.neutral(v) for v in row])
    book.save(out)
    progress(len(rows), len(rows), force=True)
    return len(rows)
