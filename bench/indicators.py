"""Indicator cost: the full recompute (with and without rebuilding records) at N submissions, and
the incremental cost of one new submission at each N (it must not grow with N).

    .venv/bin/python bench/indicators.py                       # N = 1000, 5000 on SQLite
    .venv/bin/python bench/indicators.py --sizes 1000 100000 1000000
    .venv/bin/python bench/indicators.py --database postgresql
    .venv/bin/python bench/indicators.py --sizes 1000000 --build recompute --keep   # then, again and again:
    .venv/bin/python bench/indicators.py --instance /tmp/fieldsync-bench-…/indicators-1000000-… --recompute-reps 3

For each N, in a child process of its own (so peak RSS is that size's), on a fresh instance:
1. N submissions of the programme's forms are written straight into `submissions` +
   `submission_defs` and queued in `pending_records` (not through ingest: this is about
   indicators). The mix defaults to the demo dataset's shape: mostly consultations, some
   seminars with registers of `--participants`, a few needs assessments; 18 grantees, 2020-2026.
2. `process_pending` builds every record and indicator value through the incremental path.
3. `recompute("bench")`, then `recompute("bench", rebuild_records=True)`; drift must be 0. On
   SQLite another connection takes the write lock every 50 ms meanwhile, as an upload would;
   "lock wait max ms" is the longest it waited during the recompute. The recompute is timed
   with each of `--recompute-processes` (default 1 and 2: alone, and sharing its groups of
   grantees with one helper process, at any N here; the server does so from 200,000 records),
   alternately, `--recompute-reps` times each.
4. `--reps` times: one new seminar (and separately one new consultation) is queued and
   `process_pending()` is timed for it alone; then `--batch` new ones are queued together and
   one `process_pending()` call is timed (per submission: the cost when the server's derive
   worker finds a burst in its queue, as it does under load).
"""
import random
import statistics
import sys
import time

import common

GOALS = {"recompute_1m_seconds": 60.0, "incremental_ms": 2.0}


def parse_mix(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (part.split("=") for part in text.split(","))}


def instrument():
    from fieldsync.indicators import engine, payloads
    from fieldsync.records import persons, store
    timers = common.Timers()
    timers.wrap(store, "rebuild", "records.rebuild")
    timers.wrap(persons, "enrol", "records.persons")
    timers.wrap(store, "group_day", "records.group_day")
    timers.wrap(engine, "refresh_sources", "indicators.refresh_sources")
    timers.wrap(payloads, "day_payload", "indicators.payload")
    timers.wrap(payloads, "record_parts", "indicators.payload")
    timers.wrap(engine, "apply_difference", "indicators.apply_difference")
    timers.wrap(engine.Aggregator, "add", "indicators.aggregate")
    return timers


class LockProbe:
    """On SQLite, another connection taking the write lock every 50 ms while a phase runs, as an
    upload would (BEGIN IMMEDIATE, COMMIT): how long it had to wait shows how long uploads
    would be held up. Nothing on PostgreSQL (uploads there never wait for a recompute)."""

    def __init__(self, url: str):
        import threading
        self.path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
        self.waits, self.stop, self.thread = [], threading.Event(), None
        if self.path:
            self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import sqlite3
        conn = sqlite3.connect(self.path, timeout=600, isolation_level=None)
        while not self.stop.is_set():
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
            self.waits.append((time.perf_counter() - started) * 1000)
            self.stop.wait(0.05)
        conn.close()

    def __enter__(self):
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread:
            self.thread.join()

    def summary(self) -> dict | None:
        if not self.waits:
            return None
        return {"samples": len(self.waits), "max_ms": max(self.waits), "p50_ms": statistics.median(self.waits)}


def time_recompute(args, app, url, timers, n, rebuild_records=False, processes=None) -> dict:
    from fieldsync import indicators
    from fieldsync.extensions import db
    from fieldsync.indicators import reconcile
    if processes is not None:
        app.config["FIELDSYNC"]["RECOMPUTE_PROCESSES"] = processes
        reconcile.PARALLEL_RECORDS = 0  # helpers at any N here (the server: from 200,000 records)
    timers.reset()
    said = HelpersSaid()
    started = time.perf_counter()
    phase = "rebuild" if rebuild_records else "recompute"
    with common.profiled(args.profile if args.profile_phase == phase else None), LockProbe(url) as probe, said:
        run = indicators.recompute("bench", rebuild_records=rebuild_records)
    seconds = time.perf_counter() - started
    db.session.remove()
    print(f"N={n}: recompute{' with rebuild' if rebuild_records else ''}"
          f"{f' ({processes} processes)' if processes else ''} in {seconds:.1f} s, drift {run.drift}", flush=True)
    return {"seconds": seconds, "cells": run.cells, "drift": run.drift, "split": timers.snapshot(),
            "write_lock_wait": probe.summary(), "processes": processes, "helpers": said.helpers}


class HelpersSaid:
    """How many helper processes the recompute said it started (its log line); 0 if none."""

    def __enter__(self):
        import logging
        import re
        outer = self
        self.helpers = 0

        class Catch(logging.Handler):
            def emit(self, record):
                found = re.search(r"in (\d+) helper process", record.getMessage())
                if found:
                    outer.helpers = int(found.group(1))
        self.logger = logging.getLogger("fieldsync.indicators.reconcile")
        self.handler, self.level = Catch(), self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


def time_recomputes(args, app, url, timers, n) -> dict:
    """The recompute timed with each number of processes, alternately; the first one's fastest
    run is the result, with every run under `by_processes`."""
    counts = [int(p) for p in args.recompute_processes.split(",")]
    runs = {p: [] for p in counts}
    for _ in range(args.recompute_reps):
        for processes in counts:
            runs[processes].append(time_recompute(args, app, url, timers, n, processes=processes))
    best = {p: min(r, key=lambda m: m["seconds"]) for p, r in runs.items()}
    return {**best[counts[0]], "drift": sum(m["drift"] for r in runs.values() for m in r),
            "by_processes": {str(p): {"best_seconds": best[p]["seconds"], "helpers": best[p]["helpers"],
                                      "seconds": [m["seconds"] for m in r],
                                      "lock_wait_max_ms": max((m["write_lock_wait"] or {}).get("max_ms", 0) for m in r)}
                             for p, r in runs.items()}}


# What `replicate` changes in each copied row, by table (the rest is copied as it is); {k} is
# the copy's number, {off_<table>} the offset of that table's ids.
COPIED = {
    "grantees": {"id": "id + {off_grantees}", "code": "code || '-r{k}'", "name": "name || ' (copy {k})'"},
    "submissions": {"id": "id + {off_submissions}", "grantee_id": "grantee_id + {off_grantees}",
                    "instance_id": "instance_id || '-r{k}'", "current_def_id": "NULL"},  # set after (see below)
    "submission_defs": {"id": "id + {off_submission_defs}", "submission_id": "submission_id + {off_submissions}",
                        "instance_id": "instance_id || '-r{k}'"},
    "events": {"id": "id + {off_events}", "submission_id": "submission_id + {off_submissions}",
               "grantee_id": "grantee_id + {off_grantees}", "instance_id": "instance_id || '-r{k}'",
               "merged_into": "merged_into || '-r{k}'"},
    "persons": {"key": "key || '#r{k}'", "canonical_key": "canonical_key || '#r{k}'"},
    "participants": {"id": "id + {off_participants}", "event_id": "event_id + {off_events}",
                     "person_key": "person_key || '#r{k}'"},
    **{table: {"id": f"id + {{off_{table}}}", "submission_id": "submission_id + {off_submissions}",
               "grantee_id": "grantee_id + {off_grantees}"} for table in ("services", "assessments", "interviews")},
}


def replicate(copies: int) -> None:
    """The submissions and their records copied `copies - 1` times, each copy under new
    grantees (one per grantee, `<code>-r<k>`), in SQL: the quick way to a programme of a million
    submissions whose records look like the benchmark's (building them through the matching
    costs about an hour). The indicator tables are not copied: the next recompute writes the
    copies' values. SQLite only."""
    from sqlalchemy import text

    from fieldsync.extensions import db
    if db.session.get_bind().dialect.name != "sqlite":
        raise SystemExit("--copies: SQLite only")
    tables = db.metadata.tables
    offsets = {f"off_{name}": db.session.execute(text(f"SELECT coalesce(max(id), 0) FROM {name}")).scalar()
               for name in COPIED if "id" in tables[name].columns}
    for k in range(1, copies):
        shifted = {name: value * k for name, value in offsets.items()}
        for name, changes in COPIED.items():
            columns = [c.name for c in tables[name].columns]
            values = [changes[c].format(k=k, **shifted) if c in changes else f'"{c}"' for c in columns]
            quoted = ", ".join(f'"{c}"' for c in columns)
            db.session.execute(text(f"INSERT INTO {name} ({quoted}) SELECT {', '.join(values)} FROM {name}"
                                    + (f" WHERE id <= {offsets[f'off_{name}']}" if f"off_{name}" in offsets
                                       else " WHERE key NOT LIKE '%#r%'")))
        # Submissions and their versions point at each other: the copies' pointers are set last
        # (deferred foreign keys instead cost a scan of submissions for every version inserted).
        low, high = shifted["off_submissions"], shifted["off_submissions"] + offsets["off_submissions"]
        db.session.execute(text(
            "UPDATE submissions SET current_def_id = (SELECT original.current_def_id FROM submissions AS original"
            f" WHERE original.id = submissions.id - {low}) + {shifted['off_submission_defs']}"
            f" WHERE id > {low} AND id <= {high}"))
    db.session.commit()


def time_incremental(args, rng, xml, people, timers) -> dict:
    """One new seminar (then one consultation) processed alone `--reps` times, then batches.
    The indicator update (`process_pending`, records and values committed) and the look-alike
    search of the persons it queued (`persons.match_queued`, after it in the server's derive
    worker) are timed apart: the first must not grow with N, the second grows with the village."""
    from fieldsync import indicators
    from fieldsync.extensions import db
    from fieldsync.records import persons

    def timed(work) -> float:
        started = time.perf_counter()
        work()
        return (time.perf_counter() - started) * 1000

    def update(expected):
        assert indicators.process_pending(match_persons=False) == expected

    incremental = {}
    for kind in ("seminar_attendance", "consultation_log"):
        samples, searches, splits = [], [], []
        for _ in range(args.reps):
            items = list(common.mixed_items(rng, 1, {kind: 1.0}, args.participants, xml, people))
            common.bulk_insert(iter(items), queue=True)
            db.session.remove()
            timers.reset()
            samples.append(timed(lambda: update(1)))
            splits.append({k: v["seconds"] * 1000 for k, v in timers.snapshot().items()})
            searches.append(timed(persons.match_queued))
            db.session.remove()
        batch, batch_searches = [], []
        for _ in range(3):
            items = list(common.mixed_items(rng, args.batch, {kind: 1.0}, args.participants, xml, people))
            common.bulk_insert(iter(items), queue=True)
            db.session.remove()
            batch.append(timed(lambda: update(args.batch)) / args.batch)
            batch_searches.append(timed(persons.match_queued) / args.batch)
            db.session.remove()
        incremental[kind] = {
            "median_ms": statistics.median(samples), "p95_ms": common.percentile(samples, 0.95),
            "min_ms": min(samples), "samples_ms": samples,
            "search_median_ms": statistics.median(searches), "search_samples_ms": searches,
            "batch": args.batch, "batch_per_submission_ms": statistics.median(batch), "batch_samples_ms": batch,
            "batch_search_per_submission_ms": statistics.median(batch_searches),
            "split_median_ms": {k: statistics.median(s[k] for s in splits) for k in splits[0]}}
    return incremental


def copy_records(copies: int) -> dict:
    """`replicate`, then the recompute that writes the copies' values; both timed."""
    from fieldsync import indicators
    from fieldsync.extensions import db
    started = time.perf_counter()
    replicate(copies)
    copy_seconds = time.perf_counter() - started
    db.session.remove()
    started = time.perf_counter()
    run = indicators.recompute("bench-copies")  # writes the copies' sources, cells and members
    copied = {"copies": copies, "copy_seconds": copy_seconds, "values_seconds": time.perf_counter() - started,
              "cells_new": run.drift}
    db.session.remove()
    print(f"copied {copies - 1} times in {copy_seconds:.1f} s, their values written "
          f"in {copied['values_seconds']:.1f} s", flush=True)
    return copied


def table_counts() -> dict:
    from sqlalchemy import func, select

    from fieldsync.extensions import db
    from fieldsync.models import Event, IndicatorValue, Participant, Person, Submission
    return {k: db.session.scalar(select(func.count()).select_from(m)) for k, m in (
        ("submissions", Submission), ("events", Event), ("participants", Participant), ("persons", Person),
        ("indicator_values", IndicatorValue))}


def existing_instance(args) -> dict:
    """--instance: the recompute timed on a kept instance (nothing built; not with
    --no-recompute); with --copies, the instance's records copied first (in place); with
    --reps, the incremental cost after."""
    from pathlib import Path

    from fieldsync.extensions import db
    folder = Path(args.instance)
    url = f"sqlite:///{folder / 'fieldsync.db'}"
    app = common.make_app(folder, url)
    with app.app_context():
        copied = copy_records(args.copies) if args.copies > 1 else None
        counts = table_counts()
        db.session.remove()
        n = counts["submissions"]
        timers = instrument()
        recompute = None if args.no_recompute else time_recomputes(args, app, url, timers, n)
        incremental, final_drift = {}, 0
        if args.reps:
            rng = random.Random()  # not the seed that built the instance: its instance ids are taken
            incremental = time_incremental(args, rng, common.builders(), common.grantees(), timers)
            timers.restore()
            from fieldsync import indicators
            final_drift = indicators.recompute("bench").drift
    return {"n": n, "instance": str(folder), "load_seconds": None, "counts": counts, "copied": copied,
            "process_pending": None, "recompute": recompute, "recompute_rebuild": None, "incremental": incremental,
            "drift_after_incremental": final_drift, "peak_rss_mb": common.peak_rss_mb()}


def one_size(args, n: int) -> dict:
    from sqlalchemy import func, select

    from fieldsync import indicators
    from fieldsync.extensions import db
    from fieldsync.models import Submission
    from fieldsync.records import persons
    rng = random.Random(args.seed + n)
    mix = parse_mix(args.mix)
    instances = common.Instances(args.database, args.keep)
    try:
        folder, url = instances.fresh(f"indicators-{n}")
        app = common.make_app(folder, url)
        with app.app_context():
            xml = common.builders()
            people = common.grantees()
            started = time.perf_counter()
            common.bulk_insert(common.mixed_items(rng, n // args.copies, mix, args.participants, xml, people), queue=True)
            load_seconds = time.perf_counter() - started
            db.session.remove()
            counts = {k: db.session.scalar(select(func.count()).select_from(m)) for k, m in (
                ("submissions", Submission),)}
            print(f"N={n}: loaded {counts['submissions']} submissions in {load_seconds:.1f} s", flush=True)

            timers = instrument()
            started = time.perf_counter()
            with common.profiled(args.profile if args.profile_phase == "pending" else None):
                if args.build == "pending":
                    done = indicators.process_pending(limit=10**9)
                else:  # the faster way to a large N: one full rebuild (it empties the queue too)
                    run = indicators.recompute("bench-build", rebuild_records=True)
                    built = {"cells": run.cells, "drift": run.drift}
                    done = counts["submissions"]
            pending_seconds = time.perf_counter() - started
            pending_split = timers.snapshot()
            db.session.remove()
            print(f"N={n}: {args.build} built {done} in {pending_seconds:.1f} s", flush=True)
            search = None
            if args.build == "recompute":  # the rebuild queued every person: searched now, timed apart
                started = time.perf_counter()
                search = {"persons": persons.match_queued(), "seconds": time.perf_counter() - started}
                db.session.remove()
                print(f"N={n}: look-alikes of {search['persons']} persons searched in {search['seconds']:.1f} s",
                      flush=True)
            copied = copy_records(args.copies) if args.copies > 1 else None
            counts.update(table_counts())

            recompute = rebuild = None
            phases = () if args.no_recompute else (False,) if args.build == "recompute" else (False, True)
            if args.build == "recompute":  # the build was the recompute with rebuild: report it as such
                rebuild = {"seconds": pending_seconds, "cells": built["cells"], "split": pending_split,
                           "drift": 0, "cells_new_at_build": built["drift"],  # nothing was stored before it
                           "submissions": n // args.copies}
            for rebuild_records in phases:
                if rebuild_records:
                    rebuild = time_recompute(args, app, url, timers, n, rebuild_records=True)
                else:
                    recompute = time_recomputes(args, app, url, timers, n)

            incremental = time_incremental(args, rng, xml, people, timers)
            timers.restore()
            final_drift = indicators.recompute("bench").drift
        return {"n": n, "load_seconds": load_seconds, "counts": counts, "process_pending": {
            "seconds": pending_seconds, "done": done, "split": pending_split},
            "recompute": recompute, "recompute_rebuild": rebuild, "incremental": incremental, "copied": copied,
            "build_search": search, "drift_after_incremental": final_drift, "peak_rss_mb": common.peak_rss_mb()}
    finally:
        instances.cleanup()


def main():
    p = common.parser(__doc__.splitlines()[0], [1000, 5000], "numbers of submissions")
    p.add_argument("--mix", default="consultation_log=0.85,seminar_attendance=0.10,needs_assessment=0.05")
    p.add_argument("--participants", type=int, default=30, help="registered participants per seminar")
    p.add_argument("--reps", type=int, default=15, help="new submissions timed one by one, per kind")
    p.add_argument("--build", choices=("pending", "recompute"), default="pending",
                   help="build records and values through the incremental path (default) or by one "
                        "recompute with rebuild (faster, for large N; then not run again)")
    p.add_argument("--batch", type=int, default=25, help="new submissions queued together (process_pending's batch)")
    p.add_argument("--profile-phase", choices=("pending", "recompute", "rebuild"), default="rebuild")
    p.add_argument("--no-recompute", action="store_true", help="skip the two full recomputes (incremental only)")
    p.add_argument("--recompute-processes", default="1,2",
                   help="processes the recompute is timed with, comma-separated (default 1,2)")
    p.add_argument("--recompute-reps", type=int, default=1, help="times the recompute is timed, per process count")
    p.add_argument("--instance", help="time only the recompute, on this instance kept by --keep (SQLite)")
    p.add_argument("--copies", type=int, default=1,
                   help="build N/COPIES submissions, then copy their records COPIES-1 times under new grantees "
                        "(SQLite; for N = 1,000,000 in minutes instead of an hour)")
    p.add_argument("--child", action="store_true", help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        import json
        result = existing_instance(args) if args.instance else one_size(args, args.sizes[0])
        print("RESULT " + json.dumps(result, default=str))
        return
    info = {"load_when_started": common.wait_quiet(), **common.machine(), "started": common.now_iso(),
            "postgres": common.postgres_version()}
    results = common.run_children(__file__, [0] if args.instance else args.sizes, common.forward(
        args, ["database", "seed", "keep", "profile", "mix", "participants", "reps", "batch", "build", "profile_phase",
               "no_recompute", "recompute_processes", "recompute_reps", "instance", "copies"]))

    report(args, results, info)


def report(args, results: list[dict], info: dict) -> None:
    rows = []
    for r in results:
        c, pending = r["counts"], r["process_pending"]
        rows.append([r["n"], c["events"], c["participants"], c["indicator_values"], r["load_seconds"],
                     pending and pending["seconds"], pending and pending["seconds"] / r["n"] * 1000,
                     (r["recompute_rebuild"] or {}).get("seconds"),
                     (r["recompute"] or {}).get("drift", 0) + (r["recompute_rebuild"] or {}).get("drift", 0)
                     + r["drift_after_incremental"],
                     r["peak_rss_mb"]])
    common.table(f"full builds on {args.database} ({args.mix}; {args.participants} per seminar)",
                 ["N", "events", "participants", "values", "load s", "pending s", "ms/subm",
                  "+rebuild s", "drift", "peak MB"], rows)
    rows = [[r["n"], processes, runs["helpers"], runs["best_seconds"], " ".join(f"{x:.2f}" for x in runs["seconds"]),
             runs["lock_wait_max_ms"]]
            for r in results if r["recompute"] for processes, runs in r["recompute"]["by_processes"].items()]
    common.table("full recompute (no rebuild of records), by processes allowed (helpers: started besides the "
                 "main process): fastest, every run (s), longest wait of another writer for the write lock (SQLite)",
                 ["N", "processes", "helpers", "best s", "runs s", "lock wait max ms"], rows)
    rows = []
    for r in results:
        for kind, inc in r["incremental"].items():
            split = inc["split_median_ms"]
            rows.append([r["n"], kind, inc["median_ms"], inc["p95_ms"], inc["min_ms"], split["records.rebuild"],
                         split["records.persons"], split["indicators.refresh_sources"],
                         inc["batch_per_submission_ms"], inc["search_median_ms"],
                         inc["batch_search_per_submission_ms"]])
    if rows:
        common.table(f"incremental: the indicator update (process_pending) for one new submission (ms), split; "
                     f"per submission in a batch of {args.batch}; then the look-alike search of the persons it "
                     "queued, alone and per submission of the batch",
                     ["N", "kind", "median", "p95", "min", "rebuild", "persons", "refresh", "in batch",
                      "search", "search/batch"], rows)
    rows = []
    for r in results:
        for phase in ("process_pending", "recompute", "recompute_rebuild"):
            if not r[phase]:
                continue
            total = r[phase]["seconds"]
            split = r[phase]["split"]
            rows.append([r["n"], phase, total] + [split[k]["seconds"] / total * 100 for k in (
                "records.rebuild", "records.persons", "records.group_day", "indicators.payload",
                "indicators.apply_difference", "indicators.aggregate")])
    common.table("where the time goes (% of the phase; nested: persons ⊂ rebuild)",
                 ["N", "phase", "s", "rebuild%", "persons%", "group%", "payload%", "apply%", "aggregate%"], rows)
    verdict = {}
    measured = [r for r in results if r["recompute"]]
    if measured:
        largest = max(measured, key=lambda r: r["n"])
        best = min(runs["best_seconds"] for runs in largest["recompute"]["by_processes"].values())
        how = "measured" if largest["n"] >= 1_000_000 else f"linear from N={largest['n']:,}"
        verdict[f"recompute_1m_seconds, fastest over process counts ({how})"] = {
            "value": best / largest["n"] * 1_000_000, "goal": 60.0, "met": best / largest["n"] * 1_000_000 < 60}
        if largest["recompute_rebuild"]:
            per_subm_rb = largest["recompute_rebuild"]["seconds"] / largest["recompute_rebuild"].get("submissions",
                                                                                                largest["n"])
            verdict[f"recompute_rebuild_1m_seconds ({how})"] = {
                "value": per_subm_rb * 1_000_000, "goal": 60.0, "met": per_subm_rb * 1_000_000 < 60}
    with_incremental = [r for r in results if r["incremental"]]
    for kind, label in (("seminar_attendance", "seminar"), ("consultation_log", "consultation")):
        if with_incremental:
            alone = max(r["incremental"][kind]["median_ms"] for r in with_incremental)
            batched = max(r["incremental"][kind]["batch_per_submission_ms"] for r in with_incremental)
            verdict[f"incremental_ms {label} (worst median over N)"] = {"value": alone, "goal": 2.0, "met": alone < 2}
            verdict[f"incremental_ms {label}, per submission in a batch (worst over N)"] = {
                "value": batched, "goal": 2.0, "met": batched < 2}
    common.table("goals", ["goal", "measured", "target", "met"],
                 [[k, v["value"], v["goal"], "yes" if v["met"] else "NO"] for k, v in verdict.items()])
    common.write_results("indicators", args, {"sizes": results, "goals": verdict}, info)


def argparse_hidden():
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
