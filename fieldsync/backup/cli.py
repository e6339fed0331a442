"""`flask backup PATH` and `flask restore PATH`: parse, call `fieldsync.backup`, report.

Every failure becomes a one-paragraph message and exit status 1, never a traceback.
"""
import functools
import sqlite3
from pathlib import Path

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from .. import problems
from . import BackupError, _human, backup, restore


def _reports_failures(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (BackupError, problems.Problem) as exc:  # Problem: e.g. the blob store is full
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}.") from None
        except (SQLAlchemyError, sqlite3.Error) as exc:
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise click.ClickException(f"Database error: {first}") from None
    return wrapper


def _echo_err(message):
    click.echo(message, err=True)


@click.command("backup")
@click.argument("path", type=click.Path(file_okay=True, dir_okay=True, path_type=Path))
@with_appcontext
@_reports_failures
def backup_command(path):
    """Write a consistent snapshot of this instance (database and files) into the folder PATH.

    Safe while the server is running and taking submissions. PATH must be new or empty.
    """
    report = backup(path, progress=_echo_err)
    m = report.manifest
    counts = m["counts"]
    click.echo(f"Snapshot written to {report.path}: {counts['submissions']} submission(s), "
               f"{counts['blobs']} file(s) ({_human(counts['blob_bytes'])}), {m['database']['kind']} "
               f"database at schema {m['fieldsync_revision']}, in {report.seconds:.1f} s.")
    click.echo(f"Check it anywhere with:  cd {report.path} && sha256sum -c --quiet SHA256SUMS")


@click.command("restore")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace the data of a target instance that is not empty.")
@with_appcontext
@_reports_failures
def restore_command(path, force):
    """Restore the snapshot in folder PATH into this (fresh) instance, then migrate it.

    Stop the server of the target instance first.
    """
    report = restore(path, force=force, progress=_echo_err)
    m = report.manifest
    counts = m["counts"]
    click.echo(f"Restored the snapshot of {m['created_at']} (from {m.get('host', 'unknown host')}): "
               f"{counts['submissions']} submission(s), {counts['blobs']} file(s); "
               + "; ".join(report.notes) + f"; in {report.seconds:.1f} s.")
