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
import os
import pickle
import subprocess
import sys

from flask import current_app
from sqlalchemy import delete, func, select, text

from ..config import PROJECT_ROOT
from ..extensions import (chunks, db, exclusive_turn, plain_rows, plain_stream, sqlite_database_file,
                          write_transaction)
from ..models import (Event, IndicatorMember, IndicatorSource, IndicatorValue, PendingRecord, ReconcileRun,
                      Submission, utcnow)
from ..records import store
from . import payloads
from .contributions import Aggregator, RecordContributions
from .definitions import Definitions
from .engine import definitions
from .payloads import SUB_TABLES
from .tables import MEMBER_KEY, VALUE_KEY, Writer, delete_in, encode, set_months, set_payloads, set_totals

log = logging.getLogger(__name__)


# A recompute remembers the count and sum entries of up to this many distinct combinations
# of a record's grantee, month and fields (see `RecordContributions`), about 1 kB each.
RECORD_MEMO = 20_000


def _submission_parts(defs: Definitions, grantees: list[int], size: int = 5000):
    """(source key, (key, shared, own) or None) of the submission sources of these grantees, as
    `source_payload` computes them, but read table by table and grantee by grantee in batches
    (through the index on grantee and submission) instead of a query per submission, with the
    shared entries memoised across records."""
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
        self.times: dict[tuple, list] = {}  # memo key -> [shared entries, records that have them]
        self.encoded: dict[tuple, str] = {}

    def add_payload(self, payload: list[list]) -> str:
        self.aggregator.add(payload)
        return encode(payload)

    def add_record(self, key, shared: list[list], own: list[list]) -> str:
        """Adds one record's parts; returns its payload encoded ("[]" when it has nothing)."""
        if key is None:
            self.aggregator.add(shared)
        elif key in self.times:
            self.times[key][1] += 1
        else:
            self.times[key] = [shared, 1]
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
        for shared, times in self.times.values():
            self.aggregator.add(shared, times)
        self.times, self.encoded = {}, {}
        return self.aggregator


def _event_payloads(defs: Definitions, days: store.EveryDay, grantees: list[int]):
    """(source key, payload) of these grantees' every event day, from one pass (`EveryDay`)."""
    for grantee_id, day, grouped in days.of(grantees):
        yield store.event_source(grantee_id, day), payloads.day_payload(defs, grantee_id, day, grouped)


# The reconcile works through the grantees in groups of about this many records, so that what
# it holds (sums, member references, stored cells) follows a group, not the whole programme.
GROUP_RECORDS = 25_000


def _grantee_groups(size: int) -> list[tuple[list[int], int]]:
    """Every grantee with records or stored values, in id order, in groups of about `size`
    records (a grantee with more is a group of its own), each with its number of records."""
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
            groups.append((group, records))
            group, records = [], 0
        group.append(grantee_id)
        records += counts[grantee_id]
    return groups + ([(group, records)] if group else [])


def _shares(groups: list[tuple[list[int], int]], ways: int) -> list[list[list[int]]]:
    """The groups dealt into `ways` shares of about equal records, largest groups first."""
    shares: list[list[list[int]]] = [[] for _ in range(ways)]
    records = [0] * ways
    for group, size in sorted(groups, key=lambda item: -item[1]):
        least = records.index(min(records))
        shares[least].append(group)
        records[least] += size
    return shares


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

    def absorb(self, other: "_Seen") -> None:
        self.days |= other.days
        if len(other.bits) > len(self.bits):
            self.bits.extend(bytes(len(other.bits) - len(self.bits)))
        for i, byte in enumerate(other.bits):
            if byte:
                self.bits[i] |= byte

    def __contains__(self, key: str) -> bool:
        if key.startswith("sub:"):
            number = int(key[4:])
            return number >> 3 < len(self.bits) and bool(self.bits[number >> 3] & (1 << (number & 7)))
        return key in self.days


def _rebuild_all(size: int = 500) -> None:
    """Every submission's records again, in id batches (each read in one query, then let go)."""
    last = 0
    while True:
        ids = db.session.scalars(select(Submission.id).where(Submission.id > last)
                                 .order_by(Submission.id).limit(size)).all()
        if not ids:
            return
        batch = store.submissions_to_build(ids)
        for submission_id in sorted(batch):
            store.rebuild(batch[submission_id])
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

    # The kept differences: lists of rows, and `new_members` (member -> months).
    DIFFERENCES = ("source_inserts", "source_updates", "stale_sources", "cell_inserts", "cell_updates",
                   "gone_cells", "member_updates", "gone_members")

    def __init__(self, limit: int | None):
        self.limit = limit
        self._let_go()
        self.days = store.EveryDay()
        self.cells = 0
        self.drift: list = []
        self.written = 0

    def _let_go(self) -> None:
        for name in self.DIFFERENCES:
            setattr(self, name, [])
        self.new_members: dict[tuple, dict] = {}

    def _kept(self) -> int:
        return sum(len(getattr(self, name)) for name in self.DIFFERENCES) + len(self.new_members)

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

    def portable(self) -> dict:
        """What this reconcile found (differences, counts, drift, merge trace and candidates),
        to send from a helper process to the one that writes (see `absorb`)."""
        return {**{name: getattr(self, name) for name in self.DIFFERENCES}, "new_members": self.new_members,
                "cells": self.cells, "drift": self.drift, "trace": self.days.trace, "found": self.days.found,
                "ids": self.days.ids}

    def absorb(self, found: dict) -> None:
        for name in (*self.DIFFERENCES, "drift"):
            getattr(self, name).extend(found[name])
        self.new_members.update(found["new_members"])
        self.cells += found["cells"]
        self.days.trace.update(found["trace"])
        self.days.found += found["found"]
        self.days.ids |= found["ids"]
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
            set_totals(self.cell_updates)
        delete_in(values.c.id, self.gone_cells, 900)
        for chunk in chunks(self.member_updates, 5000):
            set_months(chunk)
        delete_in(members.c.id, self.gone_members, 900)
        Writer(members, MEMBER_KEY + ("months",)).write(
            (*member, encode(months)) for member, months in self.new_members.items())
        self.written += self._kept()
        self._let_go()

    def write(self) -> None:
        self.write_differences()
        self.days.write()


def _reconcile_groups(defs: Definitions, mend: _Mend, seen: _Seen, groups: list[list[int]]) -> None:
    """The sources, cells and members of these groups of grantees computed again from the
    records and compared with what is stored, one group at a time. Streams: sources are
    computed one at a time and only their sum is kept (plus each distinct member's months),
    so memory follows the cells and members of a group rather than the number of
    submissions."""
    with _collector_paused():
        _compare_groups(defs, mend, seen, groups)


def _compare_groups(defs: Definitions, mend: _Mend, seen: _Seen, groups: list[list[int]]) -> None:
    for grantees in groups:
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


# A reconcile of at least this many records shares its groups with helper processes (as many
# as `RECOMPUTE_PROCESSES` allows, one less than it names): each computes its share's
# differences from the same state of the database and sends them here to be written.
PARALLEL_RECORDS = 200_000


def _helpers_wanted(groups: list[tuple[list[int], int]]) -> int:
    processes = current_app.config["FIELDSYNC"].get("RECOMPUTE_PROCESSES") or min(2, os.cpu_count() or 1)
    engine = db.session.get_bind()
    if engine.dialect.name == "sqlite" and sqlite_database_file(engine) is None:
        return 0  # a database in memory: no other process can read it
    if len(groups) < 2 or sum(size for _group, size in groups) < PARALLEL_RECORDS:
        return 0
    return max(0, min(processes, len(groups)) - 1)


def _reconcile(defs: Definitions, limit: int | None) -> _Mend:
    """Every source computed again from the records and compared with what is stored (see
    `_Mend`), a group of grantees at a time (`_grantee_groups`), shared with helper processes
    for a large programme. A helper that fails or finds too much to keep leaves its share to
    this process."""
    mend, seen = _Mend(limit), _Seen()
    groups = _grantee_groups(GROUP_RECORDS)
    helpers = _helpers_wanted(groups)
    if not helpers:
        _reconcile_groups(defs, mend, seen, [group for group, _size in groups])
    else:
        own, *shares = _shares(groups, helpers + 1)
        log.info("indicator reconcile: %d groups of grantees, %d of them in %d helper process(es)",
                 len(groups), sum(len(share) for share in shares), helpers)
        snapshot = None
        if db.session.get_bind().dialect.name == "postgresql":
            # The helpers read the database as this transaction sees it (its lock included).
            snapshot = db.session.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        settings = {"INSTANCE_PATH": current_app.instance_path, **current_app.config["FIELDSYNC"],
                    "SCHEDULER": "off"}
        started = [_Helper({"settings": settings, "groups": share, "snapshot": snapshot,
                            "limit": MEND_IN_MEMORY if limit is None else limit}) for share in shares]
        try:
            _reconcile_groups(defs, mend, seen, own)
            for share, helper in zip(shares, started):
                try:
                    found = helper.result()
                except Exception:
                    log.exception("a reconcile helper failed; its share is computed here")
                    found = None
                if found is None:
                    _reconcile_groups(defs, mend, seen, share)
                else:
                    mend.absorb(found["mend"])
                    seen.absorb(found["seen"])
        finally:
            for helper in started:
                helper.stop()
    mend.compare_stale_sources(seen)
    mend.drift.sort()
    return mend


def _helper_command() -> list[str]:
    return [sys.executable, "-m", "fieldsync.indicators.helper"]


class _Helper:
    """A helper process (`helper.py`, a fresh interpreter: never a fork of this one, which may
    have threads) computing a share of the groups; started at once, its result read later.
    The request and the result cross its stdin and stdout pickled: it is our own process."""

    def __init__(self, request: dict):
        self.process = subprocess.Popen(_helper_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        cwd=str(PROJECT_ROOT))
        self.process.stdin.write(pickle.dumps(request))
        self.process.stdin.close()

    def result(self):
        """What `compute_share` returned (None: too much to keep); raises if the helper failed."""
        output = self.process.stdout.read()
        code = self.process.wait()
        if code != 0:
            raise RuntimeError(f"the reconcile helper exited with status {code}")
        return pickle.loads(output)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


def compute_share(settings: dict, groups: list[list[int]], snapshot: str | None, limit: int) -> dict | None:
    """In a helper process: what `_Mend.portable` gives and the sources seen, for these groups
    of grantees, read from the same state as the reconcile that asked (on PostgreSQL its
    exported snapshot; on SQLite the state that its `indicators` turn keeps still); None when
    they differ by more than `limit` rows."""
    from .. import create_app
    app = create_app(dict(settings))
    with app.app_context():
        try:
            if snapshot is not None:
                if not all(c in "0123456789ABCDEFabcdef-" for c in snapshot):
                    raise ValueError(f"not a snapshot id: {snapshot!r}")
                db.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
                db.session.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            mend, seen = _Mend(limit), _Seen()
            _reconcile_groups(definitions(), mend, seen, groups)
            return {"mend": mend.portable(), "seen": seen}
        except _TooMuchToMend:
            return None
        finally:
            db.session.rollback()
            db.session.remove()
            db.engine.dispose()


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
