"""Background export jobs: submissions (csv.zip or XLSX) and indicator tables, written to files.

Owns the `export_jobs` table and the folder `<instance>/exports/`. A job is asked for with
`start()` (which checks who may export what, fixes the grantee scope and personal-data choice
into the job's parameters, records an audit entry and starts a worker thread in this process);
the worker claims the job with a lease in its row, so two processes never run one job, and it
renews the lease as it reports progress. A job whose lease lapsed (its process died) is claimed
again by `resume_stale()`, which the web app calls when someone opens the exports page and a
scheduler may call too. Finished files are kept 24 hours (`cleanup()`), named by the server,
never from a request. Uses models, formats, indicators, storage and the audit log; never HTTP.
"""
import json
import logging
import os
import re
import secrets
import threading
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, or_, select

from .. import problems
from ..audit import record
from ..auth import Actor, accounts, can, grantee_scope, require
from ..extensions import db, write_transaction
from ..models import REVIEW_STATES, ExportJob, Grantee, utcnow
from ..review import reader
from ..xlsform import queries as form_queries
from . import queries, writers

log = logging.getLogger(__name__)

KINDS = ("submissions.zip", "submissions.xlsx", "indicators.csv", "indicators.xlsx")
LEASE = timedelta(seconds=60)
KEEP = timedelta(hours=24)
PROGRESS_EVERY = 0.5  # seconds between progress writes
MAX_DAYS_BACK = 366 * 50
MAX_JOBS_PER_USER = 3  # at once, per user: a queue of exports is one click away from a full disk

# Plain, fixed messages a failed job shows (the web app translates them).
FAILED = "The export stopped because of an error on the server. Start it again; if it fails again, tell your administrator."
FORM_GONE = "The form of this export no longer exists."
FULL = "The server's storage is full, so the export could not be written. Tell your administrator."

_threads: dict[int, threading.Thread] = {}


class Abandoned(Exception):
    """Another process took this job over (our lease lapsed): stop writing."""


def folder() -> Path:
    path = Path(current_app.instance_path) / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _zone() -> ZoneInfo:
    return ZoneInfo(current_app.config["FIELDSYNC"]["TIMEZONE"])


def _day(value, name: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        raise problems.unexpected_value(field=name, value=value, reason="a date as YYYY-MM-DD") from None
    if not date(2000, 1, 1) <= day <= date(2100, 12, 31):
        raise problems.unexpected_value(field=name, value=value, reason="a date between 2000 and 2100")
    return day


def _grantee_id(actor: Actor, project_id: int, code: str | None) -> int | None:
    scope = grantee_scope(actor)
    grantee = None
    if code:
        grantee = db.session.scalar(select(Grantee).where(Grantee.project_id == project_id, Grantee.code == code))
        if grantee is None:
            raise problems.unexpected_value(field="grantee", value=code, reason="not a grantee of this project")
    if scope is not None:
        if grantee is not None and grantee.id != scope:
            raise problems.forbidden()
        return scope
    return grantee.id if grantee else None


def _checked_params(actor: Actor, project_id: int, kind: str, asked: dict) -> tuple[dict, object]:
    """The job's parameters as it will run them, and the form (None for indicators)."""
    if kind not in KINDS:
        raise problems.unexpected_value(field="kind", value=kind, reason=", ".join(KINDS))
    require(actor, "export", project_id=project_id)
    if actor.kind != "user":
        raise problems.forbidden()
    personal = bool(asked.get("personal"))
    if personal and not can(actor, "personal.read"):
        raise problems.forbidden()
    grantee_id = _grantee_id(actor, project_id, asked.get("grantee") or None)
    if kind.startswith("indicators."):
        from ..indicators.values import check_period
        return {"period": check_period(str(asked.get("period") or "")), "grantee_id": grantee_id,
                "scope": "approved" if asked.get("approved_only") else "all"}, None
    require(actor, "submission.read", project_id=project_id)
    form = form_queries.form_by_xml_id(project_id, str(asked.get("form") or ""))
    if form is None or form.current_version_id is None:
        raise problems.unexpected_value(field="form", value=asked.get("form"), reason="not a published form")
    state = asked.get("review_state") or None
    if state is not None and state not in REVIEW_STATES:
        raise problems.unexpected_value(field="review_state", value=state, reason=", ".join(REVIEW_STATES))
    since, until = _day(asked.get("since"), "since"), _day(asked.get("until"), "until")
    if since and until and since > until:
        raise problems.unexpected_value(field="until", value=str(until), reason="on or after the start date")
    return {"form": form.xml_form_id, "personal": personal, "media": bool(asked.get("media")),
            "grantee_id": grantee_id, "review_state": state,
            "since": since.isoformat() if since else None, "until": until.isoformat() if until else None}, form


def start(actor: Actor, project_id: int, kind: str, asked: dict, app=None) -> ExportJob:
    """Check and record an export job, then run it in a worker thread of this process."""
    params, form = _checked_params(actor, project_id, kind, asked)
    cleanup()
    with write_transaction():
        # Counted inside the write transaction, so two requests at once cannot both slip under.
        running = db.session.scalar(select(func.count()).select_from(ExportJob).where(
            ExportJob.user_id == actor.user_id, ExportJob.status.in_(("pending", "running"))))
        if running >= MAX_JOBS_PER_USER:
            raise problems.too_many_exports(limit=MAX_JOBS_PER_USER)
        job = ExportJob(project_id=project_id, user_id=actor.user_id, kind=kind,
                        params=json.dumps(params, ensure_ascii=False), status="pending", done_rows=0)
        db.session.add(job)
        db.session.flush()
        details = {"format": kind, "job": job.id, **{k: v for k, v in params.items() if k != "form"}}
        if form is not None:
            record("form.submissions.export", actor, subject=form, details=details)
        else:
            record("indicators.export", actor, subject=job, details=details)
    launch(app or current_app._get_current_object(), job.id)
    return job


def launch(app, job_id: int) -> threading.Thread:
    for finished in [i for i, t in _threads.items() if not t.is_alive()]:
        _threads.pop(finished, None)
    thread = threading.Thread(target=_run_in_app, args=(app, job_id), name=f"export-{job_id}", daemon=True)
    _threads[job_id] = thread
    thread.start()
    return thread


def _run_in_app(app, job_id: int) -> None:
    with app.app_context():
        try:
            run(job_id)
        except Exception:
            log.exception("export job %s crashed", job_id)
        finally:
            db.session.remove()


def wait(job_id: int, timeout: float = 60) -> bool:
    """Wait for this process's worker of a job to end (tests, the CLI); True when it ended."""
    thread = _threads.get(job_id)
    if thread is not None:
        thread.join(timeout)
        return not thread.is_alive()
    return True


def claim(job_id: int):
    """Take a job that is pending, or running with a lapsed lease; the claim's mark (its new
    `started_at`) or None when the job is not ours to run."""
    with write_transaction():
        job = db.session.get(ExportJob, job_id, with_for_update=True)
        now = utcnow()
        if job is None or job.status in ("done", "failed"):
            return None
        if job.status == "running" and job.lease_until is not None and job.lease_until > now:
            return None
        job.status, job.started_at, job.lease_until, job.error = "running", now, now + LEASE, None
        job.done_rows = 0
        return now


def _reporter(job_id: int, mark):
    last = [0.0]

    def progress(done: int, total: int | None, force: bool = False) -> None:
        """Record how far the job is and renew its lease (at most every PROGRESS_EVERY seconds
        unless forced); raises Abandoned when the job is no longer this worker's."""
        moment = utcnow().timestamp()
        if not force and moment - last[0] < PROGRESS_EVERY:
            return
        last[0] = moment
        with write_transaction():
            job = db.session.get(ExportJob, job_id, with_for_update=True)
            if job is None or job.started_at != mark or job.status != "running":
                raise Abandoned()
            job.done_rows, job.total_rows = done, total
            job.lease_until = utcnow() + LEASE
    return progress


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:80] or "export"


def run(job_id: int) -> bool:
    """Claim and run one job here and now; False when it was not ours to run."""
    mark = claim(job_id)
    if mark is None:
        return False
    job = db.session.get(ExportJob, job_id)
    kind, params = job.kind, json.loads(job.params)
    part = folder() / f".{job_id}-{secrets.token_hex(6)}.part"
    progress = _reporter(job_id, mark)
    try:
        with open(part, "wb") as out:
            stem = _write(job, kind, params, out, progress)
            out.flush()
            os.fsync(out.fileno())
        name = f"{job_id}-{secrets.token_hex(4)}-{_slug(stem)}.{kind.split('.', 1)[1]}"
        os.replace(part, folder() / name)
        _finish(job_id, mark, status="done", file_name=name, file_size=(folder() / name).stat().st_size)
        return True
    except Abandoned:
        part.unlink(missing_ok=True)
        return False
    except problems.Problem as problem:
        part.unlink(missing_ok=True)
        _finish(job_id, mark, status="failed", error=FORM_GONE if problem.status == 404 else FAILED)
    except OSError as error:
        part.unlink(missing_ok=True)
        log.exception("export job %s could not write its file", job_id)
        _finish(job_id, mark, status="failed", error=FULL if error.errno in (28, 122) else FAILED)
    except Exception:
        part.unlink(missing_ok=True)
        log.exception("export job %s failed", job_id)
        db.session.rollback()
        _finish(job_id, mark, status="failed", error=FAILED)
    return True


def _finish(job_id: int, mark, **values) -> None:
    with write_transaction():
        job = db.session.get(ExportJob, job_id, with_for_update=True)
        if job is None or job.started_at != mark:
            if values.get("file_name"):
                (folder() / values["file_name"]).unlink(missing_ok=True)
            return
        for key, value in values.items():
            setattr(job, key, value)
        if values.get("status") == "done" and job.total_rows is None:
            job.total_rows = job.done_rows
        job.finished_at, job.lease_until = utcnow(), None


def _spec(job: ExportJob, params: dict):
    """The job's form and its query: what the job's user may export now, narrowed as asked."""
    form = form_queries.form_by_xml_id(job.project_id, params["form"])
    if form is None or form.current_version is None:
        raise problems.not_found()
    user = accounts.web_user(job.user_id) if job.user_id else None
    if user is None or user.disabled_at is not None:
        raise problems.forbidden()
    actor = accounts.actor_for_user(user)
    if params.get("personal") and not can(actor, "personal.read"):
        raise problems.forbidden()
    zone = _zone()
    since = until = None
    if params.get("since"):
        since = datetime.combine(date.fromisoformat(params["since"]), time(), zone)
    if params.get("until"):
        until = datetime.combine(date.fromisoformat(params["until"]) + timedelta(days=1), time(), zone)
    grantee_id = params.get("grantee_id")
    return form, reader.visible(actor, form, "export", reader.Filters(
        grantee_ids=(grantee_id,) if grantee_id is not None else None,
        review_state=params.get("review_state"), since=since, until=until))


def _write(job: ExportJob, kind: str, params: dict, out, progress) -> str:
    """Write the export into `out`; the stem of its file name."""
    if kind.startswith("submissions."):
        form, spec = _spec(job, params)
        schema = form.current_version.schema
        xml_form_id = form.xml_form_id
        db.session.commit()  # end the read transaction; batches read afresh
        if kind == "submissions.zip":
            writers.submissions_zip(out, xml_form_id, schema, spec, params["personal"], params["media"], progress)
        else:
            writers.submissions_xlsx(out, xml_form_id, schema, spec, params["personal"], progress)
        return xml_form_id
    from ..indicators import definitions
    from ..indicators.values import read
    defs = definitions()
    families = {i: d.family for i, d in defs.indicators.items()}
    names = {i: d.name.get("en") or i for i, d in defs.indicators.items()}
    cells = read(job.project_id, families, [], [], [params.get("period") or ""], params.get("scope", "all"),
                 params.get("grantee_id"), with_targets=True)
    rows = writers.indicator_rows(cells, names)
    progress(0, len(rows), force=True)
    if kind == "indicators.csv":
        writers.indicators_csv(out, rows, progress)
    else:
        writers.indicators_xlsx(out, rows, progress)
    return f"indicators-{params.get('period') or 'all-time'}"


def resume_stale(app=None) -> list[int]:
    """Start a worker for every job left behind: pending for a while, or running with its lease
    lapsed (its process died). Safe to call from any number of processes: claims decide."""
    now = utcnow()
    stale = list(db.session.scalars(select(ExportJob.id).where(or_(
        (ExportJob.status == "pending") & (ExportJob.created_at < now - timedelta(seconds=30)),
        (ExportJob.status == "running") & (ExportJob.lease_until < now)))))
    app = app or current_app._get_current_object()
    started = []
    for job_id in stale:
        thread = _threads.get(job_id)
        if thread is not None and thread.is_alive():
            continue
        launch(app, job_id)
        started.append(job_id)
    return started


def run_stale() -> int:
    """For a scheduler: run every left-behind job in the calling thread; how many ran."""
    now = utcnow()
    stale = list(db.session.scalars(select(ExportJob.id).where(or_(
        (ExportJob.status == "pending") & (ExportJob.created_at < now - timedelta(seconds=30)),
        (ExportJob.status == "running") & (ExportJob.lease_until < now)))))
    return sum(1 for job_id in stale if run(job_id))


def cleanup(now: datetime | None = None) -> int:
    """Delete export files older than 24 hours (and stray parts of dead workers); how many."""
    now = now or utcnow()
    removed = 0
    with write_transaction():
        old = list(db.session.scalars(select(ExportJob).where(
            ExportJob.file_name.is_not(None), ExportJob.finished_at < now - KEEP)))
        for job in old:
            (folder() / job.file_name).unlink(missing_ok=True)
            job.file_name = None
            removed += 1
    cutoff = (now - KEEP).timestamp()
    for path in folder().iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def jobs_for(actor: Actor, limit: int = 50) -> list[ExportJob]:
    return list(db.session.scalars(select(ExportJob).where(ExportJob.user_id == actor.user_id)
                                   .order_by(ExportJob.id.desc()).limit(limit)))


def job_for(actor: Actor, job_id: int) -> ExportJob:
    """One job of this user (an admin may open anyone's); someone else's reads as not found."""
    job = db.session.get(ExportJob, job_id)
    if job is None or actor is None or (job.user_id != actor.user_id and actor.role != "admin"):
        raise problems.not_found()
    return job


def file_of(job: ExportJob) -> Path:
    """The finished file of a job: its own recorded name inside the exports folder, nothing else."""
    if job.status != "done" or not job.file_name or "/" in job.file_name or job.file_name.startswith("."):
        raise problems.not_found()
    path = folder() / job.file_name
    if not path.is_file():
        raise problems.not_found()
    return path


def record_download(actor: Actor, job: ExportJob) -> None:
    """Who took the file away (the owner, or an admin opening someone else's)."""
    with write_transaction():
        record("export.download", actor, subject=job,
               details={"job": job.id, "kind": job.kind, "owner": job.user_id,
                        "personal": bool(params_of(job).get("personal"))})


def download_name(job: ExportJob) -> str:
    params = json.loads(job.params)
    extension = job.kind.split(".", 1)[1]
    if job.kind.startswith("submissions."):
        return f"{_slug(params.get('form') or 'submissions')}-{job.id}.{extension}"
    return f"indicators-{params.get('period') or 'all-time'}-{job.id}.{extension}"


def params_of(job: ExportJob) -> dict:
    return json.loads(job.params)


__all__ = ["KINDS", "cleanup", "claim", "download_name", "file_of", "job_for", "jobs_for", "launch",
           "params_of", "record_download", "resume_stale", "run", "run_stale", "start", "wait"]
