"""Keeping indicator values right: incremental updates and the full reconcile.

A *source* is a unit of records whose contributions are computed together: one grantee's
events of one day (events of a day can merge, so they are grouped together) or one
submission of another form. When a submission changes, its records are rebuilt and each
affected source's new payload is compared with the one it last applied; only the difference
touches `indicator_values`. `recompute` rebuilds every value from the records and records any
drift from what the incremental path had (which must be zero).
"""
import contextlib
import gc
import json
import logging
from pathlib import Path

import orjson
from flask import current_app
from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlalchemy.orm import joinedload, selectinload

from ..extensions import db, dialect_insert, exclusive_turn, plain_rows, plain_stream, write_transaction
from ..models import (Assessment, Event, IndicatorMember, IndicatorSource, IndicatorValue, Interview,
                      PendingRecord, ReconcileRun, Service, Submission, SubmissionDef, utcnow)
from ..records import store
from .contributions import Aggregator, RecordContributions, compact, contributions, periods_of
from .definitions import Definitions, load

log = logging.getLogger(__name__)
# Services first: most submissions are consultations, and a source's lookup stops at its table.
SUB_TABLES = (("service", Service, "service_date"), ("assessment", Assessment, "interview_date"),
              ("interview", Interview, "interview_date"))
_cache: dict = {}


def definitions() -> Definitions:
    path = Path(current_app.config["FIELDSYNC"]["FORMS_PATH"]) / "indicators.yaml"
    stamp = (str(path), path.stat().st_mtime_ns)
    if _cache.get("stamp") != stamp:
        _cache.update(stamp=stamp, definitions=load(path))
    return _cache["definitions"]


def _day_payload(defs: Definitions, grantee_id: int, day, grouped: dict) -> list[list]:
    """The contributions of one grantee's events of one day, grouped per scope by `store`."""
    payload = []
    for scope, groups in grouped.items():
        rows = {"event": [], "attendance": []}
        for group, attendance, members in groups:
            first = members[0]
            rows["event"].append({
                "date": day, "event_type": group.canonical.event_type, "topic": group.canonical.topic,
                "region": first.region, "rayon": first.rayon,
                # The same event seen from two devices: people present once, not twice.
                "headcount_female": max(m.headcount_female for m in members),
                "headcount_male": max(m.headcount_male for m in members),
                "materials_distributed": max(m.materials_distributed for m in members),
                "registered": len(attendance)})
            rows["attendance"].extend(
                {"date": day, "event_type": group.canonical.event_type, "sex": p.sex,
                 "category": p.category, "person": person}
                for person, p in sorted(attendance.items()))
        payload += contributions(defs, rows, grantee_id, scope)
    return compact(payload)


def _record_parts(computer: RecordContributions, record, date_field: str):
    """(key, shared, own) of one assessment, interview or service record (a mapping), as
    `RecordContributions.of` gives them, or None for a record that counts nowhere."""
    if record["grantee_id"] is None or not record["counted"]:
        return None
    return computer.of({**record, "date": record[date_field]}, record["grantee_id"],
                       ("all", "approved") if record["approved"] else ("all",))


def _record_payload(defs: Definitions, source: str, record, date_field: str) -> list[list]:
    """The contributions of one assessment, interview or service record (a mapping)."""
    parts = _record_parts(RecordContributions(defs, source), record, date_field)
    return [] if parts is None else RecordContributions.merged(parts[1], parts[2])


def source_payload(key: str, defs: Definitions) -> list[list]:
    """What one source contributes now, read from its records. Entries are sorted (lists of
    str and numbers in fixed positions compare element by element), so equal payloads are
    equal lists."""
    parsed = store.parse_source(key)
    if parsed[0] == "ev":
        _, grantee_id, day = parsed
        if grantee_id is None:
            return []
        return _day_payload(defs, grantee_id, day, store.bucket(grantee_id, day))
    submission_id = parsed[1]
    for source, model, date_field in SUB_TABLES:
        table = model.__table__
        record = db.session.execute(select(table).where(table.c.submission_id == submission_id)).mappings().first()
        if record is not None:
            return _record_payload(defs, source, record, date_field)  # a submission's records are in one table
    return []


def _encode(value) -> str:
    """Payloads and month counts as stored text (orjson: a recompute writes one per source)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _chunks(items, size=400):
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _delete_in(column, values, size: int = 400) -> None:
    """Delete the rows whose `column` is one of `values`, a chunk of them at a time."""
    for chunk in _chunks(values, size):
        db.session.execute(delete(column.table).where(column.in_(chunk)))


def _set_payloads(rows: list[dict]) -> None:
    """Source payloads replaced, rows of {"source_key", "payload"}."""
    table = IndicatorSource.__table__
    db.session.execute(update(table).where(table.c.key == bindparam("source_key"))
                       .values(payload=bindparam("payload")), rows)


def _set_months(rows: list[dict]) -> None:
    """Members' month counts replaced, rows of {"row_id", "months"}."""
    table = IndicatorMember.__table__
    db.session.execute(update(table).where(table.c.id == bindparam("row_id"))
                       .values(months=bindparam("months")), rows)


@contextlib.contextmanager
def indicator_transaction(durable: bool = True):
    """The write transaction of anything that changes records or stored indicator values (the
    derive batches, a coordinator's duplicate decision): the `indicators` turn first, which a
    reconcile reading its snapshot holds on SQLite, then `write_transaction`."""
    with exclusive_turn("indicators"), write_transaction(durable=durable) as session:
        yield session


def _rows_by_key(model, names: tuple[str, ...], keys, *extra) -> dict[tuple, object]:
    """Rows (`names` columns then `extra` columns) of `model` whose `names` take one of the
    `keys` tuples, locked for update, in key order.

    One `IN` per column rather than a row-value `IN`: SQLite uses the unique index for a
    column-by-column `IN` (a row-value `IN` scanned the whole table). The cross product may
    name a few rows that were not asked for; they are filtered out here.
    """
    columns = tuple(getattr(model, name) for name in names)
    found = {}
    for chunk in _chunks(sorted(keys)):
        wanted = set(chunk)
        query = select(*columns, *extra).where(
            *[column.in_(sorted({key[i] for key in chunk})) for i, column in enumerate(columns)])
        for row in db.session.execute(query.order_by(*columns).with_for_update()):
            key = tuple(row[:len(names)])
            if key in wanted:
                found[key] = row
    return found


MEMBER_KEY = ("indicator", "grantee_id", "scope", "coc", "member")
VALUE_KEY = ("indicator", "grantee_id", "scope", "period", "coc")


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
    db.session.execute(dialect_insert(table).on_conflict_do_nothing(index_elements=list(MEMBER_KEY)), placeholders)
    rows = _rows_by_key(IndicatorMember, MEMBER_KEY, changes, IndicatorMember.id, IndicatorMember.months)
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
            updates.append({"row_id": row.id, "months": _encode(months)})
        else:
            gone.append(row.id)
    if updates:
        _set_months(updates)
    _delete_in(table.c.id, gone)


def _apply_values(deltas: dict[tuple, list[float]]) -> None:
    """Add the deltas to the cells in one upsert (INSERT … ON CONFLICT DO UPDATE SET total =
    total + delta), in key order; then drop the cells that became empty."""
    table = IndicatorValue.__table__
    rows = [dict(zip(VALUE_KEY, cell), total=d[0], weight=d[1]) for cell, d in sorted(deltas.items())]
    upsert = dialect_insert(table)
    upsert = upsert.on_conflict_do_update(index_elements=list(VALUE_KEY), set_={
        "total": table.c.total + upsert.excluded.total, "weight": table.c.weight + upsert.excluded.weight})
    # RETURNING gives each touched cell's new value, so the cells this update emptied are
    # known without another look (an empty cell is never kept, nor inserted empty: a delta of
    # nothing is dropped by the caller).
    # (No sort_by_parameter_order: on SQLite it would run one INSERT per row; the order of
    # the returned rows does not matter here.)
    upsert = upsert.returning(table.c.id, table.c.total, table.c.weight)
    emptied = []
    for chunk in _chunks(rows, 500):
        emptied += [row.id for row in db.session.execute(upsert, chunk)
                    if abs(row.total) < 1e-9 and abs(row.weight) < 1e-9]
    _delete_in(table.c.id, emptied)


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
    table = IndicatorSource.__table__
    payloads = {}
    for chunk in _chunks(sorted(keys)):
        db.session.execute(dialect_insert(table).on_conflict_do_nothing(index_elements=["key"]),
                           [{"key": k, "payload": "[]"} for k in chunk])
        payloads.update(db.session.execute(select(table.c.key, table.c.payload).where(
            table.c.key.in_(chunk)).order_by(table.c.key).with_for_update()).all())
    return payloads


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
            changed.append({"source_key": key, "payload": _encode(new)})
        else:
            gone.append(key)
    touched = apply_difference(all_old, all_new) if changed or gone else 0
    if changed:
        _set_payloads(changed)
    _delete_in(table.c.key, gone)
    return touched


def process_pending(limit: int = 10_000, batch: int = 25, only=()) -> int:
    """Rebuild records and indicators for queued submissions; returns how many were done.

    Each batch is one transaction: its submissions' records are rebuilt, then every source
    they touch is recomputed once. Batches stay small because on SQLite a batch holds the one
    write lock, and devices' uploads wait behind it. Rows another worker has claimed are
    skipped (PostgreSQL). `only` restricts the work to those submissions.
    """
    done = 0
    while done < limit:
        # Not durable: if a power cut undoes this commit, the queue rows it deleted come back.
        with indicator_transaction(durable=False):
            query = select(PendingRecord).order_by(PendingRecord.queued_at, PendingRecord.submission_id)
            if only:
                query = query.where(PendingRecord.submission_id.in_(list(only)))
            size = min(batch, limit - done)
            claimed = db.session.scalars(query.limit(size).with_for_update(skip_locked=True)).all()
            if not claimed:
                break
            # The batch's submissions with their current version and form in one query (four
            # lazy loads each, otherwise).
            submissions = {s.id: s for s in db.session.scalars(select(Submission).where(
                Submission.id.in_([p.submission_id for p in claimed])).options(
                joinedload(Submission.current_def).joinedload(SubmissionDef.form_version),
                joinedload(Submission.form)))}
            touched: set[str] = set()
            for pending in claimed:
                if pending.submission_id in submissions:  # (a purged submission has nothing to build)
                    touched |= store.rebuild(submissions[pending.submission_id])
                db.session.delete(pending)
            refresh_sources(touched)
        done += len(claimed)
        if len(claimed) < size:
            break  # the queue (or `only`) is done: no empty transaction to find that out
    return done


# A recompute remembers the count and sum entries of up to this many distinct combinations
# of a record's grantee, month and fields (see `RecordContributions`), about 1 kB each.
RECORD_MEMO = 20_000


def _submission_parts(defs: Definitions, grantees: list[int], size: int = 5000):
    """(source key, (key, shared, own) or None) of the submission sources of these grantees, as
    `source_payload` computes them, but read table by table and grantee by grantee in batches
    of plain rows (through the index on grantee and submission) instead of a query per
    submission, with the shared entries memoised across records."""
    for source, model, date_field in SUB_TABLES:
        table = model.__table__
        computer = RecordContributions(defs, source, RECORD_MEMO)
        for grantee_id in grantees:
            last = None
            while True:
                query = select(table).where(table.c.grantee_id == grantee_id).order_by(table.c.submission_id).limit(size)
                if last is not None:
                    query = query.where(table.c.submission_id > last)
                rows = db.session.execute(query).mappings().all()
                for record in rows:
                    yield store.submission_source(record["submission_id"]), _record_parts(computer, record, date_field)
                if len(rows) < size:
                    break
                last = rows[-1]["submission_id"]


class _Sums:
    """The full recompute's sum of every payload (an `Aggregator`), with the submission sources'
    shared entries counted per memo key and added once each at the end (most consultations
    share theirs with many others), and their encodings kept per key too."""

    def __init__(self):
        self.aggregator = Aggregator()
        self.times: dict[tuple, int] = {}
        self.shared: dict[tuple, list[list]] = {}
        self.encoded: dict[tuple, str] = {}

    def add_payload(self, payload: list[list]) -> str:
        self.aggregator.add(payload)
        return _encode(payload)

    def add_record(self, key, shared: list[list], own: list[list]) -> str:
        """Adds one record's parts; returns its payload encoded ("[]" when it has nothing)."""
        if key is None:
            self.aggregator.add(shared)
        else:
            self.times[key] = self.times.get(key, 0) + 1
            self.shared[key] = shared
        if own:
            self.aggregator.add(own)
            return _encode(RecordContributions.merged(shared, own))
        if key is None:
            return _encode(shared)
        encoded = self.encoded.get(key)
        if encoded is None:
            encoded = self.encoded[key] = _encode(shared)
        return encoded

    def done(self) -> Aggregator:
        for key, times in self.times.items():
            self.aggregator.add(self.shared[key], times)
        self.times, self.shared, self.encoded = {}, {}, {}
        return self.aggregator


def _event_payloads(defs: Definitions, days: store.EveryDay, grantees: list[int]):
    """(source key, payload) of these grantees' every event day, from one pass (`EveryDay`)."""
    for grantee_id, day, grouped in days.of(grantees):
        yield store.event_source(grantee_id, day), _day_payload(defs, grantee_id, day, grouped)


# The reconcile works through the grantees in groups of about this many records, so that what
# it holds (sums, member references, stored cells) follows a group, not the whole programme.
GROUP_RECORDS = 50_000


def _grantee_groups(size: int) -> list[list[int]]:
    """Every grantee with records or stored values, in id order, in groups of about `size`
    records (a grantee with more is a group of its own)."""
    counts: dict[int, int] = {}
    for model in (Event, *(model for _source, model, _date in SUB_TABLES)):
        table = model.__table__
        for grantee_id, n in db.session.execute(select(table.c.grantee_id, func.count()).where(
                table.c.grantee_id.is_not(None)).group_by(table.c.grantee_id)):
            counts[grantee_id] = counts.get(grantee_id, 0) + n
    for model in (IndicatorValue, IndicatorMember):
        for grantee_id in db.session.scalars(select(model.grantee_id).distinct()):
            counts.setdefault(grantee_id, 0)
    groups, group, records = [], [], 0
    for grantee_id in sorted(counts):
        if group and records + counts[grantee_id] > size:
            groups.append(group)
            group, records = [], 0
        group.append(grantee_id)
        records += counts[grantee_id]
    return groups + ([group] if group else [])


class _Seen:
    """The source keys a reconcile computed, to find the stored ones it did not: event days as
    text, submissions as bits of a bit array by id (a million of them in 125 kB)."""

    def __init__(self):
        self.days: set[str] = set()
        self.bits = bytearray()

    def add(self, key: str) -> None:
        if key.startswith("sub:"):
            number = int(key[4:])
            if number >> 3 >= len(self.bits):
                self.bits.extend(bytes((number >> 3) - len(self.bits) + 1024))
            self.bits[number >> 3] |= 1 << (number & 7)
        else:
            self.days.add(key)

    def __contains__(self, key: str) -> bool:
        if key.startswith("sub:"):
            number = int(key[4:])
            return number >> 3 < len(self.bits) and bool(self.bits[number >> 3] & (1 << (number & 7)))
        return key in self.days


def _rebuild_all(size: int = 500) -> None:
    """Every submission's records again, in id batches (each loaded with its current version
    and form at once, then let go)."""
    last = 0
    while True:
        ids = db.session.scalars(select(Submission.id).where(Submission.id > last)
                                 .order_by(Submission.id).limit(size)).all()
        if not ids:
            return
        batch = db.session.scalars(select(Submission).where(Submission.id.in_(ids)).options(
            selectinload(Submission.current_def).selectinload(SubmissionDef.form_version),
            selectinload(Submission.form))).all()
        for submission in sorted(batch, key=lambda s: s.id):
            store.rebuild(submission)
        db.session.flush()
        del batch
        last = ids[-1]


class _Writer:
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


class _TooMuchToMend(Exception):
    """A reconcile from a snapshot found more differences than it keeps in memory."""


class _Mend:
    """What a reconcile found to write: the differences from the stored sources, cells and
    members, and the merge trace and event candidates. Computed by `_reconcile` (which only
    reads when a `limit` is given), written by `write` inside a write transaction.

    With `limit`, at most that many differing rows are kept to write at the end; beyond,
    `_TooMuchToMend` is raised (the caller starts again with the write lock held, writing as
    it goes). Without it the differences are written as they are found (the sources a batch
    at a time, cells and members a group of grantees at a time), so memory does not follow
    the number of rows however much differs."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.source_inserts, self.source_updates, self.stale_sources = [], [], []
        self.cell_inserts, self.cell_updates, self.gone_cells = [], [], []
        self.member_updates, self.gone_members, self.new_members = [], [], {}
        self.days = store.EveryDay()
        self.cells = 0
        self.drift: list = []
        self.written = 0

    def _kept(self) -> int:
        return (len(self.source_inserts) + len(self.source_updates) + len(self.stale_sources)
                + len(self.cell_inserts) + len(self.cell_updates) + len(self.gone_cells)
                + len(self.member_updates) + len(self.gone_members) + len(self.new_members))

    def _written_or_kept(self) -> None:
        if self.limit is None:
            self.write_differences()
        elif self._kept() > self.limit:
            raise _TooMuchToMend()

    def compare_sources(self, batch: list[tuple[str, str]]) -> None:
        """Which of a batch of computed (key, encoded payload) differ from the stored ones."""
        table, stored = IndicatorSource.__table__, {}
        for chunk in _chunks([key for key, _encoded in batch], 900):
            stored.update(plain_rows(select(table.c.key, table.c.payload).where(table.c.key.in_(chunk))))
        for key, encoded in batch:
            old = stored.get(key)
            if old is None:
                self.source_inserts.append((key, encoded))
            elif old != encoded:
                self.source_updates.append({"source_key": key, "payload": encoded})
        self._written_or_kept()

    def compare_stale_sources(self, seen: _Seen) -> None:
        """The stored sources that nothing computed any more."""
        table = IndicatorSource.__table__
        self.stale_sources += [key for (key,) in plain_stream(select(table.c.key)) if key not in seen]
        self._written_or_kept()

    def compare_cells(self, grantees: list[int], fresh: dict[tuple, list[float]]) -> None:
        """The stored cells of these grantees against `fresh` (cell -> [total, weight])."""
        values = IndicatorValue.__table__
        stored = {tuple(row[1:6]): (row[0], row[6], row[7]) for row in db.session.execute(select(
            values.c.id, values.c.indicator, values.c.grantee_id, values.c.scope, values.c.period, values.c.coc,
            values.c.total, values.c.weight).where(values.c.grantee_id.in_(grantees)))}
        self.cells += len(fresh)
        self.drift += [[list(cell), list(stored[cell][1:]) if cell in stored else None, fresh.get(cell)]
                       for cell in set(stored) | set(fresh)
                       if not _close(stored[cell][1:] if cell in stored else None, fresh.get(cell))]
        self.gone_cells += [row_id for cell, (row_id, _t, _w) in stored.items() if cell not in fresh]
        for cell, (total, weight) in fresh.items():
            old = stored.get(cell)
            if old is None:
                self.cell_inserts.append((*cell, total, weight))
            elif old[1] != total or old[2] != weight:
                self.cell_updates.append({"row_id": old[0], "total": total, "weight": weight})
        self._written_or_kept()

    def compare_members(self, grantees: list[int], refs: dict[tuple, dict]) -> None:
        """These grantees' stored members streamed against the computed `refs` (member ->
        {month: references}), which is emptied on the way: what is left is new, and no second
        copy is kept."""
        table = IndicatorMember.__table__
        encoded_one: dict[tuple, str] = {}  # most members are in one month, once
        for row_id, *member, stored in plain_stream(
                select(table.c.id, *[table.c[name] for name in MEMBER_KEY], table.c.months)
                .where(table.c.grantee_id.in_(grantees))):
            months = refs.pop(tuple(member), None)
            if months is None:
                self.gone_members.append(row_id)
                continue
            if len(months) == 1:
                (only,) = months.items()
                encoded = encoded_one.get(only)
                if encoded is None:
                    encoded = encoded_one[only] = _encode(months)
            else:
                encoded = _encode(months)
            if encoded != stored:
                self.member_updates.append({"row_id": row_id, "months": encoded})
        self.new_members.update(refs)
        self._written_or_kept()

    def write_differences(self) -> None:
        """Every difference kept so far, written (inside a write transaction) and let go."""
        sources, values, members = IndicatorSource.__table__, IndicatorValue.__table__, IndicatorMember.__table__
        _Writer(sources, ("key", "payload")).write(self.source_inserts)
        for chunk in _chunks(self.source_updates, 5000):
            _set_payloads(chunk)
        _delete_in(sources.c.key, self.stale_sources, 900)
        _Writer(values, VALUE_KEY + ("total", "weight")).write(self.cell_inserts)
        if self.cell_updates:
            db.session.execute(update(values).where(values.c.id == bindparam("row_id"))
                               .values(total=bindparam("total"), weight=bindparam("weight")), self.cell_updates)
        _delete_in(values.c.id, self.gone_cells, 900)
        for chunk in _chunks(self.member_updates, 5000):
            _set_months(chunk)
        _delete_in(members.c.id, self.gone_members, 900)
        _Writer(members, MEMBER_KEY + ("months",)).write(
            (*member, _encode(months)) for member, months in self.new_members.items())
        self.written += self._kept()
        self.source_inserts, self.source_updates, self.stale_sources = [], [], []
        self.cell_inserts, self.cell_updates, self.gone_cells = [], [], []
        self.member_updates, self.gone_members, self.new_members = [], [], {}

    def write(self) -> None:
        self.write_differences()
        self.days.write()


def _reconcile(defs: Definitions, limit: int | None) -> _Mend:
    """Every source computed again from the records and compared with what is stored (see
    `_Mend`), a group of grantees at a time (`_grantee_groups`). Streams: sources are computed
    one at a time and only their sum is kept (plus each distinct member's months), so memory
    follows the number of cells and members of the largest group rather than the number of
    submissions."""
    mend, seen = _Mend(limit), _Seen()
    for grantees in _grantee_groups(GROUP_RECORDS):
        sums, batch = _Sums(), []

        def keep(key: str, encoded: str) -> None:
            if encoded != "[]":  # a source with nothing is not stored
                batch.append((key, encoded))
                seen.add(key)
                if len(batch) >= 2000:
                    mend.compare_sources(batch)
                    batch.clear()

        for key, payload in _event_payloads(defs, mend.days, grantees):
            keep(key, sums.add_payload(payload))
        for key, parts in _submission_parts(defs, grantees):
            if parts is not None:
                keep(key, sums.add_record(*parts))
        mend.compare_sources(batch)
        aggregator = sums.done()
        mend.compare_cells(grantees, aggregator.cells())
        mend.compare_members(grantees, aggregator.refs)
        del sums, aggregator
    mend.compare_stale_sources(seen)
    mend.drift.sort()
    return mend


@contextlib.contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while a reconcile computes. It builds hundreds of
    thousands of small containers (member references, stored cells) that live to its end, and
    every collection walked them all again: a quarter of its time at 100,000 submissions. It
    makes no reference cycles. Turned on again after, unless it was off already."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


# A reconcile from a snapshot keeps up to this many differing source and member rows to write
# afterwards (normally there are none); past it, it starts again under the write lock.
MEND_IN_MEMORY = 50_000


def recompute(trigger: str = "manual", rebuild_records: bool = False) -> ReconcileRun:
    """Rebuild every value from the records (optionally the records from the submissions),
    compare with what was stored, write only what differs, and record the drift (the cells
    that differed, which must be none).

    On SQLite the records are read in a snapshot with no write lock held, so uploads go on
    during a reconcile; the `indicators` turn (`extensions.exclusive_turn`) keeps every
    incremental update and duplicate decision out until the differences are written, in a
    short write transaction at the end. Elsewhere (PostgreSQL, which locks `indicator_sources`
    instead and never blocked uploads; no lock file; a rebuild of the records, which writes
    them), it all runs in one write transaction.
    """
    defs = definitions()
    started = utcnow()
    with exclusive_turn("indicators") as excluded:
        mend = None
        if excluded and not rebuild_records:
            try:
                db.session.commit()  # the reads below start one fresh read transaction: one snapshot
                with _collector_paused():
                    mend = _reconcile(defs, MEND_IN_MEMORY)
            except _TooMuchToMend:
                pass  # mend stays None: started again below, under the write lock
        with write_transaction():
            if mend is None:
                if db.session.get_bind().dialect.name == "postgresql":
                    # Every incremental update locks its sources' rows (or inserts them) first;
                    # holding the table makes them wait for this recompute, as SQLite's write
                    # lock does, so no update lands between reading the stored values and
                    # replacing them.
                    db.session.execute(text("LOCK TABLE indicator_sources IN EXCLUSIVE MODE"))
                if rebuild_records:
                    _rebuild_all()
                    db.session.execute(delete(PendingRecord))
                with _collector_paused():
                    mend = _reconcile(defs, None)
            mend.write()
            run = ReconcileRun(trigger=trigger, started_at=started, cells=mend.cells, drift=len(mend.drift),
                               details=json.dumps(mend.drift[:100], default=str), finished_at=utcnow())
            db.session.add(run)
    log.info("indicator reconcile: %d cells, %d drifting, %d rows rewritten", run.cells, run.drift, mend.written)
    if mend.drift:
        log.warning("indicator reconcile found %d drifting cells", len(mend.drift))
    return run


def _close(a, b) -> bool:
    a, b = a or [0.0, 0.0], b or [0.0, 0.0]
    return abs(a[0] - b[0]) < 1e-6 and abs(a[1] - b[1]) < 1e-6
