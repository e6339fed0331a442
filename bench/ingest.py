"""Ingest throughput and latency: ODK Collect-shaped submissions over HTTP against gunicorn, set
against the raw limit of the same work measured in the same run (issue #17, "honest benchmarks").

    .venv/bin/python bench/ingest.py                          # SQLite, everything at the issue's sizes (~30-40 min)
    .venv/bin/python bench/ingest.py --sustained 2000 --open-seconds 20 --sizes 300   # a short run
    .venv/bin/python bench/ingest.py --database postgresql

One run measures, in this order:

1. **The raw limit** (`raw limit`): the same XML the HTTP phases send (distinct `seminar_attendance`
   submissions with `--participants` registered people), done the plainest way in this process:
   lxml parses each body, then ONE durable SQLite transaction inserts the submission row and its
   participant rows (a scratch database file next to the instances, journal_mode=WAL,
   synchronous=FULL: in WAL mode only FULL fsyncs the log at every COMMIT, which is what a durable
   201 needs; NORMAL would fsync only at checkpoints and can lose the last commits on power loss).
   Never FieldSync's code. Measured before and after the HTTP phases; the higher is "the raw
   limit" every ratio divides by. It runs over the sustained run's bodies (or, without one, the
   largest level's), capped by `--raw-limit N`.
2. **HTTP levels** (`--concurrency`, `--sizes`): each on a fresh instance with its own gunicorn
   (the production gunicorn.conf.py: its workers run the derive worker and the scheduler as in
   production); a floor (`HEAD …/submission`, stores nothing), the distinct uploads, then the same
   XML again (resends). Reported as a ratio of the raw limit.
3. **The sustained run** (`--sustained N`, default 10,000; 0 skips): N distinct seminars at
   `--sustained-concurrency` (8) on ONE growing instance and server. Throughput and p50/p99 per
   `--sustained-block` (1,000) uploads in order of completion, errors, and the derive backlog
   (`pending_records`, `pending_person_matches`) sampled as each block completes. Then the drain:
   polled until both queues are empty, at most `--drain-timeout` s.
4. **The open loop** at absolute rates (`--open-rates`, default 50 and 100 uploads/s) for
   `--open-seconds` (60) each, Poisson arrivals, on the sustained run's instance (it keeps
   growing; `--open-fresh` gives it its own) after the drain. Latency runs from each upload's
   scheduled arrival, so waiting for a free sender counts. Arrivals still unsent
   `--open-grace` s after the schedule ends are counted as errors ("unsent").
   `--open-fractions` adds the older runs at fractions of the c=8 rate on a fresh instance.
5. **FieldSync store path** (`receive(announce=False)` in a loop, in-process, no HTTP) and
   `receive` with the in-line rebuild (announce=True): FieldSync's own code path, shown for
   comparison; not the raw limit (`--store-path 0` skips both).

Every 201 means the submission is committed together with its `pending_records` row; the derive
worker rebuilds records and indicators after the response. Results go to bench/results/ as JSON,
with the 1-minute load average at the start and end (the machine is shared).

The client is kept cheap: one requests.Session per thread, every body built before timing.
"""
import hashlib
import json
import os
import queue
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import common

# The goals of issue #17 (SQLite and PostgreSQL alike).
GOALS = {"sustained_c8_over_raw_limit": 0.15, "sustained_c8_over_raw_limit_aim": 0.25,
         "sustained_block_p99_ms": 250.0, "open_100_p99_ms": 100.0, "drain_per_second": 50.0, "errors": 0}
BOUNDARY = "fieldsyncbenchboundary7d1e"


def multipart(xml: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"xml_submission_file\"; "
            f"filename=\"instance.xml\"\r\nContent-Type: text/xml\r\n\r\n").encode() + xml + \
        f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {"X-OpenRosa-Version": "1.0", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
           "User-Agent": "org.odk.collect.android/v2026.3.3 (FieldSync bench)"}
FLOOR_HEADERS = {"X-OpenRosa-Version": "1.0", "User-Agent": HEADERS["User-Agent"]}


def make_xml(app, rng, count: int, participants: int) -> list[bytes]:
    with app.app_context():
        builder = common.builders()["seminar_attendance"]
        return [builder.build(common.seminar_values(rng, participants=participants, villages=common.CHUY_VILLAGES),
                              common.new_instance_id(rng)) for _ in range(count)]


def app_user_token(folder, url) -> str:
    env = dict(os.environ, FIELDSYNC_INSTANCE_PATH=str(folder), FIELDSYNC_DATABASE_URL=url)
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "app-users", "create", "bench phone",
                             "--grantee", "chinek", "--json"], cwd=common.ROOT, env=env, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["token"]


class Clients:
    """`concurrency` client threads, each with its own requests.Session, kept for a whole level
    (floor, uploads, resends) so that every phase runs on the same threads and connections."""

    def __init__(self, concurrency: int):
        import requests
        self.requests = requests
        self.concurrency = concurrency
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="bench-client")
        self.retries, self.retry_lock = 0, threading.Lock()

    def session(self):
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = self.requests.Session()
        return session

    def _send(self, method: str, url: str, **options):
        # A kept-alive connection the server has just closed (gunicorn's keepalive is 5 s, and
        # a sender of the open loop can be idle longer) fails at once with a ConnectionError;
        # like a browser or Collect's HTTP client, go again once on a new connection (an
        # upload is idempotent: a resend is answered 201). Counted in `client_retries`.
        for attempt in (1, 2):
            try:
                return self.session().request(method, url, timeout=120, **options).status_code
            except self.requests.ConnectionError as error:
                if attempt == 2:
                    return type(error).__name__
                with self.retry_lock:
                    self.retries += 1
            except self.requests.RequestException as error:
                return type(error).__name__

    def post(self, url: str, body: bytes):
        return self._send("POST", url, data=body, headers=HEADERS)

    def head(self, url: str):
        return self._send("HEAD", url, headers=FLOOR_HEADERS)

    def closed_loop(self, send, items) -> dict:
        """Every thread sends its next request as soon as its last one is answered."""
        per_thread: dict[int, list[float]] = {}

        def one(item):
            started = time.perf_counter()
            status = send(item)
            took = time.perf_counter() - started
            per_thread.setdefault(threading.get_ident(), []).append(took)
            return status, took

        started = time.perf_counter()
        outcomes = list(self.pool.map(one, items))
        # Each client thread keeps one connection, which gunicorn hands to one worker process:
        # the spread of the threads' mean latencies shows how evenly the workers share them.
        means = sorted(sum(v) / len(v) * 1000 for v in per_thread.values())
        self.last_thread_means_ms = {"threads": len(means), "min": means[0], "median": common.percentile(means, 0.5),
                                     "max": means[-1]} if means else None
        return outcomes, time.perf_counter() - started

    def close(self):
        self.pool.shutdown(wait=True)


def send_all(url: str, bodies: list[bytes], concurrency: int, clients: Clients | None = None) -> dict:
    own = clients is None
    clients = clients or Clients(concurrency)
    try:
        before = clients.retries
        outcomes, wall = clients.closed_loop(lambda body: clients.post(url, body), bodies)
    finally:
        if own:
            clients.close()
    return {**summary(outcomes, wall), "client_retries": clients.retries - before,
            "thread_mean_ms": clients.last_thread_means_ms}


def floor(url: str, count: int, clients: Clients) -> dict:
    """The floor: `count` HEAD …/submission (204, nothing stored), closed loop on `clients`."""
    clients.closed_loop(lambda _i: clients.head(url), range(2 * clients.concurrency))  # connect every thread
    before = clients.retries
    outcomes, wall = clients.closed_loop(lambda _i: clients.head(url), range(count))
    return {**summary(outcomes, wall, expected="204"), "client_retries": clients.retries - before,
            "thread_mean_ms": clients.last_thread_means_ms}


def open_loop(url: str, bodies: list[bytes], rate: float, senders: int, rng: random.Random,
              grace: float | None = None) -> dict:
    """Uploads arriving at `rate` per second (Poisson), whatever the answers; up to `senders` in
    flight. Latency runs from the scheduled arrival to the answer, so waiting for a sender counts.
    With `grace`, an arrival not yet sent `grace` s after the last scheduled arrival is not sent
    at all (status "unsent", an error): the loop stays bounded when the server cannot keep up."""
    offsets, t = [], 0.0
    for _ in bodies:
        t += rng.expovariate(rate)
        offsets.append(t)
    clients = Clients(senders)
    lock = threading.Lock()
    state = {"next": 0}
    outcomes: list = [None] * len(bodies)
    late = [0.0] * len(bodies)
    sent_at: list = [None] * len(bodies)

    def sender(start):
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= len(bodies):
                return
            scheduled = start + offsets[i]
            if grace is not None and time.perf_counter() > start + offsets[-1] + grace:
                outcomes[i] = ("unsent", None)
                continue
            wait = scheduled - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            late[i] = max(0.0, time.perf_counter() - scheduled)
            status = clients.post(url, bodies[i])
            sent_at[i] = time.perf_counter() - start
            outcomes[i] = (status, time.perf_counter() - scheduled)

    # Connect every sender's session first (HEAD, untimed), then start the clock.
    clients.closed_loop(lambda _i: clients.head(url), range(2 * senders))
    start = time.perf_counter() + 0.2
    before = clients.retries
    try:
        futures = [clients.pool.submit(sender, start) for _ in range(senders)]
        for f in futures:
            f.result()
    finally:
        clients.close()
    wall = time.perf_counter() - start
    result = summary(outcomes, wall)
    answered = sorted(t for t in sent_at if t is not None)
    result.update(client_retries=clients.retries - before, offered_per_second=rate, arrivals="poisson",
                  senders=senders, scheduled_seconds=offsets[-1], unsent=sum(1 for s, _t in outcomes if s == "unsent"),
                  answered_per_second=len(answered) / answered[-1] if answered else None,
                  start_late_p99_ms=common.percentile([x * 1000 for x in late], 0.99),
                  start_late_max_ms=max(late) * 1000)
    return result


def summary(outcomes, wall, expected: str = "201") -> dict:
    """Counts, rate and latency percentiles of (status, seconds) outcomes; an outcome whose
    seconds is None (an open-loop arrival never sent) counts as an error but has no latency."""
    latencies = [t * 1000 for _s, t in outcomes if t is not None]
    statuses = Counter(str(s) for s, _t in outcomes)
    errors = sum(n for s, n in statuses.items() if s != expected)
    return {"count": len(outcomes), "seconds": wall, "per_second": len(outcomes) / wall if wall else None,
            "p50_ms": common.percentile(latencies, 0.50), "p95_ms": common.percentile(latencies, 0.95),
            "p99_ms": common.percentile(latencies, 0.99), "max_ms": max(latencies) if latencies else None,
            "errors": errors, "statuses": dict(statuses)}


def database_counts(app, check_drift: bool = True) -> dict:
    from sqlalchemy import func, select

    from fieldsync.extensions import db
    from fieldsync.models import Event, IndicatorValue, Participant, PendingRecord, Person, Submission
    with app.app_context():
        counts = {name: db.session.scalar(select(func.count()).select_from(model)) for name, model in (
            ("submissions", Submission), ("pending", PendingRecord), ("events", Event),
            ("participants", Participant), ("persons", Person), ("indicator_values", IndicatorValue))}
        db.session.remove()
        if check_drift:
            # Did the incremental values the requests left agree with a recompute from scratch?
            # (Anything still queued, e.g. after a failed indicator update, is processed first,
            # as the scheduled job would.)
            from fieldsync import indicators
            indicators.process_pending(limit=10**9)
            counts["drift"] = indicators.recompute("bench-check").drift
            db.session.remove()
        db.engine.dispose()
    return counts


def wait_derived(folder, url, timeout: float = 600) -> float | None:
    """Seconds until the server's derive worker has emptied `pending_records` (None: timeout)."""
    from sqlalchemy import func, select

    from fieldsync.extensions import db
    from fieldsync.models import PendingRecord
    app = common.make_app(folder, url)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout:
            with app.app_context():
                left = db.session.scalar(select(func.count()).select_from(PendingRecord))
                db.session.remove()
            if not left:
                return time.perf_counter() - started
            time.sleep(0.05)
        return None
    finally:
        with app.app_context():
            db.engine.dispose()


def http_level(instances, concurrency: int, bodies: list[bytes], warmup: list[bytes], workers,
               py_spy: str | None = None, floor_count: int = 0) -> dict:
    folder, url = instances.fresh(f"http-c{concurrency}")
    token = app_user_token(folder, url)
    server = common.Server(folder, url, workers=workers).start()
    bodies = [multipart(x) for x in bodies]  # built before any timing
    clients = Clients(concurrency)
    try:
        endpoint = f"{server.url}/v1/key/{token}/projects/1/submission"
        send_all(endpoint, [multipart(x) for x in warmup], concurrency, clients)
        wait_derived(folder, url)  # the warm-up's rebuild must not run during the floor
        floor_result = floor(endpoint, floor_count, clients) if floor_count else None
        if py_spy:
            path = common.Path(py_spy) / f"ingest-http-c{concurrency}.txt"
            with common.PySpy(server.process.pid, path):
                distinct = send_all(endpoint, bodies, concurrency, clients)
        else:
            distinct = send_all(endpoint, bodies, concurrency, clients)
        distinct["derived_after_seconds"] = wait_derived(folder, url)
        resends = send_all(endpoint, bodies, concurrency, clients)
        server_workers = len(server.worker_pids())
    finally:
        clients.close()
        server.stop()
    app = common.make_app(folder, url)
    counts = database_counts(app)
    return {"concurrency": concurrency, "floor": floor_result, "distinct": distinct, "resend": resends,
            "server_workers": server_workers, "server_log_errors": server.errors_in_log(), "database": counts,
            "expected_submissions": len(bodies) + len(warmup)}


def open_level(instances, rates: list[float], batches: list[list[bytes]], warmup: list[bytes], senders: int,
               workers, rng: random.Random, grace: float | None = None) -> dict:
    """The open-loop phase: one fresh instance and server, one batch of distinct uploads per rate,
    the queue emptied between rates."""
    folder, url = instances.fresh("http-open")
    token = app_user_token(folder, url)
    server = common.Server(folder, url, workers=workers).start()
    runs = []
    try:
        endpoint = f"{server.url}/v1/key/{token}/projects/1/submission"
        send_all(endpoint, [multipart(x) for x in warmup], 4)
        for rate, batch in zip(rates, batches):
            bodies = [multipart(x) for x in batch]
            wait_derived(folder, url)
            run = open_loop(endpoint, bodies, rate, senders, rng, grace=grace)
            run["derived_after_seconds"] = wait_derived(folder, url)
            runs.append(run)
        server_workers = len(server.worker_pids())
    finally:
        server.stop()
    counts = database_counts(common.make_app(folder, url))
    return {"runs": runs, "server_workers": server_workers, "server_log_errors": server.errors_in_log(),
            "database": counts, "expected_submissions": sum(len(b) for b in batches) + len(warmup)}


RAW_SCHEMA = """
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY, instance_id TEXT NOT NULL UNIQUE, form_id TEXT NOT NULL, form_version TEXT,
    grantee TEXT, event_type TEXT, event_date TEXT, region TEXT, village TEXT,
    xml BLOB NOT NULL, xml_sha256 TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE participants (
    id INTEGER PRIMARY KEY, submission_id INTEGER NOT NULL REFERENCES submissions(id), position INTEGER NOT NULL,
    full_name TEXT, sex TEXT, birth_year INTEGER, category TEXT);
CREATE INDEX ix_participants_submission ON participants(submission_id);
"""


def raw_limit(path, xmls: list[bytes], block: int = 1000) -> dict:
    """The physical limit of the work a 201 stands for, done the plainest way (issue #17): lxml
    parse of each body, then one durable transaction (SQLite, journal_mode=WAL,
    synchronous=FULL: the WAL is fsynced at every COMMIT) inserting the submission row and its
    participant rows, in a loop, in this process, into a scratch database file at `path`.
    No FieldSync code."""
    from datetime import datetime, timezone

    from lxml import etree
    path = common.Path(path)
    for suffix in ("", "-wal", "-shm"):
        common.Path(str(path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: BEGIN/COMMIT by hand
    journal = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    conn.execute("PRAGMA synchronous=FULL")
    synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    conn.executescript(RAW_SCHEMA)
    insert_submission = ("INSERT INTO submissions (instance_id, form_id, form_version, grantee, event_type, event_date,"
                         " region, village, xml, xml_sha256, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
    insert_participant = ("INSERT INTO participants (submission_id, position, full_name, sex, birth_year, category)"
                          " VALUES (?,?,?,?,?,?)")
    outcomes, ends = [], []
    started = time.perf_counter()
    for xml in xmls:
        t0 = time.perf_counter()
        status = "201"
        try:
            root = etree.fromstring(xml)
            participants = []
            for position, p in enumerate(root.iterfind("participant")):
                year = p.findtext("birth_year")
                participants.append((position, p.findtext("full_name"), p.findtext("sex"),
                                     int(year) if year else None, p.findtext("category")))
            conn.execute("BEGIN IMMEDIATE")
            try:
                submission_id = conn.execute(insert_submission, (
                    root.findtext("meta/instanceID"), root.get("id"), root.get("version"), root.findtext("grantee"),
                    root.findtext("event_type"), root.findtext("event_date"), root.findtext("region"),
                    root.findtext("village"), xml, hashlib.sha256(xml).hexdigest(),
                    datetime.now(timezone.utc).isoformat())).lastrowid
                conn.executemany(insert_participant, [(submission_id, *row) for row in participants])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except Exception as error:
            status = type(error).__name__
        t1 = time.perf_counter()
        outcomes.append((status, t1 - t0))
        ends.append(t1)
    wall = time.perf_counter() - started
    stored = conn.execute("SELECT (SELECT count(*) FROM submissions), (SELECT count(*) FROM participants)").fetchone()
    conn.close()
    result = summary(outcomes, wall)
    blocks = []
    for k in range(0, len(outcomes), block):
        chunk = outcomes[k:k + block]
        begin = ends[k - 1] if k else started
        blocks.append({"block": k // block + 1, "per_second": len(chunk) / (ends[k + len(chunk) - 1] - begin),
                       "p99_ms": common.percentile([t * 1000 for _s, t in chunk], 0.99)})
    result.update(journal_mode=journal, synchronous={0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(synchronous),
                  stored_submissions=stored[0], stored_participants=stored[1], blocks=blocks,
                  database_file=str(path))
    return result


class Backlog:
    """The derive backlog of a running instance: `pending_records` and `pending_person_matches`,
    counted over a connection of its own (a short read; on SQLite in WAL mode it waits for no
    writer)."""

    def __init__(self, url: str):
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool
        self.engine = create_engine(url, poolclass=NullPool)

    def sample(self) -> dict:
        from sqlalchemy import text
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn:
                records, persons = conn.execute(text(
                    "SELECT (SELECT count(*) FROM pending_records), (SELECT count(*) FROM pending_person_matches)")).one()
        except Exception as error:  # a sample must not end the run; say why it is missing
            return {"pending_records": None, "pending_person_matches": None, "sample_error": type(error).__name__}
        return {"pending_records": records, "pending_person_matches": persons,
                "sample_ms": (time.perf_counter() - started) * 1000}

    def drain(self, timeout: float, poll: float = 1.0, keep_every: float = 5.0) -> dict:
        """Poll until both queues are empty (at most `timeout` s): when each emptied, and the curve."""
        started = time.perf_counter()
        first = self.sample()
        curve, last_kept = [{"at_s": 0.0, **first, "load1": os.getloadavg()[0]}], 0.0
        records_empty_at = 0.0 if first["pending_records"] == 0 else None
        both_empty_at = 0.0 if first["pending_records"] == 0 and first["pending_person_matches"] == 0 else None
        while both_empty_at is None and time.perf_counter() - started < timeout:
            time.sleep(poll)
            at = time.perf_counter() - started
            now = self.sample()
            if records_empty_at is None and now["pending_records"] == 0:
                records_empty_at = at
            if now["pending_records"] == 0 and now["pending_person_matches"] == 0:
                both_empty_at = at
            if at - last_kept >= keep_every or both_empty_at is not None:
                curve.append({"at_s": at, **now, "load1": os.getloadavg()[0]})
                last_kept = at
        backlog_records = first["pending_records"] or 0
        return {"timeout_s": timeout, "at_start": first, "records_drained_s": records_empty_at,
                "drained_s": both_empty_at, "drained": both_empty_at is not None,
                "records_per_second": backlog_records / records_empty_at if records_empty_at else None,
                "curve": curve}

    def close(self):
        self.engine.dispose()


def sustained_run(endpoint: str, bodies: list[bytes], clients: Clients, backlog: Backlog, block: int) -> dict:
    """All of `bodies` in one closed loop on `clients` (no pause between blocks); each block of
    `block` uploads, in order of completion: its rate, p50/p99, errors, and the backlog sampled
    the moment its last upload was answered (by a thread of its own, so the uploads go on)."""
    done: list[tuple[float, float, object]] = []
    lock = threading.Lock()
    marks: queue.Queue = queue.Queue()
    samples: dict[int, dict] = {}

    def sampler():
        while True:
            item = marks.get()
            if item is None:
                return
            k, at = item
            samples[k] = {"at_s": at - started, **backlog.sample(), "load1": os.getloadavg()[0]}

    def one(body):
        t0 = time.perf_counter()
        status = clients.post(endpoint, body)
        t1 = time.perf_counter()
        with lock:
            done.append((t1, t1 - t0, status))
            n = len(done)
        if n % block == 0 or n == len(bodies):
            marks.put(((n - 1) // block + 1, t1))

    thread = threading.Thread(target=sampler, name="bench-backlog", daemon=True)
    thread.start()
    before = clients.retries
    started = time.perf_counter()
    try:
        list(clients.pool.map(one, bodies))
    finally:
        wall = time.perf_counter() - started
        marks.put(None)
        thread.join(60)
    done.sort()
    blocks = []
    for k in range(0, len(done), block):
        chunk = done[k:k + block]
        begin = done[k - 1][0] if k else started
        r = summary([(s, t) for _e, t, s in chunk], chunk[-1][0] - begin)
        blocks.append({"block": k // block + 1, "uploads": f"{k + 1}-{k + len(chunk)}", **r,
                       "backlog": samples.get(k // block + 1)})
    overall = summary([(s, t) for _e, t, s in done], wall)
    overall.update(client_retries=clients.retries - before, blocks=blocks, block_size=block,
                   concurrency=clients.concurrency)
    return overall


def open_runs(endpoint: str, rates: list[float], batches: list[list[bytes]], senders: int, rng: random.Random,
              grace: float, backlog: Backlog | None, settle: float) -> list[dict]:
    """One open-loop run per rate on a running server; before each, the backlog is let drain
    (at most `settle` s) and recorded, and after each, how long it took to drain again."""
    runs = []
    for rate, batch in zip(rates, batches):
        before = backlog.drain(settle) if backlog else None
        run = open_loop(endpoint, [multipart(x) for x in batch], rate, senders, rng, grace=grace)
        if backlog:
            # The backlog as the rate began (the settle's last sample), and how long the settle took.
            run["backlog_before"] = {k: before["curve"][-1][k] for k in ("pending_records", "pending_person_matches")}
            run["backlog_before"]["settled_s"] = before["drained_s"]
            after = backlog.drain(settle)
            run["backlog_after"] = {k: after["at_start"][k] for k in ("pending_records", "pending_person_matches")}
            run["derived_after_seconds"] = after["records_drained_s"]
            run["backlog_drained_after_seconds"] = after["drained_s"]
        runs.append(run)
    return runs


def sustained_level(instances, bodies: list[bytes], warmup: list[bytes], args, open_rates: list[float],
                    open_batches: list[list[bytes]], rng: random.Random) -> dict:
    """The sustained run on one growing instance and server, the drain after it, then (unless
    --open-fresh) the open-loop rates on the same server."""
    folder, url = instances.fresh("sustained")
    token = app_user_token(folder, url)
    server = common.Server(folder, url, workers=args.workers).start()
    bodies = [multipart(x) for x in bodies]
    clients = Clients(args.sustained_concurrency)
    backlog = Backlog(url)
    opened = None
    try:
        endpoint = f"{server.url}/v1/key/{token}/projects/1/submission"
        send_all(endpoint, [multipart(x) for x in warmup], args.sustained_concurrency, clients)
        backlog.drain(120)  # the warm-up's derive work must not run during the burst
        if args.py_spy:
            with common.PySpy(server.process.pid, common.Path(args.py_spy) / "ingest-sustained.txt"):
                run = sustained_run(endpoint, bodies, clients, backlog, args.sustained_block)
        else:
            run = sustained_run(endpoint, bodies, clients, backlog, args.sustained_block)
        clients.close()
        print(f"  burst done: {run['count']:,} in {run['seconds']:.0f} s ({run['per_second']:.1f}/s), "
              f"{run['errors']} errors; draining (at most {args.drain_timeout:.0f} s) …", flush=True)
        drain = backlog.drain(args.drain_timeout)
        if open_rates:
            print("  open loop on this instance: " + ", ".join(
                f"{len(b)} uploads at {r:g}/s" for r, b in zip(open_rates, open_batches)) + " …", flush=True)
            opened = {"runs": open_runs(endpoint, open_rates, open_batches, args.open_senders, rng, args.open_grace,
                                        backlog, args.open_settle),
                      "instance": "the sustained run's (growing)"}
        final = backlog.sample()
        server_workers = len(server.worker_pids())
    finally:
        clients.close()
        backlog.close()
        server.stop()
    empty = final.get("pending_records") == 0 and final.get("pending_person_matches") == 0
    counts = database_counts(common.make_app(folder, url), check_drift=empty)
    if not empty:
        counts["drift"] = "not checked: backlog not empty"
    errors = server.errors_in_log()
    if opened:
        opened.update(server_workers=server_workers, server_log_errors=errors, database=counts,
                      expected_submissions=len(bodies) + len(warmup) + sum(len(b) for b in open_batches))
    return {"run": run, "drain": drain, "open_loop": opened, "server_workers": server_workers,
            "server_log_errors": errors, "database": counts, "final_backlog": final,
            "expected_submissions": len(bodies) + len(warmup) + sum(len(b) for b in open_batches)}


def raw_loop(instances, bodies: list[bytes], warmup: list[bytes], announce: bool, profile: str | None) -> dict:
    from fieldsync.auth import accounts
    from fieldsync.extensions import db
    from fieldsync.ingest import Upload, receive
    folder, url = instances.fresh("raw" if announce else "raw-store")
    app = common.make_app(folder, url)
    with app.app_context():
        app_user = accounts.create_app_user(common.PROJECT_ID, "bench raw", "chinek", evaluator=False)
        app_user_id = app_user.id
        db.session.remove()

    def run(xmls, timed: bool):
        outcomes = []
        started = time.perf_counter()
        for xml in xmls:
            t0 = time.perf_counter()
            status = "201"
            with app.app_context():
                from fieldsync.models import AppUser
                try:
                    actor = accounts.actor_for_app_user(db.session.get(AppUser, app_user_id))
                    receive(common.PROJECT_ID, actor, Upload(xml=xml, device_id="bench:raw",
                                                             user_agent=HEADERS["User-Agent"]),
                            max_bytes=10_000_000, announce=announce)
                except Exception as error:  # counted, as the HTTP side counts non-201s
                    status = type(error).__name__
                finally:
                    db.session.remove()
            outcomes.append((status, time.perf_counter() - t0))
        return summary(outcomes, time.perf_counter() - started)

    run(warmup, False)
    with common.profiled(profile if announce else None):
        distinct = run(bodies, True)
    resends = run(bodies, True)
    counts = database_counts(app, check_drift=announce)
    return {"announce": announce, "distinct": distinct, "resend": resends, "database": counts,
            "expected_submissions": len(bodies) + len(warmup)}


def main():
    p = common.parser(__doc__.splitlines()[0], [1000],
                      "distinct submissions per concurrency level (one value, or one per level)")
    p.add_argument("--concurrency", type=int, nargs="*", default=[8, 32], help="HTTP levels, each on a fresh instance")
    p.add_argument("--participants", type=int, default=30)
    p.add_argument("--raw-limit", type=int, default=None, metavar="N",
                   help="bodies in the raw-limit loop (default: all of the sustained run's, else the largest level's)")
    p.add_argument("--store-path", type=int, default=None, metavar="N",
                   help="submissions through FieldSync's receive() in-process (default: the largest size; 0: skip)")
    p.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: gunicorn.conf.py's)")
    p.add_argument("--floor", type=int, default=1000,
                   help="HEAD …/submission requests of the floor at each concurrency (0: no floor)")
    p.add_argument("--sustained", type=int, default=10_000, metavar="N",
                   help="distinct seminars of the sustained run on one growing instance (0: skip)")
    p.add_argument("--sustained-concurrency", type=int, default=8)
    p.add_argument("--sustained-block", type=int, default=1000, help="uploads per reported block")
    p.add_argument("--drain-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="how long to wait for the backlog to drain after the burst")
    p.add_argument("--open-rates", type=float, nargs="*", default=[50.0, 100.0],
                   help="open-loop arrival rates, uploads/s (none: skip)")
    p.add_argument("--open-seconds", type=float, default=60.0, help="scheduled duration of each open-loop rate")
    p.add_argument("--open-grace", type=float, default=30.0, metavar="SECONDS",
                   help="arrivals still unsent this long after the schedule ends are not sent (counted as errors)")
    p.add_argument("--open-settle", type=float, default=120.0, metavar="SECONDS",
                   help="before and after each open-loop rate, wait at most this long for the backlog to drain")
    p.add_argument("--open-fresh", action="store_true",
                   help="run the open-loop rates on a fresh instance, not on the sustained run's")
    p.add_argument("--open-fractions", type=float, nargs="*", default=[],
                   help="extra open-loop rates as fractions of the measured c=8 throughput, on a fresh instance")
    p.add_argument("--open-size", type=int, default=300, help="distinct uploads per --open-fractions rate, at most")
    p.add_argument("--open-senders", type=int, default=32, help="open-loop sender threads (most uploads in flight)")
    p.add_argument("--wait-quiet", type=float, default=180.0, metavar="SECONDS",
                   help="wait up to this long for a 1-minute load below 0.7 before starting (default 180)")
    p.add_argument("--py-spy", metavar="DIR", help="sample the gunicorn processes with py-spy during each distinct "
                                                   "phase and the sustained run; collapsed stacks and a summary go "
                                                   "to DIR (slows the run)")
    args = p.parse_args()
    sizes = args.sizes * len(args.concurrency) if len(args.sizes) == 1 else args.sizes
    if len(sizes) != len(args.concurrency):
        p.error("--sizes takes one value or one per --concurrency level")
    info = {"load_when_started": common.wait_quiet(timeout=args.wait_quiet), **common.machine(),
            "started": common.now_iso(), "postgres": common.postgres_version(),
            "sqlite_write_queue": os.environ.get("FIELDSYNC_SQLITE_WRITE_QUEUE", "on")}
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    rng = random.Random(args.seed)
    instances = common.Instances(args.database, args.keep)
    print(f"setup of the template instance ({args.database}): {instances.setup_seconds:.1f} s")
    levels, sustained, opened_fresh, fractions_run, raw, store_only = [], None, None, None, None, None
    try:
        scratch_folder, scratch_url = instances.fresh("scratch")
        app = common.make_app(scratch_folder, scratch_url)
        store_n = max(sizes, default=300) if args.store_path is None else args.store_path
        open_counts = [int(r * args.open_seconds) for r in args.open_rates]
        fraction_n = args.open_size * len(args.open_fractions)
        total = (sum(sizes) + 16 * len(sizes) + (args.sustained + 16 if args.sustained else 0) + sum(open_counts)
                 + 16 + (fraction_n + 16 if fraction_n else 0) + (2 * (store_n + 16) if store_n else 0))
        started = time.perf_counter()
        pool = make_xml(app, rng, total, args.participants)
        print(f"built {len(pool):,} distinct submissions ({len(pool[0]):,} bytes each) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        take = iter(pool)
        level_bodies = [([next(take) for _ in range(16)], [next(take) for _ in range(n)]) for n in sizes]
        sustained_warmup = [next(take) for _ in range(16)] if args.sustained else []
        sustained_bodies = [next(take) for _ in range(args.sustained)]
        open_batches = [[next(take) for _ in range(n)] for n in open_counts]
        open_warmup = [next(take) for _ in range(16)]
        # The raw limit runs over the very bodies the HTTP phases send: the sustained run's, else
        # the largest level's (a scratch file of its own, so the same XML can go to both).
        raw_source = sustained_bodies or max((b for _w, b in level_bodies), key=len, default=[])
        raw_bodies = raw_source[:args.raw_limit] if args.raw_limit else raw_source
        raw_path = instances.root / "raw-limit.db"

        print(f"raw limit: {len(raw_bodies):,} bodies, lxml + one SQLite WAL transaction each "
              f"(synchronous=FULL) …", flush=True)
        raw_limits = [raw_limit(raw_path, raw_bodies)]
        print(f"  {raw_limits[0]['per_second']:,.0f}/s", flush=True)

        for concurrency, (warmup, bodies) in zip(args.concurrency, level_bodies):
            print(f"HTTP: {len(bodies):,} distinct submissions at concurrency {concurrency} (fresh instance) …",
                  flush=True)
            levels.append(http_level(instances, concurrency, bodies, warmup, args.workers, args.py_spy, args.floor))
            if args.py_spy:
                levels[-1]["py_spy"] = common.collapsed_top(
                    common.Path(args.py_spy) / f"ingest-http-c{concurrency}.txt", root_filter="handle_request")

        on_sustained = args.open_rates and args.sustained and not args.open_fresh
        if args.sustained:
            print(f"sustained: {args.sustained:,} distinct seminars at c={args.sustained_concurrency} on one "
                  f"growing instance …", flush=True)
            sustained = sustained_level(instances, sustained_bodies, sustained_warmup, args,
                                        args.open_rates if on_sustained else [],
                                        open_batches if on_sustained else [], random.Random(args.seed + 2))
            if args.py_spy:
                sustained["py_spy"] = common.collapsed_top(common.Path(args.py_spy) / "ingest-sustained.txt")
        if args.open_rates and not on_sustained:
            print("HTTP open loop (fresh instance): " + ", ".join(
                f"{n} uploads at {r:g}/s" for n, r in zip(open_counts, args.open_rates)) + " …", flush=True)
            opened_fresh = open_level(instances, args.open_rates, open_batches, open_warmup, args.open_senders,
                                      args.workers, random.Random(args.seed + 1), grace=args.open_grace)
            opened_fresh["instance"] = "fresh"
        if fraction_n:
            closed = {lv["concurrency"]: lv["distinct"]["per_second"] for lv in levels}
            base_c = 8 if 8 in closed else max(closed)
            rates = [closed[base_c] * f for f in args.open_fractions]
            counts = [min(args.open_size, max(50, int(r * args.open_seconds))) for r in rates]
            batches = [[next(take) for _ in range(n)] for n in counts]
            print("HTTP open loop at fractions of c=8: " + ", ".join(f"{n} uploads at {r:.1f}/s"
                                                                     for n, r in zip(counts, rates)) + " …", flush=True)
            fractions_run = open_level(instances, rates, batches, [next(take) for _ in range(16)], args.open_senders,
                                       args.workers, random.Random(args.seed + 1), grace=args.open_grace)
            fractions_run.update(base_concurrency=base_c, base_per_second=closed[base_c],
                                 fractions=args.open_fractions, instance="fresh")
        if store_n:
            store_bodies = [next(take) for _ in range(store_n)]
            print(f"FieldSync store path: {store_n} submissions through ingest.receive in-process …", flush=True)
            raw = raw_loop(instances, store_bodies, [next(take) for _ in range(16)], True, args.profile)
            store_only = raw_loop(instances, store_bodies, [next(take) for _ in range(16)], False, None)
        print("raw limit again …", flush=True)
        raw_limits.append(raw_limit(raw_path, raw_bodies))
        print(f"  {raw_limits[1]['per_second']:,.0f}/s", flush=True)
    finally:
        instances.cleanup()
    report(args, info, instances, raw_limits, levels, sustained, opened_fresh, fractions_run, raw, store_only)


def report(args, info, instances, raw_limits, levels, sustained, opened_fresh, fractions_run, raw, store_only):
    limit = max(r["per_second"] for r in raw_limits)
    opened = (sustained or {}).get("open_loop") or opened_fresh
    rows = [[f"raw limit ({when})", "distinct", r["count"], r["per_second"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
             r["max_ms"], r["errors"], r["per_second"] / limit] for when, r in zip(("before", "after"), raw_limits)]
    for label, r0 in (("FieldSync store path (announce=False)", store_only), ("FieldSync receive + rebuild", raw)):
        for kind in ("distinct", "resend"):
            if r0:
                r = r0[kind]
                rows.append([label, kind, r["count"], r["per_second"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
                             r["max_ms"], r["errors"], r["per_second"] / limit])
    for level in levels:
        if level["floor"]:
            r = level["floor"]
            rows.append([f"HTTP c={level['concurrency']} (fresh)", "floor HEAD", r["count"], r["per_second"],
                         r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"], r["errors"], ""])
        for kind in ("distinct", "resend"):
            r = level[kind]
            rows.append([f"HTTP c={level['concurrency']} (fresh)", kind, r["count"], r["per_second"], r["p50_ms"],
                         r["p95_ms"], r["p99_ms"], r["max_ms"], r["errors"], r["per_second"] / limit])
    if sustained:
        r = sustained["run"]
        rows.append([f"HTTP c={r['concurrency']} sustained", "distinct", r["count"], r["per_second"], r["p50_ms"],
                     r["p95_ms"], r["p99_ms"], r["max_ms"], r["errors"], r["per_second"] / limit])
    for run0, labeller in ((opened, lambda r, _i: f"open {r['offered_per_second']:g}/s ({opened['instance']})"),
                           (fractions_run, lambda r, i: f"open {r['offered_per_second']:.1f}/s "
                                                        f"({fractions_run['fractions'][i]:.0%} of c=8)")):
        for i, r in enumerate((run0 or {}).get("runs", [])):
            rows.append([labeller(r, i), "distinct", r["count"], r["answered_per_second"] or 0.0, r["p50_ms"],
                         r["p95_ms"], r["p99_ms"], r["max_ms"], r["errors"], ""])
    common.table(f"ingest on {args.database}: {args.participants} participants per submission; raw limit "
                 f"{limit:,.0f}/s (lxml + one SQLite WAL transaction, synchronous=FULL)",
                 ["path", "kind", "n", "subm/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "÷ raw limit"], rows)

    if sustained:
        r = sustained["run"]
        common.table(f"sustained: {r['count']:,} distinct seminars at c={r['concurrency']} on one growing instance, "
                     f"per {r['block_size']:,} in order of completion (backlog sampled at each block's end)",
                     ["uploads", "subm/s", "÷ raw limit", "p50 ms", "p99 ms", "max ms", "errors",
                      "pending_records", "pending_person_matches", "load1"],
                     [[b["uploads"], b["per_second"], b["per_second"] / limit, b["p50_ms"], b["p99_ms"], b["max_ms"],
                       b["errors"], (b["backlog"] or {}).get("pending_records"),
                       (b["backlog"] or {}).get("pending_person_matches"), (b["backlog"] or {}).get("load1")]
                      for b in r["blocks"]])
        d = sustained["drain"]
        curve = d["curve"]
        step = max(1, len(curve) // 12)
        shown = curve[::step] + ([curve[-1]] if (len(curve) - 1) % step else [])
        common.table("drain after the burst: " + (
            f"both queues empty after {d['drained_s']:.0f} s" if d["drained"] else
            f"not drained in {d['timeout_s']:.0f} s") + (
            f"; pending_records empty after {d['records_drained_s']:.0f} s "
            f"({d['records_per_second']:.1f} seminars/s derived)" if d["records_drained_s"] else
            "; pending_records not empty"),
            ["s after burst", "pending_records", "pending_person_matches", "load1"],
            [[c["at_s"], c["pending_records"], c["pending_person_matches"], c["load1"]] for c in shown])
    if opened:
        common.table(f"open loop ({opened['instance']} instance): backlog before / after each rate",
                     ["rate", "n", "unsent", "answered/s", "p50 ms", "p99 ms", "errors", "backlog before",
                      "backlog after", "drained after s"],
                     [[f"{r['offered_per_second']:g}/s", r["count"], r["unsent"], r["answered_per_second"],
                       r["p50_ms"], r["p99_ms"], r["errors"],
                       "/".join(str(r.get("backlog_before", {}).get(k, "")) for k in
                                ("pending_records", "pending_person_matches")),
                       "/".join(str(r.get("backlog_after", {}).get(k, "")) for k in
                                ("pending_records", "pending_person_matches")),
                       r.get("backlog_drained_after_seconds")] for r in opened["runs"]])

    checks = []
    runs = [(f"c={lv['concurrency']}", lv) for lv in levels]
    runs += [("sustained" + (" + open loop" if sustained.get("open_loop") else ""), sustained)] if sustained else []
    runs += [("open loop (fresh)", opened_fresh)] if opened_fresh else []
    runs += [("open loop (fractions)", fractions_run)] if fractions_run else []
    runs += [("receive + rebuild", raw), ("store path", store_only)] if raw else []
    for name, level in runs:
        d = level["database"]
        checks.append([name, level["expected_submissions"], d["submissions"], d["pending"], d["events"],
                       d["participants"], d["persons"], d["indicator_values"], d.get("drift", ""),
                       sum(level["server_log_errors"].values()) if "server_log_errors" in level else ""])
    common.table("database after each run (every submission stored once; queue empty unless store path)",
                 ["run", "sent", "submissions", "pending", "events", "participants", "persons", "values",
                  "drift", "log tracebacks"], checks)
    for name, level in runs:
        for message, count in level.get("server_log_errors", {}).items():
            print(f"  {name}: {count} x {message}")

    verdict = {}
    by_c = {lv["concurrency"]: lv for lv in levels}
    if sustained:
        r = sustained["run"]
        ratio = r["per_second"] / limit
        verdict["sustained c=8 ÷ raw limit"] = {"value": ratio, "goal": f">= {GOALS['sustained_c8_over_raw_limit']}",
                                                "met": ratio >= GOALS["sustained_c8_over_raw_limit"]}
        worst = max(b["p99_ms"] for b in r["blocks"])
        verdict[f"worst p99 of a {r['block_size']:,} (ms)"] = {"value": worst,
                                                               "goal": f"< {GOALS['sustained_block_p99_ms']:g}",
                                                               "met": worst < GOALS["sustained_block_p99_ms"]}
        verdict["sustained errors"] = {"value": r["errors"], "goal": 0, "met": r["errors"] == 0}
        d = sustained["drain"]
        verdict["drain after the burst (s, both queues)"] = {
            "value": d["drained_s"] if d["drained"] else f"not drained in {d['timeout_s']:.0f} s", "goal": "(shown)",
            "met": None}
        rate = d["records_per_second"]
        verdict["derive rate in the drain (seminars/s)"] = {
            "value": rate if rate is not None else "pending_records not empty", "goal": f">= {GOALS['drain_per_second']:g}",
            "met": rate is not None and rate >= GOALS["drain_per_second"]}
        drift = sustained["database"].get("drift")
        verdict["drift after the sustained run"] = {"value": drift, "goal": 0, "met": drift == 0}
    if opened:
        for r in opened["runs"]:
            goal = GOALS["open_100_p99_ms"] if r["offered_per_second"] == 100 else None
            verdict[f"open loop {r['offered_per_second']:g}/s p99 (ms)"] = {
                "value": r["p99_ms"], "goal": f"< {goal:g}" if goal else "(shown)",
                "met": (r["p99_ms"] is not None and r["p99_ms"] < goal and r["errors"] == 0) if goal else None}
    for c in (8, 32):
        if c in by_c:
            verdict[f"HTTP c={c} fresh, {by_c[c]['distinct']['count']:,} ÷ raw limit"] = {
                "value": by_c[c]["distinct"]["per_second"] / limit, "goal": "(shown)", "met": None}
    if 32 in by_c:
        verdict["HTTP c=32 fresh p99 (ms)"] = {"value": by_c[32]["distinct"]["p99_ms"], "goal": "(shown)", "met": None}
    errors = sum(lv[k]["errors"] for lv in levels for k in ("distinct", "resend"))
    errors += sum(lv["floor"]["errors"] for lv in levels if lv["floor"])
    errors += sustained["run"]["errors"] if sustained else 0
    unsent = sum(r["unsent"] for o in (opened, fractions_run) if o for r in o["runs"])
    errors += sum(r["errors"] - r["unsent"] for o in (opened, fractions_run) if o for r in o["runs"])
    verdict["errors (answers other than 201/204), every HTTP phase"] = {"value": errors, "goal": 0, "met": errors == 0}
    if opened or fractions_run:
        verdict["open-loop arrivals never sent (server behind by > --open-grace)"] = {
            "value": unsent, "goal": 0, "met": unsent == 0}
    common.table("goals (issue #17)", ["goal", "measured", "target", "met"],
                 [[k, v["value"], v["goal"], "" if v["met"] is None else "yes" if v["met"] else "NO"]
                  for k, v in verdict.items()])
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(at the start: {' '.join(f'{x:.2f}' for x in info['loadavg_start'])})")
    common.write_results("ingest", args, {"raw_limit": {"per_second": limit, "runs": raw_limits},
                                          "levels": levels, "sustained": sustained, "open_loop": opened,
                                          "open_loop_fractions": fractions_run, "fieldsync_receive": raw,
                                          "fieldsync_store_path": store_only, "goals": verdict,
                                          "setup_seconds": instances.setup_seconds}, info)


if __name__ == "__main__":
    main()
