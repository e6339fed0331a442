"""Export cost: `submissions.csv`, `submissions.csv.zip` and OData paging ($top=1000 following
@odata.nextLink) at N submissions: wall time, and the peak RSS of the gunicorn worker that
served the request (to show memory stays flat as N grows).

    .venv/bin/python bench/exports.py                           # N = 1000, 10000 on SQLite
    .venv/bin/python bench/exports.py --sizes 1000 10000 100000
    .venv/bin/python bench/exports.py --database postgresql

One instance grows through the sizes: `seminar_attendance` submissions with registers of
`--participants` (so the zip has a big repeat table), written straight into the tables (not
through ingest, and not queued for records: exports read submissions only). For each size a
gunicorn with the production config but one worker (so the worker that answers is known) is
started; before each export the worker's peak-RSS mark is reset (/proc/PID/clear_refs) and
VmHWM is read after it, while a thread also samples VmRSS every 20 ms. The client streams
every body to a temporary file and checks its row count outside the timing.
"""
import csv
import io
import random
import tempfile
import threading
import time
import zipfile

import common

GOALS = {"csv_100k_seconds": 15.0, "csv_peak_mb": 300.0}
FORM = "seminar_attendance"


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak_kb, self.stop_flag = pid, every, 0, threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.peak_kb = max(self.peak_kb, common.rss_kb(self.pid))
            except OSError:
                return
            time.sleep(self.every)

    def stop(self) -> int:
        self.stop_flag.set()
        self.join()
        return self.peak_kb


def measured(server, pid: int, fetch) -> dict:
    baseline = common.rss_kb(pid)
    common.reset_peak(pid)
    sampler = Sampler(pid)
    sampler.start()
    started = time.perf_counter()
    detail = fetch()
    seconds = time.perf_counter() - started
    sampled = sampler.stop()
    hwm = common.rss_kb(pid, "VmHWM")
    return {"seconds": seconds, "baseline_mb": baseline / 1024, "peak_mb": max(hwm, sampled) / 1024,
            "sampled_peak_mb": sampled / 1024, "growth_mb": (max(hwm, sampled) - baseline) / 1024, **detail}


def download(session, url, headers) -> tuple[object, int]:
    out = tempfile.TemporaryFile()
    total = 0
    with session.get(url, headers=headers, stream=True, timeout=3600) as response:
        response.raise_for_status()
        for chunk in response.iter_content(1024 * 1024):
            out.write(chunk)
            total += len(chunk)
    out.seek(0)
    return out, total


def export_csv(session, base, headers):
    def fetch():
        out, size = download(session, f"{base}/v1/projects/1/forms/{FORM}/submissions.csv", headers)
        fetch.out = out
        return {"bytes": size}
    return fetch


def count_csv_rows(handle) -> int:
    return sum(1 for _ in csv.reader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))) - 1


def export_zip(session, base, headers):
    def fetch():
        out, size = download(session, f"{base}/v1/projects/1/forms/{FORM}/submissions.csv.zip", headers)
        fetch.out = out
        return {"bytes": size}
    return fetch


def export_odata(session, base, headers):
    def fetch():
        url, rows, pages, size = f"{base}/v1/projects/1/forms/{FORM}.svc/Submissions?$top=1000", 0, 0, 0
        while url:
            response = session.get(url, headers=headers, timeout=600)
            response.raise_for_status()
            size += len(response.content)
            body = response.json()
            rows += len(body["value"])
            pages += 1
            url = body.get("@odata.nextLink")
        return {"bytes": size, "rows": rows, "pages": pages}
    return fetch


def main():
    p = common.parser(__doc__.splitlines()[0], [1000, 10000], "numbers of submissions (ascending)")
    p.add_argument("--participants", type=int, default=30)
    p.add_argument("--threads", type=int, default=None, help="gunicorn threads (default: gunicorn.conf.py's)")
    p.add_argument("--only", nargs="+", choices=("csv", "zip", "odata"), default=["csv", "zip", "odata"])
    p.add_argument("--py-spy", metavar="DIR", help="sample the worker with py-spy during each export (slows it)")
    args = p.parse_args()
    import requests

    from fieldsync.auth import accounts
    from fieldsync.extensions import db
    info = {"load_when_started": common.wait_quiet(), **common.machine(), "started": common.now_iso(),
            "postgres": common.postgres_version()}
    rng = random.Random(args.seed)
    instances = common.Instances(args.database, args.keep)
    results = []
    try:
        folder, url = instances.fresh("exports")
        app = common.make_app(folder, url)
        with app.app_context():
            xml = common.builders()
            people = common.grantees()
            accounts.create_web_user("bench@example.org", "bench password 1", "coordinator")
            db.session.remove()
        loaded = 0
        for n in sorted(args.sizes):
            with app.app_context():
                started = time.perf_counter()
                common.bulk_insert(common.mixed_items(rng, n - loaded, {FORM: 1.0}, args.participants, xml, people),
                                   queue=False)
                print(f"N={n}: loaded {n - loaded} more in {time.perf_counter() - started:.1f} s", flush=True)
                loaded = n
                db.session.remove()
                db.engine.dispose()
            server = common.Server(folder, url, workers=1, threads=args.threads).start()
            try:
                session = requests.Session()
                token = session.post(f"{server.url}/v1/sessions", json={
                    "email": "bench@example.org", "password": "bench password 1"}).json()["token"]
                headers = {"Authorization": f"Bearer {token}"}
                pid = server.worker_pids()[0]
                session.get(f"{server.url}/v1/projects/1/forms/{FORM}.svc/Submissions?$top=1", headers=headers)
                row = {"n": n}
                for name, make in (("csv", export_csv), ("zip", export_zip), ("odata", export_odata)):
                    if name not in args.only:
                        continue
                    fetch = make(session, server.url, headers)
                    if args.py_spy:
                        spy_path = common.Path(args.py_spy) / f"exports-{name}-{n}.txt"
                        with common.PySpy(pid, spy_path):
                            result = measured(server, pid, fetch)
                        result["py_spy"] = common.collapsed_top(spy_path, root_filter="handle_request")
                    else:
                        result = measured(server, pid, fetch)
                    if name == "csv":
                        result["rows"] = count_csv_rows(fetch.out)
                    elif name == "zip":
                        with zipfile.ZipFile(fetch.out) as archive:
                            names = archive.namelist()
                            with archive.open(f"{FORM}.csv") as handle:
                                result["rows"] = count_csv_rows(handle)
                            with archive.open(f"{FORM}-participant.csv") as handle:
                                result["repeat_rows"] = count_csv_rows(handle)
                            result["files"] = names
                    row[name] = result
                    print(f"N={n}: {name} {result['seconds']:.2f} s, peak {result['peak_mb']:.0f} MB, "
                          f"{result['rows']} rows", flush=True)
                row["server_log_errors"] = server.errors_in_log()
            finally:
                server.stop()
            results.append(row)
    finally:
        instances.cleanup()

    rows = []
    for r in results:
        for name in args.only:
            e = r[name]
            rows.append([r["n"], name, e["rows"], e.get("repeat_rows", ""), e["bytes"] / 1e6, e["seconds"],
                         e["rows"] / e["seconds"], e["baseline_mb"], e["peak_mb"], e["growth_mb"]])
    common.table(f"exports on {args.database} (one gunicorn worker; {args.participants} participants per submission)",
                 ["N", "export", "rows", "repeat rows", "MB out", "s", "rows/s", "RSS before MB", "peak MB",
                  "growth MB"], rows)
    if "csv" not in args.only:
        common.write_results("exports", args, {"sizes": results}, info)
        return
    largest = max(results, key=lambda r: r["n"])
    per_row = largest["csv"]["seconds"] / largest["n"]
    peak = max(r["csv"]["peak_mb"] for r in results)
    verdict = {
        f"csv 100k seconds ({'measured' if largest['n'] >= 100_000 else 'linear extrapolation from N=' + str(largest['n'])})": {
            "value": per_row * 100_000, "goal": 15.0, "met": per_row * 100_000 < 15},
        "csv peak MB (largest measured N)": {"value": peak, "goal": 300.0, "met": peak < 300},
    }
    common.table("goals", ["goal", "measured", "target", "met"],
                 [[k, v["value"], v["goal"], "yes" if v["met"] else "NO"] for k, v in verdict.items()])
    common.write_results("exports", args, {"sizes": results, "goals": verdict}, info)


if __name__ == "__main__":
    main()
