"""Backup and restore: consistent snapshots of a running instance, and bringing one back.

Owns the snapshot format, a plain folder:

    manifest.json          written last; a folder without it is an incomplete snapshot
    SHA256SUMS             `sha256sum -c SHA256SUMS` checks the snapshot without FieldSync
    fieldsync.db           SQLite: a copy made with the online backup API, or
    fieldsync.dump         PostgreSQL: `pg_dump --format=custom`
    blobs/ab/cd/<sha256>   every file the snapshot's `blobs` table names, laid out as the store

`backup` only reads the live instance: the database through one consistent snapshot (SQLite's
backup API, or a REPEATABLE READ transaction whose snapshot `pg_dump` shares), then the blob
files that snapshot names. Blobs are fsynced before their row commits, so every file the
snapshot names is already complete on disk; files added later are simply not in it.

`restore` writes only into the current, fresh instance (its database and `blobs/`), after the
whole snapshot has been checked, then runs the Alembic migrations. It writes blob bytes through
the store's own durable path (`storage.write_file`) and never rows: the rows come from the
snapshot. This room may not touch models, ingest or any HTTP room, and never changes the
source instance.
"""
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import inspect, make_url, text

from .. import storage
from ..extensions import db

FORMAT = "fieldsync-snapshot"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
DB_FILES = {"sqlite": "fieldsync.db", "postgresql": "fieldsync.dump"}
CHUNK = 1024 * 1024
_SUM_LINE = re.compile(r"^([0-9a-f]{64})  (fieldsync\.db|fieldsync\.dump|blobs/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64}))$")


class BackupError(Exception):
    """A refusal or failure with a message meant for the person at the keyboard."""


@dataclass
class Report:
    path: Path
    manifest: dict
    seconds: float
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------------- helpers

def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    storage.fsync_dir(path.parent)


def _copy_verified(source: Path, target: Path, sha256: str) -> int:
    """Copy under a temporary name, hashing the bytes as they go; fsync, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    digest, size = hashlib.sha256(), 0
    try:
        with source.open("rb") as src, tmp.open("wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise BackupError(f"The live instance's file {source} is damaged: its content does not "
                              f"match its name (sha256 {digest.hexdigest()}). Nothing was backed up.")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return size


def _blob_relpath(sha256: str) -> str:
    # The store's own layout (storage.path_of), relative to its root.
    return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


def _database_url():
    return make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])


def _kind(url) -> str:
    name = url.get_backend_name()
    if name not in DB_FILES:
        raise BackupError(f"Backups support SQLite and PostgreSQL, not {name}.")
    return name


def _sqlite_path(url) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("The database is an in-memory SQLite database: there is no file to back up or restore.")
    return Path(url.database)


def _migrations_dir() -> str:
    return current_app.extensions["migrate"].directory


# ------------------------------------------------------------------------------- PostgreSQL

def _pg_conninfo(url) -> tuple[str, dict]:
    """A libpq connection string (no password) and the environment that carries the password."""
    from psycopg.conninfo import make_conninfo

    params = {k: v for k, v in {"host": url.host, "port": url.port, "user": url.username,
                                 "dbname": url.database}.items() if v}
    params.update({k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()})
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    return make_conninfo(**params), env


def _tool_major(binary: str) -> tuple[int, str]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not match:
        raise BackupError(f"Could not tell the version of {binary} (it printed {out.strip()!r}).")
    return int(match.group(1)), match.group(0)


def find_pg_tool(name: str, needed: int, why: str) -> tuple[str, str]:
    """`pg_dump`/`pg_restore` of major version `needed` or newer (PATH first, then Debian's
    /usr/lib/postgresql/<needed>/bin). Returns (path, version)."""
    found = []
    for path in (None, f"/usr/lib/postgresql/{needed}/bin"):
        binary = shutil.which(name, path=path)
        if binary and binary not in found:
            found.append(binary)
            major, version = _tool_major(binary)
            if major >= needed:
                return binary, version
    have = ", ".join(f"{b} ({_tool_major(b)[1]})" for b in found) or "none on PATH"
    raise BackupError(
        f"{name} {needed} or newer is needed ({why}); found {have}. Install the matching client "
        f"(Debian/Ubuntu: apt install postgresql-client-{needed}) and put it on PATH.")


def _pg_server_major(conn) -> int:
    return int(conn.execute(text("SHOW server_version_num")).scalar()) // 10000


# ----------------------------------------------------------------------------------- backup

def _check_destination(path: Path) -> bool:
    """Refuse a non-empty PATH; returns whether we created it."""
    if path.exists():
        if not path.is_dir():
            raise BackupError(f"{path} already exists and is a file; choose a new folder name.")
        if any(path.iterdir()):
            raise BackupError(f"{path} already exists and is not empty; a backup never overwrites. "
                              f"Choose a new folder name (e.g. one with today's date).")
        return False
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise BackupError(f"Cannot create {path}: {exc.strerror}.") from None
    return True


def _snapshot_facts(tables: set, query) -> dict:
    """Revision, counts and blob list of the snapshot; `query(sql)` returns its rows."""
    if "alembic_version" not in tables:
        raise BackupError("This database has no FieldSync schema (no alembic_version table): "
                          "run `flask --app app setup` first; there is nothing to back up.")
    revision = query("SELECT version_num FROM alembic_version")[0][0]

    def count(table):
        return query(f"SELECT count(*) FROM {table}")[0][0] if table in tables else 0

    blobs = [(sha, int(size)) for sha, size in query("SELECT sha256, size FROM blobs ORDER BY sha256")]
    return {"revision": revision,
            "counts": {"submissions": count("submissions"), "submission_versions": count("submission_defs"),
                       "blobs": len(blobs), "blob_bytes": sum(size for _, size in blobs)},
            "blobs": blobs}


def _sqlite_snapshot(url, out_dir: Path) -> tuple[Path, dict, dict]:
    live = _sqlite_path(url)
    if not live.is_file():
        raise BackupError(f"There is no database at {live}.")
    target = out_dir / DB_FILES["sqlite"]
    tmp = out_dir / f".{target.name}.partial"
    source = sqlite3.connect(live, timeout=15)
    try:
        dest = sqlite3.connect(tmp)
        try:
            # pages=-1: one step, under one read transaction of the live database, so the copy
            # is one consistent moment; in WAL mode the server's writers are not blocked.
            source.backup(dest, pages=-1)
            # A single self-contained file, readable from read-only media.
            dest.execute("PRAGMA journal_mode=DELETE")
            check = dest.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise BackupError(f"The copied database fails SQLite's integrity check: {check}")
            tables = {name for (name,) in dest.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            facts = _snapshot_facts(tables, lambda sql: dest.execute(sql).fetchall())
        finally:
            dest.close()
    finally:
        source.close()
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target, facts, {"sqlite_version": sqlite3.sqlite_version}


def _pg_snapshot(url, out_dir: Path) -> tuple[Path, dict, dict]:
    target = out_dir / DB_FILES["postgresql"]
    tmp = out_dir / f".{target.name}.partial"
    conninfo, env = _pg_conninfo(url)
    with db.engine.connect() as raw:
        conn = raw.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        server_major = _pg_server_major(conn)
        server_version = conn.execute(text("SHOW server_version")).scalar()
        pg_dump, dump_version = find_pg_tool("pg_dump", server_major, f"the server is PostgreSQL {server_version}")
        # pg_dump works inside this transaction's snapshot, so what we read below (blob list,
        # counts, revision) is exactly what the dump holds.
        snapshot_id = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
        result = subprocess.run([pg_dump, "--format=custom", f"--snapshot={snapshot_id}",
                                 f"--file={tmp}", f"--dbname={conninfo}"],
                                capture_output=True, text=True, env=env)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
        facts = _snapshot_facts(set(inspect(conn).get_table_names()),
                                lambda sql: conn.execute(text(sql)).all())
        conn.rollback()
    with tmp.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target, facts, {"server_version": server_version, "pg_dump_version": dump_version,
                           "dump_format": "custom"}


def backup(path: Path, progress=None) -> Report:
    """Write a snapshot of the current instance into PATH (a new or empty folder)."""
    started = time.monotonic()
    path = Path(path).absolute()
    url = _database_url()
    kind = _kind(url)
    created = _check_destination(path)
    try:
        created_at = _now()
        snapshot = _sqlite_snapshot if kind == "sqlite" else _pg_snapshot
        db_file, facts, db_details = snapshot(url, path)
        db_sha, db_size = _sha256_file(db_file)

        needed = facts["counts"]["blob_bytes"]
        free = shutil.disk_usage(path).free
        if needed > free:
            raise BackupError(f"Not enough space at {path}: the files need {_human(needed)}, "
                              f"{_human(free)} is free.")

        lines = [f"{db_sha}  {db_file.name}"]
        directories = set()
        for number, (sha, size) in enumerate(facts["blobs"], 1):
            source = storage.path_of(sha)
            if not source.is_file():
                raise BackupError(f"The live instance is missing the file {source} that its database "
                                  f"names; nothing was backed up.")
            target = path / _blob_relpath(sha)
            _copy_verified(source, target, sha)
            directories.add(target.parent)
            lines.append(f"{sha}  {_blob_relpath(sha)}")
            if progress and number % 500 == 0:
                progress(f"  {number} of {len(facts['blobs'])} files copied")
        for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
            storage.fsync_dir(directory)
        for directory in ({d.parent for d in directories} | {d.parent.parent for d in directories}):
            storage.fsync_dir(directory)

        sums = ("\n".join(lines) + "\n").encode()
        _write_atomic(path / SUMS, sums)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": created_at,
            "host": socket.gethostname(),
            "fieldsync_revision": facts["revision"],
            "database": {"kind": kind, "file": db_file.name, "sha256": db_sha, "size": db_size, **db_details},
            "counts": facts["counts"],
            "checksums": {"file": SUMS, "sha256": hashlib.sha256(sums).hexdigest()},
        }
        _write_atomic(path / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        storage.fsync_dir(path)
    except BaseException:
        _discard(path, created)
        raise
    return Report(path, manifest, time.monotonic() - started)


def _discard(path: Path, created: bool) -> None:
    """Remove a failed snapshot: everything in PATH is ours (it was new or empty)."""
    if created:
        shutil.rmtree(path, ignore_errors=True)
    elif path.is_dir():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- restore

def read_snapshot(path: Path) -> tuple[dict, list[tuple[str, str]]]:
    """The manifest and the (sha256, relative path) entries, after checking their shape."""
    path = Path(path)
    if not path.is_dir():
        raise BackupError(f"{path} is not a snapshot folder (it does not exist or is not a folder).")
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise BackupError(f"{path} has no {MANIFEST}: it is not a FieldSync snapshot, or the backup "
                          f"that wrote it did not finish. Use another snapshot.")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT:
            raise ValueError("not a FieldSync snapshot")
        kind = manifest["database"]["kind"]
        db_name = manifest["database"]["file"]
        if kind not in DB_FILES or db_name != DB_FILES[kind]:
            raise ValueError(f"unknown database kind {kind!r}")
        manifest["fieldsync_revision"], manifest["counts"]["blobs"], manifest["checksums"]["sha256"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"{manifest_file} is not a valid FieldSync manifest ({exc}).") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"This snapshot uses format version {manifest.get('format_version')}; this "
                          f"FieldSync reads version {FORMAT_VERSION}. Use a matching FieldSync.")
    sums_file = path / SUMS
    if not sums_file.is_file():
        raise BackupError(f"The snapshot is damaged: {SUMS} is missing.")
    sums = sums_file.read_bytes()
    if hashlib.sha256(sums).hexdigest() != manifest["checksums"]["sha256"]:
        raise BackupError(f"The snapshot is damaged: {SUMS} does not match the manifest.")
    entries = []
    for line in sums.decode("ascii", "replace").splitlines():
        match = _SUM_LINE.match(line)
        if not match or (match.group(5) and (match.group(5) != match.group(1)
                                              or match.group(3) + match.group(4) != match.group(1)[:4])):
            raise BackupError(f"The snapshot is damaged: unexpected line in {SUMS}: {line[:120]!r}")
        entries.append((match.group(1), match.group(2)))
    db_entries = [e for e in entries if not e[1].startswith("blobs/")]
    if db_entries != [(manifest["database"]["sha256"], db_name)]:
        raise BackupError(f"The snapshot is damaged: {SUMS} and the manifest disagree about the database file.")
    if len(entries) - 1 != manifest["counts"]["blobs"]:
        raise BackupError(f"The snapshot is damaged: the manifest counts {manifest['counts']['blobs']} "
                          f"files, {SUMS} lists {len(entries) - 1}.")
    return manifest, entries


def verify_snapshot(path: Path, entries) -> None:
    """Hash every file; raise listing the damaged or missing ones."""
    bad = []
    for sha, rel in entries:
        file = Path(path) / rel
        if not file.is_file():
            bad.append(f"{rel} (missing)")
        elif _sha256_file(file)[0] != sha:
            bad.append(f"{rel} (content does not match its checksum)")
    if bad:
        shown = "\n  ".join(bad[:20]) + (f"\n  … and {len(bad) - 20} more" if len(bad) > 20 else "")
        raise BackupError(f"The snapshot at {path} is damaged; nothing was restored. {len(bad)} file(s) fail:\n  {shown}\n"
                          f"Use another copy of the snapshot (`sha256sum -c {SUMS}` inside it shows the same).")


def _check_revision(revision: str) -> None:
    scripts = ScriptDirectory(_migrations_dir())
    try:
        known = scripts.get_revision(revision) is not None
    except Exception:
        known = False
    if not known:
        raise BackupError(f"The snapshot's schema revision {revision!r} is unknown to this FieldSync "
                          f"(it is newer, or from another program). Install the FieldSync version "
                          f"that made it, or a newer one, then restore.")


def target_contents(kind: str, url) -> list[str]:
    """What the target already holds: tables with rows, and blob files (empty means fresh)."""
    found = []
    if kind == "sqlite" and not _sqlite_path(url).exists():
        tables = []
    else:
        with db.engine.connect() as conn:
            tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
            for table in tables:
                if conn.execute(text(f'SELECT 1 FROM "{table}" LIMIT 1')).first():
                    found.append(f"table {table}")
        db.engine.dispose()
    root = storage.root()
    if root.is_dir() and any(p.is_file() for d in root.iterdir() if d.name != "tmp" and d.is_dir()
                             for p in d.rglob("*")):
        found.append(f"files in {root}")
    return found


def _restore_sqlite(url, path: Path, manifest: dict) -> None:
    live = _sqlite_path(url)
    live.parent.mkdir(parents=True, exist_ok=True)
    db.engine.dispose()
    incoming = live.with_name(f".{live.name}.restoring")
    try:
        _copy_verified(path / manifest["database"]["file"], incoming, manifest["database"]["sha256"])
    except BackupError:
        raise BackupError(f"The snapshot's {manifest['database']['file']} changed while it was being "
                          f"restored (it no longer matches its checksum). Nothing was restored.") from None
    # A stale -wal beside the new file would be replayed into it: remove those first.
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    os.replace(incoming, live)
    storage.fsync_dir(live.parent)


def _drop_all_tables() -> None:
    with db.engine.begin() as conn:
        for table in inspect(conn).get_table_names():
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    db.engine.dispose()


def _restore_pg(url, path: Path, manifest: dict) -> None:
    with db.engine.connect() as conn:
        server_major = _pg_server_major(conn)
    dump_major = int(re.match(r"\d+", manifest["database"].get("pg_dump_version", "0")).group(0))
    pg_restore, _ = find_pg_tool("pg_restore", max(server_major, dump_major),
                                 f"the target server is PostgreSQL {server_major}, the snapshot was written "
                                 f"by pg_dump {manifest['database'].get('pg_dump_version')}")
    # The target holds no data (or --force): drop whatever tables it has, so a schema newer than
    # the snapshot's cannot collide with the migrations that run after the restore.
    _drop_all_tables()
    conninfo, env = _pg_conninfo(url)
    db.engine.dispose()
    # One transaction: a failed restore leaves the target database as it was.
    result = subprocess.run([pg_restore, "--clean", "--if-exists", "--no-owner", "--no-acl",
                             "--single-transaction", f"--dbname={conninfo}",
                             str(path / manifest["database"]["file"])],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed (the target database is unchanged): {result.stderr.strip()}")


def restore(path: Path, force: bool = False, progress=None) -> Report:
    """Bring the snapshot at PATH into the current instance, then migrate it to this schema."""
    from flask_migrate import upgrade

    started = time.monotonic()
    path = Path(path).absolute()
    url = _database_url()
    kind = _kind(url)
    manifest, entries = read_snapshot(path)
    snapshot_kind = manifest["database"]["kind"]
    if snapshot_kind != kind:
        raise BackupError(f"This snapshot holds a {snapshot_kind} database but this instance uses {kind} "
                          f"({url.render_as_string(hide_password=True)}). Restore it into a {snapshot_kind} "
                          f"instance (set FIELDSYNC_DATABASE_URL accordingly).")
    _check_revision(manifest["fieldsync_revision"])
    existing = target_contents(kind, url)
    if existing and not force:
        raise BackupError("The target instance is not empty (" + ", ".join(existing[:5])
                          + (", …" if len(existing) > 5 else "") + "); restore only into a fresh instance "
                          "(a new FIELDSYNC_INSTANCE_PATH and database), or pass --force to replace its data.")
    if progress:
        progress(f"Checking the snapshot ({len(entries)} files)…")
    verify_snapshot(path, entries)

    if kind == "sqlite":
        _restore_sqlite(url, path, manifest)
    else:
        _restore_pg(url, path, manifest)

    for number, (sha, rel) in enumerate(e for e in entries if e[1].startswith("blobs/")):
        with (path / rel).open("rb") as fh:
            stored = storage.write_file(fh)
        if stored.sha256 != sha:
            raise BackupError(f"The snapshot's {rel} changed while it was being restored; restore again.")
        if progress and number and number % 500 == 0:
            progress(f"  {number} files restored")

    db.engine.dispose()
    upgrade(directory=_migrations_dir())
    db.session.remove()
    db.engine.dispose()

    with db.engine.connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        missing = [sha for (sha,) in conn.execute(text("SELECT sha256 FROM blobs"))
                   if not storage.path_of(sha).is_file()]
        submissions = conn.execute(text("SELECT count(*) FROM submissions")).scalar()
    db.engine.dispose()
    if missing:
        raise BackupError(f"After restoring, {len(missing)} file(s) the database names are missing "
                          f"(first {missing[0]}); the snapshot is inconsistent.")
    report = Report(path, manifest, time.monotonic() - started)
    if submissions != manifest["counts"]["submissions"]:
        raise BackupError(f"After restoring, the database holds {submissions} submissions; the manifest "
                          f"says {manifest['counts']['submissions']}.")
    report.notes.append(f"schema {manifest['fieldsync_revision']}"
                        + (f" upgraded to {revision}" if revision != manifest["fieldsync_revision"] else " (current)"))
    return report
