"""Indicator cost: the full recompute (with and without rebuilding records) at N submissions, and
the incremental cost of one new submission at each N (it must not grow with N).

    .venv/bin/python bench/indicators.py                       # N = 1000, 5000 on SQLite
    .venv/bin/python bench/indicators.py --sizes 1000 100000 1000000
    .venv/bin/python bench/indicators.py --database postgresql

For each N, in a child process of its own (so peak RSS is that size's), on a fresh instance:
1. N submissions of the programme's forms are written straight into `submissions` +
   `submission_defs` and queued in `pending_records` (not through ingest: this is about
   indicators). The mix defaults to the demo dataset's shape: mostly consultations, some
   seminars with registers of `--participants`, a few needs assessments; 18 grantees, 2020-2026.
2. `process_pending` builds every record and indicator value through the incremental path.
3. `recompute("bench")`, then `recompute("bench", rebuild_records=True)`; drift must be 0. On
   SQLite another connection takes the write lock every 50 ms meanwhile, as an upload would;
   "lock wait max ms" is the longest it waited during the recompute.
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


def one_size(args, n: int) -> dict:
    from sqlalchemy import func, select

    from fieldsync import indicators
    from fieldsync.extensions import db
    from fieldsync.models import Event, IndicatorValue, Participant, Person, Submission
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
            common.bulk_insert(common.mixed_items(rng, n, mix, args.participants, xml, people), queue=True)
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
            counts.update({k: db.session.scalar(select(func.count()).select_from(m)) for k, m in (
                ("events", Event), ("participants", Participant), ("persons", Person),
                ("indicator_values", IndicatorValue))})

            recompute = rebuild = None
            phases = () if args.no_recompute else (False,) if args.build == "recompute" else (False, True)
            if args.build == "recompute":  # the build was the recompute with rebuild: report it as such
                rebuild = {"seconds": pending_seconds, "cells": built["cells"], "split": pending_split,
                           "drift": 0, "cells_new_at_build": built["drift"]}  # nothing was stored before it
            for rebuild_records in phases:
                timers.reset()
                started = time.perf_counter()
                phase = "rebuild" if rebuild_records else "recompute"
                with common.profiled(args.profile if args.profile_phase == phase else None), LockProbe(url) as probe:
                    run = indicators.recompute("bench", rebuild_records=rebuild_records)
                seconds = time.perf_counter() - started
                measured = {"seconds": seconds, "cells": run.cells, "drift": run.drift, "split": timers.snapshot(),
                            "write_lock_wait": probe.summary()}
                db.session.remove()
                print(f"N={n}: recompute{' with rebuild' if rebuild_records else ''} in {seconds:.1f} s, "
                      f"drift {run.drift}", flush=True)
                if rebuild_records:
                    rebuild = measured
                else:
                    recompute = measured

            incremental = {}
            for kind in ("seminar_attendance", "consultation_log"):
                samples, splits = [], []
                for _ in range(args.reps):
                    items = list(common.mixed_items(rng, 1, {kind: 1.0}, args.participants, xml, people))
                    common.bulk_insert(iter(items), queue=True)
                    db.session.remove()
                    timers.reset()
                    started = time.perf_counter()
                    assert indicators.process_pending() == 1
                    samples.append((time.perf_counter() - started) * 1000)
                    splits.append({k: v["seconds"] * 1000 for k, v in timers.snapshot().items()})
                    db.session.remove()
                batch = []
                for _ in range(3):
                    items = list(common.mixed_items(rng, args.batch, {kind: 1.0}, args.participants, xml, people))
                    common.bulk_insert(iter(items), queue=True)
                    db.session.remove()
                    started = time.perf_counter()
                    assert indicators.process_pending() == args.batch
                    batch.append((time.perf_counter() - started) * 1000 / args.batch)
                    db.session.remove()
                incremental[kind] = {
                    "median_ms": statistics.median(samples), "p95_ms": common.percentile(samples, 0.95),
                    "min_ms": min(samples), "samples_ms": samples,
                    "batch": args.batch, "batch_per_submission_ms": statistics.median(batch), "batch_samples_ms": batch,
                    "split_median_ms": {k: statistics.median(s[k] for s in splits) for k in splits[0]}}
            timers.restore()
            final_drift = indicators.recompute("bench").drift
        return {"n": n, "load_seconds": load_seconds, "counts": counts, "process_pending": {
            "seconds": pending_seconds, "done": done, "split": pending_split},
            "recompute": recompute, "recompute_rebuild": rebuild, "incremental": incremental,
            "drift_after_incremental": final_drift, "peak_rss_mb": common.peak_rss_mb()}
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
    p.add_argument("--child", action="store_true", help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        import json
        print("RESULT " + json.dumps(one_size(args, args.sizes[0]), default=str))
        return
    info = {"load_when_started": common.wait_quiet(), **common.machine(), "started": common.now_iso(),
            "postgres": common.postgres_version()}
    results = common.run_children(__file__, args.sizes, common.forward(
        args, ["database", "seed", "keep", "profile", "mix", "participants", "reps", "batch", "build", "profile_phase", "no_recompute"]))

    rows = []
    for r in results:
        c = r["counts"]
        rows.append([r["n"], c["events"], c["participants"], c["indicator_values"], r["load_seconds"],
                     r["process_pending"]["seconds"], r["process_pending"]["seconds"] / r["n"] * 1000,
                     (r["recompute"] or {}).get("seconds"),
                     ((r["recompute"] or {}).get("write_lock_wait") or {}).get("max_ms"),
                     (r["recompute_rebuild"] or {}).get("seconds"),
                     (r["recompute"] or {}).get("drift", 0) + (r["recompute_rebuild"] or {}).get("drift", 0)
                     + r["drift_after_incremental"],
                     r["peak_rss_mb"]])
    common.table(f"full builds on {args.database} ({args.mix}; {args.participants} per seminar)",
                 ["N", "events", "participants", "values", "load s", "pending s", "ms/subm",
                  "recompute s", "lock wait max ms", "+rebuild s", "drift", "peak MB"], rows)
    rows = []
    for r in results:
        for kind, inc in r["incremental"].items():
            split = inc["split_median_ms"]
            rows.append([r["n"], kind, inc["median_ms"], inc["p95_ms"], inc["min_ms"], split["records.rebuild"],
                         split["records.persons"], split["indicators.refresh_sources"],
                         inc["batch_per_submission_ms"]])
    common.table(f"incremental: process_pending() for one new submission (ms); last column: per submission "
                 f"in a batch of {args.batch}",
                 ["N", "kind", "median", "p95", "min", "rebuild", "persons", "refresh", "in batch"], rows)
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
    measured = [r for r in results if r["recompute"]] or [{"n": 1, "recompute": {"seconds": float("nan")},
                                                          "recompute_rebuild": {"seconds": float("nan")}}]
    largest = max(measured, key=lambda r: r["n"])
    per_subm = largest["recompute"]["seconds"] / largest["n"]
    per_subm_rb = largest["recompute_rebuild"]["seconds"] / largest["n"]
    inc = max(r["incremental"]["seminar_attendance"]["median_ms"] for r in results)
    inc_c = max(r["incremental"]["consultation_log"]["median_ms"] for r in results)
    inc_b = max(r["incremental"]["seminar_attendance"]["batch_per_submission_ms"] for r in results)
    inc_cb = max(r["incremental"]["consultation_log"]["batch_per_submission_ms"] for r in results)
    verdict = {
        "recompute_1m_seconds (linear extrapolation from the largest N)": {
            "value": per_subm * 1_000_000, "goal": 60.0, "met": per_subm * 1_000_000 < 60},
        "recompute_rebuild_1m_seconds (linear extrapolation)": {
            "value": per_subm_rb * 1_000_000, "goal": 60.0, "met": per_subm_rb * 1_000_000 < 60},
        "incremental_ms seminar (worst median over N)": {"value": inc, "goal": 2.0, "met": inc < 2},
        "incremental_ms consultation (worst median over N)": {"value": inc_c, "goal": 2.0, "met": inc_c < 2},
        "incremental_ms seminar, per submission in a batch (worst over N)": {"value": inc_b, "goal": 2.0, "met": inc_b < 2},
        "incremental_ms consultation, per submission in a batch (worst over N)": {
            "value": inc_cb, "goal": 2.0, "met": inc_cb < 2},
    }
    common.table("goals", ["goal", "measured", "target", "met"],
                 [[k, v["value"], v["goal"], "yes" if v["met"] else "NO"] for k, v in verdict.items()])
    common.write_results("indicators", args, {"sizes": results, "goals": verdict}, info)


def argparse_hidden():
    import argparse
    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
