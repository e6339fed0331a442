"""OData `$filter` on submission metadata, as ODK Central supports it: `__id` and the
`__system` fields submissionDate, updatedAt, submitterId, reviewState, deletedAt (also with a
`$root/Submissions/` prefix); `eq ne lt le gt ge and or not`, parentheses, `null`, and the
functions `year month day hour minute second now()`.

`parse(text)` gives a small tree; `to_sql(tree, columns)` turns it into a SQLAlchemy condition
over the columns the caller maps each field to. Anything else is refused with 501.4, as
Central does, rather than half understood.
"""
import re
from datetime import datetime, timezone

from sqlalchemy import and_, extract, not_, or_

from .. import problems

FIELDS = ("__id", "__system/submissionDate", "__system/updatedAt", "__system/submitterId",
          "__system/reviewState", "__system/deletedAt")
FUNCTIONS = ("year", "month", "day", "hour", "minute", "second")
OPS = ("eq", "ne", "lt", "le", "gt", "ge")
TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^']|'')*')|(?P<dt>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)
                     |(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[(),])|(?P<word>[$A-Za-z_][\w/$]*(?:\(\))?))""", re.X)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, position = [], 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise problems.odata_filter(reason=f"cannot read {text[position:position + 20]!r}")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return out


class _Parser:
    def __init__(self, tokens):
        self.tokens, self.i = tokens, 0

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else (None, None)

    def take(self):
        token = self.peek()
        self.i += 1
        return token

    def expression(self):
        node = self.conjunction()
        while self.peek() == ("word", "or"):
            self.take()
            node = ("or", node, self.conjunction())
        return node

    def conjunction(self):
        node = self.unary()
        while self.peek() == ("word", "and"):
            self.take()
            node = ("and", node, self.unary())
        return node

    def unary(self):
        if self.peek() == ("word", "not"):
            self.take()
            return ("not", self.unary())
        if self.peek() == ("punct", "("):
            self.take()
            node = self.expression()
            if self.take() != ("punct", ")"):
                raise problems.odata_filter(reason="a parenthesis is not closed")
            return node
        left = self.operand()
        kind, op = self.take()
        if kind != "word" or op not in OPS:
            raise problems.odata_filter(reason=f"expected a comparison, found {op!r}")
        return ("cmp", op, left, self.operand())

    def operand(self):
        kind, value = self.take()
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'"))
        if kind == "num":
            return ("lit", float(value) if "." in value else int(value))
        if kind == "dt":
            parsed = datetime.fromisoformat((value if "T" in value else value + "T00:00:00").replace("Z", "+00:00"))
            return ("lit", parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc))
        if kind == "word":
            if value == "null":
                return ("lit", None)
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "now()":
                return ("lit", datetime.now(timezone.utc))
            field = value.removeprefix("$root/Submissions/")
            if field in FIELDS:
                return ("field", field)
            if value in FUNCTIONS and self.peek() == ("punct", "("):
                self.take()
                inner = self.operand()
                if inner[0] != "field" or self.take() != ("punct", ")"):
                    raise problems.odata_filter(reason=f"{value}() takes one field")
                return ("func", value, inner[1])
            raise problems.odata_filter(reason=f"{value!r} is not a field this server can filter on")
        raise problems.odata_filter(reason=f"unexpected {value!r}")


def parse(text: str):
    parser = _Parser(_tokens(text))
    tree = parser.expression()
    if parser.i != len(parser.tokens):
        raise problems.odata_filter(reason=f"unexpected {parser.peek()[1]!r}")
    return tree


def mentions(tree, field: str) -> bool:
    if tree[0] in ("and", "or"):
        return mentions(tree[1], field) or mentions(tree[2], field)
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
        return and_(to_sql(tree[1], columns, values), to_sql(tree[2], columns, values))
    if kind == "or":
        return or_(to_sql(tree[1], columns, values), to_sql(tree[2], columns, values))
    if kind == "not":
        return not_(to_sql(tree[1], columns, values))
    _, op, left, right = tree
    field = next((side[-1] for side in (left, right) if side[0] in ("field", "func")), None)

    def side(node):
        if node[0] == "field":
            return columns[node[1]]
        if node[0] == "func":
            return extract(node[1], columns[node[2]])
        literal = node[1]
        return values.get(field, lambda v: v)(literal) if field else literal

    a, b = side(left), side(right)
    if b is None or a is None:
        column = a if b is None else b
        return column.is_(None) if op == "eq" else column.is_not(None)
    return {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
