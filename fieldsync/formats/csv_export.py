"""Submissions as CSV, in ODK Central's `submissions.csv.zip` layout.

The root table is `<form>.csv` (`SubmissionDate, <fields…>, KEY, SubmitterID, …`), each repeat
`<form>-<repeat>.csv` ending with `PARENT_KEY, KEY`; group paths are joined with `-`; a
geopoint becomes four columns. Pure: rows in, CSV text out, one row at a time. Every cell of a
row is passed through `cells`, so text that a spreadsheet would run as a formula cannot reach
one (the XLSX writer uses these rows too).
"""
import csv
import io

from . import cells as spreadsheet

GEO_PARTS = ("Latitude", "Longitude", "Altitude", "Accuracy")
TRAILER = ["KEY", "SubmitterID", "SubmitterName", "AttachmentsPresent", "AttachmentsExpected", "Status",
           "ReviewState", "DeviceID", "Edits", "FormVersion"]


_columns_cache: dict = {}


def _columns(fields: list[dict], repeat: str | None) -> list[tuple[dict, str]]:
    """The (field, column name) pairs of a table; computed once per field list (an export
    passes the same list for every row)."""
    cached = _columns_cache.get((id(fields), repeat))
    if cached is not None and cached[0] is fields:
        return cached[1]
    if len(_columns_cache) > 32:
        _columns_cache.clear()
    out = _compute_columns(fields, repeat)
    _columns_cache[(id(fields), repeat)] = (fields, out)
    return out


def _compute_columns(fields: list[dict], repeat: str | None) -> list[tuple[dict, str]]:
    out = []
    for field in fields:
        if field["repeat"] != repeat:
            continue
        name = field["path"] if repeat is None else field["path"][len(repeat) + 1:]
        name = name.replace("/", "-")
        if field["type"] == "geopoint":
            out += [(field, f"{name}-{part}") for part in GEO_PARTS]
        else:
            out.append((field, name))
    return out


def root_header(fields: list[dict]) -> list[str]:
    return ["SubmissionDate"] + [name for _f, name in _columns(fields, None)] + TRAILER


def repeat_header(fields: list[dict], repeat: str) -> list[str]:
    return [name for _f, name in _columns(fields, repeat)] + ["PARENT_KEY", "KEY"]


def _cells(columns, lookup) -> list[str]:
    out, position = [], {}
    for field, _name in columns:
        value = lookup(field) or ""
        if field["type"] == "geopoint":  # one of its four columns, in order
            index = position.get(field["path"], 0)
            position[field["path"]] = index + 1
            value = (value.split() + ["", "", "", ""])[:4][index]
        out.append(spreadsheet.typed(value, field["type"]))
    return out


def root_row(fields, values: dict, system: dict) -> list[str]:
    columns = _columns(fields, None)
    # The instance ID, the device ID and the submitter's name come from devices and people too.
    return [system["submissionDate"]] + _cells(columns, lambda f: values.get(f["path"])) + [
        spreadsheet.neutral(v) for v in (
            system["key"], system["submitterId"], system["submitterName"] or "", system["attachmentsPresent"],
            system["attachmentsExpected"], "", system["reviewState"] or "", system["deviceId"] or "",
            system["edits"], system["formVersion"])]


def repeat_rows(fields, values: dict, repeat: str, parent_key: str) -> list[list[str]]:
    columns = _columns(fields, repeat)
    rows = []
    for index, item in enumerate(values.get(repeat) or [], start=1):
        rows.append(_cells(columns, lambda f: item.get(f["path"][len(repeat) + 1:]))
                    + [spreadsheet.neutral(parent_key),
                       spreadsheet.neutral(f"{parent_key}/{repeat.replace('/', '-')}[{index}]")])
    return rows


def line(cells) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()
