"""Keeping indicator values right: incremental updates and the full reconcile.

A *source* is a unit of records whose contributions are computed together: one grantee's
events of one day (events of a day can merge, so they are grouped together) or one
submission of another form. When a submission changes, its records are rebuilt and each
affected source's new payload is compared with the one it last applied; only the difference
touches `indicator_values`. `recompute` rebuilds every value from the records and records any
drift from what the incremental path had (which must be zero).
"""
import json
import logging
from pathlib import Path

from flask import current_app
from sqlalchemy import delete, select, tuple_

from ..extensions import db, write_transaction
from ..models import (Assessment, Event, IndicatorMember, IndicatorSource, IndicatorValue, Interview,
                      PendingRecord, ReconcileRun, Service, Submission, utcnow)
from ..records import store
from .contributions import additive_totals, aggregate, contributions, member_refs, periods_of
from .definitions import Definitions, load

log = logging.getLogger(__name__)
SUB_TABLES = (("assessment", Assessment, "interview_date"), ("interview", Interview, "interview_date"),
              ("service", Service, "service_date"))
_cache: dict = {}


def definitions() -> Definitions:
    path = Path(current_app.config["FIELDSYNC"]["FORMS_PATH"]) / "indicators.yaml"
    stamp = (str(path), path.stat().st_mtime_ns)
    if _cache.get("stamp") != stamp:
        _cache.update(stamp=stamp, definitions=load(path))
    return _cache["definitions"]


def _columns(record) -> dict:
    return {c.key: getattr(record, c.key) for c in record.__table__.columns}


def source_payload(key: str, defs: Definitions) -> list[list]:
    parsed = store.parse_source(key)
    payload = []
    if parsed[0] == "ev":
        _, grantee_id, day = parsed
        if grantee_id is None:
            return []
        for scope, groups in store.bucket(grantee_id, day).items():
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
        return sorted(payload, key=repr)
    submission_id = parsed[1]
    for source, model, date_field in SUB_TABLES:
        record = db.session.scalar(select(model).where(model.submission_id == submission_id))
        if record is None or record.grantee_id is None or not record.counted:
            continue
        row = {**_columns(record), "date": getattr(record, date_field)}
        scopes = ["all"] + (["approved"] if record.approved else [])
        for scope in scopes:
            payload += contributions(defs, {source: [row]}, record.grantee_id, scope)
    return sorted(payload, key=repr)


def _chunks(items, size=400):
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _rows_by_key(model, names: tuple[str, ...], keys) -> dict[tuple, object]:
    """Rows of `model` whose columns `names` take one of the `keys` tuples, locked for update."""
    columns = tuple(getattr(model, name) for name in names)
    found = {}
    for chunk in _chunks(keys):
        for row in db.session.scalars(select(model).where(tuple_(*columns).in_(chunk)).with_for_update()):
            found[tuple(getattr(row, name) for name in names)] = row
    return found


MEMBER_KEY = ("indicator", "grantee_id", "scope", "coc", "member")
VALUE_KEY = ("indicator", "grantee_id", "scope", "period", "coc")


def apply_difference(old: list[list], new: list[list]) -> int:
    """Move the stored values from `old` to `new` contributions; returns cells touched.

    Reads every row it changes in two queries and writes them in one flush, so the cost
    follows the size of the difference.
    """
    deltas: dict[tuple, list[float]] = {}

    def bump(cell, amount, weight):
        delta = deltas.setdefault(cell, [0.0, 0.0])
        delta[0] += amount
        delta[1] += weight

    before, after = additive_totals(old), additive_totals(new)
    for key in set(before) | set(after):
        d_amount = after.get(key, [0, 0])[0] - before.get(key, [0, 0])[0]
        d_weight = after.get(key, [0, 0])[1] - before.get(key, [0, 0])[1]
        if d_amount or d_weight:
            indicator, grantee, scope, month, coc = key
            for period in periods_of(month):
                bump((indicator, grantee, scope, period, coc), d_amount, d_weight)
    refs_before, refs_after = member_refs(old), member_refs(new)
    changes = {}
    for key in set(refs_before) | set(refs_after):
        months = set(refs_before.get(key, {})) | set(refs_after.get(key, {}))
        change = {m: refs_after.get(key, {}).get(m, 0) - refs_before.get(key, {}).get(m, 0) for m in months}
        change = {m: d for m, d in change.items() if d}
        if change:
            changes[key] = change
    rows = _rows_by_key(IndicatorMember, MEMBER_KEY, changes) if changes else {}
    for key, change in changes.items():
        indicator, grantee, scope, coc, member = key
        row = rows.get(key)
        months = json.loads(row.months) if row else {}
        was = {p for m, n in months.items() if n > 0 for p in periods_of(m)}
        for month, delta in change.items():
            months[month] = months.get(month, 0) + delta
        months = {m: n for m, n in months.items() if n > 0}
        now = {p for m in months for p in periods_of(m)}
        for period in now - was:
            bump((indicator, grantee, scope, period, coc), 1, 0)
        for period in was - now:
            bump((indicator, grantee, scope, period, coc), -1, 0)
        if months and row is None:
            db.session.add(IndicatorMember(indicator=indicator, grantee_id=grantee, scope=scope, coc=coc,
                                           member=member, months=json.dumps(months, sort_keys=True)))
        elif months:
            row.months = json.dumps(months, sort_keys=True)
        elif row is not None:
            db.session.delete(row)
    deltas = {cell: d for cell, d in deltas.items() if abs(d[0]) > 1e-12 or abs(d[1]) > 1e-12}
    stored = _rows_by_key(IndicatorValue, VALUE_KEY, deltas) if deltas else {}
    for cell, (d_total, d_weight) in deltas.items():
        row = stored.get(cell)
        total = (row.total if row else 0.0) + d_total
        weight = (row.weight if row else 0.0) + d_weight
        empty = abs(total) < 1e-9 and abs(weight) < 1e-9
        if row is None and not empty:
            indicator, grantee, scope, period, coc = cell
            db.session.add(IndicatorValue(indicator=indicator, grantee_id=grantee, scope=scope, period=period,
                                          coc=coc, total=total, weight=weight))
        elif row is not None and empty:
            db.session.delete(row)
        elif row is not None:
            row.total, row.weight = total, weight
    db.session.flush()
    return len(deltas)


def refresh_sources(keys, defs: Definitions | None = None) -> int:
    """Recompute the given sources and apply the differences (inside a write transaction)."""
    defs = defs or definitions()
    touched = 0
    for key in sorted(keys):
        source = db.session.get(IndicatorSource, key, with_for_update=True)
        old = json.loads(source.payload) if source else []
        new = source_payload(key, defs)
        if new == old:
            continue
        touched += apply_difference(old, new)
        if source is None:
            db.session.add(IndicatorSource(key=key, payload=json.dumps(new)))
        elif new:
            source.payload = json.dumps(new)
        else:
            db.session.delete(source)
    db.session.flush()
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
        with write_transaction():
            query = select(PendingRecord).order_by(PendingRecord.queued_at, PendingRecord.submission_id)
            if only:
                query = query.where(PendingRecord.submission_id.in_(list(only)))
            claimed = db.session.scalars(query.limit(min(batch, limit - done)).with_for_update(skip_locked=True)).all()
            if not claimed:
                break
            touched: set[str] = set()
            for pending in claimed:
                touched |= store.rebuild(db.session.get(Submission, pending.submission_id))
                db.session.delete(pending)
            refresh_sources(touched)
        done += len(claimed)
    return done


def all_source_keys() -> set[str]:
    keys = {store.event_source(g, d) for g, d in db.session.execute(
        select(Event.grantee_id, Event.event_date).distinct()).all()}
    for _source, model, _date in SUB_TABLES:
        keys |= {store.submission_source(s) for s in db.session.scalars(select(model.submission_id))}
    return keys


def recompute(trigger: str = "manual", rebuild_records: bool = False) -> ReconcileRun:
    """Rebuild every value from the records (optionally the records from the submissions),
    compare with what was stored, store the result and the drift."""
    defs = definitions()
    with write_transaction():
        run = ReconcileRun(trigger=trigger)
        db.session.add(run)
        if rebuild_records:
            for submission in db.session.scalars(select(Submission)):
                store.rebuild(submission)
            db.session.execute(delete(PendingRecord))
        stored = {(v.indicator, v.grantee_id, v.scope, v.period, v.coc): [v.total, v.weight]
                  for v in db.session.scalars(select(IndicatorValue))}
        payloads = {key: source_payload(key, defs) for key in sorted(all_source_keys())}
        fresh = aggregate(payloads.values())
        drift = sorted(
            [list(cell), stored.get(cell), fresh.get(cell)]
            for cell in set(stored) | set(fresh)
            if not _close(stored.get(cell), fresh.get(cell)))
        db.session.execute(delete(IndicatorValue))
        db.session.execute(delete(IndicatorMember))
        db.session.execute(delete(IndicatorSource))
        db.session.add_all(IndicatorValue(indicator=i, grantee_id=g, scope=s, period=p, coc=c, total=t, weight=w)
                           for (i, g, s, p, c), (t, w) in fresh.items())
        refs = member_refs([e for payload in payloads.values() for e in payload])
        db.session.add_all(IndicatorMember(indicator=i, grantee_id=g, scope=s, coc=c, member=m,
                                           months=json.dumps(dict(months), sort_keys=True))
                           for (i, g, s, c, m), months in refs.items())
        db.session.add_all(IndicatorSource(key=k, payload=json.dumps(p)) for k, p in payloads.items() if p)
        run.cells, run.drift = len(fresh), len(drift)
        run.details = json.dumps(drift[:100], default=str)
        run.finished_at = utcnow()
    if drift:
        log.warning("indicator reconcile found %d drifting cells", len(drift))
    return run


def _close(a, b) -> bool:
    a, b = a or [0.0, 0.0], b or [0.0, 0.0]
    return abs(a[0] - b[0]) < 1e-6 and abs(a[1] - b[1]) < 1e-6
