"""What the benchmarks share: fresh instances (SQLite folder or PostgreSQL database), a gunicorn
server started as the tests' LiveServer does, fast synthetic submissions, a bulk loader that
writes submissions straight into the tables, timing helpers, the result table and JSON file.

Not a test helper and not part of FieldSync: nothing here is imported by the application.
"""
import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get("FIELDSYNC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
RUN_ID = uuid.uuid4().hex[:8]
PROJECT_ID = 1


# --- command line and results -------------------------------------------------------------

def parser(description: str, sizes: list[int], sizes_help: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--sizes", type=int, nargs="+", default=sizes, help=sizes_help + f" (default: {sizes})")
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--keep", action="store_true", help="keep the temporary instances (and databases)")
    p.add_argument("--profile", metavar="FILE", help="run the measured section under cProfile and write pstats here")
    return p


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem_kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "loadavg_start": os.getloadavg(), "code": code_state()}


def code_state() -> dict:
    """Which code was measured: HEAD, and the uncommitted changes to fieldsync/ (by hash)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout
    diff = git("diff", "HEAD", "--", "fieldsync", "migrations", "gunicorn.conf.py", "app.py")
    return {"head": git("rev-parse", "--short", "HEAD").strip(),
            "modified": [l[3:] for l in git("status", "--short", "--", "fieldsync", "migrations",
                                               "gunicorn.conf.py").splitlines()],
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None}


def postgres_version() -> str | None:
    try:
        with pg_admin() as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception:
        return None


def write_results(name: str, args, results: dict, info: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    info = {**info, "loadavg_end": os.getloadavg()}
    body = {"benchmark": name, "started": info.pop("started", None), "argv": sys.argv,
            "args": {k: v for k, v in vars(args).items()}, "machine": info, "results": results}
    path.write_text(json.dumps(body, indent=2, default=str))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return path


def table(title: str, columns: list[str], rows: list[list]) -> None:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 100 else (f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}")
        if isinstance(v, int):
            return f"{v:,}"
        return "" if v is None else str(v)
    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) if text else len(c) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in text:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def percentile(values, q: float):
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@contextmanager
def profiled(path: str | None):
    """cProfile the block when --profile FILE was given; prints the top functions afterwards."""
    if not path:
        yield
        return
    import cProfile
    import pstats
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(path)
        stats = pstats.Stats(profile)
        print(f"\ncProfile written to {path}; top 25 by cumulative time:")
        stats.sort_stats("cumulative").print_stats(25)
        print("top 25 by own time:")
        stats.sort_stats("tottime").print_stats(25)


# --- instances -----------------------------------------------------------------------------

def pg_admin():
    import psycopg
    from sqlalchemy.engine import make_url
    url = make_url(PG_ADMIN_URL)
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                           dbname=url.database or "postgres", autocommit=True)


def _pg_url(name: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


class Instances:
    """One `flask --app app setup --no-validate` per run, then a fresh copy for each measurement:
    the instance folder copied, and on PostgreSQL `CREATE DATABASE … TEMPLATE`."""

    def __init__(self, kind: str, keep: bool = False):
        self.kind, self.keep = kind, keep
        self.root = Path(tempfile.mkdtemp(prefix=f"fieldsync-bench-{RUN_ID}-"))
        self.databases: list[str] = []
        self.template_folder = self.root / "template"
        self.template_db = None
        started = time.perf_counter()
        if kind == "postgresql":
            self.template_db = self._create_database("template")
            url = _pg_url(self.template_db)
        else:
            url = f"sqlite:///{self.template_folder / 'fieldsync.db'}"
        env = dict(os.environ, FIELDSYNC_INSTANCE_PATH=str(self.template_folder), FIELDSYNC_DATABASE_URL=url)
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "setup", "--no-validate"],
                                cwd=ROOT, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"setup failed:\n{result.stdout}\n{result.stderr}")
        self.setup_seconds = time.perf_counter() - started

    def _create_database(self, label: str) -> str:
        name = f"fsbench_{RUN_ID}_{label}_{uuid.uuid4().hex[:6]}"
        with pg_admin() as conn:
            if self.template_db and label != "template":
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_db}"')
            else:
                conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return name

    def fresh(self, label: str) -> tuple[Path, str]:
        """(instance folder, database URL) of a new set-up instance."""
        folder = self.root / f"{label}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(self.template_folder, folder)
        if self.kind == "postgresql":
            return folder, _pg_url(self._create_database(label))
        return folder, f"sqlite:///{folder / 'fieldsync.db'}"

    def cleanup(self):
        if self.keep:
            print(f"kept instances under {self.root}" + (f" and databases {self.databases}" if self.databases else ""))
            return
        with contextlib_suppress():
            with pg_admin() as conn:
                for name in self.databases:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def contextlib_suppress():
    try:
        yield
    except Exception as error:  # the cleanup must not hide the results
        print(f"cleanup: {error}", file=sys.stderr)


def make_app(folder: Path, url: str):
    from fieldsync import create_app
    return create_app({"INSTANCE_PATH": folder, "DATABASE_URL": url})


# --- the server ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn with the production config, as tests/conftest.py's LiveServer starts it."""

    def __init__(self, folder: Path, database_url: str, workers: int | None = None, threads: int | None = None):
        self.folder, self.database_url = folder, database_url
        self.workers, self.threads = workers, threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.log_path = folder / f"server-{self.port}.log"

    def start(self):
        import requests
        env = dict(os.environ, FIELDSYNC_INSTANCE_PATH=str(self.folder), FIELDSYNC_DATABASE_URL=self.database_url,
                   FIELDSYNC_BASE_URL=self.url, PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "gunicorn.conf.py"),
                   "--bind", f"127.0.0.1:{self.port}"]
        if self.workers:
            command += ["--workers", str(self.workers)]
        if self.threads:
            command += ["--threads", str(self.threads)]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command + ["app:app"], cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def errors_in_log(self) -> dict:
        """Logged tracebacks, counted by "logged message: innermost exception line"."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        lines = text.splitlines()
        found: dict[str, int] = {}
        for i, line in enumerate(lines):
            if not line.startswith("Traceback"):
                continue
            before = next((l for l in reversed(lines[max(0, i - 3):i]) if l.strip()), "")
            if before.startswith(("The above exception", "During handling")):
                continue  # the later part of a chain already counted
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                j += 1
            exception = lines[j][:200] if j < len(lines) else "?"
            logged = re.sub(r"^\[[^\]]*\] (ERROR|WARNING) in \w+: ", "", before.strip())
            key = f"{logged[:80]} :: {exception}"
            found[key] = found.get(key, 0) + 1
        return found


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak(pid: int) -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of a process (Linux: write 5 to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


# --- synthetic submissions -----------------------------------------------------------------

FIRST = ["Aigul", "Ainura", "Aizada", "Asel", "Bakyt", "Bermet", "Chynara", "Dinara", "Elnura", "Gulnara",
         "Jyldyz", "Kanat", "Kubanychbek", "Meerim", "Nurlan", "Nurzhan", "Saltanat", "Talant", "Tilek",
         "Urmat", "Zarina", "Aibek", "Azamat", "Baktygul", "Cholpon", "Emil", "Jamila", "Mirlan", "Nazgul",
         "Ruslan", "Aidana", "Begaiym", "Daniyar", "Eldiyar", "Kairat", "Nurbek", "Samat", "Timur", "Umut", "Aida"]
FEMALE = {"Aigul", "Ainura", "Aizada", "Asel", "Bermet", "Chynara", "Dinara", "Elnura", "Gulnara", "Jyldyz",
          "Meerim", "Saltanat", "Zarina", "Baktygul", "Cholpon", "Jamila", "Nazgul", "Aidana", "Begaiym", "Aida"}
# Surnames from syllables: thousands of distinct ones, many a letter or two apart, as real
# registers are (so person matching has real fuzzy work to do, not only exact hits).
ROOTS = ["Asan", "Osmon", "Tokon", "Abdrai", "Sadyk", "Mamyt", "Juma", "Isak", "Toktogul", "Bek", "Usen",
         "Kadyr", "Sultan", "Almaz", "Ismail", "Karim", "Turdu", "Zhakyp", "Sydyk", "Orozo", "Kasym", "Naz",
         "Temir", "Alym", "Myrza", "Ergesh", "Kudai", "Tash", "Abyl", "Satyb"]
MIDDLES = ["", "bek", "ali", "bai", "kul", "kan", "ai", "tur", "er", "bay", "gul", "zhan"]
ENDS = ["ov", "ev", "uulu", "baev", "aliev", "bekov"]
CHUY_VILLAGES = ["Kant", "Ivanovka", "Kemin", "Belovodskoe", "Sokuluk", "Kara-Balta", "Tokmok", "Lebedinovka",
                 "Novopokrovka", "Shopokov"]
REGION_VILLAGES = {
    "bishkek": ["Bishkek"], "osh_city": ["Osh"], "chuy": CHUY_VILLAGES,
    "issyk_kul": ["Karakol", "Cholpon-Ata", "Tyup", "Ananyevo", "Bokonbaevo"],
    "naryn": ["Naryn", "Kochkor", "At-Bashy", "Chaek"], "talas": ["Talas", "Kyzyl-Adyr", "Pokrovka", "Bakai-Ata"],
    "jalal_abad": ["Bazar-Korgon", "Suzak", "Kerben", "Toktogul", "Massy"],
    "osh": ["Nookat", "Aravan", "Kara-Suu", "Gulcha", "Uzgen"],
    "batken": ["Leilek", "Isfana", "Kadamjay", "Batken", "Samarkandek"],
}
EVENT_TYPES = ["seminar", "training", "roundtable", "public_meeting"]
DAY0 = date(2020, 1, 1)
DAYS = 7 * 365  # 2020-2026


def person(rng: random.Random, years=range(1985, 2011), missing_year: float = 0.0) -> dict:
    first = rng.choice(FIRST)
    last = rng.choice(ROOTS) + rng.choice(MIDDLES) + rng.choice(ENDS)
    if first in FEMALE and last.endswith(("ov", "ev")):
        last += "a"
    year = None if rng.random() < missing_year else rng.choice(years)
    return {"full_name": f"{first} {last}", "sex": "female" if first in FEMALE else "male",
            "birth_year": year, "category": rng.choice(["student", "student", "teacher", "parent", "youth"])}


def seminar_values(rng: random.Random, grantee: str = "chinek", region: str = "chuy", participants: int = 30,
                   villages: list[str] | None = None, day: date | None = None, missing_year: float = 0.0) -> dict:
    day = day or DAY0 + timedelta(days=rng.randrange(DAYS))
    people = [person(rng, missing_year=missing_year) for _ in range(participants)]
    return {"grantee": grantee, "event_type": rng.choice(EVENT_TYPES), "event_date": day.isoformat(),
            "region": region, "village": rng.choice(villages or REGION_VILLAGES[region]),
            "topic": rng.choice(["trafficking_risks", "safe_migration", "victim_support"]), "language": "ky",
            "trainer_name": "Bench trainer", "register_participants": "yes" if people else "no",
            "participant": people, "headcount_female": 0 if people else rng.randrange(5, 60),
            "headcount_male": 0 if people else rng.randrange(5, 60), "materials_distributed": rng.randrange(0, 40)}


def consultation_values(rng: random.Random, grantee: str) -> dict:
    victim = rng.random() < 0.1
    return {"grantee": grantee, "service_date": (DAY0 + timedelta(days=rng.randrange(DAYS))).isoformat(),
            "channel": rng.choice(["hotline", "in_person", "outreach"]),
            "service_type": rng.choice(["information", "legal", "psychological", "referral"]),
            "client_sex": rng.choice(["female", "male"]), "client_age_group": "18_35",
            "client_is_victim": "yes" if victim else "no",
            "client_code": f"{grantee[:3].upper()}{'V' if victim else 'C'}{rng.randrange(10**6):06d}"}


def assessment_values(rng: random.Random, grantee: str, region: str) -> dict:
    return {"grantee": grantee, "region": region, "village": rng.choice(REGION_VILLAGES[region]),
            "interview_date": (DAY0 + timedelta(days=rng.randrange(DAYS))).isoformat(), "consent": "yes",
            "respondent_sex": rng.choice(["female", "male"]), "respondent_age": rng.randrange(18, 70),
            "household_size": rng.randrange(2, 9), "members_abroad": rng.randrange(0, 3),
            "plans_to_migrate": rng.choice(["yes", "no", "unsure"]), "knows_trafficking_risks": rng.choice(["yes", "no"]),
            "knows_hotline": rng.choice(["yes", "no"]), "priority_needs": "employment legal_info"}


class XmlBuilder:
    """Submission XML as `fieldsync.demo.instances.fill_instance` writes it, without lxml per
    submission: fill_instance once with markers, then fill the markers as text. `check` proves
    the two agree on real values."""

    def __init__(self, form_xml: bytes, repeat: str | None = None):
        from fieldsync.demo.instances import fill_instance
        self.form_xml, self.repeat = form_xml, repeat
        root = self._root_fields()
        values = {name: f"@@{name}@@" for name in root}
        if repeat:
            values[repeat] = [{name: f"@@{repeat}.{name}@@" for name in self._repeat_fields()}]
        text = fill_instance(form_xml, values, "@@instanceID@@").decode("utf-8")
        if repeat:
            start = text.index(f"<{repeat}>")
            end = text.index(f"</{repeat}>") + len(repeat) + 3
            self.head, self.row, self.tail = text[:start], text[start:end], text[end:]
        else:
            self.head, self.row, self.tail = text, "", ""

    def _fields(self):
        from lxml import etree
        form = etree.fromstring(self.form_xml)
        primary = form.find(".//{http://www.w3.org/2002/xforms}instance")
        return next(c for c in primary if isinstance(c.tag, str))

    def _root_fields(self):
        from lxml import etree
        return [etree.QName(c).localname for c in self._fields() if isinstance(c.tag, str) and not len(c)]

    def _repeat_fields(self):
        from lxml import etree
        rep = next(c for c in self._fields() if isinstance(c.tag, str) and etree.QName(c).localname == self.repeat)
        return [etree.QName(c).localname for c in rep if isinstance(c.tag, str)]

    @staticmethod
    def _fill(template: str, values: dict, prefix: str = "") -> str:
        out = template
        while "@@" in out:
            start = out.index("@@")
            end = out.index("@@", start + 2)
            key = out[start + 2:end]
            name = key[len(prefix):] if prefix and key.startswith(prefix) else key
            value = values.get(name)
            text = "" if value is None else escape(str(value))
            # An empty value is an empty element, as fill_instance leaves it.
            if not text and out[start - 1] == ">":
                open_at = out.rindex("<", 0, start)
                tag = out[open_at + 1:start - 1]
                close = f"</{tag}>"
                out = out[:open_at] + f"<{tag}/>" + out[end + 2 + len(close):]
            else:
                out = out[:start] + text + out[end + 2:]
        return out

    def build(self, values: dict, instance_id: str) -> bytes:
        head = self._fill(self.head, {**values, "instanceID": instance_id})
        tail = self._fill(self.tail, {**values, "instanceID": instance_id})
        rows = "".join(self._fill(self.row, row, prefix=f"{self.repeat}.") for row in values.get(self.repeat) or []) \
            if self.repeat else ""
        return (head + rows + tail).encode("utf-8")

    def check(self, values: dict) -> None:
        from fieldsync.demo.instances import fill_instance
        expected = fill_instance(self.form_xml, json.loads(json.dumps(values)), "uuid:check")
        got = self.build(values, "uuid:check")
        if expected != got:
            raise AssertionError(f"XmlBuilder differs from fill_instance:\n{expected[:600]}\n{got[:600]}")


def builders() -> dict:
    """form id -> XmlBuilder, inside an app context; each checked against fill_instance."""
    from fieldsync.xlsform import queries
    rng = random.Random(1)
    found = {}
    for form_id, repeat in (("seminar_attendance", "participant"), ("consultation_log", None),
                            ("needs_assessment", None)):
        form = queries.form_by_xml_id(PROJECT_ID, form_id)
        found[form_id] = XmlBuilder(form.current_version.xml, repeat)
    found["seminar_attendance"].check(seminar_values(rng, participants=3))
    found["seminar_attendance"].check(seminar_values(rng, participants=0))
    found["consultation_log"].check(consultation_values(rng, "tomo"))
    found["needs_assessment"].check(assessment_values(rng, "tomo", "issyk_kul"))
    return found


def grantees() -> list[tuple[int, str, str]]:
    from sqlalchemy import select

    from fieldsync.extensions import db
    from fieldsync.models import Grantee
    return [(g.id, g.code, g.region_code) for g in db.session.scalars(select(Grantee).order_by(Grantee.id))]


def new_instance_id(rng: random.Random) -> str:
    return f"uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


# --- the bulk loader -----------------------------------------------------------------------

def bulk_insert(items, queue: bool, chunk: int = 2000) -> int:
    """Write submissions straight into submissions + submission_defs (and pending_records when
    `queue`), as tests/test_odata.py's paging test does, but with Core executemany.
    `items` yields (xml_form_id, xml bytes, instance id, grantee id). Returns rows written."""
    from sqlalchemy import func, insert, select, text

    from fieldsync.extensions import db
    from fieldsync.models import Form, PendingRecord, Submission, SubmissionDef, utcnow

    forms = {f.xml_form_id: (f.id, f.current_version_id) for f in db.session.scalars(select(Form))}
    next_sub = (db.session.scalar(select(func.max(Submission.id))) or 0) + 1
    next_def = (db.session.scalar(select(func.max(SubmissionDef.id))) or 0) + 1
    written = 0
    batch = []

    def flush():
        nonlocal next_sub, next_def, written
        if not batch:
            return
        now = utcnow()
        subs, defs, pending = [], [], []
        for form_key, xml, iid, grantee_id in batch:
            form_id, version_id = forms[form_key]
            subs.append({"id": next_sub, "form_id": form_id, "instance_id": iid, "grantee_id": grantee_id,
                         "review_state": "received", "instance_id_assigned": False, "created_at": now})
            defs.append({"id": next_def, "submission_id": next_sub, "form_id": form_id,
                         "form_version_id": version_id, "instance_id": iid, "xml": xml,
                         "xml_sha256": hashlib.sha256(xml).hexdigest(), "created_at": now})
            if queue:
                pending.append({"submission_id": next_sub, "queued_at": now})
            next_sub += 1
            next_def += 1
        db.session.execute(insert(Submission.__table__), subs)
        db.session.execute(insert(SubmissionDef.__table__), defs)
        offset = defs[0]["id"] - subs[0]["id"]
        db.session.execute(text("UPDATE submissions SET current_def_id = id + :offset WHERE id BETWEEN :lo AND :hi"),
                           {"offset": offset, "lo": subs[0]["id"], "hi": subs[-1]["id"]})
        if pending:
            db.session.execute(insert(PendingRecord.__table__), pending)
        db.session.commit()
        written += len(batch)
        batch.clear()

    for item in items:
        batch.append(item)
        if len(batch) >= chunk:
            flush()
    flush()
    if db.engine.dialect.name == "postgresql":
        for table in ("submissions", "submission_defs"):
            db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT max(id) FROM {table}))"))
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    return written


def mixed_items(rng: random.Random, n: int, mix: dict[str, float], participants: int, xml: dict, people: list):
    """n submissions of the programme's forms over 18 grantees and seven years, in proportions `mix`."""
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        grantee_id, code, region = rng.choice(people)
        if kind == "seminar_attendance":
            values = seminar_values(rng, code, region, participants)
        elif kind == "consultation_log":
            values = consultation_values(rng, code)
        else:
            values = assessment_values(rng, code, region)
        iid = new_instance_id(rng)
        yield kind, xml[kind].build(values, iid), iid, grantee_id


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- timing inside FieldSync without editing it -------------------------------------------

class Timers:
    """Wall time spent in chosen functions, by wrapping module attributes for the run.
    `Timers().wrap(module, "name")`; `restore()` puts the originals back."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo = []

    def wrap(self, module, name: str, label: str | None = None):
        label = label or name
        original = getattr(module, name)
        seconds, calls = self.seconds, self.calls
        seconds.setdefault(label, 0.0)
        calls.setdefault(label, 0)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - started
                calls[label] += 1
        setattr(module, name, timed)
        self._undo.append((module, name, original))
        return self

    def reset(self):
        for k in self.seconds:
            self.seconds[k], self.calls[k] = 0.0, 0

    def snapshot(self) -> dict:
        return {k: {"seconds": self.seconds[k], "calls": self.calls[k]} for k in self.seconds}

    def restore(self):
        for module, name, original in reversed(self._undo):
            setattr(module, name, original)
        self._undo.clear()


def peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_children(script: str, sizes: list[int], forwarded: list[str]) -> list[dict]:
    """Run one size per child process (so each size's peak RSS is its own); a child prints
    `RESULT <json>` as its last line."""
    results = []
    for n in sizes:
        command = [sys.executable, script, "--child", "--sizes", str(n)] + forwarded
        process = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        lines = [l for l in process.stdout.splitlines() if l.startswith("RESULT ")]
        for line in process.stdout.splitlines():
            if not line.startswith("RESULT "):
                print(line)
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"size {n} failed (exit {process.returncode})")
        results.append(json.loads(lines[-1][7:]))
    return results


def forward(args, names: list[str]) -> list[str]:
    out = []
    for name in names:
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out += [flag] if value else []
        elif value is not None:
            out += [flag, str(value)]
    return out


def wait_quiet(limit: float = 0.7, timeout: float = 180.0) -> float:
    """Wait (up to `timeout` s) until the 1-minute load average is below `limit`: the machine is
    shared, and a benchmark started under someone else's test run measures that run. Returns
    the load average it started at (recorded with the results either way)."""
    deadline = time.monotonic() + timeout
    load = os.getloadavg()[0]
    if load >= limit:
        print(f"load average {load:.2f}: waiting up to {timeout:.0f} s for a quieter machine …", flush=True)
    while load >= limit and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


class PySpy:
    """`py-spy record` on a process (and its children) for the length of a block, writing
    collapsed stacks; `top()` reads them back as shares of samples per function."""

    def __init__(self, pid: int, path: Path, rate: int = 100):
        self.pid, self.path, self.rate = pid, Path(path), rate
        self.process = None

    def __enter__(self):
        binary = Path(sys.executable).parent / "py-spy"
        self.process = subprocess.Popen([str(binary), "record", "--pid", str(self.pid), "--subprocesses",
                                         "--rate", str(self.rate), "--format", "raw", "--nonblocking",
                                         "--output", str(self.path)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let it attach
        return self

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def collapsed_top(path: Path, limit: int = 25, root_filter: str | None = None) -> dict:
    """From py-spy's collapsed stacks: per function, the share of samples in which it is on
    the stack (inclusive) and at its top (self). `root_filter` keeps only stacks containing it."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if root_filter and root_filter not in stack:
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if "(" in f]
        seen = set()
        for frame in frames:
            name = _frame_name(frame)
            if name not in seen:
                inclusive[name] = inclusive.get(name, 0) + n
                seen.add(name)
        if frames:
            top = _frame_name(frames[-1])
            own[top] = own.get(top, 0) + n
    def ranked(d):
        return [(k, v / total * 100) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:limit]] if total else []
    return {"samples": total, "inclusive": ranked(inclusive), "self": ranked(own)}


def _frame_name(frame: str) -> str:
    """'rebuild (fieldsync/records/store.py:60)' -> 'fieldsync/records/store.py:rebuild'."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{file}:{name.strip()}"
