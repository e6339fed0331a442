"""Person matching cost: rebuilding the records of seminars whose participants share a few
villages, so every new person is compared with a fuzzy block that keeps growing.

    .venv/bin/python bench/dedup.py                        # 10,000 participants on SQLite
    .venv/bin/python bench/dedup.py --sizes 10000 100000
    .venv/bin/python bench/dedup.py --villages 1 --years 5  # bigger blocks still

For each N (participants), in a child process on a fresh instance: N / --participants seminars
of one grantee, all in --villages villages of Chuy, birth years from --years consecutive years
(--missing-year of them blank, and a blank year's block is the whole village), names drawn from
syllables so that many differ by a letter or two. They are written straight into the tables,
then `records.store.rebuild` is run for each in transactions of 200 (as `process_pending` does,
without the indicator step), each followed by the look-alike search of the persons it queued
(`records.persons.match_queued`, as `process_pending` does after its transactions), and the
time is reported per slice of the run so the growth with the block size shows. Person matching
is `records.persons.enrol` (exact keys: the new persons inserted and queued) and then the
search: the village's register (kept by the thread between transactions and checked by a count
per birth year), rapidfuzz's first pass (`matching.first_pass`), the exact score
(`matching.person_likeness`) on what passes, and the candidates written.
"""
import json
import random
import statistics
import time

import common

SLICES = 10


def one_size(args, n: int) -> dict:
    from sqlalchemy import func, select

    from fieldsync.extensions import db, write_transaction
    from fieldsync.models import DuplicateCandidate, Participant, Person, Submission
    from fieldsync.records import persons, store
    rng = random.Random(args.seed + n)
    villages = common.CHUY_VILLAGES[:args.villages]
    years = range(1995, 1995 + args.years)
    seminars = max(1, n // args.participants)
    instances = common.Instances(args.database, args.keep)
    try:
        folder, url = instances.fresh(f"dedup-{n}")
        app = common.make_app(folder, url)
        with app.app_context():
            xml = common.builders()["seminar_attendance"]
            chinek = next(g for g in common.grantees() if g[1] == "chinek")

            def items():
                for _ in range(seminars):
                    values = common.seminar_values(rng, participants=0, villages=villages)
                    values["participant"] = [common.person(rng, years, args.missing_year)
                                             for _ in range(args.participants)]
                    values.update(register_participants="yes", headcount_female=0, headcount_male=0)
                    iid = common.new_instance_id(rng)
                    yield "seminar_attendance", xml.build(values, iid), iid, chinek[0]
            common.bulk_insert(items(), queue=False)
            db.session.remove()
            ids = list(db.session.scalars(select(Submission.id).order_by(Submission.id)))
            db.session.remove()

            timers = common.Timers()
            timers.wrap(store, "rebuild", "rebuild")
            timers.wrap(persons, "enrol", "enrol")
            timers.wrap(persons, "match_queued", "search")
            timers.wrap(persons, "first_pass", "likely_same")
            timers.wrap(persons, "person_likeness", "person_likeness")
            timers.wrap(persons, "_record_candidates", "candidates")
            blocks = []
            original_first_pass = persons.first_pass

            def first_pass_with_size(person, groups):
                blocks.append(sum(len(rows) for rows, _names, _squeezed in groups))
                return original_first_pass(person, groups)
            persons.first_pass = first_pass_with_size

            slices = []
            per_slice = max(1, -(-len(ids) // SLICES))
            started_all = time.perf_counter()
            with common.profiled(args.profile):
                for s in range(0, len(ids), per_slice):
                    chunk = ids[s:s + per_slice]
                    timers.reset()
                    blocks.clear()
                    persons_before = db.session.scalar(select(func.count()).select_from(Person))
                    started = time.perf_counter()
                    for b in range(0, len(chunk), 200):
                        with write_transaction():
                            built = store.submissions_to_build(chunk[b:b + 200])
                            for sid in chunk[b:b + 200]:
                                store.rebuild(built[sid])
                        persons.match_queued()
                        db.session.remove()
                    seconds = time.perf_counter() - started
                    participants = len(chunk) * args.participants
                    snap = timers.snapshot()
                    slices.append({
                        "submissions": len(chunk), "participants": participants, "seconds": seconds,
                        "ms_per_participant": seconds * 1000 / participants, "persons_before": persons_before,
                        "enrol_calls": snap["enrol"]["calls"], "new_persons": len(blocks),
                        "mean_block": statistics.mean(blocks) if blocks else 0, "max_block": max(blocks, default=0),
                        "split": snap})
                    print(f"N={n}: slice {len(slices)}: {seconds:.1f} s, {slices[-1]['ms_per_participant']:.2f} ms/"
                          f"participant, mean block {slices[-1]['mean_block']:.0f}", flush=True)
            total = time.perf_counter() - started_all
            timers.restore()
            persons.first_pass = original_first_pass
            counts = {"participants": db.session.scalar(select(func.count()).select_from(Participant)),
                      "persons": db.session.scalar(select(func.count()).select_from(Person)),
                      "candidates": db.session.scalar(select(func.count()).select_from(DuplicateCandidate).where(
                          DuplicateCandidate.kind == "person"))}
        split_total = {k: sum(sl["split"][k]["seconds"] for sl in slices) for k in slices[0]["split"]}
        return {"n": n, "seminars": seminars, "seconds": total, "ms_per_participant": total * 1000 / (seminars * args.participants),
                "slices": slices, "split_seconds": split_total, "counts": counts, "peak_rss_mb": common.peak_rss_mb()}
    finally:
        instances.cleanup()


def main():
    p = common.parser(__doc__.splitlines()[0], [10000], "numbers of participants")
    p.add_argument("--participants", type=int, default=30, help="participants per seminar")
    p.add_argument("--villages", type=int, default=3)
    p.add_argument("--years", type=int, default=10, help="birth years to draw from")
    p.add_argument("--missing-year", type=float, default=0.1, help="share of participants without a birth year")
    p.add_argument("--child", action="store_true", help=__import__("argparse").SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(one_size(args, args.sizes[0]), default=str))
        return
    info = {"load_when_started": common.wait_quiet(), **common.machine(), "started": common.now_iso(),
            "postgres": common.postgres_version()}
    results = common.run_children(__file__, args.sizes, common.forward(
        args, ["database", "seed", "keep", "profile", "participants", "villages", "years", "missing_year"]))
    for r in results:
        rows = []
        for i, sl in enumerate(r["slices"], 1):
            sp = sl["split"]
            rows.append([i, sl["persons_before"], sl["participants"], sl["seconds"], sl["ms_per_participant"],
                         sl["mean_block"], sl["max_block"],
                         sp["enrol"]["seconds"] / sl["seconds"] * 100,
                         sp["search"]["seconds"] / sl["seconds"] * 100,
                         sp["likely_same"]["seconds"] / sl["seconds"] * 100,
                         sp["person_likeness"]["seconds"] / sl["seconds"] * 100,
                         sp["candidates"]["seconds"] / sl["seconds"] * 100])
        common.table(f"N={r['n']:,} participants ({r['seminars']:,} seminars) on {args.database}, "
                     f"{args.villages} villages, {args.years} birth years: by slice of the run",
                     ["slice", "persons before", "participants", "s", "ms/participant", "mean block", "max block",
                      "enrol%", "search%", "rapidfuzz%", "score%", "candidates%"], rows)
    common.table("totals", ["N", "seconds", "ms/participant", "persons", "person candidates", "peak MB"],
                 [[r["n"], r["seconds"], r["ms_per_participant"], r["counts"]["persons"], r["counts"]["candidates"],
                   r["peak_rss_mb"]] for r in results])
    common.write_results("dedup", args, {"sizes": results}, info)


if __name__ == "__main__":
    main()
