"""What records contribute to indicators, and how contributions add up. Pure functions.

A *payload* is the sorted list of contributions one source makes:
- `["s", indicator, grantee_id, scope, month, coc, amount, weight]` for counts, sums and means;
- `["m", indicator, grantee_id, scope, month, coc, member]` for distinct counts.
`month` is `YYYYMM` (or `""` for an undated record, which counts only in the all-time value).
`Aggregator` sums payloads into cell values; the incremental engine (the difference of two
payloads' sums) and the full recompute (the sum of every payload) both rest on it and on the
same payload functions (`contributions_in` for event days, `RecordContributions` for the
records of other forms), which is why they cannot disagree.
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
    """All-time, year, quarter and month periods (DHIS2 ids) that a month falls in (the same
    list object for the same month: do not change it)."""
    periods = _PERIODS.get(month)
    if periods is None:
        if not month:
            periods = [""]
        else:
            year, m = month[:4], int(month[4:])
            periods = ["", year, f"{year}Q{(m - 1) // 3 + 1}", month]
        if len(_PERIODS) < 10_000:  # months of record dates: a few hundred
            _PERIODS[month] = periods
    return periods


_PERIODS: dict[str, list[str]] = {}


def _compiled(expression: str):
    """The expression (fields, numbers, + - * /; checked by `definitions`) as a function of a
    row, built once: parsing it again for every row was most of a recompute's own time. A
    missing field counts as 0 and a division by zero gives 0."""
    def build(node):
        if isinstance(node, ast.Expression):
            return build(node.body)
        if isinstance(node, ast.Constant):
            value = node.value
            return lambda row: value
        if isinstance(node, ast.Name):
            name = node.id
            return lambda row: row.get(name) or 0
        if isinstance(node, ast.UnaryOp):
            operand = build(node.operand)
            return lambda row: -operand(row)
        left, right = build(node.left), build(node.right)
        if isinstance(node.op, ast.Div):
            def divide(row):
                a, b = left(row), right(row)
                return 0 if b == 0 else a / b
            return divide
        op = _OPS[type(node.op)]
        return lambda row: op(left(row), right(row))
    return build(ast.parse(expression, mode="eval"))


def _names(expression: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(expression, mode="eval")) if isinstance(node, ast.Name)}


class _Step:
    """One term of one indicator, ready to run over rows of its source."""

    __slots__ = ("indicator", "kind", "where", "member", "value", "weight", "fixed_cocs", "by", "options",
                 "reads")

    def __init__(self, indicator_id: str, term: Term):
        self.indicator, self.kind, self.where = indicator_id, term.kind, term.where
        self.member = term.field if term.kind == "distinct" else None
        self.value = None
        # The fields of a row this step looks at, besides the month of its date.
        self.reads = {name for name, _allowed in term.where or ()} | ({term.by} if term.by else set())
        if term.kind in ("sum", "mean"):
            field = term.field
            self.value = _compiled(term.expression) if term.expression else (lambda row: row.get(field))
            self.reads |= _names(term.expression) if term.expression else {field}
        if self.member is not None:
            self.reads.add(self.member)
        self.weight = 1 if term.kind == "mean" else 0
        self.fixed_cocs = (["total"] if term.total else []) + ([term.fixed] if term.fixed else [])
        self.by, self.options = term.by, (None if term.options is None else frozenset(term.options))

    def cocs(self, row: dict) -> list[str]:
        if self.by is None:
            return self.fixed_cocs
        value = row.get(self.by)
        if value is not None and (self.options is None or value in self.options):
            return self.fixed_cocs + [str(value)]
        return self.fixed_cocs


class _SourcePlan:
    """The steps of one source kind, split: `shared` steps (counts, sums, means) give entries
    that depend only on the grantee, scopes, month and `fields` of a row, which many rows have
    in common; `own` steps (distinct counts) name the row's own member."""

    def __init__(self, steps: list[_Step]):
        self.shared = [step for step in steps if step.member is None]
        self.own = [step for step in steps if step.member is not None]
        self.fields = tuple(sorted(set().union(*(step.reads for step in self.shared))))

    def key(self, row: dict, month: str) -> tuple:
        return (month, *[row.get(name) for name in self.fields])


def _plan(definitions: Definitions) -> dict[str, _SourcePlan]:
    """The steps of every term, by source kind (cached on the definitions)."""
    plan = definitions.compiled
    if plan is None:
        steps: dict[str, list[_Step]] = {}
        for indicator in definitions.indicators.values():
            for term in indicator.terms:
                steps.setdefault(term.source, []).append(_Step(indicator.id, term))
        plan = definitions.compiled = {source: _SourcePlan(source_steps) for source, source_steps in steps.items()}
    return plan


def contributions_in(definitions: Definitions, rows_by_source: dict[str, list[dict]], grantee_id: int,
                     scopes) -> list[list]:
    """The payload entries for one grantee, for each of `scopes` (the same rows count in every
    scope they are in, so they are evaluated once), up to `compact`: rows that agree on every
    field the count and sum steps read have those entries computed once, multiplied by their
    number (a seminar's thirty participants are two or three such groups), so a cell may get
    one entry or several that `compact` sums to the same. Distinct-count entries are per row."""
    out = []
    plan = _plan(definitions)
    for source, rows in rows_by_source.items():
        source_plan = plan.get(source)
        if source_plan is None:
            continue
        groups: dict[tuple, list] = {}
        day, month = None, ""
        for row in rows:
            if row.get("date") != day:  # rows of one source mostly share their date
                day = row.get("date")
                month = month_of(day)
            key = source_plan.key(row, month)
            group = groups.get(key)
            if group is None:
                groups[key] = [row, 1]
            else:
                group[1] += 1
            if source_plan.own:
                _row_entries(source_plan.own, row, month, grantee_id, scopes, out)
        for (month, *_fields), (row, times) in groups.items():
            for entry in _row_entries(source_plan.shared, row, month, grantee_id, scopes):
                entry[6] *= times
                entry[7] *= times
                out.append(entry)
    return out


def _row_entries(steps: list[_Step], row: dict, month: str, grantee_id: int, scopes, out=None) -> list[list]:
    """One row's entries, appended to `out` (a new list by default)."""
    out = [] if out is None else out
    for step in steps:
        if step.where and not all(row.get(name) in allowed for name, allowed in step.where):
            continue
        cocs = step.cocs(row)
        if step.member is not None:
            member = row.get(step.member)
            if member in (None, ""):
                continue
            member = str(member)
            for scope in scopes:
                for coc in cocs:
                    out.append(["m", step.indicator, grantee_id, scope, month, coc, member])
            continue
        if step.value is None:
            amount = 1
        else:
            amount = step.value(row)
            if amount is None:
                continue
        for scope in scopes:
            for coc in cocs:
                out.append(["s", step.indicator, grantee_id, scope, month, coc, amount, step.weight])
    return out


def contributions(definitions: Definitions, rows_by_source: dict[str, list[dict]], grantee_id: int,
                  scope: str) -> list[list]:
    """The payload entries for one grantee and scope, from rows keyed by source kind."""
    return contributions_in(definitions, rows_by_source, grantee_id, (scope,))


class RecordContributions:
    """The payload of one record of a submission source (an assessment, interview or service:
    one record a source), memoised. A record's count, sum and mean entries depend only on its
    grantee, scopes, month and the few fields its steps read (channel, service type, …), which
    most records share with many others, so they are computed once per distinct combination
    (`shared`, keyed by `key`); distinct-count entries name the record's own member (a client
    code) and are computed for each record (`own`). The payload is the two merged, sorted."""

    def __init__(self, definitions: Definitions, source: str, memo_limit: int = 0):
        self.source = source
        self.plan = _plan(definitions).get(source) or _SourcePlan([])
        # At most `memo_limit` combinations are kept (a sum over a free number never repeats).
        self.memo: dict[tuple, list[list]] = {}
        self.memo_limit = memo_limit

    def of(self, row: dict, grantee_id: int, scopes: tuple) -> tuple[tuple | None, list[list], list[list]]:
        """(key, shared entries, own entries) of a row (with its `date`); the key (which names
        the source kind: two kinds' fields may take the same values) is None when the shared
        entries were not kept in the memo. Entries are shared: never change them."""
        plan, month = self.plan, month_of(row.get("date"))
        key = (self.source, grantee_id, scopes, *plan.key(row, month))
        shared = self.memo.get(key)
        if shared is None:
            shared = sorted(_row_entries(plan.shared, row, month, grantee_id, scopes))
            if len(self.memo) < self.memo_limit:
                self.memo[key] = shared
            else:
                key = None
        own = _row_entries(plan.own, row, month, grantee_id, scopes) if plan.own else []
        return key, shared, own

    @staticmethod
    def merged(shared: list[list], own: list[list]) -> list[list]:
        return sorted(shared + own) if own else shared


def compact(payload: list[list]) -> list[list]:
    """The same payload with the additive entries of one cell summed into one entry, sorted.

    Sums are all that `Aggregator` reads of them, so the compact payload
    means exactly the same; a seminar of 30 then stores a handful of count entries instead of
    one per participant (distinct members stay one entry each)."""
    sums: dict[tuple, list] = {}
    out = []
    for entry in payload:
        if entry[0] == "s":
            key = tuple(entry[1:6])
            cell = sums.get(key)
            if cell is None:
                sums[key] = [entry[6], entry[7]]
            else:
                cell[0] += entry[6]
                cell[1] += entry[7]
        else:
            out.append(entry)
    out.extend(["s", *key, amount, weight] for key, (amount, weight) in sums.items())
    out.sort()
    return out


class Aggregator:
    """Cell values from scratch, one payload at a time (so a full recompute never holds every
    payload): `add` each source's payload, then read `cells()`. Memory follows the number of
    cells and distinct members, not the number of sources."""

    def __init__(self):
        # (indicator, grantee, scope, month, coc) -> [amount, weight], summed
        self.totals: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        # (indicator, grantee, scope, coc, member) -> {month: references}
        self.refs: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    @classmethod
    def of(cls, payload: list[list]) -> "Aggregator":
        """One payload's totals and member references (what the incremental engine compares)."""
        aggregator = cls()
        aggregator.add(payload)
        return aggregator

    def add(self, payload: list[list], times: int = 1) -> None:
        """Add a payload (`times` over: the same payload of that many sources)."""
        for entry in payload:
            if entry[0] == "s":
                cell = self.totals[tuple(entry[1:6])]
                cell[0] += entry[6] * times
                cell[1] += entry[7] * times
            elif entry[0] == "m":
                _, indicator, grantee, scope, month, coc, member = entry
                self.refs[(indicator, grantee, scope, coc, member)][month] += times

    def cells(self) -> dict[tuple, list[float]]:
        """(indicator, grantee, scope, period, coc) -> [total, weight]."""
        cells: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for (indicator, grantee, scope, month, coc), (amount, weight) in self.totals.items():
            for period in periods_of(month):
                cell = cells[(indicator, grantee, scope, period, coc)]
                cell[0] += amount
                cell[1] += weight
        for (indicator, grantee, scope, coc, _member), months in self.refs.items():
            if len(months) == 1:  # most members: one month, whose periods are distinct
                periods = periods_of(next(iter(months)))
            else:
                periods = {p for month in months for p in periods_of(month)}
            for period in periods:
                cells[(indicator, grantee, scope, period, coc)][0] += 1
        return {k: v for k, v in cells.items() if abs(v[0]) > 1e-9 or abs(v[1]) > 1e-9}
