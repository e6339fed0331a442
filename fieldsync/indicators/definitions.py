"""Reading and checking the declarative indicator definitions (`forms/indicators.yaml`).

A mistake in the file is reported with the indicator and term it is in, so a coordinator can
fix it; it never surfaces as a traceback.
"""
import ast
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import problems

SOURCES = {"event", "attendance", "assessment", "interview", "service"}
KINDS = {"count", "sum", "distinct", "mean"}
FAMILY = {"count": "additive", "sum": "additive", "distinct": "distinct", "mean": "mean"}


@dataclass(frozen=True)
class Term:
    source: str
    kind: str
    field: str | None = None
    expression: str | None = None
    where: tuple = ()
    by: str | None = None
    options: tuple | None = None
    fixed: str | None = None  # the `as:` option
    total: bool = True


@dataclass(frozen=True)
class Indicator:
    id: str
    name: dict
    terms: tuple
    family: str


@dataclass
class Definitions:
    indicators: dict = field(default_factory=dict)
    compiled: dict | None = field(default=None, repr=False, compare=False)  # contributions' plan

    def sources(self) -> set[str]:
        return {t.source for i in self.indicators.values() for t in i.terms}


def _bad(indicator_id, reason):
    return problems.unexpected_value(field="indicator definition", value=indicator_id, reason=reason)


def _check_expression(indicator_id, expression):
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise _bad(indicator_id, f"expression {expression!r} is not valid") from None
    allowed = (ast.Expression, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Name, ast.Load,
               ast.Constant, ast.UnaryOp, ast.USub)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise _bad(indicator_id, f"expression {expression!r} may use only fields, numbers and + - * /")


def parse(document: dict) -> Definitions:
    if not isinstance(document, dict):
        raise _bad("(file)", "the file must map indicator ids to definitions")
    definitions = Definitions()
    for indicator_id, spec in document.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("terms"), list) or not spec["terms"]:
            raise _bad(indicator_id, "needs a non-empty list of terms")
        terms = []
        for raw in spec["terms"]:
            if raw.get("source") not in SOURCES:
                raise _bad(indicator_id, f"source must be one of {sorted(SOURCES)}")
            if raw.get("kind") not in KINDS:
                raise _bad(indicator_id, f"kind must be one of {sorted(KINDS)}")
            if raw["kind"] != "count" and not (raw.get("field") or raw.get("expression")):
                raise _bad(indicator_id, f"a {raw['kind']} term needs a field")
            if raw.get("expression"):
                _check_expression(indicator_id, raw["expression"])
            where = tuple(sorted((k, tuple(v) if isinstance(v, list) else (v,))
                                 for k, v in (raw.get("where") or {}).items()))
            terms.append(Term(source=raw["source"], kind=raw["kind"], field=raw.get("field"),
                              expression=raw.get("expression"), where=where, by=raw.get("by"),
                              options=tuple(raw["options"]) if raw.get("options") else None,
                              fixed=raw.get("as"), total=raw.get("total", True)))
        families = {FAMILY[t.kind] for t in terms}
        if len(families) != 1:
            raise _bad(indicator_id, "terms must all be counts/sums, all distinct, or all means")
        name = spec.get("name") or {"en": indicator_id}
        definitions.indicators[indicator_id] = Indicator(
            id=indicator_id, name=name if isinstance(name, dict) else {"en": str(name)},
            terms=tuple(terms), family=families.pop())
    return definitions


def load(path: Path) -> Definitions:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _bad(path.name, f"not valid YAML: {exc}") from None
    return parse(document)
