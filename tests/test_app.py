"""The app itself: factory, settings, the SQLite connection, health, error shapes, setup."""
import os
import stat

from sqlalchemy import inspect, text

from fieldsync import create_app
from fieldsync.extensions import db

from conftest import backend


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": backend()}


def test_secret_key_is_generated_once_and_private(instance):
    folder, url = instance
    key_file = folder / "secret_key"
    key_file.unlink()
    first = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": url}).config["SECRET_KEY"]
    second = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": url}).config["SECRET_KEY"]
    assert first == second and len(first) >= 40
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_sqlite_connections_are_durable_and_checked(app):
    if backend() != "sqlite":
        return
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
        assert db.session.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


def test_unknown_route_is_a_json_problem(client):
    response = client.get("/v1/nothing/here")
    assert response.status_code == 404
    assert response.get_json() == {"code": 404.1, "message": "Could not find the resource you were looking for."}


def test_unknown_route_under_a_device_url_is_an_openrosa_envelope(client, make_app_user):
    token = make_app_user()["token"]
    response = client.get(f"/v1/key/{token}/projects/1/nowhere")
    assert response.status_code == 404
    assert b"<OpenRosaResponse" in response.data and b'nature="error"' in response.data


def test_environment_chooses_instance_and_database(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDSYNC_INSTANCE_PATH", str(tmp_path / "inst"))
    monkeypatch.delenv("FIELDSYNC_DATABASE_URL", raising=False)
    app = create_app()
    assert app.instance_path == str(tmp_path / "inst")
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'inst' / 'fieldsync.db'}"
    (tmp_path / "inst" / "config.toml").write_text('base_url = "http://10.0.0.5:5000/"\n')
    assert create_app().config["FIELDSYNC"]["BASE_URL"] == "http://10.0.0.5:5000"
    monkeypatch.setenv("FIELDSYNC_BASE_URL", "https://fs.example.org")
    assert create_app().config["FIELDSYNC"]["BASE_URL"] == "https://fs.example.org"


def _snapshot(app):
    """Every row of every table, except timestamps of audit rows (there are none from setup)."""
    with app.app_context():
        inspector = inspect(db.engine)
        tables = sorted(t for t in inspector.get_table_names() if t != "alembic_version")
        return {t: sorted(map(tuple, db.session.execute(text(f'SELECT * FROM "{t}"')).all()), key=repr)
                for t in tables}


def test_setup_from_empty_database_then_again_changes_nothing(empty_instance):
    folder, url = empty_instance
    app = create_app({"INSTANCE_PATH": folder, "DATABASE_URL": url})
    runner = app.test_cli_runner()
    first = runner.invoke(args=["setup", "--no-validate"])
    assert first.exit_code == 0, first.output
    before = _snapshot(app)
    assert len(before["grantees"]) == 18
    assert len(before["regions"]) == 9
    assert len(before["rayons"]) >= 40
    assert len(before["projects"]) == 1
    second = runner.invoke(args=["setup", "--no-validate"])
    assert second.exit_code == 0, second.output
    assert "no changes" in second.output
    assert "published" not in second.output.replace("unchanged", "")
    assert _snapshot(app) == before
    with app.app_context():
        db.engine.dispose()


def test_migrations_match_the_models(app):
    """The schema comes from Alembic; it must be exactly what the models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with app.app_context():
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                    db.metadata)
    assert diff == []


def test_a_form_named_key_is_not_mistaken_for_a_device_url(client, make_user):
    response = client.get("/v1/projects/1/forms/key/submissions", headers=make_user("coordinator"))
    assert response.status_code == 404 and response.get_json()["code"] == 404.1


def test_the_served_processes_cap_malloc_arenas():
    # gunicorn.conf.py calls this in the master; on glibc it must take effect (see
    # docs/benchmarks.md: the soak's worker memory grew half as fast with it).
    from fieldsync.serving import limit_malloc_arenas
    import platform
    assert limit_malloc_arenas(2) is (platform.libc_ver()[0] == "glibc")
