"""Keeping indicator values right as submissions change: the incremental path.

When a submission changes, its records are rebuilt and each affected source's new payload
(`payloads`) is compared with the one it last applied; only the difference touches
`indicator_values` and `indicator_members`. The full rebuild that checks this path is
`reconcile`.
"""
import contextlib
import functools
import logging
from pathlib import Path

import orjson
from flask import current_app
from sqlalchemy import bindparam, select

from ..extensions import (chunks, db, dialect_insert, dialect_name, exclusive_turn, insert_ignoring,
                          write_transaction)
from ..models import IndicatorMember, IndicatorSource, IndicatorValue, PendingRecord
from ..records import persons, store
from .contributions import Aggregator, periods_of
from .definitions import Definitions, load
from .payloads import source_payload
from .tables import MEMBER_KEY, VALUE_KEY, delete_in, encode, rows_by_key, set_months, set_payloads

log = logging.getLogger(__name__)
_cache: dict = {}


def definitions() -> Definitions:
    path = Path(current_app.config["FIELDSYNC"]["FORMS_PATH"]) / "indicators.yaml"
    stamp = (str(path), path.stat().st_mtime_ns)
    if _cache.get("stamp") != stamp:
        _cache.update(stamp=stamp, definitions=load(path))
    return _cache["definitions"]


@contextlib.contextmanager
def indicator_transaction(durable: bool = True):
    """The write transaction of anything that changes records or stored indicator values (the
    derive batches, a coordinator's duplicate decision): the `indicators` turn first, which a
    reconcile reading its snapshot holds on SQLite, then `write_transaction`."""
    with exclusive_turn("indicators"), write_transaction(durable=durable) as session:
        yield session


def _member_changes(refs_before: dict, refs_after: dict) -> dict[tuple, dict[str, int]]:
    changes = {}
    for key in set(refs_before) | set(refs_after):
        months = set(refs_before.get(key, {})) | set(refs_after.get(key, {}))
        change = {m: refs_after.get(key, {}).get(m, 0) - refs_before.get(key, {}).get(m, 0) for m in months}
        change = {m: d for m, d in change.items() if d}
        if change:
            changes[key] = change
    return changes


def _apply_members(changes: dict[tuple, dict[str, int]], bump) -> None:
    """Move the members' month reference counts by `changes`; `bump` the distinct counts of
    every period a member enters or leaves.

    A placeholder row is inserted first for every member (ON CONFLICT DO NOTHING), so that
    the rows exist to be locked: two PostgreSQL transactions adding the same new member wait
    for each other instead of both inserting it.
    """
    table = IndicatorMember.__table__
    placeholders = [dict(zip(MEMBER_KEY, key), months="{}") for key in sorted(changes)]
    db.session.execute(insert_ignoring(table, MEMBER_KEY), placeholders)
    rows = rows_by_key(IndicatorMember, MEMBER_KEY, changes, IndicatorMember.id, IndicatorMember.months)
    updates, gone = [], []
    for key in sorted(changes):
        indicator, grantee, scope, coc, _member = key
        row = rows[key]
        months = orjson.loads(row.months)
        was = {p for m, n in months.items() if n > 0 for p in periods_of(m)}
        for month, delta in changes[key].items():
            months[month] = months.get(month, 0) + delta
        months = {m: n for m, n in months.items() if n > 0}
        now = {p for m in months for p in periods_of(m)}
        for period in now - was:
            bump((indicator, grantee, scope, period, coc), 1, 0)
        for period in was - now:
            bump((indicator, grantee, scope, period, coc), -1, 0)
        if months:
            updates.append({"row_id": row.id, "months": encode(months)})
        else:
            gone.append(row.id)
    if updates:
        set_months(updates)
    delete_in(table.c.id, gone)


@functools.cache
def _add_to_cells(dialect: str):
    """INSERT … ON CONFLICT DO UPDATE SET total = total + delta, RETURNING each touched cell's
    new value, so the cells an update emptied are known without another look (an empty cell
    is never kept, nor inserted empty: a delta of nothing is dropped by the caller).
    (No sort_by_parameter_order: on SQLite it would run one INSERT per row; the order of the
    returned rows does not matter here.)"""
    table = IndicatorValue.__table__
    upsert = dialect_insert(table, dialect)
    return upsert.on_conflict_do_update(index_elements=list(VALUE_KEY), set_={
        "total": table.c.total + upsert.excluded.total, "weight": table.c.weight + upsert.excluded.weight,
    }).returning(table.c.id, table.c.total, table.c.weight)


def _apply_values(deltas: dict[tuple, list[float]]) -> None:
    """Add the deltas to the cells in one upsert (`_add_to_cells`), in key order; then drop
    the cells that became empty."""
    table = IndicatorValue.__table__
    rows = [dict(zip(VALUE_KEY, cell), total=d[0], weight=d[1]) for cell, d in sorted(deltas.items())]
    upsert = _add_to_cells(dialect_name())
    emptied = []
    for chunk in chunks(rows, 500):
        emptied += [row.id for row in db.session.execute(upsert, chunk)
                    if abs(row.total) < 1e-9 and abs(row.weight) < 1e-9]
    delete_in(table.c.id, emptied)


def apply_difference(old: list[list], new: list[list]) -> int:
    """Move the stored values from `old` to `new` contributions; returns cells touched.

    The cost follows the size of the difference: members are read through their unique
    index and written back by id, value cells are changed by one upsert (which is also what
    keeps two transactions creating the same new cell from colliding on PostgreSQL).
    """
    deltas: dict[tuple, list[float]] = {}

    def bump(cell, amount, weight):
        delta = deltas.setdefault(cell, [0.0, 0.0])
        delta[0] += amount
        delta[1] += weight

    summed_before, summed_after = Aggregator.of(old), Aggregator.of(new)
    before, after = summed_before.totals, summed_after.totals
    for key in set(before) | set(after):
        d_amount = after.get(key, [0, 0])[0] - before.get(key, [0, 0])[0]
        d_weight = after.get(key, [0, 0])[1] - before.get(key, [0, 0])[1]
        if d_amount or d_weight:
            indicator, grantee, scope, month, coc = key
            for period in periods_of(month):
                bump((indicator, grantee, scope, period, coc), d_amount, d_weight)
    changes = _member_changes(summed_before.refs, summed_after.refs)
    if changes:
        _apply_members(changes, bump)
    deltas = {cell: d for cell, d in deltas.items() if abs(d[0]) > 1e-12 or abs(d[1]) > 1e-12}
    if deltas:
        _apply_values(deltas)
    return len(deltas)


def _lock_sources(keys: list[str]) -> dict[str, str]:
    """The payload each source last applied ('[]' for a new one), every source row locked,
    in key order (so that two transactions touching the same sources cannot deadlock)."""
    placeholders = insert_ignoring(_SOURCES, ("key",))
    payloads = {}
    for chunk in chunks(sorted(keys)):
        db.session.execute(placeholders, [{"key": k, "payload": "[]"} for k in chunk])
        payloads.update(db.session.execute(_LOCK_SOURCES, {"keys": chunk}).all())
    return payloads


_SOURCES = IndicatorSource.__table__
_LOCK_SOURCES = select(_SOURCES.c.key, _SOURCES.c.payload).where(
    _SOURCES.c.key.in_(bindparam("keys", expanding=True))).order_by(_SOURCES.c.key).with_for_update()


def refresh_sources(keys, defs: Definitions | None = None) -> int:
    """Recompute the given sources and apply the differences (inside a write transaction).

    Every source row is locked first; all the sources' differences are then applied
    together, so each member and cell is written once whatever the number of sources.
    """
    defs = defs or definitions()
    keys = sorted(set(keys))
    if not keys:
        return 0
    db.session.flush()  # records rebuilt through the ORM must be visible to the queries below
    table = IndicatorSource.__table__
    stored = _lock_sources(keys)
    all_old, all_new, changed, gone = [], [], [], []
    for key in keys:
        old = orjson.loads(stored.get(key) or "[]")
        new = source_payload(key, defs)
        if new == old:
            if not new:
                gone.append(key)  # the placeholder of a source that has nothing
            continue
        all_old += old
        all_new += new
        if new:
            changed.append({"source_key": key, "payload": encode(new)})
        else:
            gone.append(key)
    touched = apply_difference(all_old, all_new) if changed or gone else 0
    if changed:
        set_payloads(changed)
    delete_in(table.c.key, gone)
    return touched


_QUEUE = PendingRecord.__table__
_CLAIM = select(_QUEUE.c.submission_id).order_by(_QUEUE.c.queued_at, _QUEUE.c.submission_id).limit(
    bindparam("size")).with_for_update(skip_locked=True)
_CLAIM_ONLY = _CLAIM.where(_QUEUE.c.submission_id.in_(bindparam("only", expanding=True)))


def process_pending(limit: int = 10_000, batch: int = 25, only=(), match_persons: bool = True) -> int:
    """Rebuild records and indicators for queued submissions; returns how many were done.

    Each batch is one transaction: its submissions' records are rebuilt, then every source
    they touch is recomputed once. Batches stay small because on SQLite a batch holds the one
    write lock, and devices' uploads wait behind it. Rows another worker has claimed are
    skipped (PostgreSQL). `only` restricts the work to those submissions.

    Then, once the indicator values are committed, the persons those registers brought are
    searched for look-alikes (`persons.match_queued`, transactions of its own): that search
    grows with the village, the indicator update must not. `match_persons=False` leaves it
    queued (a benchmark timing the two apart).
    """
    done = 0
    while done < limit:
        # Not durable: if a power cut undoes this commit, the queue rows it deleted come back.
        with indicator_transaction(durable=False):
            size = min(batch, limit - done)
            claim = _CLAIM_ONLY if only else _CLAIM
            claimed = db.session.scalars(claim, {"size": size, "only": list(only)}).all()
            if not claimed:
                break
            submissions = store.submissions_to_build(claimed)
            touched: set[str] = set()
            for submission_id in claimed:
                if submission_id in submissions:  # (a purged submission has nothing to build)
                    touched |= store.rebuild(submissions[submission_id])
            # The claimed rows in one statement (deleted one by one through the session, each
            # was flushed by the next submission's first query).
            delete_in(_QUEUE.c.submission_id, claimed)
            refresh_sources(touched)
        done += len(claimed)
        if len(claimed) < size:
            break  # the queue (or `only`) is done: no empty transaction to find that out
    if match_persons:
        persons.match_queued(only=only)
    return done
