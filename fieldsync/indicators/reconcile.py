"""The full reconcile: every indicator value rebuilt from the records, compared with what the
incremental path stored, and only the differences written, with the drift (which must be
none) recorded in `reconcile_runs`. Run by the hourly job and `flask indicators recompute`.

Reads the records in groups of grantees so that memory follows the largest group; on SQLite
it reads a snapshot without the write lock and writes in one short transaction at the end.
"""
import contextlib
import gc
import json
import logging

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.orm import selectinload

from ..extensions import db, exclusive_turn, plain_rows, plain_stream, write_transaction
from ..models import (Event, IndicatorMember, IndicatorSource, IndicatorValue, PendingRecord, ReconcileRun,
                      Submission, SubmissionDef, utcnow)
from ..records import store
from . import payloads
from .contributions import Aggregator, RecordContributions
from .definitions import Definitions
from .engine import definitions
from .payloads import SUB_TABLES
from .tables import MEMBER_KEY, VALUE_KEY, Writer, chunks, delete_in, encode, set_months, set_payloads

log = logging.getLogger(__name__)


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
                    parts = payloads.record_parts(computer, record, date_field)
                    yield store.submission_source(record["submission_id"]), parts
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
        return encode(payload)

    def add_record(self, key, shared: list[list], own: list[list]) -> str:
        """Adds one record's parts; returns its payload encoded ("[]" when it has nothing)."""
        if key is None:
            self.aggregator.add(shared)
        else:
            self.times[key] = self.times.get(key, 0) + 1
            self.shared[key] = shared
        if own:
            self.aggregator.add(own)
            return encode(RecordContributions.merged(shared, own))
        if key is None:
            return encode(shared)
        encoded = self.encoded.get(key)
        if encoded is None:
            encoded = self.encoded[key] = encode(shared)
        return encoded

    def done(self) -> Aggregator:
        for key, times in self.times.items():
            self.aggregator.add(self.shared[key], times)
        self.times, self.shared, self.encoded = {}, {}, {}
        return self.aggregator


def _event_payloads(defs: Definitions, days: store.EveryDay, grantees: list[int]):
    """(source key, payload) of these grantees' every event day, from one pass (`EveryDay`)."""
    for grantee_id, day, grouped in days.of(grantees):
        yield store.event_source(grantee_id, day), payloads.day_payload(defs, grantee_id, day, grouped)


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
        for chunk in chunks([key for key, _encoded in batch], 900):
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
                    encoded = encoded_one[only] = encode(months)
            else:
                encoded = encode(months)
            if encoded != stored:
                self.member_updates.append({"row_id": row_id, "months": encoded})
        self.new_members.update(refs)
        self._written_or_kept()

    def write_differences(self) -> None:
        """Every difference kept so far, written (inside a write transaction) and let go."""
        sources, values, members = IndicatorSource.__table__, IndicatorValue.__table__, IndicatorMember.__table__
        Writer(sources, ("key", "payload")).write(self.source_inserts)
        for chunk in chunks(self.source_updates, 5000):
            set_payloads(chunk)
        delete_in(sources.c.key, self.stale_sources, 900)
        Writer(values, VALUE_KEY + ("total", "weight")).write(self.cell_inserts)
        if self.cell_updates:
            db.session.execute(update(values).where(values.c.id == bindparam("row_id"))
                               .values(total=bindparam("total"), weight=bindparam("weight")), self.cell_updates)
        delete_in(values.c.id, self.gone_cells, 900)
        for chunk in chunks(self.member_updates, 5000):
            set_months(chunk)
        delete_in(members.c.id, self.gone_members, 900)
        Writer(members, MEMBER_KEY + ("months",)).write(
            (*member, encode(months)) for member, months in self.new_members.items())
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
