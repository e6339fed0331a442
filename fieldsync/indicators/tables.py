"""The statements on the stored indicator tables (`indicator_sources`, `indicator_values`,
`indicator_members`) that the incremental engine and the reconcile share: text encoding of
payloads and month counts, chunked deletes and updates, row look-ups by unique key, and a
compiled bulk insert.

The statements of the incremental path are built once (`functools.cache`) and given their
values as parameters, IN lists as expanding parameters: a Core construct is immutable once
built, and building one (with its cache key) cost more than SQLite takes to run it, on a path
that runs for every upload.
"""
import functools

import orjson
from sqlalchemy import bindparam, delete, insert, select, update

from ..extensions import chunks, db
from ..models import IndicatorMember, IndicatorSource, IndicatorValue

MEMBER_KEY = ("indicator", "grantee_id", "scope", "coc", "member")
VALUE_KEY = ("indicator", "grantee_id", "scope", "period", "coc")


def encode(value) -> str:
    """Payloads and month counts as stored text (orjson: a recompute writes one per source)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@functools.cache
def _delete_where_in(column):
    """DELETE of the rows whose `column` is in the expanding parameter `values`."""
    return delete(column.table).where(column.in_(bindparam("values", expanding=True)))


def delete_in(column, values, size: int = 400) -> None:
    """Delete the rows whose `column` is one of `values`, a chunk of them at a time."""
    statement = _delete_where_in(column)
    for chunk in chunks(values, size):
        db.session.execute(statement, {"values": chunk})


_SOURCES, _VALUES, _MEMBERS = IndicatorSource.__table__, IndicatorValue.__table__, IndicatorMember.__table__
_SET_PAYLOAD = update(_SOURCES).where(_SOURCES.c.key == bindparam("source_key")).values(payload=bindparam("payload"))
_SET_TOTALS = update(_VALUES).where(_VALUES.c.id == bindparam("row_id")).values(
    total=bindparam("total"), weight=bindparam("weight"))
_SET_MONTHS = update(_MEMBERS).where(_MEMBERS.c.id == bindparam("row_id")).values(months=bindparam("months"))


def set_payloads(rows: list[dict]) -> None:
    """Source payloads replaced, rows of {"source_key", "payload"}."""
    db.session.execute(_SET_PAYLOAD, rows)


def set_totals(rows: list[dict]) -> None:
    """Cells' values replaced, rows of {"row_id", "total", "weight"}."""
    db.session.execute(_SET_TOTALS, rows)


def set_months(rows: list[dict]) -> None:
    """Members' month counts replaced, rows of {"row_id", "months"}."""
    db.session.execute(_SET_MONTHS, rows)


def rows_by_key(model, names: tuple[str, ...], keys, *extra) -> dict[tuple, object]:
    """Rows (`names` columns then `extra` columns) of `model` whose `names` take one of the
    `keys` tuples, locked for update, in key order.

    One `IN` per column rather than a row-value `IN`: SQLite uses the unique index for a
    column-by-column `IN` (a row-value `IN` scanned the whole table). The cross product may
    name a few rows that were not asked for; they are filtered out here.
    """
    query = _rows_by_key(model, names, extra)
    found = {}
    for chunk in chunks(sorted(keys)):
        wanted = set(chunk)
        values = {f"k{i}": sorted({key[i] for key in chunk}) for i in range(len(names))}
        for row in db.session.execute(query, values):
            key = tuple(row[:len(names)])
            if key in wanted:
                found[key] = row
    return found


@functools.cache
def _rows_by_key(model, names: tuple[str, ...], extra: tuple) -> object:
    """`rows_by_key`'s SELECT … FOR UPDATE, each key column's IN list an expanding parameter
    `k0`, `k1`, …"""
    columns = tuple(getattr(model, name) for name in names)
    return select(*columns, *extra).where(
        *[column.in_(bindparam(f"k{i}", expanding=True)) for i, column in enumerate(columns)]
    ).order_by(*columns).with_for_update()


class Writer:
    """Rows for one table, inserted in chunks with one DBAPI executemany each: the INSERT is
    compiled once, so a million rows do not each go through SQLAlchemy's parameter handling."""

    def __init__(self, table, columns: tuple[str, ...], size: int = 5000):
        self.size, self.rows, self.columns = size, [], columns
        compiled = insert(table).compile(dialect=db.session.get_bind().dialect, column_keys=list(columns))
        self.sql = str(compiled)
        order = compiled.positiontup if compiled.positional else None
        assert set(order or columns) == set(columns), (order, columns)  # no default to fill in
        if order is None:  # named parameters (psycopg)
            self.shape = lambda values: dict(zip(columns, values))
        elif tuple(order) == tuple(columns):
            self.shape = lambda values: values
        else:
            index = [columns.index(c) for c in order]
            self.shape = lambda values: tuple(values[i] for i in index)

    def add(self, *values) -> None:
        self.rows.append(self.shape(values))
        if len(self.rows) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            db.session.connection().exec_driver_sql(self.sql, self.rows)
            self.rows = []

    def write(self, rows) -> None:
        """Every row of `rows` (tuples in `columns` order), then flushed."""
        for row in rows:
            self.add(*row)
        self.flush()
