"""`flask` commands: setup, forms, users, app-users.

Each command parses its arguments, calls a domain room and prints the outcome. A `Problem`
becomes a clear message and exit status 1, never a traceback.
"""
import functools
import json
import os
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from flask_migrate import upgrade

from . import problems, programme
from .backup.cli import backup_command, restore_command
from .auth import accounts
from .formats import collect_settings
from .records.media import GENERATED
from .xlsform import publish_path, queries, set_state

DEFAULT_DEVICE_BASE = "http://localhost:5000"


def reports_problems(command):
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except problems.Problem as problem:
            raise click.ClickException(str(problem)) from None
    return wrapper


def settings() -> dict:
    return current_app.config["FIELDSYNC"]


def device_base_url() -> str:
    return settings()["BASE_URL"] or DEFAULT_DEVICE_BASE


def validate_option(function):
    return click.option("--validate/--no-validate", default=None,
                        help="Run ODK Validate (default: when Java is installed).")(function)


@click.command("setup")
@validate_option
@with_appcontext
@reports_problems
def setup_command(validate):
    """Apply migrations, load the programme's reference data, publish every form in forms/."""
    upgrade(directory=current_app.extensions["migrate"].directory)
    report = programme.setup(Path(settings()["FORMS_PATH"]), settings()["PROJECT_NAME"], validate)
    changed = ", ".join(f"{n} {k}" for k, n in report.changed.items() if n) or "no changes"
    click.echo(f"Reference data: {changed}.")
    for form_id, version, status, warnings in report.forms:
        click.echo(f"Form {form_id} version {version}: {status}")
        for warning in warnings:
            click.echo(f"  warning: {warning}")
    if not accounts.has_admin():
        click.echo("No administrator yet: make one with  .venv/bin/flask --app app users create "
                   "you@example.org --role admin  then sign in at the server's address (port 5000).")
    click.echo("Next: set FIELDSYNC_BASE_URL to this machine's address as phones see it, then add a "
               "device with  .venv/bin/flask --app app app-users create 'Chinek tablet 1' --grantee "
               "chinek --png chinek-1.png  and scan the PNG in ODK Collect (Add project > Scan QR code).")


forms_cli = AppGroup("forms", help="Publish and manage forms.")


@forms_cli.command("publish")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@validate_option
@reports_problems
def forms_publish(paths, validate):
    """Publish XLSForm workbooks (media from <stem>-media/ or media/ beside each)."""
    for path in paths:
        result = publish_path(programme.PROJECT_ID, path, validate=validate, generated=frozenset(GENERATED))
        click.echo(f"Form {result.form.xml_form_id} version {result.version.version}: {result.status} "
                   f"(md5 {result.version.md5})")
        for warning in result.warnings:
            click.echo(f"  warning: {warning}")


@forms_cli.command("list")
def forms_list():
    """List the forms with their current version and state."""
    for form in queries.published_forms(programme.PROJECT_ID):
        v = form.current_version
        click.echo(f"{form.xml_form_id}\t{v.version}\t{form.state}\t{len(form.versions)} version(s)\t{v.title}")


@forms_cli.command("state")
@click.argument("xml_form_id")
@click.argument("state", type=click.Choice(["open", "closing", "closed"]))
@reports_problems
def forms_state(xml_form_id, state):
    """Open, close (no more submissions) or set a form closing (accepts, no longer listed)."""
    form = queries.form_by_xml_id(programme.PROJECT_ID, xml_form_id)
    if form is None:
        raise problems.not_found()
    set_state(form, state)
    click.echo(f"Form {xml_form_id} is now {state}.")


users_cli = AppGroup("users", help="Web users (coordinators, grantee staff, admins...).")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["admin", "coordinator", "grantee_staff",
                                                          "evaluator", "viewer"]))
@click.option("--grantee", "grantee_code", help="Grantee code (required for grantee_staff).")
@click.option("--name", "display_name", help="Display name.")
@reports_problems
def users_create(email, role, grantee_code, display_name):
    """Create a web user; the password comes from FIELDSYNC_PASSWORD or a prompt."""
    password = os.environ.get("FIELDSYNC_PASSWORD") or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    user = accounts.create_web_user(email, password, role, grantee_code, display_name)
    click.echo(f"Created {user.role} {user.email}" + (f" for grantee {grantee_code}" if grantee_code else ""))


app_users_cli = AppGroup("app-users", help="Device credentials for ODK Collect.")


def device_config(app_user) -> dict:
    server_url = f"{device_base_url()}/v1/key/{app_user.token}/projects/{app_user.project_id}"
    payload = collect_settings.qr_payload(collect_settings.settings(server_url, settings()["PROJECT_NAME"]))
    return {"name": app_user.display_name, "token": app_user.token, "serverUrl": server_url,
            "grantee": app_user.grantee.code if app_user.grantee else None,
            "evaluator": app_user.is_evaluator, "qr": payload}


@app_users_cli.command("create")
@click.argument("name")
@click.option("--grantee", "grantee_code", help="Grantee code this device records for.")
@click.option("--evaluator", is_flag=True, help="An evaluator's device: may submit for any grantee.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Write the QR code as a PNG.")
@reports_problems
def app_users_create(name, grantee_code, evaluator, as_json, png):
    """Create a device credential and print its URL and ODK Collect QR payload."""
    app_user = accounts.create_app_user(programme.PROJECT_ID, name, grantee_code, evaluator)
    config = device_config(app_user)
    if png:
        png.write_bytes(collect_settings.qr_png(config["qr"]))
    if as_json:
        click.echo(json.dumps(config, ensure_ascii=False))
        return
    click.echo(f"App user:   {config['name']}" + (f" (grantee {grantee_code})" if grantee_code else " (evaluator)"))
    click.echo(f"Token:      {config['token']}")
    click.echo(f"Server URL: {config['serverUrl']}")
    click.echo(f"QR payload: {config['qr']}")
    if png:
        click.echo(f"QR image:   {png}")
    if not settings()["BASE_URL"]:
        click.echo("Note: set FIELDSYNC_BASE_URL to the address phones use (e.g. http://192.168.1.10:5000).",
                   err=True)


@app_users_cli.command("list")
def app_users_list():
    """List device credentials."""
    for app_user in accounts.list_app_users(programme.PROJECT_ID):
        scope = app_user.grantee.code if app_user.grantee else "evaluator"
        state = "revoked" if app_user.revoked_at else "active"
        click.echo(f"{app_user.display_name}\t{scope}\t{state}")


@app_users_cli.command("revoke")
@click.argument("name")
@reports_problems
def app_users_revoke(name):
    """Revoke a device credential (a lost or retired phone)."""
    app_user = accounts.app_user_by_name(programme.PROJECT_ID, name)
    if app_user is None:
        raise click.ClickException(f"No app user is named {name!r} (see: app-users list).")
    if app_user.revoked_at is not None:
        click.echo(f"{name} was already revoked.")
        return
    accounts.revoke_app_user(app_user)
    click.echo(f"Revoked {name}: its phone can no longer list forms or send submissions.")


indicators_cli = AppGroup("indicators", help="Grantee indicators.")


@indicators_cli.command("recompute")
@click.option("--rebuild-records", is_flag=True, help="Also rebuild every record from the submissions.")
@reports_problems
def indicators_recompute(rebuild_records):
    """Recompute every indicator value from the records and report any drift."""
    from . import indicators

    indicators.process_pending()
    run = indicators.recompute("manual", rebuild_records=rebuild_records)
    click.echo(f"Recomputed {run.cells} values; drift from the incremental values: {run.drift} cell(s).")


targets_cli = AppGroup("targets", help="Targets per grantee, indicator and period.")


@targets_cli.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@reports_problems
def targets_load(path):
    """Load targets from a CSV with columns grantee,indicator,period,value (all rows or none)."""
    from .indicators import definitions
    from .indicators.targets import load_csv

    count = load_csv(programme.PROJECT_ID, path.read_text(encoding="utf-8-sig"), set(definitions().indicators))
    click.echo(f"Loaded {count} target(s).")


demo_cli = AppGroup("demo", help="The demo dataset.")


@demo_cli.command("load")
@click.option("--seed", default=2005, show_default=True, help="Random seed (the same seed gives the same data).")
@reports_problems
def demo_load(seed):
    """Send submissions that reproduce the evaluation's reported results through ingest."""
    from . import demo, indicators

    path = Path(settings()["FORMS_PATH"]) / "demo" / "reported_results.csv"
    outcomes = demo.load(programme.PROJECT_ID, path, seed)
    indicators.process_pending(limit=10**9, batch=200)
    click.echo("Demo loaded: " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) + ".")


@click.command("worker")
@click.option("--nice", default=10, show_default=True, help="Added to this process's OS priority.")
def worker_command(nice):
    """Rebuild records and indicators from the queue until stopped (SIGTERM): the derive worker
    that gunicorn.conf.py starts beside the server. Run it by hand only with FIELDSYNC_DERIVE=process."""
    from . import pipeline
    pipeline.run(current_app._get_current_object(), nice=nice)


def register(app):
    app.cli.add_command(setup_command)
    for group in (forms_cli, users_cli, app_users_cli, indicators_cli, targets_cli, demo_cli):
        app.cli.add_command(group)
    app.cli.add_command(backup_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(restore_command)
