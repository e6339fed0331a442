"""The blob store: file contents kept on disk, content-addressed by SHA-256.

Owns the bytes of form media, uploaded workbooks and submission attachments, and the `blobs`
rows that describe them. A file becomes visible under its final name only after its bytes are
fsynced, through an atomic rename, so a crash never leaves a half-written file under a real
name; a leftover temporary file is harmless and `sweep_temporary` removes it. Blobs are never
rewritten: the same content always lands at the same path. A full disk is a `storage_full`
problem (507), never a 500, and leaves no temporary file behind.
"""
import errno
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flask import current_app
from sqlalchemy import select

from .. import problems
from ..extensions import db, insert_ignoring
from ..models import Blob, utcnow

CHUNK = 1024 * 1024
# What a write says when the disk (or the service's quota on it) has no room left.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def root() -> Path:
    return Path(current_app.instance_path) / "blobs"


def path_of(sha256: str) -> Path:
    return root() / sha256[:2] / sha256[2:4] / sha256


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (the directory entry itself is fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    md5: str
    size: int


def write_file(source: bytes | BinaryIO, max_bytes: int | None = None) -> StoredFile:
    """Write content durably under its hash (no database). `max_bytes` bounds a streamed
    source; past it, `OverflowError` is raised and nothing is kept. When the disk is full,
    `problems.storage_full` is raised and nothing is kept either."""
    try:
        return _write_file(source, max_bytes)
    except OSError as exc:
        if _disk_full(exc):
            current_app.logger.error("blob store is full: %s", exc)
            raise problems.storage_full() from exc
        raise


def _disk_full(exc: BaseException | None) -> bool:
    # A failed write is often reported twice (write, then the flush in close): look down the chain.
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return True
        exc = exc.__context__
    return False


def _write_file(source: bytes | BinaryIO, max_bytes: int | None) -> StoredFile:
    tmp_dir = root() / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            chunks = [source] if isinstance(source, bytes) else iter(lambda: source.read(CHUNK), b"")
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise OverflowError(max_bytes)
                sha.update(chunk)
                md5.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = sha.hexdigest()
        final = path_of(digest)
        if final.exists():
            os.unlink(tmp_name)
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            fsync_dir(final.parent)
    except BaseException:
        # The temporary file goes; never a final name (that appears only by the rename above).
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return StoredFile(digest, md5.hexdigest(), size)


def register(stored: StoredFile, content_type: str = "application/octet-stream") -> Blob:
    """The `blobs` row for a written file, inserted if new (call inside a write transaction)."""
    # Two uploads of the same file may race (PostgreSQL, several workers): insert-or-ignore.
    db.session.execute(insert_ignoring(Blob.__table__, ("sha256",)), {
        "sha256": stored.sha256, "md5": stored.md5, "size": stored.size, "content_type": content_type,
        "created_at": utcnow()})
    return db.session.scalar(select(Blob).where(Blob.sha256 == stored.sha256))


def put(source: bytes | BinaryIO, content_type: str = "application/octet-stream",
        max_bytes: int | None = None) -> Blob:
    """Write and register in one step (inside a write transaction)."""
    return register(write_file(source, max_bytes), content_type)


def read_bytes(blob: Blob) -> bytes:
    return path_of(blob.sha256).read_bytes()


def exists(blob: Blob) -> bool:
    return path_of(blob.sha256).is_file()


def sweep_temporary(older_than_seconds: float = 3600) -> int:
    """Remove temporary files left by interrupted writes; returns how many.

    Only old ones: another worker may be writing a fresh one right now.
    """
    tmp_dir = root() / "tmp"
    removed = 0
    if tmp_dir.is_dir():
        cutoff = time.time() - older_than_seconds
        for leftover in tmp_dir.iterdir():
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
                removed += 1
    return removed
