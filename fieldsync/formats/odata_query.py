"""OData `$filter` on submission metadata, as ODK Central supports it: `__id` and the
`__system` fields submissionDate, updatedAt, submitterId, reviewState, deletedAt (also with a
`$root/Submissions/` prefix); `eq ne lt le gt ge and or not`, parentheses, `null`, and the
functions `year month day hour minute second now()`.

`parse(text)` gives a small tree; `to_sql(tree, columns)` turns it into a SQLAlchemy condition
over the columns the caller maps each field to.

Every value is checked here, before any SQL is built, so the database never sees one it would
refuse (PostgreSQL raises on an integer that overflows its column, a timestamp that does not
exist, a NUL in text or a comparison of mismatched types; SQLite on an integer beyond 64 bits):
whole numbers fit 64 bits, and those compared with an id or a function's result fit their 32;
dates exist and their years run 1 to 9999, also once converted to UTC; a field is compared with
a literal of its own type, or with a field of the same type; no control characters. The text is
at most MAX_LENGTH characters and nests at most MAX_DEPTH deep (parentheses, `not`, function
calls), so neither this parser nor SQLAlchemy's compiler nor SQLite's expression depth can be
exhausted; runs of `and`/`or` are kept flat for the same reason.

A filter that cannot be read, or that compares values no row could have, is refused with
Central's 400.18; one that is valid OData this server does not support (form fields, other
functions and operators) with 501.4, as Central does, rather than half understood.
"""
import math
import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, extract, not_, or_

from .. import problems

MAX_LENGTH = 4000  # characters: some 70 `__id eq 'uuid:…'` alternatives; gunicorn takes request lines to 4094
MAX_DEPTH = 50     # parentheses, `not` and function calls inside one another
INT64 = (-2**63, 2**63 - 1)
INT32 = (-2**31, 2**31 - 1)  # FieldSync's ids are INTEGER columns, and SQLAlchemy types EXTRACT() as INTEGER

# Field -> the kind of values it holds: "string", "datetime", "id" (a 32-bit integer column,
# given as a number or as digits in quotes, as Central's submitterId is a string). The
# functions give "number": a whole number, compared as a 32-bit INTEGER (on PostgreSQL the
# value is sent as `%s::INTEGER`, which overflows past 2**31 - 1).
FIELDS = {"__id": "string", "__system/submissionDate": "datetime", "__system/updatedAt": "datetime",
          "__system/submitterId": "id", "__system/reviewState": "string", "__system/deletedAt": "datetime"}
FUNCTIONS = ("year", "month", "day", "hour", "minute", "second")
OPS = ("eq", "ne", "lt", "le", "gt", "ge")
# Valid OData this server does not support: refused with 501.4 rather than as unreadable.
ODATA_FUNCTIONS = {"contains", "startswith", "endswith", "length", "indexof", "substring", "tolower", "toupper",
                   "trim", "concat", "date", "time", "fractionalseconds", "totaloffsetminutes", "maxdatetime",
                   "mindatetime", "round", "floor", "ceiling", "cast", "isof", "matchespattern", "hassubset",
                   "hassequence", "totalseconds", "any", "all"}
ODATA_OPERATORS = {"add", "sub", "mul", "div", "divby", "mod", "has", "in"}

TOKEN = re.compile(r"""(?P<str>'(?:[^']|'')*')
                     |(?P<dt>[0-9]+-[0-9]+-[0-9]+(?:T[0-9:.]*(?:Z|[+-][0-9:]+)?)?)
                     |(?P<num>-?[0-9]+(?:\.[0-9]+)?)
                     |(?P<punct>[(),])
                     |(?P<word>[$A-Za-z_][\w/$]*(?:\(\))?)""", re.X)
DATETIME = re.compile(r"""(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})
                          (?:T(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2})
                             (?::(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?)?
                             (?P<zone>Z|[+-][0-9]{2}:[0-9]{2})?)?""", re.X)
FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _unreadable(reason: str) -> problems.Problem:
    return problems.odata_filter_unparseable(reason=reason)


def _shown(text: str, limit: int = 30) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, position = [], 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return out
        match = TOKEN.match(text, position)
        if not match:
            if text[position] == "'":
                raise _unreadable(f"a string is not closed: {_shown(text[position:])}")
            raise _unreadable(f"cannot read {_shown(text[position:])}")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        position = match.end()


def _integer(digits: str, low: int, high: int, what: str) -> int:
    significant = digits.lstrip("-").lstrip("0")
    # The length first: nothing past 20 digits is in range, and past 4300 int() itself raises.
    value = int(digits) if len(significant) <= 20 else None
    if value is None or not low <= value <= high:
        raise _unreadable(f"{_shown(digits)} is out of range for {what} (from {low} to {high})")
    return value


def _number(text: str):
    if "." in text:
        value = float(text)
        if not math.isfinite(value):
            raise _unreadable(f"{_shown(text)} is out of range")
        return value
    return _integer(text, *INT64, "a whole number")


def _datetime(text: str) -> datetime:
    match = DATETIME.fullmatch(text)
    if not match and len(text.split("-", 1)[0]) != 4:
        raise _unreadable(f"{_shown(text)}: the year must be four digits, from 0001 to 9999")
    if not match:
        raise _unreadable(f"{_shown(text)} is not a date (2024-01-31) or a time "
                          "(2024-01-31T09:30:00Z, 2024-01-31T09:30:00.123+06:00)")
    parts = match.groupdict()
    if not 1 <= int(parts["year"]) <= 9999:
        raise _unreadable(f"{_shown(text)}: the year must be from 0001 to 9999")
    zone = parts["zone"]
    try:
        if zone in (None, "Z"):
            tz = timezone.utc
        else:
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("no such time zone offset")
            tz = timezone((-1 if zone[0] == "-" else 1) * timedelta(hours=hours, minutes=minutes))
        value = datetime(int(parts["year"]), int(parts["month"]), int(parts["day"]), int(parts["hour"] or 0),
                         int(parts["minute"] or 0), int(parts["second"] or 0),
                         int((parts["fraction"] or "0").ljust(6, "0")[:6]), tzinfo=tz)
    except ValueError:
        raise _unreadable(f"{_shown(text)} is not a date and time that exists") from None
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise _unreadable(f"{_shown(text)} is out of range: in UTC its year must be from 1 to 9999") from None


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.i, self.depth = tokens, 0, 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        self.i += 1
        return token

    def deeper(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _unreadable(f"it nests deeper than {MAX_DEPTH} levels of parentheses, not and functions")

    def expression(self):
        return self._chain("or", self.conjunction)

    def conjunction(self):
        return self._chain("and", self.unary)

    def _chain(self, word, part):
        nodes = [part()]
        while self.peek() == ("word", word):
            self.take()
            nodes.append(part())
        return nodes[0] if len(nodes) == 1 else (word, nodes)  # flat: no depth from a long run

    def unary(self):
        if self.peek() == ("word", "not"):
            self.take()
            self.deeper()
            node = ("not", self.unary())
            self.depth -= 1
            return node
        if self.peek() == ("punct", "("):
            self.take()
            self.deeper()
            node = self.expression()
            if self.take() != ("punct", ")"):
                raise _unreadable("a parenthesis is not closed")
            self.depth -= 1
            return node
        left = self.operand()
        kind, op = self.take()
        if kind is None:
            raise _unreadable("it ends where a comparison (eq ne lt le gt ge) was expected")
        if kind == "word" and op in ODATA_OPERATORS:
            raise problems.odata_filter(reason=f"the operator {op}")
        if kind != "word" or op not in OPS:
            raise _unreadable(f"expected a comparison (eq ne lt le gt ge), found {_shown(op)}")
        return _comparison(op, left, self.operand())

    def operand(self):
        kind, value = self.take()
        if kind is None:
            raise _unreadable("it ends where a value or field was expected")
        if kind == "str":
            return ("lit", "string", value[1:-1].replace("''", "'"))
        if kind == "num":
            number = _number(value)
            return ("lit", "integer" if isinstance(number, int) else "decimal", number)
        if kind == "dt":
            return ("lit", "datetime", _datetime(value))
        if kind == "word":
            if value == "null":
                return ("lit", "null", None)
            if value in ("true", "false"):
                return ("lit", "boolean", value == "true")
            field = value.removeprefix("$root/Submissions/")
            if field in FIELDS:
                return ("field", FIELDS[field], field)
            if value.endswith("()"):
                return self.function(value[:-2], empty=True)
            if self.peek() == ("punct", "("):
                self.take()
                return self.function(value)
            if value in FUNCTIONS or value in ODATA_FUNCTIONS or value == "now":
                raise _unreadable(f"{value} is a function: write {value}(…)")
            if value in OPS or value in ("and", "or", "not") or value in ODATA_OPERATORS:
                raise _unreadable(f"expected a value or field, found the operator {value}")
            raise problems.odata_filter(reason=f"{value!r} is not a field this server can filter on")
        raise _unreadable(f"expected a value or field, found {_shown(value)}")

    def function(self, name, empty=False):
        """After `name(`, or for `name()` when `empty`."""
        if name == "now":
            if not empty and self.take() != ("punct", ")"):
                raise _unreadable("now() takes no arguments")
            return ("lit", "datetime", datetime.now(timezone.utc))
        if name in ODATA_FUNCTIONS:
            raise problems.odata_filter(reason=f"the function {name}()")
        if name not in FUNCTIONS:
            raise _unreadable(f"{_shown(name)} is not a function (this server knows {', '.join(FUNCTIONS)} and now)")
        if empty:
            raise _unreadable(f"{name}() takes one of the date fields")
        self.deeper()
        inner = self.operand()
        if inner[0] != "field" or inner[1] != "datetime":
            raise _unreadable(f"{name}() takes one of the date fields "
                              f"({', '.join(f for f, kind in FIELDS.items() if kind == 'datetime')})")
        if self.take() != ("punct", ")"):
            raise _unreadable(f"{name}() takes one field and a closing parenthesis")
        self.depth -= 1
        return ("func", "number", name, inner[2])


def _describe(node) -> str:
    if node[0] == "lit":
        return "null" if node[1] == "null" else f"the {node[1]} {node[2]!r}"
    if node[0] == "field":
        return node[2]
    return f"{node[2]}({node[3]})"


def _comparison(op, left, right):
    """Both sides checked against each other: what reaches SQL is a comparison the database
    can make, between a field and a value of its type (or another field of its type)."""
    if left[0] == "lit" and right[0] == "lit":
        raise _unreadable(f"{op} between two values ({_describe(left)} and {_describe(right)}): "
                          "one side must be a field")
    if left[0] != "lit" and right[0] != "lit":
        if left[1] != right[1]:
            raise _unreadable(f"{_describe(left)} and {_describe(right)} cannot be compared")
        return ("cmp", op, left, right)
    field, literal = (left, right) if right[0] == "lit" else (right, left)
    literal = _literal_for(op, field, literal)
    return ("cmp", op, *((field, literal) if right[0] == "lit" else (literal, field)))


def _literal_for(op, field, literal):
    _, kind, value = literal
    if kind == "null":
        if op not in ("eq", "ne"):
            raise _unreadable(f"null can only be compared with eq or ne, not {op}")
        return literal
    expected = field[1]
    if expected == "datetime" and kind == "datetime":
        return literal
    if expected == "string" and kind == "string":
        return literal
    if expected in ("id", "number") and kind == "integer":
        return ("lit", "integer", _integer(str(value), *INT32, _describe(field)))
    if expected == "id" and kind == "string" and re.fullmatch(r"-?[0-9]+", value):
        return ("lit", "integer", _integer(value, *INT32, _describe(field)))
    wanted = {"datetime": "a date or time such as 2024-01-31 or 2024-01-31T09:30:00Z", "string": "a string in quotes",
              "number": "a whole number", "id": "a whole number"}[expected]
    raise _unreadable(f"{_describe(field)} is compared with {wanted}, not {_describe(literal)}")


def parse(text: str):
    if len(text) > MAX_LENGTH:
        raise _unreadable(f"it is {len(text)} characters long; at most {MAX_LENGTH} are accepted")
    bad = FORBIDDEN.search(text)
    if bad:
        raise _unreadable(f"it contains the control character or invalid code point U+{ord(bad.group()):04X}")
    tokens = _tokens(text)
    if not tokens:
        raise _unreadable("it is empty")
    parser = _Parser(tokens)
    tree = parser.expression()
    if parser.i != len(parser.tokens):
        kind, value = parser.peek()
        if (kind, value) == ("punct", ")"):
            raise _unreadable("a parenthesis is closed that was not opened")
        raise _unreadable(f"unexpected {_shown(value)}")
    return tree


def mentions(tree, field: str) -> bool:
    if tree[0] in ("and", "or"):
        return any(mentions(node, field) for node in tree[1])
    if tree[0] == "not":
        return mentions(tree[1], field)
    if tree[0] == "cmp":
        return any(side[0] in ("field", "func") and side[-1] == field for side in tree[2:])
    return False


def to_sql(tree, columns: dict, values: dict | None = None):
    """`columns`: field -> SQLAlchemy column; `values` optionally maps literal values per field
    (reviewState null <-> 'received')."""
    values = values or {}
    kind = tree[0]
    if kind == "and":
        return and_(*(to_sql(node, columns, values) for node in tree[1]))
    if kind == "or":
        return or_(*(to_sql(node, columns, values) for node in tree[1]))
    if kind == "not":
        return not_(to_sql(tree[1], columns, values))
    _, op, left, right = tree
    field = next((side[-1] for side in (left, right) if side[0] in ("field", "func")), None)

    def side(node):
        if node[0] == "field":
            return columns[node[2]]
        if node[0] == "func":
            return extract(node[2], columns[node[3]])
        literal = node[2]
        return values.get(field, lambda v: v)(literal) if field else literal

    a, b = side(left), side(right)
    if b is None or a is None:
        column = a if b is None else b
        return column.is_(None) if op == "eq" else column.is_not(None)
    return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
