"""What records contribute to indicators, and how contributions add up. Pure functions.

A *payload* is the sorted list of contributions one source makes:
- `["s", indicator, grantee_id, scope, month, coc, amount, weight]` for counts, sums and means;
- `["m", indicator, grantee_id, scope, month, coc, member]` for distinct counts.
`month` is `YYYYMM` (or `""` for an undated record, which counts only in the all-time value).
`aggregate` turns many payloads into cell values; the incremental engine and the full
recompute both rest on these two functions, which is why they cannot disagree.
"""
import ast
import operator
from collections import defaultdict
from datetime import date

from .definitions import Definitions, Term

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def month_of(day: date | None) -> str:
    return f"{day.year:04d}{day.month:02d}" if day else ""


def periods_of(month: str) -> list[str]:
    """All-time, year, quarter and month periods (DHIS2 ids) that a month falls in."""
    if not month:
        return [""]
    year, m = month[:4], int(month[4:])
    return ["", year, f"{year}Q{(m - 1) // 3 + 1}", month]


def _evaluate(expression: str, row: dict):
    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return row.get(node.id) or 0
        if isinstance(node, ast.UnaryOp):
            return -walk(node.operand)
        left, right = walk(node.left), walk(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            return 0
        return _OPS[type(node.op)](left, right)
    return walk(ast.parse(expression, mode="eval"))


def _matches(term: Term, row: dict) -> bool:
    return all(row.get(name) in allowed for name, allowed in term.where)


def _cocs(term: Term, row: dict) -> list[str]:
    cocs = ["total"] if term.total else []
    if term.fixed:
        cocs.append(term.fixed)
    if term.by:
        value = row.get(term.by)
        if value is not None and (term.options is None or value in term.options):
            cocs.append(str(value))
    return cocs


def contributions(definitions: Definitions, rows_by_source: dict[str, list[dict]], grantee_id: int,
                  scope: str) -> list[list]:
    """The payload entries for one grantee and scope, from rows keyed by source kind."""
    out = []
    for indicator in definitions.indicators.values():
        for term in indicator.terms:
            for row in rows_by_source.get(term.source, ()):
                if not _matches(term, row):
                    continue
                month = month_of(row.get("date"))
                if term.kind == "distinct":
                    member = row.get(term.field)
                    if member in (None, ""):
                        continue
                    out.extend(["m", indicator.id, grantee_id, scope, month, coc, str(member)]
                               for coc in _cocs(term, row))
                    continue
                if term.kind == "count":
                    amount, weight = 1, 0
                else:
                    amount = _evaluate(term.expression, row) if term.expression else row.get(term.field)
                    if amount is None:
                        continue
                    weight = 1 if term.kind == "mean" else 0
                out.extend(["s", indicator.id, grantee_id, scope, month, coc, amount, weight]
                           for coc in _cocs(term, row))
    return out


def additive_totals(payload: list[list]) -> dict[tuple, list[float]]:
    """(indicator, grantee, scope, month, coc) -> [amount, weight], summed."""
    totals: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for entry in payload:
        if entry[0] == "s":
            cell = totals[tuple(entry[1:6])]
            cell[0] += entry[6]
            cell[1] += entry[7]
    return totals


def member_refs(payload: list[list]) -> dict[tuple, dict[str, int]]:
    """(indicator, grantee, scope, coc, member) -> {month: references}."""
    refs: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry in payload:
        if entry[0] == "m":
            _, indicator, grantee, scope, month, coc, member = entry
            refs[(indicator, grantee, scope, coc, member)][month] += 1
    return refs


class Aggregator:
    """Cell values from scratch, one payload at a time (so a full recompute never holds every
    payload): `add` each source's payload, then read `cells()`. Memory follows the number of
    cells and distinct members, not the number of sources."""

    def __init__(self):
        self.totals: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.refs: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, payload: list[list]) -> None:
        for entry in payload:
            if entry[0] == "s":
                cell = self.totals[tuple(entry[1:6])]
                cell[0] += entry[6]
                cell[1] += entry[7]
            elif entry[0] == "m":
                _, indicator, grantee, scope, month, coc, member = entry
                self.refs[(indicator, grantee, scope, coc, member)][month] += 1

    def cells(self) -> dict[tuple, list[float]]:
        """(indicator, grantee, scope, period, coc) -> [total, weight]."""
        cells: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for (indicator, grantee, scope, month, coc), (amount, weight) in self.totals.items():
            for period in periods_of(month):
                cell = cells[(indicator, grantee, scope, period, coc)]
                cell[0] += amount
                cell[1] += weight
        for (indicator, grantee, scope, coc, _member), months in self.refs.items():
            for period in {p for month in months for p in periods_of(month)}:
                cells[(indicator, grantee, scope, period, coc)][0] += 1
        return {k: v for k, v in cells.items() if abs(v[0]) > 1e-9 or abs(v[1]) > 1e-9}


def aggregate(payloads) -> dict[tuple, list[float]]:
    """Cell values from scratch: (indicator, grantee, scope, period, coc) -> [total, weight]."""
    aggregator = Aggregator()
    for payload in payloads:
        aggregator.add(payload)
    return aggregator.cells()
