"""Spreadsheet cells that cannot run as formulas (OWASP, "CSV Injection").

Submissions carry whatever a device sent and names whatever an admin typed; a cell starting
with `=`, `+`, `-`, `@`, tab or CR is taken by Excel, LibreOffice or Sheets as a formula (or a DDE
command) when the CSV or workbook is opened. Every CSV and XLSX writer passes its cells through
here: such text gets a leading `'`, which spreadsheets show as text. The csv module still quotes
the result as RFC 4180 asks. One exception: a number in a column the form types as a number is
left alone, so `-5` stays a negative five (a number cannot be a formula).
"""
import re

TRIGGERS = frozenset("=+-@\t\r")
# Geopoint parts (latitude, longitude, altitude, accuracy) are numbers as much as an int is.
NUMERIC_TYPES = frozenset({"int", "decimal", "geopoint"})
# Strict on purpose: Python's int() and float() also take "1_000", " 5", "inf" and "nan".
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def is_number(value) -> bool:
    return isinstance(value, str) and NUMBER.fullmatch(value) is not None


def neutral(value):
    """`value` as a cell a spreadsheet shows but never evaluates; anything but text unchanged."""
    if isinstance(value, str) and value[:1] in TRIGGERS:
        return "'" + value
    return value


def typed(value, field_type: str | None):
    """A cell of a column whose form field has `field_type` (None: not a form field)."""
    # The cheap test first: exports call this for every cell, and few start with a trigger.
    if isinstance(value, str) and value[:1] in TRIGGERS:
        return value if field_type in NUMERIC_TYPES and NUMBER.fullmatch(value) else "'" + value
    return value
